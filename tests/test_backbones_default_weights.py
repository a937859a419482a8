"""AlexNet's default weights: the Caffe copy when the shared folder holds it, else torchvision's official checkpoint
(hash-checked); offline and without the shared folder, one line that says how to provide weights."""
import hashlib
import urllib.error

import numpy as np
import pytest
import torch

import convcorr
from convcorr.backbones import alexnet as ax
from convcorr.backbones import get_backbone, offline_weights
from convcorr.backbones.base import WeightsUnavailable
from convcorr.core.errors import DataError, UserError


@pytest.fixture
def no_shared(tmp_path, monkeypatch):
    """No shared folder anywhere (CONVCORR_SHARED is an empty folder, no ../shared) and an empty torch hub cache;
    returns the hub's checkpoint folder."""
    import convcorr.runtime.paths as paths

    (tmp_path / "empty").mkdir()
    (tmp_path / "cwd").mkdir()
    monkeypatch.setenv("CONVCORR_SHARED", str(tmp_path / "empty"))
    monkeypatch.setattr(paths, "_REPO", tmp_path / "nowhere" / "repo")
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("CONVCORR_CACHE", str(tmp_path / "cache"))
    assert paths.shared_root() is None
    return tmp_path / "torch" / "hub" / "checkpoints"


def _offline(monkeypatch, calls):
    def no_network(url, *a, **k):
        calls.append(url)
        raise urllib.error.URLError(OSError(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)


def test_default_is_torchvision_without_the_shared_folder(no_shared, tmp_path):
    assert ax.default_alexnet_weights() == "torchvision"
    assert ax.default_alexnet_weights(weights_dir=tmp_path) == "caffe-q8"  # an explicit Caffe folder
    assert ax.torchvision_checkpoint_path() == no_shared / "alexnet-owt-7be5be79.pth"
    st = offline_weights("alexnet")
    ok, why = bool(st), st.where
    assert not ok and "alexnet-owt-7be5be79.pth" in why and "network" in why


def test_offline_without_shared_folder_says_in_one_line_how_to_provide_weights(no_shared, monkeypatch):
    calls = []
    _offline(monkeypatch, calls)
    with pytest.raises(WeightsUnavailable) as info:
        get_backbone("alexnet", device="cpu", cache=False)
    msg = str(info.value)
    assert calls == [ax.TORCHVISION_ALEXNET_URL]
    assert "\n" not in msg and isinstance(info.value, UserError)
    assert "URLError" in msg and "CONVCORR_SHARED" in msg and "weights/alexnet-caffe-q8" in msg
    assert f"alexnet-owt-7be5be79.pth into {no_shared}" in msg and "weights=" in msg
    # the same line from the library's front door, with its defaults
    img = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(WeightsUnavailable, match="CONVCORR_SHARED"):
        convcorr.correspond(img, img)


def test_a_cached_checkpoint_with_the_wrong_hash_is_refused(no_shared, monkeypatch):
    calls = []
    _offline(monkeypatch, calls)
    no_shared.mkdir(parents=True)
    torch.save({"features.0.weight": torch.zeros(64, 3, 11, 11)}, no_shared / "alexnet-owt-7be5be79.pth")
    assert hashlib.sha256((no_shared / "alexnet-owt-7be5be79.pth").read_bytes()).hexdigest()[:8] != "7be5be79"
    assert offline_weights("alexnet")  # present in the hub cache (checked when loaded)
    with pytest.raises(DataError, match="alexnet-owt-7be5be79.pth: sha256 does not start with 7be5be79"):
        get_backbone("alexnet", device="cpu", cache=False)
    assert calls == []  # the cached file is used (and checked), not downloaded again


def _torchvision_state_dict():
    shapes = {"features.0": (64, 3, 11, 11), "features.3": (192, 64, 5, 5), "features.6": (384, 192, 3, 3),
              "features.8": (256, 384, 3, 3), "features.10": (256, 256, 3, 3), "classifier.1": (4096, 9216),
              "classifier.4": (4096, 4096), "classifier.6": (1000, 4096)}
    g = torch.Generator().manual_seed(0)
    sd = {}
    for k, s in shapes.items():
        sd[k + ".weight"] = torch.randn(s, generator=g) * 0.01
        sd[k + ".bias"] = torch.zeros(s[0])
    return sd


def test_with_a_network_the_defaults_download_checked_torchvision_weights(no_shared, tmp_path, monkeypatch):
    # a stand-in for download.pytorch.org: a published file whose name carries its sha256 prefix
    sd = _torchvision_state_dict()
    src = tmp_path / "server.pth"
    torch.save(sd, src)
    url = f"https://example.org/alexnet-{hashlib.sha256(src.read_bytes()).hexdigest()[:8]}.pth"
    calls = []

    def download(u, dst, hash_prefix=None, progress=True):
        calls.append((u, hash_prefix))
        assert hashlib.sha256(src.read_bytes()).hexdigest().startswith(hash_prefix)  # what torch.hub checks
        (tmp_path / "dst").write_bytes(src.read_bytes())
        (tmp_path / "dst").replace(dst)

    monkeypatch.setattr(ax, "TORCHVISION_ALEXNET_URL", url)
    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    bb = get_backbone("alexnet", device="cpu", cache=False)
    assert bb.variant == "torchvision" and bb.input_size == 224 and calls == [(url, url[-12:-4])]
    assert torch.equal(bb.conv[3].weight, sd["features.8.weight"])
    img = (np.arange(80 * 96 * 3) % 251).astype(np.uint8).reshape(80, 96, 3)
    c = convcorr.correspond(img, img, matcher="nn", max_side=None)  # features "alexnet:conv4", the default
    assert c.forward.shape == (80, 96, 2) and len(calls) == 1  # downloaded once, then read from the hub cache


def test_with_the_shared_folder_the_default_stays_caffe(shared):
    assert ax.default_alexnet_weights() == "caffe-q8"
    bb = get_backbone("alexnet", device="cpu")
    assert bb.variant == "caffe" and bb.input_size == 227
    assert get_backbone("alexnet", device="cpu") is get_backbone("alexnet", device="cpu", weights="caffe-q8")
    st = offline_weights("alexnet")
    assert (bool(st), st.where) == (True, "shared/weights/alexnet-caffe-q8")
