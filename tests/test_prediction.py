import numpy as np
import pytest

from convcorr.core.geometry import RFGeometry
from convcorr.core.types import Instance
from convcorr.methods.prediction import (KeypointPredictor, combine, gaussian_prior, neighbourhood_features,
                                         positives_negatives, predict_location, to_positive, train_keypoint_svm)


# ------------------------------------------------------------------------------------------ neighbourhoods
def test_neighbourhood_concat_zero_padding_3x3():
    g = np.arange(1, 10, dtype=np.float32).reshape(3, 3, 1)  # 1 2 3 / 4 5 6 / 7 8 9
    n = neighbourhood_features(g, 3)
    assert n.shape == (3, 3, 9)
    np.testing.assert_array_equal(n[1, 1], [1, 2, 3, 4, 5, 6, 7, 8, 9])  # centre sees the whole grid
    np.testing.assert_array_equal(n[0, 0], [0, 0, 0, 0, 1, 2, 0, 4, 5])  # top-left corner: zero padding
    np.testing.assert_array_equal(n[2, 1], [4, 5, 6, 7, 8, 9, 0, 0, 0])  # bottom edge
    # multi-channel: block (dy+1)*3+(dx+1) holds the C channels of the column at (row+dy, col+dx)
    g2 = np.stack([g[..., 0], 10 * g[..., 0]], -1)
    n2 = neighbourhood_features(g2, 3)
    assert n2.shape == (3, 3, 18)
    np.testing.assert_array_equal(n2[1, 2, 2:4], [3, 30])  # block 1 = (dy, dx) = (-1, 0) -> grid[0, 2]
    assert neighbourhood_features(g, 1) is g
    with pytest.raises(ValueError):
        neighbourhood_features(g, 2)


# ------------------------------------------------------------------------------------ positives/negatives
def test_positives_are_the_ten_nearest_and_negatives_never_contain_keypoint():
    geom = RFGeometry(size=33, stride=8, offset=4)  # column (c, r) centred at (4 + 8c, 4 + 8r), half-width 16
    hw = (10, 12)
    xy = np.array([41.0, 30.0])
    pos, neg = positives_negatives(geom, hw, xy, n_pos=10)
    centres = geom.grid_centers(hw).reshape(-1, 2)
    d = np.linalg.norm(centres - xy, axis=1)
    assert len(pos) == 10 and len(set(pos.tolist())) == 10
    assert d[pos].max() <= np.sort(d)[9] + 1e-12  # exactly the 10 smallest distances
    assert not np.any(neg[pos])
    # by hand: nearest column centre to (41, 30) is (44, 28) = column (5, 3) -> flat 3 * 12 + 5
    assert pos[0] == 3 * 12 + 5
    # negatives: rf does not contain the keypoint, i.e. |centre - xy| > 16 in x or y
    far = np.any(np.abs(centres - xy) > 16, axis=1)
    np.testing.assert_array_equal(neg, far)
    rows, cols = np.divmod(np.flatnonzero(neg), hw[1])
    assert not geom.rf_contains(np.stack([cols, rows], 1), xy).any()
    # contained: |4+8c-41| <= 16 -> c = 3..6 and |4+8r-30| <= 16 -> r = 2..5: 4 * 4 = 16 non-negatives
    assert (~neg).sum() == 4 * 4
    assert not neg.reshape(hw)[2:6, 3:7].any() and neg.reshape(hw)[1, 3] and neg.reshape(hw)[2, 7]


# ------------------------------------------------------------------------------------------------ prior
def test_gaussian_prior_peak_and_one_sigma():
    geom = RFGeometry(size=10, stride=1, offset=0)
    centres = geom.grid_centers((50, 60))
    p = gaussian_prior(centres, np.array([20.0, 10.0]), sigma=5.0)
    assert p.shape == (50, 60)
    assert np.unravel_index(np.argmax(p), p.shape) == (10, 20)
    assert p[10, 20] == pytest.approx(1.0)
    assert p[10, 25] == pytest.approx(np.exp(-0.5))  # one sigma along x
    assert p[15, 20] == pytest.approx(np.exp(-0.5))  # one sigma along y
    np.testing.assert_array_equal(gaussian_prior(centres, np.array([np.nan, np.nan]), 5.0), np.ones((50, 60)))


