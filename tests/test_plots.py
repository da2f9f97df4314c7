"""The dashboard's figures and tables, built headless from hand-made run results."""

import numpy as np
import pandas as pd
import pytest

from leukdash.config import AugmentConfig
from leukdash.reporting import plots

FIVE = ["ALL", "AML", "CLL", "CML", "HEALTHY"]
FIVE_FOLDS = (0.7, 0.8, 0.7, 0.8, 0.75)  # measured as the paper measured: the paper's figure goes beside it
# The paper's CNN training besides its optimizer and epochs: x8 copies by its seven transforms.
PAPER_TRAINING = {"augment": AugmentConfig().to_dict(), "augment_factor": 8}


def fake_result(model="nb", accs=(0.5, 0.7, 0.9), classes=FIVE, dataset="synthetic", run_id=None, history=None,
                **config):
    n = len(classes)
    folds = []
    for i, acc in enumerate(accs):
        confusion = np.eye(n, dtype=int) * (i + 1)
        confusion[0, n - 1] += 1
        fold = {"fold": i, "n_train": 20, "n_val": 10, "val_acc": acc, "balanced_acc": acc - 0.05,
                "macro_f1": acc - 0.1, "val_loss": 1.0 - acc, "train_acc": 1.0, "train_loss": 0.01,
                "seconds": 1.5, "confusion": confusion.tolist()}
        if history:
            fold["history"] = history[i]
        folds.append(fold)
    full = {"model": model, "architecture": "paper", "optimizer": "sgd", "epochs": 2, "feature_set": "pixels", "k": 3,
            "image_size": 64, "augment": None, "augment_factor": 1, "protocol": "strict", "seed": 0, **config}
    return {"run_id": run_id or f"{model}-{dataset}", "config": full, "folds": folds,
            "dataset": {"name": dataset, "classes": list(classes), "fingerprint": dataset}, "summary": {}}


def bars(fig):
    return [t for t in fig.data if t.type == "bar"]


def fold_points(fig):
    return [t for t in fig.data if t.name == "single folds"]


def test_metric_bars_one_bar_per_run_with_fold_spread_and_points():
    runs = [fake_result("nb", (0.5, 0.7, 0.9)), fake_result("cnn", (0.8, 0.85, 0.95, 0.6))]
    fig = plots.metric_bars(runs, "val_acc", "std")
    assert len(bars(fig)) == 2
    for bar, points, run in zip(bars(fig), fold_points(fig), runs):
        values = [f["val_acc"] for f in run["folds"]]
        assert bar.orientation == "h"  # names on their own lines: they never overlap on a phone
        assert bar.x[0] == pytest.approx(np.mean(values))
        assert bar.error_x.array[0] == pytest.approx(np.std(values, ddof=1))
        assert bar.error_x.arrayminus[0] == pytest.approx(np.std(values, ddof=1))
        assert list(points.x) == values
        assert list(points.y) == [bar.y[0]] * len(values)
        assert points.hovertemplate.endswith(f"<extra>{bar.name}</extra>")
    assert fig.layout.xaxis.tickformat == ".0%"


def test_metric_bars_min_max_whiskers_reach_the_extreme_folds():
    run = fake_result("dt", (0.4, 0.55, 0.9))
    bar = bars(plots.metric_bars([run], "val_acc", "minmax"))[0]
    assert bar.x[0] - bar.error_x.arrayminus[0] == pytest.approx(0.4)
    assert bar.x[0] + bar.error_x.array[0] == pytest.approx(0.9)


def test_metric_bars_other_metric_and_one_fold():
    run = fake_result("svm", (0.6,))
    bar = bars(plots.metric_bars([run], "val_loss", "std"))[0]
    assert bar.x[0] == pytest.approx(0.4)
    assert bar.error_x.array[0] == 0.0
    assert plots.metric_bars([run], "val_loss").layout.xaxis.title.text == plots.METRICS["val_loss"]


def test_paper_diamonds_only_where_the_paper_reported_a_figure():
    cnn = fake_result("cnn", FIVE_FOLDS, epochs=25, **PAPER_TRAINING)
    leukdash_cnn = fake_result("cnn", FIVE_FOLDS, architecture="leukdash", epochs=25, run_id="other", **PAPER_TRAINING)
    pair = fake_result("nb", FIVE_FOLDS, classes=["AML", "CML"], run_id="pair")
    fig = plots.metric_bars([cnn, leukdash_cnn, pair], "val_acc")
    diamonds = [t for t in fig.data if t.name == "paper (reported)"]
    assert [d.x[0] for d in diamonds] == [0.8174]
    assert not [t for t in plots.metric_bars([cnn], "val_acc", show_paper=False).data if t.name == "paper (reported)"]
    assert plots.paper_value(fake_result("svm", FIVE_FOLDS, classes=["ALL", "HEALTHY"])) == 0.5009


def test_runs_of_different_tasks_are_named_by_their_task():
    five = fake_result("nb", (0.5, 0.6), run_id="nb-aaaaaa0")
    binary = fake_result("nb", (0.8, 0.9), classes=["ALL", "HEALTHY"], run_id="nb-bbbbbb0")
    fig = plots.metric_bars([five, binary])
    assert [b.y[0] for b in bars(fig)] == ["Naive Bayes on pixels<br>5 classes<br>aaaaaa",
                                           "Naive Bayes on pixels<br>ALL vs HEALTHY<br>bbbbbb"]
    assert list(fold_points(fig)[1].y) == ["Naive Bayes on pixels<br>ALL vs HEALTHY<br>bbbbbb"] * 2
    # Each run's band holds its three lines of name.
    assert fig.layout.height >= 120 + 2 * 3 * 16


