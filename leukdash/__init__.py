"""leukdash: identify leukemia subtypes in blood-cell images and compare a CNN with classic models.

The package is the engine behind the dashboard; it never imports streamlit, and TensorFlow is
only imported where a CNN is trained or loaded.
"""

__version__ = "0.1.0"

# Bumped whenever a change in the engine changes what a run computes: it is part of every run id,
# so results of an older engine are never served as current.
# 2: near-duplicates are confirmed on the pixels, which changes the fold plan of ALL-IDB2
#    (a new true pair, Im170/Im209) while its config and data stay the same.
# 3: a CNN fold trains with one TensorFlow thread instead of two (see models/cnn.py: CNN_THREADS),
#    which changes its weights.
ENGINE_VERSION = "3"
