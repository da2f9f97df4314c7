"""One smear field of a class: the acquisition (stain, light, magnification, blur, noise, drawn
without looking at the class), the white cells of the class placed on the glass, red cells
around them, and the field developed into an RGB image.

Images are drawn at ``SUPERSAMPLE`` times the output size and reduced with area averaging,
which anti-aliases the small structures (granules, nucleoli, chromatin filaments).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from leukdash.data.synthetic.canvas import EOSIN, STAIN_OD, Canvas, fill, fraction, outline
from leukdash.data.synthetic.cells import CELL_TYPES
from leukdash.errors import ConfigError

CLASSES = ("ALL", "AML", "CLL", "CML", "HEALTHY")
SUPERSAMPLE = 2

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


# --------------------------------------------------------------------------- a field of a class


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


def _red_cells(c: Canvas, rng, coverage: float, white: list[tuple[float, float, float]]) -> None:
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
        body = fraction(fill(p.blank(), outline(rng, p.cx, p.cy, r, 0.02, rng.uniform(1.0, 1.12))))
        yy, xx = np.ogrid[:p.shape[0], :p.shape[1]]
        d2 = ((xx - p.cx) ** 2 + (yy - p.cy) ** 2) / r ** 2
        pallor = rng.uniform(0.45, 0.7) * np.exp(-d2 / 0.16)
        p.add(EOSIN, body * rng.uniform(0.75, 0.9) * (1.0 - pallor))


def _develop(c: Canvas, acq: _Acquisition, size: int, rng) -> np.ndarray:
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
    canvas = Canvas(size * SUPERSAMPLE, acq.px_per_um, rng)
    kinds = _white_cells(label, rng)
    diameters = [rng.uniform(*CELL_TYPES[k].diameter_um) for k in kinds]
    order = np.argsort(diameters)[::-1]
    placed = _place(rng, [diameters[i] * canvas.um for i in order], canvas.side)
    _red_cells(canvas, rng, acq.rbc_coverage, placed)
    for i, (x, y, _) in zip(order, placed):
        CELL_TYPES[kinds[i]].draw(canvas, rng, x, y, diameters[i])
    return _develop(canvas, acq, size, rng)
