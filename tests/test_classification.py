import numpy as np
import pytest

from convcorr.core.types import Instance
from convcorr.methods.classification import (accuracy, class_scores, keypoint_dataset, response_map, response_peak,
                                             select_C, train_ova)


def blobs(n=40, seed=0):
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.normal([5, 0, 0], 0.3, (n, 3)), rng.normal([0, 5, 0], 0.3, (n, 3)),
                        rng.normal([0, 0, 5], 0.3, (n, 3))])
    y = np.repeat(["a", "b", "c"], n)
    return X, y


def test_separable_blobs_perfect():
    X, y = blobs()
    m = train_ova(X, y, 1.0)
    assert accuracy(m, X, y) == 1.0
    Xt, yt = blobs(seed=1)
    assert accuracy(m, Xt, yt) == 1.0


def test_two_gaussian_blobs_near_perfect():
    rng = np.random.default_rng(7)
    X = np.concatenate([rng.normal([2, 2], 0.5, (100, 2)), rng.normal([-2, 2], 0.5, (100, 2))])
    y = np.repeat(["left_eye", "right_eye"], 100)
    m = train_ova(X, y, 1.0)
    Xt = np.concatenate([rng.normal([2, 2], 0.5, (100, 2)), rng.normal([-2, 2], 0.5, (100, 2))])
    assert accuracy(m, Xt, y) >= 0.99


def test_select_C_grouped_and_sensible():
    X, y = blobs()
    groups = np.tile(np.arange(10), 12)
    C, scores = select_C(X, y, [1e-4, 1.0], folds=5, groups=groups)
    assert set(scores) == {1e-4, 1.0}
    assert scores[1.0] == 1.0
    assert C == min(c for c in scores if scores[c] == max(scores.values()))  # ties: the smaller C


def test_select_C_avoids_too_strong_regularisation():
    # y decides the sign of x1 - x2 while both share a large common noise: the class means differ only slightly,
    # so a tiny C (w ~ C * mean difference) classifies poorly and CV must choose a C >= 0.1 (margin direction)
    rng = np.random.default_rng(0)
    n, s = rng.normal(0, 3, 200), np.repeat([0.5, -0.5], 100)
    X = np.stack([n + s, n], 1)
    y = np.repeat(["a", "b"], 100)
    C, scores = select_C(X, y, [1e-4, 1e-3, 0.1, 1.0, 10.0], folds=4)
    assert C == 0.1  # the smallest C reaching the best CV accuracy
    assert scores[0.1] == 1.0 and scores[1e-4] < 0.8


def test_class_scores_response_map_and_peak():
    X, y = blobs()
    m = train_ova(X, y, 1.0)
    s = class_scores(m, np.array([[5.0, 0, 0], [0, 5.0, 0]]), "a")
    assert s[0] > 0 > s[1]
    with pytest.raises(KeyError):
        class_scores(m, X[:1], "zzz")
    # a 5x5 map (window 2) with its maximum at row 0, column 4 -> offset (dx, dy) = (2, -2)
    mp = np.zeros((5, 5))
    mp[0, 4] = 1
    assert response_peak(mp, 2).tolist() == [2, -2]
    assert response_peak(mp).tolist() == [2, -2]


def test_response_map_of_known_linear_classifier_peaks_where_computed():
    # hand-made one-vs-all model: score_a(f) = w_a . f / |f| + b_a with w_a = (1, 0), b_a = 0
    from sklearn.svm import LinearSVC

    m = LinearSVC()
    m.classes_ = np.array(["a", "b", "c"])
    m.coef_ = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    m.intercept_ = np.zeros(3)
    # feature at grid cell (row r, col c): angle grows with c - 3 and r - 1 -> unit direction closest to (1, 0)
    # exactly at (r, c) = (1, 3): f = (1, 0.3 * (c - 3) + 0.1 * (r - 1))
    r, c = np.mgrid[0:4, 0:7]
    grid = np.stack([np.ones_like(r, float), 0.3 * (c - 3) + 0.1 * (r - 1)], -1)
    s = response_map(m, "a", grid)
    assert s.shape == (4, 7)
    np.testing.assert_allclose(s, 1 / np.sqrt(1 + grid[..., 1] ** 2))
    assert np.unravel_index(np.argmax(s), s.shape) == (1, 3)
    sb = response_map(m, "b", grid)
    assert np.unravel_index(np.argmax(sb), sb.shape) == (3, 6)


def test_keypoint_dataset_visible_rows_and_groups():
    def inst(i, src, vis):
        kp = np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
        return Instance(id=f"i{i}", category="x", bbox=(0, 0, 5, 5), keypoint_names=("p", "q", "r"),
                        keypoints=kp, visible=np.array(vis), image_path=None, image=None,
                        meta={"source_id": src} if src else {})

    insts = [inst(0, "photoA", [True, False, True]), inst(1, None, [True, True, True]),
             inst(2, "photoA", [False, False, False])]
    X, y, g = keypoint_dataset(insts, lambda i: i.keypoints[i.visible] * 10)
    assert X.shape == (5, 2)
    assert y.tolist() == ["p", "r", "p", "q", "r"]
    assert g.tolist() == ["photoA", "photoA", "i1", "i1", "i1"]
    np.testing.assert_allclose(X[1], [30, 30])
    _, _, g = keypoint_dataset(insts, lambda i: i.keypoints[i.visible], group_by="instance")
    assert g.tolist() == ["i0", "i0", "i1", "i1", "i1"]
    with pytest.raises(ValueError, match="i0"):
        keypoint_dataset(insts[:1], lambda i: np.zeros((3, 2)))


def test_train_ova_is_deterministic():
    # liblinear's dual solver visits coordinates in a random order: the model must not depend on the run
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 80))
    y = np.repeat(["a", "b", "c"], 20)
    from convcorr.methods.classification import train_ova

    m1, m2 = train_ova(X, y, C=10.0, max_iter=20), train_ova(X, y, C=10.0, max_iter=20)
    assert np.array_equal(m1.coef_, m2.coef_) and np.array_equal(m1.intercept_, m2.intercept_)
