import numpy as np
import pytest

from convcorr.core.geometry import RFGeometry
from convcorr.features.base import FeatureGrid
from convcorr.matchers import MATCHERS, Correspondence, get_matcher

G = RFGeometry(8, 8, 4.0)   # column (c, r) centred at pixel (4 + 8c, 4 + 8r)


def grid(f, hw=None):
    f = np.asarray(f, np.float32)
    h, w = f.shape[:2]
    return FeatureGrid(f, G, hw or (8 * h, 8 * w), "toy")


def random_columns(h, w, c=32, seed=0):
    return np.random.default_rng(seed).normal(size=(h, w, c))


def pixels(hw):
    H, W = hw
    return np.stack(np.meshgrid(np.arange(W, dtype=float), np.arange(H, dtype=float)), -1)


def test_registry_and_errors():
    assert {"flow", "nn", "mnn", "softargmax"} <= set(MATCHERS)
    with pytest.raises(ValueError, match="available"):
        get_matcher("nope")
    with pytest.raises(ValueError, match="window"):
        get_matcher("softargmax", window=4)
    with pytest.raises(ValueError, match="bogus"):
        get_matcher("flow", bogus=1)
    with pytest.raises(ValueError, match="bogus"):
        get_matcher("nn", bogus=1)
    with pytest.raises(ValueError, match="feature dimensions"):
        get_matcher("nn").match(grid(np.ones((2, 2, 3))), grid(np.ones((2, 2, 4))))


@pytest.mark.parametrize("name", ["nn", "softargmax", "flow"])
def test_shift_by_one_column(name):
    T = random_columns(5, 6)
    S = T[:, 1:]                                          # source column (c, r) == target column (c + 1, r)
    m = get_matcher(name, **({"beta": 1e-3} if name == "flow" else {}))
    c = m.match(grid(S), grid(T), both=True)
    ys, xs = np.mgrid[0:5, 0:5]
    np.testing.assert_allclose(c.grid_match, np.stack([xs + 1, ys], -1), atol=1e-6 if name != "softargmax" else 1e-3)
    # pixel map: x + 8 everywhere (the displacement is constant, also in the border strips)
    np.testing.assert_allclose(c.forward, pixels((40, 40)) + [8, 0], atol=1e-2)
    np.testing.assert_allclose(c.transfer(np.array([[10.5, 3.25]])), [[18.5, 3.25]], atol=1e-2)
    assert c.forward.shape == (40, 40, 2) and c.backward.shape == (40, 48, 2)
    # the other direction: target column (c', r) -> source column (c' - 1, r) for c' >= 1
    np.testing.assert_allclose(c.reverse.grid_match[:, 1:], np.stack([xs, ys], -1), atol=1e-3)
    np.testing.assert_allclose(c.transfer_back(np.array([[20.0, 30.0]])), [[12.0, 30.0]], atol=1e-2)
    np.testing.assert_allclose(c.invert(np.array([[20.0, 30.0]])), [[12.0, 30.0]], atol=1e-4)
    assert np.isfinite(c.energy) and c.mask.all()


