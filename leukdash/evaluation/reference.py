"""The known-image check, of Predict and of an external test, and what it needs from a run's own
images, stored beside the run.

Whether an image is (nearly) one of a run's images is decided on small copies (:func:`known_matches`): both padded
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
# Largest mean absolute difference (0-255, at KNOWN_SIZE) between an image and a reference image
# for the two to be compared as one picture (their detail decides, see detail_agreement).
# Measured: a JPEG re-encoding (quality 75) or a half-size copy of an ALL-IDB2 or C-NMC image
# differs by at most 0.70; the closest two distinct ALL-IDB2 files (Im227/Im260) by 4.25, distinct
# C-NMC cells on their black surround by 0.63.
NEAR_IDENTICAL_DIFFERENCE = 3.0
# known_matches compares this many images with every reference image at a time.
MATCH_CHUNK = 256
# Changes to what this module stores invalidate the stored references.
METHOD_VERSION = "reference-1"
# What a reference holds, in ``reference.npz``.
MEMBERS = ("images", "labels", "fold_of", "relative", "digests")


def pixel_digest(image: np.ndarray) -> str:
    """sha256 of an image's decoded pixels and shape: equal digests, identical pictures."""
    image = np.ascontiguousarray(image)
    return hashlib.sha256(f"{image.shape}{image.dtype}".encode() + image.tobytes()).hexdigest()


def known_matches(images: np.ndarray, reference: dict) -> tuple[np.ndarray, np.ndarray]:
    """Which image of a run's ``reference`` (:func:`known_reference`) each of ``images`` (uint8,
    RGB, at ``KNOWN_SIZE``) is a copy of: its index, or -1 for none, and their mean absolute pixel
    difference (NaN for none). The known-image check of Predict and of an external test.

    The closest of :func:`reference_copies` (:func:`closest_copy`)."""
    match, difference = np.full(len(images), -1), np.full(len(images), np.nan)
    for index, copies in enumerate(reference_copies(images, reference)):
        if copies:
            match[index] = closest_copy(copies)
            difference[index] = copies[match[index]]
    return match, difference


def closest_copy(copies: dict[int, float]) -> int:
    """The reference image an image is closest to among its :func:`reference_copies` (not empty): on a
    tie the first found, the image as it is before its mirrors and turns."""
    return min(copies, key=copies.get)


def reference_copies(images: np.ndarray, reference: dict) -> list[dict[int, float]]:
    """Every image of a run's ``reference`` that each of ``images`` (uint8, RGB, at ``KNOWN_SIZE``)
    is a copy of, with their mean absolute pixel difference, the image's own symmetries first.

    A copy: the image, or its mirror, quarter turn or transpose (the symmetries of
    :func:`~leukdash.data.duplicates.dihedral`: pre-augmented copies show the training cell as
    surely), within ``NEAR_IDENTICAL_DIFFERENCE`` of the reference image, whose fine detail agrees
    (:func:`detail_agreement`, at least ``SAME_DETAIL``; a flat picture has none to compare, so the
    difference alone decides); under the symmetry that brings it closest. The detail is compared
    first, every image with every reference image in one product of matrices: distinct pictures
    seldom agree, so the costlier difference is measured for the few pairs left.
    """
    from leukdash.data.duplicates import SYMMETRIES, dihedral

    theirs = _reference_details(reference)
    copies: list[dict[int, float]] = [{} for _ in images]
    for symmetry in range(SYMMETRIES):
        turned = np.ascontiguousarray(dihedral(images.transpose(1, 2, 0, 3), symmetry).transpose(2, 0, 1, 3))
        mine = _centred_details(turned)
        for start in range(0, len(images), MATCH_CHUNK):  # (chunk, references) at a time, not all at once
            agreement = detail_agreement(tuple(part[start:start + MATCH_CHUNK] for part in mine), theirs)
            for row, alike in enumerate(~(agreement < SAME_DETAIL)):
                candidates = np.flatnonzero(alike)
                found = copies[start + row]
                apart = np.abs(reference["images"][candidates].astype(np.int16)
                               - turned[start + row].astype(np.int16)).mean(axis=(1, 2, 3))
                for candidate, difference in zip(candidates.tolist(), apart.tolist()):
                    if difference <= NEAR_IDENTICAL_DIFFERENCE and difference < found.get(candidate, np.inf):
                        found[candidate] = difference
    return copies


