"""Dense SIFT (the paper's hand-engineered baseline), following VLFeat's ``vl_dsift`` / ``vl_phow`` conventions.

Everything is vectorised (numpy + BLAS); there is no per-descriptor Python loop.

Conventions (VLFeat ``vl_dsift`` C API applied to a row-major image; differences are stated):

* **Gray conversion.** (H, W, 3) RGB is converted as ``0.2989 R + 0.5870 G + 0.1140 B`` (MATLAB ``rgb2gray``, used
  by ``vl_phow``). uint8 (and other integer) images are scaled to [0, 1] by their dtype maximum; float images are
  taken as they are (expected in [0, 1]). Only the contrast threshold depends on that scale.
* **Pre-smoothing** (``smooth=True``, as ``vl_phow``): Gaussian of sigma ``sqrt((bin_size / magnif)^2 - 0.25)``
  (``magnif`` = 6; the 0.25 accounts for the nominal 0.5 px blur already in the image, exactly ``vl_phow``'s
  formula), borders padded by continuity.
* **Gradients**: central differences inside, one-sided at the image border (``np.gradient``; VLFeat does the same).
* **Orientation**: ``theta = atan2(gy, gx)`` in image coordinates (x right, y DOWN), so orientation bin ``o`` holds
  gradients at angle ``2 pi o / 8``: bin 0 = intensity increasing to the right, bin 2 (90 deg) = increasing
  downwards, bin 4 = to the left, bin 6 = upwards. The gradient magnitude is split between the two nearest
  orientation bins with linear weights (``t = theta / (2 pi / 8)``: ``1 - frac(t)`` to ``floor(t)``, ``frac(t)``
  to ``floor(t) + 1``), as VLFeat.
* **Spatial bins**: 4 x 4 bins of ``bin_size`` pixels. The bins of a descriptor centred at (cx, cy) are centred at
  ``cx + (i - 1.5) * bin_size`` (i = 0..3, likewise in y). A pixel at offset ``d`` from a bin centre contributes
  with the bilinear (triangular) weight ``max(0, 1 - |dx| / bin_size) * max(0, 1 - |dy| / bin_size)``, so its
  support is ``2 * bin_size - 1`` pixels per axis and a descriptor sees a ``5 * bin_size`` square (its nominal
  extent, the receptive field of :func:`dense_sift_grid`, is 4 bins = ``4 * bin_size``). Weights are divided by
  ``bin_size^2``, so a raw bin is a weighted *mean* of gradient magnitude (in gray levels per pixel).
* **Window**: by default a per-pixel Gaussian window centred on the descriptor centre with sigma
  ``window_size * bin_size`` (``window_size`` = 2 bins, VLFeat's default), multiplied into the bilinear weights
  exactly as ``vl_dsift`` without ``'Fast'``. ``flat_window=True`` is VLFeat's ``'Fast'`` mode: no per-pixel
  window, each spatial bin is instead multiplied by the mean of the Gaussian over that bin's ``2 * bin_size - 1``
  pixels (VLFeat's window correction). ``window_size=inf`` removes the window altogether.
* **Layout**: 128 numbers, ``index = (by * 4 + bx) * 8 + o``: orientation fastest, then x bin (left to right),
  then y bin (top to bottom), as the VLFeat C API. (The MATLAB ``vl_dsift`` transposes descriptors to its
  column-major images; on a row-major numpy image the C layout is the natural one.)
* **Normalisation**: L2-normalise, clamp entries at 0.2, L2-normalise again (VLFeat's float descriptors; the
  uint8 quantisation of ``vl_dsift`` is not applied). **Contrast rule**: a descriptor whose raw (unnormalised)
  L2 norm is below ``contrast_threshold`` (default 1e-5 gray levels per pixel, image in [0, 1]) is returned as
  all zeros: a constant patch (including the float rounding noise of the pre-smoothing) gives exactly 0, while
  genuinely faint structure survives even at the paper's largest radii, where the strong pre-smoothing and the
  mean over big bins make raw norms small (~1e-4 at radius 160 on noise). (``vl_phow`` uses the same rule, with
  threshold 0.005 on its own raw scale.) For an unwindowed ramp of slope ``g`` per pixel the raw norm is ``4 g``.
* **Frames** (``vl_dsift`` geometry, 0-based): inside ``bounds = (xmin, ymin, xmax, ymax)`` (default the whole
  image) the first descriptor is centred at ``xmin + 1.5 * bin_size`` (its first bin centre on ``xmin``) and
  descriptors follow every ``step`` pixels while the last bin centre (``centre + 1.5 * bin_size``) stays
  ``<= xmax``; likewise in y. Frames are listed row by row (y outer, x inner). Gradients are always computed on
  the whole image, so ``bounds`` only selects which descriptors are returned.
* **Image border**: bins reaching outside the image see zero gradient (zero padding of the gradient maps, not
  of the intensities, so the border itself does not create an edge). :func:`sift_at_points` therefore works for
  points near or on the border.

The paper's "SIFT radius" r means a descriptor spanning 2 r pixels = 4 bins, i.e. ``bin_size = r / 2``
(:func:`radius_to_bin_size`).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
from scipy import ndimage

from ..core.arrays import l2_normalize
from ..core.geometry import RFGeometry

N_ORI = 8
N_BIN = 4
DESCRIPTOR_SIZE = N_BIN * N_BIN * N_ORI
DEFAULT_CONTRAST_THRESHOLD = 1e-5
_GRAY_WEIGHTS = (0.2989, 0.5870, 0.1140)


# ------------------------------------------------------------------------------------------------------ helpers
def radius_to_bin_size(radius: float) -> float:
    """Paper's SIFT radius r (pixels) -> bin size r / 2: the descriptor spans 2 r pixels = 4 bins."""
    if not np.isfinite(radius) or radius <= 0:
        raise ValueError(f"radius: SIFT radius must be a positive number of pixels, got {radius}")
    return radius / 2.0


