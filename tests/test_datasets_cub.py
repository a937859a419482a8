"""CUB-200-2011 loader on a tiny fixture in the real layout (1-based ids, x y w h boxes, 15 parts)."""
import numpy as np
import pytest
from PIL import Image

from convcorr.core.errors import DataError
from convcorr.datasets import load_cub, load_dataset


@pytest.fixture
def root(tmp_path):
    (tmp_path / "parts").mkdir()
    (tmp_path / "images" / "001.Black_footed_Albatross").mkdir(parents=True)
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / "images" / "001.Black_footed_Albatross" / "x.jpg")
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / "images" / "001.Black_footed_Albatross" / "y.jpg")
    (tmp_path / "images.txt").write_text("1 001.Black_footed_Albatross/x.jpg\n2 001.Black_footed_Albatross/y.jpg\n")
    (tmp_path / "bounding_boxes.txt").write_text("1 2.0 3.0 20.0 10.0\n2 0.0 0.0 39.0 29.0\n")
    (tmp_path / "parts" / "parts.txt").write_text("1 back\n2 beak\n3 left eye\n")
    (tmp_path / "parts" / "part_locs.txt").write_text(
        "1 1 5.0 6.0 1\n1 2 0.0 0.0 0\n1 3 7.5 8.0 1\n2 1 1.0 1.0 1\n2 2 2.0 2.0 1\n2 3 0.0 0.0 0\n")
    return tmp_path


def test_load(root):
    a, b = load_cub(root, check_images=True)
    assert a.category == "bird" and a.meta["class"] == "001.Black_footed_Albatross"
    assert a.keypoint_names == ("back", "beak", "left eye")  # multi-word part names kept
    assert a.visible.tolist() == [True, False, True] and np.isnan(a.keypoints[1]).all()
    np.testing.assert_allclose(a.keypoints[[0, 2]], [[5, 6], [7.5, 8]])
    np.testing.assert_allclose(a.bbox, [2, 3, 22, 13])  # x y w h -> x0 y0 x1 y1
    assert b.visible.tolist() == [True, True, False] and a.image.shape == (30, 40, 3)
    assert len(load_cub(root, limit=1)) == 1 and len(load_dataset("cub", root=root)) == 2


def test_bad_input_names_the_file(root):
    (root / "images.txt").rename(root / "gone.txt")
    with pytest.raises(DataError, match="images.txt.*not found"):
        load_cub(root)
    (root / "gone.txt").rename(root / "images.txt")
    (root / "bounding_boxes.txt").write_text("1 2.0 3.0 0.0 10.0\n2 0 0 5 5\n")
    with pytest.raises(DataError, match="bounding_boxes.txt.*bounding box"):
        load_cub(root)
    (root / "bounding_boxes.txt").write_text("1 2.0 3.0 20.0 10.0\n")
    with pytest.raises(DataError, match="bounding_boxes.txt: no box for image 2"):
        load_cub(root)
    (root / "bounding_boxes.txt").write_text("1 2.0 3.0 20.0 10.0\n2 0 0 5 5\n")
    (root / "parts" / "part_locs.txt").write_text("1 1 5.0 oops 1\n")
    with pytest.raises(DataError, match="part_locs.txt:1: .*oops"):
        load_cub(root)
    (root / "parts" / "part_locs.txt").write_text("1 9 5.0 6.0 1\n")  # unknown part id
    with pytest.raises(DataError, match="part_locs.txt:1: part id 9 is not in parts.txt"):
        load_cub(root)
    (root / "parts" / "part_locs.txt").write_text("1 1 500.0 6.0 1\n")
    with pytest.raises(DataError, match="x.jpg.*outside"):
        load_cub(root, check_images=True)
