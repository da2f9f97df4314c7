"""Time to the first prediction on a fresh deployment: the shipped demo runs, nothing else.

Each demo run is copied into an empty store (no dataset drawn, no cache) and a fresh Python
process predicts one image with it, checks included (out-of-distribution, known image), as the
Predict page's first upload does. Printed per run: seconds from process start to the answer,
and the second prediction in the same process (the warm baseline), as a ratio.

Run from the repository root: python -m benchmarks.bench_fresh_predict [--runs cnn,nb]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from leukdash.engine.calibrate import machine

SHIPPED = Path(__file__).resolve().parent.parent / "artifacts" / "runs"

CHILD = """
import time, json, sys
start = time.perf_counter()
import numpy as np
from leukdash.evaluation.predict import predict_images
image = np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)
first = predict_images(sys.argv[1], [image])[0]
first_seconds = time.perf_counter() - start
start = time.perf_counter()
predict_images(sys.argv[1], [image[::-1]])
print(json.dumps({"first": first_seconds, "warm": time.perf_counter() - start,
                  "checks": [k for k in ("ood", "known") if not (first[k] or {}).get("error")]}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="", help="comma list of run id prefixes (default: every shipped run)")
    args = parser.parse_args()
    wanted = [p for p in args.runs.split(",") if p]
    runs = sorted(p.name for p in SHIPPED.iterdir() if (p / "summary.json").is_file()
                  and (not wanted or any(p.name.startswith(w) for w in wanted)))
    print(f"CPU: {machine()}")
    for run_id in runs:
        with tempfile.TemporaryDirectory() as fresh:
            shutil.copytree(SHIPPED / run_id, Path(fresh) / "runs" / run_id)
            env = {**os.environ, "LEUKDASH_ARTIFACTS": fresh}
            out = subprocess.run([sys.executable, "-c", CHILD, run_id], env=env, capture_output=True, text=True,
                                 check=True)
            timing = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{run_id}: first answer {timing['first']:.1f} s (process start included), warm "
                  f"{timing['warm']:.2f} s ({timing['first'] / timing['warm']:.0f}x); checks made: "
                  f"{', '.join(timing['checks']) or 'none'}")


if __name__ == "__main__":
    main()
