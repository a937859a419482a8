import numpy as np

from convcorr.geometry import RFGeometry
from convcorr.warp import dense_flow, transfer_points, warp_image


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
    p = transfer_points(q, dense)
    np.testing.assert_allclose(p[0], [34, 28])
    assert np.isnan(p[1]).all()


def test_identity():
    g = RFGeometry(size=11, stride=4, offset=5)
    dense = dense_flow(np.zeros((10, 12, 2), int), g, g, (40, 48))
    assert np.abs(dense).max() == 0
    np.testing.assert_allclose(transfer_points(np.array([[3.2, 7.9]]), dense), [[3.2, 7.9]])


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
