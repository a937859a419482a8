import json

import pytest

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

