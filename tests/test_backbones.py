from pathlib import Path

import numpy as np
import pytest
import torch

from convcorr.backbones import AlexNet, get_backbone
from convcorr.types import load_image

EXPECTED_TOP5 = {"cat.bmp": "cat", "bird.bmp": "chickadee", "owl.jpg": "great grey owl", "hot_dog.jpg": "hotdog",
                 "grace_hopper.bmp": "military uniform"}


@pytest.fixture(scope="module")
def photos(shared):
    return {f.name: load_image(f) for f in sorted((shared / "images").iterdir())}


def test_alexnet_q8_weights_and_pool5_sparsity(photos):
    bb = get_backbone("alexnet", device="cpu")
    assert tuple(bb.conv[0].weight.shape) == (96, 3, 11, 11)
    assert tuple(bb.conv[1].weight.shape) == (256, 48, 5, 5)
    assert tuple(bb.conv[4].weight.shape) == (256, 192, 3, 3)
    acts = bb.extract(list(photos.values()), ["conv1", "conv4", "pool5"])
    assert acts["conv1"].shape[1:] == (55, 55, 96)
    assert acts["conv4"].shape[1:] == (13, 13, 384)
    assert acts["pool5"].shape[1:] == (6, 6, 256)
    zeros = (acts["pool5"] == 0).mean(axis=(1, 2, 3))
    assert np.all((zeros > 0.6) & (zeros < 0.85)), zeros
    # trained conv1 filters: mostly zero-mean oriented edges -> low-frequency energy small vs random
    w = bb.conv[0].weight.numpy()
    assert np.abs(w).max() < 2


def test_alexnet_fc7_absent_clear_error(photos):
    bb = get_backbone("alexnet", device="cpu")
    with pytest.raises(RuntimeError, match="fc6_wt, fc7_wt"):
        bb.global_features([photos["cat.bmp"]])


def test_alexnet_any_input_size(shared):
    bb = get_backbone("alexnet", device="cpu")
    img = np.zeros((300, 400, 3), np.uint8)
    out = bb.extract([img], ["conv5"], size=500)
    assert out["conv5"].shape == (1, 30, 30, 256)  # 123 -> pool(ceil) 61 -> 30


def test_torchvision_weights_fail_clearly_offline(monkeypatch):
    import torch.hub

    def boom(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", boom)
    with pytest.raises(RuntimeError, match="download"):
        AlexNet(weights="torchvision")


def test_efficientnet_top5_on_real_photos(photos):
    bb = get_backbone("efficientnet_lite0", device="cpu")
    from convcorr.paths import require_shared

    names = require_shared("weights", "mobilenet-tflite", "imagenet_labels.txt").read_text().splitlines()[1:]
    logits = bb.classify([photos[k] for k in EXPECTED_TOP5])
    for (fname, want), lg in zip(EXPECTED_TOP5.items(), logits):
        top5 = [names[i] for i in np.argsort(-lg)[:5]]
        assert any(want in t for t in top5), (fname, top5)
    g = bb.global_features([photos["cat.bmp"]])
    assert g.shape == (1, 1280)


def test_unknown_names_raise():
    with pytest.raises(KeyError):
        get_backbone("vgg99")
    bb = get_backbone("alexnet", pretrained=False, device="cpu")
    with pytest.raises(KeyError, match="conv9"):
        bb(torch.zeros(1, 3, 227, 227), ["conv9"])
    with pytest.raises(ValueError):
        bb.preprocess([np.zeros((10, 10), np.uint8)])
