"""Loader helpers: image-path containment, schema checks; the clear errors each loader gives (issue #10)."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from convcorr.core.errors import DataError
from convcorr.datasets import load_coco_keypoints, load_cub, load_ibug_folder, load_pf_pascal_pairs, load_spair
from convcorr.datasets._util import make_instance, resolve_image_path


def test_resolve_image_path(tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (root / "in").symlink_to(tmp_path / "outside")
    (root / "ok").symlink_to(root / "sub")  # a link that stays inside is fine
    assert resolve_image_path(root, "sub/a.jpg", "ann.json") == root / "sub" / "a.jpg"
    assert resolve_image_path(root, "sub/../a.jpg", "ann.json") == root / "sub" / ".." / "a.jpg"
    assert resolve_image_path(root, "ok/a.jpg", "ann.json") == root / "ok" / "a.jpg"
    for name, msg in (("../x.jpg", "escapes"), ("sub/../../x.jpg", "escapes"), ("in/x.jpg", "escapes"),
                      (str(tmp_path / "x.jpg"), "absolute"), ("C:\\x.jpg", "absolute"), ("\\\\srv\\x", "absolute"),
                      ("", "not a non-empty string"), (None, "not a non-empty string"), (3, "not a non-empty string"),
                      ("a\x00b", "NUL")):
        with pytest.raises(DataError, match=f"ann.json: .*{msg}"):
            resolve_image_path(root, name, "ann.json")
    # explicit opt-out
    assert resolve_image_path(root, "../x.jpg", "ann.json", allow_outside=True) == root / "../x.jpg"


def test_make_instance_checks():
    kw = dict(id="i", category="c", bbox=(0, 0, 10, 10), keypoint_names=("a", "b"), visible=[True, False])
    with pytest.raises(DataError, match="f.json: keypoint 'a' has non-finite"):
        make_instance("f.json", keypoints=[[np.nan, 1], [0, 0]], **kw)
    with pytest.raises(DataError, match="f.json: keypoint 'a' has non-finite"):
        make_instance("f.json", keypoints=[[np.inf, 1], [0, 0]], **kw)
    inst = make_instance("f.json", keypoints=[[1, 1], [np.inf, 2]], **kw)  # invisible inf -> NaN
    assert np.isnan(inst.keypoints[1]).all()
    with pytest.raises(DataError, match="f.json: duplicate keypoint name 'a'"):
        make_instance("f.json", keypoints=[[1, 1], [2, 2]], **dict(kw, keypoint_names=("a", "a")))


def _coco(tmp_path, **over):
    d = {"images": [{"id": 1, "file_name": "a.jpg"}],
         "categories": [{"id": 1, "name": "cat", "keypoints": ["a", "b"]}],
         "annotations": [{"id": 7, "image_id": 1, "category_id": 1, "keypoints": [1, 2, 2, 5, 6, 2],
                          "bbox": [0, 0, 10, 10]}]}
    for k, v in over.items():
        (d["annotations"][0] if k in ("keypoints", "bbox", "category_id", "image_id") else d)[k] = v
    p = tmp_path / "a.json"
    p.write_text(json.dumps(d))
    return p


def test_coco_errors(tmp_path):
    with pytest.raises(DataError, match="a.json: annotation 7 has an unknown category_id 5"):
        load_coco_keypoints(_coco(tmp_path, category_id=5))
    with pytest.raises(DataError, match="a.json: annotation 7 has an unknown image_id 9"):
        load_coco_keypoints(_coco(tmp_path, image_id=9))
    with pytest.raises(DataError, match="a.json: annotation 7: keypoint 'a' has non-finite"):
        load_coco_keypoints(_coco(tmp_path, keypoints=[float("nan"), 2, 2, 5, 6, 2]))
    with pytest.raises(DataError, match="a.json: annotation 7: bbox is not finite"):
        load_coco_keypoints(_coco(tmp_path, bbox=[0, 0, float("inf"), 10]))
    with pytest.raises(DataError, match="duplicate keypoint name 'a'"):
        load_coco_keypoints(_coco(tmp_path, categories=[{"id": 1, "name": "cat", "keypoints": ["a", "a"]}]))
    with pytest.raises(DataError, match="a.json: no annotation"):
        load_coco_keypoints(_coco(tmp_path, annotations=[]))
    with pytest.raises(DataError, match="a.json: annotation 7: image path '../a.jpg' escapes"):
        load_coco_keypoints(_coco(tmp_path, images=[{"id": 1, "file_name": "../a.jpg"}]))
    (inst,) = load_coco_keypoints(_coco(tmp_path, images=[{"id": 1, "file_name": "../a.jpg"}]),
                                  allow_outside_root=True)
    assert inst.image_path == tmp_path / "../a.jpg"


def test_pfpascal_errors(tmp_path):
    head = "source_image,target_image,class,XA,YA,XB,YB\n"
    p = tmp_path / "p.csv"
    for cls in ("0", "21", "-1"):
        p.write_text(head + f"a.jpg,b.jpg,{cls},1;2,3;4,1;2,3;4\n")
        with pytest.raises(DataError, match=f"p.csv:2: class index {cls} outside 1..20"):
            load_pf_pascal_pairs(p)
    p.write_text(head + "a.jpg,b.jpg,1,1;nan,3;4,1;2,3;4\n")
    with pytest.raises(DataError, match="p.csv:2: non-finite coordinate"):
        load_pf_pascal_pairs(p)
    p.write_text(head)
    with pytest.raises(DataError, match="p.csv: no pairs found"):
        load_pf_pascal_pairs(p)
    p.write_text(head + "/etc/passwd,b.jpg,1,1;2,3;4,1;2,3;4\n")
    with pytest.raises(DataError, match="p.csv:2: image path '/etc/passwd' is absolute"):
        load_pf_pascal_pairs(p)


def test_spair_category_cannot_escape(tmp_path):
    folder = tmp_path / "PairAnnotation" / "test"
    folder.mkdir(parents=True)
    d = {"src_imname": "a.jpg", "trg_imname": "b.jpg", "category": "../../..", "kps_ids": [1, 2],
         "src_kps": [[1, 2], [3, 4]], "trg_kps": [[1, 2], [3, 4]], "src_bndbox": [0, 0, 5, 5],
         "trg_bndbox": [0, 0, 5, 5]}
    (folder / "x.json").write_text(json.dumps(d))
    with pytest.raises(DataError, match="x.json: image path .* escapes"):
        load_spair(tmp_path)
    d.update(category="cat", kps_ids=[1, 1])
    (folder / "x.json").write_text(json.dumps(d))
    with pytest.raises(DataError, match="x.json: duplicate keypoint name 'kp1'"):
        load_spair(tmp_path)
    with pytest.raises(DataError, match="split must be"):
        load_spair(tmp_path, split="../../etc")


def test_cub_and_ibug_empty_and_escapes(tmp_path):
    (tmp_path / "parts").mkdir()
    (tmp_path / "images.txt").write_text("\n")
    for f in ("bounding_boxes.txt", "parts/parts.txt", "parts/part_locs.txt"):
        (tmp_path / f).write_text("")
    with pytest.raises(DataError, match="images.txt: no images found"):
        load_cub(tmp_path)
    (tmp_path / "images.txt").write_text("1 ../../x.jpg\n")
    (tmp_path / "bounding_boxes.txt").write_text("1 0 0 5 5\n")
    (tmp_path / "parts" / "parts.txt").write_text("1 back\n")
    with pytest.raises(DataError, match="images.txt: image path '../../x.jpg' escapes"):
        load_cub(tmp_path)
    (tmp_path / "faces").mkdir()
    with pytest.raises(DataError, match="faces: no .pts / .ljson landmark files"):
        load_ibug_folder(tmp_path / "faces")
    with pytest.raises(DataError, match="nope: landmark folder not found"):
        load_ibug_folder(tmp_path / "nope")


def test_oversized_image_is_a_clear_error_in_loaders(tmp_path, monkeypatch):
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / "a.jpg")
    monkeypatch.setenv("CONVCORR_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(DataError, match="a.jpg: image of 50x40 = 2000 pixels exceeds the limit of 1000"):
        load_coco_keypoints(_coco(tmp_path), check_images=True)
    monkeypatch.delenv("CONVCORR_MAX_IMAGE_PIXELS")
    assert len(load_coco_keypoints(_coco(tmp_path), check_images=True)) == 1
    assert os.path.exists(tmp_path / "a.jpg")


def test_hostile_annotation_files(tmp_path):
    from convcorr.datasets import load_berkeley_xml

    ent = "".join(f'<!ENTITY l{i} "{"&l%d;" % (i - 1) * 10}">' for i in range(1, 10))
    (tmp_path / "bomb.xml").write_text(f'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY l0 "lol">{ent}]>'
                                       "<annotation><image>&l9;</image></annotation>")
    with pytest.raises(DataError, match="bomb.xml: malformed Berkeley keypoint XML"):
        load_berkeley_xml(tmp_path / "bomb.xml")  # billion laughs: refused by expat, quickly
    (tmp_path / "deep.json").write_text("[" * 200000 + "]" * 200000)
    with pytest.raises(DataError, match="deep.json: malformed JSON"):
        load_coco_keypoints(tmp_path / "deep.json")
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataError, match="bin.json: annotation file is not UTF-8"):
        load_coco_keypoints(tmp_path / "bin.json")
