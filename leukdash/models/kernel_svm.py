"""``SVC(kernel="rbf", gamma="scale")`` computed from a precomputed kernel matrix.

The same model, fitted by the same libsvm solver on the same kernel values, so it makes the
same predictions; only the way the kernel values are obtained differs. libsvm computes each
RBF value on demand with a plain loop over the inputs (3,072 of them for 32 px pixels) and
recomputes what falls out of its cache; here the whole training Gram matrix is one BLAS
product. Measured on an allidb2_ufpr fold at 64 px (x8 augmentation, 32 px pixels, calibration
included): 46.4 s with libsvm's RBF, 5.3 s here (2-core AVX-512 EPYC, shared). A five-class
fold's ~5,800 training images make a ~270 MB Gram matrix; with the blocks it is finished in,
it adds ~360 MB to the worker (measured), ~700 MB at the fold's peak with its inputs.

The kernel values agree with libsvm's to ~1e-15, not bit for bit (another summation order);
libsvm's solver stops at a tolerance, so that can move its path within it: decision values and probabilities then differ by up to ~1e-5 (on
tiny problems; 3e-13 on an ALL-IDB2 fold), and a prediction only for an image that sits on
the decision boundary (tests/test_kernel_svm.py).

A fitted model keeps its support vectors only, as ``SVC`` does.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.svm import SVC


def rbf_kernel_matrix(left: np.ndarray, right: np.ndarray, gamma: float, block: int = 1024) -> np.ndarray:
    """``exp(-gamma * |a - b|^2)`` for every row ``a`` of ``left`` and ``b`` of ``right``,
    computed as libsvm does (``|a|^2 + |b|^2 - 2 a.b``), the dot products as one BLAS product.

    Finished in place, ``block`` rows at a time, so the peak is the matrix and one block (a
    five-class fold's 5,800 x 5,800 matrix: 270 MB, not twice that)."""
    kernel = left @ right.T
    left_squared, right_squared = np.einsum("ij,ij->i", left, left), np.einsum("ij,ij->i", right, right)
    for start in range(0, len(kernel), block):
        rows = kernel[start:start + block]
        rows[:] = (left_squared[start:start + block, None] + right_squared[None, :]) - 2.0 * rows
        np.exp(-gamma * rows, out=rows)
    return kernel


class KernelSVC(ClassifierMixin, BaseEstimator):
    """An RBF support vector classifier with ``gamma="scale"``, fitted on its Gram matrix.

    Drop-in for ``SVC(kernel="rbf", C=C, gamma="scale")``: ``fit``, ``predict``,
    ``decision_function`` and ``classes_`` behave as that model's do.
    """

    def __init__(self, C: float = 1.0):
        self.C = C

    def fit(self, X, y):
        X = np.ascontiguousarray(X, dtype=np.float64)
        variance = X.var()
        # SVC's gamma="scale", computed on the same (training) input.
        self.gamma_ = 1.0 / (X.shape[1] * variance) if variance != 0 else 1.0
        self.svc_ = SVC(kernel="precomputed", C=self.C).fit(rbf_kernel_matrix(X, X, self.gamma_), y)
        self.support_vectors_ = X[self.svc_.support_]
        self.n_train_ = len(X)
        self.classes_ = self.svc_.classes_
        return self

    def _kernel(self, X) -> np.ndarray:
        """Kernel values against the training set, as the precomputed SVC wants them: libsvm only
        reads the support vectors' columns, so the others stay 0."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        full = np.zeros((len(X), self.n_train_))
        full[:, self.svc_.support_] = rbf_kernel_matrix(X, self.support_vectors_, self.gamma_)
        return full

    def decision_function(self, X) -> np.ndarray:
        return self.svc_.decision_function(self._kernel(X))

    def predict(self, X) -> np.ndarray:
        return self.svc_.predict(self._kernel(X))
