"""Time the generation of the built-in synthetic set (default: 903 images at 128x128).

    python benchmarks/bench_synthetic.py [--size 128] [--n-jobs 2] [--seed 0]

Prints the wall time and images per second; the target is at most 30 s for the default set
on a 2-core machine.
"""

import argparse
import tempfile
import time
from pathlib import Path

from leukdash.data.synthetic import DEFAULT_COUNTS, generate_synthetic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    total = sum(DEFAULT_COUNTS.values())
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        generate_synthetic(Path(tmp), seed=args.seed, size=args.size, n_jobs=args.n_jobs)
        seconds = time.perf_counter() - start
    print(f"synthetic: {total} images at {args.size}x{args.size}, n_jobs={args.n_jobs}: "
          f"{seconds:.2f} s, {total / seconds:.1f} images/s")


if __name__ == "__main__":
    main()
