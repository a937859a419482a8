import numpy as np
import pytest

from convcorr.core.crops import crop_instance
from convcorr.core.types import Instance
from convcorr.features.cache import array_digest, cache_path, cached
from convcorr.core.geometry import RFGeometry
from convcorr.features.sampling import PixelConvFeatures, conv_features_at, sift_features_at
from convcorr.numerics.sift import sift_at_points


def dense_conv_grid(backbone, crop: np.ndarray, layer: str, pixel_stride: bool = False):
    """One layer on one crop fed at its own size: (features, geometry), the native grid or the exact 1-pixel-stride
    map of :class:`PixelConvFeatures` with ``RFGeometry(size, 1, 0)``."""
    g = backbone.rf(layer)
    if pixel_stride:
        return PixelConvFeatures(backbone, crop, [layer]).grid(layer), RFGeometry(g.size, 1.0, 0.0)
    return backbone.extract([crop], [layer], size=None)[layer][0], g


@pytest.fixture(scope="module")
def alexnet():
    from convcorr.backbones import get_backbone

    return get_backbone("alexnet", pretrained=False, device="cpu")


def toy_instance():
    img = np.zeros((60, 80, 3), np.uint8)
    img[20:40, 30:50] = 255
    kp = np.array([[30.0, 20.0], [49.0, 39.0], [np.nan, np.nan]])
    return Instance(id="toy", category="box", bbox=(30.0, 20.0, 49.0, 39.0), keypoint_names=("tl", "br", "c"),
                    keypoints=kp, visible=np.array([True, True, False]), image_path=None, image=img, meta={})


def test_crop_instance_maps_round_trip_and_hit_content():
    inst = toy_instance()
    crop, tf = crop_instance(inst, margin=0.25, size=100)
    to_crop, from_crop = tf.to_crop, tf.from_crop
    assert crop.shape == (100, 100, 3) and crop.dtype == np.uint8
    pts = np.array([[0.0, 0.0], [31.5, 22.25], [79.0, 59.0]])
    np.testing.assert_allclose(from_crop(to_crop(pts)), pts, atol=1e-9)
    # box corners (+ 0.25 * 19 px margin) land inside the crop, symmetrically
    tl, br = to_crop(inst.keypoints[:2])
    assert 10 < tl[0] < 25 and 10 < tl[1] < 25
    np.testing.assert_allclose(tl + br, [99, 99], atol=6)
    # the bright square's centre maps to a bright crop pixel, a point outside it to a dark one
    c = np.rint(to_crop(np.array([[40.0, 30.0], [26.0, 16.0]]))).astype(int)
    assert crop[c[0, 1], c[0, 0]].min() == 255 and crop[c[1, 1], c[1, 0]].max() == 0


def test_conv_features_at_nearest_column(alexnet):
    img = (np.random.default_rng(0).random((227, 227, 3)) * 255).astype(np.uint8)
    xy = np.array([[17.0, 17.0], [40.0, 100.0]])
    f = conv_features_at(alexnet, [img], [xy], ["conv3"])["conv3"]
    a = alexnet.extract([img], ["conv3"], size=None)["conv3"][0]
    # (17, 17) is column (0, 0); (40, 100): (40 - 17) / 16 = 1.44 -> 1, (100 - 17) / 16 = 5.19 -> 5
    np.testing.assert_allclose(f[0], a[0, 0])
    np.testing.assert_allclose(f[1], a[5, 1])


def test_nearest_column_centre_within_half_stride(alexnet):
    img = (np.random.default_rng(3).random((227, 227, 3)) * 255).astype(np.uint8)
    rng = np.random.default_rng(4)
    for layer in ("conv1", "conv2", "conv5"):
        g = alexnet.rf(layer)
        grid, geom = dense_conv_grid(alexnet, img, layer)
        assert geom == g
        centres = g.grid_centers(grid.shape[:2])
        lo, hi = centres[0, 0], centres[-1, -1]
        xy = rng.uniform(lo, hi, size=(50, 2))  # points within the span of column centres
        f = conv_features_at(alexnet, [img], [xy], [layer])[layer]
        cr = g.pixel_to_column(xy, grid.shape[:2])
        assert np.all(np.abs(g.column_to_pixel(cr) - xy) <= g.stride / 2 + 1e-9)
        np.testing.assert_allclose(f, grid[cr[:, 1], cr[:, 0]])


