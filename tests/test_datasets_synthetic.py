import numpy as np
import pytest

from convcorr.core.types import Instance
from convcorr.datasets import Warp, embedded_instances, random_warp, synthetic_instances, synthetic_pairs, warp_instance


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


@pytest.mark.parametrize("strength", [1.0, 2.0, 3.0])
def test_inverse_exact_for_strong_warps(strength):
    rng = np.random.default_rng(3)
    for _ in range(5):
        w = random_warp((150, 200), rng, strength)
        assert w.min_jacobian_det() > 0  # no fold-over: the inverse is unique
        xy = rng.uniform(-20, 210, (200, 2))
        q = w.map_points(xy)
        assert np.isfinite(q).all()
        np.testing.assert_allclose(w.backward(q), xy, atol=1e-3)


def test_params_roundtrip_and_determinism():
    w = random_warp((60, 80), np.random.default_rng(4))
    w2 = Warp.from_params(w.params())
    xy = np.array([[10.0, 20.0], [70.0, 5.0]])
    np.testing.assert_allclose(w2.map_points(xy), w.map_points(xy))
    w3 = random_warp((60, 80), np.random.default_rng(4))
    np.testing.assert_array_equal(w3.A, w.A)
    np.testing.assert_array_equal(w3.disp, w.disp)


def test_identity_warp_is_identity():
    ctrl = np.array([[0.0, 0], [79, 0], [0, 59], [79, 59]])
    w = Warp((60, 80), np.eye(2), np.zeros(2), ctrl, np.zeros((4, 2)))
    img = (np.random.default_rng(5).random((60, 80, 3)) * 255).astype(np.uint8)
    np.testing.assert_array_equal(w.warp_image(img), img)
    np.testing.assert_allclose(w.map_points([[3.5, 7.25]]), [[3.5, 7.25]])
    with pytest.raises(ValueError, match="80x60"):
        w.warp_image(img[:10])


def test_translation_moves_points_and_pixels():
    # backward B(p) = p + t with t = (-5, 3): target(p) = source(p - (5, -3)), so source points move by +(5, -3)
    ctrl = np.array([[0.0, 0], [79, 0], [0, 59], [79, 59]])
    w = Warp((60, 80), np.eye(2), np.array([-5.0, 3.0]), ctrl, np.zeros((4, 2)))
    np.testing.assert_allclose(w.map_points([[10.0, 20.0]]), [[15.0, 17.0]])
    img = np.zeros((60, 80, 3), np.uint8)
    img[20, 10] = 200
    out = w.warp_image(img)
    assert out[17, 15, 0] == 200 and out.sum() == 3 * 200
    inst = Instance("t", "toy", (5, 5, 75, 55), ("a", "b"), [[10, 20], [77, 50]], [True, True], image=img)
    wi = warp_instance(inst, w, "t~x")
    assert wi.visible.tolist() == [True, False] and np.isnan(wi.keypoints[1]).all()  # (77, 50) -> (82, 47)
    np.testing.assert_allclose(wi.bbox, [10, 2, 79, 52])  # (5..75, 5..55) + (5, -3), clipped to the image


def test_keypoints_leaving_image_become_invisible_nan():
    img = np.zeros((50, 50, 3), np.uint8)
    inst = Instance("e", "toy", (0, 0, 49, 49), ("a", "b"), [[25, 25], [0.5, 0.5]], [True, True], image=img)
    ctrl = np.array([[0.0, 0], [49, 0], [0, 49], [49, 49]])
    w = Warp((50, 50), np.eye(2), np.array([5.0, 5.0]), ctrl, np.zeros((4, 2)))  # points move by (-5, -5)
    wi = warp_instance(inst, w, "e~0")
    assert wi.visible.tolist() == [True, False] and np.isnan(wi.keypoints[1]).all()
    np.testing.assert_allclose(wi.keypoints[0], [20, 20])
    assert inst.visible.all()  # the input is untouched


def test_synthetic_instances_on_real_photo(shared):
    (zebra,) = embedded_instances("zebra")[:1]
    out = synthetic_instances([zebra], 2, seed=0, strength=1.5)
    for x in out:
        assert x.image.shape == zebra.image.shape and x.image_path is None and x.category == "zebra"
        assert x.meta["source_id"] == zebra.id and x.keypoint_names == zebra.keypoint_names
        w = Warp.from_params(x.meta["warp"])
        v = x.visible
        np.testing.assert_allclose(w.backward(x.keypoints[v]), zebra.keypoints[v], atol=1e-3)
        H, W = x.image.shape[:2]
        assert 0 <= x.bbox[0] < x.bbox[2] <= W - 1 and 0 <= x.bbox[1] < x.bbox[3] <= H - 1
    plain = synthetic_instances([zebra], 1, seed=0, photometric=False)[0]
    assert plain.meta["photometric"] == {"gain": 1.0, "bias": 0.0}


def test_pairs_between_two_warps(shared):
    faces = embedded_instances("face")[:2]
    pairs = synthetic_pairs(faces, 3, seed=1, source="warp")
    assert [p.target.meta["source_id"] for p in pairs] == [faces[0].id, faces[1].id, faces[0].id]
    for p, real in zip(pairs, [faces[0], faces[1], faces[0]]):
        assert p.source is not real and p.source.meta["source_id"] == real.id
        idx = p.common_keypoints()
        assert len(idx) > 30
        ws, wt = Warp.from_params(p.source.meta["warp"]), Warp.from_params(p.target.meta["warp"])
        # both sides are exact images of the same real keypoints
        np.testing.assert_allclose(ws.backward(p.source.keypoints[idx]), real.keypoints[idx], atol=1e-3)
        np.testing.assert_allclose(wt.backward(p.target.keypoints[idx]), real.keypoints[idx], atol=1e-3)
    again = synthetic_pairs(faces, 3, seed=1, source="warp")
    np.testing.assert_array_equal(again[2].target.image, pairs[2].target.image)
    with pytest.raises(ValueError, match="source"):
        synthetic_pairs(faces, 1, source="flip")
