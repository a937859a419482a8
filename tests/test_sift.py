"""Dense SIFT (convcorr.numerics.sift): hand-computed toy cases, a brute-force reference, and a real photo."""
import numpy as np
import pytest

from convcorr.numerics.sift import (dense_sift, dense_sift_grid, dsift_centers, normalize_descriptors,
                                    orientation_channels, radius_to_bin_size, sift_at_points, smoothing_sigma, to_gray)


def _ori_hist(desc):
    """(N, 128) -> (N, 8) energy per orientation bin (layout (by*4+bx)*8+o)."""
    return desc.reshape(-1, 16, 8).sum(1)


def ramp(h=64, w=64, axis=1, slope=0.01):
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    return (x if axis == 1 else y) * slope


def reference_raw(gray, cx, cy, b, sigma_win=None):
    """Brute-force raw descriptor straight from the definition (no smoothing): (4, 4, 8) [by, bx, o]."""
    gy, gx = np.gradient(gray.astype(np.float64))
    H, W = gray.shape
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    mag = np.hypot(gx, gy)
    t = np.mod(np.arctan2(gy, gx) / (np.pi / 4), 8)
    out = np.zeros((4, 4, 8))
    for by in range(4):
        for bx in range(4):
            wx = np.maximum(0, 1 - np.abs(u - (cx + (bx - 1.5) * b)) / b)
            wy = np.maximum(0, 1 - np.abs(v - (cy + (by - 1.5) * b)) / b)
            w = wx * wy / b ** 2
            if sigma_win is not None:
                w = w * np.exp(-((u - cx) ** 2 + (v - cy) ** 2) / (2 * sigma_win ** 2))
            for o in range(8):
                # linear interpolation in orientation: weight max(0, 1 - circular distance to bin o)
                dist = np.abs(t - o)
                dist = np.minimum(dist, 8 - dist)
                out[by, bx, o] = np.sum(w * mag * np.maximum(0, 1 - dist))
    return out


def sift_norm(raw):
    d = raw.ravel() / np.linalg.norm(raw)
    d = np.minimum(d, 0.2)
    return d / np.linalg.norm(d)


# ------------------------------------------------------------------------------------------------ orientation
def test_ramp_in_x_goes_to_bin0_and_in_y_to_90_degree_bin():
    _, d = dense_sift(ramp(axis=1), step=8, bin_size=4)
    h = _ori_hist(d)
    assert np.all(h[:, 0] > 0) and np.all(h[:, 1:] == 0)
    _, d = dense_sift(ramp(axis=0), step=8, bin_size=4)
    h = _ori_hist(d)  # y grows downwards: a gradient pointing down is 90 degrees = bin 2
    assert np.all(h[:, 2] > 0) and np.all(np.delete(h, 2, axis=1) == 0)
    _, d = dense_sift(-ramp(axis=1), step=8, bin_size=4)  # decreasing with x: 180 degrees = bin 4
    assert np.all(_ori_hist(d).argmax(1) == 4)


def test_flat_ramp_descriptor_by_hand():
    # unwindowed, unsmoothed ramp: every raw bin = slope in orientation 0 -> 16 entries of 1/4, clamped to 0.2,
    # renormalised -> 16 entries of 1/4 again.
    # (descriptors whose 5 b = 20 px support lies inside the 64 px image: centres 10..53)
    frames, d = dense_sift(ramp(slope=0.01), step=8, bin_size=4, smooth=False, window_size=np.inf)
    inner = np.all((frames >= 10) & (frames <= 53), axis=1)
    assert inner.sum() >= 16
    d = d[inner]
    expected = np.zeros(128, np.float32)
    expected[0::8] = 0.25
    np.testing.assert_allclose(d, np.broadcast_to(expected, d.shape), atol=1e-6)


def test_diagonal_gradient_splits_between_bins():
    y, x = np.mgrid[0:64, 0:64].astype(np.float32)
    im = (np.cos(np.pi / 8) * x + np.sin(np.pi / 8) * y) / 100  # 22.5 degrees: half-way between bins 0 and 1
    _, d = dense_sift(im, step=16, bin_size=4, smooth=False)
    h = _ori_hist(d)
    np.testing.assert_allclose(h[:, 0], h[:, 1], rtol=1e-3)
    assert h[:, 2:].max() < 1e-6


def test_orientation_channels_conserve_magnitude():
    rng = np.random.default_rng(4)
    g = rng.random((20, 30)).astype(np.float32)
    ch = orientation_channels(g, 4, smooth=False)
    gy, gx = np.gradient(g)
    np.testing.assert_allclose(ch.sum(0), np.hypot(gx, gy), rtol=1e-5, atol=1e-7)
    assert ch.min() >= 0 and np.all((ch > 0).sum(0) <= 2)


