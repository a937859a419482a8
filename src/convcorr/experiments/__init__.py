"""Experiments as data: every table/figure of the paper is a module with named
preset configurations (``CONFIGS``) and ``main(conf, out_dir) -> Path`` that
writes ``report.md``, ``results.json`` and figures into ``out_dir``.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Mapping

#: experiment name -> module implementing it
EXPERIMENTS = {
    "table1": "convcorr.experiments.table1",
    "table2": "convcorr.experiments.table2",
    "table3": "convcorr.experiments.table3",
    "table4": "convcorr.experiments.table4",
    "visualize": "convcorr.experiments.visualize",
    "pairs": "convcorr.experiments.pairs",
}


def get_experiment(name: str):
    if name not in EXPERIMENTS:
        raise KeyError(f"unknown experiment {name!r}; choose from {sorted(EXPERIMENTS)}")
    return importlib.import_module(EXPERIMENTS[name])


def resolve_conf(name: str, preset: str = "default", overrides: Mapping[str, Any] | None = None) -> dict:
    """Preset config of an experiment, updated with overrides (unknown keys are an error)."""
    mod = get_experiment(name)
    if preset not in mod.CONFIGS:
        raise KeyError(f"experiment {name!r} has no preset {preset!r}; presets: {sorted(mod.CONFIGS)}")
    conf = dict(mod.CONFIGS[preset])
    for k, v in (overrides or {}).items():
        if k not in conf:
            raise KeyError(f"experiment {name!r} has no option {k!r}; options: {sorted(conf)}")
        conf[k] = v
    return conf


def run(name: str, out_dir: str | Path, preset: str = "default", overrides: Mapping[str, Any] | None = None) -> Path:
    """Run one experiment; returns the path of its report.md."""
    conf = resolve_conf(name, preset, overrides)
    return get_experiment(name).main(conf, Path(out_dir))
