"""Experiments as data: every table/figure of the paper is a module with named
preset configurations (``CONFIGS``) and ``main(conf, out_dir) -> Path`` that
writes ``report.md``, ``results.json`` and figures into ``out_dir``.

Registry (:data:`EXPERIMENTS`): an experiment module registers itself by decorating its ``main`` with
``@register_experiment("name")``; the built-in modules are imported the first time an experiment is looked up or
listed, other packages add experiments through the entry-point group ``convcorr.experiments``.

Option types: an override must have the type of the option's values in the presets (an int where the presets
hold ints, a list where they hold lists, ...; an int is accepted for a float and converted). An option whose
presets are all None declares its type in the module's ``OPTION_TYPES`` (``{name: (type, ...)}``, ``None`` in the
tuple allowing None) or in :data:`COMMON_OPTION_TYPES`. Checks happen in :func:`resolve_conf`, before any work.
"""
from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any, Callable, Mapping

from ..core.errors import ConfigError, UserError
from ..core.registry import Registry
from ..runtime.parallel import EXECUTORS
from .workers import PARALLEL_OPTION_TYPES


def _check_experiment(name: str, module, facts: dict) -> None:
    if not isinstance(module, types.ModuleType):
        raise TypeError(f"experiment {name!r} must be registered as a module (decorate its main with "
                        f"@register_experiment({name!r})), got {module!r}")


#: experiment name -> module implementing it (``CONFIGS`` and ``main``); built-ins in this order
EXPERIMENTS = Registry("experiment", group="convcorr.experiments", on_register=_check_experiment,
                       builtins=[f"{__name__}.{m}" for m in ("table1", "table2", "table3", "table4", "visualize",
                                                                 "pairs", "backbones")])


def register_experiment(name: str, **facts) -> Callable:
    """Decorator of an experiment module's ``main(conf, out_dir)``: registers the module (with its ``CONFIGS``)
    under ``name`` in :data:`EXPERIMENTS`; returns ``main`` unchanged."""

    def deco(main):
        if not callable(main):
            raise TypeError(f"@register_experiment({name!r}) decorates the experiment's main function")
        EXPERIMENTS.add(name, sys.modules[main.__module__], **facts)
        return main

    return deco

#: declared types of options whose presets are all None (per-module ``OPTION_TYPES`` take precedence)
COMMON_OPTION_TYPES: dict[str, tuple] = {
    # data options (convcorr.datasets.pools.DATA_OPTIONS) whose default is None
    "root": (str, None), "json": (str, None), "images": (str, None), "csv": (str, None),
    "strip_prefix": (str, None), "max_instances": (int, None), "relabel": (dict, None), "pair_by": (str, None),
    "max_pairs": (int, None),
    # pair benchmark
    "gallery_method": (str, None),
    # parallel options of every experiment
    **PARALLEL_OPTION_TYPES,
}


def get_experiment(name: str):
    """The module of experiment ``name`` (``CONFIGS``, ``main``); an unknown name raises a ConfigError naming the
    closest experiments."""
    mod = EXPERIMENTS.get(name)
    if not isinstance(getattr(mod, "CONFIGS", None), dict) or not callable(getattr(mod, "main", None)):
        raise ConfigError(f"experiment {name!r} ({mod.__name__}) must define CONFIGS (a dict of presets) and "
                          "main(conf, out_dir)")
    return mod


def _type_name(t) -> str:
    return "None" if t is None else t.__name__


def option_types(name: str, key: str) -> tuple:
    """Allowed types of option ``key`` of experiment ``name``: declared, or those of its values in the presets."""
    mod = get_experiment(name)
    declared = dict(COMMON_OPTION_TYPES, **getattr(mod, "OPTION_TYPES", {}))
    if key in declared:
        return tuple(declared[key])
    out: list = []
    for conf in mod.CONFIGS.values():
        if key in conf:
            t = None if conf[key] is None else type(conf[key])
            if t not in out:
                out.append(t)
    return tuple(out)