# ------------------------------------------------------------------------------------------------ reference
@pytest.mark.parametrize("window", ["gaussian", "none"])
def test_matches_brute_force_reference(window):
    rng = np.random.default_rng(5)
    im = rng.random((48, 52)).astype(np.float32)
    b = 4
    kw = dict(smooth=False, window_size=2.0 if window == "gaussian" else np.inf)
    sigma = 2.0 * b if window == "gaussian" else None
    pts = np.array([[25.0, 23.0], [20.3, 27.6], [0.0, 0.0], [51.0, 10.5]])  # grid-free, sub-pixel, corners
    d = sift_at_points(im, pts, b, **kw)
    for p, dd in zip(pts, d):
        np.testing.assert_allclose(dd, sift_norm(reference_raw(im, p[0], p[1], b, sigma)), atol=2e-5)


def test_flat_window_is_vlfeat_fast_mode():
    # 'Fast' mode: no per-pixel window, each bin scaled by the mean Gaussian over its 2b-1 pixels (per axis)
    rng = np.random.default_rng(6)
    im = rng.random((40, 40)).astype(np.float32)
    b, c = 4, 19.0
    x = np.arange(-(b - 1), b)
    delta = (np.arange(4) - 1.5) * b
    m = np.exp(-0.5 * ((x[None] - delta[:, None]) / (2 * b)) ** 2).mean(1)
    raw = reference_raw(im, c, c, b) * (m[:, None, None] * m[None, :, None])
    d = sift_at_points(im, [[c, c]], b, smooth=False, flat_window=True)
    np.testing.assert_allclose(d[0], sift_norm(raw), atol=2e-5)


def test_border_point_by_hand():
    # x ramp, point on the left border x=0: bins centred at x=-6,-2,2,6 (b=4) keep only the weights of pixels
    # x>=0: 0, (0.5+0.25)/4, (0.5+0.75+1+0.75+0.5+0.25)/4, 1 of the full bin.
    im = ramp(40, 40, slope=0.02)
    d = sift_at_points(im, [[0.0, 20.0]], 4, smooth=False, window_size=np.inf)[0].reshape(4, 4, 8)
    raw = np.zeros((4, 4, 8))
    raw[:, :, 0] = np.array([0, 0.1875, 0.9375, 1.0]) * 0.02
    np.testing.assert_allclose(d.ravel(), sift_norm(raw), atol=1e-6)


# ------------------------------------------------------------------------------------------------ symmetry
def test_rot90_permutes_orientation_bins_by_two():
    rng = np.random.default_rng(0)
    im = np.kron(rng.random((40, 40)), np.ones((2, 2))).astype(np.float32)
    c = np.array([[39.5, 39.5]])  # centre of the 80x80 image, fixed by rot90
    d0 = sift_at_points(im, c, bin_size=6).reshape(4, 4, 8)
    d1 = sift_at_points(np.rot90(im), c, bin_size=6).reshape(4, 4, 8)
    # np.rot90 turns the picture counter-clockwise on screen: pixel (x, y) -> (y, 79 - x); a gradient at angle a
    # (y down) goes to a - 90 degrees, orientation bin o -> o - 2; spatial bin (by, bx) -> (3 - bx, by).
    expected = np.empty_like(d0)
    for by in range(4):
        for bx in range(4):
            expected[3 - bx, by] = np.roll(d0[by, bx], -2)
    np.testing.assert_allclose(d1, expected, atol=1e-5)
    assert np.abs(d1 - d0).max() > 0.05  # the test is not vacuous


def test_translation_equivariance():
    rng = np.random.default_rng(3)
    im = rng.random((72, 90)).astype(np.float32)
    step, b = 4, 4
    g0, _ = dense_sift_grid(im, step=step, bin_size=b)
    g1, _ = dense_sift_grid(im[step:, step:], step=step, bin_size=b)
    # descriptor (c, r) of the shifted image = (c + 1, r + 1) of the original, once its support
    # (centre - 2.5 b, minus smoothing and gradient reach) clears the cut
    k = int(np.ceil((2.5 * b + 4 * smoothing_sigma(b) + 2 - 1.5 * b) / step)) + 1
    h, w = g1.shape[:2]
    np.testing.assert_allclose(g1[k:, k:], g0[k + 1:h + 1, k + 1:w + 1], atol=1e-5)


