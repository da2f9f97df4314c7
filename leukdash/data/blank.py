"""Images that carry no detail: blank or one colour, no cell to learn from. A run and the audit name
them: one such image among a run's own skews its out-of-distribution check's calibration."""

from __future__ import annotations

import cv2
import numpy as np

# Grey-level spread below which an image is one colour: compression noise on a blank image.
ONE_COLOUR = 1.0


def flat_images(images) -> list[int]:
    """Indices of the images (RGB, any size) that carry no detail: blank or one colour, no cell to
    learn from. Judged on the spread of their grey levels (below ``ONE_COLOUR``), which does not
    depend on the size a run reads them at: the fine detail that duplicates are matched on
    (:func:`leukdash.data.duplicates.pixel_similarity`) fades at 8-12 px, where every real image
    would look flat (their grey levels spread at least 7 there: ALL-IDB2 and C-NMC at 8 px)."""
    return [i for i, image in enumerate(images)
            if cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2GRAY).std() < ONE_COLOUR]
