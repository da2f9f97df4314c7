"""The white cells, one drawing function per cell type, as a hematologist would describe them,
and the parts they are made of (body, cytoplasm, chromatin, nucleoli, granules, lobes).

Each cell type draws stain concentrations on a :class:`.canvas.Canvas`; which cells a field of
each class holds, and where, is :mod:`.smear`'s business.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from leukdash.data.synthetic.canvas import (AZURE, BLUE, EOSIN, EOSIN_GRANULE, Canvas, Patch, circle, fill, fraction,
                                            in_disc, line, outline)

_STAIN_BY_NAME = {"eosin": EOSIN, "azure": AZURE, "blue": BLUE}

# --------------------------------------------------------------------------- cell parts


def _cell_body(p: Patch, rng, radius, irregular=0.035) -> np.ndarray:
    return fraction(fill(p.blank(), outline(rng, p.cx, p.cy, radius, irregular,
                                            aspect=rng.uniform(1.0, 1.15))))


def _cytoplasm(p: Patch, body: np.ndarray, nucleus: np.ndarray, **stains: float) -> None:
    """Colour the cell outside its nucleus: keyword = stain name, value = concentration."""
    area = body * (1.0 - nucleus)
    for name, value in stains.items():
        p.add(_STAIN_BY_NAME[name], area * value)


def _chromatin(p: Patch, nucleus: np.ndarray, density: float, fine: float, clumps: float) -> None:
    """Nuclear stain: ``fine`` grain for blasts, ``clumps`` for condensed (mature) chromatin."""
    texture = 1.0 + fine * p.fine + clumps * np.tanh(2.0 * p.coarse)
    p.add(AZURE, nucleus * density * np.clip(texture, 0.25, None))


def _nucleoli(p: Patch, rng, x, y, nucleus_r, count: int, density: float) -> None:
    """Pale blue-grey rounded spots inside a nucleus, each with a thin darker rim."""
    um = p.canvas.um
    for dx, dy in zip(*in_disc(rng, count, 0.45 * nucleus_r)):
        r = rng.uniform(0.55, 1.0) * um
        spot = fraction(fill(p.blank(), outline(rng, x + dx, y + dy, r, 0.06, n=20)))
        rim = fraction(fill(p.blank(), outline(rng, x + dx, y + dy, r + 0.25 * um, 0.0, n=20))) - spot
        p.add(AZURE, -0.5 * density * spot + 0.25 * density * rim)
        p.add(BLUE, 0.4 * spot)


def _granules(p: Patch, rng, count: int, spread: float, radius_um: tuple[float, float],
              stain: int, density: float, avoid: np.ndarray | None = None) -> None:
    """Round granules scattered over a disc of ``spread`` px around the cell centre."""
    um = p.canvas.um
    mask = p.blank()
    h, w = mask.shape
    for dx, dy in zip(*in_disc(rng, count, spread)):
        x, y = p.cx + dx, p.cy + dy
        inside = 0 <= int(y) < h and 0 <= int(x) < w
        if avoid is not None and inside and avoid[int(y), int(x)] > 0.5:
            continue
        circle(mask, x, y, rng.uniform(*radius_um) * um)
    p.add(stain, fraction(mask) * density)


def _lobes(p: Patch, rng, centres, lobe_r: float, irregular=0.08) -> np.ndarray:
    """A nucleus made of lobes joined by thin chromatin filaments (segmented forms)."""
    mask = p.blank()
    for x, y in centres:
        fill(mask, outline(rng, x, y, lobe_r * rng.uniform(0.85, 1.1), irregular, rng.uniform(1.0, 1.5)))
    for a, b in zip(centres[:-1], centres[1:]):
        line(mask, a, b, max(1.0, 0.35 * p.canvas.um))
    return fraction(mask)


def _arc_points(p: Patch, rng, count: int, radius: float, span_deg: float) -> list:
    start = rng.uniform(0, 360)
    angles = np.radians(start + np.linspace(0, span_deg, count))
    return [(p.cx + radius * np.cos(a), p.cy + radius * np.sin(a)) for a in angles]


# --------------------------------------------------------------------------- white cells
# Each takes the canvas, a stream, the centre and the diameter in um (drawn by CELL_TYPES).


def _lymphocyte(c: Canvas, rng, x, y, d_um, clumped=False) -> None:
    """Small mature lymphocyte: round dense nucleus filling the cell, thin sky-blue rim."""
    r = d_um * c.um / 2
    p = c.patch(x, y, r * 1.3)
    if p is None:
        return
    body = _cell_body(p, rng, r)
    off = in_disc(rng, 1, 0.12 * r)
    nucleus = fraction(fill(p.blank(), outline(rng, p.cx + off[0][0], p.cy + off[1][0],
                                               r * rng.uniform(0.78, 0.86), 0.05, rng.uniform(1.0, 1.15))))
    _cytoplasm(p, body, nucleus, blue=rng.uniform(0.5, 0.7))
    # CLL cells show the coarse "soccer-ball" block chromatin.
    _chromatin(p, nucleus, rng.uniform(1.2, 1.35), fine=0.08,
               clumps=rng.uniform(0.3, 0.4) if clumped else rng.uniform(0.15, 0.22))


def _cll_lymphocyte(c: Canvas, rng, x, y, d_um) -> None:
    _lymphocyte(c, rng, x, y, d_um, clumped=True)


def _lymphoblast(c: Canvas, rng, x, y, d_um) -> None:
    """Lymphoblast: nucleus ~90% of the cell, fine chromatin, nucleoli, thin deep-blue rim."""
    r = d_um * c.um / 2
    p = c.patch(x, y, r * 1.3)
    if p is None:
        return
    body = _cell_body(p, rng, r, irregular=0.03)
    nr = r * rng.uniform(0.84, 0.9)
    mask = fill(p.blank(), outline(rng, p.cx, p.cy, nr, 0.04, rng.uniform(1.0, 1.2)))
    if rng.random() < 0.3:  # a nuclear cleft or indentation in some
        t = rng.uniform(0, 2 * np.pi)
        cleft = p.blank()
        circle(cleft, p.cx + nr * np.cos(t), p.cy + nr * np.sin(t), 0.3 * nr)
        mask = cv2.subtract(mask, cleft)
    nucleus = fraction(mask)
    _cytoplasm(p, body, nucleus, blue=rng.uniform(0.9, 1.15))
    _chromatin(p, nucleus, rng.uniform(0.8, 0.95), fine=0.14, clumps=0.03)
    _nucleoli(p, rng, p.cx, p.cy, nr, int(rng.integers(1, 3)), 0.85)


def _myeloblast(c: Canvas, rng, x, y, d_um) -> None:
    """Myeloblast: large, more cytoplasm, fine chromatin, 2-4 nucleoli, fine granules, Auer rods."""
    r = d_um * c.um / 2
    p = c.patch(x, y, r * 1.3)
    if p is None:
        return
    body = _cell_body(p, rng, r, irregular=0.04)
    nr = r * rng.uniform(0.62, 0.74)
    ox, oy = in_disc(rng, 1, r - nr)
    nx, ny = p.cx + 0.6 * ox[0], p.cy + 0.6 * oy[0]
    nucleus = fraction(fill(p.blank(), outline(rng, nx, ny, nr, 0.04, rng.uniform(1.0, 1.2))))
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
            line(rod, (mx - half * np.cos(u), my - half * np.sin(u)),
                  (mx + half * np.cos(u), my + half * np.sin(u)), 0.45 * c.um)
            rod = fraction(rod) * body
            p.add(AZURE, 0.55 * rod)
            p.add(EOSIN, 1.3 * rod)


def _granulocyte_cytoplasm(p: Patch, rng, body, nucleus, r, blue=0.0) -> None:
    """Pink-lilac cytoplasm dusted with fine granules (neutrophil lineage)."""
    _cytoplasm(p, body, nucleus, eosin=rng.uniform(0.35, 0.45), azure=0.08, blue=blue)
    _granules(p, rng, int(rng.integers(30, 60)), 0.9 * r, (0.15, 0.25), AZURE, 0.35, avoid=nucleus)


def _neutrophil(c: Canvas, rng, x, y, d_um) -> None:
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


def _band(c: Canvas, rng, x, y, d_um) -> None:
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
    nucleus = fraction(mask) * body
    _granulocyte_cytoplasm(p, rng, body, nucleus, r)
    _chromatin(p, nucleus, rng.uniform(1.15, 1.3), fine=0.08, clumps=0.18)


def _metamyelocyte(c: Canvas, rng, x, y, d_um) -> None:
    """Metamyelocyte: kidney-shaped (indented) nucleus."""
    r = d_um * c.um / 2
    p = c.patch(x, y, r * 1.3)
    if p is None:
        return
    body = _cell_body(p, rng, r)
    nr = r * rng.uniform(0.5, 0.58)
    t = rng.uniform(0, 2 * np.pi)
    nx, ny = p.cx - 0.15 * r * np.cos(t), p.cy - 0.15 * r * np.sin(t)
    mask = fill(p.blank(), outline(rng, nx, ny, nr, 0.04, rng.uniform(1.2, 1.5)))
    notch = p.blank()
    circle(notch, nx + 0.95 * nr * np.cos(t), ny + 0.95 * nr * np.sin(t), 0.5 * nr)
    nucleus = fraction(cv2.subtract(mask, notch)) * body
    _granulocyte_cytoplasm(p, rng, body, nucleus, r)
    _chromatin(p, nucleus, rng.uniform(1.05, 1.2), fine=0.1, clumps=0.15)


def _myelocyte(c: Canvas, rng, x, y, d_um) -> None:
    """Myelocyte: round eccentric nucleus, no nucleoli, abundant granular lilac cytoplasm."""
    r = d_um * c.um / 2
    p = c.patch(x, y, r * 1.3)
    if p is None:
        return
    body = _cell_body(p, rng, r)
    nr = r * rng.uniform(0.52, 0.62)
    t = rng.uniform(0, 2 * np.pi)
    nx, ny = p.cx + 0.3 * r * np.cos(t), p.cy + 0.3 * r * np.sin(t)
    nucleus = fraction(fill(p.blank(), outline(rng, nx, ny, nr, 0.04, rng.uniform(1.0, 1.3)))) * body
    _granulocyte_cytoplasm(p, rng, body, nucleus, r, blue=0.2)
    _chromatin(p, nucleus, rng.uniform(0.95, 1.1), fine=0.12, clumps=0.12)


def _eosinophil(c: Canvas, rng, x, y, d_um) -> None:
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


def _basophil(c: Canvas, rng, x, y, d_um) -> None:
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


def _smudge(c: Canvas, rng, x, y, d_um) -> None:
    """Smudge cell: a ragged, pale, streaky patch of crushed nuclear material, no cytoplasm."""
    r = d_um * c.um / 2
    p = c.patch(x, y, r * 1.5)
    if p is None:
        return
    ragged = outline(rng, p.cx, p.cy, r, irregular=0.18, aspect=rng.uniform(1.1, 1.8), harmonics=9, n=64)
    smear = fraction(fill(p.blank(), ragged))
    strands = p.blank()
    for _ in range(int(rng.integers(4, 9))):
        a = np.array([p.cx, p.cy]) + rng.normal(0, 0.4 * r, 2)
        b = a + rng.normal(0, 0.6 * r, 2)
        line(strands, a, b, max(1.0, 0.3 * c.um))
    smear = cv2.GaussianBlur(smear, (0, 0), 0.4 * c.um)
    texture = np.clip(1.0 + 0.35 * p.coarse + 0.2 * p.fine, 0.3, None)
    p.add(AZURE, smear * rng.uniform(0.4, 0.55) * texture + fraction(strands) * smear * 0.3)


@dataclass(frozen=True)
class _CellType:
    diameter_um: tuple[float, float]
    draw: Callable


CELL_TYPES = {
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
