"""The built-in ``synthetic`` dataset: drawn blood-smear fields, synthetic demo data, not clinical.

Each image is one field of a Wright/Giemsa-stained smear: red cells and the white cells of its
class, drawn with OpenCV as stain concentration maps and turned into colour by the Beer-Lambert
law (transmitted light = background * exp(-optical density)). The five classes differ only in
cell morphology, as a hematologist would describe it:

- HEALTHY: normal red cells and one normal white cell (segmented neutrophil or small lymphocyte);
- ALL: lymphoblasts: medium-large round cells, very high nucleus-to-cytoplasm ratio, fine
  chromatin, visible nucleoli, a thin rim of blue cytoplasm;
- AML: myeloblasts: larger, more cytoplasm, nucleoli, fine granules, Auer rods in some;
- CLL: several small mature lymphocytes with dense clumped chromatin, and smudge cells;
- CML: many granulocytes at different stages (myelocytes, metamyelocytes, bands, segmented),
  with basophils and eosinophils.

Everything about the acquisition (stain hue and strength, brightness, background tint,
illumination, red-cell density, magnification, blur and noise) is drawn per image from one
distribution shared by every class, so colour and background carry no label.

Images are drawn at ``SUPERSAMPLE`` times the output size and reduced with area averaging,
which anti-aliases the small structures (granules, nucleoli, chromatin filaments). Image ``i`` of
class ``c`` uses the random stream ``default_rng([seed, c, i])``, so the set is deterministic
for a seed and any image can be drawn on its own, in any order or process.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from filelock import FileLock

from leukdash.data.dataset import SYNTHETIC_LABEL
from leukdash.errors import ConfigError
from leukdash.paths import artifacts_root

CLASSES = ("ALL", "AML", "CLL", "CML", "HEALTHY")
DEFAULT_COUNTS = {"ALL": 179, "AML": 179, "CLL": 185, "CML": 185, "HEALTHY": 175}

# Bump whenever a change here changes the pixels: the cached copy is then drawn again.
GENERATOR_VERSION = "2"
SUPERSAMPLE = 2

# Stains as optical density per unit concentration (R, G, B): -ln(transmitted fraction).
EOSIN, AZURE, BLUE, EOSIN_GRANULE = range(4)
STAIN_OD = np.array([
    [0.10, 0.55, 0.42],  # eosin: pink red cells, pink-lilac neutrophil cytoplasm
    [0.85, 1.25, 0.45],  # azure (with eosin, purple): nuclei, azurophilic and basophil granules
    [0.55, 0.38, 0.12],  # methylene blue: basophilic (blue) cytoplasm of lymphocytes and blasts
    [0.08, 0.75, 1.00],  # eosinophil granules: orange-red
], dtype=np.float32)


# --------------------------------------------------------------------------- acquisition


@dataclass(frozen=True)
class _Acquisition:
    """How one image was stained and photographed; drawn without looking at the class."""

    px_per_um: float       # at the drawing (supersampled) resolution
    stain_od: np.ndarray   # (4, 3) the stains of this slide
    background: np.ndarray  # (3,) brightness and tint of the empty glass, in [0, 1]
    vignette: float        # relative darkening towards the corners
    vignette_centre: tuple[float, float]
    rbc_coverage: float    # fraction of the field covered by red cells
    blur_sigma: float      # in output pixels
    noise_sigma: float     # in 8-bit levels


def _draw_acquisition(rng: np.random.Generator, size: int) -> _Acquisition:
    # At 128 px the field is 40-55 um wide (a red cell is 7.5 um), like a 100x oil crop.
    px_per_um = rng.uniform(2.3, 3.2) * size / 128 * SUPERSAMPLE
    # Per-channel hue shift shared by all stains (Wright bluer/pinker), each stain's own shift,
    # and an overall stain strength.
    shared_hue = np.exp(rng.normal(0.0, 0.08, size=3))
    own_hue = np.exp(rng.normal(0.0, 0.07, size=(len(STAIN_OD), 3)))
    strength = np.exp(rng.normal(0.0, 0.15))
    stain_od = (STAIN_OD * shared_hue * own_hue * strength).astype(np.float32)
    brightness = rng.uniform(0.80, 0.97)
    tint = np.exp(rng.normal(0.0, 0.02, size=3))
    background = np.clip(brightness * tint / tint.max(), 0, 1)
    return _Acquisition(
        px_per_um=float(px_per_um),
        stain_od=stain_od,
        background=background.astype(np.float32),
        vignette=float(rng.uniform(0.0, 0.15)),
        vignette_centre=(float(rng.uniform(0.2, 0.8)), float(rng.uniform(0.2, 0.8))),
        rbc_coverage=float(rng.uniform(0.15, 0.55)),
        blur_sigma=float(rng.uniform(0.3, 1.1) * size / 128),
        noise_sigma=float(rng.uniform(1.0, 4.5)),
    )


# --------------------------------------------------------------------------- drawing canvas


def _noise_field(rng: np.random.Generator, side: int, sigma_px: float) -> np.ndarray:
    """Smooth Gaussian noise with unit standard deviation and a grain of ``sigma_px``."""
    # Draw the grain on a coarse grid and enlarge it: same look, far cheaper than a wide blur.
    step = max(1.0, sigma_px / 2.0)
    small = max(4, int(round(side / step)))
    field = rng.standard_normal((small, small)).astype(np.float32)
    field = cv2.GaussianBlur(field, (0, 0), sigma_px / step)
    field = cv2.resize(field, (side, side), interpolation=cv2.INTER_LINEAR)
    return (field - field.mean()) / (field.std() + 1e-6)


class _Canvas:
    """Stain concentration maps of one field at the drawing resolution, and its textures."""

    def __init__(self, side: int, px_per_um: float, rng: np.random.Generator):
        self.side = side
        self.um = px_per_um
        self.conc = np.zeros((side, side, len(STAIN_OD)), np.float32)
        self.fine = _noise_field(rng, side, 0.3 * px_per_um)    # fine chromatin grain
        self.coarse = _noise_field(rng, side, 0.9 * px_per_um)  # chromatin clumps

    def patch(self, x: float, y: float, radius: float) -> _Patch | None:
        x0, y0 = max(0, int(x - radius) - 1), max(0, int(y - radius) - 1)
        x1, y1 = min(self.side, int(x + radius) + 2), min(self.side, int(y + radius) + 2)
        if x1 <= x0 or y1 <= y0:
            return None
        return _Patch(self, x0, y0, x1, y1, x - x0, y - y0)


@dataclass
class _Patch:
    """A window of the canvas around one cell; shapes are drawn in its local coordinates."""

    canvas: _Canvas
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


def _outline(rng, x, y, radius, irregular=0.04, aspect=1.0, harmonics=4, n=48) -> np.ndarray:
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


def _fill(mask: np.ndarray, points: np.ndarray) -> np.ndarray:
    # 4 fractional bits: sub-pixel outlines, so small nuclei keep their shape.
    cv2.fillPoly(mask, [np.round(points * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    return mask


def _circle(mask: np.ndarray, x: float, y: float, r: float) -> None:
    cv2.circle(mask, (int(round(x * 16)), int(round(y * 16))), max(1, int(round(r * 16))),
               255, -1, cv2.LINE_AA, shift=4)


def _line(mask: np.ndarray, a, b, width: float) -> None:
    cv2.line(mask, (int(round(a[0] * 16)), int(round(a[1] * 16))),
             (int(round(b[0] * 16)), int(round(b[1] * 16))),
             255, max(1, int(round(width))), cv2.LINE_AA, shift=4)


def _float(mask: np.ndarray) -> np.ndarray:
    return mask.astype(np.float32) * (1.0 / 255.0)


def _in_disc(rng, n: int, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points uniform in a disc of ``radius`` around the origin."""
    r = radius * np.sqrt(rng.uniform(0, 1, n))
    t = rng.uniform(0, 2 * np.pi, n)
    return r * np.cos(t), r * np.sin(t)


