"""The embedded default data: real annotated photos from the shared folder."""
import numpy as np
import pytest

from convcorr.core.types import Instance
from convcorr.datasets import embedded_categories, embedded_instances, load_dataset, load_ibug
from convcorr.datasets.embedded import category_summary, cut_off_reasons


def test_categories_and_counts(shared):
    assert embedded_categories() == {
        "face": 8, "face19": 2, "person": 12, "hand": 11, "fly": 2, "zebra": 2, "horse10": 1, "animalpose-cat": 1,
        "animalpose-horse": 1, "ap10k-jaguar": 1, "ap10k-antelope": 1}
    assert len(load_dataset("embedded", categories=["zebra"])) == 2
    with pytest.raises(KeyError, match="categories"):
        embedded_instances("animalpose")


def test_species_split(shared):
    # Animal-Pose labels its cat and its horse "cat": the species comes from the file-name prefix
    (cat,), (horse,) = embedded_instances("animalpose-cat"), embedded_instances("animalpose-horse")
    assert cat.meta["species"] == "cat" and horse.meta["species"] == "horse"
    assert "ho105" in horse.id and "ca110" in cat.id
    assert [i.meta["species"] for c in ("ap10k-jaguar", "ap10k-antelope") for i in embedded_instances(c)] == [
        "jaguar", "antelope"]


def test_people_hands_photos_and_objects(shared):
    people = embedded_instances("person")
    assert all(len(p.keypoint_names) == 17 and p.keypoint_names[0] == "nose" for p in people)
    # HumanArt: file-name prefix stripped, 17 COCO names, images load
    art = [p for p in people if p.id.startswith("humanart/")]
    assert len(art) == 3 and all(p.image.ndim == 3 for p in art)
    rows = {r["category"]: r for r in category_summary()}
    assert (rows["person"]["instances"], rows["person"]["photos"], rows["person"]["dropped (cut off)"]) == (12, 6, 4)
    hands = embedded_instances("hand")
    # FreiHAND: 2 captures x 4 backgrounds -> one photo/object per capture
    fh = [h for h in hands if h.id.startswith("freihand/")]
    assert len(fh) == 8 and len({h.meta["object_id"] for h in fh}) == 2
    assert (rows["hand"]["instances"], rows["hand"]["objects"]) == (11, 5)


def test_cut_off_flags(shared):
    kept = {i.id for i in embedded_instances("horse10")}
    everything = embedded_instances("horse10", include_cut_off=True)
    assert len(kept) == 1 and len(everything) == 3
    flagged = [i for i in everything if i.meta["cut_off"]]
    assert {i.id for i in flagged} == {i.id for i in everything} - kept
    assert any("border" in r for i in flagged for r in i.meta["cut_off"])
    # by hand: a box touching the left border with a missing point; too few points
    vis = np.array([True, True, False, True])
    kp = np.where(vis[:, None], [[1.0, 5.0], [4.0, 5.0], [0.0, 0.0], [3.0, 8.0]], np.nan)
    inst = Instance(id="t", category="c", bbox=(0, 2, 8, 9), keypoint_names=("a", "b", "c", "d"), keypoints=kp,
                    visible=vis)
    assert len(cut_off_reasons(inst, (20, 20))) == 1
    assert cut_off_reasons(inst, (20, 20), min_visible_fraction=0.9)[-1] == "only 3 of 4 keypoints annotated"
    inst2 = Instance(id="t", category="c", bbox=(3, 2, 8, 9), keypoint_names=("a", "b", "c", "d"), keypoints=kp,
                     visible=vis)
    assert cut_off_reasons(inst2, (20, 20)) == []


def test_faces_share_names_and_fit(shared):
    faces = embedded_instances("face")
    assert len({f.meta["photo"] for f in faces}) == 8
    assert all(f.keypoint_names == tuple(f"p{i}" for i in range(1, 69)) for f in faces)
    for f in faces:
        img = f.load()
        assert img.dtype == np.uint8 and img.ndim == 3 and max(img.shape[:2]) <= 400
        k = f.keypoints[f.visible]
        assert np.all((k >= -1) & (k <= np.array(img.shape[1::-1]))), f.id
        x0, y0, x1, y1 = f.bbox
        assert 0 <= x0 < x1 <= img.shape[1] and 0 <= y0 < y1 <= img.shape[0], f.id


def test_downscale_is_exact(shared):
    (l,) = [i for i in embedded_instances("face") if i.id == "face/lenna"]
    r = load_ibug(shared / "keypoints" / "faces-ibug68" / "lenna.ljson")
    assert l.image.shape == (400, 400, 3) and l.meta["scale"] == (400 / 512, 400 / 512)
    # pixel-centre convention: x' = (x + 0.5) * 400 / 512 - 0.5
    np.testing.assert_allclose(l.keypoints, (r.keypoints + 0.5) * 400 / 512 - 0.5)
    np.testing.assert_allclose(l.bbox, (r.bbox + 0.5) * 400 / 512 - 0.5)
    (small,) = [i for i in embedded_instances("face", max_side=1000) if i.id == "face/lenna"]
    assert small.image.shape == (512, 512, 3)
    np.testing.assert_allclose(small.keypoints, r.keypoints)


def test_copies_are_independent(shared):
    a = embedded_instances("zebra")
    a[0].meta["x"] = 1
    a[0].keypoints = a[0].keypoints * 0
    b = embedded_instances("zebra")
    assert "x" not in b[0].meta and b[0].keypoints.max() > 0
