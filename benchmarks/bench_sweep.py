"""One sweep against today's separate jobs: wall time, and identical folds on a Dask cluster.

The sweep: 2 CNN runs (paper, leukdash) + 8 classic runs (naive Bayes, SVM, 3-NN, decision tree
on raw pixels and on engineered features) on allidb2_ufpr, ALL vs HEALTHY, strict protocol, the
reproduce matrix's settings (64 px, x8 augmentation, 5 folds). Measured back to back, each from
an empty store (its own LEUKDASH_ARTIFACTS):

- ``sweep``: ``python -m leukdash sweep`` (every fold of every run one task in one pool);
- ``jobs``: the 10 runs as 10 ``python -m leukdash run`` processes started at once;
- ``serial``: the same 10 processes one after another;
- ``dask``: the sweep on a local Dask cluster of 2 single-threaded workers started with the
  ``dask`` command line; its folds must equal the local sweep's.

    LEUKDASH_DATA=/work/shared/data python benchmarks/bench_sweep.py [--quick | --epochs N] [--out FILE]

``--matrix binary`` (or ``five``, ``all``) measures instead the ``reproduce`` matrix, that half
of it or all, computed from an empty store in two ways back to back: as one sweep (what
``reproduce`` does now) and run after run, each with its own pool (what it did before), and
checks that every fold is identical.

``--scaling`` prints the predicted wall time of the runs in a store, or of the full ``reproduce``
matrix from its ``report.json``, on 1 to 32 workers (:func:`leukdash.engine.timing.predict_walls`;
the README's table is generated from the report data by ``python -m leukdash report``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from leukdash.config import RunConfig  # noqa: E402
from leukdash.engine.timing import WORKER_COUNTS, predict_walls  # noqa: E402
from leukdash.reporting.matrix import BINARY_CLASSES, CLASSIC_MODELS  # noqa: E402

MODES = ("sweep", "jobs", "serial", "dask")


def configs(dataset: str, epochs: int, image_size: int) -> list[RunConfig]:
    base = RunConfig(dataset=dataset, classes=BINARY_CLASSES, image_size=image_size, augment_factor=8, folds=5,
                     epochs=epochs, protocol="strict")
    return [*(base.with_changes(model="cnn", architecture=a) for a in ("paper", "leukdash")),
            *(base.with_changes(model=m, feature_set=f) for f in ("pixels", "features") for m in CLASSIC_MODELS)]


def _env(store: Path) -> dict:
    return {**os.environ, "LEUKDASH_ARTIFACTS": str(store), "PYTHONPATH": str(ROOT)}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "leukdash", *args]


def _config_file(config: RunConfig, folder: Path, index: int) -> Path:
    path = folder / f"config{index}.json"
    path.write_text(json.dumps(config.to_dict()))
    return path


def _sweep_args(config_list: list[RunConfig], dataset: str, epochs: int, image_size: int) -> list[str]:
    # The grid model x architecture x feature set: the canonical forms leave the 10 runs.
    return ["sweep", dataset, "--classes", ",".join(BINARY_CLASSES), "--model", "cnn," + ",".join(CLASSIC_MODELS),
            "--architecture", "paper,leukdash", "--feature-set", "pixels,features", "--epochs", str(epochs),
            "--image-size", str(image_size), "--protocol", "strict", "--json", "--quiet"]


def measure(mode: str, config_list: list[RunConfig], work: Path, sweep_args: list[str]) -> tuple[float, dict]:
    """Wall seconds of one mode from an empty store, and its folds by run id."""
    store = work / mode / "artifacts"
    store.mkdir(parents=True)
    env = _env(store)
    started = time.perf_counter()
    if mode in ("sweep", "dask"):
        extra = []
        if mode == "dask":
            from leukdash.engine.scheduler import dask_cli_cluster

            cluster = dask_cli_cluster(work / mode / "cluster", n_workers=2)
            address, _ = cluster.__enter__()
            started = time.perf_counter()  # the cluster's start-up is not the sweep's
            extra = ["--scheduler", address]
        try:
            out = subprocess.run(_cli(*sweep_args, *extra), env=env, cwd=ROOT, capture_output=True, text=True)
        finally:
            if mode == "dask":
                cluster.__exit__(None, None, None)
        if out.returncode:
            raise SystemExit(f"{mode} failed: {out.stderr[-2000:]}")
        runs = json.loads(out.stdout)["runs"]
    else:
        commands = [_cli("run", "--config-file", str(_config_file(c, work / mode, i)), "--json", "--quiet")
                    for i, c in enumerate(config_list)]
        if mode == "jobs":
            jobs = [subprocess.Popen(c, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                    for c in commands]
            outputs = [job.communicate() for job in jobs]
        else:
            outputs = []
            for command in commands:
                done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
                outputs.append((done.stdout, done.stderr))
        runs = [json.loads(stdout) for stdout, _ in outputs]
    seconds = time.perf_counter() - started
    return seconds, {run["run_id"]: run["folds"] for run in runs}


def without_times(folds: dict) -> dict:
    """Fold results by run id without their durations: what must be identical across modes."""
    return {run_id: [{k: v for k, v in fold.items() if k != "seconds"} for fold in run_folds]
            for run_id, run_folds in folds.items()}


def predict_modes(folds: dict, cores: int) -> dict:
    """Predicted walls of run after run (each run's folds on ``cores`` workers, the next run
    after) and of one sweep (every fold on ``cores`` workers), from measured fold times;
    start-up and loading left out."""
    seconds = {run_id: [fold["seconds"] for fold in run_folds] for run_id, run_folds in folds.items()}
    serial = sum(predict_walls(times, cores)["wall"] for times in seconds.values())
    sweep = predict_walls([t for times in seconds.values() for t in times], cores)["wall"]
    return {"cores": cores, "serial": round(serial, 1), "sweep": round(sweep, 1), "ratio": round(sweep / serial, 3)}


def matrix_configs(task: str) -> list[RunConfig]:
    """The full ``reproduce`` matrix's configs: ``binary`` or ``five`` for one half, ``all``."""
    from leukdash.reporting.matrix import FIVE_CLASS_DEFAULT, FULL, REAL_BINARY, experiments

    return [e.config for e in experiments(REAL_BINARY, FIVE_CLASS_DEFAULT, FULL) if task in ("all", e.task)]