def to_gray(image: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 1) or (H, W, 3) image -> (H, W) float32 gray.

    Integer images are scaled to [0, 1] by their dtype maximum (uint8: / 255); float images are kept as they are.
    RGB uses MATLAB's ``rgb2gray`` weights 0.2989, 0.5870, 0.1140.
    """
    im = np.asarray(image)
    if im.ndim == 3 and im.shape[2] == 1:
        im = im[..., 0]
    if im.ndim == 3 and im.shape[2] != 3 or im.ndim not in (2, 3):
        raise ValueError(f"image: expected an (H, W) gray or (H, W, 3) RGB array, got shape {im.shape}")
    if im.shape[0] < 1 or im.shape[1] < 1:
        raise ValueError(f"image: empty image of shape {im.shape}")
    if im.dtype == bool:
        im = im.astype(np.float32)
    elif np.issubdtype(im.dtype, np.integer):
        im = im.astype(np.float32) / np.float32(np.iinfo(im.dtype).max)
    elif np.issubdtype(im.dtype, np.floating):
        im = im.astype(np.float32)
        if not np.all(np.isfinite(im)):
            raise ValueError("image: contains NaN or infinite values")
    else:
        raise ValueError(f"image: unsupported dtype {im.dtype}")
    if im.ndim == 3:
        r, g, b = _GRAY_WEIGHTS
        im = r * im[..., 0] + g * im[..., 1] + b * im[..., 2]
    return np.ascontiguousarray(im, dtype=np.float32)


def smoothing_sigma(bin_size: float, magnif: float = 6.0) -> float:
    """``vl_phow`` pre-smoothing sigma ``sqrt((bin_size / magnif)^2 - 0.25)`` (0 when that is not positive)."""
    return float(math.sqrt(max((bin_size / magnif) ** 2 - 0.25, 0.0)))


def orientation_channels(gray: np.ndarray, bin_size: float, smooth: bool = True, magnif: float = 6.0) -> np.ndarray:
    """(H, W) gray -> (8, H, W) float32: gradient magnitude linearly soft-assigned to the 8 orientation bins.

    Channel ``o`` holds gradients at angle ``2 pi o / 8`` (x right, y down). With ``smooth`` the image is first
    smoothed with :func:`smoothing_sigma`.
    """
    g = np.asarray(gray, dtype=np.float32)
    if smooth:
        sigma = smoothing_sigma(bin_size, magnif)
        if sigma > 0:
            g = ndimage.gaussian_filter(g, sigma, mode="nearest", truncate=4.0)
    H, W = g.shape
    if H > 1 and W > 1:
        gy, gx = np.gradient(g)
    else:  # np.gradient needs 2 samples per axis; a 1-pixel axis has zero derivative
        gy = np.gradient(g, axis=0) if H > 1 else np.zeros_like(g)
        gx = np.gradient(g, axis=1) if W > 1 else np.zeros_like(g)
    mag = np.hypot(gx, gy).ravel()
    # float64 angle / (pi / 4): exact at multiples of 45 degrees
    t = np.mod(np.arctan2(gy, gx, dtype=np.float64).ravel() / (np.pi / 4), N_ORI)
    t0 = np.floor(t)
    w1 = (t - t0).astype(np.float32)
    b0 = t0.astype(np.int64) % N_ORI
    ch = np.zeros((N_ORI, H * W), np.float32)
    idx = np.arange(H * W)
    ch[b0, idx] = (1 - w1) * mag
    ch[(b0 + 1) % N_ORI, idx] += w1 * mag  # (bin, pixel) pairs are distinct within each statement
    return ch.reshape(N_ORI, H, W)


def _window_sigma(bin_size: float, window_size: float) -> float:
    return float(window_size) * bin_size


def _bin_window_means(bin_size: float, window_size: float) -> np.ndarray:
    """(4,) VLFeat ``'Fast'`` window correction: mean Gaussian weight over each bin's pixels (one axis)."""
    sigma = _window_sigma(bin_size, window_size)
    if not np.isfinite(sigma):
        return np.ones(N_BIN)
    r = math.ceil(bin_size) - 1
    x = np.arange(-r, r + 1, dtype=np.float64)
    delta = (np.arange(N_BIN) - (N_BIN - 1) / 2.0) * bin_size
    return np.exp(-0.5 * ((x[None, :] - delta[:, None]) / sigma) ** 2).mean(1)


