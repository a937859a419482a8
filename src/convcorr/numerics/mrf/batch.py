"""Batched float32 loopy-BP flow solver in torch (CPU or GPU): the same MRF, messages and schedules as
:mod:`convcorr.numerics.mrf.kernels` (the float64 numba solver, kept as the reference), for a *batch* of pairs at once.

Energy (see :mod:`convcorr.numerics.mrf.kernels`)::

    E(w) = sum_p ||fs(p) - ft(p + w(p))||^2  +  beta * sum_{(p, q) 4-neighbours} ||w(p) - w(q)||^2

Messages are the exact min-convolution ``m(l_q) = min_{l_p} h(l_p) + beta ||w_q - w_p||^2`` (the squared
Euclidean distance transform of :func:`convcorr.numerics.mrf.kernels.distance_transform_sq`), computed separably, each 1-D pass as
an explicit minimum over all parabolas (O(n^2) per line instead of the lower envelope's O(n), but fully
vectorised over thousands of lines; :func:`distance_transform_sq_torch` is checked against the numba transform).

Two exact label layouts, chosen per problem:

* ``grid`` (used when labels pointing outside the target grid are excluded from messages, as they are by default,
  and no per-column label centres are given): a node's labels are indexed by their *target column* (h2, w2) rather
  than by the displacement window (2r+1, 2r+1). With the full displacement range only ~26% of a 63x63 window lies
  inside a 32x32 target grid, so messages run over ~4x fewer labels. In target coordinates the message from p to
  q = p + e is the distance transform of h_p evaluated at t - e (a one-cell query shift).
* ``window`` (the numba layout: labels = displacement window around a per-column centre; used for
  coarse-to-fine refinement, finite outside costs that take part in messages, or small radii on large grids).

Everything else follows :func:`convcorr.numerics.mrf.kernels._bp_solve`: messages normalised (the sender's h shifted to min 0),
optional damping, checkerboard (red-black) or synchronous schedule, the lowest-energy belief argmin over all
iterations (including the unary argmin) kept, early stop per pair after ``tol_iters`` iterations without
improvement (finished pairs leave the batch).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .common import NORM_EPS, SCHEDULES, FlowResult

# message k arrives at a node from its k-neighbour: 0 left, 1 right, 2 up, 3 down. The sender of message k sits
# at receiver - OFF[k]; i.e. a node sends message k to its neighbour at + OFF[k] (numba: k_out).
_OFF = ((0, 1), (0, -1), (1, 0), (-1, 0))  # (dy, dx) from sender to receiver for k = 0..3
# elements of the broadcast (lines x queries x sources) per distance-transform chunk (memory per chunk: 4 x this)
_CHUNK = {"cpu": 1 << 22, "cuda": 1 << 26}


def _dt_pass(f: torch.Tensor, beta: float, shift) -> torch.Tensor:
    """Exact 1-D transform along the last axis: ``out[..., q] = min_p f[..., p] + beta (q + shift - p)^2``.

    f: (N, A, n); shift: int or (N,) int tensor (per-array query shift). Returns (N, A, n). ``+inf`` entries never
    win; an all-inf line stays inf.
    """
    N, A, n = f.shape
    q = torch.arange(n, device=f.device, dtype=f.dtype)
    if isinstance(shift, int):
        d = q[:, None] + float(shift) - q[None, :]
        K = (beta * d * d)[None, None]  # (1, 1, n, n)
        per = None
    else:
        per = shift.to(f.dtype)
    out = torch.empty_like(f)
    step = max(1, _CHUNK.get(f.device.type, 1 << 24) // max(1, A * n * n))
    for s in range(0, N, step):
        fc = f[s:s + step]
        if per is not None:
            d = q[None, :, None] + per[s:s + step, None, None] - q[None, None, :]
            K = (beta * d * d)[:, None]  # (c, 1, n, n)
        torch.amin(fc[:, :, None, :] + K, dim=-1, out=out[s:s + step])
    return out


def distance_transform_sq_torch(cost: torch.Tensor, weight: float, shift_y=0, shift_x=0) -> torch.Tensor:
    """2-D squared Euclidean distance transform over the last two axes (torch, any device / float dtype).

    ``out[n, y, x] = min_{y', x'} cost[n, y', x'] + weight ((y + sy - y')^2 + (x + sx - x')^2)``.

    Args:
        cost: (N, Ly, Lx) tensor (``+inf`` = excluded entry).
        weight: coefficient of the squared distance (>= 0; 0 gives the plain minimum).
        shift_y, shift_x: query shifts, ints or (N,) int tensors.
    Returns:
        (N, Ly, Lx) tensor, same dtype/device.
    """
    if cost.ndim != 3:
        raise ValueError(f"distance_transform_sq_torch: cost must be (N, Ly, Lx), got shape {tuple(cost.shape)}")
    if weight <= 0:
        return cost.amin(dim=(1, 2), keepdim=True).expand_as(cost).clone()
    rows = _dt_pass(cost, weight, shift_x)  # along x
    cols = _dt_pass(rows.transpose(1, 2).contiguous(), weight, shift_y)  # along y
    return cols.transpose(1, 2).contiguous()


# --------------------------------------------------------------------------------------------------- problem setup
def _pair_costs(fs: torch.Tensor, ft: torch.Tensor) -> torch.Tensor:
    """(B, h*w, h2*w2) squared distances between all source and target columns (float32, clamped at 0)."""
    a = fs.flatten(1, 2)
    b = ft.flatten(1, 2)
    D = (a * a).sum(-1)[:, :, None] + (b * b).sum(-1)[:, None, :] - 2.0 * torch.bmm(a, b.transpose(1, 2))
    return D.clamp_(min=0)


def l2_normalize_torch(f: torch.Tensor, eps: float = NORM_EPS) -> torch.Tensor:
    """Torch twin of :func:`convcorr.core.arrays.l2_normalize`: every vector along the last axis scaled to unit
    L2 norm (norms floored at ``eps``, so zero vectors stay zero), same dtype and device."""
    return f / f.norm(dim=-1, keepdim=True).clamp(min=eps)


def _outside_and_forbid(D: torch.Tensor, outside_cost):
    """Per-pair outside cost and forbid threshold (inf = outside labels take part in messages), as flow._data_cost."""
    dmax = D.flatten(1).amax(1).double() if D.numel() else torch.zeros(D.shape[0], dtype=torch.float64)
    oc = 1000.0 * (dmax + 1.0) if outside_cost is None else torch.full_like(dmax, float(outside_cost))
    forbid = torch.where(oc >= 100.0 * (dmax + 1.0), oc, torch.full_like(oc, float("inf")))
    return oc, forbid


class _Problem:
    """Unary costs in one of the two layouts, with everything needed to run BP and decode labels.

    U: (B, h, w, A, C) float32 unary (``inf`` = not a label of this node); send_mask: (B, h, w, A, C) bool, True
    where a label is excluded from the messages it sends (None: nothing excluded); shifts: for the grid layout
    ``None`` (query shift -e per direction), for the window layout a (B, h, w, 4, 2) int tensor of (sy, sx) =
    c_q - c_p for the message a node sends in direction k.
    """

    def __init__(self, layout, U, send_mask, shifts, decode, h, w):
        self.layout, self.U, self.send_mask, self.shifts, self.decode = layout, U, send_mask, shifts, decode
        self.h, self.w = h, w

    def select(self, idx: torch.Tensor) -> "_Problem":
        return _Problem(self.layout, self.U[idx], None if self.send_mask is None else self.send_mask[idx],
                        None if self.shifts is None else self.shifts[idx], self.decode.select(idx), self.h, self.w)


class _GridDecode:
    def __init__(self, h, w, h2, w2, device):
        ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
        self.ys, self.xs, self.w2 = ys, xs, w2

    def select(self, idx):
        return self

    def __call__(self, lab: torch.Tensor) -> torch.Tensor:  # lab (B, h, w) flat target index -> (B, h, w, 2)
        ty, tx = lab // self.w2, lab % self.w2
        return torch.stack([tx - self.xs, ty - self.ys], -1)


class _WindowDecode:
    def __init__(self, centre, r):
        self.centre, self.r, self.L = centre, r, 2 * r + 1

    def select(self, idx):
        return _WindowDecode(self.centre[idx], self.r)

    def __call__(self, lab):
        dy, dx = lab // self.L, lab % self.L
        return self.centre + torch.stack([dx - self.r, dy - self.r], -1)


def _grid_problem(D, h, w, h2, w2, r):
    """Grid layout (outside-grid labels excluded): unary over target columns, inf outside each node's window."""
    B = D.shape[0]
    U = D.view(B, h, w, h2, w2)
    if r < max(h2, w2) - 1 or h > h2 or w > w2:
        dev = D.device
        ys = torch.arange(h, device=dev)[:, None, None, None]
        xs = torch.arange(w, device=dev)[None, :, None, None]
        ty = torch.arange(h2, device=dev)[None, None, :, None]
        tx = torch.arange(w2, device=dev)[None, None, None, :]
        inwin = ((ty - ys).abs() <= r) & ((tx - xs).abs() <= r)
        if not bool(inwin.flatten(2).any(-1).all()):
            return None  # some column has no in-grid label: use the window layout (numba's fallback)
        U = U.masked_fill(~inwin, float("inf"))
    return _Problem("grid", U.contiguous(), None, None, _GridDecode(h, w, h2, w2, D.device), h, w)


