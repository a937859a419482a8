"""Dense correspondence on a feature grid by an MRF solved with loopy min-sum belief propagation.

Energy of an integer flow ``w`` (displacements in grid cells, (dx, dy)) from a source grid ``fs`` (h, w, C) to
a target grid ``ft`` (h2, w2, C)::

    E(w) = sum_p ||fs(p) - ft(p + w(p))||^2  +  beta * sum_{(p, q) 4-neighbours} ||w(p) - w(q)||^2

(the paper's SIFT-flow-style objective, Long et al. 2014 Sec. 3, beta = 3e-3; columns are L2-normalised first
by default (``normalize=True``) so that the data term lies in [0, 4] per column). Labels are the (2r+1)^2
displacements with |dx|, |dy| <= r; a label that points outside the target grid costs ``outside_cost``.

Messages use the Felzenszwalb-Huttenlocher speed-up: ``min_l' h(l') + beta ||l - l'||^2`` is a squared Euclidean
distance transform over the 2-D label grid, computed separably by the lower envelope of parabolas in
O(labels) instead of O(labels^2) (:func:`distance_transform_sq`). The default schedule is checkerboard
(red-black): each iteration updates the messages sent by the "red" columns, then those sent by the "black" ones
using the fresh red messages (Gauss-Seidel style; on random test problems it reaches the synchronous schedule's
energy in fewer iterations). Messages are normalised to min 0, optionally damped, and the labelling with the
lowest energy over all iterations (including the unary argmin) is returned, so its energy is never above that
of the per-column best match. Loopy BP does not guarantee monotone energy decrease for beta > 0; in practice the
energy drops sharply in the first 3-5 iterations and then fluctuates within ~1% (damping=0.5 smooths this).

A coarse-to-fine mode (2x2 average-pooled feature pyramid, small refinement radius around the upsampled flow
with the smoothness term kept exact via per-column label centres) is available for large grids.

Conventions: flow is (dx, dy) in grid cells, ``flow[y, x]`` maps source column (x, y) to target column
(x + dx, y + dy). The numba kernels are compiled with ``cache=True`` and run in parallel over rows
(``numba.set_num_threads`` controls the thread count).
"""
from __future__ import annotations

import numba
import numpy as np

from ...core.arrays import l2_normalize
from .common import NORM_EPS, SCHEDULES, _check_grids, _check_number


# ----------------------------------------------------------------------------------------------- distance transform
@numba.njit(cache=True)
def _dt1d(f, w, out, v, z, shift, g, recip):
    """out[q] = min_p f[p] + w (q + shift - p)^2, q = 0..n-1 (lower envelope of parabolas, O(n)).

    ``+inf`` entries of ``f`` are skipped (they never win); ``shift`` evaluates the transform at shifted
    query positions (used by coarse-to-fine messages between nodes with different label centres).
    Work buffers: v (n,) int64, z (n+1,), g (n,), recip (n+1,) with recip[i] = 1 / i.
    """
    n = f.shape[0]
    if w <= 0.0:
        m = np.inf
        for i in range(n):
            if f[i] < m:
                m = f[i]
        for i in range(n):
            out[i] = m
        return
    inv2w = 0.5 / w
    k = -1
    for q in range(n):
        if not f[q] < np.inf:  # +inf (or nan): cannot be the minimiser
            continue
        g[q] = f[q] + w * q * q
        if k < 0:
            k = 0
            v[0] = q
            z[0] = -np.inf
            z[1] = np.inf
            continue
        vk = v[k]
        s = (g[q] - g[vk]) * inv2w * recip[q - vk]  # intersection of the parabolas rooted at q and vk
        while s <= z[k]:
            k -= 1
            vk = v[k]
            s = (g[q] - g[vk]) * inv2w * recip[q - vk]
        k += 1
        v[k] = q
        z[k] = s
        z[k + 1] = np.inf
    if k < 0:
        for q in range(n):
            out[q] = np.inf
        return
    k = 0
    for q in range(n):
        qq = q + shift
        while z[k + 1] < qq:
            k += 1
        d = qq - v[k]
        out[q] = w * d * d + f[v[k]]