def _bin_kernels(t: np.ndarray, bin_size: float, window_size: float, flat_window: bool) -> np.ndarray:
    """Spatial weights along one axis: pixel offsets ``t`` (...) from the descriptor centre -> (..., 4) per bin."""
    t = np.asarray(t, dtype=np.float64)
    delta = (np.arange(N_BIN) - (N_BIN - 1) / 2.0) * bin_size
    k = np.maximum(0.0, 1.0 - np.abs(t[..., None] - delta) / bin_size) / bin_size
    if flat_window:
        k = k * _bin_window_means(bin_size, window_size)
    else:
        sigma = _window_sigma(bin_size, window_size)
        if np.isfinite(sigma):
            k = k * np.exp(-0.5 * (t / sigma) ** 2)[..., None]
    return k.astype(np.float32)


def _reach(bin_size: float) -> float:
    """Half-width of a descriptor's support along one axis (pixels): 1.5 bins to the last centre + 1 bin."""
    return (N_BIN / 2.0 + 0.5) * bin_size


def _axis_pass(X: np.ndarray, coords: np.ndarray, bin_size: float, window_size: float,
               flat_window: bool) -> np.ndarray:
    """Contract the last axis of X (M, L) with the 4 bin kernels of descriptors centred at ``coords`` (n,) sorted.

    Returns (M, 4, n). Banded: coordinates are processed in chunks and each chunk multiplies (BLAS) only the
    columns of X within its reach; columns outside [0, L) are absent (zero padding).
    """
    M, L = X.shape
    n = len(coords)
    out = np.zeros((M, N_BIN, n), np.float32)
    reach = _reach(bin_size)
    span = max(4.0 * bin_size, 16.0)
    k0 = 0
    while k0 < n:
        k1 = max(int(np.searchsorted(coords, coords[k0] + span, side="right")), k0 + 1)
        c = coords[k0:k1]
        u0 = max(0, int(math.floor(c[0] - reach)))
        u1 = min(L, int(math.ceil(c[-1] + reach)) + 1)
        if u1 > u0:
            u = np.arange(u0, u1, dtype=np.float64)
            K = _bin_kernels(u[:, None] - c[None, :], bin_size, window_size, flat_window)  # (span, m, 4)
            K = np.ascontiguousarray(K.transpose(0, 2, 1)).reshape(u1 - u0, -1)
            out[:, :, k0:k1] = (X[:, u0:u1] @ K).reshape(M, N_BIN, k1 - k0)
        k0 = k1
    return out


