import numpy as np
import pytest
import torch
import torch.nn as nn

from convcorr.backbones import get_backbone
from convcorr.receptive_field import compose_rf, compute_rf, format_rf_table

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


def test_alexnet_reproduces_paper_table1():
    bb = get_backbone("alexnet", pretrained=False, device="cpu")
    for layer, (size, stride) in PAPER_TABLE1.items():
        g = bb.rf(layer)
        assert (g.size, g.stride) == (size, stride), layer
    # offsets by hand: conv1 (11-1)/2 = 5; pool1 5 + 1*4 = 9; conv2 (pad 2) 9 + (2-2)*8 = 9;
    # pool2 9 + 8 = 17; conv3..5 (pad 1) stay 17; pool5 17 + 16 = 33
    assert [bb.rf(l).offset for l in PAPER_TABLE1] == [5, 9, 17, 17, 17, 33]


def _empirical_rf(model_fn, size, layer_out_hw_center):
    """Gradient of one output column w.r.t. the input: extent of the nonzero support along x."""
    x = torch.randn(1, 3, size, size, requires_grad=True)
    out = model_fn(x)
    r, c = layer_out_hw_center
    out[0, :, r, c].sum().backward()
    g = x.grad[0].abs().sum(0)
    cols = torch.nonzero(g.sum(0) > 0).flatten()
    return int(cols.min()), int(cols.max())


@pytest.mark.parametrize("name,layer", [("alexnet", "conv2"), ("alexnet", "conv5"), ("alexnet", "pool5"),
                                        ("efficientnet_lite0", "stage3")])
def test_rf_matches_gradient_support(name, layer):
    torch.manual_seed(0)
    bb = get_backbone(name, pretrained=False, device="cpu", cache=False)
    # random init with all-positive-ish weights so no ReLU kills the support
    for m in bb.modules():
        if isinstance(m, nn.Conv2d):  # small positive weights: no ReLU / ReLU6 cuts the support
            nn.init.uniform_(m.weight, 1e-4, 1e-3)
            if m.bias is not None:
                nn.init.constant_(m.bias, 1e-3)
        if isinstance(m, nn.MaxPool2d):  # max pooling routes gradients to one input: use avg (same geometry)
            m.forward = (lambda mp: lambda x: torch.nn.functional.avg_pool2d(
                x, mp.kernel_size, mp.stride, mp.padding, ceil_mode=mp.ceil_mode))(m)
    bb.train(False)
    g = bb.rf(layer)
    size = 259
    fn = lambda x: bb(x, [layer])[layer]
    with torch.no_grad():
        h = fn(torch.zeros(1, 3, size, size)).shape[-1]
    c = h // 2
    lo, hi = _empirical_rf(fn, size, (c, c))
    centre = g.offset + g.stride * c
    assert hi - lo + 1 == g.size
    assert (lo + hi) / 2 == pytest.approx(centre)


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


def test_columns_for_points_nearest():
    bb = get_backbone("alexnet", pretrained=False, device="cpu")
    xy = np.random.default_rng(0).uniform(20, 200, (50, 2))
    g = bb.rf("conv4")
    cr = bb.columns_for_points("conv4", xy, (13, 13))
    assert np.all(np.abs(g.column_to_pixel(cr) - xy) <= g.stride / 2 + 1e-9)


def test_format_rf_table():
    txt = format_rf_table(get_backbone("alexnet", pretrained=False, device="cpu"))
    assert "conv4" in txt and "131" in txt and "13x13" in txt
    with pytest.raises(KeyError):
        compute_rf([("a", nn.Conv2d(1, 1, 3))])["b"]
