"""CUB-200-2011 birds: ``images.txt``, ``bounding_boxes.txt``, ``parts/parts.txt``, ``parts/part_locs.txt``.

Ids are 1-based; part locations are pixel coordinates (x, y) kept as in the files (CUB does not document a
0/1 base; the published evaluation code uses them unshifted), ``visible`` 0/1 (invisible parts are stored at
(0, 0) and become NaN here); boxes are ``x y w h`` -> (x, y, x + w, y + h). Category ``bird`` for all (the species is kept in ``meta['class']`` when classes are present).
Image names must lie inside ``root/images`` (``allow_outside_root=True`` lifts this). Part or image ids not
listed in ``parts.txt`` / ``images.txt``, duplicate ids or part names, non-finite values and an empty
``images.txt`` are DataErrors naming the table.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import DataError
from ..core.types import Instance
from ._util import (DATASETS, check_names_unique, data_path, finite_float, make_instance, read_text, require_nonempty,
                    resolve_image_path,
                    validate_images)


def _table(path: Path, min_cols: int) -> list[tuple[int, list[str]]]:
    """(line number, fields) of the non-empty lines of a whitespace-separated table with >= min_cols fields."""
    rows = []
    for i, line in enumerate(read_text(path, "CUB table").splitlines(), 1):
        f = line.split()
        if not f:
            continue
        if len(f) < min_cols:
            raise DataError(f"{path}:{i}: expected at least {min_cols} fields, got {len(f)}")
        rows.append((i, f))
    return rows


def _id(v: str, where: str) -> int:
    try:
        return int(v)
    except ValueError:
        raise DataError(f"{where}: id {v[:30]!r} is not an integer") from None


def _unique(pairs, where: Path, what: str) -> dict:
    out: dict = {}
    for (i, k), v in pairs:
        if k in out:
            raise DataError(f"{where}:{i}: duplicate {what} id {k}")
        out[k] = v
    return out


def load_cub(root: str | Path, limit: int | None = None, check_images: bool = False,
             allow_outside_root: bool = False) -> list[Instance]:
    """Load CUB-200-2011 instances (one bird per image) with their 15 named parts.

    Raises:
        DataError naming the table (and line) for malformed rows, unknown ids and escaping image names.
    """
    root = Path(root)
    f_img, f_box = root / "images.txt", root / "bounding_boxes.txt"
    f_parts, f_locs = root / "parts" / "parts.txt", root / "parts" / "part_locs.txt"
    images = _unique((((i, _id(r[0], f"{f_img}:{i}")), " ".join(r[1:])) for i, r in _table(f_img, 2)), f_img, "image")
    require_nonempty(list(images), f_img, "images")
    boxes = _unique((((i, _id(r[0], f"{f_box}:{i}")), [finite_float(v, "box value", f"{f_box}:{i}") for v in r[1:5]])
                     for i, r in _table(f_box, 5)), f_box, "image")
    parts = _unique((((i, _id(r[0], f"{f_parts}:{i}")), " ".join(r[1:])) for i, r in _table(f_parts, 2)),
                    f_parts, "part")
    names = tuple(parts[k] for k in sorted(parts))
    check_names_unique(names, f_parts)
    pidx = {pid: j for j, pid in enumerate(sorted(parts))}
    locs: dict[int, np.ndarray] = {}
    for i, r in _table(f_locs, 5):
        where = f"{f_locs}:{i}"
        iid, pid = _id(r[0], where), _id(r[1], where)
        if iid not in images:
            raise DataError(f"{where}: image id {iid} is not in images.txt")
        if pid not in pidx:
            raise DataError(f"{where}: part id {pid} is not in parts.txt")
        v = finite_float(r[4], "visibility", where)
        if v not in (0, 1):
            raise DataError(f"{where}: visibility must be 0 or 1, got {r[4]!r}")
        if v == 1:
            x = finite_float(r[2], f"part {names[pidx[pid]]!r} x", where)
            y = finite_float(r[3], f"part {names[pidx[pid]]!r} y", where)
        else:  # invisible parts are stored at (0, 0) and not used
            x = y = np.nan
        arr = locs.setdefault(iid, np.full((len(names), 3), np.nan))
        arr[pidx[pid]] = (x, y, v)
    out = []
    for iid in sorted(images)[:limit]:
        if iid not in boxes:
            raise DataError(f"{f_box}: no box for image {iid}")
        x, y, w, h = boxes[iid]
        a = locs.get(iid, np.full((len(names), 3), np.nan))
        vis = a[:, 2] == 1
        name = images[iid]
        out.append(make_instance(f_box, id=f"bird/{name}", category="bird", bbox=(x, y, x + w, y + h),
                                 keypoint_names=names, keypoints=np.where(vis[:, None], a[:, :2], np.nan), visible=vis,
                                 image_path=resolve_image_path(root / "images", name, f_img, allow_outside_root),
                                 meta={"dataset": "cub", "class": name.split("/")[0]}))
    validate_images(out, check_images)
    return out


@DATASETS.register("cub", kind="instances", pair_by="class")
def cub_dataset(root=None, annotations=None, images=None, **options) -> list[Instance]:
    """CUB-200-2011 at ``root`` (its tables and ``images/``; ``annotations`` / ``images`` are not used); cross pairs
    of two birds of one species (``meta['class']``) by default. Other options as :func:`load_cub`."""
    return load_cub(data_path(root, "cub", "root", "the CUB_200_2011 folder"), **options)
