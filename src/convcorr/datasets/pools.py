"""Data protocols: pools of instances (Tables 2-4) and lists of pairs (the pair benchmark) from named data sets,
with ONE set of options across experiments.

Layer: data sets and methods <- protocols <- experiments. Every experiment reads its data through
:func:`build_pool` / :func:`split_pool` (instances) or :func:`build_pairs` (pairs), so ``--set dataset=...``
means the same everywhere.

Data options (:data:`DATA_OPTIONS`, every key optional in a conf; defaults in brackets):

- ``dataset`` ["embedded"]: a registered data set (:data:`convcorr.datasets.DATASETS`; ``root`` / ``json`` or
  ``csv`` / ``images`` set its loader's ``root`` / ``annotations`` / ``images``, :data:`LOADER_ARGUMENTS`):

  * ``embedded``: the real annotated photos of the shared folder (``datasets.embedded_instances``) plus
    ``n_synthetic`` random smooth warps of each (exact ground truth). For pairs: synthetic (photo, warp) pairs and
    cross-instance pairs of different photos of one category (``pairs``).
  * ``synthetic``: only (photo, warped photo) pairs of the embedded photos (``n_synthetic_pairs`` per
    category).
  * ``spair``: SPair-71k, ``root`` (with ``PairAnnotation/`` and ``JPEGImages/``) and ``split``.
  * ``pf-pascal``: PF-PASCAL pair list ``csv`` (default ``root/test_pairs.csv``), images below ``root``.
  * ``pf-willow``: PF-WILLOW pair list ``csv`` (default ``root/test_pairs.csv``), images below ``root``;
    ``strip_components`` drops leading folders of the listed paths.
  * ``cub``: CUB-200-2011 at ``root``; pairs of two birds of one species (``meta['class']``).
  * ``coco``: any COCO keypoint JSON ``json`` with its image folder ``images``; pairs of two instances of one
    category (``pair_by``); ``strip_prefix``, ``truncate_names``, ``relabel`` handle non-standard files
    (see :func:`convcorr.datasets.load_coco_keypoints`).
  * ``ap10k``: AP-10K (a COCO JSON): ``json`` or ``root/annotations/ap10k-test-split1.json`` with images in
    ``images`` or ``root/data``; ``pair_by="category"`` (species, default) or ``"supercategory"`` (family).
  * ``berkeley``: PASCAL VOC 2011 + Berkeley keypoints at ``root`` (``JPEGImages/``, ``annotations/``).

- ``categories`` [None = all]: keep these categories. For the embedded data an unknown name is an error (a
  family name such as ``animalpose`` selects its species ``animalpose-*``); for other data sets, categories
  they lack are ignored with a warning, and if none is present every category is kept (so a preset's embedded
  category list does not block ``--set dataset=coco``); the note is recorded (:func:`data_notes`).
- ``n_synthetic`` / ``strength`` / ``seed``: synthetic warps per real photo added to pools (every data set; 0
  for real data only; pairs are formed from the real instances, with ``n_synthetic_pairs`` warped pairs).
- ``max_instances`` [None]: at most this many real instances per category (first ones, deterministic).
- ``pairs`` ["both"]: for instance data sets: ``synthetic`` (photo, warp), ``cross`` (different instances) or
  ``both``; ``n_synthetic_pairs`` [8] synthetic pairs per category; ``max_pairs`` [None] listed pairs per
  category, cross pairs per ``pair_by`` group (deterministic random subsample with ``seed``); ``pair_by`` [None: "class" (species) for CUB, else
  "category"; "supercategory" pairs AP-10K species of one family, "any" every two instances with the same
  keypoint set].

Every instance gets ``meta['source_id']`` (the real object it comes from: ``meta['object_id']`` where the loader
sets one, else the instance id) and ``meta['real']``; every pair gets
``source.meta['pair_kind']`` in {"synthetic", "cross", "listed"} (listed = given by the data set).
"""
from __future__ import annotations

import itertools
import warnings
from dataclasses import replace
from typing import Any

import numpy as np

from ..core.errors import ConfigError, DataError
from ..core.types import Instance, Pair

#: options that choose and load a data set (every experiment has them, via :func:`with_data_options`)
SOURCE_OPTIONS: dict[str, Any] = {
    "dataset": "embedded", "root": None, "split": "test", "json": None, "images": None, "csv": None,
    "strip_prefix": None, "strip_components": 0, "truncate_names": False, "relabel": None, "categories": None,
    "n_synthetic": 0, "strength": 1.0, "seed": 0, "max_instances": None,
}
#: options that form pairs (the pair benchmark)
PAIR_OPTIONS: dict[str, Any] = {"pairs": "both", "n_synthetic_pairs": 8, "max_pairs": None, "pair_by": None}
DATA_OPTIONS: dict[str, Any] = {**SOURCE_OPTIONS, **PAIR_OPTIONS}

