import numpy as np
import pytest

from convcorr.evaluation.pck import correct, pck, pck_curve


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

    from convcorr.evaluation.pck import correct, pck

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


# ------------------------------------------------------------------------------------------- protocol engine
from convcorr.evaluation.pck import pck_vs_alpha  # noqa: E402
from convcorr.evaluation.pck import PROTOCOLS, PairKeypoints, PCKProtocol, evaluate, get_protocol


def _rec(pid="p", cat="c", names=("a", "b"), pred=((0, 0), (0, 0)), gt=((0, 0), (0, 0)), sv=(1, 1), tv=(1, 1),
         sbox=(0, 0, 100, 100), tbox=(0, 0, 100, 100), shw=(200, 200), thw=(200, 200), scale=None):
    return PairKeypoints(pid, cat, names, np.array(pred, float), np.array(gt, float), sv, tv, sbox, tbox, shw, thw,
                         eval_source_scale=scale, eval_target_scale=scale)


def _p(**kw):
    return PCKProtocol(**{"alphas": (0.1,), "averages": ("point",), **kw})


def test_threshold_switch_target_source_bbox_image():
    # error 8 px; target box 100 (L = 100 -> 8 <= 10 correct), source box 50 (8 > 5 wrong),
    # target image 60 x 70 (L = 70 -> 8 > 7 wrong), source image 300 x 90 (L = 300 -> correct)
    r = _rec(pred=((8, 0), (8, 0)), tbox=(0, 0, 100, 40), sbox=(0, 0, 20, 50), thw=(60, 70), shw=(300, 90))
    assert evaluate([r], _p(threshold="target-bbox")).overall["point"][0.1] == 1.0
    assert evaluate([r], _p(threshold="source-bbox")).overall["point"][0.1] == 0.0
    assert evaluate([r], _p(threshold="target-image")).overall["point"][0.1] == 0.0
    assert evaluate([r], _p(threshold="source-image")).overall["point"][0.1] == 1.0


def test_size_switch_max_vs_diagonal():
    # box 60 x 80: max side 80 (alpha 0.1 -> 8 px), diagonal 100 (-> 10 px); error 9 px
    r = _rec(pred=((9, 0), (9, 0)), tbox=(0, 0, 60, 80))
    assert evaluate([r], _p(size="max")).overall["point"][0.1] == 0.0
    assert evaluate([r], _p(size="diagonal")).overall["point"][0.1] == 1.0


def test_alpha_list_and_inclusive_threshold():
    # errors 5 and 10 px of L = 100: alpha 0.05 -> 1/2, 0.1 -> 2/2 (<= is inclusive), 0.025 -> 0
    r = _rec(pred=((5, 0), (0, 10)))
    res = evaluate([r], _p(alphas=(0.1, 0.05, 0.025)))
    assert res.overall["point"] == {0.1: 1.0, 0.05: 0.5, 0.025: 0.0}
    assert res.protocol["alphas"] == [0.1, 0.05, 0.025]


def test_resolution_original_vs_resized_anisotropic():
    # target 100 x 200 (H x W) image resized to 100 x 100: x is halved. Error 15 px in x in the original with
    # L = max image side 200 (alpha 0.1 -> 20 px: correct); resized: error 7.5 px, L = 100 -> 10 px: still
    # correct. An error of 15 px in y stays 15 px, but L shrinks to 100 -> wrong only when resized.
    r = _rec(pred=((15, 0), (0, 15)), gt=((0, 0), (0, 0)), thw=(100, 200), shw=(100, 200), scale=(0.5, 1.0))
    orig = evaluate([r], _p(threshold="target-image", resolution="original"))
    res = evaluate([r], _p(threshold="target-image", resolution="resized"))
    assert orig.overall["point"][0.1] == 1.0
    assert res.overall["point"][0.1] == 0.5
    # the box threshold scales the same way: box 100 x 100 -> 50 wide x 100 high in the resized frame
    assert evaluate([r], _p(threshold="target-bbox", resolution="resized")).overall["point"][0.1] == 0.5
    # an isotropic resize changes nothing
    r2 = _rec(pred=((15, 0), (0, 15)), thw=(100, 200), shw=(100, 200), scale=(0.5, 0.5))
    assert evaluate([r2], _p(threshold="target-image", resolution="resized")).overall["point"][0.1] == 1.0


def test_averages_point_pair_type_by_hand():
    # pair 1: 3 points of types a, a, b -> a ok, a ok, b wrong; pair 2: 1 point of type b, ok.
    # point: 3/4; pair: mean(2/3, 1) = 5/6; type: a = 2/2, b = 1/2 -> 3/4 ... make types differ from points:
    r1 = _rec("p1", names=("a", "a2", "b"), pred=((0, 0), (0, 0), (50, 0)), gt=np.zeros((3, 2)), sv=(1, 1, 1),
              tv=(1, 1, 1))
    r2 = _rec("p2", names=("a", "a2", "b"), pred=((0, 0), (0, 0), (0, 0)), gt=np.zeros((3, 2)), sv=(0, 0, 1),
              tv=(1, 1, 1))
    res = evaluate([r1, r2], _p(averages=("point", "pair", "type")))
    assert res.overall["point"][0.1] == pytest.approx(3 / 4)
    assert res.overall["pair"][0.1] == pytest.approx((2 / 3 + 1) / 2)
    assert res.overall["type"][0.1] == pytest.approx((1 + 1 + 0.5) / 3)  # a: 1/1, a2: 1/1, b: 1/2
    assert res.counts["points"] == 4 and res.counts["pairs"] == 2 and res.counts["types"] == 3
    assert [p["n_points"] for p in res.per_pair] == [3, 1]
    assert res.per_pair[0]["pck"][0.1] == pytest.approx(2 / 3)