def test_combine_extremes_keep_ordering():
    rng = np.random.default_rng(0)
    s = rng.normal(size=(6, 7)) * 3
    p = rng.uniform(0.01, 1, size=(6, 7))
    f0 = combine(s, p, eta=0.0)
    f1 = combine(s, p, eta=1.0)
    np.testing.assert_array_equal(np.argsort(f0, axis=None), np.argsort(s, axis=None))
    np.testing.assert_allclose(f1, p)
    np.testing.assert_allclose(f0, 1 / (1 + np.exp(-s)))
    assert np.all(combine(s, p, 0.1) > 0)
    # the prior can overturn a small score difference but not a large one
    s2 = np.array([[1.0, 0.9]])
    assert np.argmax(combine(s2, np.array([[0.01, 1.0]]), 0.1)) == 1
    assert np.argmax(combine(np.array([[6.0, -6.0]]), np.array([[0.01, 1.0]]), 0.1)) == 0
    mm = to_positive(s, "minmax")
    assert mm.max() == 1.0 and mm.min() > 0
    with pytest.raises(ValueError):
        combine(s, p, eta=1.5)


def test_to_positive_sigmoid_no_overflow():
    v = to_positive(np.array([-1000.0, 0.0, 1000.0]))
    np.testing.assert_allclose(v, [0.0, 0.5, 1.0])


# ------------------------------------------------------------------------------------------------ mining
def test_hard_negative_mining_adds_false_positives_and_fixes_errors():
    rng = np.random.default_rng(0)
    # positives around (+2, 0); a huge pool of easy negatives around (-2, 0); a few hard negatives at (+0.6, 0)
    # which a random subset almost never contains, so the first SVM puts them on the positive side.
    X_pos = rng.normal([2.0, 0.0], 0.3, size=(40, 2))
    easy = rng.normal([-2.0, 0.0], 0.3, size=(5000, 2))
    hard = rng.normal([0.6, 0.0], 0.05, size=(8, 2))
    X_neg = np.concatenate([easy, hard])
    w0, b0, h0 = train_keypoint_svm(X_pos, X_neg, C=10.0, rounds=0, rng=np.random.default_rng(1), n_init=50,
                                    return_history=True)
    fp0 = int((hard @ w0 + b0 > 0).sum())
    assert fp0 > 0 and h0[0]["false_pos"] >= fp0  # the random-subset SVM misclassifies hard negatives
    w, b, hist = train_keypoint_svm(X_pos, X_neg, C=10.0, rounds=3, rng=np.random.default_rng(1), n_init=50,
                                    n_add=20, return_history=True)
    assert hist[1]["n_neg"] > hist[0]["n_neg"]  # mining added negatives
    assert hist[-1]["false_pos"] == 0  # ... and fixed every false positive of the pool
    assert np.all(hard @ w + b < 0)
    assert np.all(X_pos @ w + b > 0)


def test_train_svm_rejects_empty():
    with pytest.raises(ValueError):
        train_keypoint_svm(np.zeros((0, 3)), np.ones((5, 3)))


# ------------------------------------------------------------------------------------------- locations
def test_predict_location_maps_argmax_column_through_geometry():
    geom = RFGeometry(size=163, stride=16, offset=17)
    m = np.zeros((30, 30))
    m[4, 7] = 5.0  # row 4, column 7
    np.testing.assert_allclose(predict_location(m, geom), [17 + 16 * 7, 17 + 16 * 4])


# ------------------------------------------------------------------------------------------- predictor
def _blob_instance(i: int, rng) -> Instance:
    """Grey image with a bright square at a random place inside the box; keypoint 'blob' at its centre and
    a dark square as keypoint 'hole'."""
    img = np.full((120, 140, 3), 128, np.uint8)
    img[..., 1] = rng.integers(100, 156, size=(120, 140))
    bx, by = 10 + i % 3, 8 + i % 2
    cx, cy = rng.integers(bx + 15, bx + 100), rng.integers(by + 15, by + 85)
    img[cy - 6:cy + 7, cx - 6:cx + 7] = 255
    hx, hy = (bx + 110 - (cx - bx), by + 100 - (cy - by))
    img[hy - 6:hy + 7, hx - 6:hx + 7] = 0
    kp = np.array([[cx, cy], [hx, hy]], dtype=np.float64)
    return Instance(f"blob{i}", "blob", (bx, by, bx + 110, by + 100), ("blob", "hole"), kp,
                    np.array([True, True]), image=img)


def test_keypoint_predictor_sift_finds_blobs():
    rng = np.random.default_rng(0)
    insts = [_blob_instance(i, rng) for i in range(14)]
    train, test = insts[:10], insts[10:]
    model = KeypointPredictor("sift", k=1, size=128, C=1.0, rounds=1, n_init=500, seed=0).fit(train)
    assert set(model.models) == {"blob", "hole"}
    for inst in test:
        pred = model.predict(inst)
        assert pred.shape == (2, 2)
        err = np.linalg.norm(pred - inst.keypoints, axis=1)
        assert np.all(err <= 12), err  # within ~1.5 SIFT steps (step 8 px in the 128 px crop ~ 7 px here)
        # predict = argmax column's rf centre in crop pixels, mapped back through the crop transform
        _, geom, t, _ = model.grid(inst)
        s = model.score_maps(inst)
        manual = t.from_crop(np.stack([predict_location(s[j], geom) for j in range(2)]))
        np.testing.assert_allclose(pred, manual)
        # a prior centred exactly on the truth keeps the answer; the maps have the documented shapes
        pred2, maps = model.predict(inst, prior_xy=inst.keypoints, return_maps=True)
        h, w = model.grid(inst)[0].shape[:2]
        assert maps["s"].shape == maps["p"].shape == maps["f"].shape == (2, h, w)
        assert np.all(np.linalg.norm(pred2 - inst.keypoints, axis=1) <= 12)
    with pytest.raises(RuntimeError):
        KeypointPredictor("sift").predict(test[0])


