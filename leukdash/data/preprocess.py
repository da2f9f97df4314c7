"""Cell-level preprocessing: the white cell nearest the centre, alone, in a chosen colour space.

Images from two labs differ in everything around the cell (background, red cells, lamp, stain
batch, camera, how the field was cropped); what a lab-independent model should see is the cell.
A mode is ``raw`` (the image as it is: today's behaviour and the paper's) or
``cell-<size>-<colour>``:

- the white cell nearest the centre is segmented (its nucleus from the haematoxylin optical
  density, grown by a margin into the stained area around it), everything else is blacked out;
- size ``keep``: the cell is moved to the centre of a black square as large as the original
  field, so it keeps its size relative to the field (measured on ALL-IDB2 -> C-NMC: the cue
  that transfers best); ``fit``: it is cropped to its bounding box and scaled to fill the frame;
- colour ``asis``; ``reinhard`` (per-image stain normalisation: the cell's L*a*b* mean and
  spread set to fixed targets); ``gray``; ``hematoxylin`` (the haematoxylin optical density of
  the Ruifrok-Johnston colour deconvolution, as grey levels). Grey and haematoxylin images stay
  three-channel (the channel repeated), so every model takes them unchanged. Macenko
  normalisation is not offered: the one maintained implementation installable here
  (torchstain) normalises to reference stain vectors of H&E histology, not of the
  Romanowsky stains of blood smears, and fitting a reference per dataset would leak.

:func:`prepare_images` is the one entry point: training, validation, ``evaluate`` and Predict
all go through it, so a run's models always see images prepared the way they were trained. The
last step, padding the image (or the placed cell) square and resizing it, is
:mod:`leukdash.data.squares`.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from leukdash.config import PREPROCESS_MODES as MODES
from leukdash.data.decode import check_aspect
from leukdash.data.squares import (PAD_FIRST_MAX_SIDE, View, centre_offsets, centred_rectangle, resize_longer_side,
                                   square_resize, square_with_rectangle)
from leukdash.errors import ConfigError, ImageDecodeError

RAW = "raw"

# Segmentation works on a copy this many pixels on its longest side (fast, and the thresholds
# below do not depend on the input's resolution).
WORK_SIZE = 256
# A cell is plausible between these shares of the field (ALL-IDB2: 3-45%, C-NMC: 5-30%).
MIN_AREA, MAX_AREA = 0.01, 0.6
# How far the cell reaches beyond its nucleus, as a share of the nucleus's equivalent radius:
# lymphoid cells (both classes here) have a thin rim of cytoplasm.
CYTOPLASM_MARGIN = 0.35
# Below this total optical density (summed over R, G, B, against the brightest glass) a pixel
# is glass: ALL-IDB2's glass lies below 0.1, its palest cytoplasm and red cells above 0.25.
MIN_DENSITY = 0.2
# A cytoplasm pixel may be at most this much redder than blue (8-bit levels).
BLUE_TOLERANCE = 10
# Ruifrok & Johnston's stain vectors (haematoxylin, eosin, DAB), rows normalised: the matrix
# scikit-image's rgb2hed inverts.
_STAINS = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])
_STAINS = _STAINS / np.linalg.norm(_STAINS, axis=1, keepdims=True)
_UNMIX = np.linalg.inv(_STAINS)
# Reinhard targets (OpenCV 8-bit L*a*b*): a mid-tone violet cell with a moderate spread.
_LAB_MEAN = np.array([110.0, 150.0, 110.0])
_LAB_STD = np.array([35.0, 8.0, 10.0])


@dataclass
class Cell:
    """The segmentation of one image: the cell's mask (full resolution), and what went wrong.

    ``failure`` is None for a plausible cell, else ``"none found"``, ``"touches the border"``
    or ``"implausible area"``; a failed segmentation still returns its best mask (the whole
    image when none was found), so a run never stops on one odd image.
    """

    mask: np.ndarray
    failure: str | None = None


# What each segmentation failure means for what a run's models saw.
FAILURE_MEANING = {
    "none found": "no white cell was found, so the models saw the whole image instead of a segmented cell",
    "touches the border": "the cell touches the image's edge, so part of it may be cut off",
    "implausible area": "the region found is implausibly small or large for a white cell",
}


def describe_mode(mode: str) -> str:
    """A preprocessing mode in words, e.g. for a menu (no commas: a menu's value may go in a URL)."""
    if mode == RAW:
        return "raw: the whole image (the paper's)"
    size, colour = parse_mode(mode)
    colours = {"asis": "colours as they are", "reinhard": "Reinhard colours", "gray": "gray",
               "hematoxylin": "hematoxylin density"}
    return f"{mode}: the cell alone · {'size kept' if size == 'keep' else 'scaled to fill'} · {colours[colour]}"


def parse_mode(mode: str) -> tuple[str, str] | None:
    """``(size, colour)`` of a ``cell-...`` mode, None for ``raw``; ConfigError otherwise."""
    if mode == RAW:
        return None
    if mode not in MODES:
        raise ConfigError(f"preprocess must be one of {', '.join(MODES)}, got {mode!r}")
    _, size, colour = mode.split("-")
    return size, colour


def is_grey(mode: str) -> bool:
    """Whether a mode's images are grey (the one channel repeated): ``gray`` and ``hematoxylin``."""
    parsed = parse_mode(mode)
    return parsed is not None and parsed[1] in ("gray", "hematoxylin")


def hematoxylin_density(image: np.ndarray) -> np.ndarray:
    """Haematoxylin optical density of each pixel (colour deconvolution), float32 >= 0."""
    density = -np.log(np.clip(image.astype(np.float32), 1, 255) / 255.0)
    return np.clip(density.reshape(-1, 3) @ _UNMIX[:, 0], 0, None).reshape(image.shape[:2]).astype(np.float32)


def scale_stains(image: np.ndarray, factors) -> np.ndarray:
    """The RGB image with each stain's optical density (haematoxylin, eosin, DAB; colour
    deconvolution) multiplied by its factor: the same cell as stained more or less strongly."""
    density = -np.log(np.clip(image.astype(np.float32), 1, 255) / 255.0).reshape(-1, 3)
    # Not clipped at 0: a colour outside the three stains keeps its (negative) part, so factors of
    # 1 give the image back.
    stains = (density @ _UNMIX) * np.asarray(factors, dtype=np.float32)
    rgb = np.clip(255.0 * np.exp(-(stains @ _STAINS)) + 0.5, 0, 255).astype(np.uint8).reshape(image.shape)
    rgb[(image == 0).all(axis=-1)] = 0  # black is no light, not a dense stain: a segmented cell's background stays
    return rgb


def segment_cell(image: np.ndarray) -> Cell:
    """The white cell nearest the centre of an RGB image (see the module docstring)."""
    height, width = image.shape[:2]
    scale = WORK_SIZE / max(height, width)
    small = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                       interpolation=cv2.INTER_AREA)
    stained, black_background = _stained(small)
    if black_background:
        # Already segmented by its publisher (C-NMC): the cell is the stained blob at the centre.
        cell = _nearest_component(stained, min_share=MIN_AREA / 4)
    else:
        cell = _cell_around_nucleus(small, stained)
    if cell is None:
        return Cell(np.ones((height, width), bool), "none found")
    cell = _fill_holes(cell)
    mask = cv2.resize(cell.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0
    if not mask.any():
        # A cell smaller than one pixel of a small original falls between nearest samples: keep every
        # pixel it overlaps instead, so the mask is never empty (placing it crops to the mask).
        mask = cv2.resize(cell.astype(np.float32), (width, height), interpolation=cv2.INTER_AREA) > 0
    failure = None
    if not MIN_AREA <= cell.mean() <= MAX_AREA:
        failure = "implausible area"
    elif cell[0].any() or cell[-1].any() or cell[:, 0].any() or cell[:, -1].any():
        failure = "touches the border"
    return Cell(mask, failure)


def _cell_around_nucleus(image: np.ndarray, stained: np.ndarray) -> np.ndarray | None:
    """In a stained smear: the nucleus nearest the centre, its convex hull, and the stained,
    not pink pixels within a thin margin around it (the cytoplasm); slivers that the margin
    cuts from neighbouring cells are thinner than the margin and are opened away."""
    nucleus = _nucleus_near_centre(image, stained)
    if nucleus is None:
        return None
    margin = max(1, round(CYTOPLASM_MARGIN * np.sqrt(nucleus.sum() / np.pi)))
    hull = np.zeros(nucleus.shape, np.uint8)
    contours, _ = cv2.findContours(nucleus.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.fillPoly(hull, [cv2.convexHull(np.vstack(contours))], 1)
    # Cytoplasm of white cells is bluish (basophilic), red cells are pink (eosinophilic).
    bluish = image[..., 2].astype(np.int16) >= image[..., 0].astype(np.int16) - BLUE_TOLERANCE
    grown = cv2.dilate(hull, _disc(margin)) > 0
    cell = cv2.morphologyEx(((grown & stained & bluish) | (hull > 0)).astype(np.uint8), cv2.MORPH_OPEN,
                            _disc(margin // 2))
    return (cell > 0) | (hull > 0)


def _disc(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1,) * 2)


def _nearest_component(mask: np.ndarray, min_share: float) -> np.ndarray | None:
    """The connected component of ``mask`` (of at least ``min_share`` of the image) nearest the
    image centre: the distance of its centroid less its equivalent radius, so that a large
    ring-shaped nucleus around the centre wins over a speck at the very centre."""
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(mask.astype(np.uint8))
    candidates = [i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] >= min_share * mask.size]
    if not candidates:
        return None
    centre = np.array([mask.shape[1] / 2, mask.shape[0] / 2])
    def distance(i):
        return np.hypot(*(centroids[i] - centre)) - np.sqrt(stats[i, cv2.CC_STAT_AREA] / np.pi)

    return labels == min(candidates, key=distance)


def _stained(image: np.ndarray) -> tuple[np.ndarray, bool]:
    """Everything that is not background, and whether the background is black. A black border
    (a cell segmented by its publisher) means black is the background; otherwise it is the
    bright glass, and a pixel is stained above ``MIN_DENSITY`` of total optical density
    against the brightest glass (red cells and pale cytoplasm included)."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    black = bool(np.median(border) < 20)
    if black:
        stained = gray > 20
    else:
        pixels = image.astype(np.float32) + 1.0
        glass = np.percentile(pixels.reshape(-1, 3), 99, axis=0)  # the lamp, as the glass shows it
        stained = cv2.GaussianBlur(np.clip(-np.log(pixels / glass), 0, None).sum(axis=2), (5, 5), 0) > MIN_DENSITY
    return cv2.morphologyEx(stained.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)) > 0, black


def _nucleus_near_centre(image: np.ndarray, stained: np.ndarray) -> np.ndarray | None:
    """The nucleus (with its lobes) nearest the image centre, or None.

    Nuclei are the stained pixels above Otsu's threshold of the haematoxylin density over the
    field (nuclei against red cells, cytoplasm and glass); lobes and fragments of one nucleus
    lie within half its radius of each other.
    """
    if stained.sum() < MIN_AREA * stained.size:
        return None
    density = cv2.GaussianBlur(hematoxylin_density(image), (5, 5), 0)
    scaled = np.clip(density / max(float(density.max()), 1e-6) * 255, 0, 255).astype(np.uint8)
    threshold, _ = cv2.threshold(scaled, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    nuclei = cv2.morphologyEx(((scaled > threshold) & stained).astype(np.uint8), cv2.MORPH_CLOSE, _disc(3))
    nucleus = _nearest_component(nuclei, min_share=0.002)
    if nucleus is None:
        return None
    near = cv2.dilate(nucleus.astype(np.uint8), _disc(max(1, round(0.5 * np.sqrt(nucleus.sum() / np.pi)))))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(nuclei)
    for i in range(1, count):
        if stats[i, cv2.CC_STAT_AREA] >= 0.002 * nuclei.size and near[labels == i].any():
            nucleus |= labels == i
    return nucleus


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros(mask.shape, np.uint8)
    cv2.drawContours(filled, contours, -1, 1, thickness=cv2.FILLED)
    return filled > 0


def recolour(image: np.ndarray, mask: np.ndarray, colour: str) -> np.ndarray:
    """The cell's pixels in a colour mode (outside the mask: black), RGB uint8."""
    if colour == "asis":
        out = image.copy()
    elif colour == "gray":
        out = np.repeat(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    elif colour == "hematoxylin":
        # Optical density 0..2.5 covers the darkest nuclei of ALL-IDB2 and C-NMC (99th
        # percentiles 1.8-2.4).
        density = np.clip(hematoxylin_density(image) / 2.5 * 255, 0, 255).astype(np.uint8)
        out = np.repeat(density[..., None], 3, axis=2)
    elif colour == "reinhard":
        lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32)
        inside = lab[mask] if mask.any() else lab.reshape(-1, 3)
        lab = (lab - inside.mean(0)) / (inside.std(0) + 1e-6) * _LAB_STD + _LAB_MEAN
        out = cv2.cvtColor(np.clip(lab, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)
    else:
        raise ConfigError(f"unknown colour mode {colour!r}")
    out[~mask] = 0
    return out


def place(image: np.ndarray, mask: np.ndarray, size_mode: str) -> np.ndarray:
    """The (recoloured, blacked-out) image as a square: the cell centred in a black field as
    large as the original's longer side (``keep``), or its bounding box scaled to fill (``fit``)."""
    (x0, y0, x1, y1), side = _cell_box(mask, image.shape, size_mode)
    top, left = centre_offsets(y1 - y0, x1 - x0, side)
    out = np.zeros((side, side, 3), np.uint8)
    out[top:top + y1 - y0, left:left + x1 - x0] = image[y0:y1, x0:x1]
    return out


def _cell_box(mask: np.ndarray, shape: tuple, size_mode: str) -> tuple[tuple[int, int, int, int], int]:
    """The cell's bounding box (x0, y0, x1, y1) in an image of ``shape``, and the side of the
    square :func:`place` centres it in."""
    ys, xs = np.nonzero(mask)
    x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    return (x0, y0, x1, y1), max(y1 - y0, x1 - x0) if size_mode == "fit" else max(shape[:2])


def preprocess_image(image: np.ndarray, mode: str) -> tuple[np.ndarray, Cell | None]:
    """One RGB image in a mode, at its own resolution (square), with its segmentation."""
    parsed = parse_mode(mode)
    if parsed is None:
        return image, None
    size_mode, colour = parsed
    cell = segment_cell(image)
    return place(recolour(image, cell.mask, colour), cell.mask, size_mode), cell


def prepare_images(config, images) -> np.ndarray:
    """Decoded RGB images (any sizes) as a run's models take them: (N, S, S, 3) uint8, with
    ``config`` a :class:`leukdash.config.RunConfig` (its ``preprocess`` and ``image_size``)."""
    return prepare(images, config.image_size, config.preprocess)


def prepare(images, size: int, mode: str = RAW) -> np.ndarray:
    """:func:`prepare_images` by size and mode: :func:`prepare_one` of each image."""
    prepared = np.empty((len(images), size, size, 3), np.uint8)
    for i, image in enumerate(images):
        prepared[i] = prepare_one(image, size, mode)
    return prepared


def prepare_one(image, size: int, mode: str = RAW) -> np.ndarray:
    """One RGB image as a run's models take it: (S, S, 3) uint8. ``raw`` is exactly what runs did
    before preprocessing existed: padded to a square by repeating edges, then resized.

    A cell-level mode works on the image at most ``PAD_FIRST_MAX_SIDE`` pixels on its longer
    side (a larger one is shrunk first), so that placing the cell on its square costs at most
    that side squared. An image that cannot be prepared raises ImageDecodeError with the reason.
    """
    return prepare_with_failure(image, size, mode)[0]


def prepare_with_failure(image, size: int, mode: str = RAW) -> tuple[np.ndarray, str | None]:
    """:func:`prepare_one`, and how a cell-level mode's segmentation fared on the image: None for
    a plausible cell (and for ``raw``), else the failure (see :data:`FAILURE_MEANING`)."""
    return prepare_view(image, size, mode)[:2]


def prepare_view(image, size: int, mode: str = RAW) -> tuple[np.ndarray, str | None, View]:
    """:func:`prepare_with_failure`, and where the prepared square shows the image (:class:`View`):
    for ``raw`` the whole image within its padding, for a cell mode the cell's bounding box where
    it was placed."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
        # A float image in [0, 1] would be cast to black, a 16-bit one wrap: wrong answers, not errors.
        raise ImageDecodeError(f"an image must be an RGB array of shape (height, width, 3) and dtype uint8, got "
                               f"{image.dtype} of shape {image.shape}: leukdash.data.decode.decode_image reads a file "
                               "(gray, RGBA, 16-bit) into one")
    check_aspect(image.shape[1], image.shape[0])  # as decode_image does for a file
    height, width = image.shape[:2]
    if mode == RAW:
        square, target = square_with_rectangle(image, size)
        return square, None, View((0, 0, width, height), target)
    working = _working_image(image)
    try:
        prepared, cell = preprocess_image(working, mode)
    except cv2.error as error:
        raise ImageDecodeError(f"cannot prepare {width}x{height} image as {mode}: "
                               f"{' '.join(str(error.err or error).split())}") from None
    (x0, y0, x1, y1), side = _cell_box(cell.mask, working.shape, parse_mode(mode)[0])
    # The box is in the working image's pixels: scaled back to the image's.
    across, down = width / working.shape[1], height / working.shape[0]
    view = View((x0 * across, y0 * down, x1 * across, y1 * down), centred_rectangle(y1 - y0, x1 - x0, side))
    # The placed image is square already: resizing it keeps the rectangle's shares.
    return square_resize(prepared, size), cell.failure, view


def cell_failure(image: np.ndarray) -> str | None:
    """How the segmentation of a cell-level mode fares on one decoded RGB image, as
    :func:`prepare_one` segments it: None for a plausible cell, else the failure."""
    return segment_cell(_working_image(np.asarray(image))).failure


def _working_image(image: np.ndarray) -> np.ndarray:
    """The image a cell-level mode works on: at most ``PAD_FIRST_MAX_SIDE`` on its longer side."""
    height, width = image.shape[:2]
    scale = PAD_FIRST_MAX_SIDE / max(height, width)
    if scale >= 1:
        return image
    return cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                      interpolation=cv2.INTER_AREA)


# A preview's pictures are shown about 120 px wide: twice that keeps them sharp on a dense screen.
OVERLAY_SIDE = 256


def overlay(image: np.ndarray, mode: str = "cell-keep-asis") -> tuple[np.ndarray, np.ndarray, str | None]:
    """For a preview: the original with the cell's outline drawn in, the preprocessed image, and
    the segmentation failure (None when the cell looks plausible).

    It segments and places the cell as a run does, on the image at most ``PAD_FIRST_MAX_SIDE`` on
    its longer side, and returns both pictures at most ``OVERLAY_SIDE`` on theirs: a large or
    elongated image costs its decoded pixels, never its longer side squared.
    """
    mode = mode if mode != RAW else "cell-keep-asis"
    working = _working_image(np.asarray(image))
    prepared, cell = preprocess_image(working, mode)
    outlined = working.copy()
    contours, _ = cv2.findContours(cell.mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(outlined, contours, -1, (0, 255, 0), max(1, round(max(working.shape[:2]) / 128)))
    return _small(outlined), _small(prepared), cell.failure


def _small(image: np.ndarray) -> np.ndarray:
    """The image shrunk to at most ``OVERLAY_SIDE`` on its longer side (a smaller one as it is)."""
    return image if max(image.shape[:2]) <= OVERLAY_SIDE else resize_longer_side(image, OVERLAY_SIDE)
