import json

import numpy as np
import pytest

from convcorr.experiments import resolve_conf, run


def test_table2_tiny(tmp_path, shared):
    path = run("table2", tmp_path, "default", {"categories": ["face"], "n_queries": 3, "k": 3, "top": 2,
                                               "n_synthetic": 1, "features": ["alexnet:conv4"],
                                               "matcher_options.flow.n_iter": 4, "beta_grid": [1e-3, 1e-1],
                                               "n_boot": 200})
    res = json.loads((tmp_path / "results.json").read_text())["results"]
    assert res["n_queries"] == 3
    for m in ("box-copy", "alexnet:conv4 + flow"):
        assert all(0 <= v <= 1 for v in res["pck"][m].values())
        assert set(res["pck"][m]) == {"0.1", "0.05", "0.025"}
    assert res["pck"]["alexnet:conv4 + flow"]["0.1"] > res["random"]["0.1"]
    assert 0 <= res["same_source_fraction_k"] <= 1
    q = res["per_query"][0]
    assert len(q["neighbours"]) == 3 and q["query"] not in q["neighbours"]
    assert np.array(q["methods"]["alexnet:conv4 + flow"]["prediction"]).shape == (68, 2)
    for f in ("alignment_good.png", "alignment_typical.png", "alignment_bad.png", "pck_vs_alpha.png",
              "beta_validation.png"):
        assert (tmp_path / f).stat().st_size > 5000
    text = path.read_text()
    assert "| alexnet:conv4 + flow |" in text and "| box-copy |" in text and "| face |" in text
    C = "alexnet:conv4 + flow"
    # intervals with counts; the point estimate is the table's PCK; paired differences with a verdict
    ci = res["pck_ci"][C]["0.1"]
    assert ci["value"] == pytest.approx(res["pck"][C]["0.1"])
    assert ci["ci95"][0] <= ci["value"] <= ci["ci95"][1] and ci["n_units"] == 3
    assert res["counts"]["queries"] == 3 and res["counts"]["photos"] == 3
    d = [x for x in res["paired_differences"] if x["a"] == C and x["b"] == "box-copy" and x["alpha"] == 0.1][0]
    assert d["value"] == pytest.approx(res["pck"][C]["0.1"] - res["pck"]["box-copy"]["0.1"])
    assert d["resolved"] == (not (d["ci95"][0] <= 0 <= d["ci95"][1]))
    assert ("not resolved" in text) == any(not x["resolved"] for x in res["paired_differences"] if x["alpha"] == 0.1)
    # beta chosen on validation queries disjoint from the test queries, recorded
    bv = res["beta_validation"]
    assert bv["chosen"][C] in (1e-3, 1e-1) and res["beta"][C] == bv["chosen"][C]
    assert not set(bv["queries"]) & {q["query"] for q in res["per_query"]}


def test_validation_queries_are_disjoint_and_points_table(shared):
    from convcorr.experiments.table2 import (_pck_of, build_pool, pck_estimates, point_table, select_queries,
                                             select_validation_queries)

    conf = resolve_conf("table2", "default", {"categories": ["face", "hand"], "n_synthetic": 2, "n_queries": 3,
                                              "n_val_queries": 2})
    pool = build_pool(conf)
    qs = select_queries(pool, conf)
    vq = select_validation_queries(pool, conf, qs)
    assert len(vq) == 4 and not set(vq) & set(qs)
    assert all(not pool[j].meta["real"] for j in vq)
    # point table: one row per visible keypoint, unit = the query's photo; estimate == the PCK of the records
    rng = np.random.default_rng(0)
    recs = [(pool[q], pool[q].keypoints + rng.normal(0, 3, pool[q].keypoints.shape)) for q in qs]
    pt = point_table(recs)
    assert len(pt["types"]) == sum(int(pool[q].visible.sum()) for q in qs)
    assert set(pt["unit"]) == {pool[q].meta["photo"] for q in qs}
    est = pck_estimates(pt, n_boot=100)
    for a, v in _pck_of(recs).items():
        assert est[a].value == pytest.approx(v)


def test_table2_strict_protocol_excludes_the_query_photo(shared):
    from convcorr.experiments.table2 import build_pool, candidate_mask, select_queries

    conf = resolve_conf("table2", "default", {"categories": ["face"], "n_synthetic": 2, "n_queries": 3})
    pool = build_pool(conf)
    qs = select_queries(pool, conf)
    assert len(qs) == 3 and all(not pool[q].meta["real"] for q in qs)
    assert len({pool[q].meta["source_id"] for q in qs}) == 3  # cycles over photos
    loose, strict = candidate_mask(pool, qs, False), candidate_mask(pool, qs, True)
    for row, q in enumerate(qs):
        assert not loose[row, q] and not strict[row, q]
        same = [j for j, i in enumerate(pool) if i.meta["source_id"] == pool[q].meta["source_id"] and j != q]
        assert loose[row, same].all() and not strict[row, same].any()


