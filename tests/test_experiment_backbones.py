"""The study across backbones: every layer measured with intervals, rf values from the backbones, fits by hand."""
import json

import numpy as np
import pytest
from tests_helpers_results import assert_ray_equals_serial
from tests_helpers_results import results_of as _results

from convcorr.evaluation.stats import Estimate
from convcorr.experiments import EXPERIMENTS, resolve_conf
from convcorr.experiments.backbones import (CONFIGS, Fit, LayerResult, _fits, answer, compute, partial_rank_correlation,
                                            render)

LAYERS = {"alexnet": ["conv1", "conv2", "conv3"], "squeezenet1_0": ["pool1", "fire5"]}


@pytest.fixture(scope="module")
def tiny(shared):
    conf = resolve_conf("backbones", "default", {
        "backbones": list(LAYERS), "layers": LAYERS, "categories": ["face", "hand"], "max_pairs": 4,
        "n_synthetic": 1, "max_types": 6, "Cs": [1.0], "n_boot": 200})
    return conf, compute(conf)


def test_registered_and_default_is_the_five_offline_cnns():
    assert "backbones" in EXPERIMENTS
    d = CONFIGS["default"]
    assert d["backbones"] == ["alexnet", "efficientnet_lite0", "squeezenet1_0", "mobilenet_v1", "mobilenet_v2"]
    assert d["layers"] is None and d["dataset"] == "embedded"
    for k in ("categories", "seed", "dataset", "matchers", "n_boot", "max_pairs"):  # shared option names
        assert k in d


def test_every_layer_measured_with_the_backbones_rf(tiny):
    from convcorr.backbones import get_backbone

    conf, res = tiny
    assert [(r.backbone, r.layer) for r in res.layers] == [(b, l) for b, ls in LAYERS.items() for l in ls]
    for r in res.layers:
        g = get_backbone(r.backbone).rf(r.layer, r.input_size)
        assert (r.rf_size, r.stride, r.offset) == (g.size, g.stride, g.offset)
        assert r.input_size == get_backbone(r.backbone).input_size
    assert res.layer("alexnet", "conv3").rf_size == 99 and res.layer("alexnet", "conv3").stride == 16
    assert res.layer("alexnet", "conv1").channels == 96 and res.layer("alexnet", "conv1").grid_hw == (55, 55)


def test_intervals_contain_estimates_and_counts_agree(tiny):
    from convcorr.datasets import pools

    conf, res = tiny
    n_pairs = len(pools.build_pairs(conf))
    tc, cc = res.counts["transfer"], res.counts["classification"]
    assert tc["pairs"] == n_pairs and sum(v["pairs"] for v in tc["per_category"].values()) == n_pairs
    assert tc["points"] == sum(v["points"] for v in tc["per_category"].values())
    n_test = sum(v["test points"] for v in cc.values())
    assert set(cc) == {"face", "hand"}
    for r in res.layers:
        assert r.n_pairs == n_pairs and r.n_transfer_points == tc["points"] > 0
        assert r.n_test_points == n_test and r.n_train_points == sum(v["train points"] for v in cc.values())
        assert r.n_test_units == sum(v["test photos"] for v in cc.values())
        for a in res.alphas:
            e = r.pck[a]
            assert e.lo <= e.value <= e.hi and 0 <= e.value <= 1
            assert e.n == tc["points"] and e.n_units == n_pairs
            assert e.value == pytest.approx(r.pck_overall[a])  # stats.type_mean == the PCK engine's type average
        assert r.pck[0.1].value >= r.pck[0.05].value >= r.pck[0.025].value
        assert r.accuracy.lo <= r.accuracy.value <= r.accuracy.hi and r.accuracy.n == n_test
        # the headline accuracy is the mean of the per-category accuracies
        assert r.accuracy.value == pytest.approx(np.mean([e.value for e in r.accuracy_per_category.values()]))
        assert set(r.chosen_C.values()) == {1.0}
    assert len(res.fits) == 8 and all(f.n_layers == len(res.layers) for f in res.fits)
    for f in res.fits:
        e = f.estimate
        if f.kind == "rank correlation":  # 5 layers: 4 beyond the intercept
            assert -1 <= e.lo <= e.hi <= 1 and np.isfinite(e.value)
        else:  # partial on stride/rf + one backbone indicator: too few layers left, no number
            assert np.isnan(e.value)
    assert set(res.answers) == {"transfer PCK@0.1", "classification accuracy"}
    assert all("too few layers" in t for t in res.answers.values())


