"""Safe decoding of any image file into RGB uint8.

Every format OpenCV reads is accepted (JPEG, PNG, BMP, TIFF 8 and 16 bit, grayscale, RGBA).
Anything else raises :class:`ImageDecodeError` with a reason a user can act on: the callers
skip the file and list it, so one bad file never stops a dataset from loading.
"""

from __future__ import annotations

import io
import warnings
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from leukdash.errors import FileRefused, ImageDecodeError
from leukdash.data.files import read_regular_file, too_large

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")

# 50 megapixels is ten times an ALL-IDB1 smear field (2592x1944); anything bigger is far more
# likely a decompression bomb than a microscope image.
MAX_PIXELS = 50_000_000
# The largest file that limit admits, 50 megapixels of 16-bit RGB stored uncompressed, is 300 MB;
# a bigger file is refused from its size, before it is read into memory.
MAX_FILE_BYTES = 320 * 2**20


def decode_image(source: str | Path | bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode a file (path or bytes) into an (H, W, 3) RGB uint8 array.

    Raises
    ------
    ImageDecodeError
        If the file is missing, not a regular file, empty, not an image, truncated, larger than
        ``MAX_FILE_BYTES`` or than ``max_pixels``. What the decoders would print about a broken
        file (libpng errors, OpenCV warnings) is kept off stderr: the reason says it instead.
    """
    data = _read_bytes(source)
    if not data:
        raise ImageDecodeError("empty file")
    width, height = _header_size(data)
    if width * height > max_pixels:
        raise ImageDecodeError(
            f"image too large: {width}x{height} pixels exceeds the limit of {max_pixels:,}"
        )
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        _check_png(data)
    if data[:2] == b"\xff\xd8" and not _jpeg_complete(data):
        raise ImageDecodeError("truncated JPEG: no end-of-image marker after the image data")
    with _opencv_quiet():
        array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None or array.size == 0:
        raise ImageDecodeError("corrupt image data: OpenCV could not decode it")
    return _to_rgb_uint8(array)


def _read_bytes(source: str | Path | bytes) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) > MAX_FILE_BYTES:
            raise ImageDecodeError(too_large(len(source), MAX_FILE_BYTES))
        return bytes(source)
    try:
        return read_regular_file(source, MAX_FILE_BYTES)
    except FileRefused as error:
        raise ImageDecodeError(str(error)) from None


def _header_size(data: bytes) -> tuple[int, int]:
    """Image size from the header alone (Pillow opens lazily), before any pixel is decoded."""
    try:
        with warnings.catch_warnings():
            # Our own pixel limit decides, with a reason, instead of a warning on stderr.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                return image.size
    except Image.DecompressionBombError:
        raise ImageDecodeError("image too large: refused as a possible decompression bomb") from None
    except Exception:
        raise ImageDecodeError("not an image: the file's content is not a known image format") from None


def _check_png(data: bytes) -> None:
    """Raise for a truncated or damaged PNG, which libpng would report on stderr with no file name.

    Pillow checks every chunk's length and CRC (``verify``), then decompresses the pixels.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    except Exception as error:
        raise ImageDecodeError(f"truncated or damaged PNG: {error}") from None


@contextmanager
def _opencv_quiet():
    """OpenCV's own warnings (e.g. 'PNG input buffer is incomplete') off while decoding."""
    previous = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(previous)


def _jpeg_complete(data: bytes) -> bool:
    # Inside entropy-coded data 0xFF is always stuffed (FF00), so an FFD9 after the last
    # start-of-scan marker can only be the real end of image.
    last_scan = data.rfind(b"\xff\xda")
    return last_scan >= 0 and data.find(b"\xff\xd9", last_scan) >= 0


def _to_rgb_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint16:
        array = (array // 257).astype(np.uint8)
    elif array.dtype in (np.float32, np.float64):
        scale = 255.0 if float(np.nanmax(array)) <= 1.0 else 1.0
        array = np.clip(np.nan_to_num(array) * scale, 0, 255).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise ImageDecodeError(f"unsupported pixel type {array.dtype}")
    if array.ndim == 2:
        return cv2.cvtColor(array, cv2.COLOR_GRAY2RGB)
    channels = array.shape[2]
    if channels == 1:
        return cv2.cvtColor(array[:, :, 0], cv2.COLOR_GRAY2RGB)
    if channels == 2:  # grayscale + alpha
        gray = _over_white(array[:, :, :1], array[:, :, 1])
        return cv2.cvtColor(gray[:, :, 0], cv2.COLOR_GRAY2RGB)
    if channels == 3:
        return cv2.cvtColor(array, cv2.COLOR_BGR2RGB)
    if channels == 4:
        # Transparent pixels become white, like the pale background of a smear.
        return cv2.cvtColor(_over_white(array[:, :, :3], array[:, :, 3]), cv2.COLOR_BGR2RGB)
    raise ImageDecodeError(f"unsupported number of channels: {channels}")


def _over_white(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    weight = alpha.astype(np.float32)[:, :, None] / 255.0
    blended = colour.astype(np.float32) * weight + 255.0 * (1.0 - weight)
    return np.round(blended).astype(np.uint8)
