"""``softargmax``: window soft-argmax (as in GeoAware-SC / CATs evaluations). For every source column the
cosine-nearest target column is found, then the match is refined to the softmax-weighted mean position over a
``window`` x ``window`` neighbourhood of it: ``sum_t softmax(sim(s, t) / temperature) * t`` (columns outside
the target grid are left out). Sub-cell (fractional) target columns result. Score: the similarity at the
argmax; energy: minus its mean."""
from __future__ import annotations

import numpy as np

from ..features.base import FeatureGrid
from .base import MATCHERS, SimilarityMatcher


@MATCHERS.register("softargmax")
class SoftArgmaxMatcher(SimilarityMatcher):
    """Window soft-argmax.

    Args:
        window: odd side of the window in target columns around the argmax (1 = plain argmax).
        temperature: softmax temperature on cosine similarities (smaller = sharper).
    """

    def __init__(self, window: int = 5, temperature: float = 0.05):
        if int(window) != window or int(window) < 1 or int(window) % 2 == 0:
            raise ValueError(f"matcher 'softargmax': window must be a positive odd integer, got {window!r}")
        if not float(temperature) > 0:
            raise ValueError(f"matcher 'softargmax': temperature must be > 0, got {temperature!r}")
        self.options = dict(window=int(window), temperature=float(temperature))

    def from_similarity(self, sim: np.ndarray, source: FeatureGrid, target: FeatureGrid) -> dict:
        h, w = source.grid_hw
        h2, w2 = target.grid_hw
        r = self.options["window"] // 2
        T = self.options["temperature"]
        j = sim.argmax(1)
        best = sim[np.arange(len(j)), j].astype(np.float64)
        jr, jc = np.divmod(j, w2)
        d = np.arange(-r, r + 1)
        rr = jr[:, None, None] + d[None, :, None]                      # (N, k, 1)
        cc = jc[:, None, None] + d[None, None, :]                      # (N, 1, k)
        rr, cc = np.broadcast_arrays(rr, cc)
        inside = (rr >= 0) & (rr < h2) & (cc >= 0) & (cc < w2)
        idx = np.clip(rr, 0, h2 - 1) * w2 + np.clip(cc, 0, w2 - 1)
        s = np.take_along_axis(sim, idx.reshape(len(j), -1), 1).reshape(idx.shape).astype(np.float64)
        z = np.where(inside, (s - best[:, None, None]) / T, -np.inf)
        wgt = np.exp(z)
        wgt /= wgt.sum((1, 2), keepdims=True)
        gm = np.stack([(wgt * cc).sum((1, 2)), (wgt * rr).sum((1, 2))], -1)
        return {"grid_match": gm.reshape(h, w, 2), "score": best.reshape(h, w), "score_kind": "similarity",
                "energy": -float(best.mean())}