def test_run_labels_name_what_differs_and_stay_distinct():
    a, b = fake_result("nb", dataset="tiny", run_id="nb-111111aa"), fake_result("nb", run_id="nb-222222bb")
    assert plots.run_labels([a, b]) == ["Naive Bayes on pixels · tiny · 111111", "Naive Bayes on pixels · synthetic · 222222"]
    # Runs alike but for their preprocessing and seed: both named, what they share is not.
    gray = fake_result("knn", run_id="knn-333333cc", preprocess="cell-keep-gray", seed=1)
    raw = fake_result("knn", run_id="knn-444444dd", preprocess="raw", seed=0)
    assert plots.run_labels([gray, raw]) == ["3-NN on pixels · cell-keep-gray · seed 1 · 333333",
                                             "3-NN on pixels · raw · seed 0 · 444444"]
    # Short ids that collide give way to the full ids.
    twins = plots.run_labels([fake_result("nb", run_id="nb-abcdef1"), fake_result("nb", run_id="nb-abcdef2")])
    assert twins == ["Naive Bayes on pixels · nb-abcdef1", "Naive Bayes on pixels · nb-abcdef2"]
    # A setting only CNNs have never tells a CNN from a classic model.
    cnn, nb = fake_result("cnn", run_id="cnn-555555", epochs=25), fake_result("nb", run_id="nb-666666")
    assert plots.run_labels([cnn, nb]) == ["CNN paper · 555555", "Naive Bayes on pixels · 666666"]


def test_a_run_of_another_engine_is_marked_in_its_label():
    """The same settings under another engine are another run (a CNN gets other weights): its label says so, as
    a result or as a store entry; runs of this engine, or stored without versions, are not marked."""
    from leukdash import ENGINE_VERSION

    old = {**fake_result("nb", run_id="nb-c9374871cf1e"), "versions": {"engine": "2"}}
    new = {**fake_result("nb", run_id="nb-848264b5c6a0"), "versions": {"engine": ENGINE_VERSION}}
    entry = {"run_id": "nb-777777ee", "meta": {"config": old["config"], "dataset": old["dataset"],
                                               "fold_ids": [0, 1, 2], "versions": {"engine": "2"}}}
    assert plots.run_labels([old, new, entry, fake_result("nb", run_id="nb-888888ff")]) == [
        "Naive Bayes on pixels · engine 2 · c93748", "Naive Bayes on pixels · 848264",
        "Naive Bayes on pixels · engine 2 · 777777", "Naive Bayes on pixels · 888888"]
    # An ensemble's record holds the engine of the session that combined it, not its members': unmarked.
    joined = {**old, "run_id": "ensemble-eab791aa", "config": {**old["config"], "model": "ensemble",
                                                               "member_configs": [old["config"], new["config"]]}}
    assert plots.run_labels([joined]) == ["Ensemble (Naive Bayes on pixels + Naive Bayes on pixels) · eab791"]


def test_learning_curves_mean_and_band_over_folds_for_cnn_runs_only():
    history = [{"acc": [0.2, 0.6], "loss": [2.0, 1.0], "val_acc": [0.1, 0.5], "val_loss": [2.5, 1.5]},
               {"acc": [0.4, 0.8], "loss": [1.0, 0.5], "val_acc": [0.3, 0.7], "val_loss": [2.0, 1.0]}]
    cnn = fake_result("cnn", (0.5, 0.7), history=history)
    fig = plots.learning_curves([cnn, fake_result("nb", (0.5, 0.6))], "acc", "minmax")
    lines = {t.name: t for t in fig.data if t.name}
    assert set(lines) == {"CNN paper · cnn-synthetic: training", "CNN paper · cnn-synthetic: validation"}
    assert list(lines["CNN paper · cnn-synthetic: validation"].y) == pytest.approx([0.2, 0.6])
    upper = [t for t in fig.data if t.fill is None and not t.showlegend and t.legendgroup.endswith("validation")][0]
    assert list(upper.y) == pytest.approx([0.3, 0.7])
    assert plots.curve_runs([cnn, fake_result("nb")]) == [cnn]


def test_confusion_heatmap_sums_folds_and_normalises_rows():
    run = fake_result("nb", (0.5, 0.7))
    heat = plots.confusion_heatmap(run).data[0]
    expected = np.eye(5, dtype=int) * 3
    expected[0, 4] += 2
    z = np.array(heat.z)
    assert z.sum(axis=1) == pytest.approx(np.ones(5))
    assert z[0, 4] == pytest.approx(2 / 5)
    assert heat.text[0][0].startswith("3<br>")
    assert np.array(plots.confusion_heatmap(run, normalize=False).data[0].z).tolist() == expected.tolist()


def test_probability_bars_highlight_the_predicted_class():
    bar = plots.probability_bars({"ALL": 0.7, "HEALTHY": 0.3}, "ALL").data[0]
    assert list(bar.x) == [0.7, 0.3] and list(bar.y) == ["ALL", "HEALTHY"]
    assert bar.marker.color[0] != bar.marker.color[1]


def test_paper_figures_match_the_papers_table():
    fig = plots.paper_figures()
    binary, five = fig.data
    assert dict(zip(binary.x, binary.y)) == {"CNN": 0.8825, "Naive Bayes": 0.6969, "Decision tree": 0.6294,
                                             "3-NN": 0.5857, "SVM": 0.5009}
    assert dict(zip(five.x, five.y))["SVM"] == 0.2084
    assert five.y[0] + five.error_y.array[0] == pytest.approx(0.9930)
    assert binary.y[0] - binary.error_y.arrayminus[0] == pytest.approx(0.6516)


