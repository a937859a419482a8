"""PF-PASCAL pair lists on the real test/val CSVs and on tiny hand-written ones."""
import numpy as np
import pytest
from PIL import Image

from convcorr.core.errors import DataError
from convcorr.datasets import load_dataset, load_pf_pascal_pairs
from convcorr.datasets.pfpascal import VOC_CLASSES


@pytest.fixture
def d(shared):
    return shared / "keypoints" / "pf-pascal-pairs"


def test_test_pairs(d, tmp_path):
    pairs = load_pf_pascal_pairs(d / "test_pairs.csv", root=tmp_path)
    assert len(pairs) == 299
    p = pairs[0]
    assert p.source.category == p.target.category == "aeroplane"  # class 1
    assert p.source.keypoint_names == tuple(f"kp{i}" for i in range(11)) == p.target.keypoint_names
    np.testing.assert_allclose(p.source.keypoints[0], [253.631662222222, 58.1813333333333])
    np.testing.assert_allclose(p.target.keypoints[0], [272.801888, 65.2755428571429])
    # bbox = keypoint extent: x in [7.8727..., 288.39216], y in [58.1813..., 127.016]
    np.testing.assert_allclose(p.source.bbox, [7.8727288888889, 58.1813333333333, 288.39216, 127.016])
    assert len(p.common_keypoints()) == 11
    assert p.source.image_path == tmp_path / "PF-dataset-PASCAL/JPEGImages/2011_001407.jpg"
    assert {q.source.category for q in pairs} == set(VOC_CLASSES)
    assert all(len(q.source.keypoints) == len(q.target.keypoints) for q in pairs)
    assert len(load_dataset("pf-pascal", annotations=d / "test_pairs.csv")) == 299


def test_val_has_no_keypoints(d):
    with pytest.raises(DataError, match="val_pairs.csv.*no keypoint columns"):
        load_pf_pascal_pairs(d / "val_pairs.csv")
    pairs = load_pf_pascal_pairs(d / "val_pairs.csv", require_keypoints=False)
    assert len(pairs) == 308 and pairs[0].source.category == "cat"  # class 8
    assert len(pairs[0].source.keypoints) == 0 and len(pairs[0].common_keypoints()) == 0


def _csv(path, xa="1;20", ya="2;30", xb="3;25", yb="4;26", cls="12"):
    path.write_text(f"source_image,target_image,class,XA,YA,XB,YB\na.jpg,b.jpg,{cls},{xa},{ya},{xb},{yb}\n")
    return path


def test_bad_input_names_the_file(tmp_path):
    with pytest.raises(DataError, match="nope.csv"):
        load_pf_pascal_pairs(tmp_path / "nope.csv")
    (p,) = load_pf_pascal_pairs(_csv(tmp_path / "ok.csv"))
    assert p.source.category == "dog"
    np.testing.assert_allclose(p.target.bbox, [3, 4, 25, 26])
    with pytest.raises(DataError, match="bad.csv:2.*malformed"):
        load_pf_pascal_pairs(_csv(tmp_path / "bad.csv", xa="1;x"))
    with pytest.raises(DataError, match="cls.csv:2.*class"):
        load_pf_pascal_pairs(_csv(tmp_path / "cls.csv", cls="21"))
    with pytest.raises(DataError, match="len.csv:2"):
        load_pf_pascal_pairs(_csv(tmp_path / "len.csv", xb="3;4;5", yb="1;2;3"))


def test_check_images(tmp_path):
    f = _csv(tmp_path / "ok.csv")
    with pytest.raises(DataError, match="a.jpg.*not found"):
        load_pf_pascal_pairs(f, check_images=True)
    Image.fromarray(np.zeros((40, 30, 3), np.uint8)).save(tmp_path / "a.jpg")
    Image.fromarray(np.zeros((40, 30, 3), np.uint8)).save(tmp_path / "b.jpg")
    (p,) = load_pf_pascal_pairs(f, check_images=True)
    assert p.target.image.shape == (40, 30, 3)
    _csv(f, xb="3;250")  # x = 250 outside the 30 px wide b.jpg
    with pytest.raises(DataError, match="b.jpg.*outside"):
        load_pf_pascal_pairs(f, check_images=True)