@numba.njit(cache=True)
def _dt_buffers(m):
    """Work buffers for labels grids with sides <= m: v, z, g, recip, buf_in, buf_out."""
    recip = np.empty(m + 1, np.float64)
    recip[0] = 0.0
    for i in range(1, m + 1):
        recip[i] = 1.0 / i
    return (np.empty(m, np.int64), np.empty(m + 1, np.float64), np.empty(m, np.float64), recip,
            np.empty(m, np.float64), np.empty(m, np.float64))


@numba.njit(cache=True)
def _dt2d(cost, w, out, bufs, sy, sx):
    """Separable 2-D squared distance transform of one (Ly, Lx) array into ``out`` (queries shifted by sy, sx)."""
    v, z, g, recip, buf_in, buf_out = bufs
    ly, lx = cost.shape
    for i in range(ly):
        _dt1d(cost[i], w, out[i], v, z, sx, g, recip)
    for j in range(lx):
        for i in range(ly):
            buf_in[i] = out[i, j]
        _dt1d(buf_in[:ly], w, buf_out, v, z, sy, g, recip)
        for i in range(ly):
            out[i, j] = buf_out[i]


@numba.njit(cache=True)
def _dt_batch(cost, w, out):
    n, ly, lx = cost.shape
    bufs = _dt_buffers(max(ly, lx))
    for b in range(n):
        _dt2d(cost[b], w, out[b], bufs, 0, 0)


def distance_transform_sq(cost: np.ndarray, weight: float) -> np.ndarray:
    """2-D squared Euclidean distance transform over the last two axes, batched over the leading ones.

    ``out[..., y, x] = min_{y', x'} cost[..., y', x'] + weight * ((y - y')^2 + (x - x')^2)``, in O(Ly * Lx)
    per array (lower envelope of parabolas, Felzenszwalb & Huttenlocher 2012). ``+inf`` entries (forbidden
    labels) are allowed; an all-inf array stays inf. ``weight <= 0`` gives the plain minimum.

    Args:
        cost: (..., Ly, Lx) array.
        weight: coefficient of the squared distance (e.g. the MRF's beta).
    Returns:
        (..., Ly, Lx) float64.
    """
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim < 2:
        raise ValueError(f"distance_transform_sq: cost must have >= 2 dims (..., Ly, Lx), got {cost.shape}")
    _check_number("distance_transform_sq", "weight", weight)
    if np.isnan(cost).any() or np.isneginf(cost).any():
        raise ValueError("distance_transform_sq: cost contains NaN or -inf (only +inf marks forbidden labels)")
    shape = cost.shape
    c = np.ascontiguousarray(cost.reshape((-1,) + shape[-2:]))
    out = np.empty_like(c)
    _dt_batch(c, float(weight), out)
    return out.reshape(shape)


def data_cost(fs: np.ndarray, ft: np.ndarray, radius: int, outside_cost: float | None = None,
              centre: np.ndarray | None = None) -> np.ndarray:
    """(h, w, 2r+1, 2r+1) volume of ``||fs(p) - ft(p + c(p) + d)||^2`` over displacements d = (dx, dy) in [-r, r]^2.

    Index ``[y, x, dy + r, dx + r]``. Squared distances come from one matrix product
    (``|a|^2 + |b|^2 - 2 a.b``). Labels pointing outside the target grid get ``outside_cost``
    (default: 1000 x (largest in-grid cost + 1), a large finite value).

    Args:
        fs: (h, w, C) source features; ft: (h2, w2, C) target features (no normalisation done here).
        radius: r, in grid cells.
        centre: optional (h, w, 2) int (dx, dy) label centre c(p) per source column (default 0).
    """
    return _data_cost(fs, ft, radius, outside_cost, centre)[0]