def test_contrast_and_brightness_invariance():
    rng = np.random.default_rng(7)
    im = rng.random((40, 40)).astype(np.float32) * 0.5
    _, d0 = dense_sift(im, step=6, bin_size=4)
    _, d1 = dense_sift(im * 1.7 + 0.1, step=6, bin_size=4)
    np.testing.assert_allclose(d0, d1, atol=1e-5)


# ------------------------------------------------------------------------------------------------ normalisation
def test_constant_image_gives_zero_descriptors():
    _, d = dense_sift(np.full((40, 40), 0.5, np.float32), step=4, bin_size=4)
    assert d.shape[0] > 0 and np.all(d == 0)
    _, d = dense_sift(np.full((40, 40, 3), 200, np.uint8), step=4, bin_size=4)
    assert np.all(d == 0)


def test_low_contrast_rule():
    # raw norm of a flat-window ramp of slope g is 4 g: zero below the threshold, unit norm above it
    for slope, zero in ((1e-6, True), (1e-4, False)):
        _, d = dense_sift(ramp(slope=slope), step=8, bin_size=4, smooth=False, window_size=np.inf)
        assert np.all(d == 0) if zero else np.allclose(np.linalg.norm(d, axis=1), 1, atol=1e-6)
    _, d = dense_sift(ramp(slope=1e-6), step=8, bin_size=4, contrast_threshold=0)
    assert np.allclose(np.linalg.norm(d, axis=1), 1, atol=1e-6)


def test_normalisation_unit_norm_and_clamped():
    rng = np.random.default_rng(1)
    raw = rng.random((5, 128)) ** 8
    d = normalize_descriptors(raw)
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1, rtol=1e-5)
    unit = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    assert unit.max() > 0.2  # clamping happens in this example
    clamped = np.minimum(unit, 0.2)
    np.testing.assert_allclose(d, clamped / np.linalg.norm(clamped, axis=1, keepdims=True), rtol=1e-5)
    assert np.all(normalize_descriptors(np.zeros((2, 128))) == 0)


# ------------------------------------------------------------------------------------------------ geometry
def test_frames_geometry():
    frames, d = dense_sift(np.zeros((50, 70)), step=5, bin_size=4)
    # first centre 1.5 bins = 6; last bin centre (centre + 6) must be <= 69 -> centres 6..61 in x, 6..41 in y
    xs, ys = np.unique(frames[:, 0]), np.unique(frames[:, 1])
    np.testing.assert_array_equal(xs, np.arange(6, 62, 5))
    np.testing.assert_array_equal(ys, np.arange(6, 42, 5))
    assert d.shape == (len(xs) * len(ys), 128) and d.dtype == np.float32
    np.testing.assert_array_equal(frames[:3], [[6, 6], [11, 6], [16, 6]])  # row by row, x fastest
    grid, geom = dense_sift_grid(np.zeros((50, 70)), step=5, bin_size=4)
    assert grid.shape == (len(ys), len(xs), 128)
    assert (geom.size, geom.stride, geom.offset) == (16, 5, 6.0)
    np.testing.assert_array_equal(geom.grid_centers(grid.shape[:2]).reshape(-1, 2), frames)
    # odd bin size: centres on half pixels, bin centres on whole pixels (VLFeat frame size 3b+1)
    frames, _ = dense_sift(np.zeros((30, 30)), step=3, bin_size=5)
    assert frames[0, 0] == 7.5 and frames[:, 0].max() + 7.5 <= 29


def test_bounds():
    rng = np.random.default_rng(8)
    im = (rng.random((60, 80, 3)) * 255).astype(np.uint8)
    frames, d = dense_sift(im, step=5, bin_size=4, bounds=(10, 20, 60, 45))
    np.testing.assert_array_equal(np.unique(frames[:, 0]), np.arange(16, 55, 5))
    np.testing.assert_array_equal(np.unique(frames[:, 1]), [26, 31, 36])
    # gradients come from the whole image: same descriptors as at those points of the full image
    np.testing.assert_allclose(d, sift_at_points(im, frames, 4), atol=1e-6)
    with pytest.raises(ValueError, match="bounds|image"):
        dense_sift(im, step=5, bin_size=4, bounds=(0, 0, 10, 10))