def _window_problem(D, h, w, h2, w2, r, centre, oc, forbid):
    """Window layout (numba's): unary over (2r+1)^2 displacements around a per-column centre."""
    B, dev = D.shape[0], D.device
    L = 2 * r + 1
    d = torch.arange(-r, r + 1, device=dev)
    ys = torch.arange(h, device=dev)[:, None, None, None]
    xs = torch.arange(w, device=dev)[None, :, None, None]
    if centre is None:
        centre = torch.zeros(B, h, w, 2, dtype=torch.long, device=dev)
    cx, cy = centre[..., 0][..., None, None], centre[..., 1][..., None, None]
    ty = ys + cy + d[None, None, :, None]  # (B, h, w, L, 1)
    tx = xs + cx + d[None, None, None, :]  # (B, h, w, 1, L)
    ty, tx = torch.broadcast_tensors(ty, tx)
    inside = (ty >= 0) & (ty < h2) & (tx >= 0) & (tx < w2)
    tgt = (ty.clamp(0, h2 - 1) * w2 + tx.clamp(0, w2 - 1)).reshape(B, h * w, L * L)
    U = torch.gather(D, 2, tgt).view(B, h, w, L, L)
    U = torch.where(inside, U, oc.to(U.dtype)[:, None, None, None, None])
    # labels excluded from messages: the outside ones when the outside cost is "forbidding" (flow._data_cost)
    fin = torch.isfinite(forbid)
    send_mask = ((~inside) & fin[:, None, None, None, None]) if bool(fin.any()) else None
    shifts = torch.zeros(B, h, w, 4, 2, dtype=torch.long, device=dev)
    for k, (oy, ox) in enumerate(_OFF):
        ry = slice(max(0, -oy), h - max(0, oy))
        rx = slice(max(0, -ox), w - max(0, ox))
        qy = slice(max(0, oy), h + min(0, oy))
        qx = slice(max(0, ox), w + min(0, ox))
        shifts[:, ry, rx, k, 0] = centre[:, qy, qx, 1] - centre[:, ry, rx, 1]
        shifts[:, ry, rx, k, 1] = centre[:, qy, qx, 0] - centre[:, ry, rx, 0]
    return _Problem("window", U.contiguous(), send_mask, shifts, _WindowDecode(centre, r), h, w)


