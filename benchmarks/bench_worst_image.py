"""Peak memory of preparing one image, for the most expensive images the decoder's limits admit.

Each candidate is as large as ``leukdash.data.decode`` allows (``MAX_PIXELS`` pixels, a file
under ``MAX_FILE_BYTES``, an aspect ratio up to ``MAX_ASPECT``) in the formats and pixel types
that decode to the most bytes. Each is decoded and prepared at 64 px (``raw`` and a cell-level
mode) in a fresh process; the process's peak resident memory (VmHWM) above what it held after
its imports is printed, with the decoded size for scale, and the largest is named.

    python benchmarks/bench_worst_image.py
"""

from __future__ import annotations

import math
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from leukdash.data.decode import MAX_ASPECT, MAX_PIXELS  # noqa: E402

SQUARE = math.isqrt(MAX_PIXELS)                 # 7071 x 7071
STRIP = (math.isqrt(MAX_PIXELS // MAX_ASPECT) * MAX_ASPECT, math.isqrt(MAX_PIXELS // MAX_ASPECT))  # 20:1, 50 MP

# name, file name, (width, height), channels, dtype (what OpenCV writes)
CANDIDATES = (
    ("8-bit RGB PNG, square", "rgb8.png", (SQUARE, SQUARE), 3, np.uint8),
    ("8-bit RGBA PNG, square", "rgba8.png", (SQUARE, SQUARE), 4, np.uint8),
    ("16-bit RGBA PNG, square", "rgba16.png", (SQUARE, SQUARE), 4, np.uint16),
    ("16-bit RGBA PNG, 20:1 strip", "strip16.png", STRIP, 4, np.uint16),
    ("8-bit RGB JPEG, square", "rgb8.jpg", (SQUARE, SQUARE), 3, np.uint8),
    ("16-bit RGB TIFF (deflate), square", "rgb16.tif", (SQUARE, SQUARE), 3, np.uint16),
    ("float32 grey TIFF (deflate), square", "gray32f.tif", (SQUARE, SQUARE), 1, np.float32),
)

MEASURE = """
import sys
sys.path.insert(0, {repo!r})
from leukdash.data.decode import decode_image
from leukdash.data.preprocess import prepare_one
def status(key):
    return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith(key)) / 1024
base = status('VmRSS')
try:
    image = decode_image({path!r})
    prepare_one(image, 64, 'raw'); prepare_one(image, 64, 'cell-keep-asis')
    outcome = 'prepared'
except Exception as error:
    outcome = f'refused: {{error}}'
print(f"{{base:.0f}}\\t{{status('VmHWM') - base:.0f}}\\t{{outcome}}")
"""


def write_candidate(path: Path, size: tuple[int, int], channels: int, dtype) -> None:
    width, height = size
    image = np.zeros((height, width, channels), dtype)
    image[::7, ::5] = np.iinfo(dtype).max // 2 if dtype != np.float32 else 0.5  # some texture, still compressible
    assert cv2.imwrite(str(path), image), path


def main() -> int:
    print(f"limits: {MAX_PIXELS:,} pixels, aspect up to {MAX_ASPECT}:1; peak memory above the imports")
    print(f"{'image':<38} {'size':>12} {'decoded':>9} {'file':>9} {'peak':>9}  outcome")
    worst = (0, "")
    with tempfile.TemporaryDirectory(prefix="leukdash-worst-") as folder:
        for name, file_name, size, channels, dtype in CANDIDATES:
            path = Path(folder) / file_name
            write_candidate(path, size, channels, dtype)
            decoded = size[0] * size[1] * channels * np.dtype(dtype).itemsize / 2**20
            out = subprocess.run([sys.executable, "-c", MEASURE.format(repo=str(REPO), path=str(path))],
                                 capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            _, peak, outcome = out.split("\t")
            print(f"{name:<38} {size[0]:>5}x{size[1]:<6} {decoded:>6,.0f} MB {path.stat().st_size / 2**20:>6,.1f} MB "
                  f"{int(peak):>6,} MB  {outcome[:60]}", flush=True)
            worst = max(worst, (int(peak), name))
            path.unlink()
    print(f"\nworst: {worst[1]}, {worst[0]:,} MB above the imports")
    return 0


if __name__ == "__main__":
    sys.exit(main())
