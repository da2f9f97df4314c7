"""Safe decoding of any image file into RGB uint8.

Every format OpenCV reads is accepted (JPEG, PNG, BMP, TIFF 8 and 16 bit, grayscale, RGBA).
Anything else raises :class:`ImageDecodeError` with a reason a user can act on: the callers
skip the file and list it, so one bad file never stops a dataset from loading. What the C
decoders write to file descriptor 2 while decoding (libjpeg's "Corrupt JPEG data", libpng's
warnings) never reaches the terminal: it is captured, and a message about damaged data refuses
the file with that message as its reason.
"""

from __future__ import annotations

import io
import re
import warnings
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, PngImagePlugin

from leukdash.errors import FileRefused, ImageDecodeError, ImageFormatError
from leukdash.fd2 import stderr_captured
from leukdash.data.files import read_regular_file, too_large

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jp2")
# In the names of the caches of what decoding gives (arrays, duplicate pairs): a cache written by
# an earlier decoder, which left photos as stored instead of turning them by their EXIF
# orientation, is not read.
DECODER = "upright"

# 50 megapixels is ten times an ALL-IDB1 smear field (2592x1944); anything bigger is far more
# likely a decompression bomb than a microscope image.
MAX_PIXELS = 50_000_000
# The largest file that limit admits, 50 megapixels of 16-bit RGB stored uncompressed, is 300 MB;
# a bigger file is refused from its size, before it is read into memory.
MAX_FILE_BYTES = 320 * 2**20
# The longer side may be at most this many times the shorter one. A smear field or a cell crop is
# near square (ALL-IDB 4:3, C-NMC 1:1); a 50000x1 strip is no picture of a cell, and resized to a
# square it would be one smeared row.
MAX_ASPECT = 20
# What a refused pixel layout (32-bit integers, floating-point colour, 5 channels) should become.
_SAVE_AS = "save it as an 8- or 16-bit TIFF or PNG"
# What libjpeg, libpng and libtiff say on fd 2 about data they could only partly decode.
_DAMAGE_WORDS = ("corrupt", "premature end", "truncat")


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
    width, height, kind, description, orientation = _header(data)
    if width * height > max_pixels:
        raise ImageDecodeError(
            f"image too large: {width}x{height} pixels exceeds the limit of {max_pixels:,}"
        )
    check_aspect(width, height)
    png = data[:8] == b"\x89PNG\r\n\x1a\n"
    if png:
        _check_png_chunks(data)
    if _signature(data) == "TIFF":
        _check_tiff_strips(data)
    if data[:2] == b"\xff\xd8" and not _jpeg_complete(data):
        raise ImageDecodeError("truncated JPEG: no end-of-image marker after the image data")
    with _opencv_quiet(), stderr_captured() as said:
        array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    message = " ".join(said["text"].split())
    damaged = "truncated or damaged PNG" if png else "corrupt image data"
    if array is None or array.size == 0:
        if kind not in _OPENCV_FORMATS:
            # Pillow knows more formats than OpenCV decodes (icons, Targa, Photoshop...): such a
            # file is whole, just not readable here, and "corrupt" would send its owner astray.
            raise ImageFormatError(f"not a format this tool reads: {description} ({kind}); {_SAVE_AS}")
        raise ImageDecodeError(f"{damaged}: {message or 'OpenCV could not decode it'}")
    if any(word in message.lower() for word in _DAMAGE_WORDS):
        raise ImageDecodeError(f"{damaged}: {message}")
    if array.shape[:2] != (height, width):
        raise ImageDecodeError(f"{damaged}: the header says {width}x{height}, "
                               f"the decoder gave {array.shape[1]}x{array.shape[0]}")
    return _oriented(_to_rgb_uint8(array), orientation)