def _data_cost(fs, ft, radius, outside_cost=None, centre=None):
    """:func:`data_cost` -> (volume, forbid): ``forbid`` is the outside cost when it is >= 100 x (the largest
    in-grid cost + 1), so that BP may skip those labels in its messages, else +inf (skip nothing)."""
    fs, ft = np.asarray(fs), np.asarray(ft)
    if fs.ndim != 3 or ft.ndim != 3:
        raise ValueError(f"data_cost: expected (h, w, C) fs and ft, got {fs.shape} and {ft.shape}")
    h, w, C = fs.shape
    h2, w2, C2 = ft.shape
    if C != C2:
        raise ValueError(f"data_cost: feature dimensions of fs and ft differ: {C} vs {C2}")
    a = fs.reshape(-1, C).astype(np.float64)
    b = ft.reshape(-1, C).astype(np.float64)
    D = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    np.maximum(D, 0, out=D)
    r = int(radius)
    if r < 0:
        raise ValueError(f"data_cost: radius must be >= 0, got {radius}")
    d = np.arange(-r, r + 1)
    ys, xs = np.mgrid[0:h, 0:w]
    cx = cy = 0
    if centre is not None:
        centre = np.asarray(centre).astype(np.int64)
        cx, cy = centre[..., 0][:, :, None, None], centre[..., 1][:, :, None, None]
    ty = ys[:, :, None, None] + cy + d[None, None, :, None]
    tx = xs[:, :, None, None] + cx + d[None, None, None, :]
    ty, tx = np.broadcast_arrays(ty, tx)
    inside = (ty >= 0) & (ty < h2) & (tx >= 0) & (tx < w2)
    src = (ys * w + xs)[:, :, None, None]
    tgt = np.clip(ty, 0, h2 - 1) * w2 + np.clip(tx, 0, w2 - 1)
    vol = D[np.broadcast_to(src, tgt.shape), tgt]
    dmax = float(D.max()) if D.size else 0.0
    if outside_cost is None:
        outside_cost = 1000.0 * (dmax + 1.0)
    vol[~inside] = outside_cost
    forbid = float(outside_cost) if outside_cost >= 100.0 * (dmax + 1.0) else np.inf
    return vol, forbid


def _smooth_energy(flow: np.ndarray, beta: float) -> float:
    f = flow.astype(np.float64)
    return float(beta * (((f[1:] - f[:-1]) ** 2).sum() + ((f[:, 1:] - f[:, :-1]) ** 2).sum()))


def _energy_from_volume(vol: np.ndarray, flow: np.ndarray, centre: np.ndarray, r: int,
                        beta: float) -> tuple[float, float]:
    h, w = flow.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w]
    lab = flow - centre
    data = float(vol[ys, xs, lab[..., 1] + r, lab[..., 0] + r].sum())
    return data, _smooth_energy(flow, beta)


def flow_energy(fs: np.ndarray, ft: np.ndarray, flow: np.ndarray, beta: float = 3e-3, normalize: bool = True,
                outside_cost: float | None = None) -> float:
    """Energy E(flow) of any integer flow (h, w, 2) (dx, dy) in grid cells; see the module docstring.

    ``normalize`` and ``outside_cost`` must match the :func:`bp_flow` call for the energies to agree.
    """
    fs, ft = np.asarray(fs), np.asarray(ft)
    _check_grids("flow_energy", fs, ft)
    if fs.shape[2] != ft.shape[2]:
        raise ValueError(f"flow_energy: feature dimensions of fs and ft differ: {fs.shape[2]} vs {ft.shape[2]}")
    _check_number("flow_energy", "beta", beta, lo=0)
    if not np.all(np.isfinite(np.asarray(flow, dtype=np.float64))):
        raise ValueError("flow_energy: flow contains non-finite values")
    if normalize:
        fs, ft = l2_normalize(fs, NORM_EPS), l2_normalize(ft, NORM_EPS)
    flow = np.asarray(flow).astype(np.int64)
    if flow.shape != fs.shape[:2] + (2,):
        raise ValueError(f"flow_energy: flow must have shape {fs.shape[:2] + (2,)}, got {flow.shape}")
    vol = data_cost(fs, ft, 0, outside_cost, centre=flow)
    d, s = _energy_from_volume(vol, flow, flow, 0, beta)
    return d + s


