import numpy as np
import pytest

from convcorr.classification import (accuracy, class_scores, l2_rows, max_offset_histogram, response_peak, select_C,
                                     train_ova)


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


def test_select_C_grouped_and_sensible():
    X, y = blobs()
    groups = np.tile(np.arange(10), 12)
    C, scores = select_C(X, y, [1e-4, 1.0], folds=5, groups=groups)
    assert set(scores) == {1e-4, 1.0}
    assert scores[1.0] == 1.0
    assert C == min(c for c in scores if scores[c] == max(scores.values()))  # ties: the smaller C


def test_class_scores_and_response_peak():
    X, y = blobs()
    m = train_ova(X, y, 1.0)
    s = class_scores(m, np.array([[5.0, 0, 0], [0, 5.0, 0]]), "a")
    assert s[0] > 0 > s[1]
    # a 5x5 map (window 2) with its maximum at row 0, column 4 -> offset (dx, dy) = (2, -2)
    mp = np.zeros((5, 5))
    mp[0, 4] = 1
    assert response_peak(mp, 2).tolist() == [2, -2]
    hist, edges = max_offset_histogram(np.array([[2, -2], [0, 0], [0, 0]]), 2)
    assert hist.shape == (5, 5) and hist[2, 2] == 2 and hist[0, 4] == 1


def test_l2_rows():
    np.testing.assert_allclose(l2_rows(np.array([[3.0, 4.0], [0, 0]])), [[0.6, 0.8], [0, 0]])
