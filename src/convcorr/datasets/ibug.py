"""iBUG / 300-W 68-point face landmarks: ``.pts`` files and menpo ``.ljson`` files.

* ``.pts`` (version 1): ``n_points: K`` then K lines ``x y`` between braces, 1-based as is common for iBUG data
  (menpo's convention): we subtract 1.
* ``.ljson`` (menpo): ``groups.LJSON.landmarks.points`` as [y, x] pairs in menpo's 0-based (row, column) order:
  we swap them to (x, y).
Keypoint names are ``p1..pK`` (the 300-W COCO file uses the same order), category ``face``, and the box is
the landmarks' extent (faces have no separate box annotation). The image found beside a landmark file must lie
inside that file's folder (a symlink leading elsewhere is refused unless ``allow_outside_root=True``); an
explicit ``image_path`` is the caller's choice and is used as given. Non-finite coordinates and an empty folder
are DataErrors naming the file / folder.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..core.errors import DataError
from ..core.types import Instance
from ._util import DATASETS, data_path, extent_box, make_instance, read_json, read_text, resolve_image_path, validate_images

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp")


def read_pts(path: str | Path) -> np.ndarray:
    """(K, 2) (x, y) 0-based points of a ``.pts`` file."""
    path = Path(path)
    text = read_text(path, "landmark file")
    m = re.search(r"n_points:\s*(\d+)\s*\{(.*?)\}", text, re.S)
    if not m:
        raise DataError(f"{path}: malformed .pts file (expected 'n_points: K {{ ... }}')")
    try:
        pts = np.array(m.group(2).split(), dtype=np.float64).reshape(-1, 2)
    except ValueError as exc:
        raise DataError(f"{path}: malformed .pts coordinates ({exc})") from exc
    if len(pts) != int(m.group(1)):
        raise DataError(f"{path}: n_points says {m.group(1)} but {len(pts)} points follow")
    if not np.all(np.isfinite(pts)):
        raise DataError(f"{path}: non-finite landmark coordinates")
    return pts - 1.0


def read_ljson(path: str | Path) -> np.ndarray:
    """(K, 2) (x, y) points of a menpo ``.ljson`` file (stored as [y, x])."""
    d = read_json(path)
    try:
        groups = d["groups"]
        g = groups.get("LJSON") or next(iter(groups.values()))
        yx = np.array([[np.nan, np.nan] if p is None else p for p in g["landmarks"]["points"]], dtype=np.float64)
        yx = yx.reshape(-1, 2)
    except (KeyError, StopIteration, ValueError, TypeError, AttributeError) as exc:
        raise DataError(f"{path}: malformed menpo .ljson ({exc})") from exc
    if np.any(np.isinf(yx)):
        raise DataError(f"{path}: non-finite landmark coordinates")
    return yx[:, ::-1].copy()


def _find_image(stem_path: Path, allow_outside: bool = False) -> Path | None:
    for s in _IMAGE_SUFFIXES:
        p = stem_path.with_suffix(s)
        if p.is_file():
            return resolve_image_path(p.parent, p.name, stem_path, allow_outside)
    return None


def load_ibug(annotations: str | Path, image_path: str | Path | None = None, check_images: bool = False,
              allow_outside_root: bool = False) -> Instance:
    """Load one ``.pts`` or ``.ljson`` landmark file (``annotations``); the image is found beside it unless given."""
    path = Path(annotations)
    pts = read_ljson(path) if path.suffix == ".ljson" else read_pts(path)
    img = Path(image_path) if image_path else _find_image(path, allow_outside_root)
    vis = np.all(np.isfinite(pts), axis=1)
    inst = make_instance(path, id=f"face/{path.stem}", category="face", bbox=extent_box(pts, str(path)),
                    keypoint_names=tuple(f"p{i + 1}" for i in range(len(pts))), keypoints=pts, visible=vis,
                    image_path=img, meta={"dataset": "ibug", "annotation": str(path)})
    validate_images([inst], check_images)
    return inst


def load_ibug_folder(root: str | Path, n_points: int | None = 68, allow_outside_root: bool = False
                     ) -> list[Instance]:
    """Every ``.pts`` / ``.ljson`` file of the folder ``root`` (only those with ``n_points`` landmarks, if given),
    each image beside its landmark file.

    Raises:
        DataError naming the folder when it does not exist or holds no (matching) landmark file.
    """
    folder = Path(root)
    if not folder.is_dir():
        raise DataError(f"{folder}: landmark folder not found")
    out = []
    for f in sorted(list(folder.glob("*.pts")) + list(folder.glob("*.ljson"))):
        inst = load_ibug(f, allow_outside_root=allow_outside_root)
        if n_points is None or len(inst.keypoints) == n_points:
            out.append(inst)
    if not out:
        raise DataError(f"{folder}: no .pts / .ljson landmark files" + (f" with {n_points} points" if n_points else ""))
    return out


@DATASETS.register("ibug", kind="instances")
def ibug_dataset(root=None, annotations=None, images=None, **options) -> list[Instance]:
    """iBUG / 300-W style faces: the folder ``root`` (or ``annotations``) of ``.pts`` / ``.ljson`` files with their
    images beside them (``images`` is not used). Other options as :func:`load_ibug_folder`."""
    return load_ibug_folder(data_path(root or annotations, "ibug", "root", "the folder of .pts / .ljson files"),
                            **options)
