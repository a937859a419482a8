import numpy as np
import pytest

from convcorr.core.arrays import l2_normalize
from convcorr.numerics.mrf.common import NORM_EPS
from convcorr.numerics.mrf.kernels import _dt1d, _dt_buffers, data_cost, distance_transform_sq, flow_energy
from convcorr.numerics.mrf.solve import bp_flow


def dt_sq_1d(f: np.ndarray, weight: float) -> np.ndarray:
    """The numba 1-D squared distance transform ``out[q] = min_p f[p] + weight * (q - p)^2`` on one (n,) line."""
    f = np.ascontiguousarray(f, dtype=np.float64)
    out = np.empty_like(f)
    v, z, g, recip, _, _ = _dt_buffers(max(len(f), 1))
    _dt1d(f, float(weight), out, v, z, 0, g, recip)
    return out


def brute_dt2(f, w):
    ly, lx = f.shape
    ys, xs = np.mgrid[0:ly, 0:lx]
    return np.array([[(f + w * ((ys - i) ** 2 + (xs - j) ** 2)).min() for j in range(lx)] for i in range(ly)])


def test_dt_1d_by_hand():
    # f = [0, 5, 5, 5], w = 1: out[q] = min(q^2, 5) -> [0, 1, 4, 5]
    np.testing.assert_allclose(dt_sq_1d(np.array([0.0, 5, 5, 5]), 1.0), [0, 1, 4, 5])
    np.testing.assert_allclose(dt_sq_1d(np.array([3.0, 1, 2]), 0.0), [1, 1, 1])


@pytest.mark.parametrize("w", [0.0, 0.003, 0.5, 2.0, 10.0])
def test_dt_1d_equals_brute_force(w):
    rng = np.random.default_rng(7)
    for n in [1, 2, 5, 17]:
        f = rng.random(n) * 4
        f[rng.random(n) < 0.3] = np.inf
        q = np.arange(n)
        brute = np.min(f[None, :] + w * (q[:, None] - q[None, :]) ** 2, axis=1) if w > 0 else np.full(n, f.min())
        np.testing.assert_allclose(dt_sq_1d(f, w), brute, rtol=1e-12)


@pytest.mark.parametrize("shift", [-4, -1, 0, 2, 9])
def test_dt_1d_shifted_queries(shift):
    # out[q] = min_p f[p] + w (q + shift - p)^2 (used by coarse-to-fine messages)
    rng = np.random.default_rng(shift + 10)
    f, w = rng.random(11) * 3, 0.7
    v, z, g, recip, _, _ = _dt_buffers(11)
    out = np.empty(11)
    _dt1d(f, w, out, v, z, shift, g, recip)
    q = np.arange(11)
    np.testing.assert_allclose(out, np.min(f[None, :] + w * (q[:, None] + shift - q[None, :]) ** 2, axis=1))


@pytest.mark.parametrize("w", [0.0, 0.003, 0.5, 2.0, 10.0])
def test_dt_2d_equals_brute_force(w):
    rng = np.random.default_rng(int(w * 1000))
    f = rng.random((4, 9, 7)) * 4
    f[0, 2, 3] = 1e9  # large finite (forbidden) label
    f[1, :4] = np.inf  # infinite entries, whole rows and single ones
    f[1, 6, 2] = np.inf
    f[2, :, :5] = np.inf
    out = distance_transform_sq(f, w)
    for b in range(4):
        np.testing.assert_allclose(out[b], brute_dt2(f[b], w), rtol=1e-9, atol=1e-9)
    assert np.isinf(distance_transform_sq(np.full((3, 3), np.inf), w)).all()


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


@pytest.mark.parametrize("schedule", ["checkerboard", "sync"])
def test_recovers_known_shift(schedule):
    fs, ft, ok = shifted_pair(12, 14, 16, dx=3, dy=-2)
    res = bp_flow(fs, ft, beta=3e-3, radius=5, n_iter=15, schedule=schedule)
    assert np.all(res.flow[ok] == [3, -2])


def test_recovers_shift_with_default_full_radius_and_noise():
    fs, ft, ok = shifted_pair(10, 10, 32, dx=-4, dy=5, seed=4)
    fs = fs + 0.3 * np.random.default_rng(5).standard_normal(fs.shape)
    res = bp_flow(fs, ft, damping=0.5)  # radius defaults to 9: the whole target grid
    assert np.all(res.flow[ok] == [-4, 5])
    assert np.abs(res.flow).max() <= 9


