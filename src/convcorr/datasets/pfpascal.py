"""PF-PASCAL pair lists (Ham et al.): ``source_image, target_image, class, XA, YA, XB, YB``.

XA/YA/XB/YB are ';'-separated coordinate lists of corresponding points (source A, target B), kept as they are
in the file (MATLAB annotations; most evaluation code uses them unshifted). Keypoints are named ``kp0..kpN``
per pair (PF-PASCAL points are matched by order within a pair). The PF-PASCAL protocol normalises PCK by the
image size or by the object box; without the box annotation we store the keypoint extent as ``bbox`` (use
the PCK protocol's ``threshold="target-image"`` (:class:`convcorr.evaluation.pck.PCKProtocol`) for the image
protocol). The validation list has no
keypoint columns: such rows raise a DataError (``require_keypoints=False`` returns pairs without keypoints).
Image paths must lie inside ``root`` (``allow_outside_root=True`` lifts this); class indices outside 1..20,
non-finite coordinates and a list without pairs are DataErrors naming the file and line.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..core.errors import DataError
from ..core.types import Pair
from ._util import DATASETS, make_instance, pair_list_paths, read_text, resolve_image_path, validate_images

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
               "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")


def _coords(s, where: str) -> np.ndarray:
    if not isinstance(s, str):
        raise DataError(f"{where}: missing coordinate list")
    try:
        a = np.array([float(v) for v in s.split(";") if v.strip()], dtype=np.float64)
    except ValueError as exc:
        raise DataError(f"{where}: malformed coordinate list ({str(exc)[:80]})") from exc
    if not np.all(np.isfinite(a)):
        raise DataError(f"{where}: non-finite coordinate in {s[:80]!r}")
    return a


def load_pf_pascal_pairs(annotations: str | Path, root: str | Path | None = None, require_keypoints: bool = True,
                         check_images: bool = False, allow_outside_root: bool = False) -> list[Pair]:
    """Read a PF-PASCAL pair CSV; images are resolved as ``root / <path in csv>`` (inside ``root``).

    Raises:
        DataError naming the file (and line) for malformed rows, bad class indices, escaping image paths and an
        empty list.
    """
    import io

    csv_path = Path(annotations)
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: pair list not found")
    root = Path(root) if root else csv_path.parent
    pairs = []
    text = read_text(csv_path, "pair list")
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        fields = set(reader.fieldnames or [])
        missing = {"source_image", "target_image", "class"} - fields
        if missing:
            raise DataError(f"{csv_path}: not a PF-PASCAL pair list (no column(s) {sorted(missing)})")
        has_kp = {"XA", "YA", "XB", "YB"} <= fields
        if not has_kp and require_keypoints:
            raise DataError(f"{csv_path}: no keypoint columns XA, YA, XB, YB (PF-PASCAL val/train lists have none)")
        for i, row in enumerate(reader):
            where = f"{csv_path}:{i + 2}"
            try:
                k = int(row["class"])
            except (KeyError, ValueError, TypeError) as exc:
                raise DataError(f"{where}: bad class index {row.get('class')!r}") from exc
            if not 1 <= k <= len(VOC_CLASSES):
                raise DataError(f"{where}: class index {k} outside 1..{len(VOC_CLASSES)}")
            cls = VOC_CLASSES[k - 1]
            insts = []
            for side, xs, ys in (("source_image", "XA", "YA"), ("target_image", "XB", "YB")):
                if has_kp:
                    x, y = _coords(row[xs], where), _coords(row[ys], where)
                    if len(x) != len(y) or len(x) < 2:
                        raise DataError(f"{where}: {xs}/{ys} have {len(x)}/{len(y)} values")
                    xy = np.stack([x, y], 1)
                    bbox = np.array([*xy.min(0), *xy.max(0)])
                    if bbox[2] <= bbox[0] or bbox[3] <= bbox[1]:
                        bbox = bbox + np.array([-0.5, -0.5, 0.5, 0.5])
                else:
                    xy, bbox = np.zeros((0, 2)), np.array([0.0, 0.0, 1.0, 1.0])
                img = resolve_image_path(root, row[side], where, allow_outside_root)
                insts.append(make_instance(where, id=f"{row[side]}#{i}", category=cls, bbox=bbox,
                                           keypoint_names=tuple(f"kp{j}" for j in range(len(xy))), keypoints=xy,
                                           visible=np.ones(len(xy), bool), image_path=img,
                                           meta={"dataset": "pf-pascal", "pair_list": str(csv_path)}))
            if has_kp and len(insts[0].keypoints) != len(insts[1].keypoints):
                raise DataError(f"{where}: source has {len(insts[0].keypoints)} points, target {len(insts[1].keypoints)}")
            pairs.append(Pair(*insts))
    except csv.Error as exc:
        raise DataError(f"{csv_path}: malformed CSV ({exc})") from exc
    if not pairs:
        raise DataError(f"{csv_path}: no pairs found")
    validate_images([p.source for p in pairs] + [p.target for p in pairs], check_images)
    return pairs


@DATASETS.register("pf-pascal", kind="pairs")
def pf_pascal_dataset(root=None, annotations=None, images=None, **options) -> list[Pair]:
    """PF-PASCAL: the pair list ``annotations`` (default ``root/test_pairs.csv``), its image paths relative to
    ``images`` (default ``root``, else the list's folder). Other options as :func:`load_pf_pascal_pairs`."""
    csv_path, folder = pair_list_paths("pf-pascal", root, annotations, images)
    return load_pf_pascal_pairs(csv_path, root=folder, **options)