def test_tables_from_results_and_store_entries():
    runs = [fake_result("nb", (0.5, 0.7, 0.5, 0.7, 0.6)), fake_result("knn", FIVE_FOLDS, k=3)]
    folds = plots.fold_frame(runs)
    assert len(folds) == 10 and list(folds["Fold"]) == [1, 2, 3, 4, 5] * 2
    summary = plots.summary_frame(runs)
    assert summary["Mean"].tolist() == pytest.approx([0.6, 0.75])
    assert summary["Paper (reported)"].tolist() == [0.5268, 0.4351]
    entry = {"run_id": "nb-1", "status": "complete", "summary": {"val_acc": {"mean": 0.6, "std": 0.1}},
             "meta": {"config": runs[0]["config"], "dataset": {"name": "tiny", "classes": ["ALL", "HEALTHY"]},
                      "fold_ids": [0, 1], "created": "2026-01-02T03:04:05+0000"}}
    row = plots.runs_frame([entry]).iloc[0]
    assert (row["Model"], row["Val. accuracy"]) == ("Naive Bayes on pixels", 0.6)
    assert row["Created (UTC)"] == "2026-01-02 03:04"
    # The columns are the settings that differ among the runs listed: here the seed and preprocessing.
    other = {**entry, "run_id": "nb-2", "meta": {**entry["meta"], "config": {**runs[0]["config"], "seed": 3,
                                                                            "preprocess": "cell-keep-gray"}}}
    frame = plots.runs_frame([entry, other])
    assert list(frame.columns) == ["Model", "Preprocessing", "Seed", "Val. accuracy", "SD", "Status",
                                   "Created (UTC)", "Run id"]
    assert list(frame["Seed"]) == ["seed 0", "seed 3"] and list(frame["Preprocessing"]) == ["raw", "cell-keep-gray"]


def test_the_created_column_says_utc_and_shows_utc():
    """A run's date is UTC whatever the server's time zone, and the column says so: a stored offset is turned
    into UTC, not cut off."""
    entry = {"run_id": "nb-1", "status": "complete", "summary": {},
             "meta": {"config": {"model": "nb"}, "created": 1767323045.0}}  # 2026-01-02 03:04:05 UTC
    shifted = {**entry, "run_id": "nb-2", "meta": {**entry["meta"], "created": "2026-01-02T17:04:05+1400"}}
    frame = plots.runs_frame([entry, shifted])
    assert list(frame["Created (UTC)"]) == ["2026-01-02 03:04", "2026-01-02 03:04"]


def test_heatmap_overlay_blends_colour_over_the_image():
    image = np.full((20, 30, 3), 100, np.uint8)
    heat = np.zeros((10, 15), np.float32)
    assert np.array_equal(plots.heatmap_overlay(image, heat, alpha=0.0), image)
    blended = plots.heatmap_overlay(image, np.ones((20, 30), np.float32), alpha=0.5)
    assert blended.shape == image.shape and blended.dtype == np.uint8
    assert blended[..., 0].mean() > blended[..., 2].mean()  # hot = red end of the colormap


def test_error_bounds_reject_unknown_kinds():
    with pytest.raises(ValueError, match="error bars"):
        plots.error_bounds([0.1, 0.2], "sem")


def test_paper_cnn_figure_is_the_experiment_trained_as_the_run_was():
    """Table 2's CNN figures belong to their training settings: Adam (Exp 3c) or 100 epochs (Exp 3b) cost
    the paper 15-18 points on five classes; where it trained no such CNN (15 epochs, Adam or 100 epochs on
    ALL vs HEALTHY, other batches) it reported nothing, and the bars and the summary table show nothing."""
    five, binary = tuple(FIVE), ("ALL", "HEALTHY")
    expected = {(five, "sgd", 25): 0.8174, (five, "sgd", 100): 0.6641, (five, "adam", 25): 0.6340,
                (binary, "sgd", 25): 0.8825, (five, "sgd", 15): None, (five, "adam", 100): None,
                (binary, "adam", 25): None, (binary, "sgd", 100): None}
    for (classes, optimizer, epochs), figure in expected.items():
        run = fake_result("cnn", FIVE_FOLDS, classes=classes, optimizer=optimizer, epochs=epochs, **PAPER_TRAINING)
        assert plots.paper_value(run) == figure, (classes, optimizer, epochs)
        shown = plots.summary_frame([run])["Paper (reported)"].iloc[0]
        assert pd.isna(shown) if figure is None else shown == figure
    other_batches = fake_result("cnn", FIVE_FOLDS, epochs=25, batch_size=8, **PAPER_TRAINING)
    assert plots.paper_value(other_batches) is None
    adam = fake_result("cnn", FIVE_FOLDS, optimizer="adam", epochs=25, **PAPER_TRAINING)
    diamonds = [t for t in plots.metric_bars([adam, other_batches]).data if t.name == "paper (reported)"]
    assert [d.x[0] for d in diamonds] == [0.6340]


