import numpy as np

from convcorr.backbones import get_backbone
from convcorr.features import PixelConvFeatures, conv_features_at, sift_features_at
from convcorr.sift import sift_at_points


def test_conv_features_at_nearest_column():
    bb = get_backbone("alexnet", pretrained=False, device="cpu")
    img = (np.random.default_rng(0).random((227, 227, 3)) * 255).astype(np.uint8)
    xy = np.array([[17.0, 17.0], [40.0, 100.0]])
    f = conv_features_at(bb, [img], [xy], ["conv3"])["conv3"]
    a = bb.extract([img], ["conv3"], size=None)["conv3"][0]
    # (17, 17) is column (0, 0); (40, 100): (40 - 17) / 16 = 1.44 -> 1, (100 - 17) / 16 = 5.19 -> 5
    np.testing.assert_allclose(f[0], a[0, 0])
    np.testing.assert_allclose(f[1], a[5, 1])


def test_sift_features_match_sift_at_points():
    img = (np.random.default_rng(1).random((64, 64, 3)) * 255).astype(np.uint8)
    xy = np.array([[30.0, 31.0]])
    np.testing.assert_allclose(sift_features_at(img, xy, 20), sift_at_points(img, xy, 10))


def test_pixel_conv_features_exact_on_column_centres():
    bb = get_backbone("alexnet", pretrained=False, device="cpu")
    img = (np.random.default_rng(2).random((99, 99, 3)) * 255).astype(np.uint8)
    pix = PixelConvFeatures(bb, img, ["conv1", "conv2"])
    a = bb.extract([img], ["conv1", "conv2"], size=None)
    # at an unshifted column centre the 1-pixel-stride feature equals the ordinary column
    np.testing.assert_allclose(pix.at("conv1", np.array([[5 + 4 * 3, 5 + 4 * 2]]))[0], a["conv1"][0, 2, 3], rtol=1e-5)
    np.testing.assert_allclose(pix.at("conv2", np.array([[9 + 8 * 2, 9]]))[0], a["conv2"][0, 0, 2], rtol=1e-5)
    # one pixel right of a centre: the column of the image shifted left by one pixel
    shifted = np.zeros_like(img)
    shifted[:, :-1] = img[:, 1:]
    b = bb.extract([shifted], ["conv1"], size=None)["conv1"][0]
    np.testing.assert_allclose(pix.at("conv1", np.array([[5 + 4 * 3 + 1, 5]]))[0], b[0, 3], rtol=1e-5)