def normalize_descriptors(d: np.ndarray, contrast_threshold: float = DEFAULT_CONTRAST_THRESHOLD) -> np.ndarray:
    """SIFT normalisation of raw (N, 128) descriptors: L2, clamp at 0.2, L2 again.

    Rows whose raw L2 norm is below ``contrast_threshold`` become all zeros.
    """
    d = np.array(d, dtype=np.float32, copy=True)
    if d.ndim != 2:
        raise ValueError(f"d: expected (N, D) descriptors, got shape {d.shape}")
    n = np.linalg.norm(d, axis=1, keepdims=True)
    low = (n[:, 0] < contrast_threshold) | (n[:, 0] <= 0)
    d = l2_normalize(d, 1e-30, dtype=np.float32)
    np.minimum(d, 0.2, out=d)
    d = l2_normalize(d, 1e-30, dtype=np.float32)
    d[low] = 0
    return d


def _check_bin_step(bin_size: float, step: Optional[float] = None) -> None:
    if not np.isfinite(bin_size) or bin_size < 1:
        raise ValueError(f"bin_size: must be a number of pixels >= 1, got {bin_size}")
    if step is not None and (not float(step).is_integer() or step < 1):
        raise ValueError(f"step: must be a positive integer number of pixels, got {step}")


# ------------------------------------------------------------------------------------------------------ geometry
def dsift_geometry(bin_size: float, step: int) -> RFGeometry:
    """Geometry of :func:`dense_sift_grid`: 4 bins wide, every ``step`` pixels, first centre 1.5 bins in."""
    return RFGeometry(size=N_BIN * bin_size, stride=step, offset=(N_BIN - 1) / 2.0 * bin_size)


def dsift_centers(image_hw: tuple[int, int], step: int, bin_size: float,
                  bounds: Optional[Sequence[float]] = None) -> tuple[np.ndarray, np.ndarray]:
    """x (nx,) and y (ny,) descriptor centres of the ``vl_dsift`` grid (see the module docstring).

    ``bounds = (xmin, ymin, xmax, ymax)`` inclusive pixel coordinates, default the whole (H, W) image.
    """
    _check_bin_step(bin_size, step)
    H, W = image_hw
    if bounds is None:
        bounds = (0, 0, W - 1, H - 1)
    if len(bounds) != 4:
        raise ValueError(f"bounds: expected (xmin, ymin, xmax, ymax), got {bounds}")
    xmin, ymin, xmax, ymax = (float(b) for b in bounds)
    half = (N_BIN - 1) / 2.0 * bin_size

    def axis(lo: float, hi: float) -> np.ndarray:
        n = int(math.floor((hi - lo - 2 * half) / step + 1e-9)) + 1
        return lo + half + step * np.arange(max(n, 0), dtype=np.float64)

    xs, ys = axis(xmin, xmax), axis(ymin, ymax)
    if len(xs) == 0 or len(ys) == 0:
        raise ValueError(f"image/bounds: region {bounds} of the {W}x{H} image is smaller than one descriptor "
                         f"(3 * bin_size + 1 = {3 * bin_size + 1} px)")
    return xs, ys