def test_render_writes_report_json_and_figures(tiny, tmp_path):
    conf, res = tiny
    path = render(res, tmp_path)
    md = path.read_text()
    assert "## Answer" in md and "alexnet" in md and "fire5" in md
    data = json.loads((tmp_path / "results.json").read_text())
    assert len(data["results"]["layers"]) == len(res.layers) and len(data["results"]["fits"]) == 8
    assert (tmp_path / "accuracy_vs_geometry.png").stat().st_size > 0
    assert (tmp_path / "correlations.png").stat().st_size > 0



def test_render_computes_nothing_and_renders_a_pickled_copy(tiny, tmp_path, monkeypatch):
    from convcorr.experiments import backbones
    from tests_helpers_results import render_twice

    conf, res = tiny
    out = render_twice(backbones, res, tmp_path, monkeypatch,
                       ("run_conf_tasks", "_measure_backbone", "_fits", "_floors", "answer",
                        "partial_rank_correlation"))
    assert out["layers"] == _results_like([r.to_dict() for r in res.layers])
    assert out["chance"] == res.chance


def _results_like(x):
    """``x`` as it reads back from results.json (JSON types, no timings)."""
    from convcorr.viz.report import _jsonable
    from tests_helpers_results import strip_timings

    return strip_timings(json.loads(json.dumps(_jsonable(x))))

def test_partial_rank_correlation_by_hand():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    assert partial_rank_correlation(x, x) == pytest.approx(1.0)
    assert partial_rank_correlation(x[::-1], np.exp(x)) == pytest.approx(-1.0)  # ranks: monotone maps do not count
    # within each level of z, y falls while x rises: the plain rho is positive, the partial one -1 (by hand:
    # residual ranks of x on z are (-.5, .5, -.5, .5), of y (.5, -.5, .5, -.5))
    z = np.array([1.0, 1.0, 2.0, 2.0])
    y = np.array([2.0, 1.0, 4.0, 3.0])
    assert partial_rank_correlation(y, x) == pytest.approx(0.6)
    assert partial_rank_correlation(y, x, z[:, None]) == pytest.approx(-1.0)
    # replicates in columns are ranked separately
    Y = np.stack([x, x[::-1], y], 1)
    np.testing.assert_allclose(partial_rank_correlation(Y, x), [1.0, -1.0, 0.6])
    assert np.isnan(partial_rank_correlation(y, x, x[:, None]))  # x explained by its covariate: undefined


def _layer(b, l, rf, stride, v):
    e = Estimate(v, v - 0.05, v + 0.05, 10, 5)
    return LayerResult(b, l, 224, rf, stride, 0.0, 8, (7, 7), {0.1: e}, {0.1: v}, {}, e, {}, {}, 1, 10, 10, 10, 5)


def test_fits_leave_global_layers_out_and_answer_names_the_variable():
    rfs = [11, 19, 27, 43, 59, 91]
    strides = [4, 4, 4, 8, 8, 8]
    vals = [0.1, 0.2, 0.3, 0.15, 0.25, 0.35]  # rises with the rf at fixed stride, falls with the stride
    layers = [_layer("a", f"l{k}", rf, s, v) for k, (rf, s, v) in enumerate(zip(rfs, strides, vals))]
    layers.append(_layer("a", "global", float("inf"), 32, 0.9))
    B = 50
    reps = np.array(vals + [0.9])[:, None] + np.random.default_rng(0).normal(0, 1e-3, (len(layers), B))
    ests = [r.pck[0.1] for r in layers]
    fits = _fits(layers, {"m": reps}, {"m": ests}, {"m": 5})
    assert all(f.n_layers == 6 for f in fits)  # the global layer is left out
    part = {f.variable: f.estimate for f in fits if f.kind == "partial rank correlation"}
    assert part["rf size"].value == pytest.approx(1.0) and part["stride"].value < 0
    text = answer("m", fits)
    assert "RECEPTIVE FIELD" in text or "BOTH" in text
    none = [Fit("m", v, k, Estimate(0.1, -0.2, 0.4, 6, 5), 6) for v in ("rf size", "stride")
            for k in ("rank correlation", "partial rank correlation")]
    assert "not resolved" in answer("m", none) and "NEITHER" in answer("m", none)


