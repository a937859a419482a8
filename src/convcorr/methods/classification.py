"""Keypoint classification (paper Section 4, Table 3, Figure 4): which keypoint type is this feature?

One-vs-all linear SVMs (scikit-learn ``LinearSVC``: squared hinge, L2 penalty, one-vs-rest, intercept) on
L2-NORMALISED feature rows (every feature -- SIFT or a conv column -- is divided by its Euclidean norm, so all
features live on the unit sphere and one C grid fits them all; the paper does not say which normalisation
it used). C is chosen by k-fold cross-validation over a grid, grouped by object instance (``GroupKFold`` on
``groups``: the keypoints of one instance -- and of warped copies of one photo, which share a group -- never
fall on both sides of a fold); without groups the folds are stratified by type.

Figure 4: :func:`response_map` evaluates the classifier of one type on a dense feature grid (e.g. 1-pixel
stride), :func:`response_peak` gives the offset of its maximum from the window centre and
:func:`convcorr.viz.figures.offset_histograms` bins those offsets.
"""
from __future__ import annotations

import warnings
from dataclasses import replace as _replace
from typing import Callable, Sequence

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GroupKFold, StratifiedKFold
from sklearn.svm import LinearSVC

from ..core.arrays import l2_normalize

DEFAULT_CS = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)


