import json

import numpy as np
import pytest
from tests_helpers_results import strip_timings as _strip

from convcorr import experiments
from convcorr.experiments import visualize as vis


def test_configs():
    for name in ("default", "paper"):
        c = vis.CONFIGS[name]
        assert c["k"] == 5 and set(c["recon_layers"]) <= set(c["layers"])
    assert vis.CONFIGS["paper"]["db_size"] >= 1_000_000
    assert vis.slug("face/lenna") == "face_lenna"


def test_square_crop_maps_points():
    img = np.zeros((40, 60, 3), np.uint8)
    img[10, 30] = 255
    crop, f = vis.square_crop(img, (30, 10), 20, 20)
    assert crop.shape == (20, 20, 3)
    x, y = f(np.array([[30.0, 10.0]]))[0]
    assert crop[int(round(y)), int(round(x))].max() == 255


def _png_ok(path, min_std=5.0):
    from PIL import Image

    assert path.is_file() and path.stat().st_size > 5000, path
    a = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
    assert a.shape[0] > 100 and a.shape[1] > 200 and a.std() > min_std, path


def test_tiny_run(tmp_path, shared):
    over = dict(db_size=1500, n_synthetic=0, layers=["conv1", "conv5", "pool5"], recon_layers=["conv1", "conv5"],
                queries=["face/lenna"], seeds=[["face/lenna", "p31"]], k_rf=5, batch_size=8)
    path = experiments.run("visualize", tmp_path, "default", over)
    assert path == tmp_path / "report.md"
    for name in ("reconstruction_face_lenna.png", "uniform_rf_face_lenna.png", "average_rf.png"):
        _png_ok(tmp_path / name)
    res = json.loads((tmp_path / "results.json").read_text())["results"]
    assert "face/lenna" not in res["db_photos"] and "face/lenna" in res["held_out"]
    assert res["database"]["conv1"]["vectors"] == 1500 and res["database"]["conv5"]["vectors"] == 1500
    err = res["pixel_error"]["face/lenna"]
    assert 0 < err["conv1"]["pixel_error"] < 80  # a real reconstruction, not a blank image
    md = path.read_text()
    assert "reconstruction_face_lenna.png" in md and "ms per query vector" in md
    with pytest.raises(KeyError, match="not source photos"):
        experiments.run("visualize", tmp_path / "bad", "default", dict(over, queries=["nope"]))


def _results(folder):
    return _strip(json.loads((folder / "results.json").read_text()))["results"]


def test_process_pool_equals_serial_and_resumes(tmp_path, shared):
    from PIL import Image

    over = dict(db_size=400, n_synthetic=0, layers=["conv1", "conv3", "pool5"], recon_layers=["conv1", "conv3"],
                reference_layer="conv3", queries=["face/lenna"], seeds=[["face/lenna", "p31"]], k_rf=5, batch_size=8)
    experiments.run("visualize", tmp_path / "serial", "default", over)
    assert not list((tmp_path / "serial").glob(".database-*"))  # the temporary vector folder is removed
    pool = tmp_path / "pool"
    experiments.run("visualize", pool, "default", dict(over, workers=2, resume=True))
    a, b = _results(tmp_path / "serial"), _results(pool)
    assert a["database"]["conv3"]["vectors"] == 400 and a == b
    for name in ("reconstruction_face_lenna.png", "average_rf.png"):  # same pixels from every worker
        pa, pb = (np.asarray(Image.open(d / name)) for d in (tmp_path / "serial", pool))
        np.testing.assert_array_equal(pa, pb)
    # resume: the spilled vectors are kept, one unit per layer is saved; delete one, run again
    (spill,) = (pool / "tasks").glob("database-*")
    assert (spill / "meta.json").is_file()
    saved = {p.stem: p for p in (pool / "tasks").glob("layers-*/*.pkl")}
    assert set(saved) == {"conv1", "conv3", "pool5"}
    saved["conv3"].unlink()
    kept = {l: saved[l].stat().st_mtime_ns for l in ("conv1", "pool5")}
    experiments.run("visualize", pool, "default", dict(over, resume=True))
    assert _results(pool) == a
    assert saved["conv3"].is_file() and all(saved[l].stat().st_mtime_ns == t for l, t in kept.items())
    assert "reused with `resume`" in (pool / "report.md").read_text()  # no forward passes the second time


def test_compute_and_render(tmp_path, monkeypatch, shared):
    from tests_helpers_results import render_twice

    over = dict(db_size=600, n_synthetic=0, layers=["conv1", "conv5"], recon_layers=["conv1"], queries=["face/lenna"],
                seeds=[["face/lenna", "p31"]], k_rf=3, batch_size=8)
    res = vis.compute(experiments.resolve_conf("visualize", "default", over))
    assert isinstance(res, vis.VisualizeResults)
    assert res.layers == ["conv1", "conv5"] and res.recon_layers == ["conv1"]
    assert "face/lenna" in res.held_out and "face/lenna" not in res.db_photos
    crop = res.query_crops["face/lenna"]
    rec = res.reconstructions["face/lenna"]["conv1"]
    assert crop.shape == rec.shape == res.uniform_rf["face/lenna"]["conv1"].shape == (227, 227, 3)
    # the pixel error is the mean |difference| over the pixels the reconstruction covers
    covered = rec.any(-1)
    want = np.abs(rec.astype(np.float32) - crop.astype(np.float32))[covered].mean()
    assert res.pixel_error["face/lenna"]["conv1"]["pixel_error"] == pytest.approx(want)
    (q, name, xy, rfs), = res.seeds
    assert (q, name) == ("face/lenna", "p31") and xy.shape == (2,)
    assert rfs["conv1"].shape[:2] == (11, 11) and set(rfs) == {"conv1", "conv5"}  # conv1's rf is 11 px
    assert res.database["conv1"]["vectors"] == 600 and res.database["conv1"]["stride"] == 4
    out = render_twice(vis, res, tmp_path, monkeypatch, ("run_conf_tasks", "view_generator", "sources"))
    assert out["pixel_error"] == res.pixel_error and out["n_views"] == res.n_views
    _png_ok(tmp_path / "a" / "reconstruction_face_lenna.png")
