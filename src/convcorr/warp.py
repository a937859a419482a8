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
from scipy.spatial import cKDTree

from .geometry import RFGeometry


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


def transfer_points(xy_target: np.ndarray, dense: np.ndarray, refine: bool = True) -> np.ndarray:
    """Move target points into the source frame through the flow (the inverse of ``p -> p + dense(p)``).

    For each target point q the source pixel p whose ``T(p) = p + dense(p)`` is nearest to q is found with a
    KD-tree over all T(p). With ``refine`` the point is then moved sub-pixel by one Newton step
    ``p += J^-1 (q - T(p))`` with J the finite-difference Jacobian of T at p (exact for affine flows, e.g. a
    constant shift gives exactly q - shift); where J is near-singular (folds) the step ``q - T(p)`` is used.

    Args:
        xy_target: (N, 2) (x, y) in target pixels (NaN rows stay NaN).
        dense: (H, W, 2) displacement (dx, dy) from :func:`dense_flow`.
        refine: sub-pixel refinement (else integer source pixels are returned).
    Returns:
        (N, 2) float64 (x, y) in source pixels.
    """
    dense = np.asarray(dense, dtype=np.float64)
    if dense.ndim != 3 or dense.shape[2] != 2:
        raise ValueError(f"transfer_points: dense must be (H, W, 2), got shape {dense.shape}")
    xy_target = np.asarray(xy_target, dtype=np.float64).reshape(-1, 2)
    out = np.full_like(xy_target, np.nan)
    ok = np.all(np.isfinite(xy_target), axis=1)
    if not ok.any():
        return out
    H, W = dense.shape[:2]
    ys, xs = np.mgrid[0:H, 0:W]
    T = np.stack([xs + dense[..., 0], ys + dense[..., 1]], -1)  # (H, W, 2)
    _, idx = cKDTree(T.reshape(-1, 2)).query(xy_target[ok])
    py, px = np.divmod(idx, W)
    p = np.stack([px, py], 1).astype(np.float64)
    q = xy_target[ok]
    res = q - T[py, px]
    if not refine:
        out[ok] = p
        return out
    step = res.copy()
    if H > 1 and W > 1:
        # central differences (one-sided at the borders) of T: columns of J are dT/dx, dT/dy
        x0, x1 = np.maximum(px - 1, 0), np.minimum(px + 1, W - 1)
        y0, y1 = np.maximum(py - 1, 0), np.minimum(py + 1, H - 1)
        jx = (T[py, x1] - T[py, x0]) / (x1 - x0)[:, None]
        jy = (T[y1, px] - T[y0, px]) / (y1 - y0)[:, None]
        det = jx[:, 0] * jy[:, 1] - jy[:, 0] * jx[:, 1]
        good = np.abs(det) > 0.05
        # solve [jx jy] s = res by Cramer's rule
        sx = (res[:, 0] * jy[:, 1] - jy[:, 0] * res[:, 1]) / np.where(good, det, 1.0)
        sy = (jx[:, 0] * res[:, 1] - res[:, 0] * jx[:, 1]) / np.where(good, det, 1.0)
        step[good] = np.stack([sx, sy], 1)[good]
    out[ok] = p + step
    return out
