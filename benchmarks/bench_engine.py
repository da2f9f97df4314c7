"""Engine speed: a strict 5-fold CNN run against two baselines timed in the same process.

    python -m benchmarks.bench_engine [--dataset allidb2_ufpr] [--epochs 25] [--folds 5] [--seeds 0 1 2] [--out FILE]

Prints, for the paper CNN at 64 px with x8 augmentation:
1. leukdash's whole strict run (runner.run: data, folds, per-epoch augmentation, validation,
   progress, models saved) against a *paper-literal* pipeline: Keras' ImageDataGenerator
   expands each training part x8 offline, then a float32 ``model.fit`` per fold with TensorFlow's
   default threads, as the paper's Keras code would. Target: at least 1.3x faster on every CPU
   kind (the machine is printed first) at equal or better mean accuracy.
2. the same run against plain ``model.fit`` on pre-augmented in-memory arrays of the same size,
   with the same model and compile settings: what the input pipeline and bookkeeping cost.
   Target: at most 1.25x.
3. a finished run asked again from the CLI, process start included. Target: at most 1 s.
4. predicting one image with the run's fold models once loaded. Target: at most 50 ms.
Both baselines validate on the same untouched originals of the same folds; the two runs are
also paired image by image (McNemar). With several ``--seeds`` (each draws other folds, copies
and initial weights) the contest of 1. is repeated and its totals and mean accuracies reported,
since one seed's 5-fold mean moves by a few points from seed to seed.

``--out docs/benchmarks/engine.json`` writes the figures (with the machine, the engine version and
the settings) as JSON: the README's speed block is made from that file (``python -m leukdash
report --readme``), so run it with the default settings, on a quiet machine.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from leukdash import ENGINE_VERSION
from leukdash.config import RunConfig
from leukdash.data.arrays import load_arrays
from leukdash.data.discovery import open_dataset
from leukdash.metrics import mcnemar
from leukdash.evaluation.predict import FoldEnsemble
from leukdash.engine.machine import describe_machine, machine_text
from leukdash.engine.runner import run
from leukdash.engine.store import RunStore
from leukdash.engine.fold_planning import plan_folds
from leukdash.engine.training import derived_seed

ROOT = Path(__file__).resolve().parent.parent
# The settings the README's speed block states: its data is refused when measured otherwise.
FULL = {"dataset": "allidb2_ufpr", "epochs": 25, "folds": 5}


def fold_splits(config: RunConfig):
    dataset = open_dataset(config.dataset)
    arrays = load_arrays(dataset, config.image_size)
    fold_of, fold_ids = plan_folds(config, dataset, arrays)
    for fold in fold_ids:
        train, val = fold_of != fold, fold_of == fold
        yield fold, arrays.images[train], arrays.labels[train], arrays.images[val], arrays.labels[val]


# How many TensorFlow threads the baseline uses, as engine.json records it: TensorFlow's default
# (every core), as a user's Keras script runs. Before 2026-12-05 the baseline ran in this process,
# where leukdash's build_model had pinned TensorFlow to one thread (CNN_THREADS): such a file has no
# "baseline_tf_threads" and the README's block says it measured one thread.
BASELINE_TF_THREADS = "default"


def paper_literal(config: RunConfig, n_classes: int) -> tuple[float, list[float], np.ndarray]:
    """Offline ImageDataGenerator x8, then a plain float32 fit, fold after fold, with TensorFlow's
    default threads: in a process of its own, whose thread pools start before leukdash's
    ``build_model`` could pin them.

    Returns seconds, the accuracy of each fold, and whether each validation image (in fold
    order) was classified correctly.
    """
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as process:
        return process.submit(_paper_literal_here, config, n_classes).result()


def _paper_literal_here(config: RunConfig, n_classes: int) -> tuple[float, list[float], np.ndarray]:
    import keras
    import tensorflow as tf

    tf.constant(0.0).numpy()  # the first operation starts the pools at their defaults, for good
    if tf.config.threading.get_intra_op_parallelism_threads() != 0:
        raise RuntimeError("the paper-literal baseline must run with TensorFlow's default threads")

    from leukdash.models.cnn import build_model

    started, accuracies, correct = time.perf_counter(), [], []
    for fold, x_train, y_train, x_val, y_val in fold_splits(config):
        generator = tf.keras.preprocessing.image.ImageDataGenerator(
            rotation_range=40, width_shift_range=0.4, height_shift_range=0.4, zoom_range=0.3,
            horizontal_flip=True, vertical_flip=True, shear_range=20, fill_mode="nearest")
        copies = [x_train.astype("float32")]
        flow = generator.flow(x_train.astype("float32"), batch_size=len(x_train), shuffle=False,
                              seed=derived_seed(config.seed, fold))
        copies += [next(flow) for _ in range(config.augment_factor - 1)]
        x = np.concatenate(copies)
        y = np.tile(y_train, config.augment_factor)
        model = build_model("paper", config.image_size, n_classes, seed=derived_seed(config.seed, fold))
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        model.fit(x, y, batch_size=config.batch_size, epochs=config.epochs, verbose=0)
        right = model.predict(x_val.astype("float32"), verbose=0).argmax(1) == y_val
        accuracies.append(float(np.mean(right)))
        correct.append(right)
    return time.perf_counter() - started, accuracies, np.concatenate(correct)


def plain_fit(config: RunConfig, n_classes: int) -> float:
    """Seconds spent in ``model.fit`` alone on pre-augmented uint8 arrays, leukdash's model settings."""
    import keras

    from leukdash.engine.augment import expand
    from leukdash.models import cnn

    seconds = 0.0
    for fold, x_train, y_train, _, _ in fold_splits(config):
        x, y, _ = expand(x_train, y_train, config.augment_factor, config.augment, derived_seed(config.seed, fold))
        with cnn._dtype_policy(cnn.TRAINING_POLICY):
            model = cnn.build_model("paper", config.image_size, n_classes, seed=derived_seed(config.seed, fold))
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"], steps_per_execution=cnn.STEPS_PER_EXECUTION)
        started = time.perf_counter()
        model.fit(x, y, batch_size=config.batch_size, epochs=config.epochs, shuffle=True, verbose=0)
        seconds += time.perf_counter() - started
    return seconds


