"""Table 1 of the paper: receptive-field size, stride and centre offset of every layer, for several backbones.

Traced through each backbone's actual computation (never typed in; :meth:`Backbone.rf`) and compared with the
paper's AlexNet values. ``--set backbones='["alexnet","squeezenet1_0","mobilenet_v2","timm:resnet50"]'`` draws the
table and figure for any registered or library backbone (library models with random weights: geometry does not
depend on them). Layers after global mixing (attention, squeeze-excitation) have a global rf ("global"); a layer
the analysis cannot follow is listed with "?" and the reason.

Parallel options (``workers``, ``executor``, ``ray_address``, ``resume``; :mod:`convcorr.experiments.workers`):
the unit of work is one backbone (build it with random weights, trace every layer: :func:`_backbone_task`);
with ``workers`` > 1 the backbones are traced in parallel processes, each holding one backbone. The tables and
figures are drawn afterwards in the calling process; results are identical for every setting.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..backbones import get_backbone
from ..numerics.rf.trace import GeometryError
from ..viz.report import Report, markdown_table
from . import register_experiment
from .options import Option
from .workers import run_conf_tasks, with_parallel_options

#: the report's Protocol section, written for a reader (Markdown): what is measured, on which data, how it
#: is scored, and what the paper did
PROTOCOL = """\
**What is measured.** For every spatial layer of each backbone: the receptive-field size (the side, in input
pixels, of the square of input pixels that can influence one feature column), the stride (input pixels between
neighbouring columns) and the centre offset (the input coordinate of the centre of the first column's receptive
field, with pixel centres at integer coordinates and the top-left pixel at 0). The grid size and the number of
channels are those of the layer's output at the input size given in each table's heading.

**How.** The geometry is traced through each network's actual layers (convolutions, pooling, padding and the main
path of residual blocks), never typed in. Geometry does not depend on the weights, so the networks run with random
weights and need no download. A layer after global mixing (attention, squeeze-and-excitation) sees the whole image:
its receptive field is listed as "global". A layer the tracing cannot follow is listed with "?" and the reason.