def compute_matrix(task: str, way: str) -> dict:
    """Compute a matrix half in this process (the store: ``$LEUKDASH_ARTIFACTS``) and return its
    folds by run id: ``sweep`` as one sweep, ``runs`` one :func:`leukdash.engine.runner.run` after another."""
    from leukdash.engine.runner import run
    from leukdash.engine.sweep import run_sweep

    config_list = matrix_configs(task)
    results = (run_sweep(config_list, name=f"matrix {task}")["results"] if way == "sweep"
               else [run(config) for config in config_list])
    return {result["run_id"]: result["folds"] for result in results}


def measure_matrix(task: str, way: str, work: Path) -> tuple[float, dict]:
    """Wall seconds of one way of computing a matrix half from an empty store, and its folds."""
    store = work / f"matrix-{way}" / "artifacts"
    store.mkdir(parents=True)
    started = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, "--matrix", task, "--compute", way], env=_env(store), cwd=ROOT,
                         capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if out.returncode:
        raise SystemExit(f"matrix {way} failed: {out.stderr[-2000:]}")
    return seconds, json.loads(out.stdout.splitlines()[-1])


def stored_fold_seconds(store_root: Path | None = None) -> list[float]:
    """Fold times of every complete run in a store (default: the repository's)."""
    from leukdash.engine.runner import load_result
    from leukdash.engine.store import RunStore

    store = RunStore(store_root)
    return [fold["seconds"] for entry in store.list_runs() if entry["status"] == "complete"
            for fold in (load_result(entry["run_id"], store) or {"folds": []})["folds"]]


def report_fold_seconds(report: Path) -> list[float]:
    """Fold times of every run in a report's data (``docs/report/report.json``)."""
    return [seconds for run in json.loads(report.read_text())["runs"] for seconds in run["fold_seconds"]]