# --------------------------------------------------------------------------- cell parts


def _cell_body(p: _Patch, rng, radius, irregular=0.035) -> np.ndarray:
    return _float(_fill(p.blank(), _outline(rng, p.cx, p.cy, radius, irregular,
                                            aspect=rng.uniform(1.0, 1.15))))


def _cytoplasm(p: _Patch, body: np.ndarray, nucleus: np.ndarray, **stains: float) -> None:
    """Colour the cell outside its nucleus: keyword = stain name, value = concentration."""
    area = body * (1.0 - nucleus)
    for name, value in stains.items():
        p.add(_STAIN_BY_NAME[name], area * value)


def _chromatin(p: _Patch, nucleus: np.ndarray, density: float, fine: float, clumps: float) -> None:
    """Nuclear stain: ``fine`` grain for blasts, ``clumps`` for condensed (mature) chromatin."""
    texture = 1.0 + fine * p.fine + clumps * np.tanh(2.0 * p.coarse)
    p.add(AZURE, nucleus * density * np.clip(texture, 0.25, None))


def _nucleoli(p: _Patch, rng, x, y, nucleus_r, count: int, density: float) -> None:
    """Pale blue-grey rounded spots inside a nucleus, each with a thin darker rim."""
    um = p.canvas.um
    for dx, dy in zip(*_in_disc(rng, count, 0.45 * nucleus_r)):
        r = rng.uniform(0.55, 1.0) * um
        spot = _float(_fill(p.blank(), _outline(rng, x + dx, y + dy, r, 0.06, n=20)))
        rim = _float(_fill(p.blank(), _outline(rng, x + dx, y + dy, r + 0.25 * um, 0.0, n=20))) - spot
        p.add(AZURE, -0.5 * density * spot + 0.25 * density * rim)
        p.add(BLUE, 0.4 * spot)


