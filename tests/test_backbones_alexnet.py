"""AlexNet weight loading: caffe-q8 file validation, the parsed-weights cache, checked torchvision checkpoints."""
import hashlib
import warnings

import numpy as np
import pytest
import torch

from convcorr.backbones import alexnet as ax
from convcorr.core.errors import DataError


def _tiny_folder(tmp_path, **override):
    """A weights folder with correctly sized conv1 blobs (others absent) in the q8 text format."""
    d = tmp_path / "w"
    d.mkdir(exist_ok=True)
    files = {"conv1_wt.txt": " ".join(["1"] * (96 * 3 * 11 * 11)), "conv1_bias.txt": " ".join(["2"] * 96)}
    files.update(override)
    for k, v in files.items():
        (d / k).write_text(v)
    return d


def test_parse_and_validate(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVCORR_CACHE", str(tmp_path / "cache"))
    w = ax.load_caffe_q8(_tiny_folder(tmp_path))
    assert w["conv1_wt"].shape == (96, 3, 11, 11) and np.all(w["conv1_wt"] == 1 / 128)
    assert w["conv1_bias"].shape == (96,) and np.all(w["conv1_bias"] == 2 / 128)


@pytest.mark.parametrize("name,text,msg", [
    ("conv1_wt.txt", "1 2 3", r"conv1_wt.txt: 3 values, expected 96x3x11x11"),
    ("conv1_bias.txt", " ".join(["1"] * 95), r"conv1_bias.txt: bias of 95 values, expected 96"),
    ("conv2_bias.txt", "1 2 x 4", r"conv2_bias.txt: malformed weight file"),
    ("fc8_bias.txt", "99999999999999999999999", r"fc8_bias.txt: malformed weight file"),
])
def test_bad_weight_files_name_the_file(tmp_path, monkeypatch, name, text, msg):
    monkeypatch.setenv("CONVCORR_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataError, match=msg):
        ax.load_caffe_q8(_tiny_folder(tmp_path, **{name: text}))


def test_weights_cache_is_keyed_by_content_and_survives_corruption(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVCORR_CACHE", str(tmp_path / "cache"))
    d = _tiny_folder(tmp_path)
    ax.load_caffe_q8(d)
    caches = sorted((tmp_path / "cache").glob("alexnet-caffe-q8-*.npz"))
    assert len(caches) == 1
    # a corrupt cache file no longer crashes later runs: it is re-parsed and rewritten
    caches[0].write_bytes(b"PK\x03\x04 garbage")
    w = ax.load_caffe_q8(d)
    assert np.all(w["conv1_bias"] == 2 / 128)
    with np.load(caches[0]) as z:
        assert set(z.files) == {"conv1_wt", "conv1_bias"}
    # changed content (same size) -> a new cache entry with the new values
    (d / "conv1_bias.txt").write_text(" ".join(["3"] * 96))
    w = ax.load_caffe_q8(d)
    assert np.all(w["conv1_bias"] == 3 / 128)
    assert len(list((tmp_path / "cache").glob("alexnet-caffe-q8-*.npz"))) == 2
    assert not list((tmp_path / "cache").glob("*.tmp"))


def test_unwritable_weights_cache_only_warns(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("CONVCORR_CACHE", str(blocker / "cache"))  # a file in the way
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        w = ax.load_caffe_q8(_tiny_folder(tmp_path))
    assert w["conv1_wt"].shape == (96, 3, 11, 11)


def _checkpoint(tmp_path, obj):
    p = tmp_path / "tmp.pth"
    torch.save(obj, p)
    sha = hashlib.sha256(p.read_bytes()).hexdigest()
    name = f"model-{sha[:8]}.pth"
    p.rename(tmp_path / name)
    return f"https://example.org/{name}"


def test_load_checkpoint_hash_and_weights_only(tmp_path):
    url = _checkpoint(tmp_path, {"w": torch.ones(3)})
    sd = ax.load_checkpoint(url, model_dir=tmp_path)
    assert torch.equal(sd["w"], torch.ones(3))
    # same name, other content: the hash prefix in the name no longer matches
    name = url.rsplit("/", 1)[1]
    torch.save({"w": torch.zeros(3)}, tmp_path / name)
    with pytest.raises(DataError, match=f"{name}: sha256 does not start with"):
        ax.load_checkpoint(url, model_dir=tmp_path)


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_load_checkpoint_refuses_pickled_code(tmp_path, capsys):
    url = _checkpoint(tmp_path, {"w": _Evil()})  # correct hash, but not weights-only content
    with pytest.raises(DataError, match="weights_only=True"):
        ax.load_checkpoint(url, model_dir=tmp_path)
    assert "this must never run" not in capsys.readouterr().out
