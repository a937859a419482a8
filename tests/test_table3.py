import json

from convcorr.experiments import run


def test_table3_tiny(tmp_path, shared):
    run("table3", tmp_path, "default", {"categories": ["face"], "n_warps": 1, "radii": [20, 80], "layers": ["conv3"],
                                        "folds": 3, "Cs": [0.1, 1.0], "n_response_instances": 1,
                                        "n_response_keypoints": 3, "response_window": 8})
    res = json.loads((tmp_path / "results.json").read_text())["results"]
    acc = res["accuracy"]["face"]
    assert set(acc) == {"SIFT r20", "SIFT r80", "conv3"}
    assert max(acc.values()) > 2 * res["chance"]["face"]
    for f in ("cv_accuracy.png", "response_maps.png", "max_histograms.png", "report.md"):
        assert (tmp_path / f).stat().st_size > 500
    assert len(res["response_peak_offsets"]["conv3"]) == 3
