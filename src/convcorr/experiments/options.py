"""The option vocabulary of the experiments: every option of every preset is declared once, with its type and a
one-line help, so that ``convcorr experiment NAME --list`` can show it and :func:`convcorr.experiments.resolve_conf`
can check an override before any work.

Options shared by several experiments (data, parallel, features / matchers / backbones, statistics) are declared in
:data:`COMMON_OPTIONS`; an experiment module declares its own options (and any shared name whose help or type
differs for it) in ``OPTIONS``, a list of :class:`Option`. Defaults are the presets' values (``CONFIGS``), not part
of the declaration. One name, one meaning: an option keeps its name in every experiment that has it; names that
were renamed are listed in :data:`RENAMED` and answered with a ConfigError naming the new option (no silent alias).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..runtime.parallel import EXECUTORS


def _tuple(t) -> tuple:
    return tuple(t) if isinstance(t, (tuple, list)) else (t,)


@dataclass(frozen=True)
class Option:
    """One option of an experiment.

    Args:
        name: the key in the configuration (``--set name=value``).
        type: the allowed value types (a type or a tuple; ``None`` in it allows None; ``float`` accepts an int,
            ``list`` accepts a tuple).
        help: one line: what the option does (and what None means where it is allowed).
        choices: the allowed values, when there are few.
        item: the allowed element types of a list option (None: any).
        length: the exact number of elements of a list option (None: any).
    """

    name: str
    type: Any
    help: str
    choices: tuple | None = None
    item: Any = None
    length: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "type", _tuple(self.type))
        if self.item is not None:
            object.__setattr__(self, "item", _tuple(self.item))
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(self.choices))

    @property
    def type_name(self) -> str:
        """e.g. ``int``, ``list[str] | None``, ``float``."""
        out = []
        for t in self.type:
            if t is None:
                continue
            name = t.__name__
            if t in (list, tuple) and self.item:
                name = f"list[{' | '.join(type_label(i) for i in self.item)}]"
            out.append(name)
        return " | ".join(dict.fromkeys(out + (["None"] if None in self.type else [])))


def type_label(t) -> str:
    """The name of a type in messages and listings (``None`` for None)."""
    return "None" if t is None else t.__name__


#: options shared by several experiments (an experiment's ``OPTIONS`` entry of the same name takes precedence)
COMMON_OPTIONS: dict[str, Option] = {o.name: o for o in [
    # -- data (convcorr.datasets.pools.DATA_OPTIONS)
    Option("dataset", str, "data set to load (a registered data set: embedded, synthetic, spair, coco, ...)"),
    Option("root", (str, None), "data set folder (SPair-71k, PF-*, CUB, AP-10K, Berkeley PASCAL)"),
    Option("split", str, "SPair-71k split", choices=("trn", "val", "test")),
    Option("json", (str, None), "COCO keypoint JSON file (dataset coco / ap10k)"),
    Option("images", (str, None), "image folder of the COCO JSON (dataset coco / ap10k)"),
    Option("csv", (str, None), "pair list CSV of PF-PASCAL / PF-WILLOW (None: root/test_pairs.csv)"),
    Option("strip_prefix", (str, None), "COCO: leading part dropped from every image file name"),
    Option("strip_components", int, "PF-WILLOW: leading folders dropped from the listed image paths"),
    Option("truncate_names", bool, "COCO: accept annotations with fewer keypoints than the category names"),
    Option("relabel", (dict, None), "COCO: {file-name pattern: category} for files without category names"),
    Option("categories", (list, None), "keep these categories (None: all of the data set)", item=str),
    Option("n_synthetic", int, "random smooth warps (exact keypoints) added per real photo; 0: real photos only"),
    Option("strength", float, "strength of the synthetic warps (1: the standard deformation)"),
    Option("seed", int, "seed of every random choice (warps, subsamples, splits, bootstrap)"),
    Option("max_instances", (int, None), "at most this many real instances per category (the first ones)"),
    Option("pairs", str, "pairs of instance data sets: (photo, warp), cross-instance, or both",
           choices=("synthetic", "cross", "both")),
    Option("n_synthetic_pairs", int, "(photo, warped photo) pairs per category"),
    Option("max_pairs", (int, None), "at most this many pairs per category / pair_by group (seeded subsample)"),
    Option("pair_by", (str, None), "group of cross pairs (None: class for CUB, else category)",
           choices=(None, "category", "supercategory", "class", "any")),
    # -- parallel runs (convcorr.experiments.workers)
    Option("workers", int, "processes (or Ray tasks) running the independent units of work"),
    Option("executor", (str, None), "serial, process or ray (None: serial for 1 worker, else process)",
           choices=(None, *EXECUTORS)),
    Option("ray_address", (str, None), "Ray cluster address for executor ray (None: start a local one)"),
    Option("resume", bool, "keep each finished unit's result under OUT/tasks/ and reuse it on a re-run"),
    # -- features, matchers, backbones
    Option("features", list, "dense feature specs, e.g. alexnet:conv4, sift:step=8,bin=8", item=str),
    Option("matchers", list, "matchers aligning every feature grid (flow, nn, mnn, softargmax)", item=str),
    Option("matcher_options", dict, "{matcher: {option: value}}; one at a time: --set matcher_options.flow.beta=0.01"),
    Option("baselines", list, "reference methods compared with the matchers (box-copy)", item=str),
    Option("backbone", str, "backbone network (convcorr backbones lists them)"),
    Option("backbones", list, "backbone networks (registered names or timm:<model> / torchvision:<model>)",
           item=str),
    Option("input_size", int, "side in pixels of the square network input (each crop is resized to it)"),
    Option("margin", float, "context added around the instance box on every side, a fraction of its size"),
    Option("crop", str, "image region fed to the network: the instance box (+ margin) or the whole image",
           choices=("box", "image")),
    Option("batch_size", int, "images per forward pass of the network"),
    # -- evaluation and statistics
    Option("pck_protocols", list, "PCK protocols (names in convcorr.pck.PROTOCOLS or dicts of PCKProtocol fields)",
           item=(str, dict)),
    Option("n_boot", int, "bootstrap replicates of every 95% interval"),
    # -- keypoint classification / prediction (Tables 3-4, backbones): data split and SVMs
    Option("test_warps", int, "categories split by warp: the last test_warps warps of every photo are test"),
    Option("test_fraction", float, "categories split by photo (>= 3 photos): fraction of the photos that are test"),
    Option("max_types", (int, None), "at most this many keypoint types per category, subsampled evenly (None: all)"),
    Option("Cs", list, "SVM C values; the best is chosen by grouped cross-validation", item=float),
    Option("folds", int, "folds of the grouped cross-validation over Cs"),
]}

#: old option name -> (new name, how to write the value with the new name); an old name is an error that says so
RENAMED: dict[str, tuple[str, str]] = {
    "n_warps": ("n_synthetic", "n_synthetic={v}"),
    "size": ("input_size", "input_size={v}"),
    "matcher": ("matchers", "matchers='[\"{v}\"]'"),
    "pck_protocol": ("pck_protocols", "pck_protocols='[\"{v}\"]'"),
    "C": ("Cs", "Cs='[{v}]'"),
    **{k: (f"matcher_options.flow.{k}", f"matcher_options.flow.{k}={{v}}")
       for k in ("beta", "n_iter", "radius_px", "coarse_to_fine", "normalize")},
}


def renamed_message(old: str, value: Any, known) -> str | None:
    """``option 'OLD' is now 'NEW' (--set NEW=VALUE)`` when ``old`` is a renamed option whose new name is among
    ``known`` (the experiment's options), else None."""
    if old not in RENAMED:
        return None
    new, how = RENAMED[old]
    if new.split(".", 1)[0] not in known:
        return None
    raw = getattr(value, "raw", None)
    v = raw if raw is not None else (value if isinstance(value, str) else repr(value))
    return f"option {old!r} is now {new!r} (--set {how.format(v=v)})"


def inferred_option(name: str, values) -> Option:
    """An undeclared option (e.g. of an experiment outside this package): its types are those of its preset
    values."""
    types: list = []
    items: set = set()
    for v in values:
        t = None if v is None else type(v)
        if t not in types:
            types.append(t)
        if isinstance(v, (list, tuple)):
            items |= {type(e) for e in v}
    return Option(name, tuple(types), "(undeclared)", item=tuple(items) or None)


def schema(mod) -> dict[str, Option]:
    """{option name: Option} of an experiment module: every key of every preset, declared by the module's
    ``OPTIONS`` or by :data:`COMMON_OPTIONS` (undeclared keys: :func:`inferred_option`), in preset order."""
    own = {o.name: o for o in getattr(mod, "OPTIONS", ())}
    keys = list(dict.fromkeys(k for c in mod.CONFIGS.values() for k in c))
    out = {}
    for k in keys:
        if k in own:
            out[k] = own[k]
        elif k in COMMON_OPTIONS:
            out[k] = COMMON_OPTIONS[k]
        else:
            out[k] = inferred_option(k, [c[k] for c in mod.CONFIGS.values() if k in c])
    return out


def undeclared(mod) -> list[str]:
    """Preset keys of an experiment module that neither its ``OPTIONS`` nor :data:`COMMON_OPTIONS` declare."""
    own = {o.name for o in getattr(mod, "OPTIONS", ())}
    return sorted({k for c in mod.CONFIGS.values() for k in c} - own - set(COMMON_OPTIONS))
