"""Dense SIFT (the paper's hand-engineered baseline), following VLFeat's ``vl_dsift`` conventions.

Conventions (VLFeat dsift, with the differences stated):

* A descriptor has 4 x 4 spatial bins of ``bin_size`` pixels and 8 orientation bins: 128 numbers laid out
  as ``index = (by * 4 + bx) * 8 + o`` (orientation fastest, then x bin, then y bin), as VLFeat.
* Bin centres of a descriptor centred at (cx, cy) are at ``cx + (i - 1.5) * bin_size`` (i = 0..3), likewise in y;
  each pixel contributes to the four nearest spatial bins with bilinear (triangular) weights of half-width
  ``bin_size``, and to the two nearest orientation bins with linear weights.
* Orientation is ``atan2(gy, gx)`` in image coordinates (x right, y DOWN), so bin 0 is a gradient pointing
  right (intensity increasing with x) and bin 2 a gradient pointing down (increasing with y).
* The image is converted to gray as 0.299 R + 0.587 G + 0.114 B in [0, 1] and, with ``smooth=True``, pre-smoothed
  by a Gaussian of sigma ``bin_size / magnif`` (magnif = 6, as ``vl_phow``).
* Window: flat by default (VLFeat's "fast" dsift); ``gaussian_window=True`` weights each spatial bin by a Gaussian
  of sigma ``window_size * bin_size`` (window_size = 2 bins) at the bin centre — VLFeat applies it per pixel;
  ours is the per-bin approximation of ``vl_dsift``'s flat-window mode with window correction.
* Normalisation: L2 normalise, clamp entries at 0.2, renormalise. A descriptor whose pre-normalisation L2 norm is
  below ``contrast_threshold`` (e.g. a constant patch) is all zeros.
* Frames: the first descriptor is centred at ``1.5 * bin_size`` (its first bin centre at pixel 0) and descriptors
  repeat every ``step`` pixels while the last bin centre stays inside the image, so every bin centre is in the image.

The paper's "SIFT radius" r means a descriptor spanning 2r pixels, i.e. 4 bins of ``r / 2``
(:func:`radius_to_bin_size`).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from .geometry import RFGeometry

N_ORI = 8
N_BIN = 4


def radius_to_bin_size(radius: float) -> float:
    """Paper's SIFT radius (pixels) -> VLFeat bin size: the descriptor spans 2 * radius = 4 bins."""
    if radius <= 0:
        raise ValueError(f"SIFT radius must be positive, got {radius}")
    return radius / 2.0


def to_gray(image: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 3) image (uint8 0..255 or float 0..1) -> (H, W) float32 gray in [0, 1]."""
    im = np.asarray(image)
    if im.ndim == 3:
        if im.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) RGB image, got {im.shape}")
        im = im[..., 0] * 0.299 + im[..., 1] * 0.587 + im[..., 2] * 0.114
    elif im.ndim != 2:
        raise ValueError(f"expected an (H, W) or (H, W, 3) image, got {im.shape}")
    im = im.astype(np.float32)
    if np.asarray(image).dtype == np.uint8:
        im /= 255.0
    return im


def orientation_channels(gray: np.ndarray, bin_size: float, smooth: bool = True, magnif: float = 6.0) -> np.ndarray:
    """(H, W) gray -> (8, H, W) gradient magnitude soft-assigned to 8 orientation bins."""
    g = gray
    if smooth:
        sigma = bin_size / magnif
        if sigma > 0.1:
            g = ndimage.gaussian_filter(g, sigma, mode="nearest")
    gy, gx = np.gradient(g)
    mag = np.hypot(gx, gy)
    t = (np.arctan2(gy, gx) % (2 * np.pi)) / (2 * np.pi / N_ORI)
    b0 = np.floor(t).astype(np.int64) % N_ORI
    w1 = (t - np.floor(t)).astype(np.float32)
    ch = np.zeros((N_ORI,) + g.shape, np.float32)
    ii, jj = np.indices(g.shape)
    np.add.at(ch, (b0, ii, jj), (1 - w1) * mag)
    np.add.at(ch, ((b0 + 1) % N_ORI, ii, jj), w1 * mag)
    return ch


def _triangle(bin_size: float) -> np.ndarray:
    r = int(np.ceil(bin_size))
    d = np.arange(-r, r + 1, dtype=np.float64)
    return np.maximum(0.0, 1.0 - np.abs(d) / bin_size).astype(np.float32)


def binned_channels(image: np.ndarray, bin_size: float, smooth: bool = True) -> np.ndarray:
    """(8, H, W): at every pixel, the value a spatial bin centred there would hold (triangular weights)."""
    ch = orientation_channels(to_gray(image), bin_size, smooth)
    k = _triangle(bin_size)
    ch = ndimage.convolve1d(ch, k, axis=1, mode="constant")
    return ndimage.convolve1d(ch, k, axis=2, mode="constant")


def _descriptors_at(binned: np.ndarray, xy: np.ndarray, bin_size: float, gaussian_window: bool,
                    window_size: float, contrast_threshold: float) -> np.ndarray:
    """Sample the 4x4 bin centres around each (x, y) in ``xy`` (N, 2) -> (N, 128) normalised descriptors."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    off = (np.arange(N_BIN) - (N_BIN - 1) / 2.0) * bin_size
    bx = xy[:, 0, None, None] + off[None, None, :]          # (N, 1, 4)  x bin
    by = xy[:, 1, None, None] + off[None, :, None]          # (N, 4, 1)  y bin
    bx, by = np.broadcast_arrays(bx, by)                    # (N, 4, 4) [by, bx]
    out = np.empty((len(xy), N_BIN, N_BIN, N_ORI), np.float32)
    exact = np.allclose(bx, np.rint(bx)) and np.allclose(by, np.rint(by))
    H, W = binned.shape[1:]
    for o in range(N_ORI):
        if exact:
            xi, yi = np.rint(bx).astype(np.int64), np.rint(by).astype(np.int64)
            inside = (xi >= 0) & (xi < W) & (yi >= 0) & (yi < H)
            v = np.zeros(xi.shape, np.float32)
            v[inside] = binned[o][yi[inside], xi[inside]]
        else:
            v = ndimage.map_coordinates(binned[o], [by.ravel(), bx.ravel()], order=1, mode="constant",
                                        cval=0.0).reshape(bx.shape)
        out[..., o] = v
    if gaussian_window:
        s = window_size * bin_size
        wgt = np.exp(-(off[None, :] ** 2 + off[:, None] ** 2) / (2 * s * s)).astype(np.float32)
        out *= wgt[None, :, :, None]
    d = out.reshape(len(xy), -1)
    return normalize_descriptors(d, contrast_threshold)


