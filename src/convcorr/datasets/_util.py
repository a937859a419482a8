"""Helpers shared by the loaders: reading annotation files, containment of image paths, schema checks.

Every loader takes ``allow_outside_root`` (default False): image names read from an annotation file are resolved
below the loader's data root by :func:`resolve_image_path`, and a name that is absolute, contains ``..`` leading
outside, or reaches outside through a symlink is a :class:`DataError` naming the annotation file (a downloaded
annotation file must not be able to read arbitrary files into crops and figures). Users whose annotations point
elsewhere on purpose pass ``allow_outside_root=True``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

import numpy as np

from ..core.errors import DataError
from ..core.registry import Registry
from ..core.types import Instance


# ---------------------------------------------------------------------------------------------------- registry
def _check_dataset(name: str, loader, facts: dict) -> None:
    if not callable(loader):
        raise TypeError(f"dataset {name!r}: the loader must be callable, got {loader!r}")
    if facts.get("kind") not in DATASET_KINDS:
        raise ValueError(f"dataset {name!r}: declare kind='instances' or kind='pairs', got {facts.get('kind')!r}")
    unknown = set(facts) - set(DATASET_FACTS)
    if unknown:
        raise ValueError(f"dataset {name!r}: unknown fact(s) {sorted(unknown)}; facts: {list(DATASET_FACTS)}")


#: what a data set's loader returns: a list of Instance ("instances") or of Pair ("pairs")
DATASET_KINDS = ("instances", "pairs")
#: the facts a data set declares on registration (``kind`` is required)
DATASET_FACTS = {
    "kind": "'instances' (pairs are formed by convcorr) or 'pairs' (the data set lists its pairs)",
    "options": "names of the loader's own keyword options that experiments pass from their configuration "
               "(e.g. ('split',)); 'categories' means the loader selects categories itself",
    "pair_by": "how instances are grouped into cross pairs by default (default 'category')",
    "pairs": "the only kind of pairs the data set forms ('synthetic'), if restricted",
}

#: name -> loader ``loader(root=None, annotations=None, images=None, **options)`` returning a list of Instance or of
#: Pair. ``root``: the data root; ``annotations``: the annotation file or folder; ``images``: the image folder;
#: each loader documents which it needs and how it defaults the others from ``root``. A loader registers itself in
#: its own module (``@DATASETS.register("name", kind="instances")``); other packages add data sets through the
#: entry-point group ``convcorr.datasets``.
DATASETS = Registry("dataset", group="convcorr.datasets", on_register=_check_dataset,
                    builtins=[f"convcorr.datasets.{m}" for m in ("embedded", "coco", "cub", "berkeley", "spair",
                                                                 "pfpascal", "pfwillow", "ibug")])


class MissingArgument(FileNotFoundError):
    """A data-set loader argument (``root``, ``annotations`` or ``images``) that the data set needs and did not get.

    Attributes: ``dataset``, ``argument``, ``what`` (what the argument must point to).
    """

    def __init__(self, dataset: str, argument: str, what: str):
        self.dataset, self.argument, self.what = dataset, argument, what
        super().__init__(f"dataset {dataset!r} needs {argument}=... ({what})")

    def __str__(self) -> str:
        return str(self.args[0])


def data_path(value, dataset: str, argument: str, what: str) -> Path:
    """``value`` as an existing Path; MissingArgument when not given, FileNotFoundError naming it when absent."""
    if not value:
        raise MissingArgument(dataset, argument, what)
    p = Path(value)
    if not p.exists():
        raise FileNotFoundError(f"{p}: not found ({argument} of dataset {dataset!r}: {what})")
    return p


def pair_list_paths(dataset: str, root, annotations, images) -> tuple[Path, Path]:
    """(pair-list CSV, folder its image paths are relative to) of a PF-style data set: ``annotations`` (default
    ``root/test_pairs.csv``) and ``images`` (default ``root``, else the CSV's folder)."""
    if annotations:
        csv = data_path(annotations, dataset, "annotations", "the pair list CSV")
        return csv, Path(images or root or csv.parent)
    folder = data_path(root, dataset, "root", "the data folder with test_pairs.csv")
    return folder / "test_pairs.csv", Path(images or folder)

#: annotation files larger than this are refused (a JSON/XML/CSV annotation of one data set is far smaller)
MAX_ANNOTATION_BYTES = 2_000_000_000


def read_text(path: str | Path, what: str = "annotation file") -> str:
    """Text of an annotation file; DataError naming it when missing, unreadable or not UTF-8 text."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {what} not found")
    try:
        if path.stat().st_size > MAX_ANNOTATION_BYTES:
            raise DataError(f"{path}: {what} larger than {MAX_ANNOTATION_BYTES} bytes")
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: {what} is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read {what} ({exc.strerror or exc})") from exc


def read_json(path: str | Path):
    path = Path(path)
    text = read_text(path)
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError, ValueError) as exc:
        raise DataError(f"{path}: malformed JSON ({str(exc)[:200]})") from exc


def resolve_image_path(root: str | Path, name, where: str | Path, allow_outside: bool = False) -> Path:
    """Path of an image named inside an annotation file, resolved below its data ``root``.

    Args:
        root: the data root the image must lie in.
        name: the image name as stored in the annotation (relative to ``root``; ``/`` separated).
        where: the annotation file (named in errors).
        allow_outside: opt-out for users whose annotations point elsewhere on purpose.
    Returns:
        ``root / name`` (not resolved, so reports show the path the user gave).
    Raises:
        DataError naming ``where`` when ``name`` is not a non-empty string, contains a NUL byte, is absolute
        (also ``C:\\`` or ``\\\\server`` forms), or escapes ``root`` (``..``, symlinks anywhere on the way).
    """
    if isinstance(name, Path):
        name = str(name)
    if not isinstance(name, str) or not name.strip():
        raise DataError(f"{where}: image name {name!r} is not a non-empty string")
    if "\x00" in name:
        raise DataError(f"{where}: image name {name!r} contains a NUL byte")
    root = Path(root)
    p = root / name
    if allow_outside:
        return p
    if Path(name).is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise DataError(f"{where}: image path {name!r} is absolute; it must lie inside the data root {root} "
                        "(pass allow_outside_root=True to allow it)")
    try:
        real_root, real = os.path.realpath(root), os.path.realpath(p)
    except (OSError, ValueError) as exc:  # e.g. symlink loops on some platforms
        raise DataError(f"{where}: cannot resolve image path {name!r} ({exc})") from exc
    if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
        raise DataError(f"{where}: image path {name!r} escapes the data root {root} "
                        "(pass allow_outside_root=True to allow it)")
    return p


def finite_float(v, what: str, where) -> float:
    """float(v), DataError naming ``where`` and ``what`` when not a finite number (bools are refused)."""
    if isinstance(v, bool):
        raise DataError(f"{where}: {what} must be a number, got {v!r}")
    try:
        f = float(v)
    except (TypeError, ValueError, OverflowError) as exc:
        raise DataError(f"{where}: {what} must be a number, got {str(v)[:50]!r}") from exc
    if not np.isfinite(f):
        raise DataError(f"{where}: {what} is not finite ({f})")
    return f


def extent_box(xy: np.ndarray, where: str) -> np.ndarray:
    """(x0, y0, x1, y1) extent of the finite points in (N, 2) ``xy``."""
    xy = np.asarray(xy, dtype=np.float64)
    xy = xy[np.all(np.isfinite(xy), axis=1)]
    if len(xy) < 2:
        raise DataError(f"{where}: fewer than two annotated keypoints, cannot form a box")
    return np.array([*xy.min(0), *xy.max(0)])


def check_names_unique(names: Iterable[str], where) -> None:
    """DataError naming ``where`` when a keypoint name occurs twice."""
    seen: set = set()
    for n in names:
        if n in seen:
            raise DataError(f"{where}: duplicate keypoint name {n!r}")
        seen.add(n)


def require_nonempty(items: list, where, what: str = "instances") -> list:
    if not items:
        raise DataError(f"{where}: no {what} found")
    return items


def validate_images(instances, check_images: bool) -> None:
    """With check_images, load every image (DataError names a missing/corrupt file) and check keypoints inside."""
    if not check_images:
        return
    from ..core.types import check_keypoints_inside

    for inst in instances:
        img = inst.load()
        check_keypoints_inside(inst, img.shape)


def make_instance(where: str | Path, **kw) -> Instance:
    """Build an Instance with the loaders' checks, naming the annotation file ``where`` in every error.

    Checks: keypoint names unique; visible keypoints finite (NaN/inf are errors); non-finite invisible ones become NaN;
    the box finite and non-empty (:class:`Instance`).
    """
    names = tuple(kw.get("keypoint_names", ()))
    check_names_unique(names, where)
    try:
        kp = np.asarray(kw.get("keypoints"), dtype=np.float64).reshape(-1, 2)
        vis = np.asarray(kw.get("visible"), dtype=bool).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where}: malformed keypoints ({exc})") from exc
    if len(vis) == len(kp):
        bad = vis & ~np.all(np.isfinite(kp), axis=1)
        if np.any(bad):
            i = int(np.flatnonzero(bad)[0])
            n = names[i] if i < len(names) else i
            raise DataError(f"{where}: keypoint {n!r} has non-finite coordinates {kp[i].tolist()}")
        kp = np.where(np.all(np.isfinite(kp), axis=1)[:, None], kp, np.nan)  # invisible +-inf -> NaN
        kw = dict(kw, keypoints=kp, visible=vis)
    try:
        return Instance(**kw)
    except DataError as exc:
        msg = str(exc)
        raise DataError(msg if str(where) in msg else f"{where}: {msg}") from exc
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where}: malformed annotation ({exc})") from exc
