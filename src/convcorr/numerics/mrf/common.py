"""Result type, argument checks and small helpers shared by the MRF flow solvers."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

BIG = 1e9
#: the solvers' floor on feature norms when they L2-normalise features (``normalize=True``; numpy
#: :func:`convcorr.core.arrays.l2_normalize` and torch :func:`convcorr.numerics.mrf.batch.l2_normalize_torch` alike)
NORM_EPS = 1e-8


# ------------------------------------------------------------------------------------------------ input checks
def _check_number(fn: str, name: str, v, lo: float | None = None, integer: bool = False) -> None:
    """ValueError naming ``fn`` and ``name`` unless ``v`` is a finite (integer) number >= ``lo``."""
    ok_type = isinstance(v, (int, np.integer)) if integer else isinstance(v, (int, float, np.integer, np.floating))
    if isinstance(v, (bool, np.bool_)) or not ok_type:
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{fn}: {name} must be {kind}, got {v!r}")
    if not np.isfinite(float(v)):
        raise ValueError(f"{fn}: {name} must be finite, got {v!r}")
    if lo is not None and v < lo:
        raise ValueError(f"{fn}: {name} must be >= {lo}, got {v!r}")


def _check_grids(fn: str, fs: np.ndarray, ft: np.ndarray) -> None:
    """ValueError naming ``fn`` unless fs, ft are non-empty (h, w, C >= 1) grids of finite numbers."""
    for name, f in (("fs", fs), ("ft", ft)):
        if f.ndim != 3:
            raise ValueError(f"{fn}: expected (h, w, C) feature grids fs and ft, got {fs.shape} and {ft.shape}")
        if f.shape[2] == 0:
            raise ValueError(f"{fn}: {name} has zero channels {f.shape}")
        if f.shape[0] == 0 or f.shape[1] == 0:
            raise ValueError(f"{fn}: {name} is an empty grid {f.shape}")
        if not np.issubdtype(f.dtype, np.number):
            raise ValueError(f"{fn}: {name} must be numeric, got dtype {f.dtype}")
        if not np.all(np.isfinite(f)):
            n = int(np.size(f) - np.count_nonzero(np.isfinite(f)))
            raise ValueError(f"{fn}: {name} contains {n} non-finite values (NaN/inf); clean the features first")


# ---------------------------------------------------------------------------------------------- belief propagation
@dataclass
class FlowResult:
    """Output of :func:`bp_flow`.

    Attributes:
        flow: (h, w, 2) int64 displacement (dx, dy) in grid cells from each source column to its target column.
        energy, data_energy, smooth_energy: E(flow) and its two terms (on the finest level).
        n_iter: BP iterations run (on the finest level).
        energies: energy of the belief-argmin labelling after each iteration (finest level).
    """

    flow: np.ndarray
    energy: float
    data_energy: float
    smooth_energy: float
    n_iter: int
    energies: list = field(default_factory=list)


SCHEDULES = ("checkerboard", "sync")
BACKENDS = ("auto", "numba", "torch")


def _pool2(f: np.ndarray) -> np.ndarray:
    """2x2 average pooling of an (h, w, C) grid (odd sizes: the last row/column is replicated)."""
    h, w = f.shape[:2]
    f = np.pad(f, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return f.reshape(f.shape[0] // 2, 2, f.shape[1] // 2, 2, -1).mean((1, 3))