@pytest.mark.parametrize("backend,rtol", [("numba", 1e-9), ("torch", 1e-6)])
def test_skipping_outside_labels_is_exact(backend, rtol):
    # bp_flow skips out-of-grid labels inside messages; with a user volume nothing is skipped: same result
    # (float64 reference exactly; the float32 torch solver to float32 rounding)
    rng = np.random.default_rng(6)
    fs, ft = rng.standard_normal((7, 9, 8)), rng.standard_normal((6, 8, 8))
    a = bp_flow(fs, ft, beta=0.05, radius=4, n_iter=8, tol_iters=99, backend=backend)
    vol = data_cost(l2_normalize(fs, NORM_EPS), l2_normalize(ft, NORM_EPS), 4)
    b = bp_flow(fs, ft, beta=0.05, radius=4, n_iter=8, tol_iters=99, volume=vol, backend=backend)
    np.testing.assert_array_equal(a.flow, b.flow)
    np.testing.assert_allclose(a.energies, b.energies, rtol=rtol)


@pytest.mark.parametrize("coarse_size", [6, 12])
def test_coarse_to_fine_recovers_shift(coarse_size):
    # spatially smooth features (like conv features) so that 2x2-pooled levels still match; odd shift
    from scipy.ndimage import gaussian_filter

    h, w, dx, dy = 24, 20, 5, -3
    big = gaussian_filter(np.random.default_rng(8).standard_normal((h + 20, w + 20, 16)), (1.5, 1.5, 0))
    ft = big[10:10 + h, 10:10 + w]
    fs = big[10 + dy:10 + dy + h, 10 + dx:10 + dx + w]
    ys, xs = np.mgrid[0:h, 0:w]
    ok = (ys + dy >= 0) & (ys + dy < h) & (xs + dx >= 0) & (xs + dx < w)
    res = bp_flow(fs, ft, radius=10, n_iter=10, coarse_to_fine=True, coarse_size=coarse_size)
    assert np.mean(np.all(res.flow[ok] == [dx, dy], axis=-1)) > 0.95
    assert res.energy == pytest.approx(flow_energy(fs, ft, res.flow))


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
    vol = data_cost(l2_normalize(fs, NORM_EPS), l2_normalize(ft, NORM_EPS), 3)
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
    with pytest.raises(ValueError, match="schedule"):
        bp_flow(np.ones((3, 3, 2)), np.ones((3, 3, 2)), schedule="random")
    with pytest.raises(ValueError, match="volume"):
        bp_flow(np.ones((3, 3, 2)), np.ones((3, 3, 2)), radius=1, volume=np.zeros((3, 3, 5, 5)))


def test_flow_inputs_are_validated_naming_the_argument():
    import numpy as np
    import pytest

    from convcorr.numerics.mrf.kernels import distance_transform_sq, flow_energy
    from convcorr.numerics.mrf.solve import bp_flow

    f = np.random.default_rng(0).random((4, 5, 3))
    bad = f.copy()
    bad[1, 2, 0] = np.nan
    with pytest.raises(ValueError, match="bp_flow: fs contains 1 non-finite"):
        bp_flow(bad, f)
    with pytest.raises(ValueError, match="bp_flow: ft contains 1 non-finite"):
        bp_flow(f, np.where(np.isnan(bad), np.inf, bad))
    with pytest.raises(ValueError, match="flow_energy: fs contains"):
        flow_energy(bad, f, np.zeros((4, 5, 2), int))
    for kw, name in ((dict(beta=float("nan")), "beta"), (dict(beta=float("inf")), "beta"), (dict(beta=-1.0), "beta"),
                     (dict(n_iter=-1), "n_iter"), (dict(n_iter=2.5), "n_iter"), (dict(radius=-2), "radius"),
                     (dict(tol_iters=-1), "tol_iters"), (dict(coarse_size=0), "coarse_size")):
        with pytest.raises(ValueError, match=f"bp_flow: {name} must"):
            bp_flow(f, f, **kw)
    with pytest.raises(ValueError, match="flow_energy: beta must"):
        flow_energy(f, f, np.zeros((4, 5, 2), int), beta=float("nan"))
    with pytest.raises(ValueError, match="zero channels"):
        bp_flow(np.zeros((4, 5, 0)), np.zeros((4, 5, 0)))
    with pytest.raises(ValueError, match="empty grid"):
        bp_flow(np.zeros((0, 5, 3)), f)
    with pytest.raises(ValueError, match="distance_transform_sq: weight must be finite"):
        distance_transform_sq(np.zeros((3, 3)), float("nan"))
    with pytest.raises(ValueError, match="NaN"):
        distance_transform_sq(np.full((3, 3), np.nan), 1.0)
    assert np.isinf(distance_transform_sq(np.full((3, 3), np.inf), 1.0)).all()  # +inf stays allowed
    assert bp_flow(f, f, n_iter=0).flow.shape == (4, 5, 2)  # zero iterations: the unary argmin