@numba.njit(cache=True, parallel=True)
def _bp_update(vol, centre, msg_in, msg_out, beta, parity, damping, forbid):
    """One round of min-sum message updates.

    ``msg[k, y, x]`` is the message arriving at (y, x) from its k-neighbour (k = 0 left, 1 right, 2 up, 3 down),
    over the receiver's labels. Nodes with ``(x + y) % 2 == parity`` send (all nodes when parity < 0). For the
    synchronous schedule ``msg_out`` is a fresh array; for the checkerboard schedule it is ``msg_in`` itself
    (senders only read their own incoming messages and only write their neighbours', so in-place is safe).
    Message p -> q: ``m(l_q) = min_{l_p} h(l_p) + beta ||c_q + l_q - c_p - l_p||^2`` with h = unary + incoming
    except from q, i.e. the distance transform of h evaluated at l_q + (c_q - c_p); normalised to min 0.
    Labels with unary ``vol >= forbid`` (the outside-the-target-grid cost) are left out of the minimisation
    (treated as +inf): they can never be the minimiser in practice since in-grid labels are ~1000x cheaper,
    and skipping them halves the distance-transform work. A column with no allowed label uses all labels.
    """
    h, w, ly, lx = vol.shape
    for y in numba.prange(h):
        bufs = _dt_buffers(max(ly, lx))
        tot = np.empty((ly, lx), np.float64)
        hbuf = np.empty((ly, lx), np.float64)
        obuf = np.empty((ly, lx), np.float64)
        for x in range(w):
            if parity >= 0 and (x + y) % 2 != parity:
                continue
            for i in range(ly):
                for j in range(lx):
                    tot[i, j] = (vol[y, x, i, j] + msg_in[0, y, x, i, j] + msg_in[1, y, x, i, j]
                                 + msg_in[2, y, x, i, j] + msg_in[3, y, x, i, j])
            for k_out in range(4):
                ty = y + (1 if k_out == 2 else (-1 if k_out == 3 else 0))
                tx = x + (1 if k_out == 0 else (-1 if k_out == 1 else 0))
                if ty < 0 or ty >= h or tx < 0 or tx >= w:
                    continue
                k_skip = k_out ^ 1  # the receiver is this node's k_skip-neighbour
                mn = np.inf
                for i in range(ly):
                    for j in range(lx):
                        if vol[y, x, i, j] >= forbid:
                            hbuf[i, j] = np.inf
                        else:
                            s = tot[i, j] - msg_in[k_skip, y, x, i, j]
                            hbuf[i, j] = s
                            if s < mn:
                                mn = s
                if mn == np.inf:  # no allowed label: minimise over all
                    for i in range(ly):
                        for j in range(lx):
                            s = tot[i, j] - msg_in[k_skip, y, x, i, j]
                            hbuf[i, j] = s
                            if s < mn:
                                mn = s
                for i in range(ly):
                    for j in range(lx):
                        hbuf[i, j] -= mn
                sx = centre[ty, tx, 0] - centre[y, x, 0]
                sy = centre[ty, tx, 1] - centre[y, x, 1]
                _dt2d(hbuf, beta, obuf, bufs, sy, sx)
                if damping > 0.0:
                    for i in range(ly):
                        for j in range(lx):
                            msg_out[k_out, ty, tx, i, j] = ((1.0 - damping) * obuf[i, j]
                                                            + damping * msg_in[k_out, ty, tx, i, j])
                else:
                    for i in range(ly):
                        for j in range(lx):
                            msg_out[k_out, ty, tx, i, j] = obuf[i, j]


def _beliefs_argmin(vol: np.ndarray, msg: np.ndarray, centre: np.ndarray, r: int) -> np.ndarray:
    b = vol + msg.sum(0)
    h, w, ly, lx = b.shape
    idx = b.reshape(h, w, -1).argmin(-1)
    dy, dx = np.divmod(idx, lx)
    return centre + np.stack([dx - r, dy - r], -1).astype(np.int64)


