"""``nn``: cosine nearest neighbour (argmax of the similarity over all target columns), as DIFT / DINO-ViT
feature evaluations do. Score: the best cosine similarity; energy: minus its mean."""
from __future__ import annotations

import numpy as np

from ..features.base import FeatureGrid
from .base import MATCHERS, Correspondence, SimilarityMatcher, column_grid, lattice_columns


def _nn_result(sim: np.ndarray, source: FeatureGrid, target: FeatureGrid) -> dict:
    j = sim.argmax(1)
    best = sim[np.arange(len(j)), j].astype(np.float64)
    h, w = source.grid_hw
    return {"grid_match": column_grid(j, target.grid_hw[1]).reshape(h, w, 2), "score": best.reshape(h, w),
            "score_kind": "similarity", "energy": -float(best.mean())}


@MATCHERS.register("nn")
class NearestNeighbourMatcher(SimilarityMatcher):
    """Every source column -> the target column of highest cosine similarity (first on ties). No options."""

    def from_similarity(self, sim: np.ndarray, source: FeatureGrid, target: FeatureGrid) -> dict:
        return _nn_result(sim, source, target)

    def transfer_points(self, source: FeatureGrid, target: FeatureGrid, xy: np.ndarray) -> np.ndarray:
        """Same result as ``match(source, target).transfer(xy)``, matching only the source columns the pixel map
        reads at the points (:func:`lattice_columns`): O(points x target columns) instead of O(columns^2)."""
        from ..core.arrays import l2_normalize
        from .base import _check_pair

        _check_pair(source, target, self.name)
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        h, w = source.grid_hw
        idx = lattice_columns(source.geometry, (h, w), xy)
        a = l2_normalize(source.features.reshape(-1, source.channels)[idx], dtype=np.float32)
        b = l2_normalize(target.features.reshape(-1, target.channels), dtype=np.float32)
        sim = a @ b.T
        j = sim.argmax(1)
        gm = np.stack(np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64)), -1)
        gm = gm * 0.0  # columns that are never read: any finite value
        gm.reshape(-1, 2)[idx] = column_grid(j, target.grid_hw[1])
        score = np.zeros((h, w))
        score.reshape(-1)[idx] = sim[np.arange(len(j)), j]
        corr = Correspondence(forward=np.zeros((0, 0, 2)), source_hw=source.image_hw, target_hw=target.image_hw,
                              score=score, score_kind="similarity", energy=float("nan"), mask=np.ones((h, w), bool),
                              grid_match=gm, source_geometry=source.geometry, target_geometry=target.geometry,
                              matcher=self.spec)
        return corr.transfer(xy)