# ------------------------------------------------------------------------------------------------------------ BP
def _senders(h, w, parity, device):
    """Per direction k: flat indices of sending nodes (with the given parity, -1 = all) and of their receivers."""
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    out = []
    for oy, ox in _OFF:
        ok = (ys + oy >= 0) & (ys + oy < h) & (xs + ox >= 0) & (xs + ox < w)
        if parity >= 0:
            ok &= (xs + ys) % 2 == parity
        s = (ys * w + xs)[ok]
        rcv = ((ys + oy) * w + xs + ox)[ok]
        out.append((s.to(device), rcv.to(device)))
    return out


def _energies(prob: _Problem, labels: torch.Tensor, flow: torch.Tensor, beta: float) -> torch.Tensor:
    """(B,) float64 energy of the labels (B, h, w) / flows (B, h, w, 2)."""
    B = labels.shape[0]
    data = torch.gather(prob.U.flatten(3), 3, labels[..., None]).double().view(B, -1).sum(1)
    f = flow.double()
    smooth = ((f[:, 1:] - f[:, :-1]) ** 2).flatten(1).sum(1) + ((f[:, :, 1:] - f[:, :, :-1]) ** 2).flatten(1).sum(1)
    return data + beta * smooth


_NO_SHIFTS = np.zeros((1, 1, 1, 4, 2), np.int64)
_NO_MASK = np.zeros((1, 1, 1, 1, 1), np.bool_)