# ------------------------------------------------------------------------------------------------------ descriptors
def _grid_raw(ch: np.ndarray, xs: np.ndarray, ys: np.ndarray, bin_size: float, window_size: float,
              flat_window: bool) -> np.ndarray:
    """Raw descriptors on the product grid ys x xs (both sorted): (ny, nx, 128)."""
    O, H, W = ch.shape
    A = _axis_pass(ch.reshape(O * H, W), xs, bin_size, window_size, flat_window)      # (O*H, 4i, nx)
    nx = len(xs)
    A = np.ascontiguousarray(A.reshape(O, H, N_BIN * nx).transpose(0, 2, 1)).reshape(-1, H)  # (O*4i*nx, H)
    B = _axis_pass(A, ys, bin_size, window_size, flat_window)                          # (O*4i*nx, 4j, ny)
    ny = len(ys)
    B = B.reshape(O, N_BIN, nx, N_BIN, ny)                                             # o, i, x, j, y
    return np.ascontiguousarray(B.transpose(4, 2, 3, 1, 0)).reshape(ny, nx, DESCRIPTOR_SIZE)


def _points_raw(ch: np.ndarray, xy: np.ndarray, bin_size: float, window_size: float, flat_window: bool,
                chunk: int = 512) -> np.ndarray:
    """Raw descriptors at arbitrary points (N, 2): (N, 128)."""
    O, H, W = ch.shape
    N = len(xy)
    ux, ix = np.unique(xy[:, 0], return_inverse=True)
    uy, iy = np.unique(xy[:, 1], return_inverse=True)
    if len(ux) * len(uy) <= 4 * N:  # grid-like point set (e.g. a window of pixels): product grid, then gather
        return _grid_raw(ch, ux, uy, bin_size, window_size, flat_window)[iy.ravel(), ix.ravel()]
    # scattered points: x pass at the distinct x, then a per-point y contraction over the rows within reach
    A = _axis_pass(ch.reshape(O * H, W), ux, bin_size, window_size, flat_window)      # (O*H, 4i, nux)
    At = np.ascontiguousarray(A.reshape(O, H, N_BIN, len(ux)).transpose(3, 1, 2, 0))   # (nux, H, 4i, O)
    At = At.reshape(len(ux), H, N_BIN * O)
    reach = _reach(bin_size)
    T = int(math.ceil(2 * reach)) + 2
    out = np.empty((N, DESCRIPTOR_SIZE), np.float32)
    ix, iy = ix.ravel(), iy.ravel()
    for s in range(0, N, chunk):
        y = xy[s:s + chunk, 1]
        rows = np.floor(y - reach).astype(np.int64)[:, None] + np.arange(T)[None, :]   # (P, T)
        inside = (rows >= 0) & (rows < H)
        Ky = _bin_kernels(rows - y[:, None], bin_size, window_size, flat_window) * inside[..., None]  # (P, T, 4j)
        G = At[ix[s:s + chunk, None], np.clip(rows, 0, H - 1)]                          # (P, T, 4i*O)
        out[s:s + chunk] = np.matmul(Ky.transpose(0, 2, 1), G).reshape(len(y), -1)    # (P, 4j, 4i*O)
    return out