def _granules(p: _Patch, rng, count: int, spread: float, radius_um: tuple[float, float],
              stain: int, density: float, avoid: np.ndarray | None = None) -> None:
    """Round granules scattered over a disc of ``spread`` px around the cell centre."""
    um = p.canvas.um
    mask = p.blank()
    h, w = mask.shape
    for dx, dy in zip(*_in_disc(rng, count, spread)):
        x, y = p.cx + dx, p.cy + dy
        inside = 0 <= int(y) < h and 0 <= int(x) < w
        if avoid is not None and inside and avoid[int(y), int(x)] > 0.5:
            continue
        _circle(mask, x, y, rng.uniform(*radius_um) * um)
    p.add(stain, _float(mask) * density)


def _lobes(p: _Patch, rng, centres, lobe_r: float, irregular=0.08) -> np.ndarray:
    """A nucleus made of lobes joined by thin chromatin filaments (segmented forms)."""
    mask = p.blank()
    for x, y in centres:
        _fill(mask, _outline(rng, x, y, lobe_r * rng.uniform(0.85, 1.1), irregular, rng.uniform(1.0, 1.5)))
    for a, b in zip(centres[:-1], centres[1:]):
        _line(mask, a, b, max(1.0, 0.35 * p.canvas.um))
    return _float(mask)


def _arc_points(p: _Patch, rng, count: int, radius: float, span_deg: float) -> list:
    start = rng.uniform(0, 360)
    angles = np.radians(start + np.linspace(0, span_deg, count))
    return [(p.cx + radius * np.cos(a), p.cy + radius * np.sin(a)) for a in angles]


# --------------------------------------------------------------------------- white cells
# Each takes the canvas, a stream, the centre and the diameter in um (drawn by _CELL_TYPES).


def _lymphocyte(c: _Canvas, rng, x, y, d_um, clumped=False) -> None:
    """Small mature lymphocyte: round dense nucleus filling the cell, thin sky-blue rim."""
    r = d_um * c.um / 2
    p = c.patch(x, y, r * 1.3)
    if p is None:
        return
    body = _cell_body(p, rng, r)
    off = _in_disc(rng, 1, 0.12 * r)
    nucleus = _float(_fill(p.blank(), _outline(rng, p.cx + off[0][0], p.cy + off[1][0],
                                               r * rng.uniform(0.78, 0.86), 0.05, rng.uniform(1.0, 1.15))))
    _cytoplasm(p, body, nucleus, blue=rng.uniform(0.5, 0.7))
    # CLL cells show the coarse "soccer-ball" block chromatin.
    _chromatin(p, nucleus, rng.uniform(1.2, 1.35), fine=0.08,
               clumps=rng.uniform(0.3, 0.4) if clumped else rng.uniform(0.15, 0.22))


def _cll_lymphocyte(c: _Canvas, rng, x, y, d_um) -> None:
    _lymphocyte(c, rng, x, y, d_um, clumped=True)