def _element_types(name: str, key: str) -> set:
    """Types of the elements of list/tuple values of ``key`` in the presets (empty: unconstrained)."""
    out = set()
    for conf in get_experiment(name).CONFIGS.values():
        v = conf.get(key)
        if isinstance(v, (list, tuple)):
            out |= {type(e) for e in v}
    return out


def _fits(v, types) -> bool:
    for t in types:
        if t is None:
            if v is None:
                return True
        elif t is bool:
            if isinstance(v, bool):
                return True
        elif t is int:
            if isinstance(v, int) and not isinstance(v, bool):
                return True
        elif t is float:
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                return True
        elif t in (list, tuple):
            if isinstance(v, (list, tuple)):
                return True
        elif isinstance(v, t):
            return True
    return False


class CliValue:
    """A ``--set`` value: its Python-literal reading and the raw text (used for str options, so that
    ``--set root=2011`` stays the string "2011")."""

    def __init__(self, parsed: Any, raw: str):
        self.parsed, self.raw = parsed, raw

    def __repr__(self) -> str:
        return f"CliValue({self.parsed!r}, {self.raw!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, CliValue) and (self.parsed, self.raw) == (other.parsed, other.raw)


def check_option(name: str, key: str, value: Any) -> Any:
    """``value`` checked against the type of option ``key`` of experiment ``name`` (and converted: int -> float,
    list <-> tuple as in the presets). Raises ConfigError naming the experiment, the option and both types."""
    types = option_types(name, key)
    if isinstance(value, CliValue):
        keep_raw = str in types and not isinstance(value.parsed, str) and not (value.parsed is None and None in types)
        value = value.raw if keep_raw else value.parsed
    if not types or types == (None,):  # undeclared None-only option: accept any literal
        return value
    if not _fits(value, types):
        want = " or ".join(_type_name(t) for t in types)
        hint = ""
        if isinstance(value, str) and (list in types or tuple in types):
            hint = f" (write a list literal, e.g. --set {key}='[\"{value}\"]')"
        raise ConfigError(f"experiment {name!r}: option {key!r} expects {want}, got {type(value).__name__} "
                          f"{value!r}{hint}")
    if isinstance(value, (list, tuple)):
        elems = _element_types(name, key)
        if elems:
            for e in value:
                if not _fits(e, elems):
                    want = " or ".join(sorted(_type_name(t) for t in elems))
                    raise ConfigError(f"experiment {name!r}: option {key!r} expects a list of {want}, "
                                      f"got element {e!r} ({type(e).__name__})")
        value = tuple(value) if tuple in types and list not in types else list(value)
    elif float in types and int not in types and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    return value


#: allowed values of options shared by several experiments (checked before any work when overridden)
COMMON_OPTION_CHOICES: dict[str, tuple] = {
    "pair_by": (None, "category", "supercategory", "class", "any"),
    "pairs": ("synthetic", "cross", "both"),
    "split": ("trn", "val", "test"),
    "executor": (None, *EXECUTORS),
}

#: options naming one backbone / a list of backbones (one name, one meaning across experiments)
BACKBONE_OPTIONS = ("backbone", "retrieval_backbone", "prior_backbone")
#: options naming spatial layers of the experiment's ``backbone`` (lists, or one name)
LAYER_OPTIONS = ("layers", "recon_layers", "reference_layer")


