import numpy as np
import pytest

from convcorr.flow import bp_flow, data_cost, distance_transform_sq, dt_sq_1d, flow_energy, l2_normalize


def brute_dt2(f, w):
    ly, lx = f.shape
    ys, xs = np.mgrid[0:ly, 0:lx]
    return np.array([[(f + w * ((ys - i) ** 2 + (xs - j) ** 2)).min() for j in range(lx)] for i in range(ly)])


def test_dt_1d_by_hand():
    # f = [0, 5, 5, 5], w = 1: out[q] = min(q^2, 5) -> [0, 1, 4, 5]
    np.testing.assert_allclose(dt_sq_1d(np.array([0.0, 5, 5, 5]), 1.0), [0, 1, 4, 5])
    np.testing.assert_allclose(dt_sq_1d(np.array([3.0, 1, 2]), 0.0), [1, 1, 1])


@pytest.mark.parametrize("w", [0.0, 0.003, 0.5, 2.0, 10.0])
def test_dt_2d_equals_brute_force(w):
    rng = np.random.default_rng(int(w * 1000))
    f = rng.random((3, 9, 7)) * 4
    f[0, 2, 3] = 1e9  # forbidden label
    out = distance_transform_sq(f, w)
    for b in range(3):
        np.testing.assert_allclose(out[b], brute_dt2(f[b], w), rtol=1e-9, atol=1e-9)


def test_data_cost_by_hand():
    fs = np.zeros((1, 2, 1))
    ft = np.array([[[1.0], [3.0]]])  # target grid 1x2
    vol = data_cost(fs, ft, radius=1, outside_cost=99)
    # source (0,0): d=(0,0) -> 1, d=(1,0) -> 9, d=(-1,0) outside; any dy != 0 outside
    assert vol.shape == (1, 2, 3, 3)
    assert vol[0, 0, 1, 1] == 1 and vol[0, 0, 1, 2] == 9 and vol[0, 0, 1, 0] == 99 and vol[0, 0, 0, 1] == 99
    assert vol[0, 1, 1, 0] == 1 and vol[0, 1, 1, 1] == 9


def shifted_pair(h, w, c, dx, dy, seed=0):
    rng = np.random.default_rng(seed)
    ft = rng.standard_normal((h, w, c))
    fs = rng.standard_normal((h, w, c))
    ys, xs = np.mgrid[0:h, 0:w]
    ok = (ys + dy >= 0) & (ys + dy < h) & (xs + dx >= 0) & (xs + dx < w)
    fs[ok] = ft[(ys + dy)[ok], (xs + dx)[ok]]
    return fs, ft, ok


def test_recovers_known_shift():
    fs, ft, ok = shifted_pair(12, 14, 16, dx=3, dy=-2)
    res = bp_flow(fs, ft, beta=3e-3, radius=5, n_iter=15)
    assert np.all(res.flow[ok] == [3, -2])


def test_recovers_two_region_flow_mostly():
    rng = np.random.default_rng(1)
    h, w, c = 12, 16, 24
    ft = rng.standard_normal((h, w, c))
    fs = rng.standard_normal((h, w, c))
    truth = np.zeros((h, w, 2), int)
    truth[:, :8] = (2, 1)
    truth[:, 8:] = (-1, 0)
    ys, xs = np.mgrid[0:h, 0:w]
    ty, tx = ys + truth[..., 1], xs + truth[..., 0]
    ok = (ty >= 0) & (ty < h) & (tx >= 0) & (tx < w)
    fs[ok] = ft[ty[ok], tx[ok]]
    res = bp_flow(fs, ft, beta=3e-3, radius=4, n_iter=15)
    assert np.mean(np.all(res.flow[ok] == truth[ok], axis=-1)) > 0.95


def test_beta_zero_gives_unary_argmin_and_monotone_energy():
    rng = np.random.default_rng(2)
    fs, ft = rng.standard_normal((6, 7, 8)), rng.standard_normal((6, 7, 8))
    res = bp_flow(fs, ft, beta=0.0, radius=3, n_iter=6, tol_iters=10)
    vol = data_cost(l2_normalize(fs), l2_normalize(ft), 3)
    idx = vol.reshape(6, 7, -1).argmin(-1)
    dy, dx = np.divmod(idx, 7)
    np.testing.assert_array_equal(res.flow, np.stack([dx - 3, dy - 3], -1))
    assert all(b <= a + 1e-9 for a, b in zip(res.energies, res.energies[1:]))
    assert res.energy == pytest.approx(vol.reshape(6, 7, -1).min(-1).sum())


def test_returned_energy_consistent_and_better_than_baselines():
    rng = np.random.default_rng(3)
    fs, ft = rng.standard_normal((8, 8, 8)), rng.standard_normal((8, 8, 8))
    beta = 0.05
    res = bp_flow(fs, ft, beta=beta, radius=3, n_iter=10)
    assert res.energy == pytest.approx(flow_energy(fs, ft, res.flow, beta))
    assert res.energy == pytest.approx(res.data_energy + res.smooth_energy)
    assert res.energy <= flow_energy(fs, ft, np.zeros((8, 8, 2), int), beta) + 1e-9
    rand = rng.integers(-2, 3, (8, 8, 2))
    assert res.energy <= flow_energy(fs, ft, rand, beta) + 1e-9


def test_bad_shapes():
    with pytest.raises(ValueError):
        bp_flow(np.zeros((4, 4)), np.zeros((4, 4, 2)))
    with pytest.raises(ValueError):
        data_cost(np.zeros((2, 2, 3)), np.zeros((2, 2, 4)), 1)