def frames_note(source: str | Path | bytes) -> str | None:
    """A note for a file that holds several pictures (a multi-page TIFF, an animated GIF or PNG):
    :func:`decode_image` reads the first only, and an answer about it should say so; else None."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(_read_bytes(source))) as image:
                frames = int(getattr(image, "n_frames", 1))
    except Exception:  # noqa: BLE001 - decode_image has said what is wrong with the file, if anything
        return None
    return f"the file holds {frames} pictures (pages or frames): only the first was read" if frames > 1 else None


def check_aspect(width: int, height: int) -> None:
    """Refuse an empty image or one whose longer side exceeds ``MAX_ASPECT`` times its shorter."""
    if min(width, height) < 1:
        raise ImageDecodeError(f"empty image: {width}x{height} pixels")
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise ImageDecodeError(f"extreme aspect ratio: {width}x{height} pixels, more than {MAX_ASPECT}:1 "
                               f"(no cell image is that elongated)")


def _read_bytes(source: str | Path | bytes) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) > MAX_FILE_BYTES:
            raise ImageDecodeError(too_large(len(source), MAX_FILE_BYTES))
        return bytes(source)
    try:
        return read_regular_file(source, MAX_FILE_BYTES)
    except FileRefused as error:
        raise ImageDecodeError(str(error)) from None


def _header(data: bytes) -> tuple[int, int, str, str, int]:
    """Width, height, format, its description ("ICO", "Windows Icon") and the EXIF orientation
    (1 when none) from the header alone (Pillow opens lazily), before any pixel is decoded."""
    try:
        with warnings.catch_warnings():
            # Our own pixel limit decides, with a reason, instead of a warning on stderr; so do our
            # checks of damaged data (Pillow warns of corrupt EXIF, say).
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as image:
                return *image.size, image.format, image.format_description, _exif_orientation(image)
    except Image.DecompressionBombError:
        # The caller's pixel limit refuses it, with its size, as it does any image over the limit.
        return *_unchecked_size(data), "", "", 1
    except Exception as error:
        kind = _signature(data)
        if kind is None:
            raise ImageFormatError("not an image: the file's content is not a known image format") from None
        if "MAX_TEXT_CHUNK" in str(error):
            raise ImageDecodeError(f"{kind} refused: a text or colour-profile chunk decompresses to more than "
                                   f"{PngImagePlugin.MAX_TEXT_CHUNK // 2**20} MiB "
                                   f"(a possible decompression bomb)") from None
        said = " ".join(re.sub(r"<[^<>]* object at 0x[0-9a-fA-F]+>", "", str(error)).split())  # no memory address
        if kind == "TIFF" and "cannot identify" in said:
            raise ImageDecodeError("TIFF not readable: damaged, or a pixel layout this tool does not read "
                                   f"(e.g. floating-point colour): {_SAVE_AS}") from None
        if kind == "WebP":  # Pillow reads its first frame when it opens one: cut data fails here
            raise ImageDecodeError(f"truncated or damaged WebP: {said or type(error).__name__}") from None
        raise ImageDecodeError(f"damaged {kind} header: {said or type(error).__name__}") from None


def _unchecked_size(data: bytes) -> tuple[int, int]:
    """Width and height of an image that Pillow's ``Image.open`` refused as a possible decompression
    bomb, read by its format's own reader (the header alone, the step before open's check)."""
    for kind in Image.ID:
        factory, accept = Image.OPEN[kind]
        if not accept or accept(data[:16]) is True:
            try:
                with factory(io.BytesIO(data)) as image:
                    return image.size
            except Exception:  # noqa: BLE001 - not this format: open tries the next one the same way
                continue
    raise ImageDecodeError("image too large: refused as a possible decompression bomb")


def _exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation tag (1 to 8; 1: stored upright): a phone or camera stores the pixels as
    the sensor read them and says here how to turn them. Damaged EXIF counts as none. A TIFF's
    orientation is 1 here: OpenCV's TIFF decoder turns its pixels itself (libtiff reads the tag)."""
    raw = image.info.get("exif")  # what the header holds; getexif() would decode a PNG's pixels to look further
    if image.format == "TIFF" or not raw:
        return 1
    try:
        exif = Image.Exif()
        exif.load(raw)
        orientation = int(exif.get(_ORIENTATION_TAG, 1))
    except Exception:  # noqa: BLE001 - an unreadable EXIF block says nothing about the pixels
        return 1
    return orientation if orientation in _ORIENT else 1


def upright_size(image: Image.Image) -> tuple[int, int]:
    """Width and height of an opened image as :func:`decode_image` gives it (turned upright)."""
    width, height = image.size
    return (height, width) if _exif_orientation(image) >= 5 else (width, height)  # 5-8 turn by 90 degrees


def _oriented(array: np.ndarray, orientation: int) -> np.ndarray:
    """The pixels as a viewer shows them: turned as the EXIF orientation says (OpenCV's
    ``IMREAD_UNCHANGED`` leaves them as stored), so a training image and an upload of the same
    photo agree, and a 60x30 picture shown 30x60 everywhere else is 30x60 here too."""
    return array if orientation == 1 else np.ascontiguousarray(_ORIENT[orientation](array))


_ORIENTATION_TAG = 0x0112
# EXIF orientation -> the turn that shows the stored pixels upright (as Pillow's exif_transpose).
_ORIENT = {1: lambda a: a, 2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, -1), 7: lambda a: np.rot90(a, 2).swapaxes(0, 1),
           8: lambda a: np.rot90(a, 1)}