def _lymphoblast(c: _Canvas, rng, x, y, d_um) -> None:
    """Lymphoblast: nucleus ~90% of the cell, fine chromatin, nucleoli, thin deep-blue rim."""
    r = d_um * c.um / 2
    p = c.patch(x, y, r * 1.3)
    if p is None:
        return
    body = _cell_body(p, rng, r, irregular=0.03)
    nr = r * rng.uniform(0.84, 0.9)
    mask = _fill(p.blank(), _outline(rng, p.cx, p.cy, nr, 0.04, rng.uniform(1.0, 1.2)))
    if rng.random() < 0.3:  # a nuclear cleft or indentation in some
        t = rng.uniform(0, 2 * np.pi)
        cleft = p.blank()
        _circle(cleft, p.cx + nr * np.cos(t), p.cy + nr * np.sin(t), 0.3 * nr)
        mask = cv2.subtract(mask, cleft)
    nucleus = _float(mask)
    _cytoplasm(p, body, nucleus, blue=rng.uniform(0.9, 1.15))
    _chromatin(p, nucleus, rng.uniform(0.8, 0.95), fine=0.14, clumps=0.03)
    _nucleoli(p, rng, p.cx, p.cy, nr, int(rng.integers(1, 3)), 0.85)


def _myeloblast(c: _Canvas, rng, x, y, d_um) -> None:
    """Myeloblast: large, more cytoplasm, fine chromatin, 2-4 nucleoli, fine granules, Auer rods."""
    r = d_um * c.um / 2
    p = c.patch(x, y, r * 1.3)
    if p is None:
        return
    body = _cell_body(p, rng, r, irregular=0.04)
    nr = r * rng.uniform(0.62, 0.74)
    ox, oy = _in_disc(rng, 1, r - nr)
    nx, ny = p.cx + 0.6 * ox[0], p.cy + 0.6 * oy[0]
    nucleus = _float(_fill(p.blank(), _outline(rng, nx, ny, nr, 0.04, rng.uniform(1.0, 1.2))))
    _cytoplasm(p, body, nucleus, blue=rng.uniform(0.65, 0.85), eosin=0.08)
    _granules(p, rng, int(rng.integers(8, 25)), 0.9 * r, (0.15, 0.25), AZURE, 0.6, avoid=nucleus)
    _chromatin(p, nucleus, rng.uniform(0.75, 0.9), fine=0.14, clumps=0.03)
    _nucleoli(p, rng, nx, ny, nr, int(rng.integers(2, 5)), 0.8)
    if rng.random() < 0.4:  # Auer rods: thin red-purple needles in the cytoplasm
        for _ in range(int(rng.integers(1, 3))):
            t = rng.uniform(0, 2 * np.pi)
            reach = nr + 0.5 * (r - nr)
            mx, my = nx + reach * np.cos(t), ny + reach * np.sin(t)
            half = rng.uniform(1.5, 3.0) * c.um
            u = t + np.pi / 2 + rng.normal(0, 0.3)
            rod = p.blank()
            _line(rod, (mx - half * np.cos(u), my - half * np.sin(u)),
                  (mx + half * np.cos(u), my + half * np.sin(u)), 0.45 * c.um)
            rod = _float(rod) * body
            p.add(AZURE, 0.55 * rod)
            p.add(EOSIN, 1.3 * rod)


def _granulocyte_cytoplasm(p: _Patch, rng, body, nucleus, r, blue=0.0) -> None:
    """Pink-lilac cytoplasm dusted with fine granules (neutrophil lineage)."""
    _cytoplasm(p, body, nucleus, eosin=rng.uniform(0.35, 0.45), azure=0.08, blue=blue)
    _granules(p, rng, int(rng.integers(30, 60)), 0.9 * r, (0.15, 0.25), AZURE, 0.35, avoid=nucleus)


def _neutrophil(c: _Canvas, rng, x, y, d_um) -> None:
    """Segmented neutrophil: 3-5 dense lobes joined by filaments, pink-lilac granular cytoplasm."""
    r = d_um * c.um / 2
    p = c.patch(x, y, r * 1.3)
    if p is None:
        return
    body = _cell_body(p, rng, r)
    centres = _arc_points(p, rng, int(rng.integers(3, 6)), 0.42 * r, rng.uniform(180, 280))
    nucleus = _lobes(p, rng, centres, 0.24 * r) * body
    _granulocyte_cytoplasm(p, rng, body, nucleus, r)
    _chromatin(p, nucleus, rng.uniform(1.2, 1.35), fine=0.08, clumps=0.2)


def _band(c: _Canvas, rng, x, y, d_um) -> None:
    """Band form: an unsegmented horseshoe nucleus of even width."""
    r = d_um * c.um / 2
    p = c.patch(x, y, r * 1.3)
    if p is None:
        return
    body = _cell_body(p, rng, r)
    mask = p.blank()
    start = rng.uniform(0, 360)
    cv2.ellipse(mask, (int(round(p.cx * 16)), int(round(p.cy * 16))),
                (int(0.45 * r * 16), int(0.38 * r * 16)), rng.uniform(0, 180), start,
                start + rng.uniform(200, 270), 255, max(1, int(0.28 * r)), cv2.LINE_AA, shift=4)
    nucleus = _float(mask) * body
    _granulocyte_cytoplasm(p, rng, body, nucleus, r)
    _chromatin(p, nucleus, rng.uniform(1.15, 1.3), fine=0.08, clumps=0.18)


