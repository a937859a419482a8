import importlib.util
import os
import pickle

import numpy as np
import pytest

from convcorr.runtime.parallel import run_tasks


def align_pair(task, features, **flow_kw):
    """Task function for run_tasks: align ``features[src]`` to ``features[tgt]`` for ``task = (src, tgt)``.

    The solver is imported here, in the worker, after run_tasks has limited its threads: numba's thread count
    cannot change once its threads run."""
    from convcorr.numerics.mrf.solve import bp_flow

    src, tgt = task
    return bp_flow(features[src], features[tgt], **flow_kw)


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    feats = {f"im{i}": rng.standard_normal((7, 8, 16)).astype(np.float32) for i in range(4)}
    tasks = [(a, b) for a in feats for b in feats if a != b][:6]
    return feats, tasks


def same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.flow, y.flow)
        assert x.energy == y.energy and x.energies == y.energies


def test_serial_equals_direct_calls(problem):
    from convcorr.numerics.mrf.solve import bp_flow

    feats, tasks = problem
    res = run_tasks(align_pair, tasks, shared=feats, kwargs=dict(beta=0.01, n_iter=5))
    same(res, [bp_flow(feats[a], feats[b], beta=0.01, n_iter=5) for a, b in tasks])


def test_resume_skips_done_tasks_and_writes_atomically(problem, tmp_path):
    feats, tasks = problem
    calls = []

    def fn(task, shared, scale):
        calls.append(task)
        return float(shared[task[0]].sum() * scale), task

    out = tmp_path / "res"
    first = run_tasks(fn, tasks, shared=feats, kwargs=dict(scale=2.0), out_dir=out)
    assert len(calls) == len(tasks)
    files = sorted(os.listdir(out))
    assert files == [f"task{i:06d}.pkl" for i in range(len(tasks))]  # no temp files left behind
    with open(out / files[2], "rb") as f:
        assert pickle.load(f) == first[2]
    # interrupted run: two results missing -> only those two run again, results identical
    os.unlink(out / files[1])
    os.unlink(out / files[4])
    calls.clear()
    again = run_tasks(fn, tasks, shared=feats, kwargs=dict(scale=2.0), out_dir=out)
    assert calls == [tasks[1], tasks[4]]
    assert again == first
    # nothing left to do: nothing runs (even with a pool)
    calls.clear()
    assert run_tasks(fn, tasks, shared=feats, kwargs=dict(scale=2.0), out_dir=out, workers=2) == first
    assert calls == []


def test_process_pool_equals_serial_and_resumes(problem, tmp_path):
    feats, tasks = problem
    kw = dict(beta=0.01, n_iter=4, backend="numba")  # the float64 solver: workers need not import torch
    key = lambda t: f"{t[0]}-{t[1]}"  # noqa: E731
    part = run_tasks(align_pair, tasks[:3], shared=feats, kwargs=kw, out_dir=tmp_path, key=key, workers=2)
    assert sorted(os.listdir(tmp_path)) == sorted(f"{a}-{b}.pkl" for a, b in tasks[:3])
    full = run_tasks(align_pair, tasks, shared=feats, kwargs=kw, out_dir=tmp_path, key=key, workers=2)
    same(full[:3], part)
    same(full, run_tasks(align_pair, tasks, shared=feats, kwargs=kw))  # == serial


def test_failure_names_task_and_keeps_finished_results(tmp_path):
    def fn(t):
        if t == 3:
            raise ValueError("bad pair")
        return t * t

    with pytest.raises(RuntimeError, match="task000003.*bad pair"):
        run_tasks(fn, range(6), out_dir=tmp_path)
    assert sorted(os.listdir(tmp_path)) == [f"task{i:06d}.pkl" for i in range(3)]


def test_bad_arguments():
    with pytest.raises(ValueError, match="executor"):
        run_tasks(abs, [1], executor="dask")
    with pytest.raises(ValueError, match="workers"):
        run_tasks(abs, [1], workers=0)
    with pytest.raises(ValueError, match="file-name-safe"):
        run_tasks(abs, [1], key=lambda t: "a/b", out_dir="/tmp/never-created-by-convcorr")
    with pytest.raises(ValueError, match="same name"):
        run_tasks(abs, [1, 2], key=lambda t: "x", out_dir="/tmp/never-created-by-convcorr")


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray not installed (pip install convcorr[ray])")
def test_ray_local_cluster_equals_serial(problem, tmp_path):
    import sys

    import ray

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray's workers cannot import this test module
    feats, tasks = problem
    kw = dict(beta=0.01, n_iter=5)
    serial = run_tasks(align_pair, tasks, shared=feats, kwargs=kw)
    try:
        res = run_tasks(align_pair, tasks, shared=feats, kwargs=kw, workers=2, executor="ray", out_dir=tmp_path)
    finally:
        ray.shutdown()
    same(serial, res)
    assert len(os.listdir(tmp_path)) == len(tasks)