def _update(prob: _Problem, msg: torch.Tensor, out: torch.Tensor, beta: float, send, damping: float,
            parity: int, kernel: str) -> None:
    """One round of message updates from the senders in ``send`` (nodes of ``parity``, -1 = all; see
    flow._bp_update); writes into ``out``. ``kernel="numba"``: the CPU kernel flow._bp_update_batch (lower
    envelope, O(labels) per message) on the tensors' memory; "torch": vectorised parabola minima (any device)."""
    if kernel == "numba":
        from .kernels import _bp_update_batch
        grid = prob.layout == "grid"
        shifts = _NO_SHIFTS if grid else prob.shifts.numpy()
        mask = _NO_MASK if prob.send_mask is None else prob.send_mask.numpy()
        _bp_update_batch(prob.U.numpy(), msg.numpy(), out.numpy(), shifts, grid, mask, prob.send_mask is not None,
                         float(beta), int(parity), float(damping))
        return
    B, h, w, A, C = prob.U.shape
    U = prob.U.view(B, h * w, A, C)
    m_in = msg.view(B, 4, h * w, A, C)
    m_out = out.view(B, 4, h * w, A, C)
    tot_all = None
    for k, (s, rcv) in enumerate(send):
        if s.numel() == 0:
            continue
        if tot_all is None:
            tot_all = U + m_in.sum(1)  # (B, hw, A, C) (computed once per round; senders only)
        hk = tot_all[:, s] - m_in[:, k ^ 1, s]  # (B, n, A, C): exclude the receiver's message to the sender
        if prob.send_mask is not None:
            excl = prob.send_mask.view(B, h * w, A, C)[:, s]
            masked = hk.masked_fill(excl, float("inf"))
            none_ok = excl.flatten(2).all(-1)[..., None, None]  # no allowed label: minimise over all
            hk = torch.where(none_ok, hk, masked)
        mn = hk.flatten(2).amin(-1)[..., None, None]
        hk = (hk - mn).flatten(0, 1)
        if prob.layout == "grid":
            oy, ox = _OFF[k]
            new = distance_transform_sq_torch(hk, beta, -oy, -ox)
        else:
            sh = prob.shifts.view(B, h * w, 4, 2)[:, s, k].reshape(-1, 2)
            new = distance_transform_sq_torch(hk, beta, sh[:, 0], sh[:, 1])
        new = new.view(B, -1, A, C)
        if damping > 0:
            new = (1.0 - damping) * new + damping * m_in[:, k, rcv]
        m_out[:, k, rcv] = new


