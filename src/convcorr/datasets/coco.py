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

Images are ``images/<file_name>`` and must lie inside ``images`` (``allow_outside_root=True`` lifts this).
Duplicate keypoint names, unknown image/category ids, non-finite coordinates of annotated points or boxes, and a
file without any (matching) annotation are DataErrors naming the file.
"""
from __future__ import annotations

from fnmatch import fnmatch
from pathlib import Path

import numpy as np

from ..core.errors import DataError
from ..core.types import Instance
from ._util import (DATASETS, check_names_unique, data_path, finite_float, make_instance, read_json,
                    resolve_image_path, validate_images)


def load_coco_keypoints(annotations: str | Path, images: str | Path | None = None, category: str | None = None,
                        min_keypoints: int = 1, check_images: bool = False, strip_prefix: str | None = None,
                        truncate_names: bool = False, relabel: dict | None = None,
                        allow_outside_root: bool = False) -> list[Instance]:
    """Load every annotation with at least ``min_keypoints`` annotated points as an Instance.

    Args:
        annotations: the COCO keypoint JSON file.
        images: the image folder (default: the JSON's folder).
    Raises:
        DataError naming ``annotations`` for malformed files, escaping image names and when no annotation is left.
    """
    json_path = Path(annotations)
    image_dir = images
    d = read_json(json_path)
    try:
        image_list = {im["id"]: im for im in d["images"]}
        cats = {c["id"]: c for c in d["categories"]}
        anns = list(d["annotations"])
    except (KeyError, TypeError) as exc:
        raise DataError(f"{json_path}: not a COCO keypoint file (missing or malformed {exc})") from exc
    image_dir = Path(image_dir) if image_dir else json_path.parent
    out = []
    for a in anns:
        aid = a.get("id", "?") if isinstance(a, dict) else "?"
        where = f"{json_path}: annotation {aid}"
        try:
            if a["category_id"] not in cats:
                raise DataError(f"{where} has an unknown category_id {a['category_id']!r}")
            if a["image_id"] not in image_list:
                raise DataError(f"{where} has an unknown image_id {a['image_id']!r}")
            cat = cats[a["category_id"]]
            kp = np.asarray(a["keypoints"], dtype=np.float64).reshape(-1, 3)
            if len(a["bbox"]) != 4:
                raise ValueError(f"bbox has {len(a['bbox'])} values")
            x, y, w, h = [finite_float(v, "bbox", where) for v in a["bbox"]]
            im = image_list[a["image_id"]]
            cname = str(cat["name"])
            file_name = im["file_name"]
            cat_names = cat.get("keypoints") or []
        except DataError:
            raise
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise DataError(f"{json_path}: malformed annotation {aid} ({exc})") from exc
        if not isinstance(file_name, str):
            raise DataError(f"{where}: file_name {file_name!r} is not a string")
        fname = file_name
        if strip_prefix and fname.startswith(strip_prefix):
            fname = fname[len(strip_prefix):]
        for pattern, new in (relabel or {}).items():
            if fnmatch(Path(fname).name, pattern) or fnmatch(fname, pattern):
                cname = new
                break
        if category and cname != category:
            continue
        if not isinstance(cat_names, list) or not all(isinstance(n, str) for n in cat_names):
            raise DataError(f"{json_path}: category {cname!r} keypoints must be a list of names")
        names = tuple(cat_names or [f"p{i + 1}" for i in range(len(kp))])
        check_names_unique(names, f"{json_path} (category {cname!r})")
        if truncate_names and len(kp) < len(names):
            names = names[:len(kp)]
        if len(names) != len(kp):
            raise DataError(f"{where} has {len(kp)} keypoints, category {len(names)} ({cname!r})"
                            + (" (truncate_names=True names them by the first names)" if len(kp) < len(names)
                               else ""))
        vis = kp[:, 2] > 0
        if vis.sum() < min_keypoints:
            continue
        if w <= 0 or h <= 0:
            raise DataError(f"{where} has an empty box {a['bbox']}")
        xy = np.where(vis[:, None], kp[:, :2], np.nan)
        out.append(make_instance(where, id=f"{json_path.parent.name}/{fname}#{a.get('id', len(out))}",
                                 category=cname, bbox=(x, y, x + w, y + h), keypoint_names=names, keypoints=xy,
                                 visible=vis,
                                 image_path=resolve_image_path(image_dir, fname, where, allow_outside_root),
                                 meta={"dataset": "coco", "annotation": str(json_path),
                                       "supercategory": cat.get("supercategory", cname)}))
    if not out:
        raise DataError(f"{json_path}: no annotation with at least {min_keypoints} keypoints"
                        + (f" of category {category!r}" if category else ""))
    validate_images(out, check_images)
    return out


#: options of the COCO reader that experiments pass from their configuration (files that differ from plain COCO)
_COCO_OPTIONS = ("strip_prefix", "truncate_names", "relabel")


@DATASETS.register("coco", kind="instances", options=_COCO_OPTIONS)
def coco_dataset(root=None, annotations=None, images=None, min_keypoints: int = 2, **options) -> list[Instance]:
    """Any COCO keypoint file: ``annotations`` (the JSON, required) with its image folder ``images`` (default: the
    JSON's folder; ``root`` is not used). Instances with at least ``min_keypoints`` annotated points; other options
    as :func:`load_coco_keypoints`."""
    ann = data_path(annotations, "coco", "annotations", "a COCO keypoint JSON file")
    return load_coco_keypoints(ann, images or ann.parent, min_keypoints=min_keypoints, **options)


@DATASETS.register("ap10k", kind="instances", options=_COCO_OPTIONS)
def ap10k_dataset(root=None, annotations=None, images=None, min_keypoints: int = 2, **options) -> list[Instance]:
    """AP-10K (a COCO file): ``annotations`` or ``root/annotations/ap10k-test-split1.json``, images in ``images``
    or ``root/data`` (with ``annotations`` given: the JSON's folder). Cross pairs by species (``pair_by="category"``)
    or family (``"supercategory"``)."""
    if not annotations:
        folder = data_path(root, "ap10k", "root", "the AP-10K folder with annotations/ and data/")
        annotations, images = folder / "annotations" / "ap10k-test-split1.json", images or folder / "data"
    return coco_dataset(None, annotations, images, min_keypoints, **options)
