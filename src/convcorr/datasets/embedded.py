"""The embedded default data: real annotated photos from the shared folder, by category.

* ``face``: the iBUG-68 faces (``keypoints/faces-ibug68``, the 68-point files) and the two 300-W faces
  (``keypoints/mmpose-fixtures/300w``), sharing keypoint names p1..p68.
* one category per mmpose animal fixture with its own keypoint set: ``ap10k`` (17 points), ``animalpose``
  (20), ``horse10`` (22), ``zebra`` (9).
Images larger than ``max_side`` are downscaled (keypoints and box scaled by the same factor, pixel-centre
convention of :func:`convcorr.geometry.scale_points`). The Berkeley PASCAL XML and PF-PASCAL CSV fixtures have
no images and are not part of the embedded data.
"""
from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

import numpy as np

from ..geometry import scale_points
from ..paths import require_shared
from ..types import Instance, resize_image
from .coco import load_coco_keypoints
from .ibug import load_ibug_folder

_ANIMALS = ("ap10k", "animalpose", "horse10", "zebra")


def downscale(inst: Instance, max_side: int) -> Instance:
    """Load the image and shrink it so that max(H, W) <= max_side (keypoints/box follow exactly)."""
    img = inst.load()
    H, W = img.shape[:2]
    s = max_side / max(H, W)
    if s >= 1:
        return replace(inst, image=img)
    h, w = max(1, round(H * s)), max(1, round(W * s))
    kp = scale_points(inst.keypoints, (H, W), (h, w))
    b = inst.bbox
    box = np.concatenate([scale_points(b[:2][None], (H, W), (h, w))[0], scale_points(b[2:][None], (H, W), (h, w))[0]])
    return replace(inst, image=resize_image(img, (h, w)), keypoints=kp, bbox=box,
                   meta=dict(inst.meta, scale=(w / W, h / H)))


@lru_cache(maxsize=8)
def _load(category: str | None, max_side: int) -> tuple[Instance, ...]:
    out: list[Instance] = []
    if category in (None, "face"):
        out += load_ibug_folder(require_shared("keypoints", "faces-ibug68"), n_points=68)
        w300 = require_shared("keypoints", "mmpose-fixtures", "300w")
        out += [replace(i, category="face", meta=dict(i.meta, species=i.category))
                for i in load_coco_keypoints(w300 / "test_300w.json", w300)]
    for a in _ANIMALS:
        if category in (None, a):
            folder = require_shared("keypoints", "mmpose-fixtures", a)
            js = next(folder.glob("*.json"))
            out += [replace(i, category=a, meta=dict(i.meta, species=i.category))
                    for i in load_coco_keypoints(js, folder, min_keypoints=3)]
    if category is not None and not out:
        raise KeyError(f"unknown embedded category {category!r}; categories: {['face', *_ANIMALS]}")
    return tuple(downscale(i, max_side) for i in out)


def embedded_instances(category: str | None = None, max_side: int = 400) -> list[Instance]:
    """Real annotated instances from the shared folder (all categories, or one), images loaded.

    Returns fresh copies (arrays, image and meta) of a cached list, so callers may modify them.
    """
    return [replace(i, bbox=i.bbox.copy(), keypoints=i.keypoints.copy(), visible=i.visible.copy(),
                    image=i.image.copy(), meta=dict(i.meta)) for i in _load(category, max_side)]


def embedded_categories(max_side: int = 400) -> dict[str, int]:
    """{category: number of real instances}."""
    counts: dict[str, int] = {}
    for i in _load(None, max_side):
        counts[i.category] = counts.get(i.category, 0) + 1
    return counts
