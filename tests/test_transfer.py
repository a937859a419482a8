import numpy as np
import pytest

from convcorr.core.crops import CropTransform, crop_instance, margin_box
from convcorr.core.types import Instance
from convcorr.methods.transfer import (BoxCopyTransfer, KeypointTransfer, TransferConfig, box_copy, first_available,
                                       make_transfer, median_of_top, retrieve_neighbours, transfer_back_keypoints)


def test_crop_transform_roundtrip_and_by_hand():
    t = CropTransform(10, 20, 110, 70, 200)  # 100 x 50 px -> 200 x 200: scale (2, 4)
    np.testing.assert_allclose(t.to_crop(np.array([[10 - 0.5, 20 - 0.5]])), [[-0.5, -0.5]])  # corner to corner
    np.testing.assert_allclose(t.to_crop(np.array([[60.0, 45.0]])), [[100.5, 101.5]])
    xy = np.random.default_rng(0).uniform(0, 100, (10, 2))
    np.testing.assert_allclose(t.from_crop(t.to_crop(xy)), xy)
    np.testing.assert_allclose(t.to_crop(t.from_crop(xy)), xy)
    assert np.isnan(t.to_crop(np.array([[np.nan, np.nan]]))).all()
    assert margin_box((10, 20, 30, 60), 0.1) == (8, 16, 33, 65)


def test_crop_instance_maps_a_dot_exactly():
    img = np.zeros((120, 160, 3), np.uint8)
    img[50:52, 90:92] = 255  # dot centred at (90.5, 50.5)
    inst = Instance("d", "toy", (60, 30, 140, 100), ("a",), [[90.5, 50.5]], [True], image=img)
    crop, t = crop_instance(inst, margin=0.0, size=161)
    ys, xs = np.mgrid[0:161, 0:161]
    w = crop[..., 0].astype(float)
    c = np.array([(w * xs).sum(), (w * ys).sum()]) / w.sum()
    np.testing.assert_allclose(c, t.to_crop(inst.keypoints)[0], atol=0.3)


def test_box_copy_box_coordinates():
    nn = Instance("n", "c", (0, 0, 10, 20), ("a", "b", "c"), [[5, 10], [np.nan, np.nan], [2, 4]], [True, False, False])
    out = box_copy(nn, (100, 100, 200, 150))  # x scale 10, y scale 2.5
    np.testing.assert_allclose(out[0], [150, 125])
    assert np.isnan(out[1:]).all()  # absent and invisible types are not copied
    nb = Instance("n", "c", (0, 0, 100, 50), ("a", "b"), np.array([[50.0, 25.0], [0.0, 0.0]]), np.array([True, False]))
    out = box_copy(nb, (10, 20, 30, 60))  # box centre to box centre
    np.testing.assert_allclose(out[0], [20.0, 40.0])
    assert np.all(np.isnan(out[1]))


def test_box_copy_falls_back_to_next_neighbour_per_type():
    q = Instance("q", "c", (100, 100, 200, 150), ("a", "b"), [[0, 0], [0, 0]], [True, True])
    n1 = Instance("n1", "c", (0, 0, 10, 20), ("a", "b"), [[5, 10], [0, 0]], [True, False])
    n2 = Instance("n2", "c", (10, 10, 20, 30), ("a", "b"), [[10, 10], [20, 30]], [True, True])
    kt = make_transfer(TransferConfig(method="box-copy"))
    assert isinstance(kt, BoxCopyTransfer)
    pred = kt.predict_from_neighbours(q, [n1, n2])
    np.testing.assert_allclose(pred, [[150, 125], [200, 150]])
    np.testing.assert_allclose(first_available(np.array([[[np.nan, 1.0]], [[3.0, 4.0]]])), [[3, 4]])


def test_transfer_back_keypoints_through_a_constant_flow():
    tq = CropTransform(0, 0, 100, 100, 50)   # query: 100 px box -> 50 px crop (scale 0.5)
    tn = CropTransform(10, 20, 60, 70, 50)   # neighbour: 50 px box -> 50 px crop (scale 1)
    dense = np.zeros((50, 50, 2))
    dense[..., 0] = 3.0                      # query-crop pixel p corresponds to neighbour-crop pixel p + (3, 0)
    kp_n = np.array([[30.0, 40.0], [np.nan, np.nan]])  # neighbour crop (20, 20) -> query crop (17, 20)
    out = transfer_back_keypoints(kp_n, tn, tq, dense)
    np.testing.assert_allclose(out[0], tq.from_crop(np.array([[17.0, 20.0]]))[0], atol=1e-9)
    np.testing.assert_allclose(out[0], [34.5, 40.5])
    assert np.isnan(out[1]).all()


