"""What the known-image check needs from a run's own images, stored beside the run.

Whether an upload is (nearly) one of a run's images is decided on small copies: both padded
square and resized to ``KNOWN_SIZE``, then their mean absolute pixel difference (0-255). The
run's copies, labels, the fold that validated each image and a digest of each image's decoded
pixels (to tell an identical file from a near-identical one) are kept in ``reference.npz``
beside the run, so a prediction never opens the dataset again (for the built-in set: never
draws it); the demo runs ship with theirs.

``KNOWN_SIZE`` 32, measured on the real sets: a JPEG re-encoding (quality 75) or a half-size copy
of an ALL-IDB2 or C-NMC image differs from the original by at most 0.70 (0.76 at 64 px), the
closest two distinct ALL-IDB2 files by 4.25 (4.8 at 64 px); a quarter of the bytes of 64 px.
That difference alone cannot tell two cells on black apart: most of a C-NMC image is its black
surround, and 274 of cnmc_dev's 300 images lie within 3.0 of a distinct cell. Their fine detail
does (:func:`detail_agreement`): copies of one picture (JPEG at quality 60-75, half size, both)
agree at 0.978 or more on ALL-IDB2 and C-NMC (0.961 on the built-in set), the distinct C-NMC
cells within that difference at 0.889 at most.
"""

from __future__ import annotations

import hashlib

import numpy as np

from leukdash.engine.store import RunStore
from leukdash.evaluation.run_cache import read_run_cache, write_run_cache

KNOWN_SIZE = 32
# Least agreement of fine detail (see the module's docstring) for two copies to be one picture.
SAME_DETAIL = 0.95
# Grey-level spread of the detail below which a picture has none to compare (a flat image).
MIN_DETAIL = 0.5
# Changes to what this module stores invalidate the stored references.
METHOD_VERSION = "reference-1"
# What a reference holds, in ``reference.npz``.
MEMBERS = ("images", "labels", "fold_of", "relative", "digests")


def pixel_digest(image: np.ndarray) -> str:
    """sha256 of an image's decoded pixels and shape: equal digests, identical pictures."""
    image = np.ascontiguousarray(image)
    return hashlib.sha256(f"{image.shape}{image.dtype}".encode() + image.tobytes()).hexdigest()


def detail_agreement(image: np.ndarray, references: np.ndarray) -> np.ndarray:
    """The normalised correlation of the fine grey-level detail (the duplicate check's
    :func:`~leukdash.data.duplicates.pixel_details`, here at ``KNOWN_SIZE``: grey minus a blur of
    1 px) of ``image`` with that of each of ``references`` (uint8, RGB): 1 for one picture,
    whatever its brightness and contrast; NaN where either picture is flat."""
    from leukdash.data.duplicates import pixel_details

    details = pixel_details([image, *references], KNOWN_SIZE).reshape(len(references) + 1, -1).astype(np.float64)
    details -= details.mean(axis=1, keepdims=True)
    mine, theirs = details[0], details[1:]
    spread = np.sqrt((mine ** 2).mean() * (theirs ** 2).mean(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(spread > MIN_DETAIL ** 2, (theirs @ mine) / mine.size / spread, np.nan)


def known_reference(run_id: str, store: RunStore | None = None) -> dict:
    """The run's images at ``KNOWN_SIZE`` with their labels, folds, relative paths and pixel
    digests: read from ``reference.npz`` beside the run, or computed from its dataset and stored there."""
    store = store or RunStore()
    folder = store.run_dir(run_id)
    meta = store.finished_meta(run_id)
    key = {"method": METHOD_VERSION, "size": KNOWN_SIZE, "dataset": meta["dataset"]["fingerprint"],
           "fold_ids": meta["fold_ids"]}
    stored = read_run_cache(folder, "reference", key, MEMBERS, _is_reference)
    if stored is not None:
        return stored
    from leukdash.data.arrays import load_arrays
    from leukdash.data.decode import decode_image
    from leukdash.engine.run_data import open_run_dataset, validation_folds

    dataset = open_run_dataset(meta, store)
    arrays = load_arrays(dataset, KNOWN_SIZE)
    reference = {"images": arrays.images, "labels": arrays.labels,
                 "fold_of": validation_folds(run_id, len(arrays.labels), store),
                 "relative": np.array([dataset.relative(p) for p in arrays.paths], dtype=str),
                 "digests": np.array([pixel_digest(decode_image(p)) for p in arrays.paths], dtype=str)}
    write_run_cache(folder, "reference", key, reference)
    return reference


def _is_reference(arrays: dict) -> bool:
    """Whether stored arrays can be a reference: images at ``KNOWN_SIZE``, and a label, a fold,
    a path and a digest for each."""
    images = arrays["images"]
    return (images.dtype == np.uint8 and images.ndim == 4 and images.shape[1:] == (KNOWN_SIZE, KNOWN_SIZE, 3)
            and len(images) > 0 and all(arrays[name].shape == images.shape[:1] for name in MEMBERS[1:])
            and all(np.issubdtype(arrays[name].dtype, np.integer) for name in ("labels", "fold_of")))


def references_stored(run_id: str, store: RunStore | None = None) -> bool:
    """Whether a prediction with this run opens no dataset: its known-image reference and the
    out-of-distribution description of each run that votes in it (itself, or an ensemble's
    members) are stored (a preprocessed run's acquisition view is computed alongside)."""
    from leukdash.engine.ensemble import member_ids

    store = store or RunStore()
    voters = [member for member, _ in member_ids(store.finished_meta(run_id))]
    return (store.run_dir(run_id) / "reference.npz").is_file() and \
        all((store.run_dir(voter) / "ood.npz").is_file() for voter in voters)
