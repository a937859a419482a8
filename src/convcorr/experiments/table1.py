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


def _draw_nested_squares(ax, name: str, rows: list[dict], size: int) -> None:
    """Receptive field of the column nearest the image centre, per layer, as nested squares on the input canvas."""
    import matplotlib.patches as patches
    import matplotlib.pyplot as plt

    ax.add_patch(patches.Rectangle((-0.5, -0.5), size, size, fill=False, color="k", lw=1.5))
    cmap = plt.get_cmap("viridis")
    for i, r in enumerate(rows):
        st, off = r["stride"], r["offset"]
        c = round(((size - 1) / 2 - off) / st)
        centre = off + st * c
        half = r["rf size"] / 2
        ax.add_patch(patches.Rectangle((centre - half, centre - half), r["rf size"], r["rf size"], fill=False,
                                       color=cmap(i / max(len(rows) - 1, 1)), lw=1.5, label=f"{r['layer']} ({r['rf size']})"))
    lim = max(size, max(r["rf size"] for r in rows)) * 0.55
    mid = (size - 1) / 2
    ax.set_xlim(mid - lim, mid + lim)
    ax.set_ylim(mid + lim, mid - lim)
    ax.set_aspect("equal")
    ax.set_title(f"{name}: rf of the central column on a {size}x{size} input (black)", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")


def main(conf: dict, out_dir: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rep = Report(out_dir, "Table 1: receptive-field geometry", conf)
    n = len(conf["backbones"])
    fig, axes = plt.subplots(2, n, figsize=(5.5 * n, 10), squeeze=False)
    for j, name in enumerate(conf["backbones"]):
        ax = axes[0, j]
        rows = rf_rows(name, conf["input_size"])
        rep.results[name] = rows
        size = conf["input_size"] or get_backbone(name, pretrained=False, device="cpu").input_size
        note = ""
        if name == "alexnet":
            note = ("\n\nThe paper's Table 1 (AlexNet, 227x227) lists rf size / stride: "
                    + ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in PAPER.items())
                    + "; the column `paper rf/stride` repeats it beside the computed values.")
        rep.section(f"{name} at {size}x{size}",
                    "Computed from the module graph (kernel, stride, padding, dilation of every conv / pool). "
                    "Column (c, r) of a layer is centred at input pixel offset + stride * (c, r); grid = output "
                    "size at this input." + note + "\n\n" + markdown_table(rows, floatfmt="{:.1f}"))
        ax.bar(range(len(rows)), [r["rf size"] for r in rows], color="tab:blue", label="rf size")
        ax.bar(range(len(rows)), [r["stride"] for r in rows], color="tab:orange", label="stride")
        if name == "alexnet":
            ax.plot([i for i, r in enumerate(rows) if r["layer"] in PAPER],
                    [PAPER[r["layer"]][0] for r in rows if r["layer"] in PAPER], "k_", ms=20, mew=2,
                    label="paper rf size")
        ax.axhline(size, color="k", ls="--", lw=1, label=f"input {size}px")
        ax.set_xticks(range(len(rows)), [r["layer"] for r in rows], rotation=45)
        ax.set_ylabel("pixels")
        ax.set_title(name)
        ax.legend(fontsize=8)
        _draw_nested_squares(axes[1, j], name, rows, size)
    fig.tight_layout()
    if "alexnet" in rep.results:
        ok = all(r.get("matches paper", True) for r in rep.results["alexnet"])
        rep.results["alexnet_matches_paper"] = ok
        rep.section("Check", f"AlexNet rf sizes and strides {'match' if ok else 'DO NOT match'} the paper's Table 1.")
    rep.figure(fig, "rf_sizes.png", "Top: receptive-field size and stride per layer. Bottom: receptive fields of "
               "the central column of each layer, drawn on the input canvas.")
    plt.close(fig)
    return rep.save()