def test_overall_pooled_vs_category_mean():
    # category x: 1 pair, 1 point correct; category y: 1 pair, 3 points, 0 correct
    rx = _rec("x1", cat="x", names=("a",), pred=((0, 0),), gt=((0, 0),), sv=(1,), tv=(1,))
    ry = _rec("y1", cat="y", names=("a", "b", "c"), pred=((50, 0),) * 3, gt=np.zeros((3, 2)), sv=(1, 1, 1),
              tv=(1, 1, 1))
    pooled = evaluate([rx, ry], _p(overall="pooled"))
    cat = evaluate([rx, ry], _p(overall="category"))
    assert pooled.overall["point"][0.1] == pytest.approx(1 / 4)
    assert cat.overall["point"][0.1] == pytest.approx((1 + 0) / 2)
    assert pooled.per_category == cat.per_category == {"x": {"point": {0.1: 1.0}}, "y": {"point": {0.1: 0.0}}}
    assert pooled.counts["per_category"]["y"]["points"] == 3
    # types are keyed by (category, name): "a" of x and "a" of y are different types
    t = evaluate([rx, ry], _p(averages=("type",)))
    assert t.overall["type"][0.1] == pytest.approx(1 / 4)
    assert t.counts["types"] == 4


def test_visible_in_both_switch():
    # 3 target-visible points; the 2nd is invisible in the source (its prediction is NaN); the 3rd is wrong
    r = _rec(names=("a", "b", "c"), pred=((0, 0), (np.nan, np.nan), (50, 0)), gt=np.zeros((3, 2)), sv=(1, 0, 1),
             tv=(1, 1, 1))
    assert evaluate([r], _p(visible_in_both=True)).overall["point"][0.1] == pytest.approx(1 / 2)
    assert evaluate([r], _p(visible_in_both=False)).overall["point"][0.1] == pytest.approx(1 / 3)
    # a point invisible in the target never counts
    r2 = _rec(names=("a", "b"), pred=((0, 0), (0, 0)), gt=((0, 0), (np.nan, np.nan)), sv=(1, 1), tv=(1, 0))
    assert evaluate([r2], _p(visible_in_both=False)).counts["points"] == 1


def test_no_points_gives_nan_and_pair_without_points_is_skipped_in_pair_average():
    empty = _rec("e", names=("a",), pred=((0, 0),), gt=((0, 0),), sv=(0,), tv=(1,))
    assert np.isnan(evaluate([empty], _p()).overall["point"][0.1])
    good = _rec("g", names=("a",), pred=((0, 0),), gt=((0, 0),), sv=(1,), tv=(1,))
    assert evaluate([empty, good], _p(averages=("pair",))).overall["pair"][0.1] == 1.0


def test_presets_and_overrides():
    assert PROTOCOLS["paper"].alphas == (0.1, 0.05, 0.025) and PROTOCOLS["paper"].averages == ("type",)
    d = PROTOCOLS["dift-spair"]
    assert (d.threshold, d.alphas, d.averages, d.resolution) == ("target-bbox", (0.1,), ("pair", "point"),
                                                                  "original")
    assert PROTOCOLS["hpf-pfpascal"].threshold == "target-image"
    assert PROTOCOLS["cats-pfwillow"].alphas == (0.05, 0.1, 0.15)
    for p in PROTOCOLS.values():
        assert p.reference
    q = get_protocol("dift-spair", alphas=(0.05,))
    assert q.alphas == (0.05,) and q.name == "dift-spair+custom" and q.threshold == "target-bbox"
    c = get_protocol({"name": "paper", "averages": ["point"]})
    assert c.averages == ("point",) and c.alphas == (0.1, 0.05, 0.025) and c.name == "paper+custom"
    assert get_protocol({"name": "mine", "threshold": "source-image"}).threshold == "source-image"
    with pytest.raises(ValueError, match="unknown fields"):
        get_protocol({"name": "paper", "alpha": 0.1})
    with pytest.raises(ValueError, match="threshold"):
        PCKProtocol(threshold="bbox")
    with pytest.raises(ValueError, match="averages"):
        PCKProtocol(averages=("median",))
    with pytest.raises(ValueError, match="unknown PCK protocol"):
        get_protocol("nope")


def test_pck_vs_alpha_curve_matches_evaluate():
    r = _rec(names=("a", "b", "c", "d"), pred=((1, 0), (3, 0), (6, 0), (12, 0)), gt=np.zeros((4, 2)),
             sv=(1, 1, 1, 1), tv=(1, 1, 1, 1))
    res = evaluate([r], _p(alphas=(0.02, 0.05, 0.1)))
    curve = pck_vs_alpha(res.per_pair, [0.02, 0.05, 0.1, 0.2])
    np.testing.assert_allclose(curve, [0.25, 0.5, 0.75, 1.0])
    assert curve[2] == res.overall["point"][0.1]
