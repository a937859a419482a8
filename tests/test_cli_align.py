import json

import numpy as np
import pytest
from click.testing import CliRunner

from convcorr.cli import cli


@pytest.mark.slow
def test_align_end_to_end_on_two_faces(tmp_path, shared):
    a = shared / "keypoints" / "faces-ibug68" / "einstein.jpg"       # 817 x 1024 (portrait)
    b = shared / "keypoints" / "faces-ibug68" / "breakingbad.jpg"    # 1920 x 1080 (landscape)
    r = CliRunner().invoke(cli, ["align", str(a), str(b), "--features", "alexnet:conv4", "--matcher", "flow",
                                 "--out", str(tmp_path), "--grid", "5", "--max-side", "192", "--set", "n_iter=4"])
    assert r.exit_code == 0, r.output
    for f in ("warped.png", "pairs.png", "flow.png", "correspondences.json"):
        assert (tmp_path / f).stat().st_size > 1000, f
    from PIL import Image

    assert Image.open(tmp_path / "warped.png").size == (817, 1024)   # B warped onto A's frame
    doc = json.loads((tmp_path / "correspondences.json").read_text())
    assert doc["features"] == "alexnet:conv4" and doc["matcher"] == "flow" and doc["options"]["n_iter"] == 4
    pa, pb = np.array(doc["points_a"], float), np.array(doc["points_b"], float)
    assert pa.shape == pb.shape == (25, 2) and np.isfinite(pb).all()
    assert ((pa >= -0.5) & (pa <= [816.5, 1023.5])).all()
    assert ((pb >= -0.5) & (pb <= [1919.5, 1079.5])).all()


def test_align_given_points_and_other_matcher(tmp_path, shared):
    a, b = shared / "images" / "cat.bmp", shared / "images" / "owl.jpg"
    pts = tmp_path / "pts.json"
    pts.write_text(json.dumps({"points": [[100, 120], [250.5, 80]]}))
    r = CliRunner().invoke(cli, ["align", str(a), str(b), "--features", "sift", "--matcher", "softargmax",
                                 "--set", "window=3", "--out", str(tmp_path / "o"), "--points", str(pts),
                                 "--max-side", "128"])
    assert r.exit_code == 0, r.output
    doc = json.loads((tmp_path / "o" / "correspondences.json").read_text())
    assert doc["points_a"] == [[100, 120], [250.5, 80]] and len(doc["points_b"]) == 2
    assert doc["options"] == {"window": 3, "temperature": 0.05}


@pytest.mark.parametrize("args, msg", [
    (["--features", "alexnet:conv9"], "conv9"),
    (["--matcher", "nope"], "unknown matcher"),
    (["--set", "beta"], "KEY=VALUE"),
    (["--set", "bogus=1"], "bogus"),
])
def test_align_bad_options_are_one_line_errors(tmp_path, shared, args, msg):
    a = shared / "images" / "cat.bmp"
    r = CliRunner().invoke(cli, ["align", str(a), str(a), "--out", str(tmp_path)] + args)
    assert r.exit_code == 2 and msg in r.output and "Traceback" not in r.output


def test_align_bad_points_and_missing_image(tmp_path, shared):
    a = shared / "images" / "cat.bmp"
    pts = tmp_path / "p.json"
    pts.write_text("[[10, 10], [5000, 3]]")
    r = CliRunner().invoke(cli, ["align", str(a), str(a), "--out", str(tmp_path), "--points", str(pts)])
    assert r.exit_code == 2 and "outside image A" in r.output
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "convcorr.cli", "align", str(tmp_path / "missing.jpg"), str(a),
                        "--out", str(tmp_path)], capture_output=True, text=True)
    assert p.returncode == 2 and "missing.jpg" in p.stderr and "Traceback" not in p.stderr
