"""Receptive-field geometry computed from a network's module graph (paper Table 1).

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

from typing import Iterable, Sequence

import torch.nn as nn

from .geometry import RFGeometry

_SPATIAL = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)


def _pair(v) -> int:
    if isinstance(v, (tuple, list)):
        if len(set(v)) != 1:
            raise ValueError(f"non-square kernel/stride/padding {v} is not supported")
        return int(v[0])
    return int(v)


def spatial_ops(module: nn.Module) -> list[nn.Module]:
    """Conv/pool leaf modules of ``module`` in registration (= execution) order."""
    return [m for m in module.modules() if isinstance(m, _SPATIAL)]


def compose_rf(ops: Iterable[nn.Module], start: RFGeometry = RFGeometry(1, 1, 0.0)) -> RFGeometry:
    """Geometry after applying the conv/pool modules ``ops`` (in order) on top of ``start``."""
    size, jump, offset = float(start.size), float(start.stride), float(start.offset)
    for m in ops:
        k, s = _pair(m.kernel_size), _pair(m.stride if m.stride is not None else m.kernel_size)
        pad = m.padding
        if isinstance(pad, str):
            if pad == "valid":
                p = 0
            else:
                raise ValueError(f"padding={pad!r} is not supported for rf computation")
        else:
            p = _pair(pad)
        d = _pair(getattr(m, "dilation", 1))
        ke = d * (k - 1) + 1
        size += (ke - 1) * jump
        offset += ((ke - 1) / 2.0 - p) * jump
        jump *= s
    return RFGeometry(size=int(size) if size.is_integer() else size,
                      stride=int(jump) if jump.is_integer() else jump, offset=offset)


def compute_rf(stages: Sequence[tuple[str, nn.Module]]) -> dict[str, RFGeometry]:
    """Geometry of every named stage output of a sequential network.

    Args:
        stages: ordered (layer name, module) pairs; the output of stage i is the
            input of stage i + 1.
    Returns:
        {layer name: RFGeometry} in network-input pixels.
    """
    out: dict[str, RFGeometry] = {}
    g = RFGeometry(1, 1, 0.0)
    for name, mod in stages:
        g = compose_rf(spatial_ops(mod), g)
        out[name] = g
    return out


def format_rf_table(backbone, input_size: int | None = None) -> str:
    """Plain-text table: layer, rf size, stride, centre offset, grid size and channels at ``input_size``."""
    import torch

    size = int(input_size or backbone.input_size)
    x = torch.zeros(1, 3, size, size, device=next(backbone.parameters()).device)
    with torch.no_grad():
        acts = backbone(x, backbone.layer_names)
    lines = [f"{backbone.name} at {size}x{size} input (x, y in input pixels; column c centred at offset + stride*c)",
             f"{'layer':<10}{'rf size':>8}{'stride':>8}{'offset':>8}{'grid':>10}{'channels':>10}"]
    for name in backbone.layer_names:
        g = backbone.rf(name)
        a = acts[name]
        lines.append(f"{name:<10}{g.size:>8}{g.stride:>8}{g.offset:>8.1f}{f'{a.shape[2]}x{a.shape[3]}':>10}{a.shape[1]:>10}")
    return "\n".join(lines)
