"""Figures of the experiment reports, built in two steps: the DATA of a figure (panels, histograms, bars with
their intervals) by small functions that tests check, then ``draw_*`` functions that only render it.

* :class:`Panel` / :func:`draw_panels`: a grid of image panels with point overlays (alignment figure as the
  paper's Figure 3, prediction examples).
* :func:`pick_by_rank`: the good / typical / bad example of a score list.
* :func:`offset_histograms` / :func:`draw_offset_histograms`: Figure 4's histograms of response maxima, boundary
  maxima excluded and counted, one colour scale shared by all panels, with a colour bar.
* :func:`draw_bars_with_ci`, :func:`draw_curves_with_ci`: numbers with their bootstrap intervals.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np


# ------------------------------------------------------------------------------------------------------- panels
@dataclass
class Overlay:
    """Points drawn on a panel: ``xy`` (N, 2) pixels (NaN rows skipped), a matplotlib marker style and a label."""

    xy: np.ndarray
    style: str = "g."
    label: str = ""
    size: float = 6.0


@dataclass
class Panel:
    """One image panel at grid cell (``row``, ``col``): image (H, W, 3), overlays, title; ``box`` (x0, y0, x1, y1)
    is outlined; ``view`` (x0, y0, x1, y1) sets the visible extent (default: the whole image)."""

    row: int
    col: int
    image: np.ndarray | None
    title: str = ""
    overlays: list[Overlay] = field(default_factory=list)
    box: np.ndarray | None = None
    view: tuple[float, float, float, float] | None = None


def padded_view(box: Sequence[float], pad: float = 0.12) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) view of a panel zoomed on ``box`` with ``pad`` of its larger side on every side: the whole
    box is visible (also where it extends past the image), and its points are large enough to see."""
    x0, y0, x1, y1 = (float(v) for v in box)
    p = pad * max(x1 - x0, y1 - y0)
    return (x0 - p, y0 - p, x1 + p, y1 + p)