def _centred_details(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each image's fine detail (:func:`~leukdash.data.duplicates.pixel_details`) less its mean, a
    row per image, and its root mean square (float32: a reference of 10,000 images holds 40 MB)."""
    from leukdash.data.duplicates import pixel_details

    details = pixel_details(images, KNOWN_SIZE).reshape(len(images), KNOWN_SIZE * KNOWN_SIZE)
    details -= details.mean(axis=1, keepdims=True)
    return details, np.sqrt((details ** 2).mean(axis=1))


def detail_agreement(mine: tuple[np.ndarray, np.ndarray], theirs: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The normalised correlation of the fine detail of each of some images with that of each of
    others (:func:`_centred_details` of both), one row per image: 1 for one picture, whatever its
    brightness and contrast; NaN where either picture is flat."""
    (details, spread), (references, reference_spread) = mine, theirs
    spreads = np.outer(spread, reference_spread)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(spreads > MIN_DETAIL ** 2, (details @ references.T) / details.shape[1] / spreads, np.nan)


def _reference_details(reference: dict) -> tuple[np.ndarray, np.ndarray]:
    """The centred details of a reference's images, computed once for the reference held in
    memory (Predict keeps it per run: each upload is then one product, not thousands of blurs)."""
    if "details" not in reference:
        reference["details"] = _centred_details(reference["images"])
    return reference["details"]


def known_reference(run_id: str, store: RunStore | None = None, dataset=None) -> dict:
    """The run's images at ``KNOWN_SIZE`` with their labels, folds, relative paths and pixel
    digests: read from ``reference.npz`` beside the run, or computed from its dataset (``dataset``,
    else opened as the run had it) and stored there."""
    store = store or RunStore()
    folder = store.run_dir(run_id)
    meta = store.finished_meta(run_id)
    key = {"method": METHOD_VERSION, "size": KNOWN_SIZE, "dataset": meta["dataset"]["fingerprint"],
           "fold_ids": meta["fold_ids"]}
    stored = read_run_cache(folder, "reference", key, MEMBERS, _is_reference)
    if stored is not None:
        return stored
    from leukdash.engine.run_data import open_run_dataset, validation_folds

    dataset = dataset or open_run_dataset(meta, store)
    digests = []  # taken as each image is decoded for its small copy: each is decoded once
    arrays = dataset.load(KNOWN_SIZE, decoded=lambda image: digests.append(pixel_digest(image)))
    reference = {"images": arrays.images, "labels": arrays.labels,
                 "fold_of": validation_folds(run_id, len(arrays.labels), store),
                 "relative": np.array([dataset.relative(p) for p in arrays.paths], dtype=str),
                 "digests": np.array(digests, dtype=str)}
    write_run_cache(folder, "reference", key, reference)
    return reference


def training_hashes(run_id: str, store: RunStore | None = None, dataset=None) -> set[str]:
    """The content hash of each image run ``run_id`` was trained on: read from ``trained-on.npz``
    beside it, or computed from its dataset (``dataset``, else opened as the run had it) and stored."""
    from leukdash.engine.run_data import open_run_dataset

    store = store or RunStore()
    meta = store.finished_meta(run_id)
    folder, key = store.run_dir(run_id), {"dataset": meta["dataset"]["fingerprint"]}
    stored = read_run_cache(folder, "trained-on", key, ("sha1",),
                            lambda arrays: arrays["sha1"].ndim == 1 and arrays["sha1"].dtype.kind == "U")
    if stored is None:
        stored = {"sha1": np.array((dataset or open_run_dataset(meta, store)).contents, dtype="U40")}
        write_run_cache(folder, "trained-on", key, stored)
    return set(stored["sha1"].tolist())


def store_references(run_id: str, dataset, store: RunStore) -> None:
    """Store beside a run just finished what its checks need of its images (``dataset``, as it was
    trained on them): the known-image reference, the out-of-distribution description of each view
    and the training images' hashes. Done while the images are at hand: once its folder changes
    (images added, removed, relabelled), a run could not read them back, and would lose its
    checks and its external tests.

    Raises :class:`~leukdash.errors.StoreWarning` when one is not stored in the run's folder (a full
    disk, a file size limit): these files are why this step runs, so their absence is its failure, not a
    cache skipped; a cache of the images elsewhere in the store that is not kept stays a warning."""
    from leukdash.atomic import must_keep
    from leukdash.config import RunConfig
    from leukdash.evaluation.ood import training_distribution, views

    with must_keep(store.run_dir(run_id)):
        known_reference(run_id, store, dataset)
        for view in views(RunConfig.from_dict(store.finished_meta(run_id)["config"])):
            training_distribution(run_id, store, view, dataset)
        training_hashes(run_id, store, dataset)


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
    from leukdash.engine.record_shapes import member_ids

    store = store or RunStore()
    voters = [member for member, _ in member_ids(store.finished_meta(run_id))]
    return (store.run_dir(run_id) / "reference.npz").is_file() and \
        all((store.run_dir(voter) / "ood.npz").is_file() for voter in voters)