def test_each_type_trains_the_same_alone_in_any_order_or_process():
    """Hard-negative mining is seeded per type (type_rng): a type's SVM does not depend on which other types are
    trained, in which order, or in which process (the TrainingSet is pickled as a worker would receive it)."""
    import pickle

    from convcorr.methods.prediction import fit_type_task, type_rng

    rng = np.random.default_rng(2)
    insts = [_blob_instance(i, rng) for i in range(6)]
    kw = dict(k=1, size=96, C=1.0, rounds=1, n_init=100, n_add=100, seed=3)
    both = KeypointPredictor("sift", **kw).fit(insts)
    alone = KeypointPredictor("sift", **kw).fit(insts, names=("hole",))
    data = KeypointPredictor("sift", **kw).training_set(insts, ("hole", "blob"))
    remote = pickle.loads(pickle.dumps({"k": data}))
    for name in ("hole", "blob"):
        w, b, hist = fit_type_task(("k", name), remote)
        np.testing.assert_array_equal(w, both.models[name][0])
        assert b == both.models[name][1] and hist == both.history[name]
    np.testing.assert_array_equal(alone.models["hole"][0], both.models["hole"][0])
    assert fit_type_task(("k", "no such type"), remote) is None
    # the generator depends on the seed and the type name only
    assert type_rng(3, "hole").integers(1 << 30) == type_rng(3, "hole").integers(1 << 30)
    assert type_rng(3, "hole").integers(1 << 30) != type_rng(3, "blob").integers(1 << 30)
    assert type_rng(3, "hole").integers(1 << 30) != type_rng(4, "hole").integers(1 << 30)


def test_keypoint_predictor_conv5_real_backbone(shared):
    from convcorr.backbones import get_backbone

    rng = np.random.default_rng(1)
    insts = [_blob_instance(i, rng) for i in range(8)]
    bb = get_backbone("alexnet")
    model = KeypointPredictor("conv5", backbone=bb, k=3, size=260, rounds=1, n_init=300, seed=0)
    model.fit(insts[:6])
    g, geom, t, crop = model.grid(insts[6])
    assert crop.shape == (260, 260, 3)
    assert g.shape[2] == 9 * 256 and geom == bb.rf("conv5")
    np.testing.assert_allclose(np.linalg.norm(g, axis=-1)[np.linalg.norm(g, axis=-1) > 0], 1.0, rtol=1e-4)
    pred = model.predict(insts[6])
    assert pred.shape == (2, 2) and np.all(np.isfinite(pred))
    # predictions are rf centres of columns mapped back into original pixels: inside the crop's box region
    x0, y0, x1, y1 = insts[6].bbox
    assert np.all((pred[:, 0] >= x0 - 1) & (pred[:, 0] <= x1 + 1) & (pred[:, 1] >= y0 - 1) & (pred[:, 1] <= y1 + 1))


def test_svm_scores_float32_without_upcast_same_mining():
    from convcorr.methods.prediction import svm_scores

    rng = np.random.default_rng(3)
    X_pos = (rng.standard_normal((60, 300)) + 0.3).astype(np.float32)
    X_neg = rng.standard_normal((3000, 300)).astype(np.float32)
    w = rng.standard_normal(300)
    s32 = svm_scores(X_neg, w, 0.5)
    s64 = X_neg.astype(np.float64) @ w + 0.5  # the former float64 path
    assert s32.dtype == np.float64
    np.testing.assert_allclose(s32, s64, rtol=1e-5, atol=1e-4)
    # training on float32 features mines the same negatives and gives the same SVM as on float64 copies
    a = train_keypoint_svm(X_pos, X_neg, C=0.1, rounds=2, rng=np.random.default_rng(0), n_init=200, n_add=200,
                           return_history=True)
    b = train_keypoint_svm(X_pos.astype(np.float64), X_neg.astype(np.float64), C=0.1, rounds=2,
                           rng=np.random.default_rng(0), n_init=200, n_add=200, return_history=True)
    assert a[2] == b[2]
    np.testing.assert_allclose(a[0], b[0], rtol=1e-6, atol=1e-8)
    assert a[1] == pytest.approx(b[1], rel=1e-6, abs=1e-8)