def keypoint_dataset(instances: Sequence, feature_fn: Callable, group_by: str = "source"
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One example per visible keypoint of every instance.

    Args:
        instances: ``Instance`` list.
        feature_fn: ``feature_fn(inst) -> (V, D)`` features of the instance's VISIBLE keypoints, in the order of
            ``inst.keypoint_names`` restricted to ``inst.visible``.
    Returns:
        X (N, D) float, y (N,) keypoint type names, groups (N,) group id of each row: with
        ``group_by="source"`` ``meta["source_id"]`` when present (warped copies of one photo share it), else the
        instance id; with ``group_by="instance"`` always the instance id.
    """
    if group_by not in ("source", "instance"):
        raise ValueError(f"keypoint_dataset: group_by must be 'source' or 'instance', got {group_by!r}")
    X, y, groups = [], [], []
    for inst in instances:
        v = np.asarray(inst.visible, dtype=bool) & np.all(np.isfinite(inst.keypoints), axis=1)
        if not v.any():
            continue
        f = np.asarray(feature_fn(inst))
        if f.ndim != 2 or len(f) != int(v.sum()):
            raise ValueError(f"keypoint_dataset: feature_fn({inst.id!r}) returned shape {f.shape}, expected "
                             f"({int(v.sum())}, D) for its visible keypoints")
        X.append(f)
        y += [n for n, vv in zip(inst.keypoint_names, v) if vv]
        gid = inst.meta.get("source_id", inst.id) if group_by == "source" else inst.id
        groups += [str(gid)] * int(v.sum())
    if not X:
        return np.zeros((0, 0)), np.array([], dtype=str), np.array([], dtype=str)
    return np.concatenate(X), np.array(y), np.array(groups)


def kept_types(names, max_types: int | None) -> np.ndarray:
    """Indices of an even subsample of at most ``max_types`` keypoint types (all when None)."""
    if not max_types or len(names) <= max_types:
        return np.arange(len(names))
    return np.unique(np.linspace(0, len(names) - 1, max_types).round().astype(int))


def restrict_types(insts: list, max_types: int | None) -> list:
    """Instances whose keypoints outside :func:`kept_types` are marked invisible (so they yield no examples)."""
    out = []
    for i in insts:
        keep = np.zeros(len(i.keypoint_names), bool)
        keep[kept_types(i.keypoint_names, max_types)] = True
        out.append(_replace(i, visible=np.asarray(i.visible, bool) & keep))
    return out


def train_ova(X: np.ndarray, y: np.ndarray, C: float, max_iter: int = 2000, tol: float = 1e-4,
              random_state: int = 0) -> LinearSVC:
    """One-vs-all linear SVMs on L2-normalised rows of X (N, D), labels y (N,). Returns the fitted model.

    ``random_state`` seeds liblinear's coordinate order (the dual solver shuffles it), so that the same data give
    the same model in every run.
    """
    X = l2_normalize(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # liblinear: the dual solver is faster with fewer examples than dimensions or small C (few support
        # vectors to move), the primal (Newton) one for large C on N > D (measured on face SIFT: 4 s vs 2.6 s)
        dual = X.shape[0] <= X.shape[1] or C <= 1.0
        return LinearSVC(C=C, max_iter=max_iter, tol=tol, dual=dual, random_state=random_state).fit(X, np.asarray(y))


def accuracy(model: LinearSVC, X: np.ndarray, y: np.ndarray) -> float:
    """Fraction of rows whose predicted type equals y (NaN when empty)."""
    return float(np.mean(model.predict(l2_normalize(X)) == np.asarray(y))) if len(y) else float("nan")


def cv_splits(y: np.ndarray, folds: int = 5, groups: np.ndarray | None = None, seed: int = 0) -> list:
    """Train/test index pairs: ``GroupKFold`` (at most one fold per group) with >= 2 groups, else stratified."""
    y = np.asarray(y)
    if groups is not None and len(np.unique(groups)) >= 2:
        return list(GroupKFold(n_splits=min(folds, len(np.unique(groups)))).split(y, y, groups))
    n = min(folds, int(np.bincount(np.unique(y, return_inverse=True)[1]).min()))
    if n < 2:
        raise ValueError("select_C: cross-validation needs at least 2 examples per class or 2 groups")
    return list(StratifiedKFold(n_splits=n, shuffle=True, random_state=seed).split(y, y))


def select_C(X: np.ndarray, y: np.ndarray, Cs: Sequence[float] = DEFAULT_CS, folds: int = 5,
             groups: np.ndarray | None = None, n_jobs: int | None = None) -> tuple[float, dict[float, float]]:
    """C with the best mean cross-validated accuracy -> (best C, {C: mean CV accuracy}).

    With ``groups`` the folds are ``GroupKFold`` (at most as many folds as groups), else stratified.
    Ties go to the smaller C (the more regularised model). ``n_jobs`` parallelises over (C, fold) with joblib.
    """
    from joblib import Parallel, delayed

    X, y = np.asarray(X), np.asarray(y)
    if len(Cs) == 0:
        raise ValueError("select_C: empty grid of Cs")
    splits = [(tr, te) for tr, te in cv_splits(y, folds, groups) if len(np.unique(y[tr])) >= 2]

    def one(C, tr, te):
        return accuracy(train_ova(X[tr], y[tr], C), X[te], y[te])

    jobs = [(float(C), tr, te) for C in Cs for tr, te in splits]
    accs = Parallel(n_jobs=n_jobs)(delayed(one)(C, tr, te) for C, tr, te in jobs) if jobs else []
    scores = {float(C): float("nan") for C in Cs}
    for C in scores:
        a = [acc for (c, _, _), acc in zip(jobs, accs) if c == C]
        scores[C] = float(np.mean(a)) if a else float("nan")
    best = max(scores, key=lambda c: (np.nan_to_num(scores[c], nan=-1), -c))
    return best, scores


def class_scores(model: LinearSVC, X: np.ndarray, label) -> np.ndarray:
    """(N,) decision value of the one-vs-all classifier of ``label`` on rows of X (N, D)."""
    classes = list(model.classes_)
    if label not in classes:
        raise KeyError(f"class_scores: type {label!r} not among the model's classes")
    s = model.decision_function(l2_normalize(X))
    if s.ndim == 1:  # binary problem: positive = classes_[1]
        return s if label == classes[1] else -s
    return s[:, classes.index(label)]


def response_map(model: LinearSVC, label, feature_grid: np.ndarray) -> np.ndarray:
    """(h, w) score of the classifier of type ``label`` at every cell of a feature grid (h, w, D)."""
    g = np.asarray(feature_grid)
    if g.ndim != 3:
        raise ValueError(f"response_map: feature_grid must be (h, w, D), got shape {g.shape}")
    return class_scores(model, g.reshape(-1, g.shape[-1]), label).reshape(g.shape[:2])


def response_peak(scores: np.ndarray, window: int | None = None) -> np.ndarray:
    """Offset (dx, dy) of the maximum of a (2w+1, 2w+1) response map from its centre (first maximum on ties)."""
    h, w = scores.shape
    cy, cx = (h // 2, w // 2) if window is None else (window, window)
    iy, ix = np.unravel_index(int(np.argmax(scores)), scores.shape)
    return np.array([ix - cx, iy - cy])
