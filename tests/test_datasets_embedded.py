"""The embedded default data: real annotated photos from the shared folder."""
import numpy as np

from convcorr.datasets import embedded_categories, embedded_instances, load_dataset, load_ibug


def test_categories_and_counts(shared):
    assert embedded_categories() == {"face": 6, "ap10k": 2, "animalpose": 2, "horse10": 3, "zebra": 2}
    assert [i.meta["species"] for i in embedded_instances("ap10k")] == ["jaguar", "antelope"]
    assert len(load_dataset("embedded", category="zebra")) == 2


def test_faces_share_names_and_fit(shared):
    faces = embedded_instances("face")
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
