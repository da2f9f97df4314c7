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
"""

from __future__ import annotations

import hashlib

import numpy as np

from leukdash.engine.store import RunStore, read_json, write_json_atomic

KNOWN_SIZE = 32
# Changes to what this module stores invalidate the stored references.
METHOD_VERSION = "reference-1"


def pixel_digest(image: np.ndarray) -> str:
    """sha256 of an image's decoded pixels and shape: equal digests, identical pictures."""
    image = np.ascontiguousarray(image)
    return hashlib.sha256(f"{image.shape}{image.dtype}".encode() + image.tobytes()).hexdigest()


def known_reference(run_id: str, store: RunStore | None = None) -> dict:
    """The run's images at ``KNOWN_SIZE`` with their labels, folds, relative paths and pixel
    digests: read from ``reference.npz`` beside the run, or computed from its dataset and stored there."""
    store = store or RunStore()
    folder = store.run_dir(run_id)
    cache, info_path = folder / "reference.npz", folder / "reference.json"
    meta = store.finished_meta(run_id)
    key = {"method": METHOD_VERSION, "size": KNOWN_SIZE, "dataset": meta["dataset"]["fingerprint"],
           "fold_ids": meta["fold_ids"]}
    if cache.is_file() and read_json(info_path) == key:
        try:
            with np.load(cache, allow_pickle=False) as stored:
                return {name: stored[name] for name in ("images", "labels", "fold_of", "relative", "digests")}
        except (OSError, ValueError, KeyError, EOFError):  # damaged: computed again below
            pass
    from leukdash.data.arrays import load_arrays, save_npz, write_cache
    from leukdash.data.decode import decode_image
    from leukdash.engine.run_data import open_run_dataset, validation_folds

    dataset = open_run_dataset(meta)
    arrays = load_arrays(dataset, KNOWN_SIZE)
    reference = {"images": arrays.images, "labels": arrays.labels,
                 "fold_of": validation_folds(run_id, len(arrays.labels), store),
                 "relative": np.array([dataset.relative(p) for p in arrays.paths], dtype=str),
                 "digests": np.array([pixel_digest(decode_image(p)) for p in arrays.paths], dtype=str)}
    if write_cache(cache, lambda tmp: save_npz(tmp, **reference)):
        write_json_atomic(info_path, key, optional=True)  # only beside the arrays it describes
    return reference


def references_stored(run_id: str, store: RunStore | None = None) -> bool:
    """Whether a prediction with this run opens no dataset: its known-image reference and the
    out-of-distribution description of each run that votes in it (itself, or an ensemble's
    members) are stored (a preprocessed run's acquisition view is computed alongside)."""
    from leukdash.engine.ensemble import member_ids

    store = store or RunStore()
    voters = [member for member, _ in member_ids(store.finished_meta(run_id))]
    return (store.run_dir(run_id) / "reference.npz").is_file() and \
        all((store.run_dir(voter) / "ood.npz").is_file() for voter in voters)