def _metamyelocyte(c: _Canvas, rng, x, y, d_um) -> None:
    """Metamyelocyte: kidney-shaped (indented) nucleus."""
    r = d_um * c.um / 2
    p = c.patch(x, y, r * 1.3)
    if p is None:
        return
    body = _cell_body(p, rng, r)
    nr = r * rng.uniform(0.5, 0.58)
    t = rng.uniform(0, 2 * np.pi)
    nx, ny = p.cx - 0.15 * r * np.cos(t), p.cy - 0.15 * r * np.sin(t)
    mask = _fill(p.blank(), _outline(rng, nx, ny, nr, 0.04, rng.uniform(1.2, 1.5)))
    notch = p.blank()
    _circle(notch, nx + 0.95 * nr * np.cos(t), ny + 0.95 * nr * np.sin(t), 0.5 * nr)
    nucleus = _float(cv2.subtract(mask, notch)) * body
    _granulocyte_cytoplasm(p, rng, body, nucleus, r)
    _chromatin(p, nucleus, rng.uniform(1.05, 1.2), fine=0.1, clumps=0.15)


def _myelocyte(c: _Canvas, rng, x, y, d_um) -> None:
    """Myelocyte: round eccentric nucleus, no nucleoli, abundant granular lilac cytoplasm."""
    r = d_um * c.um / 2
    p = c.patch(x, y, r * 1.3)
    if p is None:
        return
    body = _cell_body(p, rng, r)
    nr = r * rng.uniform(0.52, 0.62)
    t = rng.uniform(0, 2 * np.pi)
    nx, ny = p.cx + 0.3 * r * np.cos(t), p.cy + 0.3 * r * np.sin(t)
    nucleus = _float(_fill(p.blank(), _outline(rng, nx, ny, nr, 0.04, rng.uniform(1.0, 1.3)))) * body
    _granulocyte_cytoplasm(p, rng, body, nucleus, r, blue=0.2)
    _chromatin(p, nucleus, rng.uniform(0.95, 1.1), fine=0.12, clumps=0.12)


def _eosinophil(c: _Canvas, rng, x, y, d_um) -> None:
    """Eosinophil: bilobed nucleus, cytoplasm packed with coarse orange-red granules."""
    r = d_um * c.um / 2
    p = c.patch(x, y, r * 1.3)
    if p is None:
        return
    body = _cell_body(p, rng, r)
    lobes = _arc_points(p, rng, 2, 0.38 * r, rng.uniform(70, 130))
    nucleus = _lobes(p, rng, lobes, 0.3 * r) * body
    _cytoplasm(p, body, nucleus, eosin=0.25)
    _granules(p, rng, int(rng.integers(70, 110)), 0.92 * r, (0.4, 0.55), EOSIN_GRANULE, 1.1, avoid=nucleus)
    _chromatin(p, nucleus, rng.uniform(1.15, 1.3), fine=0.08, clumps=0.2)


def _basophil(c: _Canvas, rng, x, y, d_um) -> None:
    """Basophil: lobed nucleus half hidden under large dark blue-purple granules."""
    r = d_um * c.um / 2
    p = c.patch(x, y, r * 1.3)
    if p is None:
        return
    body = _cell_body(p, rng, r)
    lobes = _arc_points(p, rng, 2, 0.25 * r, rng.uniform(60, 120))
    nucleus = _lobes(p, rng, lobes, 0.35 * r) * body
    _cytoplasm(p, body, nucleus, eosin=0.2, azure=0.12)
    _chromatin(p, nucleus, rng.uniform(0.9, 1.05), fine=0.08, clumps=0.1)
    _granules(p, rng, int(rng.integers(30, 55)), 0.9 * r, (0.45, 0.7), AZURE, 1.3)


