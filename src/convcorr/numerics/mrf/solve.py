"""The flow MRF solver's entry point: input checks, then the float64 reference or the batch solver."""
from __future__ import annotations

import numpy as np

from ...core.arrays import l2_normalize
from .common import BACKENDS, NORM_EPS, FlowResult, _check_grids, _check_number, _pool2
from .kernels import _bp_solve, _data_cost, _energy_from_volume


def bp_flow(fs: np.ndarray, ft: np.ndarray, beta: float = 3e-3, radius: int | None = None, n_iter: int = 20,
            normalize: bool = True, damping: float = 0.0, outside_cost: float | None = None,
            tol_iters: int = 5, volume: np.ndarray | None = None, schedule: str = "checkerboard",
            coarse_to_fine: bool = False, coarse_size: int = 12, refine_radius: int = 2,
            max_radius: int = 40, backend: str = "auto", device=None) -> FlowResult:
    """Solve the flow MRF between two feature grids by loopy min-sum BP with distance-transform messages.

    Args:
        fs: (h, w, C) source features; ft: (h2, w2, C) target features.
        beta: smoothness weight (per squared grid cell of flow difference between 4-neighbours).
        radius: max |dx|, |dy| in grid cells (default: ``min(max(h2, w2) - 1, max_radius)``, i.e. the whole
            target grid for grids up to ``max_radius + 1`` columns; memory: 5 * h * w * (2r+1)^2 * 8 bytes,
            9 * ... with schedule="sync").
        n_iter: max BP iterations (per pyramid level); stops early when the best energy has not improved for
            ``tol_iters`` iterations.
        normalize: L2-normalise every column first (default, as in the paper; the data term is then in [0, 4]).
        damping: message damping in [0, 1) (new = (1 - damping) * new + damping * old).
        outside_cost: cost of labels pointing outside the target grid (default: large finite, see data_cost).
        volume: precomputed :func:`data_cost` volume for ``radius`` (skips the data term; not with coarse_to_fine).
        schedule: "checkerboard" (default: red-black half-sweeps using the freshest messages, converges in
            fewer iterations) or "sync" (all messages from the previous iteration's).
        coarse_to_fine: solve on a pyramid of 2x2 average-pooled features (down to ``coarse_size`` columns) with
            the full (scaled) radius at the coarsest level, then refine each finer level within
            ``refine_radius`` cells around the upsampled flow (labels relative to a per-column centre; the
            smoothness term stays exact). Much cheaper for large grids, but can miss fine details.
        max_radius: cap of the default radius.
        backend: "numba" (this module's float64 solver, the reference), "torch" (the batched float32 solver of
            :mod:`convcorr.numerics.mrf.batch`: its CPU message kernel is numba's lower envelope over in-grid labels only,
            on GPU vectorised torch) or "auto" (default: "torch", measured faster on CPU too, see
            benchmarks/bench_flow.py; the two agree on >= 99% of columns and to ~1e-7 relative energy).
        device: torch device for backend "torch" (default: convcorr.runtime.device.default_device()).
    Returns:
        FlowResult with the lowest-energy labelling seen (never worse than the unary argmin).
    """
    if backend not in BACKENDS:
        raise ValueError(f"bp_flow: backend must be one of {BACKENDS}, got {backend!r}")
    fs = np.asarray(fs)
    ft = np.asarray(ft)
    if fs.ndim != 3 or ft.ndim != 3:
        raise ValueError(f"bp_flow: expected (h, w, C) feature grids fs and ft, got {fs.shape} and {ft.shape}")
    if fs.shape[2] != ft.shape[2]:
        raise ValueError(f"bp_flow: feature dimensions of fs and ft differ: {fs.shape[2]} vs {ft.shape[2]}")
    _check_grids("bp_flow", fs, ft)
    _check_number("bp_flow", "beta", beta, lo=0)
    _check_number("bp_flow", "n_iter", n_iter, lo=0, integer=True)
    _check_number("bp_flow", "tol_iters", tol_iters, lo=0, integer=True)
    if radius is not None:
        _check_number("bp_flow", "radius", radius, lo=0, integer=True)
    _check_number("bp_flow", "max_radius", max_radius, lo=0, integer=True)
    _check_number("bp_flow", "coarse_size", coarse_size, lo=1, integer=True)
    _check_number("bp_flow", "refine_radius", refine_radius, lo=0, integer=True)
    _check_number("bp_flow", "damping", damping)
    if outside_cost is not None:
        _check_number("bp_flow", "outside_cost", outside_cost)
    # every backend gets the same input checks (above, naming the argument)
    if backend in ("auto", "torch"):
        from ...runtime.device import default_device
        from .batch import bp_flow_torch
        return bp_flow_torch(fs, ft, beta=beta, radius=radius, n_iter=n_iter, normalize=normalize, damping=damping,
                             outside_cost=outside_cost, tol_iters=tol_iters, volume=volume, schedule=schedule,
                             coarse_to_fine=coarse_to_fine, coarse_size=coarse_size, refine_radius=refine_radius,
                             max_radius=max_radius, device=device if device is not None else default_device())
    r = int(radius if radius is not None else min(max(ft.shape[0], ft.shape[1]) - 1, max_radius))
    h, w = fs.shape[:2]
    if not coarse_to_fine:
        if normalize:
            fs, ft = l2_normalize(fs, NORM_EPS), l2_normalize(ft, NORM_EPS)
        vol, forbid = _data_cost(fs, ft, r, outside_cost) if volume is None else (np.asarray(volume), np.inf)
        if vol.shape != (h, w, 2 * r + 1, 2 * r + 1):
            raise ValueError(f"bp_flow: volume shape {vol.shape} does not match grid {(h, w)} and radius {r}")
        centre = np.zeros((h, w, 2), np.int64)
    else:
        if volume is not None:
            raise ValueError("bp_flow: volume cannot be combined with coarse_to_fine")
        pyr_s, pyr_t = [np.asarray(fs, np.float64)], [np.asarray(ft, np.float64)]
        while (max(pyr_s[-1].shape[:2] + pyr_t[-1].shape[:2]) > coarse_size
               and min(pyr_s[-1].shape[:2] + pyr_t[-1].shape[:2]) >= 4):
            pyr_s.append(_pool2(pyr_s[-1]))
            pyr_t.append(_pool2(pyr_t[-1]))
        if normalize:
            pyr_s = [l2_normalize(f, NORM_EPS) for f in pyr_s]
            pyr_t = [l2_normalize(f, NORM_EPS) for f in pyr_t]
        n_lev = len(pyr_s)
        flow = None
        for lev in range(n_lev - 1, -1, -1):
            s, t = pyr_s[lev], pyr_t[lev]
            hs, ws = s.shape[:2]
            if flow is None:
                rr = int(np.ceil(r / 2 ** lev))
                centre = np.zeros((hs, ws, 2), np.int64)
            else:
                rr = refine_radius
                ys, xs = np.mgrid[0:hs, 0:ws]
                centre = 2 * flow[np.minimum(ys // 2, flow.shape[0] - 1), np.minimum(xs // 2, flow.shape[1] - 1)]
                # keep the centre's target inside the target grid
                centre[..., 0] = np.clip(xs + centre[..., 0], 0, t.shape[1] - 1) - xs
                centre[..., 1] = np.clip(ys + centre[..., 1], 0, t.shape[0] - 1) - ys
            vol, forbid = _data_cost(s, t, rr, outside_cost, centre=centre)
            if lev > 0:
                flow, _, _ = _bp_solve(vol, centre, rr, beta, n_iter, schedule, damping, tol_iters, forbid)
        r = rr
    best, energies, it = _bp_solve(vol, centre, r, beta, n_iter, schedule, damping, tol_iters, forbid)
    d, s = _energy_from_volume(vol, best, centre, r, beta)
    return FlowResult(flow=best, energy=d + s, data_energy=d, smooth_energy=s, n_iter=it, energies=energies)
