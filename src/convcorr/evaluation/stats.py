"""Uncertainty of reported numbers: a cluster (block) bootstrap over the independent units of an experiment.

Points (keypoints) of one photo or one query are not independent, so every interval here resamples whole UNITS
(``groups``: the photo or query each row belongs to) with replacement, optionally within ``strata`` (e.g. the
category, so that every replicate keeps the category mix). A replicate is a vector of row weights (the number of
times the row's unit was drawn), so a statistic is any function of ``(values, weights)``; the percentile interval
of the replicates is reported. Paired comparisons (method A vs method B on the same points) use the SAME
replicates for both, so the interval of the difference accounts for their correlation.

Example::

    est = bootstrap_ci(correct, groups=photo_of_point, statistic=type_mean(types))
    est.value, est.lo, est.hi, est.n, est.n_units      # PCK, its 95% interval, points, photos
    d = paired_difference(correct_conv4, correct_sift, groups=query_of_point, statistic=type_mean(types))
    d.spans_zero                                        # True -> "not resolved"
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

#: statistic(values (N, ...), weights (B, N)) -> (B,)
Statistic = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Estimate:
    """A number with its bootstrap interval and what it rests on.

    Attributes:
        value: the statistic on the data as observed.
        lo, hi: the ``level`` percentile interval of the bootstrap replicates.
        n: rows (points) the number rests on.
        n_units: independent units (photos / queries) resampled.
        level: coverage of the interval (0.95).
        n_boot: bootstrap replicates drawn.
    """

    value: float
    lo: float
    hi: float
    n: int
    n_units: int
    level: float = 0.95
    n_boot: int = 0

    @property
    def spans_zero(self) -> bool:
        """True when the interval contains 0 (or is undefined): a difference that is NOT resolved."""
        return not (self.lo > 0 or self.hi < 0)

    def to_dict(self) -> dict:
        return {"value": self.value, "ci95" if self.level == 0.95 else f"ci{self.level:g}": [self.lo, self.hi],
                "n_points": self.n, "n_units": self.n_units}

    def fmt(self, digits: int = 3, signed: bool = False) -> str:
        """``"0.512 [0.430, 0.600]"`` (``signed``: ``"+0.070 [-0.020, +0.160]"``); ``"n/a"`` when undefined."""
        if not np.isfinite(self.value):
            return "n/a"
        f = f"{{:+.{digits}f}}" if signed else f"{{:.{digits}f}}"
        return f"{f.format(self.value)} [{f.format(self.lo)}, {f.format(self.hi)}]"


def bootstrap_weights(groups: Sequence, n_boot: int = 1000, seed: int = 0, strata: Sequence | None = None
                      ) -> np.ndarray:
    """Row weights of ``n_boot`` cluster-bootstrap replicates.

    Args:
        groups: (N,) unit id of every row (rows of one unit are drawn together).
        n_boot: number of replicates B.
        seed: seed of the generator (same inputs + seed -> same weights).
        strata: optional (N,) stratum of every row; units are drawn within their stratum (as many as it has), so
            every replicate keeps each stratum's number of units. A unit must lie in one stratum.
    Returns:
        (B, N) float weights: how often each row's unit was drawn in each replicate.
    """
    groups = np.asarray(groups)
    if groups.ndim != 1:
        raise ValueError(f"bootstrap_weights: groups must be 1-D (N,), got shape {groups.shape}")
    if n_boot < 1:
        raise ValueError(f"bootstrap_weights: n_boot must be >= 1, got {n_boot}")
    strata = np.zeros(len(groups), int) if strata is None else np.asarray(strata)
    if strata.shape != groups.shape:
        raise ValueError(f"bootstrap_weights: strata shape {strata.shape} differs from groups {groups.shape}")
    rng = np.random.default_rng(seed)
    W = np.zeros((n_boot, len(groups)))
    _, g = np.unique(groups, return_inverse=True)
    for s in sorted(set(strata.tolist()), key=str):
        rows = np.flatnonzero(strata == s)
        units, inv = np.unique(g[rows], return_inverse=True)
        if len(np.unique(strata[np.isin(g, units)])) > 1:
            raise ValueError(f"bootstrap_weights: a unit lies in more than one stratum (stratum {s!r})")
        counts = rng.multinomial(len(units), np.full(len(units), 1.0 / len(units)), size=n_boot)  # (B, U)
        W[:, rows] = counts[:, inv]
    return W


def weighted_mean(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Statistic: weighted mean of values (N,) for each row of weights (B, N) -> (B,) (NaN for zero weight)."""
    v = np.asarray(values, dtype=np.float64)
    tot = weights.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tot > 0, weights @ v / np.where(tot > 0, tot, 1), np.nan)


