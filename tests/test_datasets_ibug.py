"""iBUG 68-point .pts and menpo .ljson landmarks on the real faces-ibug68 fixtures."""
import numpy as np
import pytest

from convcorr.core.errors import DataError
from convcorr.datasets import load_dataset, load_ibug, load_ibug_folder
from convcorr.datasets.ibug import read_ljson, read_pts


@pytest.fixture
def d(shared):
    return shared / "keypoints" / "faces-ibug68"


def test_pts_is_one_based(d):
    e = load_ibug(d / "einstein.pts")
    assert e.category == "face" and e.keypoint_names == tuple(f"p{i}" for i in range(1, 69))
    assert e.image_path == d / "einstein.jpg" and e.visible.all()
    np.testing.assert_allclose(e.keypoints[0], [356.417253, 307.455774])  # file: 357.417253 308.455774
    np.testing.assert_allclose(e.bbox, [*e.keypoints.min(0), *e.keypoints.max(0)])  # landmark extent
    t = load_ibug(d / "takeo.pts", check_images=True)  # .ppm image found beside it
    assert t.image_path.suffix == ".ppm"
    np.testing.assert_allclose(t.keypoints[0], [31.310345, 98.612347])
    assert len(load_ibug(d / "tongue.pts").keypoints) == 19


def test_ljson_is_y_x(d):
    l = load_ibug(d / "lenna.ljson", check_images=True)
    # stored [268.62069, 200.534483] = (y, x); the jaw starts on the left and runs down
    np.testing.assert_allclose(l.keypoints[0], [200.534483, 268.62069])
    assert l.keypoints[1, 1] > l.keypoints[0, 1] and abs(l.keypoints[1, 0] - l.keypoints[0, 0]) < 5
    assert l.image.shape == (512, 512, 3)
    # the eyes (p37..p48) lie above the mouth (p49..p68) in an upright face
    assert l.keypoints[36:48, 1].mean() < l.keypoints[48:, 1].mean()


def test_folder_and_registry(d):
    faces = load_ibug_folder(d)
    assert [f.id for f in faces] == ["face/breakingbad", "face/einstein", "face/lenna", "face/takeo"]
    assert len(load_ibug_folder(d, n_points=None)) == 5
    assert len(load_dataset("ibug", root=d)) == 4


def test_bad_input_names_the_file(d, tmp_path):
    with pytest.raises(DataError, match="x.pts.*not found"):
        read_pts(tmp_path / "x.pts")
    (tmp_path / "a.pts").write_text("version: 1\nn_points: 3\n{\n1 2\n3 4\n}\n")
    with pytest.raises(DataError, match="a.pts.*n_points says 3"):
        load_ibug(tmp_path / "a.pts")
    (tmp_path / "b.pts").write_text("version: 1\n1 2\n")
    with pytest.raises(DataError, match="b.pts.*malformed"):
        load_ibug(tmp_path / "b.pts")
    (tmp_path / "c.pts").write_text("version: 1\nn_points: 2\n{\n1 2\n1 x\n}\n")
    with pytest.raises(DataError, match="c.pts.*malformed"):
        load_ibug(tmp_path / "c.pts")
    (tmp_path / "e.pts").write_text("version: 1\nn_points: 2\n{\n5 5\n5 5\n}\n")
    with pytest.raises(DataError, match="e.pts.*empty or invalid bounding box"):
        load_ibug(tmp_path / "e.pts")
    (tmp_path / "m.ljson").write_text('{"groups": {}}')
    with pytest.raises(DataError, match="m.ljson.*malformed"):
        read_ljson(tmp_path / "m.ljson")
    (tmp_path / "ok.pts").write_text("version: 1\nn_points: 2\n{\n1 1\n900 900\n}\n")
    with pytest.raises(DataError, match="einstein.jpg.*outside"):
        load_ibug(tmp_path / "ok.pts", image_path=d / "einstein.jpg", check_images=True)
    with pytest.raises(DataError, match="nothere.jpg"):
        load_ibug(tmp_path / "ok.pts", image_path=tmp_path / "nothere.jpg", check_images=True)
