"""From a grid flow to pixels: bivariate-spline interpolation, image warping and keypoint transfer.

A grid flow maps source column (c, r) to target column (c + dx, r + dy). In pixels, the source column centre
``geom_src.column_to_pixel((c, r))`` corresponds to ``geom_tgt.column_to_pixel((c + dx, r + dy))``. A bivariate
spline (``scipy.interpolate.RectBivariateSpline``) of that correspondence over the source column-centre grid is
evaluated at every source pixel, giving the dense displacement ``dense(p) = T(p) - p`` ((H, W, 2), (dx, dy) in
pixels). Degree ``k = 1`` (default) is bilinear interpolation: it passes exactly through the column
correspondences and reproduces affine flows exactly; ``k = 3`` is bicubic, and ``smoothing > 0`` (scipy's ``s``:
upper bound on the sum of squared residuals, in pixels^2) trades exactness for a smoother field, which helps
with the blocky integer flows BP produces. The spline is fitted to the displacement (equivalent to fitting the
target coordinates, since the source coordinates are linear in the grid). Beyond the outermost column centres
(the image border strip of width ~offset) the displacement is held constant (nearest border value), so a
shift stays a shift and nothing explodes at the borders.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.interpolate import RectBivariateSpline

from ..core.geometry import RFGeometry


def dense_flow(flow: np.ndarray, geom_src: RFGeometry, geom_tgt: RFGeometry, image_hw: tuple[int, int],
               k: int = 1, smoothing: float = 0.0) -> np.ndarray:
    """(h, w, 2) integer grid flow -> (H, W, 2) pixel displacement (dx, dy) at every source pixel.

    Args:
        flow: (h, w, 2) (dx, dy) in grid cells.
        geom_src, geom_tgt: geometries of the source / target feature grids, in their image pixels.
        image_hw: (H, W) of the source image frame.
        k: spline degree (1 = bilinear, 3 = bicubic; reduced automatically on grids with <= k columns).
        smoothing: scipy's ``s`` (0 = interpolate exactly).
    Returns:
        (H, W, 2) float64 displacement: source pixel p corresponds to target pixel p + dense[p].
    """
    flow = np.asarray(flow, dtype=np.float64)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"dense_flow: flow must be (h, w, 2) (dx, dy), got shape {flow.shape}")
    if k not in (1, 2, 3, 4, 5):
        raise ValueError(f"dense_flow: spline degree k must be in 1..5, got {k}")
    h, w = flow.shape[:2]
    cs = np.arange(w, dtype=np.float64)
    rs = np.arange(h, dtype=np.float64)
    src_x = geom_src.column_centers(w)
    src_y = geom_src.column_centers(h)
    tgt_x = geom_tgt.offset + geom_tgt.stride * (cs[None, :] + flow[..., 0])   # (h, w)
    tgt_y = geom_tgt.offset + geom_tgt.stride * (rs[:, None] + flow[..., 1])
    # displacement in pixels at column centres, interpolated (displacement extrapolates by clamping)
    disp_x = tgt_x - src_x[None, :]
    disp_y = tgt_y - src_y[:, None]
    H, W = image_hw
    px = np.arange(W, dtype=np.float64)
    py = np.arange(H, dtype=np.float64)
    if h == 1 or w == 1:
        # degenerate grid: nearest-column displacement
        ci = np.clip(np.rint((px - geom_src.offset) / geom_src.stride), 0, w - 1).astype(int)
        ri = np.clip(np.rint((py - geom_src.offset) / geom_src.stride), 0, h - 1).astype(int)
        return np.stack([disp_x[np.ix_(ri, ci)], disp_y[np.ix_(ri, ci)]], -1)
    kx, ky = min(k, h - 1), min(k, w - 1)
    sx = RectBivariateSpline(src_y, src_x, disp_x, kx=kx, ky=ky, s=smoothing)
    sy = RectBivariateSpline(src_y, src_x, disp_y, kx=kx, ky=ky, s=smoothing)
    qy = np.clip(py, src_y[0], src_y[-1])
    qx = np.clip(px, src_x[0], src_x[-1])
    return np.stack([sx(qy, qx), sy(qy, qx)], -1)


def warp_image(target_img: np.ndarray, dense: np.ndarray, order: int = 1) -> np.ndarray:
    """Resample the target image into the source frame: ``out(p) = target(p + dense(p))`` (zeros outside).

    Args:
        target_img: (H2, W2, C) or (H2, W2) image.
        dense: (H, W, 2) displacement (dx, dy) in pixels from :func:`dense_flow`.
        order: interpolation order (1 = bilinear, 0 = nearest).
    Returns:
        (H, W, C) (or (H, W)) image of the target's dtype.
    """
    dense = np.asarray(dense, dtype=np.float64)
    if dense.ndim != 3 or dense.shape[2] != 2:
        raise ValueError(f"warp_image: dense must be (H, W, 2), got shape {dense.shape}")
    if np.ndim(target_img) == 2:
        return warp_image(np.asarray(target_img)[..., None], dense, order)[..., 0]
    H, W = dense.shape[:2]
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
    coords = [ys + dense[..., 1], xs + dense[..., 0]]
    img = np.asarray(target_img)
    chans = [ndimage.map_coordinates(img[..., c].astype(np.float32), coords, order=order, mode="constant")
             for c in range(img.shape[2])]
    out = np.stack(chans, -1)
    if img.dtype == np.uint8:
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out.astype(img.dtype)


def transfer_back(xy_target: np.ndarray, dense: np.ndarray, refine: bool = True) -> np.ndarray:
    """Move target points into the source frame through the flow (the inverse of ``p -> p + dense(p)``).

    The pixel map ``T(p) = p + dense(p)`` is taken as bilinear between pixel centres and inverted exactly by
    :func:`invert_lattice`: where the flow folds back (e.g. a border column with a wild flow), the preimage in
    an orientation-preserving region whose displacement agrees with the consensus motion wins, so folded
    border columns cannot steal interior points. Points outside the image of T get the source pixel whose
    image is nearest. For feature-grid flows, :meth:`convcorr.matchers.Correspondence.transfer_back` does the
    same on the (much smaller) column lattice.

    Args:
        xy_target: (N, 2) (x, y) in target pixels (NaN rows stay NaN).
        dense: (H, W, 2) displacement (dx, dy) from :func:`dense_flow`.
        refine: sub-pixel result (else rounded to integer source pixels).
    Returns:
        (N, 2) float64 (x, y) in source pixels.
    """
    dense = np.asarray(dense, dtype=np.float64)
    if dense.ndim != 3 or dense.shape[2] != 2:
        raise ValueError(f"transfer_back: dense must be (H, W, 2), got shape {dense.shape}")
    H, W = dense.shape[:2]
    xs, ys = np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64)
    T = np.stack(np.meshgrid(xs, ys), -1) + dense
    out = invert_lattice(xy_target, xs, ys, T, (H, W))
    return out if refine else np.rint(out)


# ----------------------------------------------------------------------------------- piecewise-bilinear pixel maps
def lattice_nodes(centres: np.ndarray, n_pixels: int) -> np.ndarray:
    """Node positions along one axis of a piecewise-bilinear map: the column centres, plus the image edge
    (-0.5 or n - 0.5) where it lies beyond the outermost centre (the map is a translation there: the displacement
    is held at its border value, as :func:`dense_flow` does)."""
    c = np.asarray(centres, dtype=np.float64)
    lo = [-0.5] if c[0] > -0.5 else []
    hi = [n_pixels - 0.5] if c[-1] < n_pixels - 0.5 else []
    return np.concatenate([lo, c, hi])


def extend_displacement(disp: np.ndarray, centres_x: np.ndarray, centres_y: np.ndarray,
                        image_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(h, w, 2) displacement at column centres -> (xs (nx,), ys (ny,), disp (ny, nx, 2)) on the extended lattice
    of :func:`lattice_nodes` (border displacement repeated)."""
    H, W = image_hw
    xs, ys = lattice_nodes(centres_x, W), lattice_nodes(centres_y, H)
    lx, ly = int(xs[0] < centres_x[0]), int(ys[0] < centres_y[0])
    d = np.asarray(disp, dtype=np.float64)
    d = np.pad(d, ((ly, len(ys) - len(centres_y) - ly), (lx, len(xs) - len(centres_x) - lx), (0, 0)), mode="edge")
    return xs, ys, d


