import json

import numpy as np
import pytest
from tests_helpers_results import lose_and_resume
from tests_helpers_results import strip_timings as _strip

from convcorr.experiments import resolve_conf, run


def test_table3_tiny(tmp_path, shared):
    run("table3", tmp_path, "default", {"categories": ["face"], "n_synthetic": 1, "radii": [20, 80],
                                        "layers": ["conv3"], "folds": 3, "Cs": [0.1, 1.0], "n_response": 3,
                                        "n_response_instances": 1, "response_window": 8})
    res = json.loads((tmp_path / "results.json").read_text())["results"]
    acc = res["accuracy"]["face"]
    assert set(acc) == {"SIFT r20", "SIFT r80", "conv3"}
    assert max(acc.values()) > 2 * res["chance"]["face"]
    assert res["splits"]["face"].startswith("by photo")
    assert set(res["cv_accuracy"]["face"]["conv3"]) == {"0.1", "1.0"}
    for f in ("cv_accuracy.png", "response_maps.png", "max_histograms.png", "report.md"):
        assert (tmp_path / f).stat().st_size > 500
    assert len(res["response_peak_offsets"]["conv3"]) == 3
    assert all(abs(v) <= 8 for o in res["response_peak_offsets"]["SIFT r20"] for v in o)
    md = (tmp_path / "report.md").read_text()
    assert "| face |" in md and "| mean |" in md
    # intervals over test photos with counts; paired conv - SIFT differences
    ci = res["accuracy_ci"]["face"]["conv3"]
    assert ci["value"] == pytest.approx(acc["conv3"]) and ci["ci95"][0] <= ci["value"] <= ci["ci95"][1]
    assert ci["n_units"] == res["counts"]["face"]["test photos"] == 3
    assert ci["n_points"] == res["counts"]["face"]["test points"] == res["n_points"]["face"]["test"]
    assert {(d["a"], d["b"]) for d in res["paired_differences"]} == {("conv3", "SIFT r20"), ("conv3", "SIFT r80")}
    d = res["paired_differences"][0]
    assert d["value"] == pytest.approx(acc["conv3"] - acc["SIFT r20"])
    st = res["response_peak_stats"]["conv3"]
    assert st["maxima"] == 3 and 0 <= st["on_boundary"] <= 3
    assert (tmp_path / "accuracy.png").stat().st_size > 500



def test_table3_process_pool_equals_serial_and_resumes(tmp_path, shared):
    # units: 2 (category, feature) SVMs with their CV over C, 2 response-map jobs (one per test instance)
    over = {"categories": ["face"], "n_synthetic": 1, "radii": [20], "layers": ["conv1"], "folds": 2,
            "Cs": [0.1, 10.0], "n_response": 2, "n_response_instances": 2, "response_window": 4, "max_types": 6,
            "n_boot": 50}
    res = lambda d: _strip(json.loads((d / "results.json").read_text()))["results"]
    run("table3", tmp_path / "serial", "default", over)
    run("table3", tmp_path / "pool", "default", dict(over, workers=2, resume=True))
    serial = res(tmp_path / "serial")
    assert serial["accuracy"]["face"] and len(serial["response_peak_offsets"]["conv1"]) == 2
    assert res(tmp_path / "pool") == serial
    saved = sorted((tmp_path / "pool" / "tasks").glob("*/*.pkl"))
    assert sorted(f.parent.name.split("-")[0] for f in saved) == ["response", "response", "svms", "svms"]
    assert not (tmp_path / "serial" / "tasks").exists()  # resume=False keeps nothing
    # an interrupted run: one SVM and one response map lost; the rerun computes only those two (on Ray when
    # installed)
    lost = [next(f for f in saved if f.name == "svm-face-conv1.pkl"),
            next(f for f in saved if f.parent.name.startswith("response"))]
    lose_and_resume("table3", tmp_path / "pool", over, saved, lost)
    assert res(tmp_path / "pool") == serial


def test_table3_has_no_n_jobs_option():
    # one name, one meaning: the parallel option is `workers` (convcorr.experiments.workers)
    conf = resolve_conf("table3", "default", {"workers": 2})
    assert conf["workers"] == 2 and "n_jobs" not in conf
    with pytest.raises(KeyError):
        resolve_conf("table3", "default", {"n_jobs": 2})


def test_table3_compute_and_render(tmp_path, monkeypatch, shared):
    from convcorr.experiments import table3
    from tests_helpers_results import render_twice

    conf = resolve_conf("table3", "default", {"categories": ["face"], "n_synthetic": 1, "radii": [20],
                                              "layers": ["conv1"], "folds": 2, "Cs": [0.1, 10.0], "n_response": 2,
                                              "n_response_instances": 1, "response_window": 4, "max_types": 6,
                                              "n_boot": 50})
    res = table3.compute(conf)
    assert isinstance(res, table3.Table3Results)
    assert res.names == ["SIFT r20", "conv1"] and res.categories == ["face"]
    row = res.rows[0]
    assert row["category"] == "face" and row["types"] == 6 and row["chance"] == pytest.approx(1 / 6)
    assert all(0 <= row[n] <= 1 and row[f"C {n}"] in (0.1, 10.0) for n in res.names)
    assert [r["category"] for r in res.table] == ["face", "mean"]
    assert set(res.cv["face"]["conv1"]) == {0.1, 10.0}
    assert res.accuracy_ci["face"]["conv1"].value == pytest.approx(row["conv1"])
    assert res.mean_ci["conv1"].value == pytest.approx(row["conv1"])  # one category: the mean is its accuracy
    assert set(res.differences) == {("conv1", "SIFT r20")}
    r = res.response
    assert r.window == 4 and r.offsets["conv1"].shape == (2, 2) and np.abs(r.offsets["conv1"]).max() <= 4
    assert r.per_category["face"]["conv1"].shape == (2, 2) and len(r.units) == len(r.types) == 2
    assert r.mean_distance_per_category["face"]["conv1"] == pytest.approx(
        np.linalg.norm(r.per_category["face"]["conv1"], axis=1).mean())
    assert [s["feature"] for s in r.stats] == res.names and r.stats[0]["maxima"] == 2
    for ex in r.examples:  # the measured maps, their maxima at the recorded peaks
        m = ex["maps"]["conv1"]
        assert m.shape == (9, 9)
        assert tuple(np.unravel_index(np.argmax(m), m.shape)[::-1]) == tuple(ex["peaks"]["conv1"] + 4)
    assert set(r.histograms["hist"]) == set(res.names)
    out = render_twice(table3, res, tmp_path, monkeypatch,
                       ("run_conf_tasks", "bootstrap_ci", "paired_difference", "features_at_points", "crop_instance"))
    assert out["accuracy"]["face"] == {n: row[n] for n in res.names}
    assert out["response_peak_offsets"]["conv1"] == r.offsets["conv1"].tolist()
    for f in ("accuracy.png", "cv_accuracy.png", "max_histograms.png"):
        assert (tmp_path / "a" / f).stat().st_size > 500
