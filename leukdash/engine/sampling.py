"""Source-balanced sampling: every dataset of a run on several datasets weighs the same in training.

Pooled as they are, a lab that contributes 2,000 images outweighs one that contributes 200 ten
to one, and a model fits the larger lab's stain and optics. With ``balance_sources`` each
training part is resampled so that every source present in it contributes as many images as
the largest one: the smaller sources' images are repeated (whole copies, then a seeded draw
without replacement for the rest), so each of them appears the same number of times, give or
take one. Validation images are never resampled.
"""

from __future__ import annotations

import numpy as np


def balanced_rows(rows: np.ndarray, sources: np.ndarray, seed: int) -> np.ndarray:
    """``rows`` with each source's rows repeated up to the count of the largest source.

    Parameters
    ----------
    rows : array of int, shape (N,)
        Row indices of a training part, in order.
    sources : array, shape (N,)
        The source (dataset name) of each row.
    seed : int
        Seeds the draw of the remainder, so the same part is resampled the same way every time.

    Returns
    -------
    array of int
        The rows of the largest source once each, the others repeated; in ascending row order,
        so that the rows of each source keep their order.
    """
    rows, sources = np.asarray(rows), np.asarray(sources)
    names, counts = np.unique(sources, return_counts=True)
    target = int(counts.max()) if len(counts) else 0
    rng = np.random.default_rng(seed)
    picked = []
    for name, count in zip(names, counts):  # names sorted: the draws do not depend on row order
        own = rows[sources == name]
        copies, rest = divmod(target, int(count))
        picked += [np.repeat(own, copies), rng.choice(own, size=rest, replace=False)]
    return np.sort(np.concatenate(picked)) if picked else rows