**The paper.** Table 1 of Long, Zhang and Darrell (NIPS 2014) lists the receptive-field sizes and strides of the
Caffe reference AlexNet: conv1 11/4, conv2 51/8, conv3 99/16, conv4 131/16, conv5 163/16 and pool5 195/32 pixels.
The AlexNet table shows them beside the traced values, and the Check section says whether they agree.
"""

PAPER = {"conv1": (11, 4), "conv2": (51, 8), "conv3": (99, 16), "conv4": (131, 16), "conv5": (163, 16),
         "pool5": (195, 32)}

CONFIGS = {
    "default": {"backbones": ["alexnet", "efficientnet_lite0", "squeezenet1_0", "mobilenet_v1", "mobilenet_v2"],
                "input_size": None},
    "paper": {"backbones": ["alexnet"], "input_size": 227},
}
#: parallel options (one unit of work per backbone): ``workers``, ``executor``, ``ray_address``, ``resume``
CONFIGS = with_parallel_options(CONFIGS)
OPTIONS = [
    Option("backbones", list, "backbones to trace (registered names or timm:<model> / torchvision:<model>)", item=str),
    Option("input_size", (int, None), "network input side in pixels the geometry is traced at (None: each "
           "backbone's own)"),
]


def rf_rows(name: str, input_size: int | None = None) -> list[dict]:
    """One row per layer: rf size ("global" after global mixing, "?" when not followed), stride, offset (input
    pixels), grid size and channels at ``input_size`` (default: the backbone's)."""
    import torch

    bb = get_backbone(name, pretrained=False, device="cpu")
    size = int(input_size or bb.input_size)
    with torch.no_grad():
        acts = bb(torch.zeros(1, 3, size, size), bb.layer_names)
    rows = []
    for layer in bb.layer_names:
        a = acts[layer]
        row = {"layer": layer, "rf size": "?", "stride": "?", "offset": "?", "grid": f"{a.shape[2]}x{a.shape[3]}",
               "channels": int(a.shape[1])}
        try:
            g = bb.rf(layer, size)
            row.update({"rf size": "global" if g.is_global else g.size, "stride": g.stride, "offset": float(g.offset)})
        except GeometryError as exc:
            row["note"] = str(exc)
        if name == "alexnet" and layer in PAPER:
            row["paper rf/stride"] = f"{PAPER[layer][0]}/{PAPER[layer][1]}"
            row["matches paper"] = (row["rf size"], row["stride"]) == PAPER[layer]
        rows.append(row)
    return rows


def _backbone_task(name: str, input_size: int | None = None) -> tuple[list[dict], int]:
    """One unit of work: (:func:`rf_rows` of backbone ``name``, the input side they were traced at)."""
    size = int(input_size or get_backbone(name, pretrained=False, device="cpu").input_size)
    return rf_rows(name, size), size


def _numeric(r: dict, size: int) -> float | None:
    v = r["rf size"]
    return float(size) if v == "global" else (float(v) if isinstance(v, (int, float)) else None)


def _draw_nested_squares(ax, name: str, rows: list[dict], size: int) -> None:
    """Receptive field of the column nearest the image centre, per layer, as nested squares on the input canvas."""
    import matplotlib.patches as patches
    import matplotlib.pyplot as plt

    ax.add_patch(patches.Rectangle((-0.5, -0.5), size, size, fill=False, color="k", lw=1.5))
    cmap = plt.get_cmap("viridis")
    rows = [r for r in rows if isinstance(r["rf size"], (int, float))]
    if not rows:
        ax.set_axis_off()
        ax.set_title(f"{name}: no layer with a finite rf", fontsize=9)
        return
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


@dataclass
class Table1Results:
    """What :func:`compute` measured (rendering lives in :func:`render`).

    Attributes:
        conf: the configuration.
        backbones: backbone names, in the configured order.
        rows: {backbone: :func:`rf_rows` (one dict per layer)}.
        sizes: {backbone: input side (pixels) the layers were traced at}.
        summary: one row per backbone: input, layers, largest finite rf, global layers, layers not followed,
            final stride.
        alexnet_matches_paper: whether AlexNet's rf sizes and strides equal the paper's (None without AlexNet).
    """

    conf: dict
    backbones: list
    rows: dict
    sizes: dict
    summary: list
    alexnet_matches_paper: bool | None = None


def compute(conf: dict, out_dir: str | Path | None = None) -> Table1Results:
    """Trace every configured backbone (one unit of work each: :func:`_backbone_task`, through
    :func:`convcorr.experiments.workers.run_conf_tasks`; with ``resume`` each backbone's rows are kept under
    ``out_dir/tasks/backbones-<config hash>/``)."""
    names = list(conf["backbones"])
    if not names:
        raise ValueError("backbones: give at least one backbone name")
    traced = run_conf_tasks(_backbone_task, names, conf, out_dir, "backbones",
                            kwargs={"input_size": conf["input_size"]}, desc="tracing backbones")
    rows = {n: r for n, (r, _) in zip(names, traced)}
    sizes = {n: s for n, (_, s) in zip(names, traced)}
    summary = [_summary_row(n, rows[n], sizes[n]) for n in names]
    ok = all(r.get("matches paper", True) for r in rows["alexnet"]) if "alexnet" in rows else None
    return Table1Results(dict(conf), names, rows, sizes, summary, ok)


def _summary_row(name: str, rows: list[dict], size: int) -> dict:
    finite = [r for r in rows if isinstance(r["rf size"], (int, float))]
    return {"backbone": name, "input": f"{size}x{size}", "layers": len(rows),
            "largest finite rf": max((r["rf size"] for r in finite), default="-"),
            "global layers": sum(r["rf size"] == "global" for r in rows),
            "not followed": sum("note" in r for r in rows), "final stride": rows[-1]["stride"]}


@register_experiment("table1")
def main(conf: dict, out_dir: Path) -> Path:
    """:func:`compute`, then :func:`render` into ``out_dir``."""
    return render(compute(conf, out_dir), out_dir)


def render(res: Table1Results, out_dir: Path) -> Path:
    """report.md (one table per backbone, summary, check against the paper), results.json, rf_sizes.png and
    rf_vs_stride.png of computed results."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rep = Report(out_dir, "Table 1: receptive-field geometry", res.conf)
    rep.section("Protocol", PROTOCOL)
    n = len(res.backbones)
    fig, axes = plt.subplots(2, n, figsize=(5.5 * n, 10), squeeze=False)
    for j, name in enumerate(res.backbones):
        rows, size = res.rows[name], res.sizes[name]
        rep.results[name] = rows
        rep.section(f"{name} at {size}x{size}", _backbone_text(name, rows))
        _draw_bars(axes[0, j], name, rows, size)
        _draw_nested_squares(axes[1, j], name, rows, size)
    fig.tight_layout()
    rep.section("Summary", markdown_table(res.summary))
    if res.alexnet_matches_paper is not None:
        ok = res.alexnet_matches_paper
        rep.results["alexnet_matches_paper"] = ok
        rep.section("Check", f"AlexNet rf sizes and strides {'match' if ok else 'DO NOT match'} the paper's Table 1.")
    rep.figure(fig, "rf_sizes.png", "Top: receptive-field size (grey: global) and stride per layer. Bottom: "
               "receptive fields of the central column of each layer, drawn on the input canvas.")
    plt.close(fig)
    if n > 1:
        _draw_rf_vs_stride(rep, res)
    return rep.save()


def _backbone_text(name: str, rows: list[dict]) -> str:
    note = ""
    if name == "alexnet":
        note = ("\n\nThe paper's Table 1 (AlexNet, 227x227) lists rf size / stride: "
                + ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in PAPER.items())
                + "; the column `paper rf/stride` repeats it beside the computed values.")
    cols = [c for c in rows[0] if c != "note"]
    notes = [f"- {r['layer']}: {r['note']}" for r in rows if "note" in r]
    return ("Traced through the network's actual computation (residual blocks along their main path; "
            "`global` = the layer mixes the whole image, e.g. attention or squeeze-excitation; its stride / "
            "offset locate its patches). Column (c, r) of a layer is centred at input pixel offset + stride * "
            "(c, r); grid = output size at this input." + note + "\n\n" +
            markdown_table(rows, columns=cols, floatfmt="{:.1f}") +
            ("\nNot followed:\n" + "\n".join(notes) + "\n" if notes else ""))


def _draw_bars(ax, name: str, rows: list[dict], size: int) -> None:
    """rf size (grey: global) and stride per layer; the paper's AlexNet rf sizes as black marks."""
    vals = [_numeric(r, size) for r in rows]
    idx = [i for i, v in enumerate(vals) if v is not None]
    glob = [i for i in idx if rows[i]["rf size"] == "global"]
    ax.bar(idx, [vals[i] for i in idx], color=["tab:gray" if i in glob else "tab:blue" for i in idx],
           label="rf size (grey: global)")
    ax.bar([i for i in idx], [float(rows[i]["stride"]) for i in idx], color="tab:orange", label="stride")
    if name == "alexnet":
        ax.plot([i for i, r in enumerate(rows) if r["layer"] in PAPER],
                [PAPER[r["layer"]][0] for r in rows if r["layer"] in PAPER], "k_", ms=20, mew=2,
                label="paper rf size")
    ax.axhline(size, color="k", ls="--", lw=1, label=f"input {size}px")
    ax.set_xticks(range(len(rows)), [r["layer"] for r in rows], rotation=60, fontsize=7, ha="right")
    ax.set_ylabel("pixels")
    ax.set_title(name)
    ax.legend(fontsize=8)


def _draw_rf_vs_stride(rep: Report, res: Table1Results) -> None:
    """All backbones on one axis: rf size against stride (finite rfs)."""
    import matplotlib.pyplot as plt

    fig2, ax2 = plt.subplots(figsize=(6.5, 5))
    for name in res.backbones:
        rows = [r for r in res.rows[name] if isinstance(r["rf size"], (int, float))]
        if rows:
            ax2.plot([r["stride"] for r in rows], [r["rf size"] for r in rows], "o-", label=name, alpha=0.8)
    ax2.set_xscale("log", base=2)
    ax2.set_yscale("log")
    ax2.set_xlabel("stride (px)")
    ax2.set_ylabel("rf size (px)")
    ax2.grid(True, which="both", alpha=0.3)
    ax2.legend(fontsize=8)
    ax2.set_title("Receptive-field size against stride, every layer (finite rfs)", fontsize=9)
    fig2.tight_layout()
    rep.figure(fig2, "rf_vs_stride.png", "Receptive-field size against stride for every layer of every "
               "backbone (log-log; global layers omitted).")
    plt.close(fig2)
