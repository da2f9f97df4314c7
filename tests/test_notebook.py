"""The README's Python example (a notebook's cells) runs as written, and gives the runs the CLI gives."""

import json
import re
import subprocess
import sys

import plotly.graph_objects as go

from leukdash.paths import REPO_ROOT


def _python_example() -> str:
    section = (REPO_ROOT / "README.md").read_text().split("## From Python (a notebook)", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```python\n(.*?)```", section, re.S)
    return block


def test_the_readme_python_example_runs_and_its_runs_are_the_clis(tmp_path, monkeypatch, capsys, seed_builtin):
    store = seed_builtin(tmp_path / "store")
    monkeypatch.setenv("LEUKDASH_ARTIFACTS", str(store))
    shown = []
    monkeypatch.setattr(go.Figure, "show", lambda figure, *args, **kwargs: shown.append(figure))
    names = {}
    exec(compile(_python_example(), "README.md", "exec"), names)

    svm, nb, folds = names["svm"], names["nb"], names["folds"]
    assert not svm["cached"] and len(svm["folds"]) == 5 and 0 <= svm["summary"]["val_acc"]["mean"] <= 1
    assert len(folds) == 10 and sorted(set(folds["Fold"])) == [1, 2, 3, 4, 5]
    (figure,) = shown  # a bar per run at its mean (and the paper's figures beside them)
    drawn = {x for trace in figure.data for x in trace.x}
    assert {svm["summary"]["val_acc"]["mean"], nb["summary"]["val_acc"]["mean"]} <= drawn
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith(svm["run_id"])
    assert re.fullmatch(r".+ vs .+ McNemar p = 0?\.?[0-9.e-]+", printed[1])
    assert printed[2] in svm["dataset"]["classes"]

    # The CLI, in the same store, answers the notebook's run from the store: same id, same folds.
    cli = subprocess.run([sys.executable, "-m", "leukdash", "run", "synthetic", "--model", "svm", "--image-size", "32",
                          "--augment-factor", "2", "--json", "--quiet"], cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=120)
    assert cli.returncode == 0, cli.stderr
    answer = json.loads(cli.stdout)
    assert answer["run_id"] == svm["run_id"] and answer["cached"]
    # (--json leaves out each fold's out-of-fold probabilities; the notebook's result holds them.)
    assert answer["folds"] == [{k: v for k, v in fold.items() if k != "oof"} for fold in svm["folds"]]


def test_numpy_numbers_are_the_settings_they_hold():
    # A notebook's values come from np.arange, np.linspace or a DataFrame cell.
    import numpy as np

    from leukdash.config import AugmentConfig, RunConfig, stable_hash

    numpy_made = RunConfig(model="cnn", image_size=np.int64(32), folds=np.int32(3), seed=np.uint8(2),
                           learning_rate=np.float64(0.01), augment=AugmentConfig(rotation=np.int64(10),
                                                                                  vertical_flip=np.bool_(False)))
    numpy_made.validate()
    plain = RunConfig(model="cnn", image_size=32, folds=3, seed=2, learning_rate=0.01,
                      augment=AugmentConfig(rotation=10.0, vertical_flip=False))
    assert numpy_made == plain and stable_hash(numpy_made.canonical()) == stable_hash(plain.canonical())
    assert type(numpy_made.image_size) is int and type(numpy_made.augment.vertical_flip) is bool


def test_python_callers_get_one_clear_error_for_what_the_command_line_refuses(tiny_dataset):
    import numpy as np
    import pytest

    from leukdash.config import RunConfig
    from leukdash.data.decode import decode_image
    from leukdash.engine.runner import run
    from leukdash.errors import ConfigError, ImageDecodeError
    from leukdash.evaluation.predict import predict_files, predict_images

    config = RunConfig(dataset=tiny_dataset, model="nb", image_size=16, augment_factor=1, folds=2)
    for wrong in (-1, 0, 1.5, "2", True):  # -1 is "every core" to joblib: here it is refused, not one core
        with pytest.raises(ConfigError, match=r"^n_jobs must be a whole number of cores, at least 1"):
            run(config, n_jobs=wrong)
    run_id = run(config, n_jobs=1)["run_id"]

    path = sorted(tiny_dataset.glob("ALL/*.png"))[0]
    image = decode_image(path)
    (by_file,) = predict_files(run_id, [path])
    assert predict_files(run_id, str(path)) == [by_file] == predict_files(run_id, path)  # one path, given bare
    assert predict_images(run_id, [image])[0]["probabilities"] == by_file["probabilities"]
    # Arrays that are not RGB uint8 were cast silently (a float image in [0, 1] became black) or raised
    # from numpy: each is one error that says what an image must be.
    for wrong in (image / 255.0, image.astype(np.uint16) * 257, image[..., 0], np.dstack([image, image[..., :1]]),
                  image.transpose(2, 0, 1), image[:0]):
        with pytest.raises(ImageDecodeError, match=r"^an image must be an RGB array of shape \(height, width, 3\) "
                                                   r"and dtype uint8, got "):
            predict_images(run_id, [wrong])
    with pytest.raises(ImageDecodeError, match=r"for one image, give \[image\]"):
        predict_images(run_id, image)


def test_a_run_on_a_relative_folder_finds_its_images_after_a_change_of_folder(tmp_path, monkeypatch):
    # A notebook that trains on "tiny" and later %cd's to a folder holding another "tiny".
    from leukdash.config import RunConfig
    from leukdash.data.synthetic import generate_synthetic
    from leukdash.engine.final import refit
    from leukdash.engine.runner import run
    from leukdash.evaluation.predict import predict_files

    for lab, seed in (("first", 1), ("second", 2)):
        generate_synthetic(tmp_path / lab / "tiny", seed=seed, counts={"ALL": 6, "HEALTHY": 6}, size=24)
    monkeypatch.chdir(tmp_path / "first")
    run_id = run(RunConfig(dataset="tiny", model="knn", image_size=16, augment_factor=1, folds=2), n_jobs=1)["run_id"]
    image = sorted((tmp_path / "first" / "tiny" / "ALL").glob("*.png"))[0]
    monkeypatch.chdir(tmp_path / "second")
    (answer,) = predict_files(run_id, [image])
    # Both checks read the first folder (the second's images would read as the run's dataset changed).
    assert "error" not in answer["ood"] and answer["known"]["fold"] in (0, 1), (answer["ood"], answer["known"])
    assert refit(run_id)["run_id"] == run_id  # trained on the first folder's images, as the run was


def test_a_runs_result_given_where_its_id_is_expected_is_named_as_such(tiny_dataset):
    # plots take results, compare and predict take ids: mixing them up gave a message of kilobytes.
    import pytest

    from leukdash.config import RunConfig
    from leukdash.engine.runner import run
    from leukdash.errors import RunError
    from leukdash.evaluation.compare import compare_runs
    from leukdash.evaluation.predict import predict_files

    result = run(RunConfig(dataset=tiny_dataset, model="nb", image_size=16, augment_factor=1, folds=2), n_jobs=1)
    for call in (lambda: compare_runs([result]), lambda: predict_files(result, [])):
        with pytest.raises(RunError) as refused:
            call()
        assert str(refused.value) == ("invalid run id: a run's result was given where its id is expected; give its "
                                      f"['run_id'] ({result['run_id']})")
    with pytest.raises(RunError, match=r"^invalid run id 'x{100}") as invalid:  # an invalid id: named, in brief
        compare_runs(["x" * 5000 + "/"])
    assert len(str(invalid.value)) < 300


def test_a_run_of_the_readme_python_example_keeps_its_checks_once_its_folder_changes(tiny_dataset, inverted_lab,
                                                                                    tmp_path):
    """The README's `run` stores what the checks need of a run's images as it finishes, as the CLI's does:
    an image added to its folder afterwards takes none of it away."""
    import shutil

    from leukdash.config import RunConfig
    from leukdash.evaluation.evaluate import evaluate
    from leukdash.evaluation.predict import predict_files

    (imported,) = [line for line in _python_example().splitlines() if line.endswith(" import run")]
    names = {}
    exec(imported, names)
    folder = shutil.copytree(tiny_dataset, tmp_path / "mine")
    run_id = names["run"](RunConfig(dataset=str(folder), model="nb", image_size=16, augment_factor=1, folds=2),
                          n_jobs=1)["run_id"]
    image = sorted(folder.glob("ALL/*.png"))[0]
    shutil.copy(image, folder / "ALL" / "added.png")
    (answer,) = predict_files(run_id, [image])
    assert "error" not in answer["ood"] and answer["known"]["match"] == "identical", (answer["ood"], answer["known"])
    assert evaluate(run_id, str(inverted_lab))["n_images"] == 40
