"""``nn``: cosine nearest neighbour (argmax of the similarity over all target columns), as DIFT / DINO-ViT
feature evaluations do. Score: the best cosine similarity; energy: minus its mean."""
from __future__ import annotations

import numpy as np

from ..dense import FeatureGrid
from .base import Matcher, column_grid, cosine_similarity, register_matcher


def _nn_result(sim: np.ndarray, source: FeatureGrid, target: FeatureGrid) -> dict:
    j = sim.argmax(1)
    best = sim[np.arange(len(j)), j].astype(np.float64)
    h, w = source.grid_hw
    return {"grid_match": column_grid(j, target.grid_hw[1]).reshape(h, w, 2), "score": best.reshape(h, w),
            "score_kind": "similarity", "energy": -float(best.mean())}


@register_matcher("nn")
class NearestNeighbourMatcher(Matcher):
    """Every source column -> the target column of highest cosine similarity (first on ties). No options."""

    def match_grid(self, source: FeatureGrid, target: FeatureGrid) -> dict:
        return _nn_result(cosine_similarity(source, target), source, target)

    def match_both(self, source: FeatureGrid, target: FeatureGrid):
        sim = cosine_similarity(source, target)
        fwd = self._correspondence(source, target, _nn_result(sim, source, target))
        rev = self._correspondence(target, source, _nn_result(sim.T, target, source))
        fwd.reverse, fwd.backward, rev.reverse, rev.backward = rev, rev.forward, fwd, fwd.forward
        return fwd