def test_no_paper_cnn_figure_beside_a_cnn_the_paper_did_not_train_so():
    """Exp 2 (88.25%) trained on x8 copies by the paper's seven transforms, at Keras' default learning rate,
    on raw images; without augmentation the paper got 81% (Exp 1). A run trained otherwise gets no figure;
    the input size, which the paper does not state, and the protocol (the report runs both) do not matter."""
    binary = ["ALL", "HEALTHY"]

    def exp2(**changes):
        return fake_result("cnn", FIVE_FOLDS, classes=binary, epochs=25, **{**PAPER_TRAINING, **changes})

    assert plots.paper_value(exp2()) == 0.8825
    assert plots.paper_value(exp2(image_size=16, protocol="paper")) == 0.8825
    unlike = {"learning rate": exp2(learning_rate=5.0), "no copies": exp2(augment_factor=1),
              "x4 copies": exp2(augment_factor=4), "transforms off": exp2(augment=AugmentConfig.off().to_dict()),
              "no flips": exp2(augment={**PAPER_TRAINING["augment"], "horizontal_flip": False}),
              "colour jitter": exp2(augment={**PAPER_TRAINING["augment"], "colour_jitter": 0.1}),
              "cell-level images": exp2(preprocess="cell-keep-gray")}
    for setting, run in unlike.items():
        assert plots.paper_value(run) is None, setting
        assert plots.summary_frame([run])["Paper (reported)"].isna().all(), setting


def test_a_stored_cnn_run_of_settings_this_version_cannot_read_has_no_paper_figure_and_no_error():
    """A stored run's config from another version (a setting, or a transform, this one does not know) matching
    a paper experiment's architecture, optimizer and epochs: the strict config reader raised out of the Compare
    page; the run is not known to be trained as the paper was, so it gets no figure."""
    binary = ["ALL", "HEALTHY"]
    for changes in ({"old_setting": 1}, {"augment": {**PAPER_TRAINING["augment"], "old_transform": 0.5}}):
        run = fake_result("cnn", FIVE_FOLDS, classes=binary, epochs=25, **{**PAPER_TRAINING, **changes})
        assert plots.paper_value(run) is None, changes
        assert plots.summary_frame([run])["Paper (reported)"].isna().all(), changes
        assert not [t for t in plots.metric_bars([run]).data if t.name == "paper (reported)"], changes


def test_paper_figures_only_beside_raw_pixel_classic_runs():
    binary = ["ALL", "HEALTHY"]
    assert plots.paper_value(fake_result("svm", FIVE_FOLDS, classes=binary, feature_set="pixels")) == 0.5009
    assert plots.paper_value(fake_result("svm", FIVE_FOLDS, classes=binary, feature_set="features")) is None
    # Measured otherwise than by 5-fold cross-validation: the paper's mean is not its figure.
    assert plots.paper_value(fake_result("svm", FIVE_FOLDS, classes=binary, folds=5, protocol="paper")) == 0.5009
    assert plots.paper_value(fake_result("svm", FIVE_FOLDS[:2], classes=binary, folds=2)) is None
    for other in ({"test_fraction": 0.2}, {"protocol": "lodo"}):
        assert plots.paper_value(fake_result("svm", FIVE_FOLDS, classes=binary, **other)) is None, other
    fig = plots.metric_bars([fake_result("svm", classes=binary, feature_set="features")])
    assert not [t for t in fig.data if t.name == "paper (reported)"]


def test_no_paper_figure_beside_a_run_given_fewer_folds_than_asked():
    """A grouped dataset whose groups allow 2 of the 5 folds asked: the run's mean is over 2 folds, not
    the paper's 5, so neither the bars nor the summary table put the paper's figure beside it."""
    two = fake_result("svm", (0.7, 0.8), classes=["ALL", "HEALTHY"], folds=5)
    assert plots.paper_value(two) is None
    assert not [t for t in plots.metric_bars([two]).data if t.name == "paper (reported)"]
    assert plots.summary_frame([two])["Paper (reported)"].isna().all()


def test_paper_figure_names_fit_on_two_lines():
    axis = plots.paper_figures().layout.xaxis
    assert list(axis.tickvals) == ["CNN", "Naive Bayes", "Decision tree", "3-NN", "SVM"]
    assert "Naive<br>Bayes" in axis.ticktext and "Decision<br>tree" in axis.ticktext


def sweep_results():
    """A 2 models x 2 seeds sweep: NB and a 3-NN, seeds 0 and 1, three folds each."""
    accs = {("nb", 0): (0.5, 0.6, 0.7), ("nb", 1): (0.7, 0.8, 0.9),
            ("knn", 0): (0.2, 0.3, 0.4), ("knn", 1): (0.4, 0.4, 0.4)}
    return [fake_result(model, acc, run_id=f"{model}-{seed}", seed=seed, augment_factor=1, classes=FIVE, folds=3)
            for (model, seed), acc in accs.items()]


def test_sweep_axes_are_the_settings_that_differ():
    results = sweep_results()
    assert plots.sweep_axes([r["config"] for r in results]) == ["model", "seed"]
    cnns = [{**results[0]["config"], "model": "cnn", "architecture": a} for a in ("paper", "leukdash")]
    assert plots.sweep_axes(cnns) == ["model"]  # the architecture is part of the model


