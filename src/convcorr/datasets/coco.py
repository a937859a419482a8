"""COCO-style keypoint JSON (COCO, AP-10K, Animal-Pose, Horse-10, 300-W ... as used by mmpose).

``keypoints`` are flat (x, y, v) triples; v > 0 means annotated (v = 1 labelled but occluded, v = 2 visible);
both count as visible here since the point is located. Coordinates are taken as pixel-centre coordinates
(COCO's continuous frame differs by half a pixel; we do not shift). ``bbox`` [x, y, w, h] -> (x, y, x + w, y + h).
Keypoint names come from the category's ``keypoints`` list, or ``p1..pK`` when the list is empty (300-W,
300W-LP, AFLW).

Options for files that differ from the plain COCO layout: ``strip_prefix`` drops a leading part of every
``file_name`` (Human-Art's names start with ``HumanArt/images/``, which is not part of its image folder);
``truncate_names`` accepts annotations with fewer keypoints than the category lists and names them by the
first names (Human-Art lists 21 names, each annotation holds the 17 COCO points); ``relabel`` maps file-name
patterns (``fnmatch``) to a category (the Animal-Pose fixture labels its cat and its horse "cat":
``relabel={"ho*": "horse"}``). ``meta['supercategory']`` keeps the category's supercategory (AP-10K families).
"""
from __future__ import annotations

from fnmatch import fnmatch
from pathlib import Path

import numpy as np

from ..types import DataError, Instance
from ._util import read_json, resolve_image_path, validate_images


def load_coco_keypoints(json_path: str | Path, image_dir: str | Path | None = None, category: str | None = None,
                        min_keypoints: int = 1, check_images: bool = False, strip_prefix: str | None = None,
                        truncate_names: bool = False, relabel: dict | None = None) -> list[Instance]:
    """Load every annotation with at least ``min_keypoints`` annotated points as an Instance."""
    json_path = Path(json_path)
    d = read_json(json_path)
    try:
        images = {im["id"]: im for im in d["images"]}
        cats = {c["id"]: c for c in d["categories"]}
        anns = d["annotations"]
    except (KeyError, TypeError) as exc:
        raise DataError(f"{json_path}: not a COCO keypoint file (missing {exc})") from exc
    image_dir = Path(image_dir) if image_dir else json_path.parent
    out = []
    for a in anns:
        try:
            cat = cats[a["category_id"]]
            kp = np.asarray(a["keypoints"], dtype=np.float64).reshape(-1, 3)
            x, y, w, h = [float(v) for v in a["bbox"]]
            im = images[a["image_id"]]
        except (KeyError, ValueError, TypeError) as exc:
            raise DataError(f"{json_path}: malformed annotation {a.get('id', '?')} ({exc})") from exc
        fname = str(im["file_name"])
        if strip_prefix and fname.startswith(strip_prefix):
            fname = fname[len(strip_prefix):]
        cname = cat["name"]
        for pattern, new in (relabel or {}).items():
            if fnmatch(Path(fname).name, pattern) or fnmatch(fname, pattern):
                cname = new
                break
        if category and cname != category:
            continue
        names = tuple(cat.get("keypoints") or [f"p{i + 1}" for i in range(len(kp))])
        if truncate_names and len(kp) < len(names):
            names = names[:len(kp)]
        if len(names) != len(kp):
            raise DataError(f"{json_path}: annotation {a.get('id')} has {len(kp)} keypoints, category {len(names)}"
                            + (" (truncate_names=True names them by the first names)" if len(kp) < len(names)
                               else ""))
        vis = kp[:, 2] > 0
        if vis.sum() < min_keypoints:
            continue
        xy = np.where(vis[:, None], kp[:, :2], np.nan)
        if w <= 0 or h <= 0:
            raise DataError(f"{json_path}: annotation {a.get('id')} has an empty box {a['bbox']}")
        out.append(Instance(id=f"{json_path.parent.name}/{fname}#{a.get('id', len(out))}", category=cname,
                            bbox=(x, y, x + w, y + h), keypoint_names=names, keypoints=xy, visible=vis,
                            image_path=resolve_image_path(image_dir, fname, json_path),
                            meta={"dataset": "coco", "annotation": str(json_path),
                                  "supercategory": cat.get("supercategory", cname)}))
    validate_images(out, check_images)
    return out
