"""Helpers shared by the tests that compare experiment runs (serial vs workers vs resumed vs Ray)."""
import json

TIMING_KEYS = ("created", "seconds", "timing", "cpu_seconds")


def strip_timings(d):
    """A results.json document without the timestamp and timings (``created``, ``seconds``, ``timing``,
    ``cpu_seconds`` and ``*_seconds`` keys, at any depth)."""
    if isinstance(d, dict):
        return {k: strip_timings(v) for k, v in d.items() if k not in TIMING_KEYS and not k.endswith("_seconds")}
    if isinstance(d, list):
        return [strip_timings(v) for v in d]
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
