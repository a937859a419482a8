"""Experiments as data: every table/figure of the paper is a module with named
preset configurations (``CONFIGS``), the declarations of its own options (``OPTIONS``, see
:mod:`convcorr.experiments.options`) and ``main(conf, out_dir) -> Path`` that writes ``report.md``,
``results.json`` and figures into ``out_dir``.

Registry (:data:`EXPERIMENTS`): an experiment module registers itself by decorating its ``main`` with
``@register_experiment("name")``; the built-in modules are imported the first time an experiment is looked up or
listed, other packages add experiments through the entry-point group ``convcorr.experiments``.

Options: every option is declared (:func:`options`: name, type, one-line help, allowed values; see
:mod:`convcorr.experiments.options`); an override must have the declared type (an int is accepted for a float and
converted, a tuple for a list) and is checked in :func:`resolve_conf`, before any work. A dotted key sets one entry
of a dict option (``matcher_options.flow.beta=0.01``). An unknown experiment, preset or option is answered with the
closest valid names; a renamed option with its new name.
"""
from __future__ import annotations

import copy
import sys
import types
from pathlib import Path
from typing import Any, Callable, Mapping

from ..core.errors import ConfigError, UserError
from ..core.registry import Registry, closest
from .options import Option, renamed_message, schema, type_label


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


def did_you_mean(name: str, valid) -> str:
    """``"; did you mean 'a' or 'b'?"`` for the valid names closest to ``name``
    (:func:`convcorr.core.registry.closest`), else ``"; choose from [...]"``."""
    valid = sorted(str(v) for v in valid)
    close = closest(str(name), valid)
    if close:
        return "; did you mean " + " or ".join(repr(c) for c in close) + "?"
    return f"; choose from {valid}"


def get_experiment(name: str):
    """The module of experiment ``name`` (``CONFIGS``, ``main``); an unknown name raises a ConfigError naming the
    closest experiments."""
    mod = EXPERIMENTS.get(name)
    if not isinstance(getattr(mod, "CONFIGS", None), dict) or not callable(getattr(mod, "main", None)):
        raise ConfigError(f"experiment {name!r} ({mod.__name__}) must define CONFIGS (a dict of presets) and "
                          "main(conf, out_dir)")
    return mod


def options(name: str) -> dict[str, Option]:
    """{option name: :class:`~convcorr.experiments.options.Option`} of experiment ``name`` (every key of every
    preset, in preset order)."""
    return schema(get_experiment(name))


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
    """``value`` checked against the declared type, element type, length and allowed values of option ``key`` of
    experiment ``name`` (and converted: int -> float, tuple -> list). Raises ConfigError naming the experiment,
    the option and what it expects."""
    o = options(name)[key]
    types = o.type
    if isinstance(value, CliValue):
        keep_raw = str in types and not isinstance(value.parsed, str) and not (value.parsed is None and None in types)
        value = value.raw if keep_raw else value.parsed
    if not types or types == (None,):  # undeclared None-only option: accept any literal
        return value
    where = f"experiment {name!r}: option {key!r}"
    if not _fits(value, types):
        hint = ""
        if isinstance(value, str) and (list in types or tuple in types):
            hint = f" (write a list literal, e.g. --set {key}='[\"{value}\"]')"
        raise ConfigError(f"{where} expects {o.type_name.replace(' | ', ' or ')}, got {type(value).__name__} "
                          f"{value!r}{hint}")
    if isinstance(value, (list, tuple)):
        if o.item:
            for e in value:
                if not _fits(e, o.item):
                    want = " or ".join(sorted(type_label(t) for t in o.item))
                    raise ConfigError(f"{where} expects a list of {want}, got element {e!r} ({type(e).__name__})")
        if o.length is not None and len(value) != o.length:
            raise ConfigError(f"{where} takes a list of exactly {o.length} here, got {len(value)}: {list(value)!r}")
        value = tuple(value) if tuple in types and list not in types else list(value)
    elif float in types and int not in types and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if o.choices is not None and value not in o.choices:
        msg = f"{where} must be one of {list(o.choices)}, got {value!r}"
        close = closest(value, [c for c in o.choices if isinstance(c, str)], n=1) if isinstance(value, str) else []
        raise ConfigError(msg + (f"; did you mean {close[0]!r}?" if close else ""))
    return value


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
    keys = set(conf if keys is None else keys)

    def bad(k, why):
        raise ConfigError(f"experiment {name!r}: option {k!r} {why}")

    _check_values(get_experiment(name), conf, keys, bad)
    _check_plugins(conf, keys, bad)
    _check_layers(conf, keys, bad)
    _check_categories(conf, keys, bad)


