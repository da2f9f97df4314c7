"""Images made square: padded by repeating their edge pixels and resized, as every model takes
them, and where a picture lies in the square it was made into (:class:`View`, which carries a map
of the square, a Grad-CAM heatmap, back onto the picture's own pixels).

Apart from :mod:`leukdash.data.preprocess` (the cell-level modes, which place a cell in a square
of their own before this squaring) because raw images, the duplicate check and the pages' previews
square images without segmenting anything.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from leukdash.errors import ImageDecodeError

# Up to this side an image is padded to a square first, then resized (what every run has done:
# at most 2048^2 x 3 bytes = 12 MB of padding); a larger one is resized first, then padded, so
# that preparing it costs its decoded pixels plus the output, never its longer side squared.
PAD_FIRST_MAX_SIDE = 2048


def square_resize(image: np.ndarray, size: int) -> np.ndarray:
    """Pad to a square by repeating the edge pixels and resize to ``size`` x ``size`` (see
    ``PAD_FIRST_MAX_SIDE`` for the order). An image OpenCV cannot resize raises
    :class:`ImageDecodeError` with OpenCV's reason, so callers skip it like an unreadable file."""
    return square_with_rectangle(image, size)[0]


def square_with_rectangle(image: np.ndarray, size: int) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """:func:`square_resize`, and the image's rectangle in the square (see :func:`centred_rectangle`)."""
    height, width = image.shape[:2]
    try:
        if max(height, width) > PAD_FIRST_MAX_SIDE:
            small = resize_longer_side(image, size)
            return _pad_square(small, size), centred_rectangle(*small.shape[:2], size)
        side = max(height, width)
        return _resize(_pad_square(image, side), size), centred_rectangle(height, width, side)
    except cv2.error as error:
        reason = " ".join(str(error.err or error).split())
        raise ImageDecodeError(f"cannot resize {width}x{height} image: {reason}") from None


def _pad_square(image: np.ndarray, side: int) -> np.ndarray:
    height, width = image.shape[:2]
    if side == height and side == width:
        return image
    top, left = centre_offsets(height, width, side)
    return cv2.copyMakeBorder(image, top, side - height - top, left, side - width - left, cv2.BORDER_REPLICATE)


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    interpolation = cv2.INTER_AREA if image.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interpolation)


def resize_longer_side(image: np.ndarray, size: int) -> np.ndarray:
    """The image resized to ``size`` on its longer side, its aspect kept (area interpolation)."""
    height, width = image.shape[:2]
    scale = size / max(height, width)
    return cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                      interpolation=cv2.INTER_AREA)


def centre_offsets(height: int, width: int, side: int) -> tuple[int, int]:
    """Top and left margins of a height x width image centred in a square of ``side``."""
    return (side - height) // 2, (side - width) // 2


def centred_rectangle(height: int, width: int, side: int) -> tuple[float, float, float, float]:
    """The rectangle (x0, y0, x1, y1) of a height x width image centred in a square of ``side``,
    as shares of the side."""
    top, left = centre_offsets(height, width, side)
    return left / side, top / side, (left + width) / side, (top + height) / side


@dataclass(frozen=True)
class View:
    """Where a prepared square shows the picture it was prepared from: the picture's rectangle
    ``source`` (x0, y0, x1, y1 in the picture's pixels) fills the square's rectangle ``target``
    (x0, y0, x1, y1 as shares of its side). The rest of the square is not the picture: edge pixels
    repeated (``raw``), or black around the cell (a cell mode)."""

    source: tuple
    target: tuple

    def to_picture(self, square_map: np.ndarray, shape: tuple) -> np.ndarray:
        """A map over the prepared square (h, w, any resolution) in the picture's pixels, (H, W) of
        ``shape``: each pixel takes the value where the model saw it, 0 where the model did not see
        it (outside ``source``: for a cell mode, outside the cell's bounding box)."""
        (sx0, sy0, sx1, sy1), (tx0, ty0, tx1, ty1) = self.source, self.target
        rows, cols = square_map.shape[:2]
        # Pixel centres: the map's column u lies at share (u + 0.5) / cols of the square, which
        # shows the picture's column x at share tx0 + (x + 0.5 - sx0) / (sx1 - sx0) * (tx1 - tx0).
        ax, ay = (tx1 - tx0) * cols / (sx1 - sx0), (ty1 - ty0) * rows / (sy1 - sy0)
        to_map = np.float32([[ax, 0, (tx0 * cols) + (0.5 - sx0) * ax - 0.5],
                             [0, ay, (ty0 * rows) + (0.5 - sy0) * ay - 0.5]])
        height, width = shape[:2]
        mapped = cv2.warpAffine(square_map.astype(np.float32), to_map, (width, height),
                                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
        seen = np.zeros((height, width), bool)
        seen[int(np.floor(sy0)):int(np.ceil(sy1)), int(np.floor(sx0)):int(np.ceil(sx1))] = True
        return np.where(seen, mapped, 0).astype(np.float32)
