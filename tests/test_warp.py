import numpy as np

from convcorr.core.geometry import RFGeometry
from convcorr.numerics.warp import dense_flow, transfer_back, warp_image


def test_constant_flow_gives_constant_dense_and_shifted_image():
    g = RFGeometry(size=32, stride=16, offset=7.5)
    flow = np.zeros((6, 8, 2), int)
    flow[..., 0], flow[..., 1] = 1, 2  # one column right, two rows down = (16, 32) px
    dense = dense_flow(flow, g, g, (96, 128))
    np.testing.assert_allclose(dense[..., 0], 16)
    np.testing.assert_allclose(dense[..., 1], 32)
    rng = np.random.default_rng(0)
    tgt = (rng.random((96, 128, 3)) * 255).astype(np.uint8)
    out = warp_image(tgt, dense)
    np.testing.assert_array_equal(out[:96 - 32, :128 - 16], tgt[32:, 16:])
    assert np.all(out[96 - 32:, :] == 0)  # outside the target: black
    q = np.array([[50.0, 60.0], [np.nan, 1.0]])
    p = transfer_back(q, dense)
    np.testing.assert_allclose(p[0], [34, 28])
    assert np.isnan(p[1]).all()


def test_identity():
    g = RFGeometry(size=11, stride=4, offset=5)
    dense = dense_flow(np.zeros((10, 12, 2), int), g, g, (40, 48))
    assert np.abs(dense).max() == 0
    np.testing.assert_allclose(transfer_back(np.array([[3.2, 7.9]]), dense), [[3.2, 7.9]])


def test_affine_flow_reproduced_at_pixel_level():
    # target grid geometry differs from the source: stride 8 vs 16 -> a scaling by 2 plus offsets
    gs = RFGeometry(size=32, stride=16, offset=7.5)
    gt = RFGeometry(size=16, stride=8, offset=3.5)
    h, w = 5, 6
    flow = np.zeros((h, w, 2), int)
    flow[..., 0] = np.arange(w)[None, :]  # target column = 2c
    flow[..., 1] = np.arange(h)[:, None]  # target row = 2r
    dense = dense_flow(flow, gs, gt, (80, 96))
    # T(x) = 3.5 + 8 * 2c with x = 7.5 + 16c -> T(x) = x - 4 everywhere inside the hull
    inner = dense[8:71, 8:88]
    np.testing.assert_allclose(inner[..., 0], -4, atol=1e-9)
    np.testing.assert_allclose(inner[..., 1], -4, atol=1e-9)


def _bilinear_expected(offset: float, stride: float, n_px: int, axis_len: int) -> tuple:
    """Indices/weights of the linear interpolation between column centres (clamped outside the hull)."""
    u = np.clip((np.arange(n_px) - offset) / stride, 0, axis_len - 1)
    i0 = np.minimum(np.floor(u).astype(int), axis_len - 2)
    return i0, u - i0


def test_stride16_offset7p5_random_flow_is_exact_bilinear():
    g = RFGeometry(size=40, stride=16, offset=7.5)
    rng = np.random.default_rng(3)
    h, w, H, W = 5, 7, 80, 112
    flow = rng.integers(-2, 3, (h, w, 2))
    dense = dense_flow(flow, g, g, (H, W))
    ix, tx = _bilinear_expected(7.5, 16, W, w)
    iy, ty = _bilinear_expected(7.5, 16, H, h)
    disp = 16.0 * flow  # same geometry: displacement in px = stride * grid flow
    top = disp[iy][:, ix] * (1 - tx)[None, :, None] + disp[iy][:, ix + 1] * tx[None, :, None]
    bot = disp[iy + 1][:, ix] * (1 - tx)[None, :, None] + disp[iy + 1][:, ix + 1] * tx[None, :, None]
    expected = top * (1 - ty)[:, None, None] + bot * ty[:, None, None]
    np.testing.assert_allclose(dense, expected, atol=1e-9)