def cached_cli_seconds(config: RunConfig, artifacts: Path, repeats: int = 5) -> float:
    command = [sys.executable, "-m", "leukdash", "run", config.dataset, "--model", "cnn",
               "--epochs", str(config.epochs), "--folds", str(config.folds), "--seed", str(config.seed),
               "--json", "--quiet"]
    env = {**os.environ, "LEUKDASH_ARTIFACTS": str(artifacts)}
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        out = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, check=True)
        times.append(time.perf_counter() - started)
        assert '"cached": true' in out.stdout
    return statistics.median(times)


def predict_ms(run_id: str, store: RunStore, image: np.ndarray, repeats: int = 30) -> float:
    ensemble = FoldEnsemble(run_id, store)
    ensemble.predict([image])  # warm-up: the first call traces the models
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        ensemble.predict([image])
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def contest(config: RunConfig, n_classes: int, store: RunStore) -> dict:
    """leukdash's strict run against the paper-literal baseline on the same folds (one seed)."""
    started = time.perf_counter()
    result = run(config, store=store)
    ours = time.perf_counter() - started
    folds = sorted(result["folds"], key=lambda f: f["fold"])
    # The same validation images in the same order as the baseline's (folds ascending,
    # images in dataset order within a fold), so the two can be paired image by image.
    ours_correct = np.concatenate([np.argmax(f["oof"]["proba"], axis=1) == np.asarray(f["oof"]["true"])
                                   for f in folds])
    literal, literal_folds, literal_correct = paper_literal(config, n_classes)
    paired = mcnemar(ours_correct, literal_correct)
    ours_folds = [f["val_acc"] for f in folds]
    print(f"seed {config.seed}")
    print(f"  leukdash strict run    {ours:8.1f} s   mean val_acc {np.mean(ours_folds):.4f}   "
          f"folds {' '.join(f'{a:.3f}' for a in ours_folds)}")
    print(f"  paper-literal baseline {literal:8.1f} s   mean val_acc {np.mean(literal_folds):.4f}   "
          f"folds {' '.join(f'{a:.3f}' for a in literal_folds)}")
    print(f"  paired on the same {len(ours_correct)} images: {paired['b']} right only in leukdash's run, "
          f"{paired['c']} only in the baseline's, McNemar exact p = {paired['p_value']:.3f}", flush=True)
    return {"result": result, "seed": config.seed, "ours": ours, "literal": literal, "paired": paired,
            "ours_folds": ours_folds, "literal_folds": literal_folds,
            "ours_acc": float(np.mean(ours_folds)), "literal_acc": float(np.mean(literal_folds))}


