import json

from convcorr.experiments import resolve_conf, run


def test_table1_report(tmp_path):
    path = run("table1", tmp_path, "paper")
    res = json.loads((tmp_path / "results.json").read_text())["results"]
    assert res["alexnet_matches_paper"] is True
    assert [r["rf size"] for r in res["alexnet"]] == [11, 51, 99, 131, 163, 195]
    assert (tmp_path / "rf_sizes.png").stat().st_size > 1000
    assert "| conv4 | 131 | 16 |" in path.read_text()


def test_unknown_override_rejected():
    import pytest

    with pytest.raises(KeyError):
        resolve_conf("table1", "default", {"nope": 1})