def test_sift_at_points_equals_dense_and_border_ok():
    rng = np.random.default_rng(2)
    im = (rng.random((60, 60, 3)) * 255).astype(np.uint8)
    frames, d = dense_sift(im, step=7, bin_size=4)
    idx = [0, 5, 17, len(frames) - 1]
    np.testing.assert_allclose(sift_at_points(im, frames[idx], bin_size=4), d[idx], atol=1e-6)
    # scattered (non grid-like) point sets take the other code path: same answer
    pts = np.concatenate([frames[idx], rng.uniform(-5, 65, (40, 2))])
    np.testing.assert_allclose(sift_at_points(im, pts, bin_size=4)[:4], d[idx], atol=1e-6)
    # border and outside points at the paper's radii: finite, unit norm
    for r in (10, 20, 40, 80, 160):
        b = sift_at_points(im, np.array([[0.0, 0.0], [59.0, 30.3], [-3.0, 61.0]]), radius_to_bin_size(r))
        assert b.shape == (3, 128) and np.all(np.isfinite(b))
        np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1, atol=1e-5)
    assert sift_at_points(im, np.zeros((0, 2)), 4).shape == (0, 128)


def test_grid_like_and_scattered_paths_agree():
    rng = np.random.default_rng(9)
    im = rng.random((50, 50)).astype(np.float32)
    xs, ys = np.meshgrid(np.arange(10, 30), np.arange(15, 25))
    win = np.stack([xs.ravel(), ys.ravel()], 1).astype(float)
    a = sift_at_points(im, win, 5)
    b = np.concatenate([sift_at_points(im, np.concatenate([w[None], rng.uniform(0, 49, (30, 2))]), 5)[:1]
                        for w in win[::37]])
    np.testing.assert_allclose(a[::37], b, atol=1e-6)


# ------------------------------------------------------------------------------------------------ misc
def test_gray_conversion_and_inputs():
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0] = 255
    np.testing.assert_allclose(to_gray(rgb), 0.2989, rtol=1e-6)
    np.testing.assert_allclose(to_gray(np.full((3, 3), 51, np.uint8)), 0.2)
    rng = np.random.default_rng(10)
    im = (rng.random((40, 40)) * 255).astype(np.uint8)
    _, a = dense_sift(im, 8, 4)
    _, b = dense_sift(np.repeat(im[..., None], 3, axis=2), 8, 4)
    _, c = dense_sift(im.astype(np.float32) / 255, 8, 4)
    np.testing.assert_allclose(a, b, atol=2e-5)
    np.testing.assert_allclose(a, c, atol=1e-6)
    with pytest.raises(ValueError, match="image"):
        dense_sift(np.zeros((10, 10, 4)), 4, 2)
    with pytest.raises(ValueError, match="step"):
        dense_sift(im, 0, 4)
    with pytest.raises(ValueError, match="bin_size"):
        dense_sift(im, 4, 0.5)
    with pytest.raises(ValueError, match="xy"):
        sift_at_points(im, np.array([[np.nan, 1.0]]), 4)


def test_radius_to_bin_size():
    assert [radius_to_bin_size(r) for r in (10, 20, 40, 80, 160)] == [5, 10, 20, 40, 80]
    with pytest.raises(ValueError, match="radius"):
        radius_to_bin_size(0)


def test_dsift_centers_match_frames():
    xs, ys = dsift_centers((50, 70), 5, 4)
    frames, _ = dense_sift(np.zeros((50, 70)), 5, 4)
    np.testing.assert_array_equal(np.unique(frames[:, 0]), xs)
    np.testing.assert_array_equal(np.unique(frames[:, 1]), ys)


def test_real_photo_descriptors(shared):
    from convcorr.core.images import load_image

    im = load_image(shared / "images" / "cat.bmp")
    frames, d = dense_sift(im, step=8, bin_size=8)
    H, W = im.shape[:2]
    assert len(frames) == len(np.arange(12, W - 12, 8)) * len(np.arange(12, H - 12, 8))
    n = np.linalg.norm(d, axis=1)
    nz = n > 0
    assert nz.mean() > 0.9
    np.testing.assert_allclose(n[nz], 1, atol=1e-5)
    assert d.min() >= 0 and d.max() <= 1
    assert np.mean(d[nz] > 0) > 0.3  # not degenerate one-hot histograms
    assert np.mean(np.linalg.norm(d[nz] - d[nz].mean(0), axis=1)) > 0.3  # descriptors differ across the image
    # distinct positions are distinguishable: each descriptor is nearest to itself among its row neighbours
    grid, _ = dense_sift_grid(im, step=8, bin_size=8)
    row = grid[grid.shape[0] // 2]
    shifted, _ = dense_sift_grid(im[:, 8:], step=8, bin_size=8)
    srow = shifted[grid.shape[0] // 2]
    dist = np.linalg.norm(row[3:-3, None] - srow[None, 2:-3], axis=-1)  # row[c] should match srow[c - 1]
    assert np.mean(dist.argmin(1) == np.arange(len(dist))) > 0.9
