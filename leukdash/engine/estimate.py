"""How long a set of runs will take, from the stored fold times of similar finished runs.

A fold's cost is taken to grow with the pixels it trains on: training images (after
augmentation) x image side squared, times the epochs for a CNN. Each finished run in the store
gives a rate (seconds per unit of that work) for its kind of model; a planned run is estimated
with the median rate of the finished runs of its kind whose work is within :data:`NEAR` times its
own, and its range spans their lowest and highest rates. A rate has no fixed cost per fold in it:
a tiny run's fold is mostly that cost, and a run thousands of times its work, estimated with its
rate, came out 35 to 150 times too long. A run with no finished run of its kind that near goes
by this machine's calibration
(:mod:`leukdash.engine.calibrate`: a fixed cost per fold and per epoch plus a rate, from small
runs), with a range of a third to three times that: on ALL-IDB2 (64 px, x8, 25 epochs, 2 shared
cores) a 3-NN on pixels took 0.97x its calibrated time and the leukdash CNN 2.2x. It is a rough
guide, not a promise: an SVM's cost grows faster than linearly in the images, and a busy
machine is slower.

To the folds' time it adds what runs pay before their first fold, as earlier runs measured it
(:func:`leukdash.engine.timing.start_up`): loading the images of each run, one run after another,
while the worker processes start (importing TensorFlow takes seconds) side by side with it. On a
small run it is most of the time: a 2-fold, 1-epoch CNN at 16 px on the built-in set took 17 s
(2 shared cores of an Intel Xeon), its workers 13 s to start and its two folds 4 s side by side.
"""

from __future__ import annotations

from statistics import median


def model_kind(config: dict) -> tuple[str, str]:
    """What makes fold times comparable: the model, and its architecture or its input."""
    if config["model"] == "cnn":
        return "cnn", config.get("architecture", "paper")
    return config["model"], config.get("feature_set", "pixels")


def fold_work(config: dict, n_images: int) -> float:
    """Relative work of one fold of ``config`` on a task of ``n_images`` images."""
    folds = config.get("folds") or 5
    train = n_images * (folds - 1) / folds if config.get("test_fraction") is None \
        else n_images * (1 - config["test_fraction"])
    augmented = (config.get("augment_factor") or 1) > 1 and any(
        value for key, value in (config.get("augment") or {}).items() if key != "fill_mode")
    if augmented:
        train *= config["augment_factor"]
    work = max(train, 1.0) * config["image_size"] ** 2
    return work * config.get("epochs", 1) if config["model"] == "cnn" else work


# How far an estimate from calibration may be off, either way (small runs extrapolated).
CALIBRATED_SPREAD = 3.0
# Widening of the range spanned by similar runs' rates (a single run spans nothing).
RUNS_SPREAD = 1.25
# How many times more (or less) work than a finished run's a planned run may have and still go by its rate.
NEAR = 4.0


def rate_samples(entries: list[dict]) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """Every finished run's work of a fold and seconds per unit of that work, by model kind."""
    found: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for entry in entries:
        meta, summary = entry.get("meta") or {}, entry.get("summary") or {}
        seconds = (summary.get("seconds") or {}).get("mean")
        config, n_images = meta.get("config"), (meta.get("dataset") or {}).get("n_used")
        if not (isinstance(seconds, (int, float)) and config and n_images):
            continue
        work = fold_work(config, n_images)
        found.setdefault(model_kind(config), []).append((work, seconds / work))
    return found


def start_up_seconds(planned: list[dict], start_up: dict | None) -> float:
    """Seconds before the first fold of ``planned`` (as in :func:`estimate`) starts: every run with
    folds to compute loads its images, one after another, while the first workers start (a CNN's,
    if any CNN is planned: those start first); 0 without such figures (:func:`leukdash.engine.timing.start_up`).
    A run marked ``"started"`` has paid its loading and its workers' start-up already: it adds none."""
    todo = [run for run in planned if run["missing_folds"] > 0 and not run.get("started")]
    if not todo or not start_up:
        return 0.0
    loading = start_up.get("load_per_image", 0.0) * sum(run["n_images"] for run in todo)
    first = "cnn" if any(run["config"]["model"] == "cnn" for run in todo) else "classic"
    return max(loading, (start_up.get("worker") or {}).get(first, 0.0))


