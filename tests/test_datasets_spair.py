"""SPair-71k loader on a tiny fixture in the real layout (PairAnnotation/<split>/*.json, JPEGImages/<cat>/)."""
import json

import numpy as np
import pytest
from PIL import Image

from convcorr.core.errors import DataError
from convcorr.datasets import load_dataset, load_spair


def _pair(**over):
    ann = {"pair_id": 1, "src_imname": "a.jpg", "trg_imname": "b.jpg", "src_imsize": [40, 30, 3],
           "trg_imsize": [40, 30, 3], "category": "cat", "kps_ids": [3, 7], "src_kps": [[1, 2], [10, 12]],
           "trg_kps": [[5, 6], [20, 22]], "src_bndbox": [0, 0, 30, 25], "trg_bndbox": [2, 2, 35, 28],
           "viewpoint_variation": 0}
    ann.update(over)
    return ann


@pytest.fixture
def root(tmp_path):
    (tmp_path / "PairAnnotation" / "test").mkdir(parents=True)
    (tmp_path / "JPEGImages" / "cat").mkdir(parents=True)
    for n in ("a.jpg", "b.jpg"):
        Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / "JPEGImages" / "cat" / n)
    (tmp_path / "PairAnnotation" / "test" / "000001-a-b:cat.json").write_text(json.dumps(_pair()))
    (tmp_path / "PairAnnotation" / "test" / "000002-b-a:dog.json").write_text(
        json.dumps(_pair(category="dog", kps_ids=[0])) .replace('[[1, 2], [10, 12]]', '[[1, 2]]')
        .replace('[[5, 6], [20, 22]]', '[[5, 6]]'))
    return tmp_path


def test_pairs(root):
    pairs = load_spair(root, "test", category="cat", check_images=False)
    (p,) = pairs
    assert p.source.category == "cat" and p.target.keypoint_names == ("kp3", "kp7")
    np.testing.assert_allclose(p.source.keypoints, [[1, 2], [10, 12]])
    np.testing.assert_allclose(p.target.keypoints, [[5, 6], [20, 22]])
    np.testing.assert_allclose(p.target.bbox, [2, 2, 35, 28])
    assert p.target.bbox_size == 33 and p.target.meta["imsize"] == [40, 30, 3]
    assert p.source.image_path == root / "JPEGImages" / "cat" / "a.jpg"
    assert len(p.common_keypoints()) == 2
    assert len(load_spair(root, "test")) == 2 and len(load_dataset("spair", root=root, split="test")) == 2


def test_bad_input_names_the_file(root):
    with pytest.raises(DataError, match="PairAnnotation/trn"):
        load_spair(root, "trn")
    with pytest.raises(DataError, match="no pairs found for category 'bus'"):
        load_spair(root, "test", category="bus")
    f = root / "PairAnnotation" / "test" / "000001-a-b:cat.json"
    f.write_text(json.dumps(_pair(trg_kps=[[5, 6], [200, 22]])))  # outside the 40x30 image
    load_spair(root, "test", category="cat")  # fine without image checks
    with pytest.raises(DataError, match="b.jpg.*outside"):
        load_spair(root, "test", category="cat", check_images=True)
    f.write_text(json.dumps(_pair(trg_kps=[[5, 6]])))
    with pytest.raises(DataError, match="000001-a-b:cat.json.*1 trg keypoints for 2 ids"):
        load_spair(root, "test")
    f.write_text(json.dumps(_pair(src_bndbox=[5, 5, 5, 20])))
    with pytest.raises(DataError, match="000001-a-b:cat.json.*bounding box"):
        load_spair(root, "test")
    f.write_text("{oops")
    with pytest.raises(DataError, match="000001-a-b:cat.json.*malformed JSON"):
        load_spair(root, "test")
    f.write_text(json.dumps({"category": "cat"}))
    with pytest.raises(DataError, match="000001-a-b:cat.json.*malformed SPair"):
        load_spair(root, "test")
    f.write_text(json.dumps(_pair()))
    (root / "JPEGImages" / "cat" / "a.jpg").write_bytes(b"junk")
    with pytest.raises(DataError, match="a.jpg.*cannot decode"):
        load_spair(root, "test", category="cat", check_images=True)