def with_data_options(conf: dict, pairs: bool = False) -> dict:
    """``conf`` plus every data-source option it lacks (so ``--set json=...`` is a known key everywhere); with
    ``pairs`` also the pair options, and no ``n_synthetic`` unless ``conf`` has it (pairs are formed from the
    real instances: :func:`build_pairs`)."""
    opts = {**SOURCE_OPTIONS, **(PAIR_OPTIONS if pairs else {})}
    if pairs:
        opts.pop("n_synthetic")
    return {**{k: v for k, v in opts.items() if k not in conf}, **conf}


def _opt(conf: dict, key: str):
    v = conf.get(key, DATA_OPTIONS[key])
    return DATA_OPTIONS[key] if v is None and key in ("strip_components", "n_synthetic", "strength", "seed") else v


#: the experiments' data options that set a data-set loader's uniform arguments (the one place they meet): the
#: data root, the annotation file or folder (a COCO ``json`` or a pair-list ``csv``) and the image folder
LOADER_ARGUMENTS = {"root": "root", "json": "annotations", "csv": "annotations", "images": "images"}


def loader_arguments(conf: dict) -> dict:
    """The keyword arguments of the configured data set's loader: ``root`` / ``annotations`` / ``images`` from the
    data options (:data:`LOADER_ARGUMENTS`, unset ones left out) plus the options the data set declares
    (``options`` fact, e.g. ``split``; None values left out)."""
    from ._util import DATASETS

    ds = conf.get("dataset", "embedded")
    args: dict = {}
    for opt, arg in LOADER_ARGUMENTS.items():
        if not conf.get(opt):
            continue
        if arg in args and str(args[arg]) != str(conf[opt]):
            both = [o for o, a in LOADER_ARGUMENTS.items() if a == arg and conf.get(o)]
            raise ConfigError(f"options {both} both give the {arg} of dataset {ds!r}: set one")
        args[arg] = conf[opt]
    for opt in DATASETS.fact(ds, "options", ()):
        if conf.get(opt) is not None:
            args[opt] = conf[opt]
    return args


def load_data(conf: dict) -> list:
    """The configured data set as its loader returns it (instances or pairs), before any filtering.

    Raises FileNotFoundError naming the data option to set when the data set needs a path it did not get."""
    from ._util import DATASETS, MissingArgument

    ds = conf.get("dataset", "embedded")
    loader = DATASETS.get(ds)
    try:
        return loader(**loader_arguments(conf))
    except MissingArgument as exc:
        opts = " or ".join(f"--set {o}=..." for o, a in LOADER_ARGUMENTS.items() if a == exc.argument)
        raise FileNotFoundError(f"dataset {ds!r} needs {opts} ({exc.what}); these data are not in the shared "
                                "folder: use dataset=embedded (the default) here") from exc


def dataset_kind(conf_or_name) -> str:
    """"instances" or "pairs" (the ``kind`` fact) of the configured data set (a conf or a name)."""
    from ._util import DATASETS

    name = conf_or_name.get("dataset", "embedded") if isinstance(conf_or_name, dict) else conf_or_name
    return DATASETS.fact(name, "kind")


# ------------------------------------------------------------------------------------------------- real data
def _real_instances(conf: dict) -> list[Instance]:
    """The real annotated instances of the data set (no warps), before category filtering; for pair lists the
    distinct instances of the listed pairs."""
    data = load_data(conf)
    if dataset_kind(conf) == "instances":
        return list(data)
    seen, out = set(), []
    for p in data:
        for i in (p.source, p.target):
            if i.id not in seen:
                seen.add(i.id)
                out.append(i)
    return out


def _filter_categories(items: list, conf: dict, cat_of, notes: list) -> list:
    cats = conf.get("categories")
    if not cats:
        return items
    have = list(dict.fromkeys(cat_of(i) for i in items))
    keep = [c for c in cats if c in have]
    if not keep:
        msg = (f"dataset {conf.get('dataset')!r} has none of the categories {list(cats)}; using all of its "
               f"categories {have}")
        warnings.warn(msg)
        notes.append(msg)
        return items
    if len(keep) < len(cats):
        msg = f"categories {[c for c in cats if c not in have]} are not in dataset {conf.get('dataset')!r}: ignored"
        warnings.warn(msg)
        notes.append(msg)
    return [i for i in items if cat_of(i) in keep]


def _cap_per_category(insts: list[Instance], n) -> list[Instance]:
    if not n:
        return insts
    count: dict[str, int] = {}
    out = []
    for i in insts:
        if count.get(i.category, 0) < int(n):
            count[i.category] = count.get(i.category, 0) + 1
            out.append(i)
    return out


