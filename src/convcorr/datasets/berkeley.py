"""Berkeley PASCAL VOC 2011 keypoint annotations (Bourdev et al.; the paper's annotations).

One XML file per object: ``<image>`` (VOC image id), ``<category>``, ``<visible_bounds xmin ymin width
height>`` and ``<keypoint name x y visible>``. VOC coordinates are 1-based (MATLAB); we subtract 1 from
x, y, xmin and ymin so that the centre of the top-left pixel is (0, 0). The box is
(xmin - 1, ymin - 1, xmin - 1 + width, ymin - 1 + height), so max(w, h) of the box equals the XML's.

Keypoint names: every instance of a category gets the same ``keypoint_names`` tuple, the sorted union of
the category's standard list (:data:`BERKELEY_KEYPOINTS`, given for the four-legged animals whose list is
known: the 16 points of Bourdev et al.'s animal annotations) and every name seen in the loaded files of that
category; for other categories the union of the names seen (so load all files of a category together for a
stable list). Types missing from a file are NaN and invisible. ``visible="0"`` points keep their annotated
(occluded) position with ``visible`` False. Images: ``images/<image>.jpg`` (VOC ``JPEGImages`` layout), which
must lie inside ``images`` (``allow_outside_root=True`` lifts this). A keypoint name given twice in one file,
a non-finite coordinate or box value is a DataError naming the file.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from dataclasses import replace

from ..core.errors import DataError
from ..core.types import Instance
from ._util import (DATASETS, MissingArgument, finite_float, make_instance, require_nonempty, resolve_image_path,
                    validate_images)

_ANIMAL = ("L_B_Elbow", "L_B_Paw", "L_EarBase", "L_Eye", "L_F_Elbow", "L_F_Paw", "Nose", "R_B_Elbow", "R_B_Paw",
           "R_EarBase", "R_Eye", "R_F_Elbow", "R_F_Paw", "TailBase", "Throat", "Withers")
#: category -> standard keypoint names (merged with the names found in the files)
BERKELEY_KEYPOINTS: dict[str, tuple[str, ...]] = {c: _ANIMAL for c in ("cat", "dog", "cow", "horse", "sheep")}


def parse_berkeley_xml(path: str | Path) -> dict:
    """Parse one XML file -> dict(image, category, bbox (4,), keypoints {name: (x, y, visible)}) (0-based)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: annotation file not found")
    try:
        root = ET.parse(path).getroot()
        image = root.findtext("image").strip()
        category = root.findtext("category").strip()
        vb = root.find("visible_bounds")
        x0 = finite_float(vb.get("xmin"), "visible_bounds xmin", path) - 1
        y0 = finite_float(vb.get("ymin"), "visible_bounds ymin", path) - 1
        bw = finite_float(vb.get("width"), "visible_bounds width", path)
        bh = finite_float(vb.get("height"), "visible_bounds height", path)
        bbox = np.array([x0, y0, x0 + bw, y0 + bh])
        kps = {}
        meta = {k: root.findtext(k).strip() for k in ("voc_id", "subcategory") if root.findtext(k)}
        for kp in root.find("keypoints").findall("keypoint"):
            name = kp.get("name")
            if not name:
                raise ValueError("<keypoint> without a name")
            if name in kps:
                raise DataError(f"{path}: duplicate keypoint name {name!r}")
            if kp.get("x") is None or kp.get("y") is None:  # unlocated point: absent
                kps[name] = (np.nan, np.nan, False)
                continue
            kps[name] = (finite_float(kp.get("x"), f"keypoint {name!r} x", path) - 1,
                         finite_float(kp.get("y"), f"keypoint {name!r} y", path) - 1, kp.get("visible", "1") == "1")
    except DataError:
        raise
    except (ET.ParseError, AttributeError, TypeError, ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise DataError(f"{path}: malformed Berkeley keypoint XML ({exc})") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read annotation file ({exc.strerror or exc})") from exc
    if not image or not category:
        raise DataError(f"{path}: malformed Berkeley keypoint XML (empty <image> or <category>)")
    return {"image": image, "category": category, "bbox": bbox, "keypoints": kps, "file": path, "meta": meta}


def load_berkeley_xml(annotations: str | Path, images: str | Path | None = None, category: str | None = None,
                      check_images: bool = False, allow_outside_root: bool = False) -> list[Instance]:
    """Load one XML file or every ``*.xml`` below a folder.

    Args:
        annotations: XML file or folder (searched recursively).
        images: folder holding ``<image>.jpg`` (VOC2011/JPEGImages); None leaves images unresolved.
        category: keep only this category.
        check_images: load every image now (DataError for missing/corrupt images, keypoints outside).
        allow_outside_root: accept image names that lead outside ``images``.
    Raises:
        DataError naming the file: malformed XML, escaping image names, no (matching) files.
    """
    path, image_root = Path(annotations), images
    files = sorted(path.rglob("*.xml")) if path.is_dir() else [path]
    if not files:
        raise DataError(f"{path}: no Berkeley keypoint XML files found")
    recs = [parse_berkeley_xml(f) for f in files]
    if category:
        recs = [r for r in recs if r["category"] == category]
        require_nonempty(recs, path, f"instances of category {category!r}")
    names_by_cat: dict[str, set] = {}
    for r in recs:
        names_by_cat.setdefault(r["category"], set(BERKELEY_KEYPOINTS.get(r["category"], ()))).update(r["keypoints"])
    out = []
    for r in recs:
        names = tuple(sorted(names_by_cat[r["category"]]))
        kp = np.full((len(names), 2), np.nan)
        vis = np.zeros(len(names), bool)
        for i, n in enumerate(names):
            if n in r["keypoints"]:
                x, y, v = r["keypoints"][n]
                kp[i] = (x, y)
                vis[i] = v
        img = (resolve_image_path(image_root, f"{r['image']}.jpg", r["file"], allow_outside_root)
               if image_root else None)
        out.append(make_instance(r["file"], id=f"{r['category']}/{r['file'].stem}", category=r["category"],
                                 bbox=r["bbox"], keypoint_names=names, keypoints=kp, visible=vis, image_path=img,
                                 meta={"dataset": "berkeley", "annotation": str(r["file"]), "image_id": r["image"],
                                       **r["meta"]}))
    validate_images(out, check_images)
    return out


@DATASETS.register("berkeley", kind="instances")
def berkeley_dataset(root=None, annotations=None, images=None, **options) -> list[Instance]:
    """PASCAL VOC 2011 with the Berkeley keypoints: ``root`` (the VOC2011 folder) with ``JPEGImages/`` (default
    ``images``) and the XML in ``annotations/`` (default ``annotations``); or ``annotations`` alone (images then
    unresolved unless ``images`` is given). With ``root``, ``meta['split']`` is "test" for the images listed in
    ``root/ImageSets/Main/val.txt`` (the paper: neighbours from train, queries from val), else "train". Other
    options as :func:`load_berkeley_xml`."""
    if not root and not annotations:
        raise MissingArgument("berkeley", "root", "the VOC2011 folder with JPEGImages/ and the Berkeley keypoint XML "
                                                  "in annotations/; PASCAL images are not in the shared folder")
    if root:
        root = Path(root)
        if not annotations and not (root / "annotations").is_dir() or not images and not (root / "JPEGImages").is_dir():
            raise FileNotFoundError(f"{root}: expected JPEGImages/ and annotations/ (Berkeley keypoint XML) inside")
    insts = load_berkeley_xml(annotations or root / "annotations", images or (root / "JPEGImages" if root else None),
                              **options)
    split = root / "ImageSets" / "Main" / "val.txt" if root else None
    val = set(split.read_text().split()) if split is not None and split.is_file() else None
    if val is None:
        return insts
    return [replace(i, meta=dict(i.meta, split="test" if Path(i.image_path).stem in val else "train"))
            if i.image_path is not None else i for i in insts]