def test_sweep_frame_parallel_coordinates_and_heatmap():
    frame = plots.sweep_frame(sweep_results(), ["model", "seed"])
    assert list(frame["model"]) == ["Naive Bayes", "Naive Bayes", "k-NN", "k-NN"]
    assert frame["Mean"].tolist() == pytest.approx([0.6, 0.8, 0.3, 0.4])

    parallel = plots.sweep_parallel(frame, ["model", "seed"]).data[0]
    assert [d.label for d in parallel.dimensions] == ["model", "seed", "mean validation accuracy"]
    assert list(parallel.dimensions[0].ticktext) == ["k-NN", "Naive Bayes"]
    assert list(parallel.dimensions[0]["values"]) == [1, 1, 0, 0]
    accuracy = parallel.dimensions[2]  # its own ticks, each once (no range-end labels beside them)
    assert list(accuracy.ticktext) == ["0%", "25%", "50%", "75%", "100%"] and list(accuracy.tickvals) == [0, .25, .5, .75, 1]
    assert list(parallel.line.color) == pytest.approx([0.6, 0.8, 0.3, 0.4])

    heat = plots.sweep_heatmap(frame, "seed", "model").data[0]
    assert list(heat.x) == ["0", "1"] and list(heat.y) == ["k-NN", "Naive Bayes"]
    assert heat.z[1][0] == pytest.approx(0.6) and heat.z[0][1] == pytest.approx(0.4)
    assert heat.text[1][0].startswith("60.0%<br>± 10.0%")  # SD over the cell's 3 folds


def test_seed_spread_beside_fold_spread():
    frame = plots.sweep_frame(sweep_results(), ["model", "seed"])
    spread = plots.seed_spread_frame(frame, ["model", "seed"]).set_index("model")
    assert spread.loc["Naive Bayes", "Seeds"] == 2
    assert spread.loc["Naive Bayes", "Mean"] == pytest.approx(0.7)
    assert spread.loc["Naive Bayes", "SD over seeds"] == pytest.approx(np.std([0.6, 0.8], ddof=1))
    assert spread.loc["Naive Bayes", "SD over folds (mean)"] == pytest.approx(0.1)
    assert spread.loc["k-NN", "SD over folds (mean)"] == pytest.approx(0.05)


def test_folds_table_counts_images_and_gives_the_rows_of_validation_copies_apart():
    """A paper-protocol fold validated 5 images twice (10 rows): 5 validation images beside its 20 trained on,
    and its 10 rows apart; runs without copies have no rows column."""
    paper = fake_result("nb", (0.6, 0.8), run_id="nb-paper")
    for fold in paper["folds"]:
        fold["oof"] = {"copy": [0] * 5 + [1] * 5}
    frame = plots.fold_frame([paper, fake_result("knn", (0.5, 0.7), run_id="knn-strict")])
    assert list(frame["Validation images"]) == [5, 5, 10, 10] and list(frame["Validation rows"]) == [10] * 4
    assert "Validation rows" not in plots.fold_frame([fake_result("knn", (0.5, 0.7))]).columns


def test_one_value_has_no_spread_in_the_tables():
    """A holdout run (one fold) and a setting run with one seed: no SD (n/a), not a 0 that reads as a measured
    spread, as the run's line says "std n/a"; the others keep theirs."""
    holdout = fake_result("nb", (0.9,), run_id="nb-holdout", seed=0, augment_factor=1, classes=FIVE, folds=1)
    assert pd.isna(plots.summary_frame([holdout])["SD"].iloc[0])
    assert plots.summary_frame(sweep_results())["SD"].iloc[0] == pytest.approx(0.1)
    results = sweep_results()[:3] + [{**holdout, "config": {**holdout["config"], "model": "dt"}}]
    spread = plots.seed_spread_frame(plots.sweep_frame(results, ["model", "seed"]), ["model", "seed"])
    spread = spread.set_index("model")
    assert pd.isna(spread.loc["Decision tree", "SD over seeds"]) and pd.isna(spread.loc["Decision tree",
                                                                                       "SD over folds (mean)"])
    assert pd.isna(spread.loc["k-NN", "SD over seeds"]) and spread.loc["k-NN", "SD over folds (mean)"] == pytest.approx(
        0.1)


def test_a_run_of_one_fold_has_no_spread_in_the_run_tables_or_the_heatmap(tiny_dataset):
    """The Sweeps view's Runs table and its heatmap cells, and the Overview's and Compare's run table, gave a holdout
    run (one fold) "SD 0.0" or "± 0.0%": its stored std is 0, and one value gave 0 too. No SD there (n/a), as the
    run's line says "std n/a"; a run of two folds keeps its SD."""
    from leukdash.config import RunConfig
    from leukdash.engine.runner import run
    from leukdash.engine.store import RunStore

    holdout = run(RunConfig(dataset=str(tiny_dataset), model="nb", image_size=16, test_fraction=0.5), n_jobs=1)
    folds = run(RunConfig(dataset=str(tiny_dataset), model="nb", image_size=16, folds=2, seed=1), n_jobs=1)
    assert len(holdout["folds"]) == 1 and holdout["summary"]["val_acc"]["std"] == 0.0  # stored as 0
    frame = plots.sweep_frame([holdout, folds], ["seed"])
    assert pd.isna(frame["SD"].iloc[0]) and frame["SD"].iloc[1] == pytest.approx(
        np.std(plots.fold_values(folds, "val_acc"), ddof=1))
    heat = plots.sweep_heatmap(frame.assign(model="nb"), "seed", "model").data[0]
    assert "<br>± n/a<br>" in heat.text[0][0] and "<br>± n/a" not in heat.text[0][1]
    for table in (plots.runs_frame([holdout, folds]), plots.runs_frame(RunStore().list_runs())):
        by_id = table.set_index("Run id")["SD"]
        assert pd.isna(by_id[holdout["run_id"]]) and by_id[folds["run_id"]] == pytest.approx(
            folds["summary"]["val_acc"]["std"])


