"""``flow``: the paper's MRF (Long et al. 2014 Sec. 3), solved by :func:`convcorr.numerics.mrf.solve.bp_flow`.

Energy (unchanged): ``sum_p ||fs(p) - ft(p + w(p))||^2 + beta sum_{4-neighbours} ||w(p) - w(q)||^2`` over integer
grid flows w, columns L2-normalised first (``normalize``). Per-column score: the data cost of the chosen match
(``score_kind="cost"``); energy: the MRF energy (lower is better).
"""
from __future__ import annotations

import numpy as np

from ..features.base import FeatureGrid
from .base import MATCHERS, Matcher


@MATCHERS.register("flow")
class FlowMatcher(Matcher):
    """MRF flow by loopy BP with distance-transform messages.

    Args:
        beta: smoothness weight (3e-3 for L2-normalised conv4 / SIFT, the paper's validated value).
        radius: search radius in grid cells (None: ``radius_px`` if given, else bp_flow's default, the whole
            target grid up to 40 cells).
        radius_px: search radius in source pixels, converted to cells of the source grid
            (``round(radius_px / stride)``, at least 1, at most the target grid's larger side - 1).
        n_iter: BP iterations; coarse_to_fine: solve on a feature pyramid (large grids); normalize:
            L2-normalise columns first.
        **bp_kw: other :func:`convcorr.numerics.mrf.solve.bp_flow` options (damping, schedule, outside_cost, ...).
    """

    def __init__(self, beta: float = 3e-3, radius: int | None = None, radius_px: float | None = None,
                 n_iter: int = 10, coarse_to_fine: bool = False, normalize: bool = True, **bp_kw):
        import inspect

        from ..numerics.mrf.solve import bp_flow

        valid = set(inspect.signature(bp_flow).parameters) - {"fs", "ft", "volume"}
        unknown = set(bp_kw) - valid
        if unknown:
            raise ValueError(f"matcher 'flow': unknown option(s) {sorted(unknown)}; valid: "
                             f"{sorted(valid | {'radius_px'})}")
        if float(beta) < 0:
            raise ValueError(f"matcher 'flow': beta must be >= 0, got {beta}")
        if radius is not None and radius_px is not None:
            raise ValueError("matcher 'flow': give radius (cells) or radius_px (pixels), not both")
        self.options = dict(beta=float(beta), radius=radius, radius_px=radius_px, n_iter=int(n_iter),
                         coarse_to_fine=bool(coarse_to_fine), normalize=bool(normalize), **bp_kw)
        self.bp_kw = bp_kw

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        """The named options plus the :func:`convcorr.numerics.mrf.solve.bp_flow` options (through ``**bp_kw``)."""
        import inspect

        from ..numerics.mrf.solve import bp_flow

        extra = [k for k in inspect.signature(bp_flow).parameters if k not in ("fs", "ft", "volume")]
        own = super().option_names()
        return own + tuple(k for k in extra if k not in own)

    def radius_cells(self, source: FeatureGrid, target: FeatureGrid) -> int | None:
        o = self.options
        if o["radius"] is not None:
            return int(o["radius"])
        if o["radius_px"] is None:
            return None
        return int(min(max(target.grid_hw) - 1, max(1, round(float(o["radius_px"]) / source.geometry.stride))))

    def match_grid(self, source: FeatureGrid, target: FeatureGrid) -> dict:
        from ..core.arrays import l2_normalize
        from ..numerics.mrf.solve import bp_flow

        o = self.options
        kw = dict(self.bp_kw)
        if o["coarse_to_fine"]:
            kw["coarse_to_fine"] = True
        res = bp_flow(source.features, target.features, beta=o["beta"], radius=self.radius_cells(source, target),
                      n_iter=o["n_iter"], normalize=o["normalize"], **kw)
        h, w = source.grid_hw
        ys, xs = np.mgrid[0:h, 0:w]
        tc = np.stack([xs + res.flow[..., 0], ys + res.flow[..., 1]], -1)
        fs, ft = source.features, target.features
        if o["normalize"]:
            fs, ft = l2_normalize(fs), l2_normalize(ft)
        h2, w2 = target.grid_hw
        inside = (tc[..., 0] >= 0) & (tc[..., 0] < w2) & (tc[..., 1] >= 0) & (tc[..., 1] < h2)
        cost = np.full((h, w), np.nan)
        cx, cy = np.clip(tc[..., 0], 0, w2 - 1), np.clip(tc[..., 1], 0, h2 - 1)
        cost[inside] = ((np.asarray(fs, np.float64) - np.asarray(ft, np.float64)[cy, cx]) ** 2).sum(-1)[inside]
        return {"grid_match": tc.astype(np.float64), "score": cost, "score_kind": "cost", "energy": res.energy,
                "details": {"flow": res.flow, "data_energy": res.data_energy, "smooth_energy": res.smooth_energy,
                            "n_iter": res.n_iter, "energies": list(res.energies)}}
