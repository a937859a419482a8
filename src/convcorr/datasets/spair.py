"""SPair-71k (Min et al. 2019): ``PairAnnotation/<split>/*.json`` plus ``JPEGImages/<category>/<image>``.

Each pair JSON holds ``src_imname``, ``trg_imname``, ``category``, ``src_kps``/``trg_kps`` ([[x, y], ...] in
pixels), ``kps_ids`` (keypoint type ids shared across the category), ``src_bndbox``/``trg_bndbox``
(x0, y0, x1, y1). Coordinates are used as stored (0-based pixels, as in the SPair evaluation code).
Keypoint names are ``kp<id>``; a pair lists only the ids annotated in both images, so all are visible.
SPair's PCK normaliser is the target box's max side (``Instance.bbox_size``).
Images ``JPEGImages/<category>/<image>`` must lie inside ``root`` (``allow_outside_root=True`` lifts this);
duplicate keypoint ids, non-finite coordinates and an empty split are DataErrors naming the file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import DataError
from ..core.types import Pair
from ._util import DATASETS, data_path, make_instance, read_json, resolve_image_path, validate_images


def load_spair(root: str | Path, split: str = "test", category: str | None = None,
               check_images: bool = False, allow_outside_root: bool = False) -> list[Pair]:
    """Load the pairs of one split (``trn``, ``val`` or ``test``), optionally of one category.

    Raises:
        DataError naming the pair file for malformed annotations and escaping image names; naming the folder when
        it holds no (matching) pair.
    """
    root = Path(root)
    if not isinstance(split, str) or split not in ("trn", "val", "test"):
        raise DataError(f"{root}: SPair-71k split must be 'trn', 'val' or 'test', got {split!r}")
    folder = root / "PairAnnotation" / split
    if not folder.is_dir():
        raise DataError(f"{folder}: SPair-71k pair annotation folder not found")
    pairs = []
    for f in sorted(folder.glob("*.json")):
        d = read_json(f)
        try:
            if not isinstance(d, dict):
                raise TypeError("top level is not an object")
            cat = d["category"]
            if not isinstance(cat, str):
                raise TypeError(f"category {cat!r} is not a string")
            if category and cat != category:
                continue
            names = tuple(f"kp{int(k)}" for k in d["kps_ids"])
            insts = []
            for side in ("src", "trg"):
                xy = np.asarray(d[f"{side}_kps"], dtype=np.float64).reshape(-1, 2)
                if len(xy) != len(names):
                    raise DataError(f"{f}: {len(xy)} {side} keypoints for {len(names)} ids")
                imname = d[f"{side}_imname"]
                if not isinstance(imname, str):
                    raise TypeError(f"{side}_imname {imname!r} is not a string")
                img = resolve_image_path(root, f"JPEGImages/{cat}/{imname}", f, allow_outside_root)
                insts.append(make_instance(f, id=f"{cat}/{imname}", category=cat,
                                           bbox=np.asarray(d[f"{side}_bndbox"], dtype=np.float64),
                                           keypoint_names=names, keypoints=xy, visible=np.ones(len(names), bool),
                                           image_path=img, meta={"dataset": "spair", "annotation": str(f),
                                                                 "imsize": d.get(f"{side}_imsize")}))
        except DataError:
            raise
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise DataError(f"{f}: malformed SPair-71k pair annotation ({exc})") from exc
        pairs.append(Pair(*insts))
    if not pairs:
        raise DataError(f"{folder}: no pairs found" + (f" for category {category!r}" if category else ""))
    validate_images([p.source for p in pairs] + [p.target for p in pairs], check_images)
    return pairs


@DATASETS.register("spair", kind="pairs", options=("split",))
def spair_dataset(root=None, annotations=None, images=None, split: str | None = "test", **options) -> list[Pair]:
    """SPair-71k at ``root`` (with ``PairAnnotation/`` and ``JPEGImages/``), the pairs of ``split`` (default
    "test"). Other options as :func:`load_spair`."""
    return load_spair(data_path(root, "spair", "root", "the SPair-71k folder with PairAnnotation/ and JPEGImages/"),
                      split=split or "test", **options)