def _non_finite(v) -> bool:
    """True when ``v`` is, or holds at any depth, a non-finite float."""
    import math

    if isinstance(v, float):
        return not math.isfinite(v)
    if isinstance(v, dict):
        return any(_non_finite(x) for x in v.values())
    return isinstance(v, (list, tuple)) and any(_non_finite(x) for x in v)


def _check_values(mod, conf: dict, keys: set, bad) -> None:
    """Finite numbers, non-negative counts (where every preset is >= 0), workers >= 1, known backbone names."""
    from ..backbones import BACKBONES

    def known_backbone(k, b):
        if not isinstance(b, str) or (b not in BACKBONES and ":" not in b):
            bad(k, f"names an unknown backbone {b!r}; {BACKBONES.suggest(b)}")

    for k in keys:
        v = conf.get(k)
        if _non_finite(v):
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


def _check_plugins(conf: dict, keys: set, bad) -> None:
    """Known data set, usable feature specs, known matchers with usable options, known baselines."""
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
    if "matcher_options" in keys and isinstance(conf.get("matcher_options"), dict):
        from ..matchers import MATCHERS, get_matcher

        for m, mo in conf["matcher_options"].items():
            if m not in MATCHERS:
                bad("matcher_options", f"names an unknown matcher {m!r}; {MATCHERS.suggest(m)}")
            if not isinstance(mo, dict):
                bad("matcher_options", f"maps matcher {m!r} to {mo!r}; expected a dict of its options")
            try:
                get_matcher(m, **mo)
            except (ValueError, TypeError) as exc:
                bad("matcher_options", f"has unusable options for matcher {m!r}: {exc}")
    if "baselines" in keys and isinstance(conf.get("baselines"), (list, tuple)):
        from ..methods.transfer import TRANSFER_METHODS

        unknown = [b for b in conf["baselines"] if b not in TRANSFER_METHODS or b == "align"]
        if unknown:
            bad("baselines", f"names unknown baseline(s) {unknown}; available: "
                             f"{sorted(set(TRANSFER_METHODS) - {'align'})}")


def _check_layers(conf: dict, keys: set, bad) -> None:
    """Layer options name layers of the experiment's registered ``backbone`` (library models: when built)."""
    from ..backbones import BACKBONES

    bname = conf.get("backbone")
    layer_keys = set(LAYER_OPTIONS) if "backbone" in keys else set(LAYER_OPTIONS) & keys
    layer_keys = {k for k in layer_keys if conf.get(k) is not None}
    if isinstance(bname, str) and bname in BACKBONES and layer_keys:
        from ..backbones import layer_names

        have = layer_names(bname)
        for k in sorted(layer_keys):
            vals = [conf[k]] if isinstance(conf[k], str) else list(conf[k])
            unknown = [l for l in vals if l not in have]
            if unknown:
                bad(k, f"names layer(s) {unknown} that {bname} does not have; layers: {list(have)}")


def _check_categories(conf: dict, keys: set, bad) -> None:
    """Embedded categories exist (skipped when the shared folder is missing: reported when data is loaded)."""
    if conf.get("dataset", "embedded") != "embedded" or not conf.get("categories") or not (
            keys & {"categories", "dataset"}):
        return
    from ..datasets import embedded_categories

    try:
        cats = embedded_categories()
    except (OSError, ValueError):
        return
    unknown = [c for c in conf["categories"] if c not in cats]
    if unknown:
        bad("categories", f"names unknown embedded categories {unknown}; categories: {sorted(cats)}")


def _unknown_option(name: str, key: str, value: Any, known) -> ConfigError:
    """The error for an option ``key`` that experiment ``name`` lacks: its new name when it was renamed, else the
    closest valid names."""
    top = key.split(".", 1)[0]
    msg = renamed_message(top, value, known)
    if msg is not None:
        return ConfigError(f"experiment {name!r}: {msg}")
    return ConfigError(f"experiment {name!r} has no option {top!r}{did_you_mean(top, known)} "
                       f"(`convcorr experiment {name} --list` lists them)")


def _set_dotted(name: str, conf: dict, key: str, value: Any) -> None:
    """``conf`` with ``key`` = "option.a.b" set: entry [a][b] of the dict option (a copy; other entries kept)."""
    top, *path = key.split(".")
    if not all(path):
        raise ConfigError(f"experiment {name!r}: option key {key!r} has an empty part")
    o = options(name)[top]
    if dict not in o.type:
        raise ConfigError(f"experiment {name!r}: option {top!r} is not a dict; {key!r} cannot set a part of it")
    if isinstance(value, CliValue):
        value = value.parsed
    d = conf[top] = copy.deepcopy(conf[top]) if isinstance(conf[top], dict) else {}
    for p in path[:-1]:
        if not isinstance(d.get(p, {}), dict):
            raise ConfigError(f"experiment {name!r}: {key!r}: {p!r} of option {top!r} is not a dict")
        d = d.setdefault(p, {})
    old = d.get(path[-1])
    if old is not None:  # an entry the preset sets: keep its type (an int is accepted for a float)
        if not _fits(value, (type(old),)):
            raise ConfigError(f"experiment {name!r}: option {key!r} expects {type(old).__name__}, got "
                              f"{type(value).__name__} {value!r}")
        if isinstance(old, float) and isinstance(value, int):
            value = float(value)
    d[path[-1]] = value


