"""Peak memory of ``python -m leukdash run`` against the number of images (tiny 8x8 PNGs).

For each count, a dataset of that many 8x8 PNGs in two classes is written to a temporary folder
and ``python -m leukdash run FOLDER --model MODEL --folds 3 --augment-factor K --n-jobs JOBS`` runs on it over an
empty store (nothing cached: decoding, the near-duplicate search, the array cache and every fold
are all inside the measurement). The resident memory (RSS, from /proc: Linux) of the command
and every process it starts is summed every ``--every`` seconds; the peak is printed per count.
The images are tiny so that what is measured is what the engine holds per image, not the cost
of decoding large files. Exit status 1 when the largest count's peak exceeds ``--target-mb``.

    python benchmarks/bench_dataset_memory.py [--counts 1000,5000,20000] [--model nb] [--n-jobs 1]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from benchmarks.measure_memory import MB, Sampler  # noqa: E402  (the same process-tree sampler)


def write_tiny_dataset(folder: Path, count: int, seed: int = 0) -> None:
    """``count`` random 8x8 PNGs, half in class A (reddish), half in class B (bluish)."""
    rng = np.random.default_rng(seed)
    for label, tint in (("A", (0, 0, 60)), ("B", (60, 0, 0))):  # BGR
        (folder / label).mkdir(parents=True)
        for i in range(count // 2):
            image = np.clip(rng.integers(0, 196, (8, 8, 3)) + np.array(tint), 0, 255).astype(np.uint8)
            cv2.imwrite(str(folder / label / f"{i:06d}.png"), image)


def measure(count: int, model: str, n_jobs: int, factor: int, every: float) -> tuple[float, float, int]:
    """Peak summed RSS (MB), seconds and exit status of one ``leukdash run`` on ``count`` images."""
    with tempfile.TemporaryDirectory(prefix="leukdash-datamem-") as tmp:
        data = Path(tmp) / f"tiny{count}"
        write_tiny_dataset(data, count)
        env = {**os.environ, "LEUKDASH_ARTIFACTS": str(Path(tmp) / "artifacts")}
        started = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, "-m", "leukdash", "run", str(data), "--model", model, "--folds", "3",
             "--augment-factor", str(factor), "--n-jobs", str(n_jobs), "--quiet"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE)
        sampler = Sampler(process.pid, every)
        sampler.start()
        _, stderr = process.communicate()
        sampler.stop.set()
        sampler.join()
        if process.returncode:
            print(stderr.decode(errors="replace")[-2000:], file=sys.stderr)
        return sampler.peak / MB, time.monotonic() - started, process.returncode


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default="1000,5000,20000", help="comma list of image counts")
    parser.add_argument("--model", default="nb")
    parser.add_argument("--n-jobs", type=int, default=1)
    parser.add_argument("--augment-factor", type=int, default=1,
                        help="K copies of every training image: the training set, and its memory, grows K times")
    parser.add_argument("--every", type=float, default=0.05, help="sampling interval in seconds")
    parser.add_argument("--target-mb", type=float, default=1000, help="the largest count's peak must stay below")
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    print(f"leukdash run --model {args.model} --folds 3 --augment-factor {args.augment_factor} "
          f"--n-jobs {args.n_jobs}, 8x8 PNGs, "
          f"{os.cpu_count()} cores ({cpu_name()})")
    print(f"{'images':>8}  {'peak RSS':>9}  {'seconds':>7}")
    peak = 0.0
    for count in counts:
        peak, seconds, status = measure(count, args.model, args.n_jobs, args.augment_factor, args.every)
        print(f"{count:>8,}  {peak:>6,.0f} MB  {seconds:>7.1f}" + (f"  (exit {status})" if status else ""),
              flush=True)
        if status:
            return 1
    return 0 if peak <= args.target_mb else 1


if __name__ == "__main__":
    sys.exit(main())
