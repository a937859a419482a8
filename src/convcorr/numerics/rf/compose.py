"""Receptive-field geometry (paper Table 1).

Backbones get their geometry from :func:`trace_geometry` (module :mod:`convcorr.numerics.rf.trace`), which follows the
actual computation (residual blocks along their main path, concatenations, token reshapes, attention -> global)
and raises :class:`GeometryError` where it cannot. The functions below compose the classic recursion for a
plain chain of convolutions / poolings given in order (no branches); they are kept for hand-built chains.

For a chain of convolutions / poolings with kernel k, stride s, padding p and
dilation d (effective kernel ``ke = d * (k - 1) + 1``) the recursion is::

    size   <- size + (ke - 1) * jump
    offset <- offset + ((ke - 1) / 2 - p) * jump
    jump   <- jump * s

starting from ``size = 1, jump = 1, offset = 0`` (a single input pixel whose
centre is at x = 0). ``offset`` is the input-pixel coordinate of the centre of
output column 0, ``jump`` the stride. Pointwise layers (ReLU, BatchNorm, LRN,
1x1 convolutions) leave the geometry unchanged; residual additions do not enlarge
the receptive field beyond the longest path, which is the chain itself.
"""
from __future__ import annotations

from typing import Iterable

import torch.nn as nn

from ...core.geometry import RFGeometry
from .trace import GeometryError

_SPATIAL = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.LPPool2d)
# modules that change the spatial layout in ways this recursion does not model
_UNSUPPORTED = (nn.ConvTranspose2d, nn.Upsample, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Fold, nn.Unfold,
                nn.PixelShuffle, nn.PixelUnshuffle, nn.FractionalMaxPool2d)


def _pair(v) -> int:
    if isinstance(v, (tuple, list)):
        if len(set(v)) != 1:
            raise ValueError(f"non-square kernel/stride/padding {v} is not supported")
        return int(v[0])
    return int(v)


def spatial_ops(module: nn.Module) -> list[nn.Module]:
    """Conv/pool leaf modules of ``module`` in registration (= execution) order.

    Raises:
        ValueError: for modules whose geometry is not a conv/pool chain (transposed convs, upsampling,
            adaptive pooling, ...).
    """
    bad = [type(m).__name__ for m in module.modules() if isinstance(m, _UNSUPPORTED)]
    if bad:
        raise ValueError(f"cannot compute the receptive field through {sorted(set(bad))}")
    return [m for m in module.modules() if isinstance(m, _SPATIAL)]


def compose_rf(ops: Iterable[nn.Module], start: RFGeometry = RFGeometry(1, 1, 0.0)) -> RFGeometry:
    """Geometry after applying the conv/pool modules ``ops`` (in order) on top of ``start``."""
    size, jump, offset = float(start.size), float(start.stride), float(start.offset)
    for m in ops:
        k, s = _pair(m.kernel_size), _pair(m.stride if m.stride is not None else m.kernel_size)
        pad = getattr(m, "padding", 0)
        d = _pair(getattr(m, "dilation", 1))
        ke = d * (k - 1) + 1
        if isinstance(pad, str):
            if pad == "valid":
                p = 0
            elif pad == "same" and s == 1 and (ke - 1) % 2 == 0:
                p = (ke - 1) // 2
            else:
                raise ValueError(f"padding={pad!r} of {m} is not supported for rf computation")
        else:
            p = _pair(pad)
        size += (ke - 1) * jump
        offset += ((ke - 1) / 2.0 - p) * jump
        jump *= s
    return RFGeometry(size=int(size) if size.is_integer() else size,
                      stride=int(jump) if jump.is_integer() else jump, offset=offset)


def compute_rf(stages) -> dict[str, RFGeometry]:
    """Geometry of every named stage output of a sequential network.

    Args:
        stages: the network as an ordered sequence whose stage i output feeds stage i + 1: (layer name, module)
            pairs, an ``nn.Sequential`` / ``nn.ModuleDict`` (names = child names), or a plain sequence of modules
            (names "0", "1", ...). Inside a stage, conv / pool modules are applied in registration order.
    Returns:
        {layer name: RFGeometry} in network-input pixels: size and stride in pixels, offset = x (and y) of the
        centre of column 0.
    """
    if isinstance(stages, (nn.Sequential, nn.ModuleDict)):
        items = list(stages.named_children())
    elif isinstance(stages, nn.Module):
        items = [("0", stages)]
    else:
        items = [it if isinstance(it, tuple) else (str(i), it) for i, it in enumerate(stages)]
    out: dict[str, RFGeometry] = {}
    g = RFGeometry(1, 1, 0.0)
    for name, mod in items:
        if not isinstance(mod, nn.Module):
            raise TypeError(f"stage {name!r}: expected an nn.Module, got {type(mod).__name__}")
        g = compose_rf(spatial_ops(mod), g)
        out[name] = g
    return out


def format_size(g: RFGeometry) -> str:
    """rf size as text: an integer, a fraction, or "global" after global mixing."""
    return "global" if g.is_global else (f"{g.size:g}")


def format_rf_table(backbone, input_size: int | None = None) -> str:
    """Plain-text table: layer, rf size, stride, centre offset, grid size and channels at ``input_size``.

    A layer the geometry analysis cannot follow shows ``?`` and the reason below the table."""
    import torch

    size = int(input_size or backbone.input_size)
    p = next(backbone.parameters())
    x = torch.zeros(1, 3, size, size, device=p.device, dtype=p.dtype)
    with torch.no_grad():
        acts = backbone(x, backbone.layer_names)
    lines = [f"{backbone.name} at {size}x{size} input (x, y in input pixels; column c centred at offset + stride*c;"
             " global = the layer mixes the whole image)",
             f"{'layer':<20}{'rf size':>8}{'stride':>8}{'offset':>8}{'grid':>10}{'channels':>10}"]
    notes = []
    for name in backbone.layer_names:
        a = acts[name]
        grid = f"{a.shape[2]}x{a.shape[3]}"
        try:
            g = backbone.rf(name, size)
        except GeometryError as exc:
            lines.append(f"{name:<20}{'?':>8}{'?':>8}{'?':>8}{grid:>10}{a.shape[1]:>10}")
            notes.append(f"{name}: {exc}")
            continue
        lines.append(f"{name:<20}{format_size(g):>8}{g.stride:>8g}{g.offset:>8.1f}{grid:>10}{a.shape[1]:>10}")
    return "\n".join(lines + notes)
