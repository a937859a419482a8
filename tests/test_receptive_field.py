import numpy as np
import pytest
import torch
import torch.nn as nn

from convcorr.backbones import get_backbone
from convcorr.core.geometry import RFGeometry
from convcorr.numerics.rf.compose import compose_rf, compute_rf, format_rf_table

PAPER_TABLE1 = {"conv1": (11, 4), "conv2": (51, 8), "conv3": (99, 16), "conv4": (131, 16), "conv5": (163, 16),
                "pool5": (195, 32)}


def test_compose_rf_by_hand():
    # conv 3x3 s1 p1, then maxpool 2x2 s2, then conv 3x3 s1 p0
    ops = [nn.Conv2d(1, 1, 3, 1, 1), nn.MaxPool2d(2, 2), nn.Conv2d(1, 1, 3, 1, 0)]
    g = compose_rf(ops)
    # sizes: 3 -> 3 + 1*1 = 4 -> 4 + 2*2 = 8; strides 1, 2, 2; offsets 0 -> 0.5 -> 0.5 + 1*2 = 2.5
    assert (g.size, g.stride, g.offset) == (8, 2, 2.5)
    g = compose_rf([nn.Conv2d(1, 1, 3, 1, padding=2, dilation=2)])
    assert (g.size, g.stride, g.offset) == (5, 1, 0.0)


