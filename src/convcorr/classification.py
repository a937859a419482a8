"""Keypoint classification (paper Section 4, Table 3): which keypoint type is this feature?

One-vs-all linear SVMs (scikit-learn ``LinearSVC``, squared hinge, one-vs-rest) on L2-normalised features;
C chosen by k-fold cross-validation, grouped by object instance (``GroupKFold``: the keypoints of one instance,
or of warped copies of one photo, never fall on both sides of a fold).
"""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GroupKFold, StratifiedKFold
from sklearn.svm import LinearSVC

DEFAULT_CS = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)


def l2_rows(X: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm (zero rows stay zero)."""
    X = np.asarray(X, dtype=np.float64)
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


def train_ova(X: np.ndarray, y: np.ndarray, C: float, max_iter: int = 5000) -> LinearSVC:
    """One-vs-all linear SVMs on L2-normalised rows of X (N, D), labels y (N,)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return LinearSVC(C=C, max_iter=max_iter).fit(l2_rows(X), y)


def accuracy(model: LinearSVC, X: np.ndarray, y: np.ndarray) -> float:
    """Fraction of rows whose predicted type equals y."""
    return float(np.mean(model.predict(l2_rows(X)) == np.asarray(y))) if len(y) else float("nan")


def select_C(X: np.ndarray, y: np.ndarray, Cs: Sequence[float] = DEFAULT_CS, folds: int = 5,
             groups: np.ndarray | None = None) -> tuple[float, dict[float, float]]:
    """C with the best mean cross-validated accuracy -> (best C, {C: mean CV accuracy}).

    With ``groups`` the folds are ``GroupKFold`` (at most as many folds as groups), else stratified.
    Ties go to the smaller C (the more regularised model).
    """
    y = np.asarray(y)
    if groups is not None and len(np.unique(groups)) >= 2:
        splitter = GroupKFold(n_splits=min(folds, len(np.unique(groups))))
        splits = list(splitter.split(X, y, groups))
    else:
        n = min(folds, int(np.bincount(np.unique(y, return_inverse=True)[1]).min()))
        if n < 2:
            raise ValueError("cross-validation needs at least 2 examples per class or 2 groups")
        splits = list(StratifiedKFold(n_splits=n, shuffle=True, random_state=0).split(X, y))
    scores = {}
    for C in Cs:
        accs = []
        for tr, te in splits:
            if len(np.unique(y[tr])) < 2:
                continue
            accs.append(accuracy(train_ova(X[tr], y[tr], C), X[te], y[te]))
        scores[float(C)] = float(np.mean(accs)) if accs else float("nan")
    best = max(scores, key=lambda c: (np.nan_to_num(scores[c], nan=-1), -c))
    return best, scores


def class_scores(model: LinearSVC, X: np.ndarray, label) -> np.ndarray:
    """(N,) decision value of the one-vs-all classifier of ``label`` on rows of X."""
    classes = list(model.classes_)
    s = model.decision_function(l2_rows(X))
    if s.ndim == 1:  # binary problem: positive = classes_[1]
        return s if label == classes[1] else -s
    return s[:, classes.index(label)]


def response_peak(scores: np.ndarray, window: int) -> np.ndarray:
    """Offset (dx, dy) of the maximum of a (2w+1, 2w+1) response map from its centre."""
    iy, ix = np.unravel_index(int(np.argmax(scores)), scores.shape)
    return np.array([ix - window, iy - window])


def max_offset_histogram(offsets: np.ndarray, window: int, bins: int | None = None):
    """2-D histogram of peak offsets (N, 2) over [-window, window]^2 -> (hist (bins, bins) [y, x], edges)."""
    bins = bins or 2 * window + 1
    edges = np.linspace(-window - 0.5, window + 0.5, bins + 1)
    offsets = np.asarray(offsets).reshape(-1, 2)
    hist, _, _ = np.histogram2d(offsets[:, 1], offsets[:, 0], bins=[edges, edges])
    return hist, edges
