import json

import pytest
from tests_helpers_results import strip_timings as _strip

from convcorr.experiments import resolve_conf, run
from convcorr.experiments.table1 import CONFIGS, PAPER


def test_table1_paper_preset(tmp_path):
    path = run("table1", tmp_path, "paper")
    res = json.loads((tmp_path / "results.json").read_text())["results"]
    assert res["alexnet_matches_paper"] is True
    assert [r["rf size"] for r in res["alexnet"]] == [11, 51, 99, 131, 163, 195]
    assert [r["stride"] for r in res["alexnet"]] == [4, 8, 16, 16, 16, 32]
    assert [r["grid"] for r in res["alexnet"]] == ["55x55", "27x27", "13x13", "13x13", "13x13", "6x6"]
    assert (tmp_path / "rf_sizes.png").stat().st_size > 1000
    text = path.read_text()
    assert "| conv4 | 131 | 16 |" in text and "131/16" in text  # computed value with the paper's beside it


def test_table1_default_preset(tmp_path):
    assert CONFIGS["default"]["backbones"] == ["alexnet", "efficientnet_lite0", "squeezenet1_0", "mobilenet_v1",
                                               "mobilenet_v2"]
    path = run("table1", tmp_path, "default", {"backbones": ["alexnet", "efficientnet_lite0", "mobilenet_v2"]})
    res = json.loads((tmp_path / "results.json").read_text())["results"]
    assert set(res) >= {"alexnet", "efficientnet_lite0", "mobilenet_v2", "alexnet_matches_paper"}
    eff = {r["layer"]: r for r in res["efficientnet_lite0"]}
    assert eff["head"]["channels"] == 1280 and eff["head"]["grid"] == "7x7" and eff["head"]["stride"] == 32
    mb = {r["layer"]: r for r in res["mobilenet_v2"]}
    assert (mb["Conv"]["rf size"], mb["Conv"]["stride"], mb["Conv"]["offset"]) == (3, 2, 1.0)  # TF "same", even
    assert "efficientnet_lite0 at 224x224" in path.read_text()
    assert set(PAPER) <= {r["layer"] for r in res["alexnet"]}
    assert (tmp_path / "rf_vs_stride.png").stat().st_size > 1000


def test_table1_library_backbones_global(tmp_path):
    pytest.importorskip("timm")
    path = run("table1", tmp_path, "default", {"backbones": ["timm:resnet18", "timm:vit_tiny_patch16_224"],
                                               "input_size": 128})
    res = json.loads((tmp_path / "results.json").read_text())["results"]
    rn = {r["layer"]: r for r in res["timm:resnet18"]}
    assert rn["layer2"]["stride"] == 8 and rn["layer4"]["stride"] == 32
    vit = res["timm:vit_tiny_patch16_224"]
    assert all(r["rf size"] == "global" and r["stride"] == 16 and r["offset"] == 7.5 for r in vit)
    assert "timm:vit_tiny_patch16_224 at 128x128" in path.read_text()


def test_unknown_override_rejected():
    with pytest.raises(KeyError):
        resolve_conf("table1", "default", {"nope": 1})


def test_table1_process_pool_equals_serial_and_resumes(tmp_path):
    over = {"backbones": ["alexnet", "squeezenet1_0"], "input_size": 227}
    run("table1", tmp_path / "serial", "default", over)
    run("table1", tmp_path / "pool", "default", dict(over, workers=2, resume=True))
    a, b = (_strip(json.loads((tmp_path / d / "results.json").read_text())) for d in ("serial", "pool"))
    assert a["results"]["alexnet_matches_paper"] is True
    assert a["results"] == b["results"]
    saved = sorted((tmp_path / "pool" / "tasks").glob("backbones-*/*.pkl"))
    assert len(saved) == 2  # one unit per backbone
    saved[1].unlink()
    kept = saved[0].stat().st_mtime_ns
    run("table1", tmp_path / "pool", "default", dict(over, resume=True))  # resumes: only squeezenet1_0 traced again
    c = _strip(json.loads((tmp_path / "pool" / "results.json").read_text()))
    assert c["results"] == a["results"] and saved[1].is_file() and saved[0].stat().st_mtime_ns == kept


def test_table1_compute_and_render(tmp_path, monkeypatch):
    from convcorr.experiments import table1
    from tests_helpers_results import render_twice

    res = table1.compute(resolve_conf("table1", "paper"))
    assert isinstance(res, table1.Table1Results)
    assert res.backbones == ["alexnet"] and res.sizes == {"alexnet": 227}
    assert [r["rf size"] for r in res.rows["alexnet"]] == [11, 51, 99, 131, 163, 195]
    assert [r["stride"] for r in res.rows["alexnet"]] == [4, 8, 16, 16, 16, 32]
    assert res.alexnet_matches_paper is True
    assert res.summary == [{"backbone": "alexnet", "input": "227x227", "layers": 6, "largest finite rf": 195,
                            "global layers": 0, "not followed": 0, "final stride": 32}]
    out = render_twice(table1, res, tmp_path, monkeypatch, ("run_conf_tasks", "get_backbone", "rf_rows"))
    assert out["alexnet"] == res.rows["alexnet"] and out["alexnet_matches_paper"] is True
    assert (tmp_path / "a" / "rf_sizes.png").stat().st_size > 1000
