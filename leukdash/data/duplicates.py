"""Duplicates in a dataset: byte-identical files, and near duplicates (the same cell re-cropped,
re-encoded or re-photographed, also mirrored, rotated or transposed as "pre-augmented" datasets
hold it) found by a perceptual-hash candidate confirmed on the pixels.

The folds keep every duplicate group on one side (:mod:`leukdash.engine.fold_planning`), and the
audit (:mod:`leukdash.data.audit`) lists them.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import scipy.fftpack
from PIL import Image

from leukdash.data.decode import decode_image
from leukdash.data.folds import capped_merges, merge_groups, merge_limit
from leukdash.data.squares import square_resize

# Near duplicates are found in two steps. Candidates: perceptual hashes (pHash, 12x12 = 144
# bits) at most this many bits apart; cheap, but blind on segmented cells on black (C-NMC),
# where distinct cells of different subjects and classes come 0-40 bits apart (1,552 pairs in
# cnmc_dev). On ALL-IDB2 the same cell re-cropped or re-photographed comes up to 40 bits apart
# (Im170/Im209), and no pair from 41 to 60 bits is one on the pixels (7,208 pairs checked).
HASH_SIZE = 12
NEAR_DUPLICATE_DISTANCE = 40
# Confirmation: the normalised correlation of the two images' fine detail (grey levels at
# PIXEL_SIZE minus a Gaussian blur of sigma PIXEL_SIZE / 32, which removes the silhouette and the
# background that all segmented cells share), the central 3/4 of one slid over the other by up
# to 1/8 of the side (re-crops). Measured over every pair up to 60 hash bits apart: the 12
# ALL-IDB2 pairs that are one cell by eye score 0.923-0.994 and the 4 in cnmc_dev 0.959-0.999;
# the best distinct pair scores 0.695 in ALL-IDB2 (7,237 pairs) and 0.773 in cnmc_dev (16,341
# pairs). 0.85 lies between with a margin of about 0.07 on each side.
PIXEL_SIZE = 128
PIXEL_MATCH = 0.85
# A detail whose spread is below this (grey levels) is flat: a blank or one-colour picture, which
# matches every other flat one perfectly (the correlation of two constants) and shows no cell.
# The flattest detail of the real datasets spreads 4.4 (ALL-IDB2), 5.4 (C-NMC).
MIN_DETAIL = 0.5
# Details (64 KB each at PIXEL_SIZE) kept while candidate pairs are scored: 16 MB.
DETAIL_CACHE = 256
# The symmetries of a square (see dihedral): a mirrored or rotated copy shows the same cell, and
# leaks across folds as surely as a re-encoded one. Its hash, under the symmetry that undoes the
# transform, comes at most 10 bits from the original's (each symmetry of 112 real images, also
# halved and saved as JPEG at quality 60); round cells on black come close under some symmetry
# far more often than as they are (7,272 more pairs of cnmc_dev within 40 bits, 39 within 20), so
# a candidate under a symmetry must come within this many bits.
SYMMETRIES = 8
SYMMETRY_DISTANCE = 20


def exact_duplicates(paths: list[Path]) -> list[list[int]]:
    """Groups (indices into ``paths``) of files with byte-identical content (SHA-1)."""
    by_hash: dict[str, list[int]] = defaultdict(list)
    for i, path in enumerate(paths):
        by_hash[hashlib.sha1(Path(path).read_bytes()).hexdigest()].append(i)
    return [group for group in by_hash.values() if len(group) > 1]


def dihedral(image: np.ndarray, symmetry: int) -> np.ndarray:
    """``image`` (its first two axes) under one of the ``SYMMETRIES`` of a square: transposed when
    bit 2 of ``symmetry`` is set, then flipped upside down (bit 0) and left to right (bit 1); 0 is
    the identity. Together they make every mirror and quarter turn."""
    image = np.swapaxes(image, 0, 1) if symmetry & 4 else image
    image = image[::-1] if symmetry & 1 else image
    return image[:, ::-1] if symmetry & 2 else image


def perceptual_hashes(images) -> np.ndarray:
    """:func:`perceptual_hash` of each RGB image: (N, ``SYMMETRIES``, bytes) uint8."""
    return np.array([perceptual_hash(image) for image in images],
                    dtype=np.uint8).reshape(-1, SYMMETRIES, HASH_SIZE ** 2 // 8)


def perceptual_hash(image) -> np.ndarray:
    """pHash of one RGB image under each symmetry (:func:`dihedral`), the ``HASH_SIZE ** 2`` bits of
    each packed: (``SYMMETRIES``, bytes); row 0, the image as it is, is ``imagehash.phash``'s.

    The image is shrunk and transformed by the discrete cosine transform once: a transpose of the
    image transposes its coefficients, a flip negates those of odd frequency along its axis."""
    image = Image.fromarray(np.asarray(image)).convert("L")
    pixels = np.asarray(image.resize((HASH_SIZE * 4, HASH_SIZE * 4), Image.Resampling.LANCZOS))
    low = scipy.fftpack.dct(scipy.fftpack.dct(pixels, axis=0), axis=1)[:HASH_SIZE, :HASH_SIZE]
    odd = (-1.0) ** np.arange(HASH_SIZE)
    hashes = []
    for symmetry in range(SYMMETRIES):
        block = low.T if symmetry & 4 else low
        block = block * (odd[:, None] if symmetry & 1 else 1) * (odd[None, :] if symmetry & 2 else 1)
        hashes.append(np.packbits((block > np.median(block)).ravel()))
    return np.array(hashes, dtype=np.uint8)


def near_duplicates(hashes: np.ndarray, threshold: int = NEAR_DUPLICATE_DISTANCE,
                    exclude: list[list[int]] = ()) -> list[tuple[int, int, int]]:
    """Candidate pairs ``(i, j, distance)``, i < j, whose hashes (:func:`perceptual_hashes`) differ
    in at most ``threshold`` bits as the images are, or ``SYMMETRY_DISTANCE`` under another
    symmetry (``distance``: the fewer of these), leaving out pairs inside one group of ``exclude``
    (the exact duplicates).

    A candidate is not yet a duplicate: :func:`confirmed_near_duplicates` checks the pixels."""
    same = {(i, j) for group in exclude for i in group for j in group if i < j}
    pairs = []
    for i in range(len(hashes) - 1):
        # One row at a time keeps memory linear in the number of images.
        as_is, turned = candidate_distances(hash_distances(hashes[i], hashes[i + 1:]), threshold)
        distance = np.fmin(as_is, turned)
        for j in np.flatnonzero(~np.isnan(distance)) + i + 1:
            if (i, int(j)) not in same:
                pairs.append((i, int(j), int(distance[j - i - 1])))
    return pairs


def hash_distances(hashes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Bits apart of one image's hash (``hashes``, its :func:`perceptual_hash`) and each of
    ``others``' under each symmetry: (len(others), ``SYMMETRIES``)."""
    return np.bitwise_count(others ^ hashes[0]).sum(axis=-1, dtype=np.int64)


