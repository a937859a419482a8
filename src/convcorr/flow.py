"""Dense correspondence on a feature grid by an MRF solved with loopy min-sum belief propagation.

Energy of an integer flow ``w`` (displacements in grid cells, (dx, dy)) from a source grid ``fs`` (h, w, C) to
a target grid ``ft`` (h2, w2, C)::

    E(w) = sum_p ||fs(p) - ft(p + w(p))||^2  +  beta * sum_{(p, q) 4-neighbours} ||w(p) - w(q)||^2

(the paper's SIFT-flow-style objective, beta = 3e-3, with columns L2-normalised first by default so that the
data term lies in [0, 4]). Labels are the (2r+1)^2 displacements with |dx|, |dy| <= r; a label that points
outside the target grid costs ``outside_cost``.

Messages use the Felzenszwalb-Huttenlocher speed-up: ``min_l' h(l') + beta ||l - l'||^2`` is a squared Euclidean
distance transform over the 2-D label grid, computed separably by the lower envelope of parabolas in
O(labels) instead of O(labels^2) (:func:`distance_transform_sq`). Messages are updated synchronously
(all at once from the previous iteration's messages), normalised to min 0, and the labelling with the lowest
energy over iterations is returned.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numba
import numpy as np

BIG = 1e9


# ----------------------------------------------------------------------------------------------- distance transform
@numba.njit(cache=True)
def _dt1d(f, w, out, v, z):
    """out[q] = min_p f[p] + w (q - p)^2 for one 1-D array (lower envelope of parabolas)."""
    n = f.shape[0]
    if w <= 0.0:
        m = f[0]
        for i in range(1, n):
            if f[i] < m:
                m = f[i]
        for i in range(n):
            out[i] = m
        return
    k = 0
    v[0] = 0
    z[0] = -np.inf
    z[1] = np.inf
    for q in range(1, n):
        s = ((f[q] + w * q * q) - (f[v[k]] + w * v[k] * v[k])) / (2.0 * w * (q - v[k]))
        while s <= z[k]:
            k -= 1
            s = ((f[q] + w * q * q) - (f[v[k]] + w * v[k] * v[k])) / (2.0 * w * (q - v[k]))
        k += 1
        v[k] = q
        z[k] = s
        z[k + 1] = np.inf
    k = 0
    for q in range(n):
        while z[k + 1] < q:
            k += 1
        d = q - v[k]
        out[q] = w * d * d + f[v[k]]


@numba.njit(cache=True)
def _dt2d(cost, w, out, buf_in, buf_out, v, z):
    """Separable 2-D squared distance transform of one (Ly, Lx) array into ``out``."""
    ly, lx = cost.shape
    for i in range(ly):
        _dt1d(cost[i], w, out[i], v, z)
    for j in range(lx):
        for i in range(ly):
            buf_in[i] = out[i, j]
        _dt1d(buf_in[:ly], w, buf_out, v, z)
        for i in range(ly):
            out[i, j] = buf_out[i]


@numba.njit(cache=True)
def _dt_batch(cost, w, out):
    n, ly, lx = cost.shape
    m = max(ly, lx)
    v = np.empty(m, np.int64)
    z = np.empty(m + 1, np.float64)
    buf_in = np.empty(m, np.float64)
    buf_out = np.empty(ly, np.float64)
    for b in range(n):
        _dt2d(cost[b], w, out[b], buf_in, buf_out, v, z)


def dt_sq_1d(f: np.ndarray, weight: float) -> np.ndarray:
    """1-D squared distance transform: ``out[q] = min_p f[p] + weight * (q - p)^2``. (n,) -> (n,)."""
    f = np.ascontiguousarray(f, dtype=np.float64)
    out = np.empty_like(f)
    _dt1d(f, float(weight), out, np.empty(len(f), np.int64), np.empty(len(f) + 1))
    return out


def distance_transform_sq(cost: np.ndarray, weight: float) -> np.ndarray:
    """2-D squared Euclidean distance transform over the last two axes, batched over the leading ones.

    ``out[..., y, x] = min_{y', x'} cost[..., y', x'] + weight * ((y - y')^2 + (x - x')^2)``, in O(Ly * Lx)
    per array. Use large finite values (not inf) for forbidden entries.
    """
    cost = np.asarray(cost, dtype=np.float64)
    shape = cost.shape
    c = np.ascontiguousarray(cost.reshape((-1,) + shape[-2:]))
    out = np.empty_like(c)
    _dt_batch(c, float(weight), out)
    return out.reshape(shape)


# ----------------------------------------------------------------------------------------------------- data term
def l2_normalize(f: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """Divide every column (last axis) by its L2 norm (zero columns stay zero)."""
    f = np.asarray(f, dtype=np.float64)
    return f / np.maximum(np.linalg.norm(f, axis=-1, keepdims=True), eps)


def data_cost(fs: np.ndarray, ft: np.ndarray, radius: int, outside_cost: float | None = None) -> np.ndarray:
    """(h, w, 2r+1, 2r+1) volume of ``||fs(p) - ft(p + d)||^2`` over displacements d = (dx, dy) in [-r, r]^2.

    Index ``[y, x, dy + r, dx + r]``. Labels pointing outside the target grid get ``outside_cost``
    (default: 1000 x the largest in-grid cost + 1).
    """
    h, w, C = fs.shape
    h2, w2, C2 = ft.shape
    if C != C2:
        raise ValueError(f"feature dimensions differ: {C} vs {C2}")
    a = fs.reshape(-1, C).astype(np.float64)
    b = ft.reshape(-1, C).astype(np.float64)
    D = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    np.maximum(D, 0, out=D)
    r = int(radius)
    d = np.arange(-r, r + 1)
    ys, xs = np.mgrid[0:h, 0:w]
    ty = ys[:, :, None, None] + d[None, None, :, None]
    tx = xs[:, :, None, None] + d[None, None, None, :]
    inside = (ty >= 0) & (ty < h2) & (tx >= 0) & (tx < w2)
    src = (ys * w + xs)[:, :, None, None]
    tgt = np.clip(ty, 0, h2 - 1) * w2 + np.clip(tx, 0, w2 - 1)
    vol = D[np.broadcast_to(src, tgt.shape), tgt]
    if outside_cost is None:
        outside_cost = 1000.0 * (float(D.max()) + 1.0)
    vol[~inside] = outside_cost
    return vol


# ---------------------------------------------------------------------------------------------- belief propagation
@dataclass
class FlowResult:
    """Output of :func:`bp_flow`.

    Attributes:
        flow: (h, w, 2) int displacement (dx, dy) in grid cells from each source column to its target column.
        energy, data_energy, smooth_energy: the energy of ``flow`` and its two terms.
        n_iter: iterations run.
        energies: energy of the argmin labelling after each iteration.
    """

    flow: np.ndarray
    energy: float
    data_energy: float
    smooth_energy: float
    n_iter: int
    energies: list = field(default_factory=list)


def _smooth_energy(flow: np.ndarray, beta: float) -> float:
    f = flow.astype(np.float64)
    return float(beta * (((f[1:] - f[:-1]) ** 2).sum() + ((f[:, 1:] - f[:, :-1]) ** 2).sum()))


def _energy_from_volume(vol: np.ndarray, labels: np.ndarray, r: int, beta: float) -> tuple[float, float]:
    h, w = labels.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w]
    data = float(vol[ys, xs, labels[..., 1] + r, labels[..., 0] + r].sum())
    return data, _smooth_energy(labels, beta)


def flow_energy(fs: np.ndarray, ft: np.ndarray, flow: np.ndarray, beta: float = 3e-3, normalize: bool = True,
                outside_cost: float | None = None) -> float:
    """Energy E(flow) of any integer flow (h, w, 2) (dx, dy); see the module docstring."""
    if normalize:
        fs, ft = l2_normalize(fs), l2_normalize(ft)
    flow = np.asarray(flow).astype(np.int64)
    r = int(max(1, np.abs(flow).max()))
    vol = data_cost(fs, ft, r, outside_cost)
    d, s = _energy_from_volume(vol, flow, r, beta)
    return d + s


@numba.njit(cache=True, parallel=True)
def _bp_iteration(vol, msg, new, beta):
    """One synchronous message update. msg[k, y, x] = message arriving at (y, x) from its k-neighbour,
    k = 0 left, 1 right, 2 up, 3 down."""
    h, w, ly, lx = vol.shape
    for y in numba.prange(h):
        m = max(ly, lx)
        v = np.empty(m, np.int64)
        z = np.empty(m + 1, np.float64)
        buf_in = np.empty(m, np.float64)
        buf_out = np.empty(ly, np.float64)
        hbuf = np.empty((ly, lx), np.float64)
        obuf = np.empty((ly, lx), np.float64)
        for x in range(w):
            # k_out: the receiver gets it "from left" (0) when sent right, etc.; skip what came from the receiver
            for k_out in range(4):
                k_skip = k_out ^ 1
                ty = y + (1 if k_out == 2 else (-1 if k_out == 3 else 0))
                tx = x + (1 if k_out == 0 else (-1 if k_out == 1 else 0))
                if ty < 0 or ty >= h or tx < 0 or tx >= w:
                    continue
                mn = np.inf
                for i in range(ly):
                    for j in range(lx):
                        s = vol[y, x, i, j]
                        for k in range(4):
                            if k != k_skip:
                                s += msg[k, y, x, i, j]
                        hbuf[i, j] = s
                        if s < mn:
                            mn = s
                for i in range(ly):
                    for j in range(lx):
                        hbuf[i, j] -= mn
                _dt2d(hbuf, beta, obuf, buf_in, buf_out, v, z)
                for i in range(ly):
                    for j in range(lx):
                        new[k_out, ty, tx, i, j] = obuf[i, j]


def _beliefs_argmin(vol: np.ndarray, msg: np.ndarray, r: int) -> np.ndarray:
    b = vol + msg.sum(0)
    h, w, ly, lx = b.shape
    idx = b.reshape(h, w, -1).argmin(-1)
    dy, dx = np.divmod(idx, lx)
    return np.stack([dx - r, dy - r], -1).astype(np.int64)


def bp_flow(fs: np.ndarray, ft: np.ndarray, beta: float = 3e-3, radius: int | None = None, n_iter: int = 20,
            normalize: bool = True, damping: float = 0.0, outside_cost: float | None = None,
            tol_iters: int = 5, volume: np.ndarray | None = None) -> FlowResult:
    """Solve the flow MRF between two feature grids by loopy min-sum BP with distance-transform messages.

    Args:
        fs: (h, w, C) source features; ft: (h2, w2, C) target features.
        beta: smoothness weight (per squared grid cell of flow difference).
        radius: max |dx|, |dy| in grid cells (default: max(h2, w2) - 1, i.e. the whole target grid).
        n_iter: max BP iterations; stops early when the best energy has not improved for ``tol_iters``.
        normalize: L2-normalise columns first (the paper's choice; recommended for conv features).
        damping: message damping in [0, 1) (new = (1 - damping) * new + damping * old).
        volume: precomputed :func:`data_cost` volume (skips the data term computation).
    Returns:
        FlowResult with the lowest-energy labelling seen.
    """
    fs = np.asarray(fs)
    ft = np.asarray(ft)
    if fs.ndim != 3 or ft.ndim != 3:
        raise ValueError(f"expected (h, w, C) feature grids, got {fs.shape} and {ft.shape}")
    if normalize:
        fs, ft = l2_normalize(fs), l2_normalize(ft)
    r = int(radius if radius is not None else max(ft.shape[0], ft.shape[1]) - 1)
    vol = data_cost(fs, ft, r, outside_cost) if volume is None else volume
    h, w = vol.shape[:2]
    L = vol.shape[2]
    msg = np.zeros((4, h, w, L, L))
    new = np.zeros_like(msg)
    best, best_e, energies, stall = None, np.inf, [], 0
    it = 0
    for it in range(1, n_iter + 1):
        new[:] = 0.0
        _bp_iteration(vol, msg, new, float(beta))
        if damping > 0:
            new = (1 - damping) * new + damping * msg
        msg, new = new, msg
        labels = _beliefs_argmin(vol, msg, r)
        d, s = _energy_from_volume(vol, labels, r, beta)
        energies.append(d + s)
        if d + s < best_e - 1e-9:
            best, best_e, stall = labels, d + s, 0
        else:
            stall += 1
            if stall >= tol_iters:
                break
    if best is None:  # n_iter == 0: unary argmin
        best = _beliefs_argmin(vol, msg, r)
    d, s = _energy_from_volume(vol, best, r, beta)
    return FlowResult(flow=best, energy=d + s, data_energy=d, smooth_energy=s, n_iter=it, energies=energies)