def type_mean(types: Sequence, outer: Sequence | None = None) -> Statistic:
    """Statistic of the paper's PCK/accuracy: the mean over keypoint types of the weighted mean within each type.

    Args:
        types: (N,) type label of every row. Types without weight in a replicate are left out of its mean.
        outer: optional (N,) outer group of every row (e.g. the category; a type must lie in one): then the mean
            over outer groups of the type means within each group ("mean over categories" of per-category PCK).
    Returns:
        statistic(values (N,), weights (B, N)) -> (B,).
    """
    _, t = np.unique(np.asarray(types), return_inverse=True)
    T = int(t.max()) + 1 if len(t) else 0
    onehot = np.zeros((len(t), T))
    onehot[np.arange(len(t)), t] = 1.0
    if outer is not None:
        _, o = np.unique(np.asarray(outer), return_inverse=True)
        if len(o) != len(t):
            raise ValueError(f"type_mean: {len(o)} outer labels but {len(t)} types")
        type_outer = np.zeros((T, int(o.max()) + 1 if len(o) else 0))
        type_outer[t, o] = 1.0
        if len(t) and np.any(type_outer.sum(1) > 1):
            raise ValueError("type_mean: a type lies in more than one outer group")

    def stat(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
        v = np.asarray(values, dtype=np.float64)
        if len(v) != len(t):
            raise ValueError(f"type_mean: {len(v)} values but {len(t)} types")
        if not T:
            return np.full(len(weights), np.nan)
        wt = weights @ onehot  # (B, T) weight per type
        sv = (weights * v) @ onehot
        with np.errstate(invalid="ignore", divide="ignore"):
            present = wt > 0
            per_type = np.where(present, sv / np.where(present, wt, 1), 0.0)
            if outer is None:
                return np.where(present.any(1), per_type.sum(1) / present.sum(1), np.nan)
            n_o = present @ type_outer  # (B, O) types present per outer group
            per_outer = np.where(n_o > 0, (per_type @ type_outer) / np.where(n_o > 0, n_o, 1), 0.0)
            k = (n_o > 0).sum(1)
            return np.where(k > 0, per_outer.sum(1) / np.where(k > 0, k, 1), np.nan)

    return stat


def _interval(point: float, reps: np.ndarray, level: float) -> tuple[float, float]:
    reps = reps[np.isfinite(reps)]
    if not np.isfinite(point) or not len(reps):
        return float("nan"), float("nan")
    a = (1 - level) / 2
    lo, hi = np.quantile(reps, [a, 1 - a])
    return float(lo), float(hi)


def bootstrap_ci(values: Sequence, groups: Sequence, statistic: Statistic | None = None, n_boot: int = 1000,
                 seed: int = 0, level: float = 0.95, strata: Sequence | None = None) -> Estimate:
    """The statistic of ``values`` with its cluster-bootstrap percentile interval.

    Args:
        values: (N,) per-row values (e.g. 1.0 for a correct keypoint, 0.0 otherwise).
        groups: (N,) unit of each row (photo or query); units are resampled with replacement.
        statistic: ``statistic(values, weights (B, N)) -> (B,)``; default :func:`weighted_mean`.
        n_boot, seed: replicates and seed (deterministic).
        level: interval coverage (0.95).
        strata: optional (N,) strata to resample within (see :func:`bootstrap_weights`).
    Returns:
        :class:`Estimate` (value, lo, hi, n rows, n units). Empty input gives NaNs.
    """
    values = np.asarray(values, dtype=np.float64)
    groups = np.asarray(groups)
    if len(values) != len(groups):
        raise ValueError(f"bootstrap_ci: {len(values)} values but {len(groups)} groups")
    stat = statistic or weighted_mean
    if not len(values):
        return Estimate(float("nan"), float("nan"), float("nan"), 0, 0, level, n_boot)
    point = float(stat(values, np.ones((1, len(values))))[0])
    reps = stat(values, bootstrap_weights(groups, n_boot, seed, strata))
    return Estimate(point, *_interval(point, reps, level), len(values), len(np.unique(groups)), level, n_boot)


def paired_difference(a: Sequence, b: Sequence, groups: Sequence, statistic: Statistic | None = None,
                      n_boot: int = 1000, seed: int = 0, level: float = 0.95, strata: Sequence | None = None
                      ) -> Estimate:
    """statistic(a) - statistic(b) on the SAME rows, with an interval from joint resampling of the units.

    Args:
        a, b: (N,) values of two methods on the same N rows (e.g. correctness of conv4 and SIFT per keypoint).
        groups, statistic, n_boot, seed, level, strata: as in :func:`bootstrap_ci`.
    Returns:
        :class:`Estimate` of the difference; ``spans_zero`` says whether the sign is resolved.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    groups = np.asarray(groups)
    if a.shape != b.shape or len(a) != len(groups):
        raise ValueError(f"paired_difference: a {a.shape}, b {b.shape} and groups {groups.shape} must match")
    stat = statistic or weighted_mean
    if not len(a):
        return Estimate(float("nan"), float("nan"), float("nan"), 0, 0, level, n_boot)
    one = np.ones((1, len(a)))
    point = float(stat(a, one)[0] - stat(b, one)[0])
    W = bootstrap_weights(groups, n_boot, seed, strata)
    reps = stat(a, W) - stat(b, W)
    return Estimate(point, *_interval(point, reps, level), len(a), len(np.unique(groups)), level, n_boot)


def verdict(diff: Estimate, a: str, b: str) -> str:
    """One sentence on a paired difference: which is higher, or "not resolved" when the interval spans zero."""
    if not np.isfinite(diff.value):
        return f"{a} vs {b}: no common points."
    s = f"{a} - {b} = {diff.fmt(signed=True)} ({diff.n} points, {diff.n_units} units)"
    if diff.spans_zero:
        return s + ": not resolved (the 95% interval spans zero)."
    return s + f": {a if diff.value > 0 else b} is higher (the 95% interval excludes zero)."
