"""CUB-200-2011 birds: ``images.txt``, ``bounding_boxes.txt``, ``parts/parts.txt``, ``parts/part_locs.txt``.

Ids are 1-based; part locations are pixel coordinates (x, y) kept as in the files (CUB does not document a
0/1 base; the published evaluation code uses them unshifted), ``visible`` 0/1 (invisible parts are stored at
(0, 0) and become NaN here); boxes are ``x y w h`` -> (x, y, x + w, y + h). Category ``bird`` for all (the species is kept in ``meta['class']`` when classes are present).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..types import DataError, Instance
from ._util import make_instance, require_file, validate_images


def _table(path: Path) -> list[list[str]]:
    require_file(path, "CUB table")
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


def load_cub(root: str | Path, limit: int | None = None, check_images: bool = False) -> list[Instance]:
    """Load CUB-200-2011 instances (one bird per image) with their 15 named parts."""
    root = Path(root)
    cur = root / "images.txt"
    try:
        images = {int(r[0]): r[1] for r in _table(cur)}
        cur = root / "bounding_boxes.txt"
        boxes = {int(r[0]): [float(v) for v in r[1:5]] for r in _table(cur)}
        cur = root / "parts" / "parts.txt"
        parts_rows = [(int(r[0]), " ".join(r[1:])) for r in _table(cur)]
        names = tuple(n for _, n in sorted(parts_rows))
        pidx = {pid: i for i, (pid, _) in enumerate(sorted(parts_rows))}
        locs: dict[int, np.ndarray] = {}
        cur = root / "parts" / "part_locs.txt"
        for r in _table(cur):
            iid, pid, x, y, v = int(r[0]), int(r[1]), float(r[2]), float(r[3]), int(float(r[4]))
            arr = locs.setdefault(iid, np.full((len(names), 3), np.nan))
            arr[pidx[pid]] = (x, y, v)
    except (ValueError, IndexError, KeyError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{cur}: malformed CUB-200-2011 table ({exc!r})") from exc
    out = []
    for iid in sorted(images)[:limit]:
        if iid not in boxes:
            raise DataError(f"{root / 'bounding_boxes.txt'}: no box for image {iid}")
        x, y, w, h = boxes[iid]
        a = locs.get(iid, np.full((len(names), 3), np.nan))
        vis = a[:, 2] == 1
        out.append(make_instance(root / "bounding_boxes.txt", id=f"bird/{images[iid]}", category="bird", bbox=(x, y, x + w, y + h),
                            keypoint_names=names, keypoints=np.where(vis[:, None], a[:, :2], np.nan), visible=vis,
                            image_path=root / "images" / images[iid],
                            meta={"dataset": "cub", "class": images[iid].split("/")[0]}))
    validate_images(out, check_images)
    return out