class Pool(list):
    """A list of instances with ``notes`` (strings describing data decisions, for the report)."""

    notes: list


def data_notes(obj) -> list[str]:
    """Notes recorded while building a pool or pair list (e.g. categories ignored)."""
    return list(getattr(obj, "notes", []))


# ------------------------------------------------------------------------------------------------------ pools
def build_pool(conf: dict) -> Pool:
    """Real instances of the configured data set and categories plus ``n_synthetic`` synthetic warps of each.

    Every instance gets ``meta['source_id']`` (the real photo) and ``meta['real']``; Berkeley instances keep
    ``meta['split']`` ("train"/"test") when ``ImageSets/Main/val.txt`` exists. For pair lists (SPair, PF-*)
    the pool is the set of distinct instances of the listed pairs.
    """
    from .. import datasets
    from ._util import DATASETS

    if "n_warps" in conf:
        raise ConfigError("option 'n_warps' is now 'n_synthetic'")
    notes: list[str] = []
    real = _real_instances(conf)
    if "categories" not in DATASETS.fact(conf.get("dataset", "embedded"), "options", ()):  # else the loader chose
        real = _filter_categories(real, conf, lambda i: i.category, notes)
    real = _cap_per_category(real, conf.get("max_instances"))
    pool = Pool()
    for c in dict.fromkeys(i.category for i in real):
        # source_id: the physical object (embedded data: meta['object_id'], e.g. one FreiHAND capture on several
        # backgrounds), so that "hold out the query's object" holds out all of its photos
        rs = [replace(r, meta=dict(r.meta, source_id=r.meta.get("object_id", r.id), real=True))
              for r in real if r.category == c]
        n_synthetic = int(_opt(conf, "n_synthetic"))
        warps = datasets.synthetic_instances(rs, n_synthetic, seed=_opt(conf, "seed"),
                                             strength=_opt(conf, "strength")) if n_synthetic else []
        pool += rs + [replace(w, meta=dict(w.meta, real=False)) for w in warps]
    if not pool:
        raise DataError(f"dataset {conf.get('dataset')!r}: no instances (check categories / files)")
    pool.notes = notes
    return pool


def split_pool(conf: dict) -> tuple[list, list, dict]:
    """(train instances, test instances, {category: split description}) of the configured data (Tables 3-4).

    Categories with at least 3 photos (or without warps) are split BY PHOTO (``test_fraction`` of the photos,
    with all their warps and every object in them, are test; ``meta["photo"]``, else the source object); smaller ones BY WARP (test = the last ``test_warps`` warps of every photo).
    Needs ``test_warps`` and ``test_fraction``; ``n_synthetic`` warps per photo.
    """
    n_synthetic = int(conf.get("n_synthetic", 0) or 0)
    pool = build_pool(dict(conf, n_synthetic=n_synthetic))
    train, test, kinds = [], [], {}
    photo = lambda i: i.meta.get("photo", i.meta["source_id"])  # people of one photo stay on one side
    for c in dict.fromkeys(i.category for i in pool):
        insts = [i for i in pool if i.category == c]
        sources = list(dict.fromkeys(photo(i) for i in insts))
        if len(sources) >= 3 or n_synthetic == 0:
            n_test = min(len(sources) - 1, max(1, int(round(len(sources) * conf["test_fraction"]))))
            if n_test < 1:
                raise ConfigError(f"category {c!r} has a single photo and no warps: cannot split")
            test_src = set(sources[-n_test:])
            train += [i for i in insts if photo(i) not in test_src]
            test += [i for i in insts if photo(i) in test_src]
            kinds[c] = f"by photo ({len(sources) - n_test} train / {n_test} test photos)"
        else:
            if not 1 <= conf["test_warps"] <= n_synthetic:
                raise ConfigError(f"category {c!r} ({len(sources)} photos) is split by warp: need "
                                 f"1 <= test_warps ({conf['test_warps']}) <= n_synthetic ({n_synthetic})")
            is_test = [(not i.meta.get("real")) and int(i.id.rsplit("~w", 1)[-1]) >= n_synthetic - conf["test_warps"]
                       for i in insts]
            train += [i for i, t in zip(insts, is_test) if not t]
            test += [i for i, t in zip(insts, is_test) if t]
            kinds[c] = f"by warp ({len(sources)} photos; test = {conf['test_warps']} unseen warp(s) of each)"
    return train, test, kinds


# ------------------------------------------------------------------------------------------------------ pairs
def pair_group(inst: Instance, pair_by: str) -> str:
    """The group two instances must share to form a pair: "category", "supercategory" (AP-10K family), "class"
    (CUB species) or "any" (any two instances with the same keypoint set, e.g. AP-10K across families)."""
    if pair_by == "category":
        return inst.category
    if pair_by in ("supercategory", "class"):
        return str(inst.meta.get(pair_by, inst.category))
    if pair_by == "any":
        return "any"
    raise ConfigError(f"pair_by must be 'category', 'supercategory', 'class' or 'any', got {pair_by!r}")


