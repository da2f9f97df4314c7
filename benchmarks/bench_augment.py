"""Augmented images per second: leukdash.engine.augment (OpenCV) against Keras' ImageDataGenerator.

Both run the paper's settings in one process, on the same random uint8 images, at 128x128 and
64x64. Keras' legacy generator is timed as it was used: ``flow`` over an array, batches of 32.
A last check draws transforms with Keras, applies the same parameters with both libraries and
reports how far the images differ (grey levels), to show the two implement the same transforms.

Run from the repository root: python -m benchmarks.bench_augment [--n 2000] [--keras-n 500] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import cv2
import numpy as np

from leukdash.engine.augment import _BORDERS, _compose, augment_batch
from leukdash.config import AugmentConfig

PAPER = AugmentConfig()
KERAS_SETTINGS = dict(
    rotation_range=40, width_shift_range=0.4, height_shift_range=0.4, zoom_range=0.3,
    horizontal_flip=True, vertical_flip=True, shear_range=20, fill_mode="nearest",
)


def rates(run, n_images: int, repeats: int) -> tuple[float, float]:
    """Best and median images per second of ``run()`` over ``repeats`` timed calls."""
    seconds = []
    for repeat in range(repeats):
        start = time.perf_counter()
        run(repeat)
        seconds.append(time.perf_counter() - start)
    return n_images / min(seconds), n_images / statistics.median(seconds)


def keras_generator():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    return tf.keras.preprocessing.image.ImageDataGenerator(**KERAS_SETTINGS)


def keras_agreement(generator, size: int = 128, draws: int = 30) -> tuple[float, float]:
    """Mean and 99th-percentile |ours - Keras| (grey levels) for Keras-drawn parameters."""
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), (0, 0), 3)
    image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX)
    differences = []
    for seed in range(draws):
        p = generator.get_random_transform(image.shape, seed=seed)
        expected = generator.apply_transform(image.astype(np.float32), p)
        # Keras applies tx (drawn from height_shift_range) along x; on a square image the ranges match.
        matrix = _compose(
            theta=np.array([p["theta"]]), shift_x=np.array([p["tx"]]), shift_y=np.array([p["ty"]]),
            shear=np.array([p["shear"]]), zoom_x=np.array([p["zx"]]), zoom_y=np.array([p["zy"]]),
            flip_x=np.array([bool(p["flip_horizontal"])]), flip_y=np.array([bool(p["flip_vertical"])]),
            height=size, width=size,
        )[0]
        ours = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=_BORDERS["nearest"])
        differences.append(np.abs(ours.astype(np.float32) - expected))
    differences = np.stack(differences)
    return float(differences.mean()), float(np.percentile(differences, 99))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="images per timed leukdash call")
    parser.add_argument("--keras-n", type=int, default=500, help="images per timed Keras call (it is slow)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    generator = keras_generator()
    print(f"OpenCV {cv2.__version__}, {cv2.getNumThreads()} OpenCV threads; paper settings; "
          f"best (median) of {args.repeats} repeats")
    print(f"{'size':>7} {'leukdash img/s':>22} {'Keras IDG img/s':>20} {'ratio (best)':>13}")
    for size in (128, 64):
        images = np.random.default_rng(size).integers(0, 256, (args.n, size, size, 3), dtype=np.uint8)
        augment_batch(images[:32], PAPER, 0)  # warm-up
        ours = rates(lambda repeat: augment_batch(images, PAPER, repeat), args.n, args.repeats)

        subset = images[: args.keras_n]

        def keras_run(repeat):
            flow = generator.flow(subset, batch_size=32, shuffle=False, seed=repeat)
            for _ in range(len(flow)):
                next(flow)

        keras = rates(keras_run, len(subset), args.repeats)
        print(f"{size}x{size:<4} {ours[0]:>11,.0f} ({ours[1]:>7,.0f}) {keras[0]:>10,.0f} ({keras[1]:>6,.0f})"
              f" {ours[0] / keras[0]:>12.1f}x")
    mean, p99 = keras_agreement(generator)
    print(f"same parameters, ours vs Keras at 128x128 (nearest fill): mean |diff| {mean:.2f}, "
          f"99th percentile {p99:.2f} grey levels")


if __name__ == "__main__":
    main()
