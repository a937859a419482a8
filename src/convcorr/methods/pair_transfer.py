"""Keypoint transfer within one image pair, at the methods level (used by the pair benchmark and the study
across backbones): how both images are prepared, the box-copy baseline, and the PCK record of a prediction.

- :func:`prepare`: ``crop="box"`` (the instance box + ``margin`` on every side, the paper's setting) or
  ``crop="image"`` (the whole image, as SPair/PF benchmarks do), resized to ``size`` x ``size`` pixels, with the
  exact :class:`convcorr.core.crops.CropTransform` between original and prepared pixels.
- the box-copy baseline is :func:`convcorr.methods.transfer.box_copy` (``box_copy(source, target.bbox)``).
- :func:`transfer_by_matcher`: the source keypoints moved to the target through a matcher's correspondence of
  the two feature grids, in original target pixels (the unit of work both experiments run in parallel), from the
  inputs :func:`transfer_inputs` gathers for one pair.
- :func:`pair_record`: a :class:`convcorr.evaluation.pck.PairKeypoints` of predicted target points (original pixels) for
  :func:`convcorr.evaluation.pck.evaluate`.
"""
from __future__ import annotations

import numpy as np

from ..evaluation.pck import PairKeypoints

CROPS = ("box", "image")


def prepare(inst, crop: str, margin: float, size: int):
    """(image (size, size, 3) uint8, CropTransform) of an instance: its box + margin or the whole image, resized."""
    from ..core.crops import CropTransform, crop_instance
    from ..core.images import resize_image

    if crop == "box":
        return crop_instance(inst, margin, size)
    if crop == "image":
        img = inst.load()
        H, W = img.shape[:2]
        return resize_image(img, (size, size)), CropTransform(0, 0, W, H, int(size))
    from ..core.errors import ConfigError

    raise ConfigError(f"option 'crop' must be one of {list(CROPS)}, got {crop!r}")


def source_points(source) -> np.ndarray:
    """(K,) bool: source keypoints that can be transferred (visible, finite)."""
    return np.asarray(source.visible, bool) & np.all(np.isfinite(source.keypoints), axis=1)


def transfer_inputs(pair, prepared: dict) -> tuple:
    """What :func:`transfer_by_matcher` needs of a :class:`convcorr.core.types.Pair`, small and picklable (a task's
    share of the work): (source id, target id, source keypoints (K, 2), transferable (K,) (:func:`source_points`),
    source crop transform, target crop transform); ``prepared``: {image id: (image, CropTransform)}
    (:func:`prepare`)."""
    s, t = pair.source, pair.target
    return s.id, t.id, s.keypoints, source_points(s), prepared[s.id][1], prepared[t.id][1]


def transfer_by_matcher(matcher, grid_s, grid_t, keypoints: np.ndarray, visible: np.ndarray, tf_s, tf_t,
                        points_only: bool = False) -> np.ndarray:
    """(K, 2) predicted target points (original target pixels; NaN where ``visible`` is False) of the (K, 2)
    source ``keypoints`` (original source pixels).

    Both feature grids are of the prepared images (:func:`prepare`; ``tf_s`` / ``tf_t`` their crop transforms).
    ``points_only=False``: ``matcher.match(grid_s, grid_t).transfer(...)`` (the whole correspondence);
    ``points_only=True``: ``matcher.transfer_points`` (only the columns the pixel map reads at the points, the
    same result for matchers that implement it and cheaper).
    """
    vis = np.asarray(visible, bool)
    pred = np.full((len(vis), 2), np.nan)
    if not vis.any():
        return pred
    xy = tf_s.to_crop(np.asarray(keypoints, float)[vis])
    moved = matcher.transfer_points(grid_s, grid_t, xy) if points_only else matcher.match(grid_s, grid_t).transfer(xy)
    pred[vis] = tf_t.from_crop(moved)
    return pred


def pair_record(pair, pred: np.ndarray, tf_s, tf_t) -> PairKeypoints:
    """PCK record of (K, 2) predicted target points (original target pixels, one per SOURCE keypoint name) of a
    :class:`convcorr.core.types.Pair`; ``tf_s`` / ``tf_t``: the two images' crop transforms (for
    ``resolution="resized"`` protocols)."""
    s, t = pair.source, pair.target
    tidx = {n: i for i, n in enumerate(t.keypoint_names)}
    names = s.keypoint_names
    gt = np.full((len(names), 2), np.nan)
    tv = np.zeros(len(names), bool)
    for i, n in enumerate(names):
        if n in tidx:
            gt[i], tv[i] = t.keypoints[tidx[n]], t.visible[tidx[n]]
    return PairKeypoints(f"{s.id} -> {t.id}", s.category, names, pred, np.where(tv[:, None], gt, np.nan),
                         s.visible, tv, s.bbox, t.bbox, s.load().shape[:2], t.load().shape[:2],
                         eval_source_scale=tuple(tf_s.scale), eval_target_scale=tuple(tf_t.scale))
