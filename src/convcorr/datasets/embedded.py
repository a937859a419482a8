"""The embedded default data: real annotated photos from the shared folder, by category.

Categories (every instance of one category shares one keypoint set):

* ``face`` (68 iBUG points p1..p68): the iBUG-68 faces (``keypoints/faces-ibug68``), 300-W and 300W-LP
  (``keypoints/mmpose-fixtures/300w``, ``300wlp``).
* ``face19`` (19 AFLW points p1..p19): ``aflw``.
* ``person`` (the 17 COCO keypoints): the COCO people (``coco/test_coco.json``) and HumanArt's real, 2-D-art and
  3-D-figure humans (``humanart``; its category lists 21 names but every annotation holds the 17 COCO points, and
  its file names start with ``HumanArt/images/``, which is not part of the folder: both are repaired here).
* ``hand`` (21 points): FreiHAND and OneHand10K. FreiHAND's 8 images are 2 hand captures, each composited on 4
  backgrounds (sample ids 32560 apart): the 4 versions share one ``photo``/``object_id``.
* ``fly`` (32 points), ``zebra`` (9), ``horse10`` (22; three frames of one video).
* one category per species of the multi-species animal fixtures, named ``<dataset>-<species>``:
  ``animalpose-cat``, ``animalpose-horse`` (Animal-Pose labels both animals "cat"; the species is read from the
  file-name prefix) and ``ap10k-<species>`` (AP-10K's own species names).

Every instance's ``meta`` holds ``photo`` (the photo it was cut from: the independent unit of the bootstrap
intervals; people of one COCO photo share it), ``object_id`` (the physical object: a query's own object is what
cross-instance protocols hold out), ``species`` and ``cut_off`` (a list of reasons the object looks cut off: its
box touches the image border while keypoints are missing, or fewer than ``min_visible_fraction`` of its keypoints
are annotated). Cut-off instances are dropped unless ``include_cut_off=True``.
Images larger than ``max_side`` are downscaled (keypoints and box scaled by the same factor, pixel-centre
convention of :func:`convcorr.core.geometry.scale_points`). The Berkeley PASCAL XML and PF-PASCAL CSV fixtures have
no images and are not part of the embedded data.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..core.errors import ConfigError
from ..core.geometry import scale_points
from ..core.images import resize_image
from ..core.types import Instance
from ..runtime.paths import require_shared
from ._util import DATASETS
from .coco import load_coco_keypoints
from .ibug import load_ibug_folder

#: Animal-Pose file-name prefixes -> species
_ANIMALPOSE_SPECIES = {"ca": "cat", "do": "dog", "ho": "horse", "sh": "sheep", "co": "cow"}
#: FreiHAND: the same capture appears with 4 backgrounds, sample ids this far apart
_FREIHAND_PERIOD = 32560
#: an object whose box lies within this many pixels of the image border "touches" it
_BORDER_PX = 1.0
#: the categories of the embedded data (lazily extended by the animal species found on disk)
FIXED_CATEGORIES = ("face", "face19", "person", "hand", "fly", "zebra", "horse10")


def downscale(inst: Instance, max_side: int) -> Instance:
    """Load the image and shrink it so that max(H, W) <= max_side (keypoints/box follow exactly)."""
    img = inst.load()
    H, W = img.shape[:2]
    s = max_side / max(H, W)
    if s >= 1:
        return replace(inst, image=img)
    h, w = max(1, round(H * s)), max(1, round(W * s))
    kp = scale_points(inst.keypoints, (H, W), (h, w))
    b = inst.bbox
    box = np.concatenate([scale_points(b[:2][None], (H, W), (h, w))[0], scale_points(b[2:][None], (H, W), (h, w))[0]])
    return replace(inst, image=resize_image(img, (h, w)), keypoints=kp, bbox=box,
                   meta=dict(inst.meta, scale=(w / W, h / H)))


def cut_off_reasons(inst: Instance, image_hw: tuple[int, int], min_visible_fraction: float = 0.5) -> list[str]:
    """Why an instance looks cut off (empty list: it does not).

    Args:
        inst: the instance (box and visibility in the pixels of an image of size ``image_hw``).
        image_hw: (H, W) of its image.
        min_visible_fraction: fewer annotated keypoints than this fraction flags the instance.
    """
    H, W = image_hw
    vis = np.asarray(inst.visible, bool)
    out = []
    x0, y0, x1, y1 = np.asarray(inst.bbox, float)
    touches = x0 <= _BORDER_PX or y0 <= _BORDER_PX or x1 >= W - 1 - _BORDER_PX or y1 >= H - 1 - _BORDER_PX
    if touches and not vis.all():
        out.append(f"box touches the image border and {int((~vis).sum())} of {len(vis)} keypoints are missing")
    if vis.mean() < min_visible_fraction:
        out.append(f"only {int(vis.sum())} of {len(vis)} keypoints annotated")
    return out


def _tag(insts: list[Instance], category: str, photo=None, object_id=None, species=None) -> list[Instance]:
    out = []
    for i in insts:
        ph = photo(i) if photo else _photo_name(i)
        out.append(replace(i, category=category, meta=dict(
            i.meta, photo=ph, object_id=object_id(i) if object_id else i.id,
            species=species(i) if species else i.meta.get("species", i.category))))
    return out


def _photo_name(i: Instance) -> str:
    """The image path relative to the shared keypoints folder (the instance id when it has no file)."""
    if i.image_path is None:
        return i.id
    p = Path(i.image_path)
    for root in p.parents:
        if root.name in ("mmpose-fixtures", "keypoints"):
            return str(p.relative_to(root))
    return str(p)


def _coco(folder: str, json_name: str | None = None, **kw) -> list[Instance]:
    d = require_shared("keypoints", "mmpose-fixtures", folder)
    js = d / json_name if json_name else next(d.glob("test_*.json"))
    return load_coco_keypoints(js, d, min_keypoints=3, **kw)


def _humanart() -> list[Instance]:
    """HumanArt with its two quirks repaired: 17 COCO names for the 17 stored points, file names below the folder."""
    d = require_shared("keypoints", "mmpose-fixtures", "humanart")
    coco_names = json.loads(require_shared("keypoints", "mmpose-fixtures", "coco", "test_coco.json").read_text()
                            )["categories"][0]["keypoints"]
    data = json.loads((d / "test_humanart.json").read_text())
    prefix = "HumanArt/images/"
    for im in data["images"]:
        if im["file_name"].startswith(prefix):
            im["file_name"] = im["file_name"][len(prefix):]
    for c in data["categories"]:
        c["keypoints"] = coco_names
    with tempfile.TemporaryDirectory() as tmp:
        js = Path(tmp) / "humanart" / "test_humanart.json"
        js.parent.mkdir()
        js.write_text(json.dumps(data))
        insts = load_coco_keypoints(js, d, min_keypoints=3)
    real = str(d / "test_humanart.json")
    return [replace(i, meta=dict(i.meta, annotation=real)) for i in insts]


def _freihand_sample(i: Instance) -> str:
    return f"freihand/{int(Path(i.image_path).stem) % _FREIHAND_PERIOD:08d}"


def _raw(category: str) -> list[Instance]:
    """All real instances of one category, tagged (before cut-off filtering and downscaling)."""
    if category == "face":
        ib = load_ibug_folder(require_shared("keypoints", "faces-ibug68"), n_points=68)
        return (_tag(ib, "face", photo=lambda i: f"faces-ibug68/{Path(i.image_path).name}")
                + _tag(_coco("300w"), "face") + _tag(_coco("300wlp"), "face"))
    if category == "face19":
        return _tag(_coco("aflw"), "face19")
    if category == "person":
        return _tag(_coco("coco", "test_coco.json"), "person") + _tag(_humanart(), "person")
    if category == "hand":
        return (_tag(_coco("freihand"), "hand", photo=_freihand_sample, object_id=_freihand_sample)
                + _tag(_coco("onehand10k"), "hand"))
    if category in ("fly", "zebra", "horse10"):
        return _tag(_coco(category), category)
    if category.startswith("animalpose-") or category.startswith("ap10k-"):
        return [i for i in _species_instances(category.split("-", 1)[0]) if i.category == category]
    raise KeyError(f"unknown embedded category {category!r}; categories: {list(all_categories())}")


def _animalpose_species(i: Instance) -> str:
    stem = Path(i.image_path).stem
    return _ANIMALPOSE_SPECIES.get(stem[:2].lower(), "unknown")


@lru_cache(maxsize=2)
def _species_instances(dataset: str) -> tuple[Instance, ...]:
    if dataset == "animalpose":
        out = []
        for i in _coco("animalpose"):
            sp = _animalpose_species(i)
            out += _tag([i], f"animalpose-{sp}", species=lambda _, sp=sp: sp)
        return tuple(out)
    if dataset == "ap10k":
        return tuple(x for i in _coco("ap10k") for x in
                     _tag([i], f"ap10k-{i.category.replace(' ', '_')}", species=lambda j: j.category))
    raise KeyError(dataset)


@lru_cache(maxsize=1)
def all_categories() -> tuple[str, ...]:
    """Every embedded category: the fixed ones, then one per animal species found on disk."""
    species = [i.category for ds in ("animalpose", "ap10k") for i in _species_instances(ds)]
    return FIXED_CATEGORIES + tuple(dict.fromkeys(species))


@lru_cache(maxsize=32)
def _load(category: str, max_side: int, include_cut_off: bool) -> tuple[Instance, ...]:
    out = []
    for i in _raw(category):
        img = i.load()
        reasons = cut_off_reasons(i, img.shape[:2])
        if reasons and not include_cut_off:
            continue
        out.append(downscale(replace(i, image=img, meta=dict(i.meta, cut_off=reasons)), max_side))
    return tuple(out)


def embedded_instances(category: str | None = None, max_side: int = 400, include_cut_off: bool = False
                       ) -> list[Instance]:
    """Real annotated instances from the shared folder (all categories, or one), images loaded.

    Args:
        category: one of :func:`all_categories` (None: all).
        max_side: images are downscaled to at most this side.
        include_cut_off: keep instances flagged as cut off (``meta["cut_off"]`` lists why).
    Returns fresh copies (arrays, image and meta) of a cached list, so callers may modify them.
    """
    cats = all_categories() if category is None else (category,)
    return [replace(i, bbox=i.bbox.copy(), keypoints=i.keypoints.copy(), visible=i.visible.copy(),
                    image=i.image.copy(), meta=dict(i.meta))
            for c in cats for i in _load(c, max_side, include_cut_off)]


def embedded_categories(max_side: int = 400) -> dict[str, int]:
    """{category: number of real instances kept (cut-off ones dropped)}."""
    return {c: len(_load(c, max_side, False)) for c in all_categories()}


def category_summary(max_side: int = 400, categories=None) -> list[dict]:
    """Per category (all, or ``categories``): instances kept, distinct photos, distinct objects, dropped (cut-off)
    instances and why. The table the reports print to say what every number rests on.
    """
    rows = []
    for c in (all_categories() if categories is None else categories):
        allc = _load(c, max_side, True)
        kept = [i for i in allc if not i.meta["cut_off"]]
        rows.append({"category": c, "instances": len(kept), "photos": len({i.meta["photo"] for i in kept}),
                     "objects": len({i.meta["object_id"] for i in kept}), "keypoint types": len(allc[0].keypoint_names)
                     if allc else 0, "dropped (cut off)": len(allc) - len(kept),
                     "why dropped": "; ".join(f"{i.id}: {', '.join(i.meta['cut_off'])}" for i in allc
                                              if i.meta["cut_off"])})
    return rows


def select_categories(categories=None) -> list[str]:
    """Embedded category names for ``categories`` (None: all); a family name selects its species ("animalpose" ->
    "animalpose-cat", "animalpose-horse", ...). Raises ConfigError naming an unknown category."""
    known = list(embedded_categories())
    cats: list[str] = []
    for c in categories or known:
        found = [c] if c in known else [k for k in known if k.startswith(f"{c}-")]
        if not found:
            raise ConfigError(f"unknown embedded category {c!r}; embedded categories: {sorted(known)}")
        cats += [k for k in found if k not in cats]
    return cats


@DATASETS.register("embedded", kind="instances", options=("categories",))
def embedded_dataset(root=None, annotations=None, images=None, categories=None, **options) -> list[Instance]:
    """The real annotated photos of the shared folder (``root``, ``annotations`` and ``images`` are not used) of
    ``categories`` (:func:`select_categories`), in that order. Other options as :func:`embedded_instances`."""
    return [i for c in select_categories(categories) for i in embedded_instances(c, **options)]


@DATASETS.register("synthetic", kind="instances", options=("categories",), pairs="synthetic")
def synthetic_dataset(root=None, annotations=None, images=None, categories=None, **options) -> list[Instance]:
    """The embedded photos (:func:`embedded_dataset`), paired only with warps of themselves (synthetic pairs)."""
    return embedded_dataset(root, annotations, images, categories, **options)
