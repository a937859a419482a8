import numpy as np
import pytest

from convcorr.core.geometry import RFGeometry
from convcorr.features.base import DENSE_FEATURES, DenseFeatures, FeatureGrid, get_features


def test_sift_spec_options_are_key_values():
    assert get_features("sift:step=4, bin=6").spec == "sift:step=4,bin=6"
    with pytest.raises(ValueError, match="'sift:step'.*KEY=VALUE"):
        get_features("sift:step")


def test_sift_spec_matches_dense_sift_grid():
    from convcorr.numerics.sift import dense_sift_grid

    img = np.random.default_rng(0).integers(0, 255, (70, 90, 3), dtype=np.uint8)
    f = get_features("sift:step=4,bin=6")
    assert f.spec == "sift:step=4,bin=6" and get_features("sift").spec == "sift:step=8,bin=8"
    assert get_features("sift:radius=10").bin == 5.0  # the paper's radius r = 2 bins
    g = f(img)
    d, geom = dense_sift_grid(img, step=4, bin_size=6)
    np.testing.assert_array_equal(g.features, d)
    assert g.geometry == geom and g.image_hw == (70, 90) and g.name == f.spec
    # at_points: exact descriptors at arbitrary points (not the nearest column)
    from convcorr.numerics.sift import sift_at_points

    xy = np.array([[20.3, 30.7], [50.0, 41.0]])
    np.testing.assert_array_equal(f.at_points(img, xy), sift_at_points(img, xy, 6.0))


def test_bad_specs_name_the_input():
    for spec, msg in [("foo", "unknown kind"), ("sift:step=x", "step"), ("sift:bogus=1", "bogus"),
                      ("", "spec string"), ("alexnet:conv9", "conv9"), ("nosuchnet:conv1", "nosuchnet")]:
        with pytest.raises(ValueError, match=msg):
            get_features(spec)


def test_objects_pass_through_and_registry():
    f = get_features("sift")
    assert get_features(f) is f
    with pytest.raises(ValueError, match="options"):
        get_features(f, step=2)
    assert {"sift", "backbone"} <= set(DENSE_FEATURES)


def test_default_at_points_is_the_nearest_column():
    class Toy(DenseFeatures):
        spec = "toy"

        def compute(self, image):
            h, w = 3, 4
            f = np.arange(h * w, dtype=np.float32).reshape(h, w, 1)
            return FeatureGrid(f, RFGeometry(8, 8, 4.0), image.shape[:2], self.spec)

    img = np.zeros((24, 32, 3), np.uint8)
    # (13, 3) -> column (1, 0) = 1; (-50, 100) clipped -> column (0, 2) = 8
    np.testing.assert_array_equal(Toy().at_points(img, np.array([[13.0, 3.0], [-50.0, 100.0]]))[:, 0], [1, 8])


def test_backbone_layer_and_hypercolumn(shared):
    from convcorr.backbones import get_backbone

    bb = get_backbone("alexnet")
    img = np.random.default_rng(1).integers(0, 255, (180, 250, 3), dtype=np.uint8)
    f4 = get_features("alexnet:conv4")
    g4 = f4(img)
    ref = bb.extract([img], ["conv4"], size=None)["conv4"][0]
    np.testing.assert_allclose(g4.features, ref)
    assert g4.geometry == bb.rf("conv4") and g4.image_hw == (180, 250)
    # a backbone object works as well as a name
    assert get_features("conv4", backbone=bb).spec == "alexnet:conv4"
    # hypercolumn conv2+conv4: on conv2's (stride 8) grid, each part L2-normalised; conv2 part = conv2 itself
    hc = get_features("alexnet:conv2+conv4")(img)
    g2 = bb.extract([img], ["conv2"], size=None)["conv2"][0]
    assert hc.features.shape == g2.shape[:2] + (256 + 384,)
    assert hc.geometry == RFGeometry(bb.rf("conv4").size, bb.rf("conv2").stride, bb.rf("conv2").offset)
    n2 = g2 / np.maximum(np.linalg.norm(g2, axis=-1, keepdims=True), 1e-12)
    np.testing.assert_allclose(hc.features[..., :256], n2, atol=1e-5)
    # conv4 part at a conv2 column centre that is also a conv4 column centre equals that conv4 column
    g = bb.rf("conv4")
    c2 = bb.rf("conv2")
    col2 = int(round((g.offset + g.stride * 2 - c2.offset) / c2.stride))   # conv4 column 2 on the conv2 grid
    n4 = ref / np.maximum(np.linalg.norm(ref, axis=-1, keepdims=True), 1e-12)
    np.testing.assert_allclose(hc.features[col2, col2, 256:], n4[2, 2], atol=1e-5)
    # batches of different sizes
    grids = f4.compute_many([img, img[:150], img])
    assert [x.image_hw for x in grids] == [(180, 250), (150, 250), (180, 250)]
