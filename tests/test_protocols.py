"""Data protocols: pools and pairs from named data sets with one set of options."""
import json

import numpy as np
import pytest
from PIL import Image

from convcorr.core.errors import ConfigError, DataError
from convcorr.datasets import pools


def _coco(tmp_path, shared, n_people=None):
    """A tiny COCO keypoint file: 3 people (2 photos) and 1 horse with the shared photos as images."""
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    src = shared / "images"
    files = sorted(p for p in src.iterdir() if p.suffix.lower() in (".jpg", ".bmp", ".png"))[:3]
    images, anns = [], []
    for k, f in enumerate(files):
        im = Image.open(f).convert("RGB").resize((160, 120))
        im.save(imgs / f"im{k}.jpg")
        images.append({"id": k + 1, "file_name": f"im{k}.jpg", "width": 160, "height": 120})
    kp = lambda *xy: [v for x, y in xy for v in (x, y, 2)]
    anns.append({"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 100, 90],
                 "keypoints": kp((20, 20), (60, 40), (100, 90))})
    anns.append({"id": 2, "image_id": 2, "category_id": 1, "bbox": [20, 5, 120, 100],
                 "keypoints": kp((30, 15), (80, 50), (130, 100))})
    anns.append({"id": 3, "image_id": 2, "category_id": 1, "bbox": [0, 0, 50, 50],
                 "keypoints": kp((5, 5), (25, 25), (45, 45))})
    anns.append({"id": 4, "image_id": 3, "category_id": 2, "bbox": [5, 5, 140, 100],
                 "keypoints": kp((10, 10), (70, 60))})
    js = tmp_path / "kp.json"
    js.write_text(json.dumps({"images": images, "annotations": anns, "categories": [
        {"id": 1, "name": "person", "keypoints": ["a", "b", "c"]},
        {"id": 2, "name": "horse", "keypoints": ["nose", "tail"]}]}))
    return js, imgs


def test_with_data_options_adds_source_keys():
    c = pools.with_data_options({"dataset": "embedded", "n_synthetic": 3})
    assert c["n_synthetic"] == 3 and c["json"] is None and "pairs" not in c
    assert pools.with_data_options({})["n_synthetic"] == 0
    # pairs are formed from the real instances: no n_synthetic unless the experiment has one (backbones' split)
    p = pools.with_data_options({}, pairs=True)
    assert p["n_synthetic_pairs"] == 8 and "n_synthetic" not in p
    assert pools.with_data_options({"n_synthetic": 2}, pairs=True)["n_synthetic"] == 2
    with pytest.raises(ConfigError, match="option 'n_warps' is now 'n_synthetic'"):
        pools.build_pool({"dataset": "embedded", "n_warps": 1})


def test_coco_pool_and_pairs(tmp_path, shared):
    js, imgs = _coco(tmp_path, shared)
    conf = {"dataset": "coco", "json": str(js), "images": str(imgs), "categories": ["face"]}
    with pytest.warns(UserWarning, match="none of the categories"):
        pool = pools.build_pool(dict(conf, n_synthetic=1))
    assert len(pool) == 8 and sum(i.meta["real"] for i in pool) == 4
    assert pools.data_notes(pool)
    pairs = pools.build_pairs(dict(conf, categories=["person"], pairs="cross"))
    # 3 people -> 6 ordered pairs, all cross-instance, same category
    assert len(pairs) == 6 and {p.source.meta["pair_kind"] for p in pairs} == {"cross"}
    assert all(p.source.id != p.target.id and p.source.category == "person" for p in pairs)
    both = pools.build_pairs(dict(conf, categories=None, pairs="both", n_synthetic_pairs=2, max_pairs=2))
    kinds = [(p.source.category, p.source.meta["pair_kind"]) for p in both]
    assert kinds.count(("person", "synthetic")) == 2 and kinds.count(("person", "cross")) == 2
    assert kinds.count(("horse", "synthetic")) == 2 and ("horse", "cross") not in kinds  # a single horse
    syn = [p for p in both if p.source.meta["pair_kind"] == "synthetic"][0]
    assert syn.target.meta["source_id"] == syn.source.id and syn.target.image.shape == (120, 160, 3)


def test_missing_files_name_the_option(tmp_path):
    with pytest.raises(FileNotFoundError, match="json"):
        pools.build_pairs({"dataset": "coco"})
    with pytest.raises(FileNotFoundError, match="root"):
        pools.build_pairs({"dataset": "spair"})
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nope")):
        pools.build_pairs({"dataset": "cub", "root": str(tmp_path / "nope")})
    with pytest.raises(KeyError, match="unknown dataset"):
        pools.build_pairs({"dataset": "imagenet"})
    with pytest.raises(ValueError, match="pairs"):
        pools.build_pairs({"dataset": "embedded", "categories": ["zebra"], "pairs": "all"})


