"""Decoded images of a dataset at one size, cached on disk: what every run, audit and check reads.

The cache is keyed by the dataset's fingerprint, the size and the preprocessing mode, written
atomically and verified on read, so a damaged file is decoded again rather than used.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from leukdash.atomic import write_atomic
from leukdash.data.dataset import Dataset, LoadedImages
from leukdash.data.decode import DECODER
from leukdash.data.sources import SkippedFile
from leukdash.paths import artifacts_root

# What reading a damaged .npz raises: a cut or altered file (OSError, EOFError, BadZipFile with its
# CRC), a member missing (KeyError) or malformed (ValueError), damaged deflate data (zlib.error).
NPZ_DAMAGE = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error)


def load_arrays(dataset: Dataset, size: int, preprocess: str = "raw") -> LoadedImages:
    """Decoded and resized images of a dataset (preprocessed as
    :func:`leukdash.data.preprocess.prepare_images` does), cached on disk by fingerprint, size and mode.

    A cache file that cannot be read back whole and consistent is decoded again and replaced.
    """
    mode = "" if preprocess == "raw" else f"_{preprocess}"
    cache = decoded_cache(dataset, f"{size}{mode}.npz")
    stored = _read_array_cache(cache, dataset, size)
    if stored is not None:
        return stored
    loaded = dataset.load(size, preprocess)  # a cell is segmented at full resolution, then resized
    write_cache(cache, lambda tmp: np.savez(
        tmp, images=loaded.images, labels=loaded.labels, groups=loaded.groups.astype(str),
        paths=np.array([dataset.relative(p) for p in loaded.paths], dtype=str),
        skipped_paths=np.array([dataset.relative(s.path) for s in loaded.skipped], dtype=str),
        skipped_reasons=np.array([s.reason for s in loaded.skipped], dtype=str),
        failed_paths=np.array([dataset.relative(f.path) for f in loaded.segmentation_failures], dtype=str),
        failed_reasons=np.array([f.reason for f in loaded.segmentation_failures], dtype=str)))
    return loaded


def decoded_cache(dataset: Dataset, name: str) -> Path:
    """Where a cache of what decoding ``dataset`` gives is kept (``name`` says what it holds): by
    the dataset's fingerprint and the decoder (``DECODER``), so a cache an earlier decoder wrote is
    not read."""
    return artifacts_root() / "cache" / "arrays" / f"{dataset.fingerprint[:24]}-{DECODER}_{name}"


def _read_array_cache(cache: Path, dataset: Dataset, size: int) -> LoadedImages | None:
    """The cached arrays, or None when the file is missing or damaged.

    Reading every member checks its zip CRC, so a truncated or altered file fails here (and the
    arrays must agree in length and shape), not later inside a fold.
    """
    if not cache.is_file():
        return None
    try:
        with np.load(cache, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in _ARRAY_CACHE_MEMBERS}
    except NPZ_DAMAGE:
        return None
    n = len(arrays["images"])
    if arrays["images"].shape[1:] != (size, size, 3) or arrays["images"].dtype != np.uint8 or \
            not len(arrays["labels"]) == len(arrays["groups"]) == len(arrays["paths"]) == n or \
            len(arrays["skipped_paths"]) != len(arrays["skipped_reasons"]) or \
            len(arrays["failed_paths"]) != len(arrays["failed_reasons"]):
        return None
    # The fingerprint covers the images only: another folder with the same images (a copy with a
    # stray Thumbs.db) shares this file. Of its left-out files, the images that did not decode
    # are the same here; the rest are what this folder's own scan left out. Names are stored in one
    # Unicode form: each is found again as this folder's files are named on disk.
    real = {dataset.relative(item.path): item.path for item in dataset.items}
    undecoded = [SkippedFile(real[p], r) for p, r in zip(arrays["skipped_paths"], arrays["skipped_reasons"])
                 if p in real]
    return LoadedImages(
        images=arrays["images"], labels=arrays["labels"], groups=arrays["groups"].astype(object),
        paths=[real.get(p, dataset.root / p) for p in arrays["paths"]],
        skipped=[*dataset.ignored, *undecoded],
        segmentation_failures=[SkippedFile(real.get(p, dataset.root / p), r)
                               for p, r in zip(arrays["failed_paths"], arrays["failed_reasons"])],
    )


# A cache written before segmentation failures were kept lacks their members: it is decoded again.
_ARRAY_CACHE_MEMBERS = ("images", "labels", "groups", "paths", "skipped_paths", "skipped_reasons", "failed_paths",
                        "failed_reasons")


def save_npz(path: Path, **arrays) -> None:
    """``np.savez_compressed`` with a fixed date in every member, so that equal arrays give equal
    bytes (the shipped demo runs' identical caches are then one object in git)."""
    import io

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asanyarray(array), allow_pickle=False)
            member = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            member.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(member, buffer.getvalue())


def write_cache(path: Path, write) -> bool:
    """Create a cache file through ``write(temporary_path)``, so that it appears whole or not at all;
    skipped where the store cannot be written (read-only, full): the data is used from memory.
    Returns whether it was written.

    Parallel fold workers may fill the same entry at once: each writes its own temporary file in
    the same folder, and the last rename wins (they hold the same content).
    """
    return write_atomic(path, write, optional=True)
