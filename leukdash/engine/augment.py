"""The paper's seven random transforms on uint8 RGB images, with OpenCV.

Every image gets one affine matrix that composes all its transforms, flips included, and one
``cv2.warpAffine`` (bilinear) applies it, so a transformed image is resampled only once.

The random ranges and the composition follow Keras' legacy ``ImageDataGenerator``, which the
paper used (``rotation_range=40, width_shift_range=0.4, height_shift_range=0.4,
zoom_range=0.3, shear_range=20, horizontal_flip=True, vertical_flip=True,
fill_mode='nearest'``):

- rotation: angle uniform in [-r, r] degrees.
- shift: uniform in [-s, s] times the width (along x) or the height (along y).
- zoom: two independent factors ``zx, zy`` uniform in [1-z, 1+z], one per axis, used as Keras
  uses them: as the scale of the *sampling* grid. A factor above 1 shows a larger field, so the
  content shrinks by 1/zx: with z = 0.3 an object's width changes by a factor in
  [1/1.3, 1/0.7] = [0.77, 1.43] and its area by one in [0.59, 2.04].
- shear: angle uniform in [-s, s] degrees, Keras' matrix ``[[1, -sin s], [0, cos s]]`` (x slides
  in proportion to y, and y is stretched by 1/cos s).
- flips: each with probability 0.5, applied to the warped image as Keras does.
- fill: "nearest" repeats the edge pixels (``BORDER_REPLICATE``, scipy's "nearest"), "reflect"
  mirrors about the edge (``BORDER_REFLECT``, ``dcba|abcd``, scipy's and so Keras' "reflect"),
  "constant" fills black.

The output-to-input map is ``C . R . T . Sh . Z . C^-1`` about the image centre, then the
flips, exactly as Keras builds it. Keras itself applies ``height_shift_range`` along x and
centres on (height, width) swapped; both are invisible on square images and are corrected here,
so non-square images shift and rotate as the names say.

Every image draws eight uniform numbers in a fixed order whether or not a transform is on,
so for one seed, switching one of the paper's transforms off leaves the draws of the others
unchanged. A seed may be an int or a tuple of ints such as ``(seed, fold, epoch)``.

Not in the paper, off by default: colour jitter ``j`` multiplies each image's brightness and
its red and blue channels (against green) by factors uniform in [1-j, 1+j] and raises it to a
gamma in the same range, after the warp: black stays black, so segmented cells keep their
background. It draws four more numbers per image, only when on.

Also not in the paper, off by default, for robustness to another lab: stain jitter ``s``
scales each stain's optical density (haematoxylin, eosin, DAB, by colour deconvolution) by a
factor uniform in [1-s, 1+s] (three more numbers), and blur ``b`` applies a Gaussian blur of
sigma uniform in [0, b] pixels (one more number), in that order after the colour jitter.

The images draw their numbers one after another, so switching one of these three on keeps the
first image's geometry but moves the geometric draws of every later image: a run with one is not
paired draw by draw with a run without (its folds are the same). The layout stays as it is, so
that stored runs keep their results.
"""

from __future__ import annotations

import cv2
import numpy as np

from leukdash.config import MIN_BLUR_SIGMA, AugmentConfig
from leukdash.data.preprocess import scale_stains
from leukdash.errors import ConfigError

_BORDERS = {"nearest": cv2.BORDER_REPLICATE, "reflect": cv2.BORDER_REFLECT, "constant": cv2.BORDER_CONSTANT}
_DRAWS_PER_IMAGE = 8  # rotation, shift x, shift y, shear, zoom x, zoom y, flip x, flip y
_JITTER_DRAWS = 4     # brightness, red gain, blue gain, gamma
_STAIN_DRAWS = 3      # haematoxylin, eosin, DAB


def random_transform(rng, cfg: AugmentConfig, height: int, width: int) -> np.ndarray:
    """Draw one random transform of a ``height`` x ``width`` image.

    Returns
    -------
    np.ndarray
        (2, 3) float64 matrix mapping input pixel coordinates (x, y) to output ones, flips
        included: the matrix ``cv2.warpAffine(image, matrix, (width, height))`` takes.
    """
    _check_config(cfg)
    if not (_is_count(height) and _is_count(width)):
        raise ValueError(f"height and width must be positive integers, got {height!r} x {width!r}")
    return _random_matrices(_as_rng(rng), cfg, 1, height, width)[0]


def augment_image(image: np.ndarray, cfg: AugmentConfig, rng) -> np.ndarray:
    """One randomly transformed copy of an (H, W, 3) uint8 image, same shape and dtype."""
    image = _check_images(image, batch=False)
    return _augment(image, np.zeros(1, dtype=np.intp), cfg, _as_rng(rng))[0]


