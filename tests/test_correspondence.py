import numpy as np
import pytest

import convcorr
from convcorr.core.geometry import scale_points
from convcorr.correspondence import working_size


def test_public_exports():
    for name in ("correspond", "get_backbone", "RFGeometry", "pck", "load_dataset", "get_features", "get_matcher",
                 "FeatureGrid", "Correspondence", "load_spair", "embedded_instances", "PCKProtocol", "get_protocol",
                 "evaluate", "load_pf_willow_pairs"):
        assert getattr(convcorr, name) is not None, name
    assert callable(convcorr.correspond)
    with pytest.raises(AttributeError):
        convcorr.no_such_name
    from importlib.resources import files

    assert files("convcorr").joinpath("py.typed").is_file()


def test_working_size():
    assert working_size((100, 400), 256) == (64, 256)
    assert working_size((400, 100), 256) == (256, 64)
    assert working_size((50, 1000), 256, min_side=64) == (64, 1280)   # very wide: the short side is kept >= 64
    assert working_size((123, 45), None) == (123, 45)


@pytest.fixture(scope="module")
def photo(shared):
    from convcorr.core.images import load_image

    return load_image(shared / "images" / "cat.bmp")[60:180, 150:310]    # 120 x 160


def test_shifted_crop_without_resizing(photo):
    a, b = photo, photo[:, 16:]                       # B is A shifted 16 px left: A pixel p is B pixel p - (16, 0)
    c = convcorr.correspond(a, b, features="sift:step=4,bin=4", matcher="nn", max_side=None)
    assert c.forward.shape == (120, 160, 2) and c.backward.shape == (120, 144, 2)
    pts = np.stack(np.meshgrid(np.arange(40.0, 140, 10), np.arange(30.0, 95, 10)), -1).reshape(-1, 2)
    err = np.linalg.norm(c.transfer(pts) - (pts - [16, 0]), axis=1)
    assert np.median(err) < 0.5 and np.mean(err < 2) > 0.8
    back = np.linalg.norm(c.transfer_back(pts - [16, 0]) - pts, axis=1)
    assert np.median(back) < 0.5
    # warping B onto A reproduces A where B has the content
    w = c.warp(b)
    diff = np.abs(w[30:90, 50:130].astype(int) - a[30:90, 50:130].astype(int))
    assert np.median(diff) <= 2


def test_resizing_maps_exactly_to_original_pixels(photo):
    from convcorr.core.images import resize_image

    b = resize_image(photo, (240, 320))                # B = A at twice the size: p -> (p + 0.5) * 2 - 0.5
    c = convcorr.correspond(photo, b, features="sift:step=4,bin=4", matcher="nn", max_side=200, both=False)
    assert c.work_a_hw == c.work_b_hw == (150, 200)
    pts = np.stack(np.meshgrid(np.arange(30.0, 131, 20), np.arange(25.0, 96, 14)), -1).reshape(-1, 2)
    want = scale_points(pts, (120, 160), (240, 320))
    err = np.linalg.norm(c.transfer(pts) - want, axis=1)
    assert np.median(err) < 1.0
    back = np.linalg.norm(c.transfer_back(want) - pts, axis=1)  # exact inversion (both=False)
    assert np.median(back) < 0.5
    assert c.backward.shape == (240, 320, 2)
    assert c.warp(b).shape == photo.shape
    with pytest.raises(ValueError, match="B's size"):
        c.warp(photo)


def test_bad_inputs_name_the_argument(photo):
    with pytest.raises(ValueError, match="img_b"):
        convcorr.correspond(photo, np.zeros((4, 5, 7)), features="sift", matcher="nn")
    with pytest.raises(ValueError, match="unknown matcher"):
        convcorr.correspond(photo, photo, features="sift", matcher="hungarian")
    with pytest.raises(convcorr.DataError, match="nope.png"):
        convcorr.correspond("nope.png", photo, features="sift", matcher="nn")
