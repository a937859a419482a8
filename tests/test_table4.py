import json

import numpy as np
import pytest
from tests_helpers_results import lose_and_resume
from tests_helpers_results import strip_timings as _strip

from convcorr.experiments import resolve_conf, run
from convcorr.experiments.table4 import CONFIGS, kept_types

ROWS = {"sift:step=8,bin=8", "sift:step=8,bin=8 + prior", "alexnet:conv5", "alexnet:conv5 + prior", "NN prior only"}


def test_configs_and_type_subsample():
    for name in ("default", "paper"):
        c = CONFIGS[name]
        assert c["input_size"] == 500 and c["sigma"] == 22.0 and c["eta"] == 0.1 and c["n_pos"] == 10
        assert c["features"] == ["sift:step=8,bin=8", "alexnet:conv5"] and c["neighbourhood"] == [1, 3]
        assert c["margin"] == 0.0
    assert CONFIGS["paper"]["dataset"] == "berkeley"
    np.testing.assert_array_equal(kept_types(tuple("abcdefghi"), 3), [0, 4, 8])
    np.testing.assert_array_equal(kept_types(tuple("abc"), None), [0, 1, 2])


def test_paper_preset_fails_clearly_without_images(tmp_path):
    with pytest.raises(FileNotFoundError, match="root"):
        run("table4", tmp_path, "paper")
    with pytest.raises(KeyError):
        resolve_conf("table4", "default", {"no_such_option": 1})


def test_table4_tiny(tmp_path, shared):
    run("table4", tmp_path, "default", {"categories": ["face"], "n_synthetic": 1, "max_types": 4,
                                        "mining_rounds": 1, "input_size": 260, "n_init": 300, "n_add": 300,
                                        "n_figure": 2})
    res = json.loads((tmp_path / "results.json").read_text())["results"]
    pck = res["pck@0.1"]
    assert set(pck) == ROWS
    for row in pck.values():
        assert set(row) == {"face", "mean"}
        assert 0.0 <= row["face"] <= 1.0 and row["mean"] == row["face"]
    assert res["n_train"]["face"] > 0 and res["n_test"]["face"] > 0
    assert len(res["mining"]["alexnet:conv5"]["face"]) == 2  # round 0 + one mining round
    md = (tmp_path / "report.md").read_text()
    assert "| alexnet:conv5 + prior |" in md and "| sift:step=8,bin=8 |" in md
    for f in ("predictions.png", "score_maps.png", "report.md"):
        assert (tmp_path / f).stat().st_size > 500
    # intervals over test photos with counts; paired with-vs-without-prior and conv5-vs-SIFT differences
    C, S = "alexnet:conv5", "sift:step=8,bin=8"
    ci = res["pck@0.1_ci"][C + " + prior"]
    assert ci["face"]["value"] == pytest.approx(pck[C + " + prior"]["face"])
    assert ci["mean"]["value"] == pytest.approx(pck[C + " + prior"]["mean"])
    assert ci["face"]["n_units"] == res["counts"]["face"]["test photos"] == 3
    pairs = {(d["a"], d["b"]): d for d in res["paired_differences"]}
    assert set(pairs) == {(S + " + prior", S), (C + " + prior", C), (C, S), (C + " + prior", S + " + prior")}
    d = pairs[(C + " + prior", C)]
    assert d["value"] == pytest.approx(pck[C + " + prior"]["mean"] - pck[C]["mean"])
    assert (tmp_path / "pck.png").stat().st_size > 500


def test_table4_process_pool_equals_serial_and_resumes(tmp_path, shared):
    # units: one SVM with hard-negative mining per (category, feature, keypoint type): 1 x 2 x 3
    over = {"categories": ["face"], "n_synthetic": 1, "max_types": 3, "mining_rounds": 1, "input_size": 200,
            "n_init": 200, "n_add": 200, "n_figure": 1, "n_boot": 50}
    res = lambda d: _strip(json.loads((d / "results.json").read_text()))["results"]
    run("table4", tmp_path / "serial", "default", over)
    run("table4", tmp_path / "pool", "default", dict(over, workers=2, resume=True))
    serial = res(tmp_path / "serial")
    assert set(serial["pck@0.1"]) == ROWS and len(serial["mining"]["alexnet:conv5"]["face"]) == 2
    assert res(tmp_path / "pool") == serial
    saved = sorted((tmp_path / "pool" / "tasks").glob("svms-*/*.pkl"))
    assert len(saved) == 6 and {f.name.split("-")[2] for f in saved} == {"f0", "f1"}
    # an interrupted run: two SVMs lost; the rerun trains only those two, the same way (on
    # Ray when installed)
    lost = saved[1:3]
    lose_and_resume("table4", tmp_path / "pool", over, saved, lost)
    assert res(tmp_path / "pool") == serial


def test_table4_compute_and_render(tmp_path, monkeypatch, shared):
    from convcorr.experiments import table4
    from tests_helpers_results import render_twice

    conf = resolve_conf("table4", "default", {"categories": ["face"], "n_synthetic": 1, "max_types": 4,
                                              "mining_rounds": 1, "input_size": 260, "n_init": 300, "n_add": 300,
                                              "n_figure": 2, "n_boot": 50})
    res = table4.compute(conf)
    assert isinstance(res, table4.Table4Results)
    assert res.categories == ["face"] and set(res.methods) == ROWS and len(res.types["face"]) == 4
    for m in res.methods:
        pts = res.points[m]["face"]
        assert len(pts["correct"]) == res.counts["face"]["test points"] == len(pts["types"])
        assert res.pck[m]["mean"] == res.pck[m]["face"]
        # PCK@0.1 is the mean over keypoint types of the per-type fraction of correct test keypoints
        by_type = [pts["correct"][pts["types"] == t].mean() for t in np.unique(pts["types"])]
        assert res.pck[m]["face"] == pytest.approx(np.mean(by_type))
        assert res.pck_ci[m]["face"].value == pytest.approx(res.pck[m]["face"])
    assert ("alexnet:conv5 + prior", "alexnet:conv5") in res.differences
    assert len(res.examples) == 2 and list(res.examples[0]["predictions"]) == ["alexnet:conv5 + prior",
                                                                              "sift:step=8,bin=8 + prior"]
    assert res.examples[0]["predictions"]["alexnet:conv5 + prior"].shape == (4, 2)
    sm = res.score_maps
    assert [r["feature"] for r in sm["rows"]] == ["alexnet:conv5", "sift:step=8,bin=8"]
    for r in sm["rows"]:
        assert r["crop"].shape == (260, 260, 3) and r["maps"]["s"].shape == r["maps"]["f"].shape
        assert np.all(np.isfinite(r["gt"])) and set(r["best"]) == {"s", "p", "f"}
    out = render_twice(table4, res, tmp_path, monkeypatch,
                       ("run_conf_tasks", "bootstrap_ci", "paired_difference", "KeypointPredictor",
                        "global_descriptors"))
    assert out["pck@0.1"] == {m: dict(v) for m, v in res.pck.items()}
    for f in ("pck.png", "predictions.png", "score_maps.png"):
        assert (tmp_path / "a" / f).stat().st_size > 500
