"""Brute force for EVERY registered backbone (and the zoo examples) and EVERY exposed layer: the traced
receptive-field geometry (size, stride, offset) equals the input support of the columns' gradients.

Generated from the registry (``BACKBONES`` + ``ZOO_EXAMPLES``), never listed by hand. Each backbone is a randomly
initialised float64 copy in which every path is active (positive conv / linear weights, max pooling replaced by
average pooling of the same geometry, identity-like batch norm), so the gradient support of a column is exactly its
receptive field. For a regular layer, one backward pass gives the supports of columns (x=0, y=L) and (x=1, y=L-1)
at an input just large enough that column 0's far edge and column L's near edge are not clipped:
hi(0) = offset + (size - 1) / 2, lo(L) = offset + stride * L - (size - 1) / 2, stride = hi(1) - hi(0)
= lo(L) - lo(L-1) (x edges from the first, y edges from the second: x and y share one geometry). A global layer (ViT blocks, squeeze-excitation) must depend on every input pixel and its
patch grid must tile the input: offset + stride * (w - 1) + (stride - 1) / 2 = W - 1.
"""
import math

import pytest
import torch
import torch.nn as nn

from convcorr.backbones import BACKBONES, ZOO_EXAMPLES, get_backbone

SPECS = list(BACKBONES) + list(ZOO_EXAMPLES)


def _layers(spec):
    if spec in BACKBONES:
        return list(BACKBONES[spec].layer_names)
    pytest.importorskip(spec.split(":")[0])
    return list(get_backbone(spec, pretrained=False, device="cpu").layer_names)


def _cases():
    out = []
    for spec in SPECS:
        try:
            layers = _layers(spec)
        except Exception:  # library missing: one skipped case
            out.append(pytest.param(spec, None, marks=pytest.mark.skip(reason=f"{spec}: library not installed")))
            continue
        out += [pytest.param(spec, l, id=f"{spec}-{l}") for l in layers]
    return out


_COPIES: dict = {}


def _positive_copy(spec):
    if spec in _COPIES:
        return _COPIES[spec]
    torch.manual_seed(0)
    bb = get_backbone(spec, pretrained=False, device="cpu", cache=False)
    for m in bb.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.uniform_(m.weight, 1e-4, 1e-3)
            if m.bias is not None:
                nn.init.constant_(m.bias, 1e-3)
        elif isinstance(m, (nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)) or type(m).__name__.startswith(
                ("LayerNorm", "BatchNormAct")):
            if getattr(m, "weight", None) is not None:
                nn.init.uniform_(m.weight, 0.5, 1.5)
            if getattr(m, "bias", None) is not None:
                nn.init.constant_(m.bias, 0.01)
            if getattr(m, "running_mean", None) is not None:
                m.running_mean.zero_()
                m.running_var.fill_(1.0)
        if isinstance(m, nn.MaxPool2d):
            m.forward = (lambda mp: lambda x: torch.nn.functional.avg_pool2d(
                x, mp.kernel_size, mp.stride, mp.padding, ceil_mode=mp.ceil_mode))(m)
    for name, p in bb.named_parameters():  # layer scales, positional / class tokens: positive
        if p.ndim <= 1 and ("gamma" in name or "scale" in name):
            p.data.fill_(1.0)
    bb = bb.double().eval()
    _COPIES.clear()  # keep one copy alive at a time (memory)
    _COPIES[spec] = bb
    return bb


def _supports(bb, layer, size, diag):
    """x-extent and y-extent of the input support of columns (c, r) in ``diag`` (one backward pass: batch item i
    holds the same image and back-propagates column diag[i])."""
    x = (torch.rand(1, 3, size, size, dtype=torch.float64) + 0.1).repeat(len(diag), 1, 1, 1).requires_grad_(True)
    out = bb(x, [layer])[layer]
    sum(out[i, :, r, c].sum() for i, (c, r) in enumerate(diag)).backward()
    res = []
    for i in range(len(diag)):
        g = x.grad[i].abs().sum(0)
        xs = torch.nonzero(g.sum(0) > 0).flatten()
        ys = torch.nonzero(g.sum(1) > 0).flatten()
        res.append(((int(xs.min()), int(xs.max())), (int(ys.min()), int(ys.max()))))
    return res, out.shape


@pytest.mark.parametrize("spec,layer", _cases())
def test_traced_rf_matches_gradient_support(spec, layer):
    bb = _positive_copy(spec)
    base = bb.rf(layer, bb.input_size)
    if base.is_global:
        size = 64
        g = bb.rf(layer, size)
        assert g.is_global and math.isinf(g.size)
        ((sx, sy),), shp = _supports(bb, layer, size, [(0, 0)])
        assert sx == (0, size - 1) and sy == (0, size - 1), "a global layer must see the whole image"
        # its columns' anchors (patch / pre-mixing rf centres) form a grid over the input: ViT patches tile it
        # (offset (p - 1) / 2), squeeze-excitation layers keep their conv grid (offset in [0, stride))
        assert 0 <= g.offset < g.stride
        last = g.offset + g.stride * (shp[-1] - 1)
        assert size - 1 - g.stride < last <= size - 1
        if spec.startswith("timm:vit"):
            assert g.offset == (g.stride - 1) / 2 and last + (g.stride - 1) / 2 == size - 1
        return
    # input just large enough: column 0's far edge and column L's near edge inside, >= 3 columns; even (TF "same"
    # geometry depends on the parity: the trace is asked at this very size)
    size = int(math.ceil(base.size / 2 + abs(base.offset) + 2 * base.stride + 6))
    size += size % 2
    g = bb.rf(layer, size)
    with torch.no_grad():
        shp = bb(torch.zeros(1, 3, size, size, dtype=torch.float64), [layer])[layer].shape
    L = min(shp[-1], shp[-2]) - 1
    assert L >= 2, (spec, layer, shp)
    # columns (x=0, y=L) and (x=1, y=L-1): x gives the far edges hi(0), hi(1), y the near edges lo(L), lo(L-1)
    ((a_x, a_y), (b_x, b_y)), _ = _supports(bb, layer, size, [(0, L), (1, L - 1)])
    hi0, hi1, loL, loL1 = a_x[1], b_x[1], a_y[0], b_y[0]
    assert hi0 < size - 1 and loL1 > 0, "edges clipped: input too small for the check"
    assert hi1 - hi0 == g.stride and loL - loL1 == g.stride, (spec, layer, g)
    offset = (hi0 + loL - g.stride * L) / 2
    rf = hi0 - loL + g.stride * L + 1
    assert (rf, offset) == (g.size, g.offset), (spec, layer, g)