def test_setting_texts_of_a_sweep_table():
    cnn = {"model": "cnn", "architecture": "leukdash", "learning_rate": None, "k": 3, "augment_factor": 8,
           "augment": {"rotation": 40.0, "width_shift": 0.4, "height_shift": 0.4, "zoom": 0.3,
                       "horizontal_flip": True, "vertical_flip": True, "shear": 20.0}}
    assert plots.setting_text(cnn, "model") == "CNN leukdash"
    assert plots.setting_text(cnn, "learning_rate") == "default"
    assert plots.setting_text(cnn, "k") == "–"  # a CNN has no k
    assert plots.setting_text(cnn, "augment") == "the paper's"
    flips = {**cnn, "augment": {"horizontal_flip": True}}
    assert plots.setting_text(flips, "augment") == "horizontal flip"
    assert plots.setting_text({**cnn, "augment_factor": 1}, "augment") == "none"
    assert plots.setting_text({"model": "knn", "k": 5}, "model") == "k-NN"


def test_sweeps_are_named_by_their_axes_and_open_on_one_with_an_axis():
    from leukdash.reporting.plots.sweeps import finished_axes, sweep_title

    results = sweep_results()
    runs = [{"run_id": r["run_id"], "config": r["config"], "status": "complete"} for r in results]
    sweep = {"sweep_id": "s1", "name": "synthetic · 5 classes", "runs": runs}
    assert sweep_title(sweep) == "model × seed · synthetic · 5 classes · 4 of 4 runs finished"
    first = {**sweep, "runs": [runs[0], {**runs[1], "status": "pending"}]}
    assert finished_axes(first) == [] and finished_axes(sweep) == ["model", "seed"]
    assert sweep_title(first).endswith("seed · synthetic · 5 classes · 1 of 2 runs finished")


def test_an_ensembles_augmentation_is_its_members():
    from leukdash.evaluation.labels import augmentation_text

    paper = {"augment": {"rotation": 15}, "augment_factor": 8, "protocol": "strict"}
    ensemble = {"model": "ensemble", "augment": None, "protocol": "strict",
                "member_configs": [{"model": "nb", **paper}, {"model": "knn", **paper}]}
    assert augmentation_text(ensemble) == "x8, strict"  # was "none": an ensemble has no augmentation of its own
    ensemble["member_configs"][1] = {"model": "knn", **paper, "augment_factor": 1}
    assert augmentation_text(ensemble) == "members differ"


def test_an_ensemble_of_members_at_other_sizes_is_labelled_with_each_size_not_the_largest():
    from leukdash.evaluation.labels import run_labels, size_text

    member = {"model": "nb", "augment_factor": 1, "protocol": "strict"}
    ensemble = {"model": "ensemble", "image_size": 32, "member_configs": [{**member, "image_size": 16},
                                                                           {**member, "image_size": 32}]}
    runs = [{"run_id": "ensemble-aaaaaa1", "config": ensemble}, {"run_id": "nb-bbbbbb2", "config": member | {
        "image_size": 32}}]
    assert run_labels(runs) == ["Ensemble (Naive Bayes on pixels + Naive Bayes on pixels) · 16/32 px · aaaaaa",
                                "Naive Bayes on pixels · 32 px · bbbbbb"]
    assert size_text({**ensemble, "member_configs": [{**member, "image_size": 32}] * 2}) == "32 px"

def test_robustness_augmentation_is_named_in_a_runs_label_and_the_paper_transforms_only_where_used():
    # Stain or colour jitter and blur are what a robustness study varies: two runs told apart only by them read
    # alike, and jitter alone (--no-augment) read as the paper's seven transforms.
    from dataclasses import replace

    from leukdash.config import RunConfig
    from leukdash.evaluation.labels import augmentation_text, run_labels

    def run(run_id, augment):
        config = RunConfig(dataset="d", model="knn", image_size=16, augment_factor=2, augment=augment).to_dict()
        return {"run_id": run_id, "config": config, "dataset": {"name": "d"}}

    paper, robust = AugmentConfig(), AugmentConfig(stain_jitter=0.1, colour_jitter=0.1, blur=1)
    only = replace(AugmentConfig.off(), stain_jitter=0.2, blur=1)
    runs = [run("knn-aaaaaa1", paper), run("knn-bbbbbb2", robust), run("knn-cccccc3", only)]
    assert augmentation_text(runs[0]["config"]) == "x2, strict"  # as before: no robustness transform
    assert augmentation_text(runs[1]["config"]) == "x2 + colour jitter 0.1, stain jitter 0.1, blur 1, strict"
    assert augmentation_text(runs[2]["config"]) == "x2 (stain jitter 0.2, blur 1 only), strict"
    assert run_labels(runs) == [
        "3-NN on pixels · aug x2, strict · aaaaaa",
        "3-NN on pixels · aug x2 + colour jitter 0.1, stain jitter 0.1, blur 1, strict · bbbbbb",
        "3-NN on pixels · aug x2 (stain jitter 0.2, blur 1 only), strict · cccccc"]