def check_conf(name: str, conf: dict, keys=None) -> None:
    """Value checks before any work: finite numbers, non-negative counts (where every preset is >= 0), known
    backbone names and layers, usable feature specs (``features``: built once, which loads the backbone), known
    matchers / baselines, known embedded categories. ``keys``: only these options (default: all).

    Raises ConfigError naming the experiment and the option.
    """
    import math

    from ..backbones import BACKBONES

    mod = get_experiment(name)
    keys = set(conf if keys is None else keys)

    def bad(k, why):
        raise ConfigError(f"experiment {name!r}: option {k!r} {why}")

    def known_backbone(k, b):
        if not isinstance(b, str) or (b not in BACKBONES and ":" not in b):
            bad(k, f"names an unknown backbone {b!r}; {BACKBONES.suggest(b)}")

    for k in keys:
        v = conf.get(k)
        if isinstance(v, float) and not math.isfinite(v):
            bad(k, f"must be finite, got {v!r}")
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            presets = [c[k] for c in mod.CONFIGS.values() if isinstance(c.get(k), (int, float))]
            if presets and all(p >= 0 for p in presets) and v < 0:
                bad(k, f"must be >= 0, got {v!r}")
        if k == "workers" and isinstance(v, int) and v < 1:
            bad(k, f"must be >= 1, got {v!r}")
        if k in BACKBONE_OPTIONS and v is not None:
            known_backbone(k, v)
        if k == "backbones" and isinstance(v, (list, tuple)):
            for b in v:
                known_backbone(k, b)
    for k in sorted(keys & set(COMMON_OPTION_CHOICES)):
        if k in conf and conf[k] not in COMMON_OPTION_CHOICES[k]:
            bad(k, f"must be one of {list(COMMON_OPTION_CHOICES[k])}, got {conf[k]!r}")
    if "dataset" in keys and conf.get("dataset") is not None:
        from ..datasets import DATASETS

        if conf["dataset"] not in DATASETS:
            bad("dataset", f"names an unknown data set {conf['dataset']!r}; {DATASETS.suggest(conf['dataset'])}")
    if "features" in keys and isinstance(conf.get("features"), (list, tuple)):
        from ..features.base import get_features

        for spec in conf["features"]:
            try:
                get_features(spec)
            except (ValueError, KeyError) as exc:
                bad("features", f"has an unusable feature spec {spec!r} ({exc})")
    if "matchers" in keys and isinstance(conf.get("matchers"), (list, tuple)):
        from ..matchers import MATCHERS

        unknown = [m for m in conf["matchers"] if m not in MATCHERS]
        if unknown:
            bad("matchers", f"names unknown matcher(s) {unknown}; {MATCHERS.suggest(unknown[0])}")
    if "baselines" in keys and isinstance(conf.get("baselines"), (list, tuple)):
        from ..methods.transfer import TRANSFER_METHODS

        unknown = [b for b in conf["baselines"] if b not in TRANSFER_METHODS or b == "align"]
        if unknown:
            bad("baselines", f"names unknown baseline(s) {unknown}; available: "
                             f"{sorted(set(TRANSFER_METHODS) - {'align'})}")
    bname = conf.get("backbone")
    layer_keys = set(LAYER_OPTIONS) if "backbone" in keys else set(LAYER_OPTIONS) & keys
    layer_keys = {k for k in layer_keys if conf.get(k) is not None}
    if isinstance(bname, str) and bname in BACKBONES and layer_keys:  # library models are checked when built
        from ..backbones import layer_names

        have = layer_names(bname)
        for k in sorted(layer_keys):
            vals = [conf[k]] if isinstance(conf[k], str) else list(conf[k])
            unknown = [l for l in vals if l not in have]
            if unknown:
                bad(k, f"names layer(s) {unknown} that {bname} does not have; layers: {list(have)}")
    if conf.get("dataset", "embedded") == "embedded" and conf.get("categories") and (
            keys & {"categories", "dataset"}):
        from ..datasets import embedded_categories

        try:
            cats = embedded_categories()
        except (OSError, ValueError):  # shared folder missing: reported when the data is loaded
            return
        unknown = [c for c in conf["categories"] if c not in cats]
        if unknown:
            bad("categories", f"names unknown embedded categories {unknown}; categories: {sorted(cats)}")


