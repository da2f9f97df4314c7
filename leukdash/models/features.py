"""Inputs for the classic classifiers: raw pixels (the paper's) and engineered cell descriptors.

``extract_features`` describes a single-cell crop the way a haematologist would look at it:
how big and how round the nucleus and the cell are, how much cytoplasm surrounds the nucleus,
the colour of each part and the texture of the chromatin. The nucleus is found from the stain:
May-Grunwald-Giemsa colours nuclei purple (blue well above green) while red cells and the
background are pink or beige (blue about equal to or below green).
"""

from __future__ import annotations

import cv2
import numpy as np

# Every crop is described at this resolution, so the features do not depend on the size the
# images were loaded at.
WORK_SIZE = 128

_REGIONS = ("nucleus", "cytoplasm", "background")
_SHAPE_NAMES = (
    "area", "perimeter", "circularity", "solidity", "eccentricity", "extent",
    "defects", "max_defect_depth",
)
_GLCM_LEVELS = 16
_LBP_BINS = 10  # uniform 8-neighbour patterns: 0..8 ones, plus "non-uniform"


def pixel_features(images: np.ndarray, size: int = 32) -> np.ndarray:
    """Raw pixels resized to ``size`` x ``size``, flattened, as float32 in [0, 1]."""
    images = _as_batch(images)
    out = np.empty((len(images), size * size * 3), dtype=np.float32)
    for i, image in enumerate(images):
        small = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
        out[i] = small.reshape(-1) / np.float32(255.0)
    return out


def extract_features(images: np.ndarray) -> np.ndarray:
    """Colour, texture and shape descriptors of single-cell crops, shape (N, n_features) float32.

    Always finite: a crop without a detectable nucleus gets zeros for the descriptors of the
    missing part.
    """
    images = _as_batch(images)
    return np.stack([_describe(image) for image in images]).astype(np.float32)


def feature_names() -> list[str]:
    """Names of the columns of :func:`extract_features`, in order."""
    names = []
    for part in ("nucleus", "cell"):
        names += [f"{part}_{n}" for n in _SHAPE_NAMES]
    names += ["nucleus_cell_ratio", "nucleus_lobes", "nucleus_dark_fraction"]
    names += [f"nucleus_hu{i}" for i in range(7)]
    for region in _REGIONS:
        names += [f"{region}_{c}_{s}" for c in ("L", "a", "b", "S", "V") for s in ("mean", "std")]
    names += [f"nucleus_glcm_{n}" for n in ("contrast", "homogeneity", "energy", "correlation", "entropy")]
    names += [f"nucleus_lbp{i}" for i in range(_LBP_BINS)]
    names += ["nucleus_laplacian_var"]
    return names


def _as_batch(images) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must have shape (N, H, W, 3), got {images.shape}")
    return images.astype(np.uint8, copy=False)


def _describe(image: np.ndarray) -> np.ndarray:
    rgb = cv2.resize(image, (WORK_SIZE, WORK_SIZE), interpolation=cv2.INTER_AREA)
    nucleus, cell = _segment(rgb)
    cytoplasm = cell & ~nucleus
    background = ~cell
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    # Converted once for the three regions: L, a, b (CIELAB) then S, V (HSV).
    lab_sv = np.concatenate([cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB),
                             cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[..., 1:]], axis=2)

    n_lobes = cv2.connectedComponents(nucleus.astype(np.uint8))[0] - 1
    # Chromatin: the darker part of the nucleus (a nucleus-internal Otsu split of green).
    green = rgb[..., 1][nucleus]
    dark = float(np.mean(green <= _otsu(green))) if green.size > 1 else 0.0
    parts = [
        _shape(nucleus),
        _shape(cell),
        [nucleus.sum() / max(cell.sum(), 1), n_lobes, dark],
        _hu(nucleus),
        *[_colour(lab_sv, region) for region in (nucleus, cytoplasm, background)],
        _glcm(gray, nucleus),
        _lbp(gray, nucleus),
        [_laplacian_var(gray, nucleus)],
    ]
    return np.nan_to_num(np.concatenate([np.asarray(p, dtype=np.float64) for p in parts]))