def test_compute_rf_input_forms_and_errors():
    seq = nn.Sequential(nn.Conv2d(1, 1, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(1, 1, 3, padding="same"))
    g = compute_rf(seq)
    assert list(g) == ["0", "1", "2", "3"] and g["1"] == g["0"]
    assert (g["3"].size, g["3"].stride, g["3"].offset) == (8, 2, 1.5)
    assert compute_rf(list(seq)) == g
    assert compute_rf([("a", seq)])["a"] == g["3"]
    with pytest.raises(ValueError, match="Upsample"):
        compute_rf([nn.Upsample(scale_factor=2)])
    with pytest.raises(ValueError, match="non-square"):
        compute_rf([nn.Conv2d(1, 1, (3, 5))])


def test_alexnet_reproduces_paper_table1():
    bb = get_backbone("alexnet", pretrained=False, device="cpu")
    for layer, (size, stride) in PAPER_TABLE1.items():
        g = bb.rf(layer)
        assert (g.size, g.stride) == (size, stride), layer
    # offsets by hand: conv1 (11-1)/2 = 5; pool1 5 + 1*4 = 9; conv2 (pad 2) 9 + (2-2)*8 = 9;
    # pool2 9 + 8 = 17; conv3..5 (pad 1) stay 17; pool5 17 + 16 = 33
    assert [bb.rf(l).offset for l in PAPER_TABLE1] == [5, 9, 17, 17, 17, 33]


def _positive_copy(name):
    """Randomly initialised float64 copy whose every path is active: positive conv weights (no ReLU / ReLU6 cuts
    the gradient support; float64 so products over many layers do not underflow) and max pooling replaced by
    average pooling of the same geometry (max routes gradients to a single input)."""
    torch.manual_seed(0)
    bb = get_backbone(name, pretrained=False, device="cpu", cache=False)
    for m in bb.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.uniform_(m.weight, 1e-4, 1e-3)
            if m.bias is not None:
                nn.init.constant_(m.bias, 1e-3)
        if isinstance(m, nn.MaxPool2d):
            m.forward = (lambda mp: lambda x: torch.nn.functional.avg_pool2d(
                x, mp.kernel_size, mp.stride, mp.padding, ceil_mode=mp.ceil_mode))(m)
    return bb.double().eval()


@pytest.fixture(scope="module")
def positive_copies():
    return {name: _positive_copy(name) for name in ("alexnet",)}


# the brute-force gradient-support check for every registered backbone and layer: tests/test_backbone_geometry.py


def test_perturbing_one_pixel_changes_exactly_the_columns_whose_rf_contains_it(positive_copies):
    bb = positive_copies["alexnet"]
    g = bb.rf("conv2")
    x = torch.rand(1, 3, 227, 227, dtype=torch.float64) + 0.1
    with torch.no_grad():
        a = bb(x, ["conv2"])["conv2"]
        x2 = x.clone()
        x2[0, :, 100, 60] += 10.0  # pixel (x=60, y=100)
        b = bb(x2, ["conv2"])["conv2"]
    changed = ((a - b).abs().amax(1)[0] > 0).numpy()  # (h, w)
    h, w = changed.shape
    cols, rows = np.meshgrid(np.arange(w), np.arange(h))
    cr = np.stack([cols.ravel(), rows.ravel()], 1)
    inside = g.rf_contains(cr, np.array([[60.0, 100.0]])).reshape(h, w)
    np.testing.assert_array_equal(changed, inside)


def test_grid_sizes_match_geometry_alexnet():
    bb = get_backbone("alexnet", pretrained=False, device="cpu")
    with torch.no_grad():
        acts = bb(torch.zeros(1, 3, 227, 227))
    for layer in ("conv1", "conv2", "conv3", "conv5", "pool5"):
        h = acts[layer].shape[-1]
        g = bb.rf(layer)
        # the rf centres of the first and last columns lie inside the 227-pixel input, symmetrically
        assert g.offset >= 0 and g.offset + g.stride * (h - 1) <= 226
        assert g.offset + g.stride * (h - 1) == pytest.approx(226 - g.offset)


def test_pixel_to_column_nearest_on_alexnet_conv4():
    bb = get_backbone("alexnet", pretrained=False, device="cpu")
    xy = np.random.default_rng(0).uniform(20, 200, (50, 2))
    g = bb.rf("conv4")
    cr = g.pixel_to_column(xy, (13, 13))
    assert np.all(np.abs(g.column_to_pixel(cr) - xy) <= g.stride / 2 + 1e-9)


def test_grid_sizes_efficientnet():
    bb = get_backbone("efficientnet_lite0", pretrained=False, device="cpu")
    with torch.no_grad():
        acts = bb(torch.zeros(1, 3, 224, 224))
    for layer, a in acts.items():
        g = bb.rf(layer)
        # "same"-padded stride-2 convs on even sizes: column 0 centred on pixel 0, columns every stride
        assert g.offset == 0 and a.shape[-1] == 224 // g.stride, layer
        assert g.offset + g.stride * (a.shape[-1] - 1) == 224 - g.stride


def test_cli_rf_prints_table():
    from click.testing import CliRunner

    from convcorr.cli import cli

    res = CliRunner().invoke(cli, ["rf", "--backbone", "alexnet"])
    assert res.exit_code == 0, res.output
    assert "pool5" in res.output and "195" in res.output and "6x6" in res.output
    res = CliRunner().invoke(cli, ["rf", "--backbone", "efficientnet_lite0", "--input-size", "224"])
    assert res.exit_code == 0, res.output
    assert "head" in res.output and "7x7" in res.output and "1280" in res.output


def test_format_rf_table():
    txt = format_rf_table(get_backbone("alexnet", pretrained=False, device="cpu"))
    assert "conv4" in txt and "131" in txt and "13x13" in txt
    lines = txt.splitlines()
    row = next(l for l in lines if l.startswith("conv4")).split()
    assert row == ["conv4", "131", "16", "17.0", "13x13", "384"]
    with pytest.raises(KeyError):
        compute_rf([("a", nn.Conv2d(1, 1, 3))])["b"]


# ---- tracing along the data flow (issue 8) ------------------------------------------------------------------
from convcorr.numerics.rf.trace import GeometryError, trace_geometry  # noqa: E402


def _trace(module, size=32, name="out"):
    module.eval()
    return trace_geometry(lambda x: {name: module(x)}, torch.zeros(1, 3, size, size))[name]


class _Bottleneck(nn.Module):
    """torchvision layout: main path 1x1 -> 3x3 stride 2 -> 1x1, shortcut `downsample` 1x1 stride 2 registered
    AFTER the main path (registration order would chain it in)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2, self.conv3 = nn.Conv2d(3, 4, 1), nn.Conv2d(4, 4, 3, 2, 1), nn.Conv2d(4, 8, 1)
        self.downsample = nn.Conv2d(3, 8, 1, 2)

    def forward(self, x):
        return torch.relu(self.conv3(torch.relu(self.conv2(torch.relu(self.conv1(x))))) + self.downsample(x))


def test_residual_shortcut_never_enlarges_stride():
    blk = _Bottleneck()
    g = _trace(blk)
    assert (g.size, g.stride, g.offset) == (3, 2, 0.0)  # by hand: 3x3 s2 p1 -> window [2c-1, 2c+1]
    assert compute_rf([("b", blk)])["b"].stride == 4  # registration order chains the shortcut: wrong
    two = nn.Sequential(_Bottleneck(), nn.Conv2d(8, 3, 1), _Bottleneck())
    g = _trace(two)
    assert (g.size, g.stride, g.offset) == (7, 4, 0.0)  # 3 + 2 * 2; stride 2 * 2


def test_concat_branches_union_and_fractional_offsets():
    class Inc(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 2, 1), nn.Conv2d(3, 2, 5, padding=2)

        def forward(self, x):
            return torch.cat([self.a(x), self.b(x)], 1)

    assert _trace(Inc()) == RFGeometry(5, 1, 0.0)
    g = _trace(nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(3, 3, 3, padding=1)))
    assert (g.size, g.stride, g.offset) == (6, 2, 0.5)  # pool: [2c, 2c+1], centre 2c + 0.5, then +- 1 cell


def test_tf_same_asymmetric_padding_exact():
    import torch.nn.functional as F

    conv = nn.Conv2d(3, 3, 3, 2)
    f = lambda x: conv(F.pad(x, (0, 1, 0, 1)))  # TF "same" for stride 2 on an even size
    g = trace_geometry(lambda x: {"o": f(x)}, torch.zeros(1, 3, 16, 16))["o"]
    assert (g.size, g.stride, g.offset) == (3, 2, 1.0)
    f = lambda x: conv(F.pad(x, (1, 1, 1, 1)))
    g = trace_geometry(lambda x: {"o": f(x)}, torch.zeros(1, 3, 15, 15))["o"]
    assert (g.size, g.stride, g.offset) == (3, 2, 0.0)


def test_global_mixing_reports_global_with_patch_geometry():
    import torch.nn.functional as F

    class SE(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(3, 3, 3, 2, 1)

        def forward(self, x):
            y = self.c(x)
            return y * torch.sigmoid(y.mean((2, 3), keepdim=True))

    g = _trace(SE())
    assert g.is_global and g.size == float("inf") and (g.stride, g.offset) == (2, 0.0)

    class TinyViT(nn.Module):
        def __init__(self, p=4):
            super().__init__()
            self.p, self.embed = p, nn.Conv2d(3, 8, p, p)
            self.cls = nn.Parameter(torch.zeros(1, 1, 8))
            self.qkv, self.proj = nn.Linear(8, 24), nn.Linear(8, 8)

        def forward(self, x):
            t = self.embed(x).flatten(2).transpose(1, 2)
            t = torch.cat([self.cls.expand(t.shape[0], -1, -1), t], 1)
            q, k, v = self.qkv(t).reshape(t.shape[0], t.shape[1], 3, 2, 4).permute(2, 0, 3, 1, 4).unbind(0)
            a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(t.shape)
            t = t + self.proj(a)
            h = x.shape[-2] // self.p
            return t[:, 1:].reshape(t.shape[0], h, h, 8).permute(0, 3, 1, 2)

    g = _trace(TinyViT(), 32)
    assert g.is_global and g.stride == 4 and g.offset == 1.5  # (p - 1) / 2, exact
    g = _trace(TinyViT(p=3), 30)
    assert g.is_global and g.stride == 3 and g.offset == 1.0


def test_unfollowable_architectures_raise():
    with pytest.raises(GeometryError, match="upsample"):
        _trace(nn.Sequential(nn.Conv2d(3, 3, 3), nn.Upsample(scale_factor=2)))

    class Windowed(nn.Module):  # softmax mixing inside 4x4 windows only (like windowed attention)
        def forward(self, x):
            n, c, h, w = x.shape
            t = x.reshape(n, c, h // 4, 4, w // 4, 4).permute(0, 1, 2, 4, 3, 5).reshape(n, c, h // 4, w // 4, 16)
            t = torch.softmax(t, -1).reshape(n, c, h // 4, w // 4, 4, 4).permute(0, 1, 2, 4, 3, 5)
            return t.reshape(n, c, h, w)

    with pytest.raises(GeometryError, match="smaller than the image"):
        _trace(Windowed(), 16)
    with pytest.raises(GeometryError, match="1x1 grid"):
        _trace(nn.Conv2d(3, 3, 8), 8)


def test_backbone_rf_uses_trace_and_caches():
    bb = get_backbone("alexnet", pretrained=False, device="cpu")
    assert bb.geometries(227)["conv4"] == RFGeometry(131, 16, 17.0)
    assert bb.rf("conv4", 500) == bb.rf("conv4")  # symmetric padding: independent of the input size
    with pytest.raises(KeyError, match="conv9"):
        bb.rf("conv9")
    g = bb.rf("pool5", 100)  # pool5 is 2x2 at 100 px: still followed
    assert (g.size, g.stride) == (195, 32)
