import numpy as np
import pytest

from convcorr.sift import (dense_sift, dense_sift_grid, normalize_descriptors, radius_to_bin_size,
                           sift_at_points)


def _ori_hist(desc):
    return desc.reshape(-1, 16, 8).sum(1)


def ramp(h=64, w=64, axis=1):
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    return (x if axis == 1 else y) / max(h, w)


def test_ramp_in_x_goes_to_bin0_and_in_y_to_bin2():
    _, d = dense_sift(ramp(axis=1), step=8, bin_size=4, smooth=False)
    assert np.all(_ori_hist(d).argmax(1) == 0)
    _, d = dense_sift(ramp(axis=0), step=8, bin_size=4, smooth=False)
    assert np.all(_ori_hist(d).argmax(1) == 2)  # y grows downwards: 90 degrees in image coordinates


def test_diagonal_gradient_splits_between_bins():
    y, x = np.mgrid[0:64, 0:64].astype(np.float32)
    # gradient at 22.5 degrees: exactly half-way between orientation bins 0 and 1
    im = (np.cos(np.pi / 8) * x + np.sin(np.pi / 8) * y) / 100
    _, d = dense_sift(im, step=16, bin_size=4, smooth=False)
    h = _ori_hist(d)[0]
    assert h[0] == pytest.approx(h[1], rel=1e-3) and h[2:].max() < 1e-6


def test_rot90_permutes_orientation_bins_by_two():
    rng = np.random.default_rng(0)
    im = rng.random((40, 40)).astype(np.float32)
    im = np.kron(im, np.ones((2, 2), np.float32))
    c = np.array([[39.5, 39.5]])  # image centre (80x80), invariant under rot90
    d0 = sift_at_points(im, c, bin_size=6, smooth=False).reshape(4, 4, 8)
    d1 = sift_at_points(np.rot90(im), c, bin_size=6, smooth=False).reshape(4, 4, 8)
    # np.rot90 turns the picture counter-clockwise on screen: a gradient at angle a (y down) goes to a - 90 deg,
    # i.e. orientation bin o -> o - 2; spatial bin (by, bx) -> (3 - bx, by).
    expected = np.empty_like(d0)
    for by in range(4):
        for bx in range(4):
            expected[3 - bx, by] = np.roll(d0[by, bx], -2)
    np.testing.assert_allclose(d1, expected, atol=1e-5)


def test_constant_image_gives_zero_descriptors():
    _, d = dense_sift(np.full((40, 40), 0.5, np.float32), step=4, bin_size=4)
    assert np.all(d == 0)


def test_normalisation_unit_norm_and_clamped():
    rng = np.random.default_rng(1)
    raw = rng.random((5, 128)) ** 8
    d = normalize_descriptors(raw)
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1, rtol=1e-5)
    # after clamping at 0.2 and renormalising, no entry exceeds 0.2 / (norm of clamped vector) <= 1
    clamped = np.minimum(raw / np.linalg.norm(raw, axis=1, keepdims=True), 0.2)
    np.testing.assert_allclose(d, clamped / np.linalg.norm(clamped, axis=1, keepdims=True), rtol=1e-5)


def test_frames_geometry():
    frames, d = dense_sift(np.zeros((50, 70)), step=5, bin_size=4)
    # first centre 1.5 bins = 6; last bin centre (centre + 6) must be <= 69 -> centres 6..61 in x, 6..41 in y
    xs, ys = np.unique(frames[:, 0]), np.unique(frames[:, 1])
    assert xs[0] == 6 and xs[-1] == 61 and np.all(np.diff(xs) == 5)
    assert ys[0] == 6 and ys[-1] == 41
    assert d.shape == (len(xs) * len(ys), 128)
    grid, geom = dense_sift_grid(np.zeros((50, 70)), step=5, bin_size=4)
    assert grid.shape == (len(ys), len(xs), 128)
    assert (geom.size, geom.stride, geom.offset) == (16, 5, 6.0)


def test_sift_at_points_equals_dense_and_border_ok():
    rng = np.random.default_rng(2)
    im = (rng.random((60, 60, 3)) * 255).astype(np.uint8)
    frames, d = dense_sift(im, step=7, bin_size=4)
    p = sift_at_points(im, frames[[0, 5, 17]], bin_size=4)
    np.testing.assert_allclose(p, d[[0, 5, 17]], atol=1e-6)
    b = sift_at_points(im, np.array([[0.0, 0.0], [59.0, 30.3]]), bin_size=10)
    assert b.shape == (2, 128) and np.all(np.isfinite(b)) and np.all(np.linalg.norm(b, axis=1) > 0.99)


def test_translation_equivariance():
    rng = np.random.default_rng(3)
    im = rng.random((64, 80)).astype(np.float32)
    g0, _ = dense_sift_grid(im, step=4, bin_size=4, smooth=False)
    g1, _ = dense_sift_grid(im[:, 4:], step=4, bin_size=4, smooth=False)
    # interior descriptors (away from the cut, whose gradients differ) shift by one column
    np.testing.assert_allclose(g1[:, 1:-2], g0[:, 2:g1.shape[1] - 1], atol=1e-5)


def test_radius_to_bin_size():
    assert [radius_to_bin_size(r) for r in (10, 20, 40, 80, 160)] == [5, 10, 20, 40, 80]
    with pytest.raises(ValueError):
        radius_to_bin_size(0)


def test_real_photo_descriptors(shared):
    from convcorr.types import load_image

    im = load_image(shared / "images" / "cat.bmp")
    _, d = dense_sift(im, step=8, bin_size=8)
    nz = np.linalg.norm(d, axis=1) > 0
    assert nz.mean() > 0.9
    assert d.max() <= 1 and d.min() >= 0
    assert np.std(d[nz].mean(0)) > 0  # not all equal