def _smudge(c: _Canvas, rng, x, y, d_um) -> None:
    """Smudge cell: a ragged, pale, streaky patch of crushed nuclear material, no cytoplasm."""
    r = d_um * c.um / 2
    p = c.patch(x, y, r * 1.5)
    if p is None:
        return
    outline = _outline(rng, p.cx, p.cy, r, irregular=0.18, aspect=rng.uniform(1.1, 1.8), harmonics=9, n=64)
    smear = _float(_fill(p.blank(), outline))
    strands = p.blank()
    for _ in range(int(rng.integers(4, 9))):
        a = np.array([p.cx, p.cy]) + rng.normal(0, 0.4 * r, 2)
        b = a + rng.normal(0, 0.6 * r, 2)
        _line(strands, a, b, max(1.0, 0.3 * c.um))
    smear = cv2.GaussianBlur(smear, (0, 0), 0.4 * c.um)
    texture = np.clip(1.0 + 0.35 * p.coarse + 0.2 * p.fine, 0.3, None)
    p.add(AZURE, smear * rng.uniform(0.4, 0.55) * texture + _float(strands) * smear * 0.3)


@dataclass(frozen=True)
class _CellType:
    diameter_um: tuple[float, float]
    draw: Callable


_CELL_TYPES = {
    "small_lymphocyte": _CellType((7.5, 9.5), _lymphocyte),
    "cll_lymphocyte": _CellType((7.5, 9.5), _cll_lymphocyte),
    "lymphoblast": _CellType((11.0, 16.0), _lymphoblast),
    "myeloblast": _CellType((15.0, 20.0), _myeloblast),
    "neutrophil": _CellType((11.5, 14.0), _neutrophil),
    "band": _CellType((11.5, 14.0), _band),
    "metamyelocyte": _CellType((11.5, 15.0), _metamyelocyte),
    "myelocyte": _CellType((13.0, 17.0), _myelocyte),
    "eosinophil": _CellType((12.5, 16.0), _eosinophil),
    "basophil": _CellType((10.5, 13.5), _basophil),
    "smudge": _CellType((9.0, 15.0), _smudge),
}
_STAIN_BY_NAME = {"eosin": EOSIN, "azure": AZURE, "blue": BLUE}


# --------------------------------------------------------------------------- classes


def _white_cells(label: str, rng: np.random.Generator) -> list[str]:
    """The white cells of one field of a class (red cells are added for every class alike)."""
    if label == "HEALTHY":
        return ["neutrophil" if rng.random() < 0.6 else "small_lymphocyte"]
    if label == "ALL":
        return ["lymphoblast"] * int(rng.choice([1, 2, 3], p=[0.45, 0.35, 0.2]))
    if label == "AML":
        return ["myeloblast"] * int(rng.choice([1, 2], p=[0.6, 0.4]))
    if label == "CLL":
        cells = ["cll_lymphocyte"] * int(rng.integers(3, 7))
        return cells + ["smudge"] * int(rng.choice([0, 1, 2], p=[0.2, 0.55, 0.25]))
    # CML: a left-shifted granulocyte series plus basophils and/or eosinophils.
    stages = ["myelocyte", "metamyelocyte", "band", "neutrophil"]
    cells = [str(stage) for stage in rng.choice(stages, size=int(rng.integers(3, 6)))]
    extra = rng.choice(["basophil", "eosinophil", "both"], p=[0.35, 0.35, 0.3])
    return cells + (["basophil", "eosinophil"] if extra == "both" else [str(extra)])


def _place(rng, diameters_px: list[float], side: int) -> list[tuple[float, float, float]]:
    """``(x, y, radius)`` of the white cells, biggest first and near the middle of the crop, the
    others anywhere, barely touching at most; a cell that finds no room is dropped."""
    placed: list[tuple[float, float, float]] = []
    for d in diameters_px:
        r = d / 2
        for _ in range(60):
            if not placed:
                x, y = side / 2 + rng.uniform(-0.18, 0.18, 2) * side
            else:
                x, y = rng.uniform(0.05, 0.95, 2) * side
            if all(np.hypot(x - px, y - py) > 0.9 * (r + pr) for px, py, pr in placed):
                placed.append((x, y, r))
                break
    return placed


