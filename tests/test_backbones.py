import numpy as np
import pytest
import torch

from convcorr.backbones import BACKBONES, AlexNet, default_weights, get_backbone, offline_weights
from convcorr.core.errors import DataError
from convcorr.core.images import load_image

# What each shared photo shows -> acceptable ImageNet class names (the owl is a burrowing owl, which ImageNet
# lacks: its only owl class is the great grey owl; Grace Hopper wears a navy uniform).
EXPECTED_TOP5 = {"cat.bmp": ("tabby", "tiger cat", "Egyptian cat"), "bird.bmp": ("chickadee",),
                 "owl.jpg": ("great grey owl",), "hot_dog.jpg": ("hotdog",),
                 "grace_hopper.bmp": ("military uniform",)}


@pytest.fixture(scope="module")
def photos(shared):
    return {f.name: load_image(f) for f in sorted((shared / "images").iterdir())}


@pytest.fixture(scope="module")
def alexnet(shared):
    return get_backbone("alexnet", device="cpu")


@pytest.fixture(scope="module")
def effnet():
    return get_backbone("efficientnet_lite0", device="cpu")


@pytest.fixture(scope="module")
def labels(shared):
    lines = (shared / "weights" / "mobilenet-tflite" / "imagenet_labels.txt").read_text().splitlines()
    assert len(lines) == 1001 and lines[0] == "background"
    return lines[1:]  # ImageNet class i = line i + 1


def test_q8_parsing_and_cache(shared, tmp_path, monkeypatch):
    from convcorr.backbones.alexnet import load_caffe_q8

    monkeypatch.setenv("CONVCORR_CACHE", str(tmp_path))
    w = load_caffe_q8()
    assert list(tmp_path.glob("alexnet-caffe-q8-*.npz"))
    assert w["conv1_wt"].shape == (96, 3, 11, 11) and w["conv2_wt"].shape == (256, 48, 5, 5)
    assert w["conv3_wt"].shape == (384, 256, 3, 3) and w["conv4_wt"].shape == (384, 192, 3, 3)
    assert w["fc8_wt"].shape == (1000, 4096) and w["fc6_bias"].shape == (4096,)
    assert "fc6_wt" not in w and "fc7_wt" not in w
    # float = int / 128: every value is on the 1/128 grid; first integers of conv1_wt.txt are "-4 -1 2 4"
    assert np.allclose(w["conv1_wt"].ravel()[:4] * 128, [-4, -1, 2, 4])
    for v in w.values():
        assert np.array_equal(v * 128, np.round(v * 128))
    # fc8_wt.bin holds signed bytes: symmetric around 0
    assert abs(w["fc8_wt"].mean()) < 1e-4 and w["fc8_wt"].min() < 0
    w2 = load_caffe_q8()  # from the NPZ cache
    assert all(np.array_equal(w[k], w2[k]) for k in w)


def test_alexnet_q8_weights_and_pool5_sparsity(alexnet, photos):
    bb = alexnet
    assert not bb.training and bb.device == torch.device("cpu")
    assert tuple(bb.conv[0].weight.shape) == (96, 3, 11, 11)
    assert tuple(bb.conv[1].weight.shape) == (256, 48, 5, 5) and bb.conv[1].groups == 2
    assert tuple(bb.conv[4].weight.shape) == (256, 192, 3, 3)
    acts = bb.extract(list(photos.values()), ["conv1", "conv2", "conv3", "conv4", "conv5", "pool5"])
    shapes = {k: v.shape[1:] for k, v in acts.items()}
    assert shapes == {"conv1": (55, 55, 96), "conv2": (27, 27, 256), "conv3": (13, 13, 384),
                      "conv4": (13, 13, 384), "conv5": (13, 13, 256), "pool5": (6, 6, 256)}
    assert all(v.dtype == np.float32 and v.min() >= 0 for v in acts.values())  # after ReLU
    zeros = (acts["pool5"] == 0).mean(axis=(1, 2, 3))
    assert np.all((zeros > 0.65) & (zeros < 0.80)), zeros  # README: 65-80 % zeros
    # trained conv1 filters are smooth (neighbouring taps correlate), unlike random ones
    w = bb.conv[0].weight.numpy()
    corr = np.corrcoef(w[:, :, :, :-1].ravel(), w[:, :, :, 1:].ravel())[0, 1]
    assert corr > 0.5, corr
    assert np.abs(w).max() < 2


