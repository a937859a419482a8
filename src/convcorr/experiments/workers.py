"""The options every experiment shares for running its expensive loop in parallel, and the one call that runs it.

Options (the same names in every experiment; on the command line ``--workers N``, ``--executor ray``,
``--ray-address HOST:PORT``, ``--resume``, or ``--set key=value``):

- ``workers``: how many processes (local pool) or concurrent Ray tasks run the independent units of work
  (aligned queries, pairs, SVMs, layers, ...). 1 (the default) runs them in this process. Each worker uses one
  BLAS / OpenMP / torch / numba thread, so N workers use N cores without oversubscription.
- ``executor``: None (serial for one worker, a local process pool otherwise), ``"serial"``, ``"process"`` or
  ``"ray"`` (:func:`convcorr.runtime.parallel.run_tasks`).
- ``ray_address``: the Ray cluster (``ray.init(address=...)``); None starts a local cluster of ``workers`` CPUs.
- ``resume``: keep every finished unit's result under ``<out>/tasks/<stage>-<config hash>/`` and, when the same
  command runs again (e.g. after an interruption), load those results instead of recomputing them. The hash
  covers every option except these four, so a changed configuration never reuses stale results.

Results are identical for every setting of these options (each experiment has a test that says so). Features
are extracted once per image in the calling process and handed to each worker once (``shared``), not per task.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Sequence

#: the parallel options and their defaults (added to every preset of every experiment)
PARALLEL_OPTIONS = {"workers": 1, "executor": None, "ray_address": None, "resume": False}


def with_parallel_options(configs: dict) -> dict:
    """``configs`` ({preset: conf}) with the parallel options added to every preset (explicit values are kept)."""
    return {name: {**PARALLEL_OPTIONS, **conf} for name, conf in configs.items()}


def config_hash(conf: dict) -> str:
    """12 hex digits identifying ``conf`` apart from the parallel options (the resume folder's name)."""
    sig = {k: v for k, v in conf.items() if k not in PARALLEL_OPTIONS}
    return hashlib.sha1(json.dumps(sig, sort_keys=True, default=str).encode()).hexdigest()[:12]


def task_dir(conf: dict, out_dir: str | Path, stage: str) -> Path | None:
    """``<out_dir>/tasks/<stage>-<config hash>`` when ``conf["resume"]`` is true, else None."""
    if not conf.get("resume", False):
        return None
    return Path(out_dir) / "tasks" / f"{stage}-{config_hash(conf)}"


def unit_key(*parts) -> str:
    """A file-name-safe name of a unit's saved result (``resume``), e.g. ``svm-face-conv4``: the parts joined by
    "-"; characters other than ``[A-Za-z0-9.+=-]`` become "_" and then the CRC-32 of the original parts is
    appended, so different units never share a name (``timm:resnet50`` -> ``timm_resnet50.<crc>``)."""
    import re
    import zlib

    raw = "-".join(str(p) for p in parts)
    safe = re.sub(r"[^A-Za-z0-9.+=-]+", "_", raw)
    return safe if safe == raw else f"{safe}.{zlib.crc32(raw.encode('utf-8')):08x}"


def all_saved(conf: dict, out_dir: str | Path | None, stage: str, keys) -> bool:
    """True when ``resume`` is on and every unit named in ``keys`` (the ``key`` strings given to
    :func:`run_conf_tasks`) already has its saved result: the caller can then skip the work that only feeds those
    units (e.g. extracting their features)."""
    from ..runtime.parallel import result_path

    folder = task_dir(conf, out_dir, stage) if out_dir is not None else None
    return folder is not None and all(result_path(folder, k).exists() for k in keys)


def run_conf_tasks(fn: Callable, tasks: Sequence, conf: dict, out_dir: str | Path | None, stage: str, *,
                   shared: Any = None, kwargs: dict | None = None, key: Callable | None = None,
                   desc: str | None = None) -> list:
    """:func:`convcorr.runtime.parallel.run_tasks` with the experiment's parallel options.

    Args:
        fn: module-level task function ``fn(task, shared, **kwargs)`` (``fn(task, **kwargs)`` without shared).
        tasks: picklable tasks; ``key`` (task -> file-name-safe str) names their saved results for ``resume``
            (default: the task's index, fine when the task list is a fixed function of the configuration).
        conf: the experiment's configuration (``workers``, ``executor``, ``ray_address``, ``resume``).
        out_dir: the report folder (resume results go under ``out_dir/tasks``); None disables resume.
        stage: a short file-name-safe name of this loop (one experiment may run several).

    Returns:
        the results in task order.
    """
    from ..runtime.parallel import run_tasks

    folder = task_dir(conf, out_dir, stage) if out_dir is not None else None
    return run_tasks(fn, tasks, shared=shared, kwargs=kwargs, workers=int(conf.get("workers", 1) or 1),
                     executor=conf.get("executor"), address=conf.get("ray_address"), out_dir=folder, key=key,
                     desc=desc or stage)