def dense_sift_grid(image: np.ndarray, step: int = 8, bin_size: float = 8, *, smooth: bool = True,
                    magnif: float = 6.0, flat_window: bool = False, window_size: float = 2.0,
                    contrast_threshold: float = DEFAULT_CONTRAST_THRESHOLD) -> tuple[np.ndarray, RFGeometry]:
    """Dense SIFT on the ``vl_dsift`` grid of the whole image, as a feature map.

    Args:
        image: (H, W) or (H, W, 3) image (uint8 or float in [0, 1]).
        step: distance between descriptor centres, pixels (positive integer).
        bin_size: spatial bin side, pixels (>= 1); the descriptor spans 4 bins.
        smooth, magnif: pre-smooth with sigma ``sqrt((bin_size / magnif)^2 - 0.25)``.
        flat_window, window_size: Gaussian window of sigma ``window_size`` bins (see the module docstring).
        contrast_threshold: raw-norm threshold below which a descriptor is all zeros.
    Returns:
        desc: (h, w, 128) float32, descriptor (c, r) at ``desc[r, c]``.
        geometry: ``RFGeometry(size=4 * bin_size, stride=step, offset=1.5 * bin_size)``: descriptor (c, r) is
            centred at pixel ``(offset + step * c, offset + step * r)``.
    """
    gray = to_gray(image)
    xs, ys = dsift_centers(gray.shape, step, bin_size)
    ch = orientation_channels(gray, bin_size, smooth, magnif)
    raw = _grid_raw(ch, xs, ys, bin_size, window_size, flat_window)
    d = normalize_descriptors(raw.reshape(-1, DESCRIPTOR_SIZE), contrast_threshold)
    return d.reshape(len(ys), len(xs), DESCRIPTOR_SIZE), dsift_geometry(bin_size, int(step))


def dense_sift(image: np.ndarray, step: int = 8, bin_size: float = 8, bounds: Optional[Sequence[float]] = None, *,
               smooth: bool = True, magnif: float = 6.0, flat_window: bool = False, window_size: float = 2.0,
               contrast_threshold: float = DEFAULT_CONTRAST_THRESHOLD) -> tuple[np.ndarray, np.ndarray]:
    """VLFeat-style ``vl_dsift``.

    Args:
        image: (H, W) or (H, W, 3) image (uint8 or float in [0, 1]).
        step, bin_size: as :func:`dense_sift_grid`.
        bounds: optional (xmin, ymin, xmax, ymax) inclusive pixel box holding all bin centres (default: image).
        other options: as :func:`dense_sift_grid`.
    Returns:
        frames: (N, 2) float64 (x, y) descriptor centres in pixels, row by row (y outer, x inner).
        desc: (N, 128) float32 descriptors.
    """
    gray = to_gray(image)
    xs, ys = dsift_centers(gray.shape, step, bin_size, bounds)
    ch = orientation_channels(gray, bin_size, smooth, magnif)
    raw = _grid_raw(ch, xs, ys, bin_size, window_size, flat_window).reshape(-1, DESCRIPTOR_SIZE)
    frames = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
    return frames, normalize_descriptors(raw, contrast_threshold)


def sift_at_points(image: np.ndarray, xy: np.ndarray, bin_size: float, *, smooth: bool = True,
                   magnif: float = 6.0, flat_window: bool = False, window_size: float = 2.0,
                   contrast_threshold: float = DEFAULT_CONTRAST_THRESHOLD) -> np.ndarray:
    """SIFT descriptors centred exactly at arbitrary (sub-pixel) points.

    The bilinear/window weights are evaluated at the true offsets of every pixel from the point, so a point on
    the ``dense_sift`` grid gets exactly that descriptor, and a point between pixels is not rounded. Bins
    outside the image see zero gradient, so points near (or beyond) the border work.

    Args:
        image: (H, W) or (H, W, 3) image.
        xy: (N, 2) (x, y) descriptor centres in pixels.
        bin_size: spatial bin side in pixels (:func:`radius_to_bin_size` for the paper's radius).
        other options: as :func:`dense_sift_grid`.
    Returns:
        (N, 128) float32 descriptors.
    """
    _check_bin_step(bin_size)
    xy = np.asarray(xy, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2:
        if xy.size == 0:
            return np.zeros((0, DESCRIPTOR_SIZE), np.float32)
        raise ValueError(f"xy: expected (N, 2) points, got shape {xy.shape}")
    if not np.all(np.isfinite(xy)):
        raise ValueError("xy: points must be finite (drop NaN keypoints first)")
    gray = to_gray(image)
    if len(xy) == 0:
        return np.zeros((0, DESCRIPTOR_SIZE), np.float32)
    ch = orientation_channels(gray, bin_size, smooth, magnif)
    raw = _points_raw(ch, xy, bin_size, window_size, flat_window)
    return normalize_descriptors(raw, contrast_threshold)