def resolve_conf(name: str, preset: str = "default", overrides: Mapping[str, Any] | None = None) -> dict:
    """Preset config of an experiment, updated with overrides.

    A key "option.a.b" sets entry [a][b] of the dict option ``option`` and keeps its other entries
    (``matcher_options.flow.beta``); a plain key replaces the option's value.

    Raises:
        ConfigError (a KeyError and ValueError) naming the experiment: unknown experiment, preset or option (with
        the closest valid names; a renamed option with its new name), an override of the wrong type
        (:func:`check_option`) or an overridden value that cannot work (:func:`check_conf`: non-finite, negative
        count, unknown backbone / layer / matcher / embedded category, unusable matcher options).
    """
    mod = get_experiment(name)
    if preset not in mod.CONFIGS:
        raise ConfigError(f"experiment {name!r} has no preset {preset!r}{did_you_mean(preset, mod.CONFIGS)}")
    conf = dict(mod.CONFIGS[preset])
    touched = set()
    for k, v in (overrides or {}).items():
        top = k.split(".", 1)[0]
        if top not in conf:
            raise _unknown_option(name, k, v, conf)
        if "." in k:
            _set_dotted(name, conf, k, v)
        else:
            conf[k] = check_option(name, k, v)
        touched.add(top)
    check_conf(name, conf, keys=touched)
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
        known = {p for m in mods.values() for p in m.CONFIGS}
        raise ConfigError(f"no experiment has a preset {preset!r}{did_you_mean(preset, known)}")
    overrides = dict(overrides or {})
    chosen = {n: preset if preset in m.CONFIGS else "default" for n, m in mods.items()}
    top = lambda k: k.split(".", 1)[0]
    used = {k for n, p in chosen.items() for k in overrides if top(k) in mods[n].CONFIGS[p]}
    unknown = sorted(set(overrides) - used)
    if unknown:
        opts = {k for n, p in chosen.items() for k in mods[n].CONFIGS[p]}
        msg = renamed_message(top(unknown[0]), overrides[unknown[0]], opts)
        raise ConfigError(f"no experiment has option(s) {unknown}"
                          + (f": {msg}" if msg else did_you_mean(top(unknown[0]), opts)))
    plan = {}
    for n, p in chosen.items():
        ov = {k: v for k, v in overrides.items() if top(k) in mods[n].CONFIGS[p]}
        plan[n] = (p, resolve_conf(n, p, ov))
    return plan


def _show(v: Any) -> str:
    import json

    return json.dumps(v, default=str)


def describe(name: str) -> str:
    """Plain text for ``convcorr experiment NAME --list``: the experiment's presets, then every option with its
    type, its value in the ``default`` preset (and in each other preset where it differs) and its one-line help
    (with the allowed values where the option declares them)."""
    mod = get_experiment(name)
    doc = " ".join((mod.__doc__ or "").strip().split("\n\n", 1)[0].split())  # the first paragraph
    presets = list(mod.CONFIGS)
    base = "default" if "default" in presets else presets[0]
    lines = [f"{name}: {doc}" if doc else name, "",
             f"Presets: {', '.join(presets)}  (--preset P; --print-config shows one resolved)", "",
             f"Options (--set NAME=VALUE; NAME.KEY=VALUE sets one entry of a dict), with the value in preset "
             f"{base!r} and, in brackets, other presets' values where they differ:"]
    from .workers import PARALLEL_OPTIONS

    absent = object()
    show = lambda v: "(absent)" if v is absent else _show(v)
    opts, confs = options(name), mod.CONFIGS
    for k in sorted(opts, key=lambda k: k in PARALLEL_OPTIONS):  # the parallel options last
        o, default = opts[k], confs[base].get(k, absent)
        other = [f"{p}: {show(confs[p].get(k, absent))}" for p in presets
                 if p != base and confs[p].get(k, absent) != default]
        lines.append(f"  {k} : {o.type_name} = {show(default)}" + (f"  [{'; '.join(other)}]" if other else ""))
        choices = f" (one of: {', '.join(_show(c) for c in o.choices)})" if o.choices else ""
        length = f" (exactly {o.length} item{'s' if o.length != 1 else ''})" if o.length is not None else ""
        lines.append(f"      {o.help}{choices}{length}")
    return "\n".join(lines) + "\n"


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