def _segment(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boolean nucleus and cell masks of the central white cell."""
    f = rgb.astype(np.float32)
    stain = cv2.GaussianBlur(f[..., 2] - f[..., 1], (3, 3), 0)  # blue minus green
    lo, hi = np.percentile(stain, [1, 99])
    if hi - lo < 1.0:  # a flat image has no stained object
        empty = np.zeros(stain.shape, dtype=bool)
        return empty, empty
    score = np.clip((stain - lo) / (hi - lo) * 255.0, 0, 255).astype(np.uint8)
    threshold = _otsu(score.reshape(-1))
    nucleus = _central(_clean(score > threshold))
    # The cell (nucleus and cytoplasm) is fainter: half-way between background and the nucleus cut.
    background_level = float(np.median(score))
    cell = _central(_clean(score > (background_level + threshold) / 2.0) | nucleus)
    cell = _fill_holes(cell)
    return nucleus & cell, cell


def _otsu(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.uint8).reshape(-1, 1)
    if values.size < 2 or values.min() == values.max():
        return float(values.max()) if values.size else 0.0
    return float(cv2.threshold(values, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)[0])


def _clean(mask: np.ndarray) -> np.ndarray:
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    m = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, kernel)
    return cv2.morphologyEx(m, cv2.MORPH_CLOSE, kernel).astype(bool)


def _central(mask: np.ndarray) -> np.ndarray:
    """Keep the component nearest the centre and the sizeable pieces close to it (nuclear lobes)."""
    n, labels, stats, centroids = cv2.connectedComponentsWithStats(mask.astype(np.uint8))
    if n <= 1:
        return np.zeros(mask.shape, dtype=bool)
    h, w = mask.shape
    centre = np.array([w / 2.0, h / 2.0])
    areas = stats[1:, cv2.CC_STAT_AREA].astype(float)
    distances = np.linalg.norm(centroids[1:] - centre, axis=1)
    # Prefer big components near the centre: the crop is centred on the white cell.
    main = int(np.argmax(areas / (1.0 + distances / (0.1 * w)) ** 2))
    near = distances <= distances[main] + 0.25 * w
    keep = np.flatnonzero(near & (areas >= 0.05 * areas[main])) + 1
    return np.isin(labels, keep)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    filled = np.zeros(mask.shape, dtype=np.uint8)
    cv2.drawContours(filled, contours, -1, 1, thickness=cv2.FILLED)
    return filled.astype(bool)


def _shape(mask: np.ndarray) -> list[float]:
    """Size and roundness of a mask; sizes are fractions of the crop (side, area)."""
    area = float(mask.sum())
    if area < 5:
        return [0.0] * len(_SHAPE_NAMES)
    side = float(mask.shape[0])
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    contour = max(contours, key=cv2.contourArea)
    perimeter = sum(cv2.arcLength(c, True) for c in contours)
    hull_area = sum(cv2.contourArea(cv2.convexHull(c)) for c in contours)
    x, y, w, h = cv2.boundingRect(np.concatenate(contours))
    m = cv2.moments(mask.astype(np.uint8), binaryImage=True)
    cov = np.array([[m["mu20"], m["mu11"]], [m["mu11"], m["mu02"]]]) / m["m00"]
    small, large = np.sqrt(np.maximum(np.linalg.eigvalsh(cov), 0.0))
    eccentricity = np.sqrt(1.0 - (small / large) ** 2) if large > 0 else 0.0
    defects, max_depth = 0, 0.0
    if len(contour) >= 5:
        hull_idx = cv2.convexHull(contour, returnPoints=False)
        try:
            found = cv2.convexityDefects(contour, hull_idx)
        except cv2.error:  # self-intersecting hulls on tiny jagged contours
            found = None
        if found is not None:
            depths = found.reshape(-1, 4)[:, 3] / 256.0 / side
            defects = int(np.sum(depths > 0.02))
            max_depth = float(depths.max())
    return [
        area / side**2,
        perimeter / side,
        4.0 * np.pi * area / max(perimeter, 1.0) ** 2,
        area / max(hull_area, 1.0),
        float(eccentricity),
        area / max(w * h, 1),
        float(defects),
        max_depth,
    ]


def _hu(mask: np.ndarray) -> np.ndarray:
    hu = cv2.HuMoments(cv2.moments(mask.astype(np.uint8), binaryImage=True)).ravel()
    # Log scale with the sign kept: the raw moments span many orders of magnitude.
    return -np.sign(hu) * np.log10(np.abs(hu) + 1e-12) if mask.any() else np.zeros(7)


def _colour(lab_sv: np.ndarray, region: np.ndarray) -> list[float]:
    """Mean and std of L, a, b (CIELAB) and S, V (HSV) inside a region, scaled to [0, 1]."""
    if region.sum() < 2:
        return [0.0] * 10
    values = lab_sv[region].astype(np.float64) / 255.0
    return np.stack([values.mean(axis=0), values.std(axis=0)], axis=1).ravel().tolist()


def _glcm(gray: np.ndarray, region: np.ndarray) -> list[float]:
    """Haralick-style statistics of grey-level co-occurrence inside a region (right and down neighbours)."""
    q = (gray.astype(np.int32) * _GLCM_LEVELS) // 256
    pairs = []
    for a, b, ma, mb in (
        (q[:, :-1], q[:, 1:], region[:, :-1], region[:, 1:]),
        (q[:-1, :], q[1:, :], region[:-1, :], region[1:, :]),
    ):
        both = ma & mb
        pairs.append((a[both], b[both]))
    i = np.concatenate([p[0] for p in pairs] + [p[1] for p in pairs])
    j = np.concatenate([p[1] for p in pairs] + [p[0] for p in pairs])  # symmetric
    if i.size == 0:
        return [0.0] * 5
    glcm = np.bincount(i * _GLCM_LEVELS + j, minlength=_GLCM_LEVELS**2).astype(np.float64)
    p = (glcm / glcm.sum()).reshape(_GLCM_LEVELS, _GLCM_LEVELS)
    li, lj = np.indices(p.shape)
    mu = (li * p).sum()
    var = ((li - mu) ** 2 * p).sum()
    nz = p[p > 0]
    return [
        float(((li - lj) ** 2 * p).sum()),
        float((p / (1.0 + np.abs(li - lj))).sum()),
        float((p**2).sum()),
        float(((li - mu) * (lj - mu) * p).sum() / var) if var > 1e-12 else 0.0,
        float(-(nz * np.log2(nz)).sum()),
    ]


def _lbp(gray: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Histogram of rotation-invariant uniform local binary patterns (radius 1) inside a region."""
    g = gray.astype(np.int16)
    centre = g[1:-1, 1:-1]
    h, w = g.shape
    offsets = ((0, 0), (0, 1), (0, 2), (1, 2), (2, 2), (2, 1), (2, 0), (1, 0))  # clockwise ring
    bits = np.stack([g[dy:dy + h - 2, dx:dx + w - 2] >= centre for dy, dx in offsets])
    ones = bits.sum(axis=0)
    transitions = (bits != np.roll(bits, 1, axis=0)).sum(axis=0)
    code = np.where(transitions <= 2, ones, _LBP_BINS - 1)
    code = code[region[1:-1, 1:-1]]
    if code.size == 0:
        return np.zeros(_LBP_BINS)
    return np.bincount(code, minlength=_LBP_BINS) / code.size


def _laplacian_var(gray: np.ndarray, region: np.ndarray) -> float:
    """Variance of the Laplacian inside a region: fine chromatin detail (scaled to about [0, 1])."""
    if region.sum() < 2:
        return 0.0
    lap = cv2.Laplacian(gray.astype(np.float32) / 255.0, cv2.CV_32F)
    return float(lap[region].var())