def sample_lattice(xy: np.ndarray, xs: np.ndarray, ys: np.ndarray, values: np.ndarray,
                   sparse: bool = False) -> np.ndarray:
    """Bilinear samples of lattice ``values`` (ny, nx, D) at (N, 2) (x, y) points (clamped beyond the lattice).

    With ``sparse`` NaN node values are left out (weights renormalised over the finite corners) and a point whose
    NEAREST node is NaN gets NaN. NaN points give NaN. Returns (N, D)."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    values = np.asarray(values, dtype=np.float64)

    def axis(pos, nodes):
        n = len(nodes)
        pos = np.clip(pos, nodes[0], nodes[-1])
        i0 = np.clip(np.searchsorted(nodes, pos, side="right") - 1, 0, max(n - 2, 0))
        i1 = np.minimum(i0 + 1, n - 1)
        span = np.where(i1 > i0, nodes[i1] - nodes[i0], 1.0)
        return i0, i1, np.where(i1 > i0, (pos - nodes[i0]) / span, 0.0)

    ok = np.all(np.isfinite(xy), axis=1)
    out = np.full((len(xy), values.shape[2]), np.nan)
    if not ok.any():
        return out
    x0, x1, tx = axis(xy[ok, 0], xs)
    y0, y1, ty = axis(xy[ok, 1], ys)
    corners = [(y0, x0, (1 - ty) * (1 - tx)), (y0, x1, (1 - ty) * tx), (y1, x0, ty * (1 - tx)), (y1, x1, ty * tx)]
    if not sparse:
        out[ok] = sum(values[r, c] * w[:, None] for r, c, w in corners)
        return out
    num = np.zeros((int(ok.sum()), values.shape[2]))
    den = np.zeros(int(ok.sum()))
    for r, c, w in corners:
        v = values[r, c]
        good = np.all(np.isfinite(v), axis=1)
        num[good] += v[good] * w[good, None]
        den += np.where(good, w, 0.0)
    nr = np.where(ty < 0.5, y0, y1)
    nc = np.where(tx < 0.5, x0, x1)
    keep = np.all(np.isfinite(values[nr, nc]), axis=1) & (den > 0)
    res = np.full_like(num, np.nan)
    res[keep] = num[keep] / den[keep, None]
    out[ok] = res
    return out


def dense_lattice(xs: np.ndarray, ys: np.ndarray, values: np.ndarray, image_hw: tuple[int, int],
                  sparse: bool = False) -> np.ndarray:
    """:func:`sample_lattice` at every pixel of an (H, W) image -> (H, W, D)."""
    H, W = image_hw
    gx, gy = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
    return sample_lattice(np.stack([gx.ravel(), gy.ravel()], 1), xs, ys, values, sparse).reshape(H, W, -1)


def _cross(a, b):
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def invert_lattice(q: np.ndarray, xs: np.ndarray, ys: np.ndarray, T: np.ndarray,
                   domain_hw: tuple[int, int] | None = None, core: tuple[float, float, float, float] | None = None,
                   chunk: int = 2_000_000) -> np.ndarray:
    """Preimages of target points under a piecewise-bilinear map, correct where the map folds.

    The map sends source lattice node ``(xs[j], ys[i])`` to ``T[i, j]`` and is bilinear on every lattice cell
    (exactly how :func:`dense_flow` / :func:`sample_lattice` interpolate, including the translated border
    strips). Every cell whose image can contain q is inverted in closed form (the quadratic of a bilinear
    patch, both roots), giving all exact preimages. Where the map folds back (a wild border column), several
    preimages exist; the one kept is, in order of preference: inside ``core`` (the matched columns' hull, not
    the extrapolated border strips), in an orientation-preserving cell (positive Jacobian), then with its
    displacement ``q - p`` closest to the median displacement of the lattice (the consensus motion). A point with no exact preimage (outside the map's image) gets the source point whose
    image is nearest (over cell corners and clipped patch solutions).

    Args:
        q: (N, 2) (x, y) target points (NaN rows stay NaN).
        xs: (nx,), ys: (ny,) increasing source node positions; T: (ny, nx, 2) their target positions
            (finite; sparse maps must be restricted to their finite part first).
        domain_hw: (H, W) source image: preimages must lie in [-0.5, W - 0.5] x [-0.5, H - 0.5].
        core: (x0, x1, y0, y1) source box of the measured part of the map (e.g. the outermost column centres);
            cells outside it (extrapolated strips) are used only when no cell inside has a preimage.
        chunk: bound on the work done at once (points per batch = chunk / 64).
    Returns:
        (N, 2) float64 source points.
    """
    q = np.asarray(q, dtype=np.float64).reshape(-1, 2)
    xs, ys, T = np.asarray(xs, np.float64), np.asarray(ys, np.float64), np.asarray(T, np.float64)
    out = np.full_like(q, np.nan)
    ok = np.flatnonzero(np.all(np.isfinite(q), axis=1))
    if not len(ok):
        return out
    ny, nx = T.shape[:2]
    src = np.stack(np.meshgrid(xs, ys), -1)
    med = np.median((T - src).reshape(-1, 2), axis=0)
    if ny < 2 or nx < 2:  # a line of nodes: nearest node
        d = np.linalg.norm(T.reshape(-1, 2)[None] - q[ok, None], axis=2)
        out[ok] = src.reshape(-1, 2)[d.argmin(1)] + (q[ok] - T.reshape(-1, 2)[d.argmin(1)])
        return out
    A, B, C, D = T[:-1, :-1], T[:-1, 1:], T[1:, :-1], T[1:, 1:]          # (ny-1, nx-1, 2) corners
    e, f, g = B - A, C - A, A - B - C + D
    corners = np.stack([A, B, C, D], 0).reshape(4, -1, 2)
    lo, hi = corners.min(0), corners.max(0)                              # (Q, 2) cell bounding boxes
    A, e, f, g = (a.reshape(-1, 2) for a in (A, e, f, g))
    ci, cj = np.divmod(np.arange(A.shape[0]), nx - 1)
    x0, wx = xs[cj], xs[cj + 1] - xs[cj]
    y0, wy = ys[ci], ys[ci + 1] - ys[ci]
    if core is None:
        outside_core = np.zeros(len(x0), bool)
    else:
        cx0, cx1, cy0, cy1 = core
        outside_core = ((x0 < cx0 - 1e-9) | (x0 + wx > cx1 + 1e-9) | (y0 < cy0 - 1e-9) | (y0 + wy > cy1 + 1e-9))
    H, W = domain_hw if domain_hw is not None else (np.inf, np.inf)
    tol = 1e-9 + 1e-7 * float(np.abs(T).max() + 1.0)
    # candidate cells per point: cells sorted by the left edge of their bounding box; a point can only lie in
    # cells whose left edge is within the widest cell's width to its left (then the full box test)
    order = np.argsort(lo[:, 0], kind="stable")
    lo_sorted = lo[order, 0]
    max_w = float((hi[:, 0] - lo[:, 0]).max())
    step = max(1, int(chunk) // 64)
    for s in range(0, len(ok), step):
        rows = ok[s:s + step]
        qq = q[rows]
        start = np.searchsorted(lo_sorted, qq[:, 0] - max_w - tol, side="left")
        end = np.searchsorted(lo_sorted, qq[:, 0] + tol, side="right")
        n_c = np.maximum(end - start, 0)
        pi = np.repeat(np.arange(len(rows)), n_c)
        ki = order[np.arange(int(n_c.sum())) - np.repeat(np.cumsum(n_c) - n_c, n_c) + np.repeat(start, n_c)]
        keep = np.all((qq[pi] >= lo[ki] - tol) & (qq[pi] <= hi[ki] + tol), axis=1)
        pi, ki = pi[keep], ki[keep]
        best_key = np.full(len(rows), np.inf)
        best_p = np.full((len(rows), 2), np.nan)
        if len(pi):
            h = qq[pi] - A[ki]
            ee, ff, gg = e[ki], f[ki], g[ki]
            k2, k1, k0 = _cross(gg, ff), _cross(ee, ff) + _cross(h, gg), _cross(h, ee)
            with np.errstate(all="ignore"):
                lin = np.abs(k2) <= 1e-12 * (np.abs(k1) + np.abs(k0) + 1e-300)
                d2 = k1 * k1 - 4 * k0 * k2
                disc = np.sqrt(np.maximum(d2, 0.0))
                roots = (np.where(lin, -k0 / k1, (-k1 - disc) / (2 * k2)),
                         np.where(lin, np.nan, (-k1 + disc) / (2 * k2)))
                for v in roots:
                    den = ee + v[:, None] * gg
                    num = h - v[:, None] * ff
                    use_x = np.abs(den[:, 0]) >= np.abs(den[:, 1])
                    u = np.where(use_x, num[:, 0] / den[:, 0], num[:, 1] / den[:, 1])
                    eps = 1e-9
                    good = (np.isfinite(u) & np.isfinite(v) & (u >= -eps) & (u <= 1 + eps)
                            & (v >= -eps) & (v <= 1 + eps))
                    u, v = np.clip(np.nan_to_num(u), 0, 1), np.clip(np.nan_to_num(v), 0, 1)
                    img = A[ki] + u[:, None] * ee + v[:, None] * ff + (u * v)[:, None] * gg
                    good &= np.linalg.norm(img - qq[pi], axis=1) <= 1e-6 * (1 + np.abs(qq[pi]).max(1))
                    px, py = x0[ki] + u * wx[ki], y0[ki] + v * wy[ki]
                    good &= (px >= -0.5 - 1e-9) & (px <= W - 0.5 + 1e-9) & (py >= -0.5 - 1e-9) & (py <= H - 0.5 + 1e-9)
                    det = _cross(ee + v[:, None] * gg, ff + u[:, None] * gg)
                    dev = np.linalg.norm(qq[pi] - np.stack([px, py], 1) - med, axis=1)
                    # preference: measured cells before extrapolated strips, unfolded (det > 0) before folded,
                    # then nearest the consensus displacement
                    key = np.where(good, np.where(outside_core[ki], 2e12, 0.0) + np.where(det > 0, 0.0, 1e12) + dev,
                                   np.inf)
                    order = np.lexsort((key, pi))            # per point, smallest key first
                    first = order[np.r_[True, pi[order][1:] != pi[order][:-1]]]
                    better = key[first] < best_key[pi[first]]
                    sel = first[better]
                    best_key[pi[sel]] = key[sel]
                    best_p[pi[sel]] = np.stack([px[sel], py[sel]], 1)
        found = np.isfinite(best_key)
        out[rows[found]] = best_p[found]
        miss = np.flatnonzero(~found)
        if len(miss):  # no exact preimage (outside the map's image): nearest image over a sub-grid of every cell
            out[rows[miss]] = _nearest_on_cells(qq[miss], A, e, f, g, x0, wx, y0, wy, (H, W))
    return out


def _nearest_on_cells(q, A, e, f, g, x0, wx, y0, wy, domain_hw, n_sub: int = 9):
    """Source points whose image is nearest each q, searched over an n_sub x n_sub sub-grid of every cell."""
    H, W = domain_hw
    t = np.linspace(0.0, 1.0, n_sub)
    uu, vv = (a.ravel() for a in np.meshgrid(t, t))
    img = (A[:, None] + uu[None, :, None] * e[:, None] + vv[None, :, None] * f[:, None]
           + (uu * vv)[None, :, None] * g[:, None]).reshape(-1, 2)              # (Q * S, 2)
    px = (x0[:, None] + uu[None] * wx[:, None]).ravel()
    py = (y0[:, None] + vv[None] * wy[:, None]).ravel()
    inside = (px >= -0.5) & (px <= W - 0.5) & (py >= -0.5) & (py <= H - 0.5)
    img, px, py = img[inside], px[inside], py[inside]
    out = np.empty((len(q), 2))
    for s in range(0, len(q), 64):
        d = ((img[None] - q[s:s + 64, None]) ** 2).sum(-1)
        j = d.argmin(1)
        out[s:s + 64] = np.stack([px[j], py[j]], 1)
    return out
