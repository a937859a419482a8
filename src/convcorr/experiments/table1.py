"""Table 1 of the paper: receptive-field size, stride and centre offset of every layer.

Computed from each backbone's module graph (never typed in) and compared with the paper's AlexNet values.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..backbones import get_backbone
from ..report import Report, markdown_table

PAPER = {"conv1": (11, 4), "conv2": (51, 8), "conv3": (99, 16), "conv4": (131, 16), "conv5": (163, 16),
         "pool5": (195, 32)}

CONFIGS = {
    "default": {"backbones": ["alexnet", "efficientnet_lite0"], "input_size": None},
    "paper": {"backbones": ["alexnet"], "input_size": 227},
}


def rf_rows(name: str, input_size: int | None = None) -> list[dict]:
    """One row per layer: rf size, stride, offset (input pixels), grid size and channels."""
    import torch

    bb = get_backbone(name, pretrained=False, device="cpu")
    size = int(input_size or bb.input_size)
    with torch.no_grad():
        acts = bb(torch.zeros(1, 3, size, size), bb.layer_names)
    rows = []
    for layer in bb.layer_names:
        g = bb.rf(layer)
        a = acts[layer]
        row = {"layer": layer, "rf size": g.size, "stride": g.stride, "offset": float(g.offset),
               "grid": f"{a.shape[2]}x{a.shape[3]}", "channels": int(a.shape[1])}
        if name == "alexnet" and layer in PAPER:
            row["paper rf/stride"] = f"{PAPER[layer][0]}/{PAPER[layer][1]}"
            row["matches paper"] = (g.size, g.stride) == PAPER[layer]
        rows.append(row)
    return rows


def main(conf: dict, out_dir: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rep = Report(out_dir, "Table 1: receptive-field geometry", conf)
    fig, axes = plt.subplots(1, len(conf["backbones"]), figsize=(5 * len(conf["backbones"]), 4), squeeze=False)
    for ax, name in zip(axes[0], conf["backbones"]):
        rows = rf_rows(name, conf["input_size"])
        rep.results[name] = rows
        size = conf["input_size"] or get_backbone(name, pretrained=False, device="cpu").input_size
        rep.section(f"{name} at {size}x{size}",
                    "Column (c, r) of a layer is centred at input pixel offset + stride * (c, r).\n\n"
                    + markdown_table(rows, floatfmt="{:.1f}"))
        ax.bar(range(len(rows)), [r["rf size"] for r in rows], color="tab:blue", label="rf size")
        ax.bar(range(len(rows)), [r["stride"] for r in rows], color="tab:orange", label="stride")
        ax.axhline(size, color="k", ls="--", lw=1, label=f"input {size}px")
        ax.set_xticks(range(len(rows)), [r["layer"] for r in rows], rotation=45)
        ax.set_ylabel("pixels")
        ax.set_title(name)
        ax.legend()
    if "alexnet" in rep.results:
        ok = all(r.get("matches paper", True) for r in rep.results["alexnet"])
        rep.results["alexnet_matches_paper"] = ok
        rep.section("Check", f"AlexNet rf sizes and strides {'match' if ok else 'DO NOT match'} the paper's Table 1.")
    rep.figure(fig, "rf_sizes.png", "Receptive-field size and stride per layer.")
    return rep.save()
