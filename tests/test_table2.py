import json

from convcorr.experiments import run


def test_table2_tiny(tmp_path, shared):
    path = run("table2", tmp_path, "default", {"categories": ["face"], "max_queries": 2, "k": 3, "top": 2,
                                               "n_warps": 1, "methods": ["nn", "conv4"], "n_iter": 4})
    res = json.loads((tmp_path / "results.json").read_text())["results"]
    assert res["n_queries"] == 2
    for m in ("nn", "conv4"):
        assert all(0 <= v <= 1 for v in res["pck"][m].values())
    assert res["pck"]["conv4"]["0.1"] > res["random"]["0.1"]
    assert (tmp_path / "neighbours.png").stat().st_size > 5000
    assert "| conv4 |" in path.read_text()