def cross_pairs(insts: list[Instance], pair_by: str = "category", max_pairs: int | None = None,
                seed: int = 0) -> list[Pair]:
    """Ordered pairs (a, b) of different objects of one group with the same keypoint set that share at least one
    visible keypoint; per group at most ``max_pairs``, drawn at random (``seed``) and returned in list order."""
    rng = np.random.default_rng(seed)
    out = []
    groups: dict[str, list[Instance]] = {}
    for i in insts:
        groups.setdefault(pair_group(i, pair_by), []).append(i)
    for g, members in groups.items():
        cand = list(itertools.permutations(range(len(members)), 2))
        if max_pairs and len(cand) > int(max_pairs):
            cand = [cand[k] for k in rng.permutation(len(cand))]
        chosen = []
        for ia, ib in cand:
            a, b = members[ia], members[ib]
            if a.keypoint_names != b.keypoint_names or a.meta.get("source_id", a.id) == b.meta.get("source_id", b.id):
                continue
            if not len(Pair(a, b).common_keypoints()):
                continue
            chosen.append((ia, ib))
            if max_pairs and len(chosen) >= int(max_pairs):
                break
        out += [Pair(replace(members[ia], meta=dict(members[ia].meta, pair_kind="cross", group=g)), members[ib])
                for ia, ib in sorted(chosen)]
    return out


def default_pair_by(dataset: str) -> str:
    """How instances are grouped into pairs when ``pair_by`` is None: the data set's ``pair_by`` fact (CUB: by
    species, "class"), else "category"."""
    from ._util import DATASETS

    return DATASETS.fact(dataset, "pair_by", "category")


def build_pairs(conf: dict) -> list[Pair]:
    """Source/target pairs of the configured data set (see the module docstring for the options).

    Returns a list with ``.notes`` (:func:`data_notes`); every pair's ``source.meta['pair_kind']`` says how it
    was made ("synthetic" same-instance warp, "cross" instance, "listed" by the data set).
    """
    from .. import datasets

    ds = conf.get("dataset", "embedded")
    seed = int(_opt(conf, "seed"))
    notes: list[str] = []
    out: list[Pair] = []
    kind = dataset_kind(ds)
    if kind == "pairs":
        pairs = _filter_categories(load_data(conf), conf, lambda p: p.source.category, notes)
        for c in dict.fromkeys(p.source.category for p in pairs):
            ps = [p for p in pairs if p.source.category == c]
            if conf.get("max_pairs") and len(ps) > int(conf["max_pairs"]):
                keep = np.sort(np.random.default_rng(seed).choice(len(ps), int(conf["max_pairs"]), replace=False))
                ps = [ps[k] for k in keep]
            out += [Pair(replace(p.source, meta=dict(p.source.meta, pair_kind="listed")), p.target) for p in ps]
    else:
        kind = datasets.DATASETS.fact(ds, "pairs") or conf.get("pairs", "both")
        if kind not in ("synthetic", "cross", "both"):
            raise ConfigError(f"option 'pairs' must be 'synthetic', 'cross' or 'both', got {kind!r}")
        real = build_pool(dict(conf, n_synthetic=0))
        notes += data_notes(real)
        if kind in ("synthetic", "both"):
            n = int(conf.get("n_synthetic_pairs", DATA_OPTIONS["n_synthetic_pairs"]) or 0)
            for c in dict.fromkeys(i.category for i in real) if n else []:
                sp = datasets.synthetic_pairs([i for i in real if i.category == c], n, seed=seed,
                                              strength=_opt(conf, "strength"), photometric=True)
                out += [Pair(replace(p.source, meta=dict(p.source.meta, pair_kind="synthetic")), p.target)
                        for p in sp if len(p.common_keypoints())]
        if kind in ("cross", "both"):
            pair_by = conf.get("pair_by") or default_pair_by(ds)
            cp = cross_pairs(list(real), pair_by, conf.get("max_pairs"), seed)
            for g in dict.fromkeys(pair_group(i, pair_by) for i in real):
                if not any(p.source.meta.get("group") == g for p in cp):
                    notes.append(f"{pair_by} {g!r}: no two different objects share a visible keypoint, no cross pairs")
            out += cp
    if not out:
        raise DataError(f"dataset {ds!r}: no pairs (check categories / pairs / n_synthetic_pairs / pair_by)"
                        + (": " + "; ".join(notes) if notes else ""))
    res = Pool(out)
    res.notes = notes
    return res
