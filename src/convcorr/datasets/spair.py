"""SPair-71k (Min et al. 2019): ``PairAnnotation/<split>/*.json`` plus ``JPEGImages/<category>/<image>``.

Each pair JSON holds ``src_imname``, ``trg_imname``, ``category``, ``src_kps``/``trg_kps`` ([[x, y], ...] in
pixels), ``kps_ids`` (keypoint type ids shared across the category), ``src_bndbox``/``trg_bndbox``
(x0, y0, x1, y1). Coordinates are used as stored (0-based pixels, as in the SPair evaluation code).
Keypoint names are ``kp<id>``; a pair lists only the ids annotated in both images, so all are visible.
SPair's PCK normaliser is the target box's max side (``Instance.bbox_size``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..types import DataError, Instance, Pair
from ._util import read_json, validate_images


def load_spair(root: str | Path, split: str = "test", category: str | None = None,
               check_images: bool = False) -> list[Pair]:
    """Load the pairs of one split (``trn``, ``val`` or ``test``), optionally of one category."""
    root = Path(root)
    folder = root / "PairAnnotation" / split
    if not folder.is_dir():
        raise DataError(f"{folder}: SPair-71k pair annotation folder not found")
    pairs = []
    for f in sorted(folder.glob("*.json")):
        d = read_json(f)
        try:
            cat = d["category"]
            if category and cat != category:
                continue
            names = tuple(f"kp{int(k)}" for k in d["kps_ids"])
            insts = []
            for side in ("src", "trg"):
                xy = np.asarray(d[f"{side}_kps"], dtype=np.float64).reshape(-1, 2)
                if len(xy) != len(names):
                    raise DataError(f"{f}: {len(xy)} {side} keypoints for {len(names)} ids")
                insts.append(Instance(id=f"{cat}/{d[f'{side}_imname']}", category=cat, bbox=d[f"{side}_bndbox"],
                                      keypoint_names=names, keypoints=xy, visible=np.ones(len(names), bool),
                                      image_path=root / "JPEGImages" / cat / d[f"{side}_imname"],
                                      meta={"dataset": "spair", "annotation": str(f),
                                            "imsize": d.get(f"{side}_imsize")}))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{f}: malformed SPair-71k pair annotation ({exc})") from exc
        pairs.append(Pair(*insts))
    if not pairs:
        raise DataError(f"{folder}: no pairs found" + (f" for category {category!r}" if category else ""))
    validate_images([p.source for p in pairs] + [p.target for p in pairs], check_images)
    return pairs