def candidate_distances(distances: np.ndarray, threshold: int = NEAR_DUPLICATE_DISTANCE):
    """Of :func:`hash_distances`, the bits apart as the images are and under the closest other
    symmetry, each NaN where it makes no candidate (beyond ``threshold``, ``SYMMETRY_DISTANCE``)."""
    as_is, turned = distances[:, 0].astype(float), distances[:, 1:].min(axis=1).astype(float)
    return np.where(as_is <= threshold, as_is, np.nan), np.where(turned <= SYMMETRY_DISTANCE, turned, np.nan)


def pixel_details(images, size: int = PIXEL_SIZE) -> np.ndarray:
    """What :func:`pixel_similarity` compares: fine grey-level detail (grey minus a blur of 1/32
    of the side) at ``size``, (N, S, S)."""
    details = []
    for image in images:
        image = np.asarray(image)
        if image.shape[:2] != (size, size):
            image = square_resize(image, size)
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
        details.append(gray - cv2.GaussianBlur(gray, (0, 0), size / 32))
    return np.array(details, dtype=np.float32).reshape(-1, size, size)


def pixel_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """How surely two details (:func:`pixel_details`) show the same picture: the normalised
    correlation of each one's central 3/4 at its best shift over the other, the lower of the
    two (1 = identical up to brightness and contrast; ``PIXEL_MATCH`` and above = duplicate).
    A flat picture (detail below ``MIN_DETAIL``) has nothing to match: 0."""
    margin = PIXEL_SIZE // 8
    core = slice(margin, PIXEL_SIZE - margin)
    if _flat(a) or _flat(b):
        return 0.0
    one = cv2.matchTemplate(b, a[core, core], cv2.TM_CCOEFF_NORMED).max()
    other = cv2.matchTemplate(a, b[core, core], cv2.TM_CCOEFF_NORMED).max()
    return float(min(one, other))


def _flat(detail: np.ndarray) -> bool:
    """Whether a detail (:func:`pixel_details`) is flat in its central 3/4, the part compared."""
    margin = len(detail) // 8
    return bool(detail[margin:len(detail) - margin, margin:len(detail) - margin].std() < MIN_DETAIL)


