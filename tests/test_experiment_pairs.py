"""`convcorr experiment pairs` end to end: synthetic pairs of the embedded photos and a COCO JSON fixture."""
import json

import numpy as np
import pytest
from PIL import Image
from tests_helpers_results import assert_ray_equals_serial
from tests_helpers_results import results_of as _results

from convcorr.experiments import EXPERIMENTS, resolve_conf, run
from convcorr.experiments.pairs import BOX_COPY, compute

SMALL = {"categories": ["zebra"], "n_synthetic_pairs": 2, "max_pairs": 2, "features": ["alexnet:conv4"],
         "matchers": ["nn", "flow"], "input_size": 131, "n_gallery": 1, "n_boot": 200}


def test_pairs_registered_and_presets():
    assert "pairs" in EXPERIMENTS
    for preset in ("default", "spair", "pf-pascal", "pf-willow", "coco"):
        c = resolve_conf("pairs", preset)
        assert c["pck_protocols"] and "dataset" in c and "json" in c
    assert resolve_conf("pairs", "spair")["pck_protocols"][0] == "dift-spair"
    with pytest.raises(KeyError, match="no option"):
        resolve_conf("pairs", "default", {"n_synthetic": 3})


def test_pairs_compute_synthetic_and_cross(shared):
    res = compute(resolve_conf("pairs", "default", SMALL))
    assert res.methods == ["alexnet:conv4 + nn", "alexnet:conv4 + flow", BOX_COPY]
    kinds = [p["kind"] for p in res.pairs]
    assert kinds.count("synthetic") == 2 and kinds.count("cross") == 2  # 2 zebra photos -> 2 ordered pairs
    for proto in ("paper", "dift-spair"):
        for m in res.methods:
            r = res.pck[proto][m]
            assert r["protocol"]["name"] == proto
            assert r["counts"]["pairs"] == 4 and len(r["per_pair"]) == 4
            for avg, vals in r["overall"].items():
                assert all(0 <= v <= 1 for v in vals.values())
    # the paper's protocol: type average at the three alphas; DIFT: per pair and per point at 0.1
    assert set(res.pck["paper"][BOX_COPY]["overall"]) == {"type"}
    assert set(res.pck["dift-spair"][BOX_COPY]["overall"]) == {"pair", "point"}
    # same-instance warps are easy for matching conv features: better than copying the box
    syn = {m: res.by_kind[m]["synthetic"][0.1] for m in res.methods}
    assert syn["alexnet:conv4 + flow"] >= syn[BOX_COPY]
    # per-pair values are the recomputable unit: the point average equals the points pooled over pairs
    pp = res.pck["dift-spair"][BOX_COPY]["per_pair"]
    pooled = np.mean(np.concatenate([np.array(p["errors"]) <= 0.1 for p in pp]))
    assert res.pck["dift-spair"][BOX_COPY]["overall"]["point"][0.1] == pytest.approx(pooled)
    try:
        import convcorr.evaluation.stats as stats
    except ImportError:
        assert res.confidence == {}
    else:
        ci = res.confidence["estimates"]["dift-spair"][BOX_COPY]["point"][0.1]
        assert ci["ci95"][0] <= ci["value"] <= ci["ci95"][1] and ci["n_units"] == 4
        assert {(d["a"], d["b"]) for d in res.confidence["differences"]} == {
            ("alexnet:conv4 + nn", BOX_COPY), ("alexnet:conv4 + flow", BOX_COPY)}
    assert all(p.shape == (9, 2) for p in res.predictions[BOX_COPY])


def test_pairs_box_copy_is_exact_on_a_pure_box_scaling(shared):
    """box-copy moves keypoints by the box map: exact when the target is the source scaled inside its box."""
    from convcorr.core.types import Instance
    from convcorr.methods.transfer import box_copy

    s = Instance("s", "c", (10, 20, 110, 70), ("a", "b"), [[10, 20], [60, 45]], [1, 1])
    t = Instance("t", "c", (0, 0, 50, 100), ("a", "b"), [[0, 0], [25, 50]], [1, 1])
    np.testing.assert_allclose(box_copy(s, t.bbox), t.keypoints)


def _coco_fixture(tmp_path, shared):
    """Four people in two shared photos (17 COCO keypoints), copied from the mmpose COCO fixture."""
    src = shared / "keypoints" / "mmpose-fixtures" / "coco"
    d = json.loads((src / "test_coco.json").read_text())
    keep = [a for a in d["annotations"] if sum(v > 0 for v in a["keypoints"][2::3]) >= 8][:4]
    ids = {a["image_id"] for a in keep}
    imgs = tmp_path / "images"
    imgs.mkdir()
    images = [im for im in d["images"] if im["id"] in ids]
    for im in images:
        Image.open(src / im["file_name"]).save(imgs / im["file_name"])
    js = tmp_path / "people.json"
    js.write_text(json.dumps({"images": images, "annotations": keep, "categories": d["categories"]}))
    return js, imgs