def _solve(prob: _Problem, beta, n_iter, schedule, damping, tol_iters, kernel="torch"):
    """Run BP on a batch; returns (best flows (B, h, w, 2) long, energies per pair (lists), iterations per pair)."""
    B, h, w, A, C = prob.U.shape
    dev = prob.U.device
    msg = torch.zeros(B, 4, h, w, A, C, dtype=prob.U.dtype, device=dev)
    new = torch.zeros_like(msg) if schedule == "sync" else msg
    sends = {p: _senders(h, w, p, dev) for p in ((-1,) if schedule == "sync" else (0, 1))}

    def argmin(p, m):
        lab = (p.U + m.sum(1)).flatten(3).argmin(-1)
        return lab, p.decode(lab)

    lab, best = argmin(prob, msg)
    best = best.clone()
    best_e = _energies(prob, lab, best, beta)
    energies = [[] for _ in range(B)]
    n_run = [0] * B
    stall = torch.zeros(B, dtype=torch.long, device=dev)
    active = torch.arange(B, device=dev)  # original indices of the pairs still running
    p, it = prob, 0
    for it in range(1, n_iter + 1):
        if schedule == "sync":
            _update(p, msg, new, beta, sends[-1], damping, -1, kernel)
            msg, new = new, msg
        else:
            _update(p, msg, msg, beta, sends[it % 2], damping, it % 2, kernel)
            _update(p, msg, msg, beta, sends[(it + 1) % 2], damping, (it + 1) % 2, kernel)
        lab, fl = argmin(p, msg)
        e = _energies(p, lab, fl, beta)
        be = best_e[active]
        better = e < be - 1e-9 * torch.clamp(be.abs(), min=1.0)
        upd = active[better]
        best[upd] = fl[better]
        best_e[upd] = e[better]
        stall = torch.where(better, torch.zeros_like(stall), stall + 1)
        for i, ei in zip(active.tolist(), e.tolist()):
            energies[i].append(ei)
            n_run[i] = it
        keep = stall < tol_iters
        if not bool(keep.all()):
            if not bool(keep.any()):
                break
            kidx = keep.nonzero().squeeze(1)
            p = p.select(kidx)
            msg = msg[kidx]
            new = new[kidx] if schedule == "sync" else msg
            stall, active = stall[kidx], active[kidx]
    return best, best_e, energies, n_run


# ------------------------------------------------------------------------------------------------------ public API
def _as_batch(x, name, device):
    if isinstance(x, (list, tuple)):
        x = [torch.as_tensor(np.asarray(v)) if not torch.is_tensor(v) else v for v in x]
        shapes = {tuple(v.shape) for v in x}
        if len(shapes) != 1:
            raise ValueError(f"bp_flow_batch: all {name} grids must have the same shape, got {sorted(shapes)}")
        x = torch.stack(x)
    elif not torch.is_tensor(x):
        x = torch.as_tensor(np.asarray(x))
    if x.ndim != 4:
        raise ValueError(f"bp_flow_batch: {name} must be (B, h, w, C) or a list of (h, w, C), got {tuple(x.shape)}")
    return x.to(device=device, dtype=torch.float32)