def resolve_conf(name: str, preset: str = "default", overrides: Mapping[str, Any] | None = None) -> dict:
    """Preset config of an experiment, updated with overrides.

    Raises:
        ConfigError (a KeyError and ValueError) naming the experiment: unknown experiment, preset or option, an
        override of the wrong type (:func:`check_option`) or an overridden value that cannot work
        (:func:`check_conf`: non-finite, negative count, unknown backbone / layer / embedded category).
    """
    mod = get_experiment(name)
    if preset not in mod.CONFIGS:
        raise ConfigError(f"experiment {name!r} has no preset {preset!r}; presets: {sorted(mod.CONFIGS)}")
    conf = dict(mod.CONFIGS[preset])
    for k, v in (overrides or {}).items():
        if k not in conf:
            raise ConfigError(f"experiment {name!r} has no option {k!r}; options: {sorted(conf)}")
        conf[k] = check_option(name, k, v)
    check_conf(name, conf, keys=set(overrides or {}))
    return conf


def plan_all(preset: str = "default", overrides: Mapping[str, Any] | None = None,
             names: list[str] | None = None) -> dict[str, tuple[str, dict]]:
    """Validate a run of several experiments up front: {name: (preset, resolved conf)}.

    Each experiment runs ``preset`` when it has it and ``default`` otherwise; an override applies to the
    experiments that have that option. Raises ConfigError when no experiment has the preset, when an override
    key is an option of none of them, or when a value has the wrong type for any experiment that uses it.
    """
    names = list(names or EXPERIMENTS)
    mods = {n: get_experiment(n) for n in names}
    if not any(preset in m.CONFIGS for m in mods.values()):
        known = sorted({p for m in mods.values() for p in m.CONFIGS})
        raise ConfigError(f"no experiment has a preset {preset!r}; presets: {known}")
    overrides = dict(overrides or {})
    plan = {}
    for n, m in mods.items():
        p = preset if preset in m.CONFIGS else "default"
        ov = {k: v for k, v in overrides.items() if k in m.CONFIGS[p]}
        plan[n] = (p, resolve_conf(n, p, ov))
    used = {k for n, (p, _) in plan.items() for k in overrides if k in mods[n].CONFIGS[p]}
    unknown = sorted(set(overrides) - used)
    if unknown:
        opts = sorted({k for m in mods.values() for c in m.CONFIGS.values() for k in c})
        raise ConfigError(f"no experiment has option(s) {unknown}; options: {opts}")
    return plan


def run(name: str, out_dir: str | Path, preset: str = "default", overrides: Mapping[str, Any] | None = None,
        force: bool = False, conf: dict | None = None) -> Path:
    """Run one experiment; returns the path of its report.md.

    The configuration is validated and the output folder checked (:func:`convcorr.viz.report.prepare_out_dir`:
    refuses a non-empty folder that is not a report of this experiment, or a symlinked one, unless ``force``)
    before any work starts. ``conf`` (already resolved, e.g. by :func:`plan_all`) skips the resolution.
    """
    from ..viz.report import prepare_out_dir

    conf = dict(conf) if conf is not None else resolve_conf(name, preset, overrides)
    out = prepare_out_dir(Path(out_dir), name, force=force)
    try:
        return get_experiment(name).main(conf, out)
    except (UserError, FileNotFoundError, NotADirectoryError, PermissionError) as exc:
        raise _naming(exc, name) from exc


def _naming(exc: Exception, name: str) -> Exception:
    """The user error ``exc`` with a message that starts with the experiment that raised it: ``<name>: ...``
    (shared code such as data protocols does not know which experiment runs it; another experiment's prefix,
    e.g. "table2:" from shared table code, is replaced)."""
    msg = str(exc)
    for other in EXPERIMENTS:
        if msg.startswith(f"{other}: "):
            msg = msg[len(other) + 2:]
            break
    try:
        new = type(exc)(f"{name}: {msg}")
    except Exception:  # pragma: no cover - exotic constructor
        return exc
    return new
