import numpy as np
import pytest

from convcorr.evaluation.stats import (Estimate, bootstrap_ci, bootstrap_weights, paired_difference, type_mean, verdict,
                                       weighted_mean)


def test_weights_resample_whole_units():
    groups = np.array(["a", "a", "b", "c", "c", "c"])
    W = bootstrap_weights(groups, n_boot=200, seed=1)
    assert W.shape == (200, 6)
    # rows of one unit always share a weight; 3 units drawn per replicate
    assert np.all(W[:, 0] == W[:, 1]) and np.all(W[:, 3] == W[:, 5])
    assert np.all(W[:, [0, 2, 3]].sum(1) == 3)
    assert np.array_equal(W, bootstrap_weights(groups, n_boot=200, seed=1))  # deterministic


def test_weights_within_strata():
    groups = np.array([1, 2, 3, 4, 5])
    strata = np.array(["x", "x", "y", "y", "y"])
    W = bootstrap_weights(groups, 100, 0, strata)
    assert np.all(W[:, :2].sum(1) == 2) and np.all(W[:, 2:].sum(1) == 3)
    with pytest.raises(ValueError, match="more than one stratum"):
        bootstrap_weights(np.array([1, 1]), 10, 0, np.array(["x", "y"]))


def test_two_units_by_hand():
    # units with means 0 and 1: replicate means are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4
    est = bootstrap_ci([0.0, 0.0, 1.0], ["a", "a", "b"], n_boot=4000, seed=0)
    assert est.value == pytest.approx(1 / 3)
    assert (est.lo, est.hi) == (0.0, 1.0)
    assert (est.n, est.n_units) == (3, 2)
    W = bootstrap_weights(["a", "b"], 4000, 0)
    reps = weighted_mean(np.array([0.0, 1.0]), W)
    assert np.mean(reps == 0.5) == pytest.approx(0.5, abs=0.03)
    assert np.mean(reps == 0.0) == pytest.approx(0.25, abs=0.03)


def test_single_unit_is_degenerate():
    est = bootstrap_ci([0.2, 0.4, 0.9], [7, 7, 7], n_boot=50)
    assert est.value == est.lo == est.hi == pytest.approx(0.5)
    assert est.n_units == 1


def test_large_sample_matches_normal_approximation():
    rng = np.random.default_rng(3)
    x = rng.normal(2.0, 1.5, 4000)
    est = bootstrap_ci(x, np.arange(len(x)), n_boot=2000, seed=5)
    half = 1.959964 * x.std(ddof=1) / np.sqrt(len(x))
    assert est.value == pytest.approx(x.mean())
    assert est.hi - est.lo == pytest.approx(2 * half, rel=0.1)
    assert (est.lo + est.hi) / 2 == pytest.approx(x.mean(), abs=0.2 * half)


def test_clusters_widen_the_interval_like_the_number_of_units():
    # 200 units of 10 identical rows: the effective sample size is 200, not 2000
    rng = np.random.default_rng(0)
    u = rng.normal(0, 1, 200)
    x, g = np.repeat(u, 10), np.repeat(np.arange(200), 10)
    est = bootstrap_ci(x, g, n_boot=2000, seed=1)
    half = 1.959964 * u.std(ddof=1) / np.sqrt(200)
    assert est.hi - est.lo == pytest.approx(2 * half, rel=0.12)


def test_type_mean_by_hand():
    types = np.array(["eye", "eye", "eye", "nose"])
    v = np.array([1.0, 1.0, 0.0, 0.0])
    stat = type_mean(types)
    # eye 2/3, nose 0 -> 1/3 (a point mean would give 1/2)
    assert stat(v, np.ones((1, 4)))[0] == pytest.approx(1 / 3)
    # a replicate without any nose row averages over the eye type only
    assert stat(v, np.array([[1.0, 1.0, 1.0, 0.0]]))[0] == pytest.approx(2 / 3)
    assert stat(v, np.array([[2.0, 0.0, 1.0, 1.0]]))[0] == pytest.approx((2 / 3 + 0) / 2)


def test_type_mean_within_outer_groups_by_hand():
    # category a: types x (1, 0) and y (1) -> (0.5 + 1) / 2 = 0.75; category b: one type z (0) -> 0; mean 0.375
    types = np.array(["a/x", "a/x", "a/y", "b/z"])
    cats = np.array(["a", "a", "a", "b"])
    v = np.array([1.0, 0.0, 1.0, 0.0])
    assert type_mean(types, cats)(v, np.ones((1, 4)))[0] == pytest.approx(0.375)
    assert type_mean(types)(v, np.ones((1, 4)))[0] == pytest.approx(0.5)  # pooled over the 3 types
    with pytest.raises(ValueError, match="more than one outer"):
        type_mean(np.array(["x", "x"]), np.array(["a", "b"]))


def test_paired_difference_cancels_shared_noise():
    rng = np.random.default_rng(1)
    b = rng.uniform(0, 1, 300)
    a = b + 0.03
    d = paired_difference(a, b, np.arange(300), n_boot=500)
    assert (d.value, d.lo, d.hi) == pytest.approx((0.03, 0.03, 0.03))
    assert not d.spans_zero
    # unpaired intervals of each would overlap widely
    ea, eb = bootstrap_ci(a, np.arange(300)), bootstrap_ci(b, np.arange(300))
    assert ea.lo < eb.hi


def test_paired_difference_not_resolved_and_verdict():
    a = np.array([1.0, 0.0, 1.0, 0.0])
    b = np.array([0.0, 1.0, 0.0, 1.0])
    d = paired_difference(a, b, [0, 1, 2, 3], n_boot=1000)
    assert d.value == 0.0 and d.spans_zero
    assert "not resolved" in verdict(d, "conv4", "SIFT")
    r = Estimate(0.2, 0.1, 0.3, 10, 5)
    assert "conv4 is higher" in verdict(r, "conv4", "SIFT")
    assert r.to_dict() == {"value": 0.2, "ci95": [0.1, 0.3], "n_points": 10, "n_units": 5}
    assert r.fmt(2) == "0.20 [0.10, 0.30]"


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="groups"):
        bootstrap_ci([1.0, 2.0], [1])
    with pytest.raises(ValueError, match="paired_difference"):
        paired_difference([1.0], [1.0, 2.0], [0])
    assert np.isnan(bootstrap_ci([], []).value)