def estimate(planned: list[dict], entries: list[dict], workers: int | None = None,
             calibrated: dict[str, dict] | None = None, start_up: dict | None = None) -> dict:
    """Estimate the time of the folds still to compute, with a range.

    Parameters
    ----------
    planned : one dict per run: ``{"config": RunConfig.to_dict(), "n_images": images in its task,
        "missing_folds": folds not yet stored}``, and ``"started": True`` for a run already computing
        (its folds are still to pay, its start-up is not).
    entries : the store's runs (``RunStore.list_runs()``), the source of the fold times (of the runs
        of a kind within :data:`NEAR` times a planned run's work).
    workers : folds computed at once (default: as many of each run's kind as the local pool computes
        side by side, :func:`~leukdash.engine.scheduler.capacity.folds_at_once`); stored fold times were
        measured with folds sharing the cores the same way.
    calibrated : this machine's figures by kind (``"cnn/paper"``: ``{"overhead", "rate"}``, see
        :func:`leukdash.engine.calibrate.calibrated`), for runs without a finished run that near.
    start_up : earlier runs' fixed costs (:func:`leukdash.engine.timing.start_up`), see
        :func:`start_up_seconds`.

    Returns
    -------
    dict with ``fold_seconds`` (sum over the missing folds of the runs that have an estimate),
    ``start_up_seconds``, ``seconds`` (the folds' sum spread over ``workers``, after the start-up),
    ``low`` and ``high`` (the range of ``seconds``: the start-up is measured, the folds' time spread),
    ``estimated`` (runs with an estimate and folds to compute), ``calibrated`` (of
    those, estimated from the calibration) and ``unknown`` (runs with folds to compute and
    neither a similar finished run near their work nor a calibration).
    """
    from leukdash.engine.scheduler.capacity import folds_at_once

    samples, calibrated = rate_samples(entries), calibrated or {}
    # Folds of each kind side by side: once per kind, not per run (the budget reads the machine's memory).
    at_once = {cnn: max(1, workers or folds_at_once(cnn)) for cnn in (False, True)}
    total = spread = low = high = 0.0  # spread, low, high: each run's folds over the workers of its kind
    estimated = from_calibration = unknown = 0
    for run in planned:
        if run["missing_folds"] <= 0:
            continue
        kind, work = model_kind(run["config"]), fold_work(run["config"], run["n_images"])
        values = [rate for done, rate in samples.get(kind, ()) if done / NEAR <= work <= done * NEAR]
        if values:
            fold = median(values) * work
            fold_low, fold_high = min(values) * work / RUNS_SPREAD, max(values) * work * RUNS_SPREAD
        elif "/".join(kind) in calibrated:
            figures = calibrated["/".join(kind)]
            epochs = run["config"].get("epochs", 1) if run["config"]["model"] == "cnn" else 0
            fold = figures["overhead"] + epochs * figures.get("epoch_overhead", 0.0) + figures["rate"] * work
            fold_low, fold_high = fold / CALIBRATED_SPREAD, fold * CALIBRATED_SPREAD
            from_calibration += 1
        else:
            unknown += 1
            continue
        side_by_side = at_once[run["config"]["model"] == "cnn"]
        total += fold * run["missing_folds"]
        spread += fold * run["missing_folds"] / side_by_side
        low += fold_low * run["missing_folds"] / side_by_side
        high += fold_high * run["missing_folds"] / side_by_side
        estimated += 1
    fixed = start_up_seconds(planned, start_up)
    return {"fold_seconds": total, "start_up_seconds": fixed, "seconds": fixed + spread,
            "low": fixed + low, "high": fixed + high,
            "estimated": estimated, "calibrated": from_calibration, "unknown": unknown}