def scaling_table(task_seconds: list[float], counts=WORKER_COUNTS) -> str:
    rows = [predict_walls(task_seconds, n) for n in counts]
    lines = [f"{len(task_seconds)} fold tasks, {sum(task_seconds) / 60:.0f} min in all, "
             f"longest (critical path) {max(task_seconds) / 60:.1f} min",
             f"{'workers':>7} {'predicted wall':>15} {'speed-up':>9}"]
    for row in rows:
        lines.append(f"{row['workers']:>7} {row['wall'] / 60:>13.1f} m {rows[0]['wall'] / row['wall']:>8.1f}x")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="allidb2_ufpr")
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="3 epochs at 32 px: a short variant")
    parser.add_argument("--modes", default=",".join(MODES), help="comma list of " + ", ".join(MODES))
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    parser.add_argument("--matrix", choices=("binary", "five", "all"),
                        help="measure the reproduce matrix (that half, or all) as a sweep against run after run")
    parser.add_argument("--compute", choices=("sweep", "runs"), help=argparse.SUPPRESS)  # one way, in a child
    parser.add_argument("--scaling", type=Path, metavar="REPORT_JSON_OR_STORE",
                        help="only print the predicted walls from a report.json or a run store")
    args = parser.parse_args()
    if args.scaling:
        seconds = report_fold_seconds(args.scaling) if args.scaling.is_file() else stored_fold_seconds(args.scaling)
        print(scaling_table(seconds))
        return
    if args.compute:
        print(json.dumps(compute_matrix(args.matrix, args.compute)))
        return
    from leukdash.engine.machine import describe_machine, machine_text

    print(f"on {machine_text(describe_machine())} (times depend on the CPU kind)", flush=True)
    if args.matrix:
        figures = {"matrix": args.matrix, "n_runs": len(matrix_configs(args.matrix)), "cores": os.cpu_count(),
                   "load_before": os.getloadavg()}
        with tempfile.TemporaryDirectory(prefix="bench-matrix-") as work:
            found = {}
            for way in ("sweep", "runs"):
                seconds, found[way] = measure_matrix(args.matrix, way, Path(work))
                figures[way] = round(seconds, 1)
                print(f"{way:<7} {seconds:8.1f} s  (load {os.getloadavg()[0]:.1f})", flush=True)
        figures["sweep_vs_runs"] = round(figures["sweep"] / figures["runs"], 3)
        figures["folds_identical"] = without_times(found["sweep"]) == without_times(found["runs"])
        print(f"sweep / run after run: {figures['sweep_vs_runs']:.2f}; per-fold results identical: "
              f"{figures['folds_identical']}")
        if args.out:
            args.out.write_text(json.dumps(figures, indent=1))
        return
    epochs, size = (3, 32) if args.quick else (args.epochs, args.image_size)
    config_list = configs(args.dataset, epochs, size)
    sweep_args = _sweep_args(config_list, args.dataset, epochs, size)
    figures = {"epochs": epochs, "image_size": size, "cores": os.cpu_count(), "load_before": os.getloadavg()}
    folds = {}
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as work:
        for mode in args.modes.split(","):
            seconds, folds[mode] = measure(mode, config_list, Path(work), sweep_args)
            figures[mode] = round(seconds, 1)
            print(f"{mode:<7} {seconds:8.1f} s  (load {os.getloadavg()[0]:.1f})", flush=True)
    baselines = [figures[m] for m in ("jobs", "serial") if m in figures]
    if "sweep" in figures and baselines:
        figures["sweep_vs_best_baseline"] = round(figures["sweep"] / min(baselines), 3)
        print(f"sweep / best of jobs, serial: {figures['sweep_vs_best_baseline']:.2f} (target <= 0.8)")
    reference = folds.get("sweep")
    for mode, found in folds.items():
        if reference is not None and mode != "sweep":
            same = without_times(found) == without_times(reference)
            figures[f"{mode}_folds_identical"] = same
            print(f"{mode}: per-fold results identical to the sweep's: {same}")
    if reference is not None:
        # What more cores would change, from this sweep's fold times (measured here, two at a time).
        figures["predicted"] = [predict_modes(reference, cores) for cores in (2, 4, 8, 16)]
        for row in figures["predicted"]:
            print(f"predicted on {row['cores']:>2} cores: run after run {row['serial']:7.1f} s, "
                  f"sweep {row['sweep']:7.1f} s, ratio {row['ratio']:.2f}")
    if args.out:
        args.out.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
