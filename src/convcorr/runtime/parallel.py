"""Run independent tasks (e.g. aligning image pairs) serially, on a local process pool, or on a Ray cluster, with
one aggregated progress bar and resumable per-task results.

    from convcorr.runtime.parallel import run_tasks

    def align(task, feats, **flow_kw):                        # a task function: (task, shared, **kwargs)
        src, tgt = task
        return bp_flow(feats[src], feats[tgt], **flow_kw)

    feats = {name: grid for ...}                              # features extracted ONCE per image by the caller
    tasks = [(src_name, tgt_name) for ...]
    results = run_tasks(align, tasks, shared=feats, workers=4, out_dir="runs/t2/pairs", kwargs=dict(beta=3e-3))

* ``executor="serial"`` (the default for ``workers <= 1``), ``"process"`` (local pool of ``workers`` processes,
  the default for ``workers > 1``) or ``"ray"`` (``ray.init(address=...)``; ``address=None`` starts a local
  cluster; install with ``pip install convcorr[ray]``). All three return the same results, in task order.
* Each worker runs with ONE BLAS / OpenMP / torch / numba thread (``threads_per_worker``): N workers use N cores
  without oversubscription. The serial executor leaves the caller's thread settings alone.
* ``shared`` (e.g. the per-image feature grids) is handed to each worker once, not pickled per task: inherited
  pickled once per pool worker (started by ``forkserver``/``spawn``: forking a process that already ran numba's or
  torch's OpenMP threads aborts), put once into Ray's object store (zero-copy reads of numpy arrays).
  The task function is called as ``fn(task, shared, **kwargs)`` (``fn(task, **kwargs)`` without ``shared``).
* Workers draw no progress bars (``CONVCORR_QUIET=1`` in each worker): the one bar in the calling process counts
  finished tasks across all workers.
* ``out_dir``: every finished task's result is pickled to ``out_dir/<key>.pkl`` atomically (temp file +
  ``os.replace``: an interrupted run never leaves a partial file); a re-run loads those results and runs only
  the missing tasks. Keys default to the task's index; pass ``key=`` (task -> str) when the task list may change.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import re
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

EXECUTORS = ("serial", "process", "ray")
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
                "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
_KEY_OK = re.compile(r"^[A-Za-z0-9._+=-]+$")

# per-worker state (set by the pool initializer)
_W: dict = {}


def limit_threads(n: int = 1) -> None:
    """Limit this process to ``n`` threads in BLAS/OpenMP (threadpoolctl + env for late imports), torch, numba."""
    for v in _THREAD_VARS:
        os.environ[v] = str(n)
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(n)
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        pass
    if "torch" in sys.modules:
        import torch
        torch.set_num_threads(n)
    if "numba" in sys.modules:
        import numba
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))


def _quiet_worker() -> None:
    """Workers draw no progress bars of their own (they would interleave): the parent's bar counts their tasks."""
    os.environ["CONVCORR_QUIET"] = "1"


def _init_worker(fn, shared, kwargs, threads):
    limit_threads(threads)
    _quiet_worker()
    _W.update(fn=fn, shared=shared, kwargs=kwargs, has_shared=shared is not None)  # pickled once per worker


def _call(fn, task, shared, has_shared, kwargs):
    return fn(task, shared, **kwargs) if has_shared else fn(task, **kwargs)


def _pool_task(i_task):
    i, task = i_task
    return i, _call(_W["fn"], task, _W["shared"], _W["has_shared"], _W["kwargs"])


def _save_atomic(path: Path, obj: Any) -> None:
    from .io import atomic_write

    atomic_write(path, lambda fh: pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL))


def result_path(out_dir: str | Path, key: str) -> Path:
    """Where :func:`run_tasks` keeps the result of the task named ``key`` under ``out_dir``."""
    return Path(out_dir) / f"{key}.pkl"


def _keys(tasks, key):
    if key is None:
        width = max(6, len(str(len(tasks))))
        keys = [f"task{i:0{width}d}" for i in range(len(tasks))]
    else:
        keys = [str(key(t)) for t in tasks]
    bad = [k for k in keys if not _KEY_OK.match(k)]
    if bad:
        raise ValueError(f"run_tasks: key must give file-name-safe strings ([A-Za-z0-9._+=-]), got {bad[:3]}")
    if len(set(keys)) != len(keys):
        raise ValueError("run_tasks: key gives the same name to different tasks")
    return keys