def augment_batch(images: np.ndarray, cfg: AugmentConfig, seed_or_rng) -> np.ndarray:
    """A randomly transformed copy of each image of an (N, H, W, 3) uint8 batch.

    The same seed gives the same batch; passing a generator gives the same images as calling
    :func:`augment_image` on each image in turn with that generator.
    """
    images = _check_images(images)
    return _augment(images, np.arange(len(images)), cfg, _as_rng(seed_or_rng))


def expand(images: np.ndarray, labels, factor: int, cfg: AugmentConfig, seed):
    """The offline xK expansion: the originals, then ``factor - 1`` transformed copies of each.

    Returns
    -------
    images : (factor * N, H, W, 3) uint8
        Rows ``0..N-1`` are the originals; rows ``k*N..(k+1)*N-1`` are the k-th copies.
    labels : (factor * N,) array, the label of each row's original.
    source_index : (factor * N,) int array, the original each row was made from, so that folds
        and groups can follow the copies.
    """
    images = _check_images(images)
    _check_config(cfg)
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(f"labels must be a 1-D array of {len(images)} labels, got shape {labels.shape}")
    if not _is_count(factor):
        raise ConfigError(f"augment_factor must be an integer of at least 1, got {factor!r}")
    n = len(images)
    source_index = np.tile(np.arange(n), factor)
    expanded = np.empty((factor * n,) + images.shape[1:], dtype=np.uint8)
    expanded[:n] = images
    if factor > 1:
        _augment(images, source_index[n:], cfg, _as_rng(seed), out=expanded[n:])
    return expanded, labels[source_index], source_index


def preview(image: np.ndarray, cfg: AugmentConfig, n: int = 8, seed: int = 0,
            run_size: int | None = None) -> list[np.ndarray]:
    """``n`` transformed copies of one image, for a grid in the UI.

    A blur's sigma is in pixels of the run's images, the other transforms are relative to the image:
    given the run's image size, the blur is scaled to this image's longer side, so that the copies
    look as blurred as a run's would at this size.
    """
    image = _check_images(image, batch=False)
    if not _is_count(n):
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if run_size is not None and not _is_count(run_size):
        raise ValueError(f"run_size must be a positive integer, got {run_size!r}")
    blur_scale = 1.0 if run_size is None else max(image.shape[1:3]) / run_size
    return list(_augment(image, np.zeros(n, dtype=np.intp), cfg, _as_rng(seed), blur_scale=blur_scale))


def _augment(images, index, cfg, rng, out=None, blur_scale: float = 1.0) -> np.ndarray:
    """Write a transformed copy of ``images[index[i]]`` into ``out[i]`` for every i; a preview
    scales the blur's sigma by ``blur_scale`` (see :func:`preview`), skipping the sigmas a run skips."""
    _check_config(cfg)
    height, width = images.shape[1:3]
    if out is None:
        out = np.empty((len(index), height, width, 3), dtype=np.uint8)
    if not cfg.enabled():
        out[:] = images[index]
        return out
    matrices, jitter, stains, blur = _random_parameters(rng, cfg, len(index), height, width)
    border = _BORDERS[cfg.fill_mode]
    for i, (source, matrix) in enumerate(zip(index, matrices)):
        cv2.warpAffine(images[source], matrix, (width, height), dst=out[i],
                       flags=cv2.INTER_LINEAR, borderMode=border, borderValue=(0, 0, 0))
        if jitter is not None:
            out[i] = _jitter_colour(out[i], *jitter[i])
        if stains is not None:
            out[i] = scale_stains(out[i], stains[i])
        if blur is not None and blur[i] >= MIN_BLUR_SIGMA:
            out[i] = cv2.GaussianBlur(out[i], (0, 0), float(blur[i]) * blur_scale)
    return out