def test_pf_willow_pairs_through_protocol(tmp_path):
    from tests_helpers_pfwillow import write_pf_willow

    csv = write_pf_willow(tmp_path)
    pairs = pools.build_pairs({"dataset": "pf-willow", "csv": str(csv), "max_pairs": 1})
    assert [p.source.category for p in pairs] == ["car(G)", "duck(S)"]
    assert all(p.source.meta["pair_kind"] == "listed" for p in pairs)
    pool = pools.build_pool({"dataset": "pf-willow", "csv": str(csv), "categories": ["duck(S)"]})
    assert [i.category for i in pool] == ["duck(S)"] * 2


def test_embedded_pool_matches_previous_table2_behaviour(shared):
    from convcorr import datasets

    pool = pools.build_pool({"dataset": "embedded", "categories": ["zebra"], "n_synthetic": 2, "seed": 0})
    real = datasets.embedded_instances("zebra")
    warps = datasets.synthetic_instances(real, 2, seed=0)
    assert [i.id for i in pool] == [i.id for i in real] + [w.id for w in warps]
    for a, b in zip(pool[len(real):], warps):
        np.testing.assert_array_equal(a.keypoints, b.keypoints)
    assert all(i.meta["source_id"] for i in pool)


def test_embedded_pairs_synthetic_and_cross(shared):
    pairs = pools.build_pairs({"dataset": "embedded", "categories": ["hand"], "n_synthetic_pairs": 3,
                                   "max_pairs": 4})
    kinds = [p.source.meta["pair_kind"] for p in pairs]
    assert kinds.count("synthetic") == 3 and kinds.count("cross") == 4  # 5 hands -> 20+ ordered, capped at 4
    for p in pairs:
        if p.source.meta["pair_kind"] == "cross":
            assert p.source.meta["source_id"] != p.target.meta["source_id"]
    syn = pools.build_pairs({"dataset": "synthetic", "categories": ["horse10"], "n_synthetic_pairs": 2})
    assert [p.source.meta["pair_kind"] for p in syn] == ["synthetic"] * 2


def test_split_pool_by_photo_and_by_warp(shared):
    tr, te, kinds = pools.split_pool({"dataset": "embedded", "categories": ["face", "zebra"], "n_synthetic": 2,
                                          "test_warps": 1, "test_fraction": 0.34})
    assert kinds["face"].startswith("by photo") and kinds["zebra"].startswith("by warp")
    assert not {i.meta["source_id"] for i in tr if i.category == "face"} & {i.meta["source_id"] for i in te
                                                                            if i.category == "face"}


def test_cub_pairs_are_within_one_species(tmp_path):
    (tmp_path / "parts").mkdir()
    rows, boxes, locs = [], [], []
    for k, cls in enumerate(["001.Albatross", "001.Albatross", "002.Auklet", "002.Auklet", "002.Auklet"], start=1):
        (tmp_path / "images" / cls).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / "images" / cls / f"{k}.jpg")
        rows.append(f"{k} {cls}/{k}.jpg")
        boxes.append(f"{k} 1.0 1.0 30.0 20.0")
        locs += [f"{k} 1 {5 + k}.0 6.0 1", f"{k} 2 10.0 {8 + k}.0 1"]
    (tmp_path / "images.txt").write_text("\n".join(rows) + "\n")
    (tmp_path / "bounding_boxes.txt").write_text("\n".join(boxes) + "\n")
    (tmp_path / "parts" / "parts.txt").write_text("1 back\n2 beak\n")
    (tmp_path / "parts" / "part_locs.txt").write_text("\n".join(locs) + "\n")
    pairs = pools.build_pairs({"dataset": "cub", "root": str(tmp_path), "pairs": "cross"})
    assert len(pairs) == 2 + 6  # 2 albatrosses -> 2 ordered pairs, 3 auklets -> 6
    assert all(p.source.meta["class"] == p.target.meta["class"] for p in pairs)
    capped = pools.build_pairs({"dataset": "cub", "root": str(tmp_path), "pairs": "cross", "max_pairs": 1})
    assert len(capped) == 2 and {p.source.meta["class"] for p in capped} == {"001.Albatross", "002.Auklet"}
    anyone = pools.build_pairs({"dataset": "cub", "root": str(tmp_path), "pairs": "cross",
                                    "pair_by": "category"})
    assert len(anyone) == 20  # 5 birds, one category "bird"


def test_ap10k_pair_by_family_or_any(shared):
    js = shared / "keypoints" / "mmpose-fixtures" / "ap10k" / "test_ap10k.json"  # a jaguar and an antelope
    with pytest.raises(DataError, match="no cross pairs"):
        pools.build_pairs({"dataset": "ap10k", "json": str(js), "pairs": "cross"})
    with pytest.raises(DataError, match="supercategory 'Felidae'"):
        pools.build_pairs({"dataset": "ap10k", "json": str(js), "pairs": "cross", "pair_by": "supercategory"})
    ps = pools.build_pairs({"dataset": "ap10k", "json": str(js), "pairs": "cross", "pair_by": "any"})
    assert sorted((p.source.category, p.target.category) for p in ps) == [("antelope", "jaguar"),
                                                                          ("jaguar", "antelope")]