def run_tasks(fn: Callable, tasks: Sequence, *, shared: Any = None, kwargs: dict | None = None, workers: int = 1,
              executor: str | None = None, out_dir: str | Path | None = None, key: Callable | None = None,
              desc: str = "tasks", address: str | None = None, threads_per_worker: int = 1,
              mp_context: str | None = None) -> list:
    """Run ``fn`` over ``tasks``; returns the results in task order (see the module docstring).

    Args:
        fn: picklable (module-level) function ``fn(task, shared, **kwargs)`` (or ``fn(task, **kwargs)``).
        tasks: sequence of picklable tasks.
        shared: read-only object every call needs (e.g. {image id: features}); sent once per worker.
        workers: processes (process pool) or concurrent Ray tasks (>= 1).
        executor: "serial", "process" or "ray" (default: serial for one worker, else process).
        out_dir: folder for per-task results (resume); created if missing.
        key: task -> file-name-safe string (default: the task's index).
        address: Ray cluster address (``ray.init(address=...)``; None: a local cluster of ``workers`` CPUs).
        threads_per_worker: BLAS/torch/numba threads in each worker process.
        mp_context: multiprocessing start method (default "forkserver" on Linux, else "spawn"; "fork" is unsafe
            once numba/torch ran parallel code in this process).
    """
    from .progress import progress

    tasks = list(tasks)
    kwargs = dict(kwargs or {})
    if workers < 1:
        raise ValueError(f"run_tasks: workers must be >= 1, got {workers}")
    executor = executor or ("serial" if workers <= 1 else "process")
    if executor not in EXECUTORS:
        raise ValueError(f"run_tasks: executor must be one of {EXECUTORS}, got {executor!r}")
    keys = _keys(tasks, key)
    results: list = [None] * len(tasks)
    todo = list(range(len(tasks)))
    out = None
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        todo = []
        for i, k in enumerate(keys):
            f = result_path(out, k)
            if f.exists():
                with open(f, "rb") as fh:
                    results[i] = pickle.load(fh)
            else:
                todo.append(i)
    has_shared = shared is not None
    bar = progress(None, desc=f"{desc} ({executor}, {workers if executor != 'serial' else 1} worker(s))",
                   total=len(tasks), initial=len(tasks) - len(todo))

    def done(i, res):
        results[i] = res
        if out is not None:
            _save_atomic(result_path(out, keys[i]), res)
        bar.update(1)

    def fail(i, e):
        raise RuntimeError(f"run_tasks: task {keys[i]} ({tasks[i]!r:.80}) failed: {type(e).__name__}: {e}") from e

    try:
        if not todo:
            pass
        elif executor == "serial":
            for i in todo:
                try:
                    res = _call(fn, tasks[i], shared, has_shared, kwargs)
                except Exception as e:
                    fail(i, e)
                done(i, res)
        elif executor == "process":
            _run_pool(fn, tasks, todo, shared, kwargs, workers, threads_per_worker, mp_context, done, fail)
        else:
            _run_ray(fn, tasks, todo, shared, kwargs, workers, threads_per_worker, address, done, fail)
    finally:
        bar.close()
    return results


def _run_pool(fn, tasks, todo, shared, kwargs, workers, threads, mp_context, done, fail):
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    # not "fork": numba's OpenMP threading layer (and GNU OpenMP in torch) abort in a forked child of a process
    # that already ran parallel code ("fork() called from a process already using GNU OpenMP")
    method = mp_context or ("forkserver" if sys.platform.startswith("linux") else "spawn")
    ctx = mp.get_context(method)
    initargs = (fn, shared, kwargs, threads)
    with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=ctx, initializer=_init_worker,
                             initargs=initargs) as pool:
        pending = {}
        it = iter(todo)
        for i in it:  # keep 2 tasks per worker in flight (bounded memory for long task lists)
            pending[pool.submit(_pool_task, (i, tasks[i]))] = i
            if len(pending) >= 2 * workers:
                break
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for f in finished:
                i = pending.pop(f)
                try:
                    _, res = f.result()
                except Exception as e:
                    for g in pending:
                        g.cancel()
                    fail(i, e)
                done(i, res)
                nxt = next(it, None)
                if nxt is not None:
                    pending[pool.submit(_pool_task, (nxt, tasks[nxt]))] = nxt


def _ray_task(fn, task, shared, has_shared, kwargs, threads):
    limit_threads(threads)
    _quiet_worker()
    return _call(fn, task, shared, has_shared, kwargs)


def _run_ray(fn, tasks, todo, shared, kwargs, workers, threads, address, done, fail):
    try:
        import ray
    except ImportError as e:
        raise ImportError("run_tasks: executor='ray' needs Ray: pip install 'convcorr[ray]'") from e
    if not ray.is_initialized():
        if address is None:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {v: str(threads) for v in _THREAD_VARS}})
        else:
            ray.init(address=address, log_to_driver=False)
    remote = ray.remote(num_cpus=threads)(_ray_task)
    shared_ref = ray.put(shared) if shared is not None else None
    pending = {}
    it = iter(todo)

    def submit(i):
        pending[remote.remote(fn, tasks[i], shared_ref, shared is not None, kwargs, threads)] = i

    for i in it:
        submit(i)
        if len(pending) >= 2 * workers:
            break
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            i = pending.pop(ref)
            try:
                res = ray.get(ref)
            except Exception as e:
                for r in pending:
                    ray.cancel(r)
                fail(i, e)
            done(i, res)
            nxt = next(it, None)
            if nxt is not None:
                submit(nxt)