def _jitter_colour(image: np.ndarray, brightness: float, red: float, blue: float, gamma: float) -> np.ndarray:
    """Colour jitter of one image (see the module docstring), through a lookup table per channel."""
    levels = (np.arange(256) / 255.0) ** gamma
    gains = brightness * np.array([red, 1.0, blue])
    tables = np.clip(levels[None, :] * gains[:, None] * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.stack([tables[c][image[..., c]] for c in range(3)], axis=-1)


def _random_matrices(rng, cfg: AugmentConfig, n: int, height: int, width: int) -> np.ndarray:
    """(n, 2, 3) forward matrices, the parameters drawn as ImageDataGenerator draws them."""
    return _random_parameters(rng, cfg, n, height, width)[0]


def _random_parameters(rng, cfg: AugmentConfig, n: int, height: int, width: int):
    """The (n, 2, 3) forward matrices, the (n, 4) colour jitter factors, the (n, 3) stain
    factors and the (n,) blur sigmas (each None when off).

    One draw of (n, 8 to 16) numbers, so that a batch gets the same numbers as its images
    drawn one at a time from the same generator.
    """
    widths = [_DRAWS_PER_IMAGE, _JITTER_DRAWS if cfg.colour_jitter else 0, _STAIN_DRAWS if cfg.stain_jitter else 0,
              1 if cfg.blur else 0]
    u = rng.random((n, sum(widths)))
    # Each optional transform draws its own columns, only when on: a row is one image's numbers.
    start = np.cumsum([0] + widths)
    jitter = 1.0 + cfg.colour_jitter * (2.0 * u[:, start[1]:start[2]] - 1.0) if cfg.colour_jitter else None
    stains = 1.0 + cfg.stain_jitter * (2.0 * u[:, start[2]:start[3]] - 1.0) if cfg.stain_jitter else None
    blur = cfg.blur * u[:, start[3]] if cfg.blur else None
    signed = 2.0 * u[:, :6] - 1.0  # uniform in [-1, 1)
    return _compose(
        theta=cfg.rotation * signed[:, 0],
        shift_x=cfg.width_shift * width * signed[:, 1],
        shift_y=cfg.height_shift * height * signed[:, 2],
        shear=cfg.shear * signed[:, 3],
        zoom_x=1.0 + cfg.zoom * signed[:, 4],
        zoom_y=1.0 + cfg.zoom * signed[:, 5],
        flip_x=cfg.horizontal_flip & (u[:, 6] < 0.5),
        flip_y=cfg.vertical_flip & (u[:, 7] < 0.5),
        height=height,
        width=width,
    ), jitter, stains, blur


def _compose(*, theta, shift_x, shift_y, shear, zoom_x, zoom_y, flip_x, flip_y, height, width) -> np.ndarray:
    """Forward (input -> output) matrices from per-image parameters (degrees, pixels, factors).

    Builds Keras' output -> input map ``input = c + R Sh Z D (output - c) + R t`` (D: the
    flips, applied last to the output) and inverts it.
    """
    theta, shear = np.deg2rad(theta), np.deg2rad(shear)
    n = len(theta)
    rotate = _stack2x2(np.cos(theta), -np.sin(theta), np.sin(theta), np.cos(theta))
    shear_m = _stack2x2(np.ones(n), -np.sin(shear), np.zeros(n), np.cos(shear))
    zoom_m = _stack2x2(zoom_x, np.zeros(n), np.zeros(n), zoom_y)
    flip_m = _stack2x2(np.where(flip_x, -1.0, 1.0), np.zeros(n), np.zeros(n), np.where(flip_y, -1.0, 1.0))
    inverse = rotate @ shear_m @ zoom_m @ flip_m
    centre = np.array([[(width - 1) / 2.0], [(height - 1) / 2.0]])
    inverse_offset = centre + rotate @ np.stack([shift_x, shift_y], axis=-1)[..., None] - inverse @ centre
    forward = np.linalg.inv(inverse)
    forward_offset = -(forward @ inverse_offset)
    return np.concatenate([forward, forward_offset], axis=2)


def _stack2x2(a, b, c, d) -> np.ndarray:
    return np.stack([np.stack([a, b], axis=-1), np.stack([c, d], axis=-1)], axis=-2)


def _check_images(images, batch: bool = True) -> np.ndarray:
    """A C-contiguous (N, H, W, 3) uint8 array (N = 1 for one image), or ValueError naming what is wrong."""
    what = "images" if batch else "image"
    expected = "(N, H, W, 3)" if batch else "(H, W, 3)"
    if not isinstance(images, np.ndarray):
        raise ValueError(f"{what} must be a numpy array of shape {expected}, got {type(images).__name__}")
    shape = images.shape
    if not batch:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] != 3 or 0 in images.shape[1:]:
        raise ValueError(f"{what} must have shape {expected} (RGB), got {shape}")
    if images.dtype != np.uint8:
        raise ValueError(f"{what} must be uint8, got {images.dtype}")
    return np.ascontiguousarray(images)


def _check_config(cfg) -> None:
    if not isinstance(cfg, AugmentConfig):
        raise ConfigError(f"augmentation settings must be an AugmentConfig, got {type(cfg).__name__}")
    cfg.validate()


def _as_rng(seed_or_rng) -> np.random.Generator:
    if isinstance(seed_or_rng, np.random.Generator):
        return seed_or_rng
    if seed_or_rng is None:
        # default_rng(None) would draw fresh entropy: results would not be reproducible.
        raise ValueError("augmentation needs a seed (an int or a tuple of ints) or a numpy Generator, got None")
    return np.random.default_rng(seed_or_rng)


def _is_count(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1