def bp_flow_batch(fs, ft, beta: float = 3e-3, radius: int | None = None, n_iter: int = 20, normalize: bool = True,
                  damping: float = 0.0, outside_cost: float | None = None, tol_iters: int = 5,
                  schedule: str = "checkerboard", coarse_to_fine: bool = False, coarse_size: int = 12,
                  refine_radius: int = 2, max_radius: int = 40, device=None, layout: str = "auto",
                  kernel: str = "auto", volume=None) -> list[FlowResult]:
    """Align a batch of pairs at once (float32, torch); same arguments and results as :func:`convcorr.numerics.mrf.solve.bp_flow`.

    Args:
        fs: (B, h, w, C) source grids (numpy or torch, or a list of equal-shape (h, w, C)); ft: (B, h2, w2, C).
        device: torch device (default: the device of ``fs`` if it is a tensor, else CPU).
        layout: "auto" (grid layout when exact and smaller, see the module docstring), "grid" or "window".
        kernel: message kernel: "numba" (CPU only: the lower-envelope distance transform, O(labels) per message,
            parallel over pairs x rows with numba's threads), "torch" (vectorised parabola minima, any device) or
            "auto" (numba on CPU, torch elsewhere).
        volume: optional precomputed (B, h, w, 2r+1, 2r+1) data volume (window layout; nothing forbidden).
        others: see :func:`convcorr.numerics.mrf.solve.bp_flow`.
    Returns:
        One :class:`convcorr.numerics.mrf.common.FlowResult` per pair (numpy int64 flows, float64 energies).
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"bp_flow: schedule must be one of {SCHEDULES}, got {schedule!r}")
    if not 0.0 <= damping < 1.0:
        raise ValueError(f"bp_flow: damping must be in [0, 1), got {damping}")
    if beta < 0:
        raise ValueError(f"bp_flow: beta must be >= 0, got {beta}")
    if layout not in ("auto", "grid", "window"):
        raise ValueError(f"bp_flow_batch: layout must be 'auto', 'grid' or 'window', got {layout!r}")
    if device is None:
        device = fs.device if torch.is_tensor(fs) else torch.device("cpu")
    device = torch.device(device)
    if kernel not in ("auto", "numba", "torch"):
        raise ValueError(f"bp_flow_batch: kernel must be 'auto', 'numba' or 'torch', got {kernel!r}")
    if kernel == "auto":
        kernel = "numba" if device.type == "cpu" else "torch"
    if kernel == "numba" and device.type != "cpu":
        raise ValueError(f"bp_flow_batch: kernel='numba' runs on CPU tensors only, got device {device}")
    fs = _as_batch(fs, "fs", device)
    ft = _as_batch(ft, "ft", device)
    if fs.shape[0] != ft.shape[0]:
        raise ValueError(f"bp_flow_batch: fs and ft hold different numbers of pairs: {fs.shape[0]} vs {ft.shape[0]}")
    if fs.shape[3] != ft.shape[3]:
        raise ValueError(f"bp_flow: feature dimensions of fs and ft differ: {fs.shape[3]} vs {ft.shape[3]}")
    B, h, w, _ = fs.shape
    h2, w2 = ft.shape[1:3]
    r = int(radius if radius is not None else min(max(h2, w2) - 1, max_radius))
    if r < 0:
        raise ValueError(f"bp_flow: radius must be >= 0, got {radius}")
    beta = float(beta)
    if volume is not None:
        if coarse_to_fine:
            raise ValueError("bp_flow: volume cannot be combined with coarse_to_fine")
        vol = torch.as_tensor(np.asarray(volume) if not torch.is_tensor(volume) else volume)
        vol = vol.to(device=device, dtype=torch.float32)
        if vol.ndim == 4:
            vol = vol[None]
        if tuple(vol.shape) != (B, h, w, 2 * r + 1, 2 * r + 1):
            raise ValueError(f"bp_flow: volume shape {tuple(vol.shape)} does not match grid {(h, w)} and radius {r}")
        centre = torch.zeros(B, h, w, 2, dtype=torch.long, device=device)
        prob = _Problem("window", vol.contiguous(), None, torch.zeros(B, h, w, 4, 2, dtype=torch.long, device=device),
                        _WindowDecode(centre, r), h, w)
        return _results(prob, beta, n_iter, schedule, damping, tol_iters, kernel)
    if not coarse_to_fine:
        if normalize:
            fs, ft = l2_normalize_torch(fs), l2_normalize_torch(ft)
        prob = _make_problem(fs, ft, r, None, outside_cost, layout)
        return _results(prob, beta, n_iter, schedule, damping, tol_iters, kernel)
    # coarse-to-fine: the pyramid of flow.bp_flow, solved level by level for the whole batch
    pyr_s, pyr_t = [fs], [ft]
    while (max(pyr_s[-1].shape[1:3] + pyr_t[-1].shape[1:3]) > coarse_size
           and min(pyr_s[-1].shape[1:3] + pyr_t[-1].shape[1:3]) >= 4):
        pyr_s.append(_pool2_t(pyr_s[-1]))
        pyr_t.append(_pool2_t(pyr_t[-1]))
    if normalize:
        pyr_s = [l2_normalize_torch(f) for f in pyr_s]
        pyr_t = [l2_normalize_torch(f) for f in pyr_t]
    flow = None
    for lev in range(len(pyr_s) - 1, -1, -1):
        s, t = pyr_s[lev], pyr_t[lev]
        hs, ws = s.shape[1:3]
        if flow is None:
            rr, centre = int(np.ceil(r / 2 ** lev)), None
        else:
            rr = refine_radius
            ys = torch.arange(hs, device=device)[:, None]
            xs = torch.arange(ws, device=device)[None, :]
            centre = 2 * flow[:, torch.clamp(ys // 2, max=flow.shape[1] - 1), torch.clamp(xs // 2, max=flow.shape[2] - 1)]
            centre[..., 0] = torch.clamp(xs + centre[..., 0], 0, t.shape[2] - 1) - xs
            centre[..., 1] = torch.clamp(ys + centre[..., 1], 0, t.shape[1] - 1) - ys
        prob = _make_problem(s, t, rr, centre, outside_cost, layout)
        if lev > 0:
            flow = _solve(prob, beta, n_iter, schedule, damping, tol_iters, kernel)[0]
    return _results(prob, beta, n_iter, schedule, damping, tol_iters, kernel)


def _pool2_t(f: torch.Tensor) -> torch.Tensor:
    """2x2 average pooling of (B, h, w, C) grids, odd sizes replicate the last row/column (as flow._pool2)."""
    h, w = f.shape[1:3]
    if h % 2:
        f = torch.cat([f, f[:, -1:]], 1)
    if w % 2:
        f = torch.cat([f, f[:, :, -1:]], 2)
    B, H, W, C = f.shape
    return f.view(B, H // 2, 2, W // 2, 2, C).mean((2, 4))


def _make_problem(fs, ft, r, centre, outside_cost, layout):
    B, h, w, _ = fs.shape
    h2, w2 = ft.shape[1:3]
    D = _pair_costs(fs, ft)
    oc, forbid = _outside_and_forbid(D, outside_cost)
    oc, forbid = oc.to(D.device), forbid.to(D.device)
    L = 2 * r + 1
    grid_ok = centre is None and bool(torch.isfinite(forbid).all())
    if layout == "grid" and not grid_ok:
        raise ValueError("bp_flow_batch: layout='grid' needs forbidden outside labels and no centres")
    if grid_ok and (layout == "grid" or (layout == "auto" and h2 * w2 <= L * L)):
        prob = _grid_problem(D, h, w, h2, w2, r)
        if prob is not None:
            return prob
    return _window_problem(D, h, w, h2, w2, r, centre, oc, forbid)


def _results(prob, beta, n_iter, schedule, damping, tol_iters, kernel):
    best, best_e, energies, n_run = _solve(prob, beta, n_iter, schedule, damping, tol_iters, kernel)
    flows = best.cpu().numpy().astype(np.int64)
    B = flows.shape[0]
    # final energies in float64 from the float32 unary (the data term of the returned labelling + smoothness)
    lab = _encode(prob, best)
    data = torch.gather(prob.U.flatten(3), 3, lab[..., None]).double().view(B, -1).sum(1).cpu().numpy()
    out = []
    for b in range(B):
        f = flows[b].astype(np.float64)
        s = beta * float(((f[1:] - f[:-1]) ** 2).sum() + ((f[:, 1:] - f[:, :-1]) ** 2).sum())
        out.append(FlowResult(flow=flows[b], energy=float(data[b]) + s, data_energy=float(data[b]), smooth_energy=s,
                              n_iter=n_run[b], energies=energies[b]))
    return out


def _encode(prob, flow):
    """Inverse of the decoders: (B, h, w, 2) flows -> (B, h, w) flat label indices."""
    if prob.layout == "grid":
        d = prob.decode
        ty = d.ys + flow[..., 1]
        tx = d.xs + flow[..., 0]
        return ty * d.w2 + tx
    d = prob.decode
    lab = flow - d.centre + d.r
    return lab[..., 1] * d.L + lab[..., 0]


def bp_flow_torch(fs, ft, **kw) -> FlowResult:
    """One pair with the torch solver: :func:`bp_flow_batch` on a batch of one."""
    return bp_flow_batch(np.asarray(fs)[None] if not torch.is_tensor(fs) else fs[None],
                         np.asarray(ft)[None] if not torch.is_tensor(ft) else ft[None], **kw)[0]


def align_pairs(pairs: Sequence[tuple], batch_size: int = 16, **kw) -> list[FlowResult]:
    """Align a list of (fs, ft) pairs in batches of up to ``batch_size`` pairs with equal grid shapes."""
    groups: dict = {}
    for i, (a, b) in enumerate(pairs):
        groups.setdefault((tuple(np.shape(a)), tuple(np.shape(b))), []).append(i)
    out: list = [None] * len(pairs)
    for idx in groups.values():
        for s in range(0, len(idx), batch_size):
            chunk = idx[s:s + batch_size]
            res = bp_flow_batch([pairs[i][0] for i in chunk], [pairs[i][1] for i in chunk], **kw)
            for i, r in zip(chunk, res):
                out[i] = r
    return out
