"""COCO loader options for the shared files that differ from the plain COCO layout (see shared/README.md)."""
import pytest

from convcorr.core.errors import DataError
from convcorr.datasets import load_coco_keypoints


@pytest.fixture
def mm(shared):
    return shared / "keypoints" / "mmpose-fixtures"


def test_humanart_prefix_and_21_names_for_17_points(mm):
    js = mm / "humanart" / "test_humanart.json"
    with pytest.raises(DataError, match="17 keypoints, category 21.*truncate_names"):
        load_coco_keypoints(js, mm / "humanart")
    insts = load_coco_keypoints(js, mm / "humanart", strip_prefix="HumanArt/images/", truncate_names=True)
    assert all(i.image_path.is_file() for i in insts)
    assert insts and all(len(i.keypoint_names) == 17 for i in insts)
    assert insts[0].keypoint_names[0] == "nose" and insts[0].keypoint_names[-1] == "right_ankle"
    assert all(not str(i.image_path.relative_to(mm / "humanart")).startswith("HumanArt") for i in insts)


def test_animalpose_relabel_and_unnamed_points(mm):
    ap = load_coco_keypoints(mm / "animalpose" / "test_animalpose.json")
    assert [i.category for i in ap] == ["cat", "cat"]  # the fixture labels its horse "cat"
    ap = load_coco_keypoints(mm / "animalpose" / "test_animalpose.json", relabel={"ho*": "horse"})
    assert sorted(i.category for i in ap) == ["cat", "horse"]
    aflw = load_coco_keypoints(mm / "aflw" / "test_aflw.json")
    assert aflw[0].keypoint_names[:2] == ("p1", "p2") and len(aflw[0].keypoint_names) == 19


def test_supercategory_and_path_containment(mm, tmp_path):
    ap10k = load_coco_keypoints(mm / "ap10k" / "test_ap10k.json")
    assert all("supercategory" in i.meta for i in ap10k)
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [{"id": 1, "file_name": "../../x.jpg"}], "categories": [{"id": 1, "name": "c", '
                   '"keypoints": ["a", "b"]}], "annotations": [{"id": 1, "image_id": 1, "category_id": 1, '
                   '"bbox": [0, 0, 5, 5], "keypoints": [1, 1, 2, 3, 3, 2]}]}')
    with pytest.raises(DataError, match="escapes the data root"):
        load_coco_keypoints(bad)