# Pillow's names of the formats OpenCV decodes (MPO: a JPEG with extra pictures, as cameras write).
_OPENCV_FORMATS = ("JPEG", "MPO", "PNG", "BMP", "DIB", "TIFF", "WEBP", "JPEG2000", "GIF", "PPM")
# The first bytes of each format decode_image reads.
_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8", "JPEG"), (b"II*\0", "TIFF"),
               (b"MM\0*", "TIFF"), (b"BM", "BMP"))


def _signature(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":  # a RIFF container, its size in between
        return "WebP"
    return next((kind for magic, kind in _SIGNATURES if data.startswith(magic)), None)


def _check_png_chunks(data: bytes) -> None:
    """Raise for a PNG whose chunks are cut short or damaged: Pillow checks every chunk's length
    and CRC up to the end marker (``verify``), without decompressing the pixels. Damage inside
    the compressed pixels is libpng's to find, while OpenCV decodes (its message is the reason);
    decompressing here as well took as long as the decoding itself.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
    except Exception as error:
        raise ImageDecodeError(f"truncated or damaged PNG: {error}") from None


def _check_tiff_strips(data: bytes) -> None:
    """Raise for a compressed TIFF whose pixel data is damaged. OpenCV decodes a damaged deflate
    or LZW strip without a word (the pixels are garbage); Pillow's libtiff refuses it and says
    why on fd 2. A TIFF Pillow cannot open or stores uncompressed, or one it fails on without
    libtiff saying why (a layout it does not read), is left to OpenCV (a cut file fails there),
    so this costs a second decoding of compressed TIFFs only.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            image = Image.open(io.BytesIO(data))
        except Exception:  # noqa: BLE001 - a layout Pillow does not read: OpenCV's to decode or refuse
            return
        with image, stderr_captured() as said:
            if image.info.get("compression", "raw") == "raw":
                return
            try:
                image.load()
                return
            except OSError:
                pass
    # libtiff names the file it read; Pillow's name for the bytes ("tempfile.tif") means nothing here.
    reason = re.sub(r"^\S+\.tiff?: ", "", " ".join(said["text"].split()))
    if reason:
        raise ImageDecodeError(f"damaged TIFF data ({image.info['compression']}): {reason}")


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
    """Any decoded array as (H, W, 3) RGB uint8, a block of rows at a time: besides the decoded
    array, memory holds the output and one block's temporaries (a 16-bit RGBA or float image
    converted whole would need several times its own size)."""
    if array.dtype in (np.float32, np.float64):
        array = _float_to_uint8(array)
    elif array.dtype not in (np.uint8, np.uint16):
        raise ImageDecodeError(f"unsupported pixel type {array.dtype}: {_SAVE_AS}")
    if array.ndim == 3 and array.shape[2] not in (1, 2, 3, 4):
        raise ImageDecodeError(f"unsupported number of channels: {array.shape[2]}: {_SAVE_AS}")
    out = np.empty((*array.shape[:2], 3), np.uint8)
    rows = _block_rows(array)
    for start in range(0, len(array), rows):
        out[start:start + rows] = _block_to_rgb(array[start:start + rows])
    return out


def _block_rows(array: np.ndarray) -> int:
    """Rows of ``array`` in a block of about four million values."""
    return max(1, 2**22 // max(1, array[0].size))


def _block_to_rgb(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint16:
        array = (array // 257).astype(np.uint8)
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
    # Four channels: transparent pixels become white, like the pale background of a smear.
    return cv2.cvtColor(_over_white(array[:, :, :3], array[:, :, 3]), cv2.COLOR_BGR2RGB)


def _float_to_uint8(array: np.ndarray) -> np.ndarray:
    """Float pixels (0..1 or 0..255) as uint8, a block of rows at a time so that a 50-megapixel
    float image needs no full-size temporary; NaN counts as 0. No finite value at all: refused."""
    rows = _block_rows(array)
    finite_max = -np.inf
    for start in range(0, len(array), rows):
        block = array[start:start + rows]
        finite = block[np.isfinite(block)]
        if finite.size:
            finite_max = max(finite_max, float(finite.max()))
    if finite_max == -np.inf:
        raise ImageDecodeError("no pixel values: every pixel of the float image is NaN or infinite")
    scale = 255.0 if finite_max <= 1.0 else 1.0
    out = np.empty(array.shape, np.uint8)
    for start in range(0, len(array), rows):
        out[start:start + rows] = np.clip(np.nan_to_num(array[start:start + rows]) * scale, 0, 255)
    return out


def _over_white(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    weight = alpha.astype(np.float32)[:, :, None] / 255.0
    blended = colour.astype(np.float32) * weight + 255.0 * (1.0 - weight)
    return np.round(blended).astype(np.uint8)