def test_table2_paper_preset_needs_berkeley_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="root"):
        run("table2", tmp_path, "paper")


def test_strict_protocol_holds_out_the_query_photo(shared):
    # the other people of a COCO photo are different objects but share the photo: held out too
    from convcorr.experiments.table2 import build_pool, candidate_mask, select_queries

    conf = resolve_conf("table2", "default", {"categories": ["person"], "n_synthetic": 1, "n_queries": 6})
    pool = build_pool(conf)
    qs = select_queries(pool, conf)
    m = candidate_mask(pool, qs, True)
    for row, q in enumerate(qs):
        same_photo = [j for j, i in enumerate(pool) if i.meta["photo"] == pool[q].meta["photo"]]
        assert not m[row, same_photo].any() and m[row].any()
    assert any(len({i.meta["source_id"] for i in pool if i.meta["photo"] == pool[q].meta["photo"]}) > 1 for q in qs)


def test_validation_queries_for_real_only_data():
    # berkeley-like pool: real instances with a test split; validation comes from the training split
    from convcorr.core.types import Instance
    from convcorr.experiments.table2 import select_queries, select_validation_queries

    def inst(k, split):
        return Instance(id=f"i{k}", category="cat", bbox=(0, 0, 10, 10), keypoint_names=("a",),
                        keypoints=np.array([[5.0, 5.0]]), visible=np.array([True]),
                        meta={"real": True, "split": split, "source_id": f"i{k}"})

    pool = [inst(k, "test" if k < 3 else "train") for k in range(9)]
    qs = select_queries(pool, {"n_queries": None})
    assert qs == [0, 1, 2]
    vq = select_validation_queries(pool, {"n_queries": None, "n_val_queries": 3}, qs)
    assert vq == [3, 5, 8] and all(pool[j].meta["split"] == "train" for j in vq)


def test_method_configs_features_x_matchers_and_options():
    from convcorr.experiments.table2 import matcher_options, method_configs

    conf = resolve_conf("table2", "default", {"features": ["sift:step=8,bin=8", "alexnet:conv4"],
                                              "matchers": ["flow", "softargmax"],
                                              "matcher_options.flow.beta": 0.01,
                                              "matcher_options.softargmax": {"window": 3}})
    mc = method_configs(conf)
    assert list(mc) == ["sift:step=8,bin=8 + flow", "alexnet:conv4 + flow", "sift:step=8,bin=8 + softargmax",
                        "alexnet:conv4 + softargmax", "box-copy"]
    assert matcher_options(conf, "flow") == {"beta": 0.01, "radius_px": 64.0, "n_iter": 8, "coarse_to_fine": False,
                                             "normalize": True}
    assert matcher_options(conf, "softargmax") == {"window": 3}
    assert mc["box-copy"].method == "box-copy"
    with pytest.raises(KeyError, match="unknown matcher"):
        method_configs(dict(conf, matchers=["hungarian"]))
    with pytest.raises(ValueError, match="conv9"):
        method_configs(dict(conf, features=["alexnet:conv9"]))


def test_table2_other_matchers_run(tmp_path, shared):
    run("table2", tmp_path, "default", {"categories": ["face"], "n_queries": 2, "k": 2, "top": 1, "n_synthetic": 1,
                                        "features": ["alexnet:conv4"], "matchers": ["nn", "mnn", "softargmax"],
                                        "baselines": []})
    res = json.loads((tmp_path / "results.json").read_text())["results"]
    assert set(res["pck"]) == {"alexnet:conv4 + nn", "alexnet:conv4 + mnn", "alexnet:conv4 + softargmax"}
    assert all(0 <= v <= 1 for m in res["pck"].values() for v in m.values())


@pytest.mark.slow
def test_table2_process_pool_equals_serial_and_keeps_task_results(tmp_path, shared):
    over = {"categories": ["face"], "n_queries": 3, "k": 2, "top": 1, "n_synthetic": 1, "features": ["alexnet:conv4"],
            "matcher_options.flow.n_iter": 3}
    run("table2", tmp_path / "serial", "default", over)
    run("table2", tmp_path / "pool", "default", dict(over, workers=2, resume=True))
    a, b = (json.loads((tmp_path / d / "results.json").read_text())["results"] for d in ("serial", "pool"))
    for qa, qb in zip(a["per_query"], b["per_query"]):
        for m in qa["methods"]:
            assert qa["methods"][m]["prediction"] == qb["methods"][m]["prediction"]
            assert qa["methods"][m]["energies"] == qb["methods"][m]["energies"]
    assert a["pck"] == b["pck"]
    assert len(list((tmp_path / "pool" / "tasks").glob("*/q*.pkl"))) == 2  # queries 1..2 (query 0 runs in-process)