def normalize_descriptors(d: np.ndarray, contrast_threshold: float = 1e-4) -> np.ndarray:
    """SIFT normalisation of (N, 128): L2, clamp at 0.2, L2 again; low-contrast rows become 0."""
    d = np.asarray(d, dtype=np.float32).copy()
    n = np.linalg.norm(d, axis=1, keepdims=True)
    low = n[:, 0] < contrast_threshold
    d /= np.maximum(n, 1e-12)
    np.minimum(d, 0.2, out=d)
    d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    d[low] = 0
    return d


def dsift_geometry(bin_size: float, step: float) -> RFGeometry:
    """Geometry of dense SIFT descriptors: 4 bins wide, every ``step`` pixels, first centred at 1.5 bins."""
    return RFGeometry(size=N_BIN * bin_size, stride=step, offset=(N_BIN - 1) / 2.0 * bin_size)


def dense_sift_grid(image: np.ndarray, step: int = 8, bin_size: float = 8, smooth: bool = True,
                    gaussian_window: bool = False, window_size: float = 2.0,
                    contrast_threshold: float = 1e-4) -> tuple[np.ndarray, RFGeometry]:
    """Dense SIFT on a regular grid.

    Args:
        image: (H, W) or (H, W, 3) image.
        step: distance between descriptor centres in pixels.
        bin_size: spatial bin side in pixels (descriptor spans 4 bins).
    Returns:
        desc: (h, w, 128) float32 descriptors, row-major over descriptor centres.
        geometry: RFGeometry; descriptor (c, r) is centred at offset + step * (c, r).
    """
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    gray = to_gray(image)
    H, W = gray.shape
    geom = dsift_geometry(bin_size, step)
    last = geom.offset + (N_BIN - 1) / 2.0 * bin_size  # last bin centre relative to 0 for descriptor 0
    nx = int(np.floor((W - 1 - last) / step)) + 1
    ny = int(np.floor((H - 1 - last) / step)) + 1
    if nx < 1 or ny < 1:
        raise ValueError(f"image {W}x{H} is smaller than one descriptor of bin size {bin_size}")
    binned = binned_channels(gray, bin_size, smooth)
    centres = geom.grid_centers((ny, nx)).reshape(-1, 2)
    d = _descriptors_at(binned, centres, bin_size, gaussian_window, window_size, contrast_threshold)
    return d.reshape(ny, nx, -1), geom


def dense_sift(image: np.ndarray, step: int = 8, bin_size: float = 8, **kw) -> tuple[np.ndarray, np.ndarray]:
    """VLFeat-style dsift: (frames (N, 2) (x, y) descriptor centres in pixels, descriptors (N, 128) float32)."""
    d, geom = dense_sift_grid(image, step, bin_size, **kw)
    h, w = d.shape[:2]
    return geom.grid_centers((h, w)).reshape(-1, 2), d.reshape(h * w, -1)


def sift_at_points(image: np.ndarray, xy: np.ndarray, bin_size: float, smooth: bool = True,
                   gaussian_window: bool = False, window_size: float = 2.0,
                   contrast_threshold: float = 1e-4) -> np.ndarray:
    """SIFT descriptors (N, 128) centred exactly at arbitrary points (x, y) (sub-pixel: bilinear).

    Bins falling outside the image see zeros (zero padding), so points near the border work.
    """
    binned = binned_channels(image, bin_size, smooth)
    return _descriptors_at(binned, xy, bin_size, gaussian_window, window_size, contrast_threshold)
