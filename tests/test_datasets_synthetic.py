import numpy as np
import pytest

from convcorr.datasets import embedded_categories, embedded_instances, random_warp, synthetic_instances, synthetic_pairs
from convcorr.types import Instance


def test_map_points_inverts_backward():
    rng = np.random.default_rng(0)
    w = random_warp((120, 160), rng, strength=1.5)
    xy = rng.uniform(10, 110, (50, 2))
    fwd = w.map_points(xy)
    np.testing.assert_allclose(w.backward(fwd), xy, atol=1e-3)
    assert np.isnan(w.map_points(np.array([[np.nan, 1.0]]))).all()


def test_warped_dot_lands_where_map_points_says():
    rng = np.random.default_rng(1)
    img = np.zeros((100, 120, 3), np.uint8)
    img[40:43, 70:73] = 255  # dot centred at (71, 41)
    w = random_warp((100, 120), rng)
    out = w.warp_image(img).astype(float)[..., 0]
    ys, xs = np.mgrid[0:100, 0:120]
    centroid = np.array([(out * xs).sum(), (out * ys).sum()]) / out.sum()
    np.testing.assert_allclose(centroid, w.map_points(np.array([[71.0, 41.0]]))[0], atol=0.6)


def test_synthetic_instances_exact_and_deterministic():
    img = (np.random.default_rng(2).random((80, 90, 3)) * 255).astype(np.uint8)
    inst = Instance("toy", "toy", (10, 10, 70, 60), ("a", "b"), [[20, 20], [60, 50]], [True, True], image=img)
    a = synthetic_instances([inst], 3, seed=5)
    b = synthetic_instances([inst], 3, seed=5)
    assert [x.id for x in a] == ["toy~w0", "toy~w1", "toy~w2"]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.image, y.image)
        assert x.meta["source_id"] == "toy"
    (p,) = synthetic_pairs([inst], 1, seed=0)
    assert p.source is inst and p.target.image.shape == img.shape
    assert len(p.common_keypoints()) >= 1


def test_embedded_data(shared):
    cats = embedded_categories()
    assert cats["face"] >= 6 and {"ap10k", "animalpose", "horse10", "zebra"} <= set(cats)
    faces = embedded_instances("face")
    assert all(f.keypoint_names == faces[0].keypoint_names for f in faces)
    assert all(max(f.load().shape[:2]) <= 400 for f in faces)
    for f in faces:
        k = f.keypoints[f.visible]
        assert np.all((k >= -1) & (k <= np.array(f.load().shape[1::-1]))), f.id
    with pytest.raises(KeyError):
        embedded_instances("unicorn")