def confirmed_near_duplicates(images, exclude: list[list[int]] = (), hashes: np.ndarray | None = None):
    """Hash candidates scored on the pixels, under the symmetry that makes them candidates:
    ``(confirmed, rejected)``, two lists of ``(i, j, hash distance, pixel score)``, the confirmed
    ones best first.

    ``images`` is indexed only for the images of candidate pairs (it may decode on demand, see
    :class:`ImagesOnDemand`), and their details are kept for the last ``DETAIL_CACHE`` images
    only: candidates come ordered by their first image, so each is computed about once while
    memory stays flat whatever the dataset's size. ``hashes``: :func:`perceptual_hashes` of the
    images, when already computed.
    """
    hashes = perceptual_hashes(images) if hashes is None else hashes
    detail = lru_cache(maxsize=DETAIL_CACHE)(lambda i: pixel_details([images[i]])[0])

    def score(i: int, j: int) -> float:
        # The better score of the image as it is and of the symmetry its hash comes closest
        # under, each where it makes a candidate.
        distances = hash_distances(hashes[i], hashes[j][None])
        symmetries = [0, 1 + int(distances[0, 1:].argmin())]
        return max(pixel_similarity(detail(i), np.ascontiguousarray(dihedral(detail(j), symmetry)))
                   for symmetry, distance in zip(symmetries, candidate_distances(distances))
                   if not np.isnan(distance[0]))

    scored = [(i, j, d, score(i, j)) for i, j, d in near_duplicates(hashes, exclude=exclude)]
    confirmed = sorted((s for s in scored if s[3] >= PIXEL_MATCH), key=lambda s: (-s[3], s[0], s[1]))
    return confirmed, [s for s in scored if s[3] < PIXEL_MATCH]


@dataclass
class Duplicates:
    """Exact and confirmed near duplicates of a dataset, and which links were merged into groups.

    ``refused`` holds the near-duplicate links (with the image counts of the two groups) that would
    have made a group larger than ``merge_limit`` images: reported, not merged, so that a chain of
    doubtful links can never collapse the folds. Exact duplicates are never refused: identical
    bytes are one image, and one image on both sides of a split always leaks.
    """

    exact: list[list[int]]
    near: list[tuple[int, int, int, float]]
    rejected: list[tuple[int, int, int, float]]
    refused: list[tuple[tuple[int, int], tuple[int, int]]]
    merge_limit: int

    def pairs(self) -> list[tuple[int, int]]:
        """The links merged into groups (exact duplicates first, then near ones, best first)."""
        refused = {pair for pair, _ in self.refused}
        return [pair for pair in _links(self.exact, self.near) if pair not in refused]


def find_duplicates(loaded, hashes: np.ndarray | None = None) -> Duplicates:
    """Duplicates among decoded images (``LoadedImages``, ideally at ``PIXEL_SIZE``; ``hashes``
    their :func:`perceptual_hashes` when already computed)."""
    exact = exact_duplicates(loaded.paths)
    near, rejected = confirmed_near_duplicates(loaded.images, exclude=exact, hashes=hashes)
    limit = merge_limit(loaded.groups)
    _, refused = capped_merges(merge_groups(loaded.groups, _links(exact, [])), _links([], near), limit)
    return Duplicates(exact, near, rejected, refused, limit)


def dataset_duplicates(dataset) -> Duplicates:
    """:func:`find_duplicates` over the images of a dataset at ``PIXEL_SIZE``, in one pass that
    keeps a hash per image, not its pixels; the images of candidate pairs are decoded again when
    compared. Memory: 144 bytes an image (a hash per symmetry) plus ``DETAIL_CACHE`` details (about 16 MB)."""
    from leukdash.data.dataset import LoadedImages

    kept, hashes = [], []
    for item, image, reason, _ in dataset.each_image(PIXEL_SIZE):
        if reason is None:
            kept.append(item)
            hashes.append(perceptual_hash(image))
    paths = [item.path for item in kept]
    loaded = LoadedImages(ImagesOnDemand(paths, PIXEL_SIZE), np.array([item.label for item in kept], np.int64),
                          np.array([item.group for item in kept], dtype=object), paths)
    return find_duplicates(loaded, np.array(hashes, np.uint8).reshape(-1, SYMMETRIES, HASH_SIZE ** 2 // 8))


class ImagesOnDemand(Sequence):
    """Image files decoded and resized to ``size`` x ``size`` when indexed, never held."""

    def __init__(self, paths: list[Path], size: int):
        self.paths, self.size = paths, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> np.ndarray:
        return square_resize(decode_image(self.paths[index]), self.size)


def _links(exact, near) -> list[tuple[int, int]]:
    return [(group[0], other) for group in exact for other in group[1:]] + [(i, j) for i, j, *_ in near]
