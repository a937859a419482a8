"""Small array helpers: the package's one L2 normalisation (every module calls this one, with its own eps/dtype)."""
from __future__ import annotations

import numpy as np


def l2_normalize(x: np.ndarray, eps: float = 1e-12, dtype=np.float64) -> np.ndarray:
    """Scale every vector along the last axis to unit L2 norm: ``x / max(||x||, eps)``.

    Args:
        x: (..., D) array.
        eps: floor on the norm: all-zero vectors stay zero and vectors with a norm below ``eps`` are divided by
            ``eps`` (the MRF solvers use 1e-8, :data:`convcorr.numerics.mrf.common.NORM_EPS`; SIFT 1e-30).
        dtype: type of the computation and of the output (float32 halves the memory of large feature databases;
            ``x.dtype`` keeps the input's).
    Returns:
        (..., D) C-contiguous array of ``dtype``.
    """
    x = np.asarray(x, dtype=dtype)
    return np.ascontiguousarray(x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps), dtype=dtype)
