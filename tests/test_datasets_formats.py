"""Loaders on the real fixtures in ../shared and on tiny hand-written files (bad input included)."""
import json

import numpy as np
import pytest
from PIL import Image

from convcorr.datasets import (load_berkeley_xml, load_coco_keypoints, load_cub, load_dataset, load_ibug,
                               load_pf_pascal_pairs, load_spair)
from convcorr.types import DataError


def test_berkeley_cat_fixture(shared):
    insts = load_berkeley_xml(shared / "keypoints" / "berkeley-pascal2011-xml")
    cat = next(i for i in insts if i.category == "cat")
    # visible_bounds xmin=124 ymin=68 width=195 height=242, 1-based -> 0-based
    np.testing.assert_allclose(cat.bbox, [123, 67, 318, 309])
    i = cat.keypoint_names.index("L_Eye")
    np.testing.assert_allclose(cat.keypoints[i], [272.66, 157.26])
    assert cat.visible.sum() == 10 and cat.bbox_size == 242
    assert {i.category for i in insts} == {"aeroplane", "cat", "person"}


def test_berkeley_missing_image_named(shared, tmp_path):
    insts = load_berkeley_xml(shared / "keypoints" / "berkeley-pascal2011-xml", image_root=tmp_path)
    with pytest.raises(DataError, match="2007_000528.jpg"):
        insts[1].load()
    bad = tmp_path / "bad.xml"
    bad.write_text("<annotation><image>x</image>")
    with pytest.raises(DataError, match="bad.xml"):
        load_berkeley_xml(bad)


def test_pf_pascal_pairs(shared):
    d = shared / "keypoints" / "pf-pascal-pairs"
    pairs = load_pf_pascal_pairs(d / "test_pairs.csv")
    assert len(pairs) == 299
    p = pairs[0]
    assert p.source.category == "aeroplane" and len(p.source.keypoints) == len(p.target.keypoints) == 11
    np.testing.assert_allclose(p.source.keypoints[0], [253.631662222222, 58.1813333333333])
    np.testing.assert_allclose(p.target.keypoints[0], [272.801888, 65.2755428571429])
    assert len(p.common_keypoints()) == 11
    with pytest.raises(DataError, match="val_pairs.csv"):
        load_pf_pascal_pairs(d / "val_pairs.csv")
    assert len(load_pf_pascal_pairs(d / "val_pairs.csv", require_keypoints=False)) > 0


def test_coco_ap10k(shared):
    d = shared / "keypoints" / "mmpose-fixtures" / "ap10k"
    insts = load_coco_keypoints(d / "test_ap10k.json", d)
    assert len(insts) == 2
    a = insts[0]
    assert a.keypoint_names[0] == "left_eye" and len(a.keypoint_names) == 17
    np.testing.assert_allclose(a.bbox, [66, 192, 66 + 1092, 192 + 512])
    np.testing.assert_allclose(a.keypoints[0], [134, 415])
    assert not a.visible[1] and np.isnan(a.keypoints[1]).all()
    assert a.load().shape == (867, 1200, 3)


def test_ibug_pts_and_ljson(shared):
    d = shared / "keypoints" / "faces-ibug68"
    e = load_ibug(d / "einstein.pts")
    assert len(e.keypoints) == 68 and e.image_path.name == "einstein.jpg"
    np.testing.assert_allclose(e.keypoints[0], [356.417253, 307.455774])  # 1-based -> 0-based
    l = load_ibug(d / "lenna.ljson")
    np.testing.assert_allclose(l.keypoints[0], [200.534483, 268.62069])  # stored (y, x)
    assert l.load().shape == (512, 512, 3)


def _img(path, w=40, h=30):
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(path)


def test_spair_fixture(tmp_path):
    (tmp_path / "PairAnnotation" / "test").mkdir(parents=True)
    (tmp_path / "JPEGImages" / "cat").mkdir(parents=True)
    _img(tmp_path / "JPEGImages" / "cat" / "a.jpg")
    _img(tmp_path / "JPEGImages" / "cat" / "b.jpg")
    ann = {"src_imname": "a.jpg", "trg_imname": "b.jpg", "category": "cat", "kps_ids": [3, 7],
           "src_kps": [[1, 2], [10, 12]], "trg_kps": [[5, 6], [20, 22]], "src_bndbox": [0, 0, 30, 25],
           "trg_bndbox": [2, 2, 35, 28]}
    (tmp_path / "PairAnnotation" / "test" / "0001.json").write_text(json.dumps(ann))
    pairs = load_spair(tmp_path, "test", check_images=True)
    assert pairs[0].target.keypoint_names == ("kp3", "kp7")
    np.testing.assert_allclose(pairs[0].target.keypoints, [[5, 6], [20, 22]])
    ann["trg_kps"] = [[5, 6], [200, 22]]  # outside the 40x30 image
    (tmp_path / "PairAnnotation" / "test" / "0001.json").write_text(json.dumps(ann))
    with pytest.raises(DataError, match="b.jpg"):
        load_spair(tmp_path, "test", check_images=True)


def test_cub_fixture(tmp_path):
    (tmp_path / "parts").mkdir()
    (tmp_path / "images" / "001.Bird").mkdir(parents=True)
    _img(tmp_path / "images" / "001.Bird" / "x.jpg")
    (tmp_path / "images.txt").write_text("1 001.Bird/x.jpg\n")
    (tmp_path / "bounding_boxes.txt").write_text("1 2.0 3.0 20.0 10.0\n")
    (tmp_path / "parts" / "parts.txt").write_text("1 back\n2 beak\n")
    (tmp_path / "parts" / "part_locs.txt").write_text("1 1 5.0 6.0 1\n1 2 0.0 0.0 0\n")
    (b,) = load_cub(tmp_path, check_images=True)
    assert b.keypoint_names == ("back", "beak") and b.visible.tolist() == [True, False]
    np.testing.assert_allclose(b.bbox, [2, 3, 22, 13])


def test_corrupt_image_and_empty_box(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    ann = {"images": [{"id": 1, "file_name": "broken.jpg"}], "categories": [{"id": 1, "name": "x", "keypoints": ["a", "b"]}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "keypoints": [1, 1, 2, 2, 2, 2]}]}
    (tmp_path / "a.json").write_text(json.dumps(ann))
    with pytest.raises(DataError, match="broken.jpg"):
        load_coco_keypoints(tmp_path / "a.json", check_images=True)
    ann["annotations"][0]["bbox"] = [0, 0, 0, 5]
    (tmp_path / "a.json").write_text(json.dumps(ann))
    with pytest.raises(DataError, match="empty box"):
        load_coco_keypoints(tmp_path / "a.json")
    (tmp_path / "m.json").write_text("{not json")
    with pytest.raises(DataError, match="m.json"):
        load_coco_keypoints(tmp_path / "m.json")
    with pytest.raises(DataError, match="nope.json"):
        load_coco_keypoints(tmp_path / "nope.json")
    with pytest.raises(KeyError):
        load_dataset("imagenet")
