"""PCK: percentage of correct keypoints. The one implementation in convcorr.

A predicted keypoint (x, y) is correct when its Euclidean distance to the
ground truth is at most ``alpha * L``, where ``L`` is the normaliser of its
instance: ``max(bbox height, bbox width)`` (``norm="bbox"``, the paper's
choice) or ``max(image height, image width)`` (``norm="image"``, used by
PF-PASCAL / SPair style protocols).

Averaging:
  * ``average="type"`` (the paper): PCK is computed separately for every
    keypoint type and the per-type values are averaged, so rare types weigh
    as much as frequent ones.
  * ``average="point"``: the fraction of all points that are correct.
"""
from __future__ import annotations

from typing import Iterable, Optional, Sequence

import numpy as np

PAPER_ALPHAS = (0.1, 0.05, 0.025)


def normaliser(bbox: Optional[Sequence[float]] = None, image_shape: Optional[Sequence[int]] = None,
               norm: str = "bbox") -> float:
    """The PCK length L in pixels.

    Args:
        bbox: (x0, y0, x1, y1) in pixels, for ``norm="bbox"``.
        image_shape: (H, W, ...) of the image, for ``norm="image"``.
        norm: "bbox" or "image".
    """
    if norm == "bbox":
        if bbox is None:
            raise ValueError("norm='bbox' needs a bbox (x0, y0, x1, y1)")
        x0, y0, x1, y1 = [float(v) for v in bbox]
        if not np.all(np.isfinite([x0, y0, x1, y1])):
            raise ValueError(f"bbox: non-finite bounding box {[x0, y0, x1, y1]}")
        if not (x1 > x0 and y1 > y0):
            raise ValueError(f"empty bounding box {[x0, y0, x1, y1]}")
        L = max(x1 - x0, y1 - y0)
    elif norm == "image":
        if image_shape is None:
            raise ValueError("norm='image' needs image_shape (H, W)")
        L = float(max(float(image_shape[0]), float(image_shape[1])))
    else:
        raise ValueError(f"unknown norm {norm!r}: use 'bbox' or 'image'")
    if not (L > 0 and np.isfinite(L)):
        raise ValueError(f"PCK normaliser must be positive and finite, got {L}")
    return float(L)


def check_alpha(alpha) -> float:
    """``alpha`` as a float in (0, 1]; ValueError naming ``alpha`` otherwise."""
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        raise ValueError(f"alpha must be a number in (0, 1], got {alpha!r}") from None
    if not (0 < a <= 1):
        raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
    return a


def check_normaliser(L, n: int) -> np.ndarray:
    """``L`` (scalar or (n,)) broadcast to (n,) float; ValueError naming ``L`` unless every value is finite > 0."""
    try:
        L = np.broadcast_to(np.asarray(L, dtype=np.float64), (n,))
    except (TypeError, ValueError):
        raise ValueError(f"L: PCK normaliser must be a scalar or one value per point ({n}), got shape "
                         f"{np.shape(L)}") from None
    if not np.all(np.isfinite(L) & (L > 0)):
        bad = L[~(np.isfinite(L) & (L > 0))]
        raise ValueError(f"L: PCK normalisers must be finite and > 0, got {bad[:5].tolist()}")
    return L


def correct(pred: np.ndarray, gt: np.ndarray, L: np.ndarray | float, alpha: float) -> np.ndarray:
    """Per-point correctness: ``||pred - gt|| <= alpha * L``.

    Args:
        pred, gt: (N, 2) (x, y) in pixels.
        L: scalar or (N,) normaliser in pixels.
        alpha: threshold as a fraction of L, in (0, 1].
    Returns:
        (N,) bool. Non-finite predictions count as wrong.
    Raises:
        ValueError naming the argument: shapes differ, non-finite ``gt``, ``L`` <= 0 or non-finite, ``alpha``
        outside (0, 1].
    """
    pred = np.asarray(pred, dtype=np.float64).reshape(-1, 2)
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 2)
    if pred.shape != gt.shape:
        raise ValueError(f"pred {pred.shape} and gt {gt.shape} differ in shape")
    if not np.all(np.isfinite(gt)):
        raise ValueError("ground truth contains non-finite coordinates; mask them out first")
    alpha = check_alpha(alpha)
    L = check_normaliser(L, len(gt))
    d = np.linalg.norm(pred - gt, axis=1)
    return np.where(np.isfinite(d), d <= alpha * L, False)


def pck(pred: np.ndarray, gt: np.ndarray, L: np.ndarray | float, alpha: float = 0.1,
        types: Optional[Sequence] = None, average: str = "type") -> float:
    """PCK at one alpha.

    Args:
        pred, gt: (N, 2) (x, y) in pixels.
        L: scalar or (N,) normaliser in pixels (see :func:`normaliser`).
        alpha: threshold fraction.
        types: (N,) keypoint-type labels; required for ``average="type"``.
        average: "type" (mean over keypoint types of per-type PCK) or "point".
    Returns:
        PCK in [0, 1]; NaN when there are no points.
    """
    ok = correct(pred, gt, L, alpha)
    if len(ok) == 0:
        return float("nan")
    if average == "point":
        return float(ok.mean())
    if average != "type":
        raise ValueError(f"unknown average {average!r}: use 'type' or 'point'")
    if types is None:
        raise ValueError("average='type' needs the keypoint type of every point")
    types = np.asarray(types)
    if len(types) != len(ok):
        raise ValueError(f"{len(types)} type labels for {len(ok)} points")
    return float(np.mean([ok[types == t].mean() for t in np.unique(types)]))


def pck_curve(pred: np.ndarray, gt: np.ndarray, L: np.ndarray | float,
              alphas: Iterable[float] = PAPER_ALPHAS, types: Optional[Sequence] = None,
              average: str = "type") -> dict[float, float]:
    """PCK at several alphas: {alpha: pck}."""
    return {float(a): pck(pred, gt, L, a, types=types, average=average) for a in alphas}


def per_type_pck(pred: np.ndarray, gt: np.ndarray, L: np.ndarray | float, alpha: float,
                 types: Sequence) -> dict:
    """{type: PCK of that type} at one alpha."""
    ok = correct(pred, gt, L, alpha)
    types = np.asarray(types)
    return {t.item() if hasattr(t, "item") else t: float(ok[types == t].mean()) for t in np.unique(types)}