def draw_panels(panels: Sequence[Panel], path: str | Path, suptitle: str = "", panel_in: float = 2.2,
                legend: bool = True, dpi: int = 110):
    """Render panels on a (rows, cols) grid into ``path`` (one figure legend of the overlay labels below);
    returns the grid's (rows, cols)."""
    import matplotlib.pyplot as plt

    if not panels:
        raise ValueError("draw_panels: no panels")
    R = max(p.row for p in panels) + 1
    C = max(p.col for p in panels) + 1
    fig, axes = plt.subplots(R, C, figsize=(panel_in * C, panel_in * R + (0.4 if suptitle else 0)), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for p in panels:
        ax = axes[p.row, p.col]
        if p.image is not None:
            ax.imshow(p.image)
            H, W = p.image.shape[:2]
            x0, y0, x1, y1 = p.view or (-0.5, -0.5, W - 0.5, H - 0.5)
            ax.set_xlim(x0, x1)
            ax.set_ylim(y1, y0)
        for o in p.overlays:
            xy = np.asarray(o.xy, float).reshape(-1, 2)
            xy = xy[np.all(np.isfinite(xy), axis=1)]
            ax.plot(xy[:, 0], xy[:, 1], o.style, ms=o.size, mew=1.2, label=o.label or None)
        if p.box is not None:
            x0, y0, x1, y1 = p.box
            ax.plot([x0, x1, x1, x0, x0], [y0, y0, y1, y1, y0], "c-", lw=0.8)
        ax.set_title(p.title, fontsize=7)
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    if legend:  # one legend for the figure: every overlay label once
        seen: dict = {}
        for ax in axes.ravel():
            for h, l in zip(*ax.get_legend_handles_labels()):
                seen.setdefault(l, h)
        if seen:
            fig.legend(list(seen.values()), list(seen), loc="lower center", ncol=len(seen), fontsize=7,
                       frameon=False, bbox_to_anchor=(0.5, -0.01))
            fig.subplots_adjust(bottom=max(fig.subplotpars.bottom, 0.35 / (panel_in * R)))
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return R, C


def pick_by_rank(scores: Sequence[float]) -> dict[str, int]:
    """{"good", "typical", "bad"} -> index of the best, the median-ranked and the worst score (higher = better,
    NaN ranks last; ties keep the first index)."""
    s = np.asarray(scores, dtype=np.float64)
    if not len(s):
        raise ValueError("pick_by_rank: no scores")
    order = np.argsort(-np.nan_to_num(s, nan=-np.inf), kind="stable")  # best first
    return {"good": int(order[0]), "typical": int(order[(len(s) - 1) // 2]), "bad": int(order[-1])}


# ----------------------------------------------------------------------------------------------------- Figure 4
def offset_histograms(offsets: Mapping[str, np.ndarray], window: int) -> dict:
    """Figure 4's data: per feature, the 2-D histogram of response-maximum offsets inside the window.

    Args:
        offsets: {feature: (N, 2) (dx, dy) offsets of the maxima in a (2w+1) x (2w+1) window}.
        window: w (10 for the paper's 21 x 21 px window).
    Returns:
        {"hist": {feature: (2w-1, 2w-1) counts indexed [dy, dx] over offsets -w+1..w-1},
         "boundary": {feature: number of maxima ON the window boundary (|dx| = w or |dy| = w), excluded},
         "n": {feature: total maxima}, "vmax": the largest count of any panel (one shared colour scale),
         "extent": (lo, hi) offsets of the histogram bins' edges}.
    """
    w = int(window)
    edges = np.arange(-w + 0.5, w, 1.0)  # interior offsets -w+1 .. w-1
    hists, bnd, n = {}, {}, {}
    for f, o in offsets.items():
        o = np.asarray(o, dtype=np.float64).reshape(-1, 2)
        on_b = np.any(np.abs(o) >= w, axis=1)
        inner = o[~on_b]
        h, _, _ = np.histogram2d(inner[:, 1], inner[:, 0], bins=[edges, edges])
        hists[f], bnd[f], n[f] = h, int(on_b.sum()), len(o)
    vmax = max([float(h.max()) for h in hists.values()] + [1.0])
    return {"hist": hists, "boundary": bnd, "n": n, "vmax": vmax, "extent": (float(edges[0]), float(edges[-1]))}


def draw_offset_histograms(data: dict, path: str | Path, dpi: int = 130, max_cols: int = 5) -> None:
    """Render :func:`offset_histograms` data: one panel per feature (at most ``max_cols`` per row), one colour
    scale shared by all panels, one colour bar."""
    import matplotlib.pyplot as plt

    feats = list(data["hist"])
    n = len(feats)
    cols = min(n, max_cols)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols + 0.9, 2.1 * rows), squeeze=False,
                             layout="constrained")
    lo, hi = data["extent"]
    im = None
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    for k, (ax, f) in enumerate(zip(axes.ravel(), feats)):
        im = ax.imshow(data["hist"][f], extent=[lo, hi, hi, lo], cmap="viridis", vmin=0, vmax=data["vmax"],
                       interpolation="nearest")
        ax.axhline(0, color="w", lw=0.3)
        ax.axvline(0, color="w", lw=0.3)
        ax.set_title(f"{f}\n{data['boundary'][f]}/{data['n'][f]} on boundary", fontsize=6)
        ticks = [t for t in range(-int(hi) // 5 * 5, int(hi) + 1, 5) if lo < t < hi]
        ax.set_xticks(ticks)
        ax.set_yticks(ticks)
        ax.tick_params(labelsize=5)
        if k // cols == rows - 1 or k + cols >= n:
            ax.set_xlabel("dx (px)", fontsize=6)
        if k % cols == 0:
            ax.set_ylabel("dy (px)", fontsize=6)
    cb = fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8)
    cb.set_label("maxima per 1-px bin", fontsize=6)
    cb.ax.tick_params(labelsize=5)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)


# --------------------------------------------------------------------------------------------------- intervals
def draw_bars_with_ci(groups: Sequence[str], series: Mapping[str, Sequence], path: str | Path, ylabel: str,
                      ylim=(0, 1), colors: Mapping[str, str] | None = None, dpi: int = 110,
                      figsize=(6.0, 3.6)) -> None:
    """Grouped bars with 95% error bars.

    Args:
        groups: x tick labels (e.g. the alphas).
        series: {name: [Estimate or (value, lo, hi)] one per group}.
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize)
    n = len(series)
    wd = 0.8 / max(n, 1)
    for i, (name, vals) in enumerate(series.items()):
        v = np.array([_triple(e) for e in vals], dtype=float).reshape(-1, 3)
        x = np.arange(len(groups)) + (i - (n - 1) / 2) * wd
        err = np.abs(np.stack([v[:, 0] - v[:, 1], v[:, 2] - v[:, 0]]))
        ax.bar(x, v[:, 0], wd, label=name, color=(colors or {}).get(name),
               yerr=np.nan_to_num(err), capsize=2, error_kw={"lw": 0.8})
    ax.set_xticks(range(len(groups)), list(groups))
    ax.set_ylabel(ylabel)
    if ylim == "auto":
        top = max([_triple(e)[2] for vals in series.values() for e in vals if np.isfinite(_triple(e)[2])] + [0.05])
        ax.set_ylim(0, min(1.0, 1.15 * top))
    elif ylim:
        ax.set_ylim(*ylim)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)


def draw_curves_with_ci(x: Sequence[float], curves: Mapping[str, Sequence], path: str | Path, xlabel: str,
                        ylabel: str, logx: bool = True, marks: Mapping[str, float] | None = None,
                        title: str = "", dpi: int = 110) -> None:
    """Lines with 95% bands: curves {name: [Estimate or (value, lo, hi)] per x}; ``marks`` {name: x} circles the
    chosen point of each curve."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.0, 3.4))
    for name, vals in curves.items():
        v = np.array([_triple(e) for e in vals], dtype=float).reshape(-1, 3)
        line, = ax.plot(x, v[:, 0], "o-", ms=3, label=name)
        ax.fill_between(x, v[:, 1], v[:, 2], color=line.get_color(), alpha=0.15)
        if marks and name in marks:
            j = int(np.argmin(np.abs(np.asarray(x, float) - marks[name])))
            ax.plot(x[j], v[j, 0], "o", ms=9, mfc="none", mec=line.get_color(), mew=1.5)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)


def _triple(e) -> tuple[float, float, float]:
    if hasattr(e, "value"):
        return float(e.value), float(e.lo), float(e.hi)
    a = tuple(float(t) for t in e)
    return a if len(a) == 3 else (a[0], a[0], a[0])


def alignment_panels(query_crop: np.ndarray, ground_truth: np.ndarray, neighbours: Sequence[tuple],
                     warped: Mapping[str, Mapping], query_title: str = "query") -> list[Panel]:
    """The paper's Figure 3 as panels: row 0 = the query and its neighbours as retrieved (unwarped, with their own
    keypoints); one row per method = the query with that method's prediction, then each neighbour warped into
    the query frame by the method's flow, with its keypoints transferred.

    Args:
        query_crop: (S, S, 3) query crop; ground_truth: (K, 2) its keypoints in crop pixels (NaN: not visible).
        neighbours: [(crop (S, S, 3), keypoints (K, 2) crop px, title)] in retrieval order.
        warped: {method label: {"prediction": (K, 2) crop px, "images": [warped crop per neighbour],
                 "points": [(K, 2) transferred keypoints per neighbour], "titles": [str per neighbour]}}.
    Returns:
        panels on a (1 + len(warped), 1 + len(neighbours)) grid.
    """
    gt = Overlay(np.asarray(ground_truth), "g.", "query ground truth", 7)
    out = [Panel(0, 0, query_crop, query_title, [gt])]
    for j, (img, kp, title) in enumerate(neighbours, 1):
        out.append(Panel(0, j, img, title, [Overlay(np.asarray(kp), "y.", "neighbour keypoints" if j == 1 else "", 6)]))
    for r, (m, d) in enumerate(warped.items(), 1):
        out.append(Panel(r, 0, query_crop, f"{m}: prediction",
                         [gt, Overlay(np.asarray(d["prediction"]), "rx", f"prediction ({m})", 6)]))
        for j, (img, pts) in enumerate(zip(d["images"], d["points"]), 1):
            t = d.get("titles", [""] * len(d["images"]))[j - 1]
            out.append(Panel(r, j, img, t, [Overlay(np.asarray(pts), "y.", "transferred" if j == 1 else "", 6)]))
    return out