def figures(config: RunConfig, contests: list[dict], fit_only: float, cached: float, predict: float,
            command: str) -> dict:
    """What ``--out`` writes, and the README's speed block is made from: the measured figures, the
    machine, the engine version and the settings (``full``: the README's)."""
    def rounded(values):
        return [round(v, 4) for v in values]

    ours, literal = sum(c["ours"] for c in contests), sum(c["literal"] for c in contests)
    settings = {"dataset": config.dataset, "architecture": config.architecture, "image_size": config.image_size,
                "augment_factor": config.augment_factor, "epochs": config.epochs, "folds": config.folds,
                "protocol": config.protocol}
    return {
        "engine": ENGINE_VERSION, "command": command, "generated": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": describe_machine(),
        "settings": settings, "full": all(settings[key] == value for key, value in FULL.items()),
        "baseline_tf_threads": BASELINE_TF_THREADS,
        "seeds": [{"seed": c["seed"], "leukdash_seconds": round(c["ours"], 1), "literal_seconds": round(c["literal"], 1),
                   "leukdash_val_acc": round(c["ours_acc"], 4), "literal_val_acc": round(c["literal_acc"], 4),
                   "leukdash_folds": rounded(c["ours_folds"]), "literal_folds": rounded(c["literal_folds"]),
                   "mcnemar": c["paired"]} for c in contests],
        "leukdash_seconds": round(ours, 1), "literal_seconds": round(literal, 1), "speedup": round(literal / ours, 3),
        "plain_fit_seconds": round(fit_only, 1), "run_over_plain_fit": round(contests[0]["ours"] / fit_only, 3),
        "cached_cli_seconds": round(cached, 3), "predict_ms": round(predict, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="allidb2_ufpr")
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="run the speed and accuracy contest for each seed (folds, copies, weights)")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here (docs/benchmarks/engine.json)")
    args = parser.parse_args()
    config = RunConfig(dataset=args.dataset, model="cnn", epochs=args.epochs, folds=args.folds)
    n_classes = len(open_dataset(config.dataset).classes)
    # Fold times differ up to 8x between CPU kinds: every figure below is for this machine.
    print(f"machine {machine_text(describe_machine())}", flush=True)
    print(f"dataset {config.dataset}, paper CNN, {config.image_size} px, x{config.augment_factor}, "
          f"{config.epochs} epochs, {config.folds} folds, strict", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        artifacts = Path(tmp)
        os.environ["LEUKDASH_ARTIFACTS"] = str(artifacts)  # a cold store: nothing cached
        store = RunStore()
        # One-off costs every contender would pay once per process: TensorFlow's import and the
        # decoded-image cache. Paid here so that no contender is charged for them.
        import keras  # noqa: F401

        next(fold_splits(config))
        contests = [contest(config.with_changes(seed=seed), n_classes, store) for seed in args.seeds]
        first = contests[0]
        fit_only = plain_fit(config.with_changes(seed=args.seeds[0]), n_classes)
        cached = cached_cli_seconds(config.with_changes(seed=args.seeds[0]), artifacts)
        image = next(fold_splits(config))[3][0]
        predict = predict_ms(first["result"]["run_id"], store, image)

    ours, literal = sum(c["ours"] for c in contests), sum(c["literal"] for c in contests)
    print(f"over {len(contests)} seed(s): leukdash {ours:.1f} s, mean val_acc "
          f"{np.mean([c['ours_acc'] for c in contests]):.4f}; baseline {literal:.1f} s, mean val_acc "
          f"{np.mean([c['literal_acc'] for c in contests]):.4f}")
    print(f"  speed-up                {literal / ours:8.2f} x   (target >= 1.3 on every CPU kind, at equal or "
          f"better accuracy; this one: {machine_text(describe_machine())})")
    print(f"plain fit, pre-augmented {fit_only:8.1f} s   (seed {args.seeds[0]})")
    print(f"  run / plain fit         {first['ours'] / fit_only:8.2f} x   (target <= 1.25)")
    print(f"cached run from the CLI  {cached:8.2f} s   (median of 5, process start included; target <= 1)")
    print(f"predict one image        {predict:8.1f} ms  (median of 30, {config.folds} fold models; target <= 50)")
    if args.out:
        from leukdash.engine.store import write_json_atomic

        command = " ".join(["python -m benchmarks.bench_engine", *sys.argv[1:]])
        write_json_atomic(args.out, figures(config, contests, fit_only, cached, predict, command))
        print(f"figures: {args.out}")


if __name__ == "__main__":
    main()
