import json

import numpy as np
import pytest

from convcorr.experiments import resolve_conf, run


def test_table2_tiny(tmp_path, shared):
    path = run("table2", tmp_path, "default", {"categories": ["face"], "n_queries": 3, "k": 3, "top": 2,
                                               "n_warps": 1, "features": ["alexnet:conv4"],
                                               "n_iter": 4})
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
    for f in ("neighbours.png", "pck_vs_alpha.png"):
        assert (tmp_path / f).stat().st_size > 5000
    text = path.read_text()
    assert "| alexnet:conv4 + flow |" in text and "| box-copy |" in text and "| face |" in text


def test_table2_strict_protocol_excludes_the_query_photo(shared):
    from convcorr.experiments.table2 import build_pool, candidate_mask, select_queries

    conf = resolve_conf("table2", "default", {"categories": ["face"], "n_warps": 2, "n_queries": 3})
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


def test_method_configs_features_x_matchers_and_options():
    from convcorr.experiments.table2 import matcher_options, method_configs

    conf = resolve_conf("table2", "default", {"features": ["sift:step=8,bin=8", "alexnet:conv4"],
                                              "matchers": ["flow", "softargmax"], "beta": 0.01,
                                              "matcher_options": {"softargmax": {"window": 3}}})
    mc = method_configs(conf)
    assert list(mc) == ["sift:step=8,bin=8 + flow", "alexnet:conv4 + flow", "sift:step=8,bin=8 + softargmax",
                        "alexnet:conv4 + softargmax", "box-copy"]
    assert matcher_options(conf, "flow") == {"beta": 0.01, "radius_px": 64.0, "n_iter": 8, "coarse_to_fine": False}
    assert matcher_options(conf, "softargmax") == {"window": 3}
    assert mc["box-copy"].method == "box-copy"
    with pytest.raises(KeyError, match="unknown matcher"):
        method_configs(dict(conf, matchers=["hungarian"]))
    with pytest.raises(ValueError, match="conv9"):
        method_configs(dict(conf, features=["alexnet:conv9"]))


def test_table2_other_matchers_run(tmp_path, shared):
    run("table2", tmp_path, "default", {"categories": ["face"], "n_queries": 2, "k": 2, "top": 1, "n_warps": 1,
                                        "features": ["alexnet:conv4"], "matchers": ["nn", "mnn", "softargmax"],
                                        "baselines": []})
    res = json.loads((tmp_path / "results.json").read_text())["results"]
    assert set(res["pck"]) == {"alexnet:conv4 + nn", "alexnet:conv4 + mnn", "alexnet:conv4 + softargmax"}
    assert all(0 <= v <= 1 for m in res["pck"].values() for v in m.values())


@pytest.mark.slow
def test_table2_process_pool_equals_serial_and_keeps_task_results(tmp_path, shared):
    over = {"categories": ["face"], "n_queries": 3, "k": 2, "top": 1, "n_warps": 1, "features": ["alexnet:conv4"],
            "n_iter": 3}
    run("table2", tmp_path / "serial", "default", over)
    run("table2", tmp_path / "pool", "default", dict(over, workers=2, resume=True))
    a, b = (json.loads((tmp_path / d / "results.json").read_text())["results"] for d in ("serial", "pool"))
    for qa, qb in zip(a["per_query"], b["per_query"]):
        for m in qa["methods"]:
            assert qa["methods"][m]["prediction"] == qb["methods"][m]["prediction"]
            assert qa["methods"][m]["energies"] == qb["methods"][m]["energies"]
    assert a["pck"] == b["pck"]
    assert len(list((tmp_path / "pool" / "tasks").glob("*/q*.pkl"))) == 2  # queries 1..2 (query 0 runs in-process)
