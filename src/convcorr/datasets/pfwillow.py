"""PF-WILLOW (Ham et al., CVPR 2016, "Proposal Flow"): 900 test pairs of 10 object subsets, 10 keypoints each.

Format: the pair list ``test_pairs.csv`` that every evaluation uses (WeakAlign, HPF, CATs, DHPF ...): a header
row, then per pair ``imageA, imageB`` (paths such as ``PF-dataset/car(G)/2008_000021.png``) followed by 40
numbers: ``XA1..XA10, YA1..YA10`` (source points) and ``XB1..XB10, YB1..YB10`` (target points); point j of A
corresponds to point j of B. Coordinates are kept as stored (MATLAB-made annotations; the evaluation code of
HPF/CATs uses them unshifted, as we do for PF-PASCAL). Keypoint names are ``kp0..kp9`` (matched by order).

Images resolve as ``root / <path in csv>`` (``root`` defaults to the CSV's folder); ``strip_components=1``
drops the leading folder of every path (HPF's layout keeps the images in ``PF-WILLOW/<class>/`` while the CSV
says ``PF-dataset/<class>/``). The category is the subset folder (``car(G)``, ``duck(S)``, ``winebottle(wC)``
...; ``meta['object']`` holds the object name without the qualifier). PF-WILLOW has no box annotation in the
pair list: ``bbox`` is the extent of the keypoints, which is the "bbox" PCK threshold of HPF/CATs
(``pck.PROTOCOLS['hpf-pfwillow']``).
"""
from __future__ import annotations

import csv
from pathlib import Path, PurePosixPath

import numpy as np

from ..core.errors import DataError
from ..core.types import Pair
from ._util import DATASETS, make_instance, pair_list_paths, read_text, resolve_image_path, validate_images

N_POINTS = 10


def _numbers(row: list[str], where: str) -> np.ndarray:
    try:
        v = np.array([float(x) for x in row], dtype=np.float64)
    except ValueError as exc:
        raise DataError(f"{where}: malformed coordinate ({exc})") from exc
    if not np.all(np.isfinite(v)):
        raise DataError(f"{where}: non-finite keypoint coordinate")
    return v


def load_pf_willow_pairs(annotations: str | Path, root: str | Path | None = None, strip_components: int = 0,
                         category: str | None = None, check_images: bool = False,
                         allow_outside_root: bool = False) -> list[Pair]:
    """Read the PF-WILLOW pair CSV as :class:`~convcorr.core.types.Pair` objects (optionally one category).

    Image paths must lie inside ``root`` (``allow_outside_root=True`` lifts this); malformed rows are DataErrors
    naming the file and line.
    """
    import io

    csv_path = Path(annotations)
    if not isinstance(strip_components, int) or strip_components < 0:
        raise ValueError(f"strip_components must be an integer >= 0, got {strip_components!r}")
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: PF-WILLOW pair list not found")
    root = Path(root) if root else csv_path.parent
    pairs = []
    try:
        rows = list(csv.reader(io.StringIO(read_text(csv_path, "PF-WILLOW pair list"), newline="")))
    except csv.Error as exc:
        raise DataError(f"{csv_path}: malformed CSV ({exc})") from exc
    if not rows:
        raise DataError(f"{csv_path}: empty PF-WILLOW pair list")
    for i, row in enumerate(rows[1:], start=2):
        where = f"{csv_path}:{i}"
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != 2 + 4 * N_POINTS:
            raise DataError(f"{where}: expected 2 image names and {4 * N_POINTS} coordinates, got {len(row)} columns")
        v = _numbers(row[2:], where)
        xa, ya, xb, yb = v.reshape(4, N_POINTS)
        insts = []
        for name, x, y in ((row[0], xa, ya), (row[1], xb, yb)):
            parts = PurePosixPath(name.strip().replace("\\", "/")).parts
            if len(parts) < 2 + strip_components:
                raise DataError(f"{where}: image path {name!r} has no <class>/<image> part")
            rel = PurePosixPath(*parts[strip_components:])
            cat = parts[-2]
            xy = np.stack([x, y], 1)
            box = np.array([*xy.min(0), *xy.max(0)])
            if box[2] <= box[0] or box[3] <= box[1]:
                box = box + np.array([-0.5, -0.5, 0.5, 0.5])
            insts.append(make_instance(where, id=f"{cat}/{parts[-1]}", category=cat, bbox=box,
                                       keypoint_names=tuple(f"kp{j}" for j in range(N_POINTS)), keypoints=xy,
                                       visible=np.ones(N_POINTS, bool),
                                       image_path=resolve_image_path(root, str(rel), where, allow_outside_root),
                                       meta={"dataset": "pf-willow", "pair_list": str(csv_path),
                                             "object": cat.split("(")[0]}))
        if insts[0].category != insts[1].category:
            raise DataError(f"{where}: source class {insts[0].category!r} differs from target {insts[1].category!r}")
        if category and insts[0].category != category:
            continue
        pairs.append(Pair(*insts))
    if not pairs:
        raise DataError(f"{csv_path}: no pairs" + (f" of category {category!r}" if category else ""))
    validate_images([p.source for p in pairs] + [p.target for p in pairs], check_images)
    return pairs


@DATASETS.register("pf-willow", kind="pairs", options=("strip_components",))
def pf_willow_dataset(root=None, annotations=None, images=None, **options) -> list[Pair]:
    """PF-WILLOW: the pair list ``annotations`` (default ``root/test_pairs.csv``), its image paths relative to
    ``images`` (default ``root``, else the list's folder); ``strip_components`` drops leading folders of the listed
    paths. Other options as :func:`load_pf_willow_pairs`."""
    csv_path, folder = pair_list_paths("pf-willow", root, annotations, images)
    return load_pf_willow_pairs(csv_path, root=folder, **options)
