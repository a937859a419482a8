"""Small array helpers shared by the feature-matching modules."""
from __future__ import annotations

import numpy as np


def l2_normalize(x: np.ndarray, eps: float = 1e-12, dtype=np.float64) -> np.ndarray:
    """Scale every vector along the last axis to unit L2 norm (all-zero vectors stay zero).

    Args:
        x: (..., D) array.
        dtype: output float type (float32 halves the memory of large feature databases).
    Returns:
        (..., D) C-contiguous array of ``dtype``.
    """
    x = np.asarray(x, dtype=dtype)
    return np.ascontiguousarray(x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps), dtype=dtype)
