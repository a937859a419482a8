"""PF-WILLOW pair list: a fixture written in the real test_pairs.csv layout (header, imageA, imageB,
XA1..XA10, YA1..YA10, XB1..XB10, YB1..YB10)."""
import numpy as np
import pytest
from PIL import Image

from convcorr.core.errors import DataError
from convcorr.datasets import DATASETS, load_dataset, load_pf_willow_pairs

HEADER = (["imageA", "imageB"] + [f"XA{i}" for i in range(1, 11)] + [f"YA{i}" for i in range(1, 11)]
          + [f"XB{i}" for i in range(1, 11)] + [f"YB{i}" for i in range(1, 11)])


def _row(a, b, xa, ya, xb, yb):
    return ",".join([a, b] + [f"{v:g}" for v in (*xa, *ya, *xb, *yb)])


def _write(path, rows):
    path.write_text(",".join(HEADER) + "\n" + "\n".join(rows) + "\n")
    return path


XA = np.arange(10) * 10.0 + 5      # 5, 15, ..., 95
YA = np.arange(10) * 3.0 + 20      # 20 .. 47
XB, YB = XA + 7, YA[::-1] + 1


@pytest.fixture
def csv_file(tmp_path):
    return _write(tmp_path / "test_pairs.csv", [
        _row("PF-dataset/car(G)/2008_000021.png", "PF-dataset/car(G)/2008_000052.png", XA, YA, XB, YB),
        _row("PF-dataset/duck(S)/060_0001.png", "PF-dataset/duck(S)/060_0007.png", YA, XA, YB, XB),
    ])


def test_pf_willow_layout(csv_file, tmp_path):
    pairs = load_pf_willow_pairs(csv_file)
    assert len(pairs) == 2
    p = pairs[0]
    assert p.source.category == p.target.category == "car(G)" and p.source.meta["object"] == "car"
    assert p.source.keypoint_names == tuple(f"kp{j}" for j in range(10))
    np.testing.assert_allclose(p.source.keypoints[:, 0], XA)   # XA1..XA10 are the x of the 10 source points
    np.testing.assert_allclose(p.source.keypoints[:, 1], YA)
    np.testing.assert_allclose(p.target.keypoints, np.stack([XB, YB], 1))
    np.testing.assert_allclose(p.target.bbox, [12, 21, 102, 48])  # keypoint extent (the HPF/CATs "bbox")
    assert len(p.common_keypoints()) == 10
    assert p.source.image_path == tmp_path / "PF-dataset/car(G)/2008_000021.png"
    assert pairs[1].source.category == "duck(S)"
    assert [q.source.category for q in load_pf_willow_pairs(csv_file, category="duck(S)")] == ["duck(S)"]
    assert "pf-willow" in DATASETS and len(load_dataset("pf-willow", annotations=csv_file)) == 2


def test_pf_willow_strip_components_and_images(csv_file, tmp_path):
    root = tmp_path / "PF-WILLOW"
    (root / "car(G)").mkdir(parents=True)
    (root / "duck(S)").mkdir(parents=True)
    for n in ("car(G)/2008_000021.png", "car(G)/2008_000052.png", "duck(S)/060_0001.png", "duck(S)/060_0007.png"):
        Image.fromarray(np.zeros((120, 110, 3), np.uint8)).save(root / n)
    pairs = load_pf_willow_pairs(csv_file, root=root, strip_components=1, check_images=True)
    assert pairs[0].target.image_path == root / "car(G)/2008_000052.png"
    assert pairs[0].target.load().shape == (120, 110, 3)
    with pytest.raises(DataError, match="image file not found"):
        load_pf_willow_pairs(csv_file, root=tmp_path / "elsewhere", check_images=True)


def test_pf_willow_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_pf_willow_pairs(tmp_path / "missing.csv")
    bad = _write(tmp_path / "short.csv", ["PF-dataset/car(G)/a.png,PF-dataset/car(G)/b.png,1,2,3"])
    with pytest.raises(DataError, match=r"short.csv:2: expected 2 image names and 40"):
        load_pf_willow_pairs(bad)
    nan = _write(tmp_path / "nan.csv", [_row("PF-dataset/car(G)/a.png", "PF-dataset/car(G)/b.png", XA, YA, XB,
                                            np.r_[YB[:9], np.nan])])
    with pytest.raises(DataError, match="nan.csv:2: non-finite"):
        load_pf_willow_pairs(nan)
    esc = _write(tmp_path / "esc.csv", [_row("../../etc/car(G)/a.png", "PF-dataset/car(G)/b.png", XA, YA, XB, YB)])
    with pytest.raises(DataError, match="escapes the data root"):
        load_pf_willow_pairs(esc)
    mixed = _write(tmp_path / "mixed.csv", [_row("PF-dataset/car(G)/a.png", "PF-dataset/duck(S)/b.png", XA, YA, XB,
                                                YB)])
    with pytest.raises(DataError, match="differs from target"):
        load_pf_willow_pairs(mixed)