def test_pairs_on_coco_json_end_to_end(tmp_path, shared):
    js, imgs = _coco_fixture(tmp_path, shared)
    out = tmp_path / "out"
    report = run("pairs", out, "coco", {"json": str(js), "images": str(imgs), "features": ["alexnet:conv4"],
                                        "matchers": ["nn"], "max_pairs": 4, "input_size": 131, "n_gallery": 1})
    res = json.loads((out / "results.json").read_text())["results"]
    assert res["headline_protocol"] == "paper"
    assert res["pck_protocols"]["dift-spair"]["averages"] == ["pair", "point"]
    assert {p["kind"] for p in res["pairs"]} == {"cross"} and len(res["pairs"]) == 4
    assert {p["category"] for p in res["pairs"]} == {"person"}
    r = res["pck"]["paper"]["alexnet:conv4 + nn"]
    assert r["protocol"]["threshold"] == "target-bbox" and r["protocol"]["alphas"] == [0.1, 0.05, 0.025]
    assert r["counts"]["per_category"]["person"]["pairs"] == 4
    assert "curves" in res["pck_vs_alpha"]
    for f in ("pck_vs_alpha.png", "gallery.png"):
        assert (out / f).stat().st_size > 5000
    text = report.read_text()
    assert "PCK per category" in text and "| person |" in text and "dift-spair" in text


def test_sparse_matcher_points_without_prediction_count_as_wrong(shared):
    from convcorr.experiments.pairs import predicted_fraction

    conf = resolve_conf("pairs", "default", dict(SMALL, matchers=["mnn"], baselines=[], n_boot=50))
    res = compute(conf)
    r = res.pck["dift-spair"]["alexnet:conv4 + mnn"]
    frac = predicted_fraction(r)
    assert 0 < frac < 1  # mutual nearest neighbours leave some keypoints without a match
    errs = np.concatenate([p["errors"] for p in r["per_pair"]])
    assert r["overall"]["point"][0.1] == pytest.approx(np.mean(errs <= 0.1))
    assert r["overall"]["point"][0.1] <= frac


def test_pairs_pf_willow_preset_end_to_end(tmp_path, shared):
    """PF-WILLOW layout (test_pairs.csv + class folders) with shared photos as images: listed pairs, the
    HPF/CATs protocols at the resized resolution."""
    from tests_helpers_pfwillow import write_pf_willow

    names = ["PF-dataset/car(G)/2008_000021.png", "PF-dataset/car(G)/2008_000052.png",
             "PF-dataset/car(G)/2008_000085.png", "PF-dataset/duck(S)/060_0001.png", "PF-dataset/duck(S)/060_0007.png"]
    photos = sorted((shared / "images").iterdir())
    for k, n in enumerate(names):
        (tmp_path / n).parent.mkdir(parents=True, exist_ok=True)
        Image.open(photos[k % len(photos)]).convert("RGB").resize((160, 120)).save(tmp_path / n)
    csv = write_pf_willow(tmp_path, [(names[0], names[1]), (names[1], names[2]), (names[3], names[4])])
    out = tmp_path / "out"
    run("pairs", out, "pf-willow", {"csv": str(csv), "features": ["alexnet:conv4"], "matchers": ["nn"],
                                    "input_size": 131, "n_gallery": 1, "n_boot": 50})
    res = json.loads((out / "results.json").read_text())["results"]
    assert res["headline_protocol"] == "cats-pfwillow"
    assert [p["kind"] for p in res["pairs"]] == ["listed"] * 3
    r = res["pck"]["cats-pfwillow"][BOX_COPY]
    assert r["protocol"]["resolution"] == "resized" and r["protocol"]["alphas"] == [0.05, 0.1, 0.15]
    assert r["counts"]["per_category"] == {"car(G)": {"pairs": 2, "pairs_with_points": 2, "points": 20, "types": 10},
                                           "duck(S)": {"pairs": 1, "pairs_with_points": 1, "points": 10, "types": 10}}
    # By hand: the fixture's target points are (x + 7, 68 - y) for source (x, y) with x = 5..95, y = 20..47
    # (step 3), so both boxes are keypoint extents 90 wide x 27 high and box-copy predicts (x + 7, y + 1): x exact,
    # y off by |2y - 67| = 27, 21, 15, 9, 3, 3, 9, 15, 21, 27 px. Original resolution, L = 90: alpha 0.05
    # (4.5 px) -> 2/10, 0.1 (9 px, inclusive) -> 4/10, 0.025 -> 0. Resized 160x120 -> 131x131: y errors x 131/120,
    # L = 90 x 131/160 = 73.7: alpha 0.05 (3.68) -> 2/10, 0.1 (7.37) -> 2/10, 0.15 (11.05) -> 4/10.
    assert r["overall"]["pair"] == pytest.approx({"0.05": 0.2, "0.1": 0.2, "0.15": 0.4})
    assert res["pck"]["hpf-pfwillow"][BOX_COPY]["overall"]["pair"] == pytest.approx({"0.1": 0.2})
    assert res["pck"]["paper"][BOX_COPY]["overall"]["type"] == pytest.approx({"0.1": 0.4, "0.05": 0.2, "0.025": 0.0})