def test_extract_batches_and_matches_forward(alexnet, photos):
    imgs = list(photos.values())
    a = alexnet.extract(imgs, ["conv3"], batch_size=2)["conv3"]
    b = alexnet.extract(imgs, ["conv3"], batch_size=16)["conv3"]
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        ref = alexnet(alexnet.preprocess(imgs[:1]), ["conv3"])["conv3"][0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(a[0], ref, rtol=1e-5, atol=1e-5)
    x = alexnet.preprocess([np.full((5, 7, 3), [10, 20, 30], np.uint8)])
    assert tuple(x.shape) == (1, 3, 227, 227)
    # BGR minus the Caffe mean (104, 117, 123)
    np.testing.assert_allclose(x[0, :, 0, 0].numpy(), [30 - 104, 20 - 117, 10 - 123])


def test_alexnet_fc7_absent_clear_error(alexnet, photos):
    with pytest.raises(RuntimeError, match=r"fc6_wt\.txt, fc7_wt\.txt.*absent"):
        alexnet.global_features([photos["cat.bmp"]])
    with pytest.raises(RuntimeError, match="fc7"):
        alexnet.classify([photos["cat.bmp"]])


def test_alexnet_any_input_size(alexnet):
    img = np.zeros((300, 400, 3), np.uint8)
    out = alexnet.extract([img], ["conv5"], size=500)
    assert out["conv5"].shape == (1, 30, 30, 256)  # 123 -> pool(ceil) 61 -> 30
    out = alexnet.extract([img, img], ["conv1"], size=None)
    assert out["conv1"].shape == (2, 73, 98, 96)
    with pytest.raises(ValueError, match="differ in size"):
        alexnet.extract([img, img[:200]], ["conv1"], size=None)


def test_pretrained_false_needs_no_weights(monkeypatch):
    import convcorr.backbones.alexnet as alex

    def no_shared(*a, **k):
        raise AssertionError("pretrained=False must not read weights")

    monkeypatch.setattr(alex, "load_caffe_q8", no_shared)
    for name in BACKBONES:
        bb = get_backbone(name, pretrained=False, device="cpu", cache=False)
        assert not bb.training
        out = bb(torch.zeros(1, 3, bb.input_size, bb.input_size), bb.layer_names)
        assert list(out) == list(bb.layer_names)


def test_torchvision_variant_and_offline_error(monkeypatch, tmp_path):
    import torch.hub

    import convcorr.backbones.alexnet as alexnet_mod

    calls = []

    def boom(url, *a, **k):
        calls.append(url)
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", boom)
    with pytest.raises(RuntimeError, match="could not download .*alexnet-owt-7be5be79.pth.*caffe-q8"):
        AlexNet(weights="torchvision")
    assert calls == ["https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"]

    # the torchvision layout loads from a state dict with torchvision's keys
    tv_shapes = {"features.0": (64, 3, 11, 11), "features.3": (192, 64, 5, 5), "features.6": (384, 192, 3, 3),
                 "features.8": (256, 384, 3, 3), "features.10": (256, 256, 3, 3), "classifier.1": (4096, 9216),
                 "classifier.4": (4096, 4096), "classifier.6": (1000, 4096)}
    sd = {}
    for k, s in tv_shapes.items():
        sd[k + ".weight"] = torch.randn(s) * 0.01
        sd[k + ".bias"] = torch.zeros(s[0])
    # a file planted in the hub cache under the official name fails the published hash prefix: refused, not loaded
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True, exist_ok=True)
    torch.save(sd, tmp_path / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth")
    with pytest.raises(DataError, match="alexnet-owt-7be5be79.pth: sha256 does not start with 7be5be79"):
        AlexNet(weights="torchvision")
    monkeypatch.setattr(alexnet_mod, "load_checkpoint", lambda url: sd)
    tv = AlexNet(weights="torchvision").eval()
    assert tv.input_size == 224 and not any(isinstance(m, torch.nn.LocalResponseNorm) for m in tv.modules())
    assert torch.equal(tv.conv[3].weight, sd["features.8.weight"])
    with torch.no_grad():
        out = tv(torch.zeros(2, 3, 224, 224), ["conv5", "pool5", "fc7"])
    assert out["conv5"].shape == (2, 256, 13, 13) and out["pool5"].shape == (2, 256, 6, 6)
    assert out["fc7"].shape == (2, 4096)


def test_efficientnet_top5_on_real_photos(effnet, photos, labels):
    assert not effnet.training
    logits = effnet.classify([photos[k] for k in EXPECTED_TOP5])
    assert logits.shape == (5, 1000)
    for (fname, want), lg in zip(EXPECTED_TOP5.items(), logits):
        top5 = [labels[i] for i in np.argsort(-lg)[:5]]
        assert any(w in t for w in want for t in top5), (fname, top5)
    # top-1 is right for all but the (non-ImageNet) burrowing owl
    top1 = {k: labels[int(np.argmax(lg))] for k, lg in zip(EXPECTED_TOP5, logits)}
    for k in ("cat.bmp", "bird.bmp", "hot_dog.jpg", "grace_hopper.bmp"):
        assert any(w in top1[k] for w in EXPECTED_TOP5[k]), top1
    g = effnet.global_features([photos["cat.bmp"]])
    assert g.shape == (1, 1280) and g.min() >= 0


def test_efficientnet_layers(effnet, photos):
    acts = effnet.extract([photos["bird.bmp"]], list(effnet.layer_names) + ["pool"])
    chans = {"stage1": 16, "stage2": 24, "stage3": 40, "stage4": 80, "stage5": 112, "stage6": 192, "stage7": 320,
             "head": 1280}
    for layer, c in chans.items():
        s = effnet.rf(layer).stride
        assert acts[layer].shape == (1, 224 // s, 224 // s, c), layer
    np.testing.assert_allclose(acts["pool"][0], acts["head"][0].mean(axis=(0, 1)), rtol=1e-4, atol=1e-5)


def test_unknown_names_raise():
    with pytest.raises(KeyError, match="vgg99"):
        get_backbone("vgg99")
    bb = get_backbone("alexnet", pretrained=False, device="cpu")
    with pytest.raises(KeyError, match="conv9"):
        bb(torch.zeros(1, 3, 227, 227), ["conv9"])
    with pytest.raises(ValueError, match="uint8"):
        bb.preprocess([np.zeros((10, 10), np.uint8)])
    with pytest.raises(ValueError, match="weights"):
        AlexNet(weights="imagenet21k")


# ---- every offline pretrained backbone classifies the shared photos (issue 8) -----------------------------------
# The burrowing owl has no ImageNet class (only the great grey owl): it is reported, not required. Grace Hopper wears
# a navy uniform with a necktie: "military uniform" or "Windsor tie" count.
REQUIRED_TOP5 = {"cat.bmp": ("tabby", "tiger cat", "Egyptian cat"), "bird.bmp": ("chickadee",),
                 "hot_dog.jpg": ("hotdog",), "grace_hopper.bmp": ("military uniform", "Windsor tie")}
CLASSIFIERS = [n for n in BACKBONES if n != "alexnet"]  # the shared AlexNet copy lacks fc6/fc7 weights


def _rank(logits, labels, want):
    order = [labels[i] for i in np.argsort(-logits)]
    return min(i for i, t in enumerate(order) if any(w in t for w in want)) + 1


@pytest.mark.parametrize("name,weights", [(n, None) for n in CLASSIFIERS] + [("mobilenet_v2", "tflite-tf2-ptq")])
def test_pretrained_backbones_top5_on_real_photos(shared, photos, labels, name, weights):
    bb = get_backbone(name, device="cpu", weights=weights)
    names = list(REQUIRED_TOP5) + ["owl.jpg"]
    logits = bb.classify([photos[k] for k in names])
    assert logits.shape == (len(names), 1000)
    ranks = {k: _rank(lg, labels, REQUIRED_TOP5.get(k, ("great grey owl",))) for k, lg in zip(names, logits)}
    print(name, weights, ranks)
    assert all(ranks[k] <= 5 for k in REQUIRED_TOP5), ranks
    acts = bb.extract([photos["cat.bmp"]], [bb.layer_names[-1], bb.global_layer])
    assert acts[bb.global_layer].shape[0] == 1 and np.all(np.isfinite(acts[bb.layer_names[-1]]))


def test_squeezenet_decoding_and_validation(shared, tmp_path):
    from convcorr.backbones.squeezenet import _conv_shapes, decode_deep_compression
    from convcorr.core.errors import DataError

    f = shared / "weights" / "squeezenet1.0-deepcompression" / "compressed_SqueezeNet.net"
    w = decode_deep_compression(f)
    assert len(w) == 52 and w["features.0.weight"].shape == (96, 3, 7, 7) and w["classifier.1.bias"].shape == (1000,)
    # pruned: the stored counts are the non-zeros (up to codebook entries that are exactly zero)
    nz = np.frombuffer(f.read_bytes(), "<u4", count=26)
    for (key, _), n in zip(_conv_shapes(), nz):
        assert np.count_nonzero(w[f"{key}.weight"]) <= n
    assert np.count_nonzero(w["features.0.weight"]) > 0.9 * 14112  # conv1 is barely pruned
    bad = tmp_path / "truncated.net"
    bad.write_bytes(f.read_bytes()[:-10])
    with pytest.raises(DataError, match="truncated.net"):
        decode_deep_compression(bad)
    with pytest.raises(DataError, match="missing.net"):
        decode_deep_compression(tmp_path / "missing.net")


def test_tflite_loader_validation(shared, tmp_path):
    import shutil

    from convcorr.backbones.mobilenet import MobileNetV1, MobileNetV2, TFConv, _read_tflite
    from convcorr.core.errors import DataError

    src = shared / "weights" / "mobilenet-tflite"
    ops = _read_tflite(src / "mobilenet_v2_1.0_224_quant.tflite")
    convs = [o for o in ops if o["kind"] in ("conv", "depthwise")]
    assert len(convs) == 53 and convs[1]["kind"] == "depthwise" and convs[1]["weight"].shape == (32, 1, 3, 3)
    assert convs[0]["act"] == "relu6" and convs[2]["act"] is None and all(o["padding"] == "SAME" for o in convs)
    # per-axis int8 (TF2 PTQ): 32 scales for the first conv, dequantised weights differ per channel
    ptq = [o for o in _read_tflite(src / "tf2_mobilenet_v2_1.0_224_ptq.tflite") if o["kind"] == "conv"]
    assert ptq[0]["weight"].shape == (32, 3, 3, 3)
    # a corrupt file and a file of another architecture are refused, naming the file
    d = tmp_path / "w"
    d.mkdir()
    (d / "mobilenet_v2_1.0_224_quant.tflite").write_bytes(b"\0" * 100)
    with pytest.raises(DataError, match="mobilenet_v2_1.0_224_quant.tflite"):
        MobileNetV2(weights_dir=d)
    (d / "mobilenet_v2_1.0_224_quant.tflite").unlink()
    shutil.copy(src / "mobilenet_v1_0.75_192_quant.tflite", d / "mobilenet_v2_1.0_224_quant.tflite")
    with pytest.raises(DataError, match="mobilenet_v2_1.0_224_quant.tflite"):
        MobileNetV2(weights_dir=d)
    with pytest.raises(FileNotFoundError, match="mobilenet_v1_1.0_224"):
        MobileNetV1(weights_dir=d)
    # TF "same" padding by hand: stride 2, k 3 on 224 -> pad 0 before, 1 after; on 225 -> 1 and 1
    assert TFConv.same_pad(224, 3, 2) == (0, 1) and TFConv.same_pad(225, 3, 2) == (1, 1)
    assert TFConv.same_pad(7, 1, 1) == (0, 0) and TFConv.same_pad(112, 3, 1) == (1, 1)


def test_mobilenet_geometry_depends_on_input_parity():
    bb = get_backbone("mobilenet_v1", pretrained=False, device="cpu")
    # even input: stride-2 3x3 "same" pads only after -> column 0 covers pixels 0..2, centre 1
    assert bb.rf("Conv2d_0", 224) == (g := bb.rf("Conv2d_0"))
    assert (g.size, g.stride, g.offset) == (3, 2, 1.0)
    g = bb.rf("Conv2d_0", 225)  # odd: one pixel before and after -> centre 0
    assert (g.size, g.stride, g.offset) == (3, 2, 0.0)


# ---- timm / torchvision models (random weights offline) ---------------------------------------------------------
def test_zoo_specs_layers_shapes_and_geometry():
    pytest.importorskip("timm")
    pytest.importorskip("torchvision")
    rn = get_backbone("torchvision:resnet50", pretrained=False, device="cpu")
    assert rn.layer_names == ("maxpool", "layer1", "layer2", "layer3", "layer4")
    assert [rn.rf(l).stride for l in rn.layer_names] == [4, 4, 8, 16, 32]  # layer2: 8, not 16
    assert [rn.rf(l).size for l in rn.layer_names] == [11, 35, 91, 267, 427]
    acts = rn.extract([np.zeros((64, 64, 3), np.uint8)], ["layer2", "layer4"], size=64)
    assert acts["layer2"].shape == (1, 8, 8, 512) and acts["layer4"].shape == (1, 2, 2, 2048)
    vit = get_backbone("timm:vit_tiny_patch16_224", pretrained=False, device="cpu")
    assert vit.layer_names[0] == "blocks.0" and vit.layer_names[-1] == "blocks.11"
    acts = vit.extract([np.zeros((50, 70, 3), np.uint8)], ["blocks.3", "pool"], size=(64, 96))
    assert acts["blocks.3"].shape == (1, 4, 6, 192) and acts["pool"].shape == (1, 192)  # class token dropped
    g = vit.rf("blocks.3", 64)
    assert g.is_global and g.stride == 16 and g.offset == 7.5
    dino = get_backbone("timm:vit_small_patch14_dinov2.lvd142m", pretrained=False, device="cpu")
    g = dino.rf("blocks.0", 56)
    assert g.is_global and g.stride == 14 and g.offset == 6.5  # (p - 1) / 2, kept exact
    vgg = get_backbone("timm:vgg16", pretrained=False, device="cpu")
    assert vgg.layer_names[0] == "features.3" and vgg.rf("features.29").size == 196


def test_zoo_pretrained_offline_is_one_clear_line(monkeypatch, tmp_path):
    pytest.importorskip("timm")
    tv = pytest.importorskip("torchvision")
    from convcorr.backbones import WeightsUnavailable

    def no_network(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(tv.models._api, "load_state_dict_from_url", no_network)
    with pytest.raises(WeightsUnavailable, match="not available offline") as e:
        get_backbone("torchvision:resnet18", device="cpu", cache=False)
    assert "\n" not in str(e.value) and "resnet18" in str(e.value)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    with pytest.raises(WeightsUnavailable, match="not available offline") as e:
        get_backbone("timm:resnet18", device="cpu", cache=False)
    assert "\n" not in str(e.value)
    with pytest.raises(KeyError, match="timm has no model"):
        get_backbone("timm:no_such_net", pretrained=False)
    with pytest.raises(KeyError, match="torchvision has no model"):
        get_backbone("torchvision:no_such_net", pretrained=False)


def test_cli_backbones_lists_layers_rf_and_weights(shared):
    from click.testing import CliRunner

    from convcorr.cli import cli

    res = CliRunner().invoke(cli, ["backbones"])
    assert res.exit_code == 0, res.output
    for name in BACKBONES:  # what the backbone's offline_available fact says, not an assumption
        st = offline_weights(name)
        assert f"== {name}: pretrained weights {'available' if st else 'NOT available'}: {st.where}" in res.output
    rows = {l.split()[0]: l.split()[1:] for l in res.output.splitlines() if l.strip()}
    assert rows["pool5"] == ["195", "32", "33.0", "6x6", "256"]
    assert rows["Conv2d_13_pointwise"] == ["315", "32", "31.0", "7x7", "1024"]
    assert rows["fire9"] == ["155", "16", "17.0", "13x13", "512"]
    assert "timm:<model>" in res.output and "torchvision:<model>" in res.output
    bad = CliRunner().invoke(cli, ["backbones", "--with", "timm:no_such_net"])
    assert bad.exit_code != 0 and "no_such_net" in bad.output


def test_default_weights_and_offline_availability_are_separate_facts(monkeypatch):
    import convcorr.backbones as bbs
    from convcorr.backbones import WeightsStatus

    for name in BACKBONES:
        facts = BACKBONES.facts(name)
        assert {"default_weights", "offline_available"} <= set(facts), name
        assert isinstance(default_weights(name), str) and isinstance(offline_weights(name), WeightsStatus)
    # a missing shared folder changes the availability, never the default weights
    monkeypatch.setattr("convcorr.runtime.paths.shared_root", lambda: None)
    assert not offline_weights("alexnet") and "shared folder not found" in offline_weights("alexnet").where
    assert default_weights("alexnet") == BACKBONES.fact("alexnet", "default_weights") or callable(
        BACKBONES.fact("alexnet", "default_weights"))
    # a callable default (e.g. "auto": whatever this machine has) is resolved when the backbone is built
    monkeypatch.setitem(bbs.BACKBONES._entries, "alexnet", (AlexNet, dict(BACKBONES.facts("alexnet"),
                                                                         default_weights=lambda: "torchvision")))
    assert default_weights("alexnet") == "torchvision"
    assert default_weights("timm:resnet18") == "default"


def test_unknown_backbone_names_the_closest():
    with pytest.raises(KeyError, match="did you mean 'alexnet'"):
        get_backbone("alexnt", pretrained=False)
