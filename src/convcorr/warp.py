"""From a grid flow to pixels: bivariate-spline interpolation, image warping and keypoint transfer.

A grid flow maps source column (c, r) to target column (c + dx, r + dy). In pixels, the source column centre
``geom_src.column_to_pixel((c, r))`` corresponds to ``geom_tgt.column_to_pixel((c + dx, r + dy))``. A bivariate
spline (``scipy.interpolate.RectBivariateSpline``, degree ``k`` = 1 by default, i.e. bilinear, which reproduces
affine flows exactly; k = 3 gives a smoother cubic fit) of the target x and y coordinates over the source column
centres is evaluated at every source pixel, giving the dense displacement ``dense(p) = T(p) - p`` ((H, W, 2), (dx, dy)
in pixels). Outside the hull of the column centres the spline is extended linearly from its border values
(scipy's ``ext``-free evaluation clamps; we evaluate at clamped coordinates and add the offset, so a shift
stays a shift).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.interpolate import RectBivariateSpline
from scipy.spatial import cKDTree

from .geometry import RFGeometry


def dense_flow(flow: np.ndarray, geom_src: RFGeometry, geom_tgt: RFGeometry, image_hw: tuple[int, int],
               k: int = 1) -> np.ndarray:
    """(h, w, 2) integer grid flow -> (H, W, 2) pixel displacement (dx, dy) at every source pixel.

    Args:
        flow: (h, w, 2) (dx, dy) in grid cells.
        geom_src, geom_tgt: geometries of the source / target feature grids, in their image pixels.
        image_hw: (H, W) of the source image frame.
        k: spline degree (1 = bilinear; must be < grid size along both axes, reduced automatically).
    """
    flow = np.asarray(flow, dtype=np.float64)
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
    sx = RectBivariateSpline(src_y, src_x, disp_x, kx=kx, ky=ky)
    sy = RectBivariateSpline(src_y, src_x, disp_y, kx=kx, ky=ky)
    qy = np.clip(py, src_y[0], src_y[-1])
    qx = np.clip(px, src_x[0], src_x[-1])
    return np.stack([sx(qy, qx), sy(qy, qx)], -1)


def warp_image(target_img: np.ndarray, dense: np.ndarray, order: int = 1) -> np.ndarray:
    """Resample the target image into the source frame: ``out(p) = target(p + dense(p))`` (zeros outside).

    Args:
        target_img: (H2, W2, C) image.
        dense: (H, W, 2) displacement (dx, dy) in pixels from :func:`dense_flow`.
    Returns:
        (H, W, C) image of the target's dtype.
    """
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


def transfer_points(xy_target: np.ndarray, dense: np.ndarray) -> np.ndarray:
    """Move target points into the source frame through the flow.

    For each target point q the source pixel p whose ``p + dense(p)`` is nearest to q is found (KD-tree), then
    refined sub-pixel by one step ``p += q - (p + dense(p))`` (exact for locally constant flow).

    Args:
        xy_target: (N, 2) (x, y) in target pixels (NaN rows stay NaN).
        dense: (H, W, 2) displacement (dx, dy) from :func:`dense_flow`.
    Returns:
        (N, 2) (x, y) in source pixels.
    """
    xy_target = np.asarray(xy_target, dtype=np.float64).reshape(-1, 2)
    out = np.full_like(xy_target, np.nan)
    ok = np.all(np.isfinite(xy_target), axis=1)
    if not ok.any():
        return out
    H, W = dense.shape[:2]
    ys, xs = np.mgrid[0:H, 0:W]
    mapped = np.stack([xs + dense[..., 0], ys + dense[..., 1]], -1).reshape(-1, 2)
    _, idx = cKDTree(mapped).query(xy_target[ok])
    p = np.stack([xs.ravel()[idx], ys.ravel()[idx]], 1).astype(np.float64)
    out[ok] = p + (xy_target[ok] - mapped[idx])
    return out
