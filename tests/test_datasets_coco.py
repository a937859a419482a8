"""COCO-style keypoint JSON on the real mmpose fixtures (AP-10K, Animal-Pose, Horse-10, zebra, 300-W)."""
import json

import numpy as np
import pytest
from PIL import Image

from convcorr.core.errors import DataError
from convcorr.datasets import load_coco_keypoints, load_dataset


@pytest.fixture
def mm(shared):
    return shared / "keypoints" / "mmpose-fixtures"


def test_ap10k(mm):
    d = mm / "ap10k"
    insts = load_coco_keypoints(d / "test_ap10k.json", d)
    assert len(insts) == 2
    a = insts[0]
    assert a.category == "jaguar"  # category_id 26
    assert a.keypoint_names[:3] == ("left_eye", "right_eye", "nose") and len(a.keypoint_names) == 17
    np.testing.assert_allclose(a.bbox, [66, 192, 66 + 1092, 192 + 512])  # [x, y, w, h] -> (x0, y0, x1, y1)
    np.testing.assert_allclose(a.keypoints[0], [134, 415])
    assert not a.visible[1] and np.isnan(a.keypoints[1]).all() and a.visible.sum() == 16
    assert a.load().shape == (867, 1200, 3)


def test_300w_names_and_horse10_partial(mm):
    (f, _) = load_coco_keypoints(mm / "300w" / "test_300w.json")  # image_dir defaults to the json's folder
    assert f.category == "face" and f.keypoint_names == tuple(f"p{i}" for i in range(1, 69))
    np.testing.assert_allclose(f.keypoints[:2], [[268.0, 398.882], [285.21, 470.547]])
    assert f.image_path == mm / "300w" / "indoor_029.png"
    h = load_coco_keypoints(mm / "horse10" / "test_horse10.json", mm / "horse10")
    assert [i.visible.sum() for i in h] == [22, 19, 11]
    assert h[2].keypoint_names[0] == "Nose" and not h[2].visible[0]  # (0, 0, 0): not annotated
    np.testing.assert_allclose(h[2].bbox, [219, 46, 288, 143])
    assert len(load_coco_keypoints(mm / "horse10" / "test_horse10.json", min_keypoints=12)) == 2
    z = load_dataset("coco", annotations=mm / "zebra" / "test_zebra.json", check_images=True)
    np.testing.assert_allclose(z[0].keypoints[0], [121.13823384782104, 64.42827920259212])
    assert load_coco_keypoints(mm / "ap10k" / "test_ap10k.json", category="antelope")[0].category == "antelope"


def _write(tmp_path, bbox=(0, 0, 5, 5), kps=(1, 1, 2, 2, 2, 2), names=("a", "b")):
    ann = {"images": [{"id": 1, "file_name": "im.png"}],
           "categories": [{"id": 1, "name": "x", "keypoints": list(names)}],
           "annotations": [{"id": 7, "image_id": 1, "category_id": 1, "bbox": list(bbox), "keypoints": list(kps)}]}
    (tmp_path / "a.json").write_text(json.dumps(ann))
    return tmp_path / "a.json"


def test_bad_input_names_the_file(tmp_path):
    with pytest.raises(DataError, match="nope.json.*not found"):
        load_coco_keypoints(tmp_path / "nope.json")
    (tmp_path / "m.json").write_text("{not json")
    with pytest.raises(DataError, match="m.json.*malformed JSON"):
        load_coco_keypoints(tmp_path / "m.json")
    (tmp_path / "k.json").write_text('{"images": []}')
    with pytest.raises(DataError, match="k.json.*not a COCO keypoint file"):
        load_coco_keypoints(tmp_path / "k.json")
    with pytest.raises(DataError, match="a.json.*empty box"):
        load_coco_keypoints(_write(tmp_path, bbox=(0, 0, 0, 5)))
    with pytest.raises(DataError, match="a.json.*2 keypoints, category 3"):
        load_coco_keypoints(_write(tmp_path, names=("a", "b", "c")))
    with pytest.raises(DataError, match="a.json.*malformed annotation 7"):
        load_coco_keypoints(_write(tmp_path, kps=(1, 1, 2, 2, 2)))


def test_images_checked(tmp_path):
    f = _write(tmp_path)
    (tmp_path / "im.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match="im.png.*cannot decode"):
        load_coco_keypoints(f, check_images=True)
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / "im.png")  # (2, 2) lies 1 px outside
    assert len(load_coco_keypoints(f, check_images=True)) == 1  # within the 1 px tolerance
    _write(tmp_path, kps=(1, 1, 2, 4, 4, 2))
    with pytest.raises(DataError, match="im.png.*'b'.*outside the 2x2 image"):
        load_coco_keypoints(f, check_images=True)