def test_median_of_top_by_hand():
    t = np.array([[[0, 0]], [[10, 10]], [[2, 4]], [[100, 100]]], float)  # 4 neighbours, 1 type
    e = np.array([1.0, 3.0, 2.0, 0.5])
    # top 3 by energy: idx 3 (100,100), 0 (0,0), 2 (2,4) -> median (2, 4)
    np.testing.assert_allclose(median_of_top(t, e, 3), [[2, 4]])
    t[3, 0] = np.nan  # best neighbour lacks the type: top 3 of the rest: 0, 2, 1 -> median (2, 4)
    np.testing.assert_allclose(median_of_top(t, e, 3), [[2, 4]])


def test_retrieve_neighbours_cosine_and_mask():
    db = np.array([[1.0, 0], [0, 1], [10, 1]])
    q = np.array([[1.0, 0.05]])
    assert retrieve_neighbours(q, db, 2).tolist() == [[2, 0]]  # cosine: (10,1) is closest in angle
    assert retrieve_neighbours(q, db, 3, mask=np.array([[False, True, True]])).tolist() == [[2, 1, -1]]
    assert retrieve_neighbours(q, db, 5).tolist() == [[2, 0, 1, -1, -1]]  # k > N pads with -1
    db = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # the single nearest neighbour of several queries
    assert retrieve_neighbours(np.array([[5.0, 0.2], [0.1, 3.0]]), db, 1).tolist() == [[0], [1]]


@pytest.mark.parametrize("features", ["sift", "alexnet:conv4"])
def test_alignment_transfers_shifted_copy(features, shared):
    from convcorr.core.images import load_image

    img = load_image(shared / "images" / "cat.bmp")
    img = img[: (img.shape[0] // 8) * 8, : (img.shape[1] // 8) * 8]
    shift = 16  # pixels in the 227-pixel crop frame when box side == 227
    kp = np.array([[120.0, 110.0], [160.0, 140.0], [100.0, 170.0]])
    box = np.array([40, 40, 40 + 226, 40 + 226], float)
    q = Instance("q", "cat", box, ("a", "b", "c"), kp, [True] * 3, image=img)
    # the neighbour is the picture moved 16 px right (same box): its crop is the query's shifted by 16 px
    n = Instance("n", "cat", box, ("a", "b", "c"), kp + [shift, 0], [True] * 3, image=np.roll(img, shift, axis=1))
    kt = KeypointTransfer(TransferConfig(features=features, matcher="flow", margin=0.0, size=227, top=1))
    pred, det = kt.predict_from_neighbours(q, [n], return_details=True)
    assert np.abs(pred - kp).max() <= 4.0, pred - kp
    # the flow itself is the shift: dense flow ~ (+16, 0) in the interior of the query crop
    np.testing.assert_allclose(np.median(det["alignments"][0].displacement[60:160, 60:160], axis=(0, 1)), [shift, 0], atol=1)


def test_predict_retrieves_same_category_neighbours(shared):
    from convcorr.core.images import load_image

    img = load_image(shared / "images" / "cat.bmp")
    box = np.array([40, 40, 266, 266], float)
    kp = np.array([[120.0, 110.0], [160.0, 140.0]])
    q = Instance("q", "cat", box, ("a", "b"), kp, [True, True], image=img)
    good = Instance("good", "cat", box, ("a", "b"), kp + [8, 0], [True, True], image=np.roll(img, 8, axis=1))
    noise = np.random.default_rng(0).integers(0, 255, img.shape, dtype=np.uint8)
    bad = Instance("bad", "cat", box, ("a", "b"), kp * 0 + 200, [True, True], image=noise)
    other = Instance("other", "dog", box, ("a", "b"), kp + [8, 0], [True, True], image=img)  # wrong category
    kt = KeypointTransfer(TransferConfig(features="sift", k=1, top=1, margin=0.0))
    assert [n.id for n in kt.neighbours(q, [bad, other, q, good])] == ["good"]
    good.meta["source_id"] = q.meta["source_id"] = "photo"
    assert [n.id for n in kt.neighbours(q, [bad, other, q, good], exclude_same_source=True)] == ["bad"]
    good.meta.clear()
    pred, det = kt.predict(q, [bad, other, q, good], return_details=True)
    assert [n.id for n in det["neighbours"]] == ["good"]
    assert np.abs(pred - kp).max() <= 4.0
    assert ("q", "efficientnet_lite0") in kt.cache.glob  # global features cached per instance