@pytest.mark.parametrize("classes, protocol", [(("ALL", "HEALTHY"), "paper"), (None, "strict")])
def test_roc_curves_pool_the_rows_each_runs_accuracy_counts(tiny_dataset, classes, protocol):
    """A run's ROC is scikit-learn's on its pooled out-of-fold probabilities, on the rows its
    accuracy counts: every image once, and under the paper protocol its validated augmented copies
    too (they were left out, beside an accuracy that counts them); two classes: the first against
    the other, more: micro-averaged one vs rest."""
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import label_binarize

    from leukdash.config import AugmentConfig, RunConfig
    from leukdash.engine.runner import run
    from leukdash.evaluation.compare import out_of_fold_roc

    config = RunConfig(dataset=str(tiny_dataset), model="nb", image_size=16, augment_factor=2,
                       augment=AugmentConfig(), folds=2, protocol=protocol,
                       classes=classes)
    result = run(config, n_jobs=1)
    true = np.concatenate([f["oof"]["true"] for f in result["folds"]])
    proba = np.concatenate([f["oof"]["proba"] for f in result["folds"]])
    assert len(true) == result["dataset"]["n_used"] * (2 if protocol == "paper" else 1)  # the paper's: a copy each
    points = out_of_fold_roc(result)
    if classes:
        assert points["kind"] == "ALL vs HEALTHY"
        assert points["auc"] == pytest.approx(roc_auc_score(true == 0, proba[:, 0]))
    else:
        assert points["kind"] == "micro-average of 5 classes, one vs rest"
        assert points["auc"] == pytest.approx(roc_auc_score(label_binarize(true, classes=range(5)), proba,
                                                            average="micro"))
    assert points["fpr"][0] == 0 and points["tpr"][-1] == 1 and np.all(np.diff(points["fpr"]) >= 0)
    figure = plots.roc_curves([result], ["nb"])
    assert [trace.name for trace in figure.data] == ["chance", f"nb · AUC {points['auc']:.3f}"]


@pytest.mark.parametrize("table", [plots.fold_frame, plots.summary_frame, plots.source_frame, plots.metric_bars,
                                   plots.roc_curves])
def test_labels_not_one_per_run_are_refused_not_runs_left_out(table):
    runs = [fake_result("nb", run_id="nb-1"), fake_result("knn", run_id="knn-1"), fake_result("svm", run_id="svm-1")]
    with pytest.raises(ValueError, match="3 results, 1 label: give one label per result"):
        table(runs, labels=["mine"])
    with pytest.raises(ValueError, match="3 results, 4 labels"):
        table(runs, labels=["a", "b", "c", "d"])
    import pandas as pd  # a notebook's labels: an array or a Series (which have no truth value)

    from leukdash.reporting.plots.runs import run_labels_of

    for labels in (np.array(["a", "b", "c"]), pd.Series(["a", "b", "c"])):
        assert run_labels_of(runs, labels) == ["a", "b", "c"]
    with pytest.raises(ValueError, match="3 results, 2 labels"):
        table(runs, labels=np.array(["a", "b"]))


def test_arguments_of_the_wrong_kind_are_named_where_they_are_given():
    nb, knn = fake_result("nb"), fake_result("knn", k=3)
    for chart in (plots.metric_bars, plots.fold_frame, plots.summary_frame, plots.roc_curves, plots.learning_curves,
                  plots.source_frame, plots.curve_runs):
        with pytest.raises(TypeError, match="results takes a list of run results .*got a single dict"):
            chart(nb)
        with pytest.raises(TypeError, match=r"a run id was given where a run's result is expected; load it with "
                                            r"finished_result\('nb-synthetic'\)"):
            chart(["nb-synthetic"])
    with pytest.raises(TypeError, match="entries takes a list of run results"):
        plots.runs_frame(nb)
    with pytest.raises(TypeError, match="result: expected a run's result .*got a list"):
        plots.confusion_heatmap([nb])
    with pytest.raises(TypeError, match="result: a run id was given"):
        plots.confusion_heatmap("nb-synthetic")
    with pytest.raises(ValueError, match="metric must be one of val_acc, balanced_acc, .*got 'auc'"):
        plots.metric_bars([nb, knn], metric="auc")
    with pytest.raises(ValueError, match="metric must be one of val_acc, .*got 'auc'"):
        plots.summary_frame([nb, knn], metric="auc")
    with pytest.raises(ValueError, match="metric must be one of acc, loss, got 'xx'"):
        plots.learning_curves([nb], metric="xx")
    with pytest.raises(TypeError, match="a list_runs entry: load it with finished_result"):
        plots.fold_frame([{"run_id": "nb-1", "meta": {}, "summary": None, "status": "partial"}])


def test_runs_frame_takes_run_results_as_complete_runs():
    runs = [fake_result("nb", run_id="nb-1"), fake_result("knn", run_id="knn-1", k=3)]
    runs[0]["summary"] = {"val_acc": {"mean": 0.7, "std": 0.2}}
    frame = plots.runs_frame(runs)
    assert list(frame["Model"]) == ["Naive Bayes on pixels", "3-NN on pixels"]
    assert list(frame["Status"]) == ["complete", "complete"] and frame["Val. accuracy"].iloc[0] == 0.7


def test_the_bars_caption_counts_each_runs_own_folds_and_names_a_holdout():
    # The Experiments caption: a holdout run's one fold is no '1 folds'.
    assert plots.validated_over([fake_result("nb", (0.6,), test_fraction=0.2)]) == "the one fold of a holdout split"
    assert plots.validated_over([fake_result("nb", (0.6, 0.7)), fake_result("knn", FIVE_FOLDS)]) == \
        "the mean over 2 or 5 folds"
    assert plots.validated_over([fake_result("nb", (0.6,)), fake_result("knn", FIVE_FOLDS)]) == \
        "the mean over 1 or 5 folds"


