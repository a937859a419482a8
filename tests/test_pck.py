import numpy as np
import pytest

from convcorr.pck import correct, normaliser, pck, pck_curve, per_type_pck


def test_normaliser_bbox_and_image():
    assert normaliser(bbox=(10, 20, 110, 70)) == 100.0  # w=100, h=50
    assert normaliser(bbox=(0, 0, 30, 80)) == 80.0
    assert normaliser(image_shape=(480, 640, 3), norm="image") == 640.0
    with pytest.raises(ValueError):
        normaliser(bbox=(0, 0, 0, 10))
    with pytest.raises(ValueError):
        normaliser(bbox=(0, 0, 1, 1), norm="diag")


def test_correct_threshold_inclusive():
    gt = np.zeros((3, 2))
    pred = np.array([[3.0, 4.0], [6.0, 8.0], [np.nan, 0.0]])  # distances 5, 10, nan
    assert correct(pred, gt, 100, 0.05).tolist() == [True, False, False]
    assert correct(pred, gt, 100, 0.1).tolist() == [True, True, False]


def test_pck_type_vs_point_average_by_hand():
    # type a: 3 points, 3 correct; type b: 1 point, wrong.
    gt = np.zeros((4, 2))
    pred = np.array([[1, 0], [0, 1], [1, 1], [50, 0]], float)
    types = ["a", "a", "a", "b"]
    assert pck(pred, gt, 100, 0.1, average="point") == pytest.approx(0.75)
    assert pck(pred, gt, 100, 0.1, types=types, average="type") == pytest.approx(0.5)  # (1 + 0) / 2
    assert per_type_pck(pred, gt, 100, 0.1, types) == {"a": 1.0, "b": 0.0}


def test_pck_per_point_normaliser():
    gt = np.zeros((2, 2))
    pred = np.array([[8.0, 0.0], [8.0, 0.0]])
    # same error, different box sizes: 8 <= 0.1*100 but 8 > 0.1*50
    assert pck(pred, gt, np.array([100.0, 50.0]), 0.1, average="point") == 0.5


def test_pck_curve_paper_alphas_monotone():
    rng = np.random.default_rng(0)
    gt = rng.uniform(0, 100, (200, 2))
    pred = gt + rng.normal(0, 5, gt.shape)
    types = rng.integers(0, 5, 200)
    curve = pck_curve(pred, gt, 100.0, types=types)
    assert list(curve) == [0.1, 0.05, 0.025]
    assert curve[0.1] >= curve[0.05] >= curve[0.025]


def test_pck_errors():
    with pytest.raises(ValueError):
        pck(np.zeros((2, 2)), np.zeros((3, 2)), 1.0)
    with pytest.raises(ValueError):
        pck(np.zeros((2, 2)), np.zeros((2, 2)), 1.0, average="type")  # no types
    assert np.isnan(pck(np.zeros((0, 2)), np.zeros((0, 2)), 1.0, average="point"))


def test_pck_input_validation_names_the_argument():
    import numpy as np
    import pytest

    from convcorr.pck import correct, normaliser, pck

    p = np.zeros((2, 2))
    for bad in (0.0, -1.0, 1.5, float("nan"), "x"):
        with pytest.raises(ValueError, match="alpha"):
            pck(p, p, 10.0, bad, average="point")
    assert pck(p, p, 10.0, 1.0, average="point") == 1.0  # alpha = 1 is allowed
    for bad in (0.0, -3.0, float("inf"), float("nan"), [5.0, 0.0]):
        with pytest.raises(ValueError, match="L: PCK normaliser"):
            correct(p, p, bad, 0.1)
    with pytest.raises(ValueError, match="L: PCK normaliser must be a scalar or one value per point"):
        correct(p, p, [1.0, 2.0, 3.0], 0.1)
    with pytest.raises(ValueError, match="bbox: non-finite"):
        normaliser(bbox=(0, 0, float("nan"), 5))
    with pytest.raises(ValueError, match="positive"):
        normaliser(image_shape=(0, 0), norm="image")