@pytest.mark.slow
def test_table2_resumes_an_interrupted_run_and_runs_on_ray(tmp_path, shared):
    """CLI flags end to end: --workers 2 --resume, a lost task result is recomputed and the rest reused; the same
    run on a local Ray cluster (--executor ray) gives the same results as the serial run."""
    pytest.importorskip("ray")
    import ray
    from click.testing import CliRunner

    from convcorr.cli import cli

    sets = ["--set", "categories=['face']", "--set", "n_queries=3", "--set", "k=2", "--set", "top=1",
            "--set", "n_synthetic=1", "--set", "features=['alexnet:conv4']", "--set", "matcher_options.flow.n_iter=3"]

    def results(d):
        return json.loads((tmp_path / d / "results.json").read_text())["results"]["per_query"]

    r = CliRunner().invoke(cli, ["experiment", "table2", "--out", str(tmp_path / "serial")] + sets)
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["experiment", "table2", "--out", str(tmp_path / "res"), "--workers", "2",
                                 "--resume"] + sets)
    assert r.exit_code == 0, r.output
    saved = sorted((tmp_path / "res" / "tasks").glob("*/q*.pkl"))
    assert len(saved) == 2
    kept = saved[1].stat().st_mtime_ns
    saved[0].unlink()  # "interrupted" before this query's result was written
    r = CliRunner().invoke(cli, ["experiment", "table2", "--out", str(tmp_path / "res"), "--resume"] + sets)
    assert r.exit_code == 0, r.output
    assert saved[0].exists() and saved[1].stat().st_mtime_ns == kept  # only the lost one ran again
    assert results("res") == results("serial")
    try:
        r = CliRunner().invoke(cli, ["experiment", "table2", "--out", str(tmp_path / "ray"), "--executor", "ray",
                                     "--workers", "2"] + sets)
    finally:
        ray.shutdown()
    assert r.exit_code == 0, r.output
    assert results("ray") == results("serial")


def test_table2_compute_and_render(tmp_path, monkeypatch, shared):
    from convcorr.experiments import table2
    from tests_helpers_results import render_twice

    conf = resolve_conf("table2", "default", {"categories": ["face"], "n_queries": 2, "k": 2, "top": 1,
                                              "n_synthetic": 1, "features": ["alexnet:conv4"],
                                              "matcher_options.flow.n_iter": 3,
                                              "validate_beta": False, "n_boot": 50})
    res = table2.compute(conf)
    assert isinstance(res, table2.Table2Results)
    flow = "alexnet:conv4 + flow"
    assert res.methods == [flow, "box-copy"] and res.aligned == [flow] and res.categories == ["face"]
    assert res.validation is None and res.betas == {flow: 3e-3}
    assert len(res.queries) == len(res.per_query) == 2
    for m in res.methods:
        # PCK by hand: mean over keypoint types of the fraction within alpha * max(box side) of the ground truth
        for a in (0.1, 0.05, 0.025):
            ok = {}
            for q, rec in zip(res.queries, res.per_query):
                p = np.array(rec["methods"][m]["prediction"])
                for k in np.flatnonzero(q.visible):
                    d = np.linalg.norm(p[k] - q.keypoints[k])
                    ok.setdefault(q.keypoint_names[k], []).append(d <= a * q.bbox_size)
            assert res.pck[m][a] == pytest.approx(np.mean([np.mean(v) for v in ok.values()]))
        assert res.per_category["face"][m] == res.pck[m]
        assert res.pck_ci[m][0.1].value == pytest.approx(res.pck[m][0.1])
    assert set(res.differences) == {(flow, "box-copy")}
    assert res.point_counts[flow] == res.counts and res.counts["queries"] == 2
    fig = res.figures
    assert fig["method"] == flow and set(fig["picks"]) == {"good", "typical", "bad"}
    for p in fig["picks"].values():
        assert p["crop"].shape == (227, 227, 3) and len(p["neighbours"]) == 2
        assert len(p["methods"][flow]["images"]) == 2 and p["methods"][flow]["images"][0].shape[:2] == (227, 227)
    out = render_twice(table2, res, tmp_path, monkeypatch,
                       ("run_conf_tasks", "make_transfer", "bootstrap_ci", "paired_difference",
                        "retrieve_neighbours", "InstanceMemo"))
    assert out["pck"][flow] == {str(a): v for a, v in res.pck[flow].items()}
    assert out["pck_protocol"]["alphas"] == [0.1, 0.05, 0.025]
    for f in ("pck_vs_alpha.png", "alignment_good.png"):
        assert (tmp_path / "a" / f).stat().st_size > 500