def test_sift_features_match_sift_at_points():
    rng = np.random.default_rng(1)
    img = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    img2 = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    xy = np.array([[30.0, 31.0], [10.5, 50.0]])
    np.testing.assert_allclose(sift_features_at(img, xy, 20), sift_at_points(img, xy, 10))
    both = sift_features_at([img, img2], [xy, xy[:1]], 40)
    assert both.shape == (3, 128)
    np.testing.assert_allclose(both[2:], sift_at_points(img2, xy[:1], 20))


def test_pixel_conv_features_exact_on_column_centres(alexnet):
    img = (np.random.default_rng(2).random((99, 99, 3)) * 255).astype(np.uint8)
    pix = PixelConvFeatures(alexnet, img, ["conv1", "conv2"])
    a = alexnet.extract([img], ["conv1", "conv2"], size=None)
    # at an unshifted column centre the 1-pixel-stride feature equals the ordinary column
    np.testing.assert_allclose(pix.at("conv1", np.array([[5 + 4 * 3, 5 + 4 * 2]]))[0], a["conv1"][0, 2, 3], rtol=1e-5)
    np.testing.assert_allclose(pix.at("conv2", np.array([[9 + 8 * 2, 9]]))[0], a["conv2"][0, 0, 2], rtol=1e-5)
    # one pixel right of a centre: the column of the image shifted left by one pixel
    shifted = np.zeros_like(img)
    shifted[:, :-1] = img[:, 1:]
    b = alexnet.extract([shifted], ["conv1"], size=None)["conv1"][0]
    np.testing.assert_allclose(pix.at("conv1", np.array([[5 + 4 * 3 + 1, 5]]))[0], b[0, 3], rtol=1e-5)
    grid = pix.grid("conv1")
    assert grid.shape == (99, 99, a["conv1"].shape[-1])
    np.testing.assert_allclose(grid[5 + 4 * 2, 5 + 4 * 3], a["conv1"][0, 2, 3], rtol=1e-5)


def test_dense_conv_grid_pixel_stride(alexnet):
    img = (np.random.default_rng(5).random((40, 40, 3)) * 255).astype(np.uint8)
    grid, geom = dense_conv_grid(alexnet, img, "conv1", pixel_stride=True)
    assert grid.shape[:2] == (40, 40) and geom.stride == 1 and geom.offset == 0
    a = alexnet.extract([img], ["conv1"], size=None)["conv1"][0]
    np.testing.assert_allclose(grid[5 + 4, 5 + 8], a[1, 2], rtol=1e-5)


def test_cache_round_trip(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return np.arange(6.0).reshape(2, 3)

    d = array_digest(np.zeros(3))
    v1 = cached("face/lenna~w0", "alexnet conv3", compute, d, root=tmp_path)
    v2 = cached("face/lenna~w0", "alexnet conv3", compute, d, root=tmp_path)
    np.testing.assert_array_equal(v1, v2)
    assert len(calls) == 1
    assert cache_path("face/lenna~w0", "alexnet conv3", d, tmp_path).exists()
    cached("face/lenna~w0", "alexnet conv3", compute, array_digest(np.ones(3)), root=tmp_path)
    assert len(calls) == 2  # different content digest: recomputed
    assert array_digest(np.zeros(3)) != array_digest(np.zeros(3, np.float32))


def test_features_at_points_and_pixels_match_the_direct_functions(alexnet):
    from convcorr.features.base import get_features
    from convcorr.features.sampling import features_at_pixels, features_at_points

    img = np.random.default_rng(3).integers(0, 255, (99, 99, 3), dtype=np.uint8)
    xy = np.array([[20.0, 31.5], [60.2, 70.0], [5.0, 90.0]])
    feats = {"s": get_features("sift:radius=10"), "c2": get_features("conv2", backbone=alexnet),
             "c3": get_features("conv3", backbone=alexnet)}
    got = features_at_points(feats, img, xy)
    np.testing.assert_array_equal(got["s"], sift_features_at(img, xy, 10))
    ref = conv_features_at(alexnet, [img], [xy], ["conv2", "conv3"])
    np.testing.assert_array_equal(got["c2"], ref["conv2"])
    np.testing.assert_array_equal(got["c3"], ref["conv3"])
    pix = features_at_pixels({"c3": feats["c3"]}, img, np.array([[40.0, 50.0]]))
    np.testing.assert_allclose(pix["c3"], PixelConvFeatures(alexnet, img, ["conv3"]).at("conv3", [[40, 50]]))