def test_runs_alike_but_for_their_images_are_told_apart_by_them():
    """One folder's images changed between two runs of the same settings: the labels say how many
    images each had, where they would otherwise differ by their short ids alone."""
    runs = [fake_result("nb", run_id=run_id, dataset="myset") for run_id in ("nb-111111", "nb-222222", "nb-333333")]
    for run, fingerprint, n_images in zip(runs, ("aaaaaa1", "bbbbbb2", "cccccc3"), (32, 36, 36)):
        run["dataset"].update(fingerprint=fingerprint, n_images=n_images)
    assert plots.run_labels(runs[:2]) == ["Naive Bayes on pixels · 32 images · 111111",
                                          "Naive Bayes on pixels · 36 images · 222222"]
    assert plots.run_labels(runs[1:]) == ["Naive Bayes on pixels · 36 images bbbbbb · 222222",
                                          "Naive Bayes on pixels · 36 images cccccc · 333333"]


def test_the_curves_keep_their_plot_area_and_runs_apart_whatever_the_number_of_runs(tiny_dataset):
    """The legends of the learning and ROC curves grew with the runs into a chart of fixed height: the plot area
    shrank under them (132 px) or they covered the x axis, and every CNN run had the CNN's one colour."""
    from leukdash.config import RunConfig
    from leukdash.engine.runner import run

    result = run(RunConfig(dataset=str(tiny_dataset), model="nb", image_size=16, folds=2), n_jobs=1)
    history = [{"acc": [0.2, 0.6], "loss": [2.0, 1.0], "val_acc": [0.1, 0.5], "val_loss": [2.5, 1.5]}] * 2
    for n in (1, 4, 12):
        cnns = [fake_result("cnn", (0.5, 0.7), history=history, run_id=f"cnn-{i}") for i in range(n)]
        for fig in (plots.learning_curves(cnns), plots.roc_curves([result] * n, [f"nb {i}" for i in range(n)])):
            layout, entries = fig.layout, [t for t in fig.data if t.name and t.showlegend is not False]
            plot = layout.height - layout.margin.t - layout.margin.b
            assert plot >= 300
            # The legend, one entry a line, starts under the plot area and the axis, in room kept for it.
            assert layout.legend.orientation == "v" and layout.legend.yanchor == "top" and layout.legend.y < 0
            assert layout.margin.b >= -layout.legend.y * plot + 20 * len(entries)
            runs = [t for t in entries if t.name != "chance" and not t.name.endswith(": training")]
            assert len(runs) == n and len({t.line.color for t in runs}) == n


EVIL, AMP = '<a href="https:evil.example">click', "x &amp; y"  # a link and an entity, as names a dataset may hold


def chart_texts(fig):
    """Every string of a figure's data and layout, as plotly.js is handed them."""
    def walk(value):
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            yield from (text for item in value.values() for text in walk(item))
        elif isinstance(value, (list, tuple, np.ndarray)):
            yield from (text for item in list(value) for text in walk(item))
    return list(walk(fig.to_plotly_json()))


def test_names_a_dataset_controls_show_in_every_chart_as_written_not_as_markup():
    """Plotly renders links and bold in chart texts and decodes entities: class, dataset and run names reach a
    figure escaped, so a class folder named like a link shows as that text, never as a link."""
    import pandas as pd

    history = [{"acc": [0.2, 0.6], "loss": [2.0, 1.0], "val_acc": [0.1, 0.5], "val_loss": [2.5, 1.5]}] * 2
    runs = [fake_result("cnn", (0.5, 0.7), classes=[EVIL, AMP], dataset=name, run_id=f"cnn-{i}", history=history)
            for i, name in enumerate((EVIL, AMP))]
    for run in runs:
        for fold in run["folds"]:
            fold["oof"] = {"index": [0, 1, 2, 3], "copy": [0] * 4, "true": [0, 1, 0, 1],
                           "proba": [[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.7, 0.3]]}
    frame = pd.DataFrame([{"Run": EVIL, "Tested on": AMP, "Value": 0.5, "Low": 0.4, "High": 0.6, "Model": "cnn",
                           "Within dataset": 0.7, "Collapsed": False, "OOD share": 0.1, "Classes": 2,
                           "Predicted": f"{EVIL} 50%, {AMP} 50%"}])
    sweep = pd.DataFrame({"dataset": [EVIL, AMP], "seed": ["0", "1"], "Folds": [[0.5, 0.6], [0.7, 0.8]]})
    figures = {"class counts": plots.class_counts_bar({EVIL: 3, AMP: 4}),
               "probabilities": plots.probability_bars({EVIL: 0.7, AMP: 0.3}, EVIL),
               "bars": plots.metric_bars(runs, labels=[EVIL, AMP]), "curves": plots.learning_curves(runs),
               "roc": plots.roc_curves(runs, labels=[EVIL, AMP]),
               "confusion": plots.confusion_heatmap(runs[0], EVIL),
               "external": plots.external_bars(frame), "sweep": plots.sweep_heatmap(sweep, "dataset", "seed")}
    for chart, fig in figures.items():
        texts = chart_texts(fig)
        assert not any("<a " in text.lower() for text in texts), chart
        texts = [text.replace("<br>", " ") for text in texts]  # a tick label may be wrapped inside a name
        links = [text for text in texts if "evil.example" in text]
        entities = [text for text in texts if "x &amp" in text]
        assert links and entities, chart  # the names are in the chart ...
        assert all('&lt;a href="https:evil.example"&gt;click' in text for text in links), (chart, links)
        assert all("x &amp;amp; y" in text for text in entities), (chart, entities)  # ... as written
    # A long label still breaks onto lines, its text escaped.
    assert plots.common.wrap(f"{EVIL} · {AMP}", width=12) == \
        '&lt;a<br>href="https:evil.example"&gt;click<br>x &amp;amp; y'
