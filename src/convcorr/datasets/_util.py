"""Helpers shared by the loaders."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..types import DataError, Instance


def read_json(path: str | Path):
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: annotation file not found")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: malformed JSON ({exc})") from exc


def require_file(path: str | Path, what: str = "file") -> Path:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {what} not found")
    return path


def resolve_image_path(root: str | Path, name: str | Path, where: str | Path, allow_outside: bool = False) -> Path:
    """Path of an image named inside an annotation file, resolved below its data ``root``.

    Args:
        root: the data root the image must lie in.
        name: the image name as stored in the annotation (relative to ``root``).
        where: the annotation file (named in errors).
        allow_outside: opt-out for users whose annotations point elsewhere on purpose.
    Raises:
        DataError naming ``where`` when ``name`` is absolute or escapes ``root`` (``..``, symlinks).
    """
    root = Path(root)
    p = root / Path(str(name))
    if allow_outside:
        return p
    if Path(str(name)).is_absolute():
        raise DataError(f"{where}: image path {str(name)!r} is absolute; it must lie inside the data root {root}")
    real_root, real = root.resolve(), p.resolve()
    if real != real_root and real_root not in real.parents:
        raise DataError(f"{where}: image path {str(name)!r} escapes the data root {root}")
    return p


def extent_box(xy: np.ndarray, where: str) -> np.ndarray:
    """(x0, y0, x1, y1) extent of the finite points in (N, 2) ``xy``."""
    xy = np.asarray(xy, dtype=np.float64)
    xy = xy[np.all(np.isfinite(xy), axis=1)]
    if len(xy) < 2:
        raise DataError(f"{where}: fewer than two annotated keypoints, cannot form a box")
    return np.array([*xy.min(0), *xy.max(0)])


def validate_images(instances, check_images: bool) -> None:
    """With check_images, load every image (DataError names a missing/corrupt file) and check keypoints inside."""
    if not check_images:
        return
    from ..types import check_keypoints_inside

    for inst in instances:
        img = inst.load()
        check_keypoints_inside(inst, img.shape)


def make_instance(where: str | Path, **kw) -> Instance:
    """Build an Instance; a schema error (e.g. empty box) is re-raised naming the annotation file ``where``."""
    try:
        return Instance(**kw)
    except DataError as exc:
        msg = str(exc)
        raise DataError(msg if str(where) in msg else f"{where}: {msg}") from exc