def test_unknown_layer_and_bad_alpha_are_named(shared):
    conf = resolve_conf("backbones", "default", {"backbones": ["alexnet"], "layers": {"alexnet": ["conv9"]}})
    with pytest.raises(ValueError, match="conv9"):
        compute(conf)
    with pytest.raises(ValueError, match="alpha"):
        compute(dict(conf, alpha=0.2))


def test_unknown_backbone_is_a_config_error():
    from convcorr.core.errors import ConfigError

    with pytest.raises(ConfigError, match="nonet"):  # checked with the options, before any work
        resolve_conf("backbones", "default", {"backbones": ["alexnet", "nonet"]})
    conf = resolve_conf("backbones", "default", {"backbones": ["alexnet"]})
    with pytest.raises(ConfigError, match="nonet"):  # and by compute itself (library use)
        compute(dict(conf, backbones=["nonet"]))


def test_resume_and_process_pool_equal_serial(tmp_path, shared, monkeypatch):
    """A serial run with --resume keeps every layer's result; after deleting two of them, a re-run on a process
    pool (--workers 2) recomputes exactly those two layers in the workers and gives the serial results; a third
    run finds every layer saved and runs no forward pass."""
    from convcorr.experiments import run
    from convcorr.experiments.backbones import layer_key

    layers = {"alexnet": ["conv1", "conv2", "conv3"]}
    over = {"backbones": ["alexnet"], "layers": layers, "categories": ["face"], "max_pairs": 3,
            "n_synthetic": 1, "max_types": 6, "Cs": [0.1, 1.0], "folds": 2, "n_boot": 50, "resume": True}
    run("backbones", tmp_path, "default", over)
    serial = _results(tmp_path)
    files = sorted((tmp_path / "tasks").glob("layers-*/*.pkl"))
    assert sorted(f.stem for f in files) == sorted(layer_key("alexnet", l) for l in layers["alexnet"])
    assert len(serial["layers"]) == 3
    gone = [f for f in files if "conv3" not in f.name]
    kept = {f: f.stat().st_mtime_ns for f in files if f not in gone}
    for f in gone:
        f.unlink()
    # other parallel options, the same configuration hash: the same folder
    run("backbones", tmp_path, "default", dict(over, workers=2))
    assert _results(tmp_path) == serial
    assert all(f.exists() for f in gone) and {f: f.stat().st_mtime_ns for f in kept} == kept
    # every layer saved: the backbone's forward passes are skipped
    from convcorr.backbones.base import Backbone

    def no_extract(self, *args, **kwargs):
        raise AssertionError("features extracted although every layer's result is saved")

    monkeypatch.setattr(Backbone, "extract", no_extract)
    run("backbones", tmp_path, "default", over)
    assert _results(tmp_path) == serial
    assert layer_key("timm:vit_small_patch14_dinov2.lvd142m", "blocks.3").startswith(
        "timm_vit_small_patch14_dinov2.lvd142m-blocks.3.")
    assert layer_key("a:b", "c") != layer_key("a_b", "c")  # names never collide


def test_ray_equals_serial(tmp_path, shared):
    """--executor ray (a local Ray cluster of 2 CPUs) gives the serial results."""
    pytest.importorskip("ray")
    over = {"backbones": ["alexnet"], "layers": {"alexnet": ["conv2", "conv3"]}, "categories": ["face"],
            "max_pairs": 2, "n_synthetic": 1, "max_types": 6, "Cs": [1.0], "n_boot": 50}
    assert_ray_equals_serial("backbones", tmp_path, over)
