"""``mnn``: mutual nearest neighbours (cosine). A source column is matched only when its nearest target column
has it as ITS nearest source column; other columns are masked (``mask`` False, NaN matches), so the
correspondence is sparse. Score: the cosine similarity (NaN where unmatched); energy: minus the mean over the
matches."""
from __future__ import annotations

import numpy as np

from ..features.base import FeatureGrid
from .base import MATCHERS, SimilarityMatcher, column_grid


def _mnn_result(sim: np.ndarray, source: FeatureGrid, target: FeatureGrid) -> dict:
    j = sim.argmax(1)
    i_back = sim.argmax(0)
    mutual = i_back[j] == np.arange(len(j))
    h, w = source.grid_hw
    gm = column_grid(j, target.grid_hw[1])
    gm[~mutual] = np.nan
    best = sim[np.arange(len(j)), j].astype(np.float64)
    best[~mutual] = np.nan
    return {"grid_match": gm.reshape(h, w, 2), "score": best.reshape(h, w), "score_kind": "similarity",
            "energy": -float(np.nanmean(best)) if mutual.any() else 0.0, "mask": mutual.reshape(h, w),
            "details": {"n_matches": int(mutual.sum())}}


@MATCHERS.register("mnn")
class MutualNearestNeighbourMatcher(SimilarityMatcher):
    """Mutual nearest neighbours (sparse, with a mask). No options."""

    sparse = True

    def from_similarity(self, sim: np.ndarray, source: FeatureGrid, target: FeatureGrid) -> dict:
        return _mnn_result(sim, source, target)