def _red_cells(c: _Canvas, rng, coverage: float, white: list[tuple[float, float, float]]) -> None:
    """Scatter discocytes with central pallor over the free glass, touching or slightly overlapping."""
    mean_r = 3.75 * c.um
    n_target = int(coverage * c.side ** 2 / (np.pi * mean_r ** 2))
    centres: list[tuple[float, float]] = []
    for x, y in rng.uniform(-mean_r, c.side + mean_r, size=(n_target * 6, 2)):
        if len(centres) >= n_target:
            break
        if any(np.hypot(x - wx, y - wy) < wr + 0.8 * mean_r for wx, wy, wr in white):
            continue
        if centres:
            near = np.hypot(*(np.asarray(centres) - (x, y)).T)
            if near.min() < 1.75 * mean_r:
                continue
        centres.append((x, y))
    for x, y in centres:
        r = mean_r * rng.uniform(0.92, 1.08)
        p = c.patch(x, y, r * 1.2)
        if p is None:
            continue
        body = _float(_fill(p.blank(), _outline(rng, p.cx, p.cy, r, 0.02, rng.uniform(1.0, 1.12))))
        yy, xx = np.ogrid[:p.shape[0], :p.shape[1]]
        d2 = ((xx - p.cx) ** 2 + (yy - p.cy) ** 2) / r ** 2
        pallor = rng.uniform(0.45, 0.7) * np.exp(-d2 / 0.16)
        p.add(EOSIN, body * rng.uniform(0.75, 0.9) * (1.0 - pallor))


def _develop(c: _Canvas, acq: _Acquisition, size: int, rng) -> np.ndarray:
    """Concentrations -> transmitted light -> camera: optics blur, illumination, noise."""
    od = c.conc.reshape(-1, c.conc.shape[-1]) @ acq.stain_od
    light = np.exp(-od).reshape(c.side, c.side, 3)
    light = cv2.resize(light, (size, size), interpolation=cv2.INTER_AREA)
    light = cv2.GaussianBlur(light, (0, 0), acq.blur_sigma)
    yy, xx = np.ogrid[:size, :size]
    cx, cy = acq.vignette_centre
    falloff = 1.0 - acq.vignette * (((xx / size - cx) ** 2 + (yy / size - cy) ** 2) / 0.5)
    lamp = (acq.background * 255.0) * falloff[..., None].astype(np.float32)
    image = light * lamp + rng.standard_normal(light.shape, dtype=np.float32) * acq.noise_sigma
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


def render_smear(label: str, rng: np.random.Generator, size: int = 128) -> np.ndarray:
    """Draw one smear field of class ``label`` as an RGB uint8 image of ``size`` x ``size``."""
    if label not in CLASSES:
        raise ConfigError(f"unknown synthetic class {label!r}: expected one of {', '.join(CLASSES)}")
    if size < 16:
        raise ConfigError(f"synthetic image size {size} is too small: at least 16 pixels")
    acq = _draw_acquisition(rng, size)
    canvas = _Canvas(size * SUPERSAMPLE, acq.px_per_um, rng)
    kinds = _white_cells(label, rng)
    diameters = [rng.uniform(*_CELL_TYPES[k].diameter_um) for k in kinds]
    order = np.argsort(diameters)[::-1]
    placed = _place(rng, [diameters[i] * canvas.um for i in order], canvas.side)
    _red_cells(canvas, rng, acq.rbc_coverage, placed)
    for i, (x, y, _) in zip(order, placed):
        _CELL_TYPES[kinds[i]].draw(canvas, rng, x, y, diameters[i])
    return _develop(canvas, acq, size, rng)


# --------------------------------------------------------------------------- the dataset on disk


def _check_counts(counts: dict | None) -> dict[str, int]:
    counts = dict(DEFAULT_COUNTS if counts is None else counts)
    for name, n in counts.items():
        if name not in CLASSES:
            raise ConfigError(f"unknown synthetic class {name!r}: expected one of {', '.join(CLASSES)}")
        if int(n) < 0:
            raise ConfigError(f"synthetic count for {name} must be >= 0, got {n}")
    return {name: int(counts[name]) for name in CLASSES if name in counts}


def _write_class_chunk(out_dir: Path, seed: int, label: str, indices: range, size: int) -> None:
    class_idx = CLASSES.index(label)
    for i in indices:
        image = render_smear(label, np.random.default_rng([seed, class_idx, i]), size)
        path = out_dir / label / f"{label}_{i + 1:04d}.png"
        if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
            raise OSError(f"could not write {path}")