def test_column_centres_map_exactly_for_k1_and_k3():
    g_s = RFGeometry(size=11, stride=4, offset=2)
    g_t = RFGeometry(size=19, stride=8, offset=5)
    rng = np.random.default_rng(4)
    flow = rng.integers(-3, 4, (6, 8, 2))
    cr = np.stack(np.meshgrid(np.arange(8), np.arange(6)), -1)
    want = g_t.column_to_pixel(cr + flow) - g_s.column_to_pixel(cr)
    for k in (1, 3):
        dense = dense_flow(flow, g_s, g_t, (26, 34), k=k)
        got = dense[2 + 4 * cr[..., 1], 2 + 4 * cr[..., 0]]
        np.testing.assert_allclose(got, want, atol=1e-8)
    smooth = dense_flow(flow, g_s, g_t, (26, 34), k=3, smoothing=1e4)
    assert np.isfinite(smooth).all()
    rough = lambda d: np.abs(np.diff(d, axis=0)).sum() + np.abs(np.diff(d, axis=1)).sum()
    assert rough(smooth) < rough(dense_flow(flow, g_s, g_t, (26, 34), k=3))


def test_transfer_inverts_an_affine_scaling_flow():
    # source stride 16 / target stride 8, zero grid flow: T(x) = 3.5 + 8 (x - 7.5) / 16 = x / 2 - 0.25
    gs = RFGeometry(size=32, stride=16, offset=7.5)
    gt = RFGeometry(size=16, stride=8, offset=3.5)
    dense = dense_flow(np.zeros((5, 6, 2), int), gs, gt, (80, 96))
    p = np.array([[40.3, 50.7], [20.0, 30.0], [70.9, 12.2]])
    q = p / 2 - 0.25
    np.testing.assert_allclose(transfer_back(q, dense), p, atol=1e-9)
    coarse = transfer_back(q, dense, refine=False)
    assert np.all(np.abs(coarse - p) <= 1.0) and np.all(coarse == np.round(coarse))


def test_identity_warp_and_bad_input():
    rng = np.random.default_rng(5)
    img = (rng.random((9, 11, 3)) * 255).astype(np.uint8)
    np.testing.assert_array_equal(warp_image(img, np.zeros((9, 11, 2))), img)
    np.testing.assert_array_equal(warp_image(img[..., 0], np.zeros((9, 11, 2))), img[..., 0])  # grey
    shifted = warp_image(img, np.broadcast_to(np.array([-2.0, 1.0]), (9, 11, 2)))
    np.testing.assert_array_equal(shifted[:-1, 2:], img[1:, :-2])
    import pytest

    with pytest.raises(ValueError, match="flow"):
        dense_flow(np.zeros((4, 4)), RFGeometry(1, 1, 0), RFGeometry(1, 1, 0), (4, 4))


def _fold_field():
    """13 x 13 conv4-like grid: every column maps one column to the LEFT (source = target + 16 px) except the left
    border column, which points 3 columns the other way (column 0 -> column 3): the map folds back over
    target columns 0..3."""
    from convcorr.core.geometry import RFGeometry

    g = RFGeometry(131, 16, 17.0)
    flow = np.zeros((13, 13, 2))
    flow[..., 0] = -1
    flow[:, 0, 0] = 3
    return g, flow


def test_transfer_back_is_fold_correct():
    # regression: the old nearest-T(p) search let the folded border column steal interior points
    g, flow = _fold_field()
    dense = dense_flow(flow, g, g, (227, 227))
    c = g.column_centers(13)
    q = np.stack(np.meshgrid(np.linspace(c[0], c[11], 34), np.linspace(0, 226, 9)), -1).reshape(-1, 2)
    out = transfer_back(q, dense)
    np.testing.assert_allclose(out, q + [16, 0], atol=1e-9)  # every interior point exactly
    # the fold exists: target x = c[1] also has the folded preimage inside source cell [c0, c1]
    assert (dense[:, 17 + 8, 0] + 17 + 8 > c[1]).all()


def test_invert_lattice_by_hand_and_outside_points():
    from convcorr.numerics.warp import invert_lattice

    xs, ys = np.array([0.0, 10.0]), np.array([0.0, 10.0])
    T = np.stack(np.meshgrid(xs, ys), -1) * 2 + 5          # p -> 2 p + 5
    np.testing.assert_allclose(invert_lattice(np.array([[15.0, 7.0], [np.nan, 1]]), xs, ys, T)[0], [5, 1])
    assert np.isnan(invert_lattice(np.array([[np.nan, 1.0]]), xs, ys, T)).all()
    # a point outside the map's image goes to the source point whose image is nearest (the corner (10, 10))
    np.testing.assert_allclose(invert_lattice(np.array([[40.0, 40.0]]), xs, ys, T, (11, 11)), [[10, 10]])
