"""Helpers shared by the tests that compare experiment runs (serial vs workers vs resumed vs Ray)."""
import json

TIMING_KEYS = ("created", "seconds", "timing", "cpu_seconds")
#: provenance facts of results.json's ``meta`` that may differ between two runs of the same code and data (the
#: commit and its modified state, the command line); versions, platform and device stay compared
PROVENANCE_KEYS = ("git", "command")


def _strip_timing_keys(d):
    if isinstance(d, dict):
        return {k: _strip_timing_keys(v) for k, v in d.items() if k not in TIMING_KEYS and not k.endswith("_seconds")}
    if isinstance(d, list):
        return [_strip_timing_keys(v) for v in d]
    return d


def strip_timings(d):
    """A results.json document without the timestamp and timings (``created``, ``seconds``, ``timing``,
    ``cpu_seconds`` and ``*_seconds`` keys, at any depth) and without the provenance facts of its ``meta`` block
    that vary between runs (:data:`PROVENANCE_KEYS`)."""
    d = _strip_timing_keys(d)
    if isinstance(d, dict) and isinstance(d.get("meta"), dict):
        d["meta"] = {k: v for k, v in d["meta"].items() if k not in PROVENANCE_KEYS}
    return d


def results_of(folder):
    """The ``results`` of ``folder/results.json`` without timings."""
    return strip_timings(json.loads((folder / "results.json").read_text()))["results"]


def rerun_resumed(name, out, over):
    """Run experiment ``name`` again into ``out`` with ``resume``: the lost units run on a local Ray cluster of 2
    CPUs when Ray is installed (the same tasks and shared data through Ray's object store), else serially."""
    from convcorr.experiments import run

    try:
        import ray
    except ImportError:
        run(name, out, "default", dict(over, resume=True))
        return
    try:
        run(name, out, "default", dict(over, resume=True, executor="ray", workers=2))
    finally:
        ray.shutdown()


def assert_ray_equals_serial(name, tmp_path, over):
    """Experiment ``name`` with ``over`` on a local Ray cluster of 2 CPUs gives the serial run's results."""
    import ray

    from convcorr.experiments import run

    run(name, tmp_path / "serial", "default", over)
    try:
        run(name, tmp_path / "ray", "default", dict(over, executor="ray", workers=2))
    finally:
        ray.shutdown()
    assert results_of(tmp_path / "ray") == results_of(tmp_path / "serial")


def lose_and_resume(name, out, over, saved, lost):
    """Delete the saved unit results ``lost`` (of all ``saved``) as an interrupted run would, resume
    (:func:`rerun_resumed`) and check that exactly the lost units were computed again (the kept files untouched)."""
    kept = {f: f.stat().st_mtime_ns for f in saved if f not in lost}
    for f in lost:
        f.unlink()
    rerun_resumed(name, out, over)
    assert all(f.exists() for f in lost) and {f: f.stat().st_mtime_ns for f in kept} == kept


def render_twice(mod, res, tmp_path, monkeypatch, forbidden=("run_conf_tasks",)):
    """Render the Results ``res`` of experiment module ``mod`` and a pickled copy of it, with the module's
    computing functions ``forbidden`` (names in ``mod``) replaced by ones that fail: ``render`` must only write.
    Returns the ``results`` of the first rendering (after checking that both renderings wrote the same)."""
    import pickle

    copy = pickle.loads(pickle.dumps(res))

    def fail(*a, **k):
        raise AssertionError("render computed something")

    for name in forbidden:
        monkeypatch.setattr(mod, name, fail)
    mod.render(res, tmp_path / "a")
    mod.render(copy, tmp_path / "b")
    a, b = results_of(tmp_path / "a"), results_of(tmp_path / "b")
    assert a == b
    assert (tmp_path / "a" / "report.md").is_file()
    return a