def test_nn_flip_and_permutation():
    T = random_columns(4, 5, seed=1)
    nn = get_matcher("nn")
    c = nn.match(grid(T[:, ::-1]), grid(T))               # horizontal flip: column c -> 4 - c
    ys, xs = np.mgrid[0:4, 0:5]
    np.testing.assert_array_equal(c.grid_match, np.stack([4 - xs, ys], -1))
    # the pixel map mirrors x between the outer column centres 4 and 36: x -> 40 - x
    np.testing.assert_allclose(c.transfer(np.array([[12.0, 9.0], [6.0, 20.0]])), [[28.0, 9.0], [34.0, 20.0]])
    # inversion of an orientation-reversing map is exact too
    np.testing.assert_allclose(c.invert(np.array([[28.0, 9.0], [34.0, 20.0]])), [[12.0, 9.0], [6.0, 20.0]],
                               atol=1e-9)
    perm = np.random.default_rng(2).permutation(20)
    S = T.reshape(20, -1)[perm].reshape(4, 5, -1)        # source column i is target column perm[i]
    c = nn.match(grid(S), grid(T), both=True)
    np.testing.assert_array_equal(c.grid_match.reshape(20, 2), np.stack([perm % 5, perm // 5], -1))
    inv = np.argsort(perm)
    np.testing.assert_array_equal(c.reverse.grid_match.reshape(20, 2), np.stack([inv % 5, inv // 5], -1))
    np.testing.assert_allclose(c.score, 1.0, atol=1e-6)
    assert c.score_kind == "similarity" and c.energy == pytest.approx(-1.0, abs=1e-6)


def test_mnn_mask():
    T = random_columns(3, 4, seed=3)
    S = T.copy()
    S[0, 0] = T[0, 1] + 0.05 * np.random.default_rng(4).normal(size=T.shape[2])  # also nearest to target (1, 0)
    c = get_matcher("mnn").match(grid(S), grid(T), both=True)
    want = np.ones((3, 4), bool)
    want[0, 0] = False                                   # target (1, 0) prefers source (1, 0): not mutual
    np.testing.assert_array_equal(c.mask, want)
    assert np.isnan(c.grid_match[0, 0]).all() and np.isnan(c.score[0, 0])
    ys, xs = np.mgrid[0:3, 0:4]
    np.testing.assert_array_equal(c.grid_match[want], np.stack([xs, ys], -1)[want])
    # pixels whose nearest column is unmatched have no correspondence; the others map to themselves
    assert np.isnan(c.forward[0:8, 0:8]).all()
    np.testing.assert_allclose(c.forward[8:, 8:], pixels((24, 32))[8:, 8:])
    assert not c.reverse.mask[0, 0] and c.reverse.mask.sum() == 11  # target (0, 0) matches nothing mutually
    np.testing.assert_allclose(c.invert(np.array([[20.0, 12.0]])), [[20.0, 12.0]])


def profile(pos, sigma=1.0):
    """Column features that are Gaussian bumps at positions ``pos`` (cosine similarity ~ exp(-d^2 / 4 sigma^2))."""
    u = np.linspace(-6, 18, 241)
    f = np.exp(-(u[None] - np.asarray(pos, float)[:, None]) ** 2 / (2 * sigma ** 2))
    return f[None]                                        # (1, n, C)


def test_softargmax_sub_cell():
    T = grid(profile(np.arange(12)))
    true = np.array([2.3, 4.5, 6.7, 8.25, 9.5])
    S = grid(profile(true))
    nn = get_matcher("nn").match(S, T).grid_match[0, :, 0]
    sa = get_matcher("softargmax", window=5, temperature=0.1).match(S, T).grid_match[0, :, 0]
    assert np.all(np.abs(sa - true) < np.abs(nn - true))            # sub-cell beats the integer argmax
    np.testing.assert_allclose(sa[[1, 4]], [4.5, 9.5], atol=1e-3)   # symmetric cases: exact
    assert np.abs(sa - true).max() < 0.12 and np.abs(nn - true).max() >= 0.3
    # window 1 is the plain argmax
    np.testing.assert_array_equal(get_matcher("softargmax", window=1).match(S, T).grid_match[0, :, 0], nn)


def test_flow_matcher_energy_is_bp_flow_energy():
    from convcorr.numerics.mrf.solve import bp_flow

    rng = np.random.default_rng(5)
    fs, ft = rng.normal(size=(6, 7, 8)), rng.normal(size=(6, 7, 8))
    c = get_matcher("flow", beta=0.05, radius=3, n_iter=6).match(grid(fs), grid(ft))
    res = bp_flow(fs, ft, beta=0.05, radius=3, n_iter=6)
    assert c.energy == pytest.approx(res.energy)
    np.testing.assert_array_equal(c.details["flow"], res.flow)
    assert np.nansum(c.score) == pytest.approx(res.data_energy)
    # radius_px is converted to cells of the source grid: 20 px / stride 8 -> 2 (rounded) cells
    m = get_matcher("flow", radius_px=20)
    assert m.radius_cells(grid(fs), grid(ft)) == 2


def test_fold_regression_through_correspondence():
    """13 x 13 conv4 grid shifted one column everywhere except a border column pointing 3 columns the other
    way: every interior target point must come back to exactly its true source point."""
    g = RFGeometry(131, 16, 17.0)
    src = FeatureGrid(np.zeros((13, 13, 1), np.float32), g, (227, 227))
    ys, xs = np.mgrid[0:13, 0:13].astype(float)
    gm = np.stack([xs - 1, ys], -1)
    gm[:, 0, 0] = 3                                      # border column 0 -> column 3 (the field folds)
    c = Correspondence.from_grid(gm, src, src, np.zeros((13, 13)), "cost", 0.0)
    cc = g.column_centers(13)
    q = np.stack(np.meshgrid(np.linspace(cc[0], cc[11], 45), np.linspace(0, 226, 15)), -1).reshape(-1, 2)
    np.testing.assert_allclose(c.transfer_back(q), q + [16, 0], atol=1e-9)
    # and forward through the map (no inversion) agrees
    np.testing.assert_allclose(c.transfer(q + [16, 0]), q, atol=1e-9)


def test_warp_moves_the_target_onto_the_source():
    T = random_columns(5, 6, seed=6)
    c = get_matcher("nn").match(grid(T[:, 1:]), grid(T))
    img = np.random.default_rng(7).integers(0, 255, (40, 48, 3), dtype=np.uint8)
    np.testing.assert_array_equal(c.warp(img), img[:, 8:48])
    with pytest.raises(ValueError, match="target image"):
        c.warp(img[:30])


@pytest.mark.parametrize("name", ["nn", "mnn", "softargmax"])
def test_transfer_points_equals_the_dense_map(name):
    """Matcher.transfer_points (nn: only the columns read at the points are matched) == match().transfer, at
    column centres, between them, beyond the outermost columns and on other grid sizes / offsets."""
    rng = np.random.default_rng(3)
    for trial in range(6):
        gs, gt = RFGeometry(11, 4, 5.0 + trial % 3), RFGeometry(11, 4, 3.5)
        s = FeatureGrid(rng.normal(size=(9, 11, 5)).astype(np.float32), gs, (40, 48))
        t = FeatureGrid(rng.normal(size=(10, 8, 5)).astype(np.float32), gt, (42, 36))
        xy = np.concatenate([rng.uniform(-2, 50, size=(30, 2)), gs.grid_centers((9, 11)).reshape(-1, 2)[:7]])
        m = get_matcher(name)
        np.testing.assert_allclose(m.transfer_points(s, t, xy), m.match(s, t).transfer(xy), atol=1e-9)