def _source_text(seed: int, size: int, counts: dict[str, int]) -> str:
    rows = "\n".join(f"| {name} | {n} |" for name, n in counts.items())
    return f"""# synthetic: {SYNTHETIC_LABEL}

Generated by leukdash (`leukdash.data.synthetic`), generator version: {GENERATOR_VERSION}.
These are drawn images, {SYNTHETIC_LABEL}: no patient, no microscope. They exist so the
dashboard can be tried without real data; no result on them says anything about leukemia.

- seed: {seed}
- size: {size}x{size} pixels, RGB PNG (drawn at {SUPERSAMPLE}x and reduced by area averaging)
- total: {sum(counts.values())} images

| class | images |
|---|---:|
{rows}

## How the classes are drawn
Each image is one field of a Wright/Giemsa-like smear: stain concentration maps drawn with
OpenCV (red cells, white cells, nuclei, chromatin texture, nucleoli, granules), turned into
colour with the Beer-Lambert law. The classes differ only in morphology:

- HEALTHY: normal red cells and one normal white cell (segmented neutrophil or small lymphocyte).
- ALL: 1-3 lymphoblasts: medium-large round cells, nucleus ~90% of the cell, fine chromatin,
  1-2 visible nucleoli, a thin rim of deep-blue cytoplasm.
- AML: 1-2 myeloblasts: larger, more cytoplasm, fine chromatin, 2-4 nucleoli, fine azurophilic
  granules, Auer rods in about 40% of cells.
- CLL: 3-6 small mature lymphocytes with dense clumped chromatin, and smudge cells in most fields.
- CML: 3-5 granulocytes at mixed stages (myelocytes, metamyelocytes, bands, segmented
  neutrophils) with a basophil and/or an eosinophil.

Stain hue and strength, brightness, background tint, illumination, red-cell density,
magnification, blur and noise are drawn per image from one distribution shared by every class,
so colour and background carry no label. Image i of class c uses the random stream
numpy.random.default_rng([seed, c, i]) with c the index in {", ".join(CLASSES)}.
"""


def generate_synthetic(out_dir: Path, *, seed: int = 0, counts: dict | None = None,
                       size: int = 128, n_jobs: int = 1) -> Path:
    """Write ``out_dir/CLASS/CLASS_0001.png`` ... and ``out_dir/SOURCE.md``; return ``out_dir``.

    The pixels depend only on ``seed``, ``size`` and the image's class and index, not on
    ``n_jobs`` or on the other counts.
    """
    from joblib import Parallel, delayed  # only when generating: keeps discovery's import quick

    counts = _check_counts(counts)
    out_dir = Path(out_dir)
    for label in counts:
        (out_dir / label).mkdir(parents=True, exist_ok=True)
    # Chunks of ~25 images: few enough tasks to keep joblib's overhead small.
    tasks = [(label, range(start, min(n, start + 25)))
             for label, n in counts.items() for start in range(0, n, 25)]
    Parallel(n_jobs=n_jobs)(
        delayed(_write_class_chunk)(out_dir, seed, label, indices, size) for label, indices in tasks
    )
    (out_dir / "SOURCE.md").write_text(_source_text(seed, size, counts))
    return out_dir


def _cache_dir(seed: int, size: int) -> Path:
    return artifacts_root() / "datasets" / f"synthetic_s{seed}_{size}"


def _is_current(folder: Path) -> bool:
    source = folder / "SOURCE.md"
    return source.is_file() and f"generator version: {GENERATOR_VERSION}." in source.read_text()


def cached_synthetic_path(seed: int = 0, size: int = 128) -> Path | None:
    """The generated built-in set if it is on disk and current, else ``None`` (nothing is drawn)."""
    folder = _cache_dir(seed, size)
    return folder if _is_current(folder) else None


def ensure_synthetic(seed: int = 0, size: int = 128) -> Path:
    """The built-in set at its default counts, generated once under ``artifacts/datasets``.

    It is drawn into a temporary folder and renamed into place, so a half-written folder is
    never used; a lock makes concurrent callers wait for one generation instead of racing.
    """
    target = _cache_dir(seed, size)
    if _is_current(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / f".{target.name}.lock")):
        if _is_current(target):
            return target
        # Left-overs of a generation that died half-way; the lock says nobody else is writing.
        for stale in target.parent.glob(f".{target.name}.tmp*"):
            shutil.rmtree(stale, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp", dir=target.parent))
        # One process: ~8-10 s for the default set on a shared 2-core machine, where worker
        # start-up and contention made two processes no faster (benchmarks/bench_synthetic.py).
        generate_synthetic(staging, seed=seed, size=size)
        staging.chmod(0o755)  # mkdtemp makes it private; the dataset is for every reader
        if target.exists():  # an older generator version or a torn copy: move aside, drop
            old = target.parent / f".{target.name}.tmp-old"
            os.replace(target, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(staging, target)
    return target
