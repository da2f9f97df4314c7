"""This machine's cost of a fold, per kind of model, measured once: what an estimate goes by
when no similar run is stored yet.

A kind is measured by small real runs (2 folds each, on a small generated set at 64 px, the
paper's augmentation on, in a throwaway store) that differ in their work: for a classic model
two augmentation factors, which give a fixed cost per fold and a cost per unit of
:func:`leukdash.engine.estimate.fold_work`; for a CNN also two epoch counts, which separate the
cost every epoch pays whatever its images (its validation pass, its progress report).
Extrapolating from such small runs is rough, so estimates from them carry a wide range. The figures are kept in
``artifacts/calibration.json`` for this machine (CPU and cores) and these package versions;
``python -m leukdash.engine.calibrate KIND...`` measures the kinds given (``cnn/paper``, ``svm/pixels``...).
"""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from leukdash.engine.estimate import fold_work, model_kind
from leukdash.engine.store import read_json, write_json_atomic
from leukdash.paths import artifacts_root

# Images per class of the generated set, and its side in pixels.
PER_CLASS, SIDE = 48, 64
# The workloads of each kind: (epochs, augmentation factor).
CNN_POINTS, CLASSIC_POINTS = ((1, 2), (3, 2), (3, 4)), ((1, 2), (1, 6))


def machine() -> str:
    """What the figures hold for: the CPU's name and the cores."""
    name = platform.processor() or platform.machine()
    try:
        name = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{name}, {os.cpu_count()} cores"


def calibration_path() -> Path:
    return artifacts_root() / "calibration.json"


def calibrated() -> dict[str, dict]:
    """``{"cnn/paper": {"overhead": s, "rate": s per unit of work}, ...}`` measured on this machine."""
    from leukdash.engine.versions import versions

    stored = read_json(calibration_path())
    if not isinstance(stored, dict) or stored.get("machine") != machine() or stored.get("versions") != versions():
        return {}
    return stored.get("kinds") or {}


def kind_name(kind: tuple[str, str]) -> str:
    return "/".join(kind)


def measure(kinds: list[str]) -> dict[str, dict]:
    """Measure ``kinds`` (``"cnn/paper"``...) with small real runs and store the figures."""
    from leukdash.engine.versions import versions

    target = calibration_path()
    found = calibrated()
    previous = os.environ.get("LEUKDASH_ARTIFACTS")
    with tempfile.TemporaryDirectory(prefix="leukdash-calibrate-") as scratch:
        os.environ["LEUKDASH_ARTIFACTS"] = scratch  # the small runs stay out of the real store
        try:
            _measure_each(kinds, Path(scratch), found)
        finally:
            if previous is None:
                os.environ.pop("LEUKDASH_ARTIFACTS", None)
            else:
                os.environ["LEUKDASH_ARTIFACTS"] = previous
    write_json_atomic(target, {"machine": machine(), "versions": versions(), "kinds": found}, optional=True)
    return found


def _measure_each(kinds: list[str], scratch: Path, found: dict) -> None:
    from leukdash.config import RunConfig
    from leukdash.data.synthetic import CLASSES, generate_synthetic
    from leukdash.engine.runner import run

    dataset = generate_synthetic(scratch / "data", counts={c: PER_CLASS for c in CLASSES}, size=SIDE)
    for name in kinds:
        model, variant = name.split("/")
        points = []
        for epochs, factor in CNN_POINTS if model == "cnn" else CLASSIC_POINTS:
            settings = {"architecture": variant} if model == "cnn" else {"feature_set": variant}
            config = RunConfig(dataset=str(dataset), model=model, image_size=SIDE, epochs=epochs, folds=2,
                               augment_factor=factor, **settings)
            seconds = run(config, n_jobs=1)["summary"]["seconds"]["mean"]
            points.append((epochs, fold_work(config.to_dict(), len(CLASSES) * PER_CLASS), seconds))
        found[name] = fit(points)


def fit(points: list[tuple[int, float, float]]) -> dict:
    """``overhead``, ``epoch_overhead`` and ``rate`` from (epochs, work, seconds) of small runs:
    two with the same epochs and different work give the rate; a third with other epochs, the
    cost per epoch. A busy machine can make a larger run look quicker: the rate stays positive."""
    (e1, w1, s1), (e2, w2, s2) = points[-2:]
    rate = max((s2 - s1) / (w2 - w1), 1e-12) if w2 != w1 else s2 / w2
    per_epoch = 0.0
    if len(points) == 3:
        e0, w0, s0 = points[0]
        per_epoch = max(0.0, ((s1 - s0) - rate * (w1 - w0)) / (e1 - e0))
    return {"overhead": max(0.0, s2 - e2 * per_epoch - rate * w2), "epoch_overhead": per_epoch, "rate": rate}


def uncalibrated(configs: list[dict]) -> list[str]:
    """The kinds of ``configs`` this machine has no figures for."""
    return sorted({kind_name(model_kind(c)) for c in configs} - set(calibrated()))


def _marker() -> Path:
    return artifacts_root() / "calibration.running"


def measuring() -> bool:
    """Whether a measurement started in the last ten minutes is still at work.

    A marker dated more than ten minutes ahead (the clock was set back since it was written) is as
    stale as one ten minutes old: otherwise it would hold every measurement off until that date.
    """
    marker = _marker()
    return marker.is_file() and abs(time.time() - marker.stat().st_mtime) < 600


def start_measuring(kinds: list[str]) -> None:
    """Measure ``kinds`` in a background process (unless a measurement is at work already)."""
    if not kinds or measuring():
        return
    _marker().parent.mkdir(parents=True, exist_ok=True)
    _marker().write_text(" ".join(kinds))
    subprocess.Popen([sys.executable, "-m", "leukdash.engine.calibrate", *kinds], start_new_session=True,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main(kinds: list[str]) -> int:
    """Measure ``kinds`` as a command (the dashboard's background measurement); return its exit status.

    SIGTERM and SIGHUP (the measurement ended from outside) unwind like Ctrl-C, so that its scratch
    store (a generated set and its cache) is removed on the way out, as is the marker.
    """
    from leukdash import interrupts

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupts.stop)
    # A stop landing in a weakref callback (TensorFlow's, while a CNN is measured) is raised again at the
    # next batch: only its one line below is said.
    sys.unraisablehook = interrupts.quiet_unraisable(sys.unraisablehook)
    try:
        measure(kinds)
    except KeyboardInterrupt as stopped:
        by = stopped.args[0] if isinstance(stopped, interrupts.Stopped) else "Ctrl-C"
        print(f"calibration stopped by {by}: nothing measured is kept", file=sys.stderr)
        return 1
    finally:
        _marker().unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
