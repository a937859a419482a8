"""The on-disk feature cache (convcorr.features.cache.cached): keys, integrity, concurrency, unusable folders."""
import multiprocessing as mp
import warnings

import numpy as np
import pytest
import torch

from convcorr.features.cache import (FEATURE_CODE_VERSION, cache_path, cached, read_cache_entry, weights_digest,
                                     write_cache_entry)


def backbone_cache_tag(backbone, layer: str, size: int, margin: float) -> str:
    """A cache name of a backbone layer's features: backbone name, weights digest, layer, input size, crop margin."""
    return f"{backbone.name}-w{weights_digest(backbone)}-{layer}-s{size}-m{margin:g}"


class _Net(torch.nn.Module):
    name = "toy"

    def __init__(self, w):
        super().__init__()
        self.lin = torch.nn.Linear(2, 2)
        with torch.no_grad():
            self.lin.weight.fill_(w)
            self.lin.bias.zero_()


def _counting(value):
    calls = []

    def compute():
        calls.append(1)
        return np.asarray(value, dtype=np.float32)

    return compute, calls


def test_changed_weights_give_new_entries(tmp_path):
    a, b, a2 = _Net(1.0), _Net(2.0), _Net(1.0)
    assert weights_digest(a) == weights_digest(a2) != weights_digest(b)
    ta, tb = backbone_cache_tag(a, "conv4", 227, 0.1), backbone_cache_tag(b, "conv4", 227, 0.1)
    assert ta != tb and ta.startswith("toy-w") and ta.endswith("-conv4-s227-m0.1")
    comp, calls = _counting([1, 2])
    cached("face/x", ta, comp, "d1", root=tmp_path)
    cached("face/x", tb, comp, "d1", root=tmp_path)
    assert len(calls) == 2  # other weights: not reused
    cached("face/x", backbone_cache_tag(a2, "conv4", 227, 0.1), comp, "d1", root=tmp_path)
    assert len(calls) == 2  # identical weights in another object: reused
    # every part of the key matters: layer, input size, crop margin, content digest, code version
    keys = [backbone_cache_tag(a, "conv3", 227, 0.1), backbone_cache_tag(a, "conv4", 224, 0.1),
            backbone_cache_tag(a, "conv4", 227, 0.2)]
    assert len({ta, *keys}) == 4
    paths = {cache_path("face/x", ta, "d1", tmp_path), cache_path("face/x", ta, "d2", tmp_path),
             cache_path("face/x", ta, "d1", tmp_path, version=FEATURE_CODE_VERSION + "x")}
    assert len(paths) == 3
    # an in-place change of the same object's weights changes its digest
    d0 = weights_digest(a)
    with torch.no_grad():
        a.lin.weight.add_(1.0)
    assert weights_digest(a) != d0


def test_sanitised_names_never_collide(tmp_path):
    comp1, _ = _counting([1])
    comp2, _ = _counting([2])
    v1 = cached("face/a b", "x", comp1, root=tmp_path)
    v2 = cached("face/a_b", "x", comp2, root=tmp_path)  # same sanitised folder, different key
    assert v1.tolist() == [1] and v2.tolist() == [2]
    assert cached("face/a b", "x", comp2, root=tmp_path).tolist() == [1]


@pytest.mark.parametrize("damage", [b"", b"garbage", b"PK\x03\x04truncated", "other-key"])
def test_corrupt_entry_is_rebuilt(tmp_path, damage):
    comp, calls = _counting([[1, 2], [3, 4]])
    cached("i", "n", comp, "d", root=tmp_path)
    p = cache_path("i", "n", "d", tmp_path)
    if damage == "other-key":
        write_cache_entry(p, "some other key", np.zeros(3))
    else:
        p.write_bytes(damage if damage else p.read_bytes()[:40])
    v = cached("i", "n", comp, "d", root=tmp_path)
    assert v.tolist() == [[1, 2], [3, 4]] and len(calls) == 2
    assert read_cache_entry(p, "v%s|i|n|d" % FEATURE_CODE_VERSION).tolist() == [[1, 2], [3, 4]]  # rewritten
    assert cached("i", "n", comp, "d", root=tmp_path).tolist() == [[1, 2], [3, 4]] and len(calls) == 2


def test_unwritable_cache_degrades_with_a_warning(tmp_path, monkeypatch):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    comp, calls = _counting([5])
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert cached("i", "n", comp, root=blocker / "cache").tolist() == [5]  # a file in the way
        monkeypatch.setenv("CONVCORR_CACHE", str(blocker / "env-cache"))
        assert cached("i", "n", comp).tolist() == [5]  # cache_dir() itself cannot be made
    assert len(calls) == 2
    assert any("without caching" in str(x.message) for x in w)


def _hammer(args):
    root, seed = args
    rng = np.random.default_rng(seed)
    from pathlib import Path

    root = Path(root)
    for i in range(200):
        k = int(rng.integers(0, 4))
        value = np.full((64, 33), k, np.float32)
        p = cache_path(f"inst{k}", "feat", None, root)
        assert write_cache_entry(p, f"v{FEATURE_CODE_VERSION}|inst{k}|feat|", value)
        got = cached(f"inst{k}", "feat", lambda: value, root=root)
        assert got.shape == (64, 33) and np.all(got == k)
    return True


def test_three_processes_x_200_writes_of_the_same_keys(tmp_path):
    ctx = mp.get_context("fork")
    with ctx.Pool(3) as pool:
        assert pool.map(_hammer, [(str(tmp_path), s) for s in range(3)]) == [True] * 3
    files = sorted((tmp_path / "features").rglob("*"))
    entries = [f for f in files if f.is_file()]
    assert len(entries) == 4 and all(f.suffix == ".npz" for f in entries)  # no temporary left behind
    for k in range(4):
        v = read_cache_entry(cache_path(f"inst{k}", "feat", None, tmp_path), f"v{FEATURE_CODE_VERSION}|inst{k}|feat|")
        assert v is not None and np.all(v == k)


def test_backbone_feature_plugins_key_by_weights_digest():
    from convcorr.backbones import AlexNet
    from convcorr.features.backbone import BackboneLayerFeatures

    a, b = AlexNet(weights=None), AlexNet(weights=None)  # two random initialisations, same name and variant
    ka, kb = BackboneLayerFeatures(a, "conv4").cache_key, BackboneLayerFeatures(b, "conv4").cache_key
    assert ka != kb and f"w{weights_digest(a)}" in ka
    assert BackboneLayerFeatures(a, "conv4").cache_key == ka