def _bp_solve(vol, centre, r, beta, n_iter, schedule, damping, tol_iters, forbid=np.inf):
    """Loopy BP on a precomputed volume -> (best flow, energies, iterations run)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"bp_flow: schedule must be one of {SCHEDULES}, got {schedule!r}")
    if not 0.0 <= damping < 1.0:
        raise ValueError(f"bp_flow: damping must be in [0, 1), got {damping}")
    h, w = vol.shape[:2]
    L = vol.shape[2]
    centre = np.ascontiguousarray(centre, dtype=np.int64)
    vol = np.ascontiguousarray(vol, dtype=np.float64)
    msg = np.zeros((4, h, w, L, L))
    new = np.zeros_like(msg) if schedule == "sync" else msg
    best = _beliefs_argmin(vol, msg, centre, r)  # unary argmin (iteration 0)
    best_e = sum(_energy_from_volume(vol, best, centre, r, beta))
    energies, stall, it = [], 0, 0
    for it in range(1, n_iter + 1):
        if schedule == "sync":
            _bp_update(vol, centre, msg, new, float(beta), -1, float(damping), forbid)
            msg, new = new, msg
        else:
            _bp_update(vol, centre, msg, msg, float(beta), it % 2, float(damping), forbid)
            _bp_update(vol, centre, msg, msg, float(beta), (it + 1) % 2, float(damping), forbid)
        labels = _beliefs_argmin(vol, msg, centre, r)
        e = sum(_energy_from_volume(vol, labels, centre, r, beta))
        energies.append(e)
        if e < best_e - 1e-9 * max(1.0, abs(best_e)):
            best, best_e, stall = labels, e, 0
        else:
            stall += 1
            if stall >= tol_iters:
                break
    return best, energies, it


# ------------------------------------------------------------------------------------ batched kernel (float32, any layout)
@numba.njit(cache=True, parallel=True)
def _bp_update_batch(U, msg_in, msg_out, shifts, grid_shift, send_mask, use_mask, beta, parity, damping):
    """One round of min-sum message updates for a batch of pairs (the kernel of :mod:`convcorr.numerics.mrf.batch` on CPU).

    U: (B, h, w, A, C) unary (``inf`` = not a label of that node); msg_in / msg_out: (B, 4, h, w, A, C) with the
    conventions of :func:`_bp_update` (k = 0 left, 1 right, 2 up, 3 down; ``msg_out is msg_in`` for the
    checkerboard schedule). Query shifts of the message node -> k-neighbour: ``(-oy, -ox)`` of the direction when
    ``grid_shift`` (labels indexed by target column: the "grid" layout), else ``shifts[b, y, x, k]`` = (sy, sx)
    (labels = displacement window: c_q - c_p). ``send_mask`` (when ``use_mask``) marks labels left out of the
    minimisation (numba reference: outside labels), with the fallback to all labels when none is allowed.
    Parallel over (pair, row); works in the dtype of U (float32 from flow_torch).
    """
    B, h, w, ly, lx = U.shape
    for by in numba.prange(B * h):
        b = by // h
        y = by % h
        bufs = _dt_buffers(max(ly, lx))
        tot = np.empty((ly, lx), U.dtype)
        hbuf = np.empty((ly, lx), U.dtype)
        obuf = np.empty((ly, lx), U.dtype)
        for x in range(w):
            if parity >= 0 and (x + y) % 2 != parity:
                continue
            for i in range(ly):
                for j in range(lx):
                    tot[i, j] = (U[b, y, x, i, j] + msg_in[b, 0, y, x, i, j] + msg_in[b, 1, y, x, i, j]
                                 + msg_in[b, 2, y, x, i, j] + msg_in[b, 3, y, x, i, j])
            for k_out in range(4):
                oy = 1 if k_out == 2 else (-1 if k_out == 3 else 0)
                ox = 1 if k_out == 0 else (-1 if k_out == 1 else 0)
                ty = y + oy
                tx = x + ox
                if ty < 0 or ty >= h or tx < 0 or tx >= w:
                    continue
                k_skip = k_out ^ 1
                mn = np.inf
                for i in range(ly):
                    for j in range(lx):
                        if use_mask and send_mask[b, y, x, i, j]:
                            hbuf[i, j] = np.inf
                        else:
                            s = tot[i, j] - msg_in[b, k_skip, y, x, i, j]
                            hbuf[i, j] = s
                            if s < mn:
                                mn = s
                if mn == np.inf:
                    for i in range(ly):
                        for j in range(lx):
                            s = tot[i, j] - msg_in[b, k_skip, y, x, i, j]
                            hbuf[i, j] = s
                            if s < mn:
                                mn = s
                for i in range(ly):
                    for j in range(lx):
                        hbuf[i, j] -= mn
                if grid_shift:
                    sy, sx = -oy, -ox
                else:
                    sy, sx = shifts[b, y, x, k_out, 0], shifts[b, y, x, k_out, 1]
                _dt2d(hbuf, beta, obuf, bufs, sy, sx)
                if damping > 0.0:
                    for i in range(ly):
                        for j in range(lx):
                            msg_out[b, k_out, ty, tx, i, j] = ((1.0 - damping) * obuf[i, j]
                                                               + damping * msg_in[b, k_out, ty, tx, i, j])
                else:
                    for i in range(ly):
                        for j in range(lx):
                            msg_out[b, k_out, ty, tx, i, j] = obuf[i, j]
