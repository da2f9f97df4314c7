"""The drawing surface of one smear field: stain concentration maps with their textures, and
the shapes cells are made of (sub-pixel outlines, discs, lines), drawn with OpenCV.

:mod:`.smear` turns the concentrations into colour by the Beer-Lambert law.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Stains as optical density per unit concentration (R, G, B): -ln(transmitted fraction).
EOSIN, AZURE, BLUE, EOSIN_GRANULE = range(4)
STAIN_OD = np.array([
    [0.10, 0.55, 0.42],  # eosin: pink red cells, pink-lilac neutrophil cytoplasm
    [0.85, 1.25, 0.45],  # azure (with eosin, purple): nuclei, azurophilic and basophil granules
    [0.55, 0.38, 0.12],  # methylene blue: basophilic (blue) cytoplasm of lymphocytes and blasts
    [0.08, 0.75, 1.00],  # eosinophil granules: orange-red
], dtype=np.float32)


def _noise_field(rng: np.random.Generator, side: int, sigma_px: float) -> np.ndarray:
    """Smooth Gaussian noise with unit standard deviation and a grain of ``sigma_px``."""
    # Draw the grain on a coarse grid and enlarge it: same look, far cheaper than a wide blur.
    step = max(1.0, sigma_px / 2.0)
    small = max(4, int(round(side / step)))
    field = rng.standard_normal((small, small)).astype(np.float32)
    field = cv2.GaussianBlur(field, (0, 0), sigma_px / step)
    field = cv2.resize(field, (side, side), interpolation=cv2.INTER_LINEAR)
    return (field - field.mean()) / (field.std() + 1e-6)


class Canvas:
    """Stain concentration maps of one field at the drawing resolution, and its textures."""

    def __init__(self, side: int, px_per_um: float, rng: np.random.Generator):
        self.side = side
        self.um = px_per_um
        self.conc = np.zeros((side, side, len(STAIN_OD)), np.float32)
        self.fine = _noise_field(rng, side, 0.3 * px_per_um)    # fine chromatin grain
        self.coarse = _noise_field(rng, side, 0.9 * px_per_um)  # chromatin clumps

    def patch(self, x: float, y: float, radius: float) -> Patch | None:
        x0, y0 = max(0, int(x - radius) - 1), max(0, int(y - radius) - 1)
        x1, y1 = min(self.side, int(x + radius) + 2), min(self.side, int(y + radius) + 2)
        if x1 <= x0 or y1 <= y0:
            return None
        return Patch(self, x0, y0, x1, y1, x - x0, y - y0)


@dataclass
class Patch:
    """A window of the canvas around one cell; shapes are drawn in its local coordinates."""

    canvas: Canvas
    x0: int
    y0: int
    x1: int
    y1: int
    cx: float  # the cell centre, local
    cy: float

    @property
    def shape(self) -> tuple[int, int]:
        return self.y1 - self.y0, self.x1 - self.x0

    @property
    def fine(self) -> np.ndarray:
        return self.canvas.fine[self.y0:self.y1, self.x0:self.x1]

    @property
    def coarse(self) -> np.ndarray:
        return self.canvas.coarse[self.y0:self.y1, self.x0:self.x1]

    def add(self, stain: int, amount: np.ndarray | float) -> None:
        self.canvas.conc[self.y0:self.y1, self.x0:self.x1, stain] += amount

    def blank(self) -> np.ndarray:
        return np.zeros(self.shape, np.uint8)


def outline(rng, x, y, radius, irregular=0.04, aspect=1.0, harmonics=4, n=48) -> np.ndarray:
    """Points of a closed, slightly irregular, elliptical outline (local pixel coordinates)."""
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    k = np.arange(2, harmonics + 2)[:, None]
    amplitude = rng.normal(0.0, irregular, size=(len(k), 1)) / np.sqrt(k - 1)
    phase = rng.uniform(0, 2 * np.pi, size=(len(k), 1))
    r = radius * (1.0 + (amplitude * np.cos(k * t + phase)).sum(axis=0))
    angle = rng.uniform(0, np.pi)
    ex, ey = r * np.cos(t) * np.sqrt(aspect), r * np.sin(t) / np.sqrt(aspect)
    return np.stack([x + ex * np.cos(angle) - ey * np.sin(angle),
                     y + ex * np.sin(angle) + ey * np.cos(angle)], axis=1)


def fill(mask: np.ndarray, points: np.ndarray) -> np.ndarray:
    # 4 fractional bits: sub-pixel outlines, so small nuclei keep their shape.
    cv2.fillPoly(mask, [np.round(points * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    return mask


def circle(mask: np.ndarray, x: float, y: float, r: float) -> None:
    cv2.circle(mask, (int(round(x * 16)), int(round(y * 16))), max(1, int(round(r * 16))),
               255, -1, cv2.LINE_AA, shift=4)


def line(mask: np.ndarray, a, b, width: float) -> None:
    cv2.line(mask, (int(round(a[0] * 16)), int(round(a[1] * 16))),
             (int(round(b[0] * 16)), int(round(b[1] * 16))),
             255, max(1, int(round(width))), cv2.LINE_AA, shift=4)


def fraction(mask: np.ndarray) -> np.ndarray:
    return mask.astype(np.float32) * (1.0 / 255.0)


def in_disc(rng, n: int, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points uniform in a disc of ``radius`` around the origin."""
    r = radius * np.sqrt(rng.uniform(0, 1, n))
    t = rng.uniform(0, 2 * np.pi, n)
    return r * np.cos(t), r * np.sin(t)