def test_pairs_resume_and_process_pool_equal_serial(tmp_path, shared, monkeypatch):
    """A serial run with --resume keeps every pair's result; after deleting three of them, a re-run on a process
    pool (--workers 2) recomputes exactly those pairs in the workers and gives the serial results; a third run
    finds every pair saved and computes no feature."""
    over = dict(SMALL, n_gallery=0, n_boot=50, resume=True)
    run("pairs", tmp_path, "default", over)
    serial = _results(tmp_path)
    secs = json.loads((tmp_path / "results.json").read_text())["results"]["seconds"]
    assert set(secs) == set(serial["methods"]) and all(s > 0 for s in secs.values())  # summed from the tasks
    files = sorted((tmp_path / "tasks").glob("pairs-*/*.pkl"))
    assert len(files) == 4 and all(f.name.startswith(f"pair{k:06d}-") for k, f in enumerate(files))
    gone = [files[0], files[1], files[3]]
    kept = {files[2]: files[2].stat().st_mtime_ns}
    for f in gone:
        f.unlink()
    # other parallel options, the same configuration hash: the same folder
    run("pairs", tmp_path, "default", dict(over, workers=2))
    assert _results(tmp_path) == serial
    assert all(f.exists() for f in gone) and {f: f.stat().st_mtime_ns for f in kept} == kept
    # every pair saved: no feature is computed again
    import convcorr.features.base as dense

    class NoFeatures:
        def compute_many(self, images):
            raise AssertionError("features recomputed although every pair's result is saved")

    monkeypatch.setattr(dense, "get_features", lambda spec: NoFeatures())
    run("pairs", tmp_path, "default", over)
    assert _results(tmp_path) == serial


def test_pairs_on_ray_equal_serial(tmp_path, shared):
    """--executor ray (a local Ray cluster of 2 CPUs) gives the serial results."""
    pytest.importorskip("ray")
    assert_ray_equals_serial("pairs", tmp_path, dict(SMALL, matchers=["nn"], n_gallery=0, n_boot=50))


def test_pairs_curves_gallery_and_render(tmp_path, monkeypatch, shared):
    from convcorr.evaluation.pck import pck_vs_alpha
    from convcorr.experiments import pairs
    from tests_helpers_results import render_twice

    res = compute(resolve_conf("pairs", "default", dict(SMALL, n_gallery=1, n_boot=50)))
    curves = res.curves
    assert len(curves["alphas"]) == 40 and curves["alphas"][-1] == pytest.approx(0.2)
    head = res.pck[res.headline]
    for m in res.methods:
        assert set(curves["curves"][m]) == {"all pairs", "zebra"}
        # the curve at alpha 0.1 is the protocol's own PCK@0.1 (first average)
        assert curves["curves"][m]["all pairs"][19] == pytest.approx(head[m]["overall"]["type"][0.1])
        assert curves["curves"][m]["zebra"] == pck_vs_alpha(head[m]["per_pair"], curves["alphas"], "type").tolist()
    for m in res.methods:  # every point of these dense matchers and of box-copy gets a prediction
        assert res.predicted[res.headline][m] == 1.0
    g = res.gallery
    assert g["method"] == "alexnet:conv4 + nn" and g["alpha"] == 0.1  # the first matcher method
    scores = [p["pck"][0.1] for p in head[g["method"]]["per_pair"]]
    (tag0, best), *rest = g["picks"]
    assert tag0 == "best" and scores[best] == max(scores)
    assert all(t == "worst" and scores[k] == min(scores) for t, k in rest)
    out = render_twice(pairs, res, tmp_path, monkeypatch, ("run_conf_tasks", "evaluate", "pck_vs_alpha",
                                                           "confidence_intervals", "prepare"))
    assert out["pck_vs_alpha"]["alphas"] == curves["alphas"]
    assert (tmp_path / "a" / "gallery.png").stat().st_size > 1000
