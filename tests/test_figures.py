import numpy as np
import pytest

from convcorr.evaluation.stats import Estimate
from convcorr.viz.figures import (Panel, alignment_panels, draw_bars_with_ci, draw_curves_with_ci,
                                  draw_offset_histograms, draw_panels, offset_histograms, padded_view, pick_by_rank)


def test_pick_by_rank():
    assert pick_by_rank([0.2, 0.9, 0.5, np.nan, 0.4]) == {"good": 1, "typical": 4, "bad": 3}
    assert pick_by_rank([1.0]) == {"good": 0, "typical": 0, "bad": 0}
    with pytest.raises(ValueError):
        pick_by_rank([])


def test_offset_histograms_exclude_and_count_the_boundary(tmp_path):
    # window 10 (21 x 21 px): offsets with |dx| or |dy| = 10 lie on the boundary
    offs = {"conv4": np.array([[0, 0], [0, 0], [10, 3], [-2, 1]]), "SIFT r20": np.array([[0, -10], [1, 1]])}
    d = offset_histograms(offs, 10)
    assert d["hist"]["conv4"].shape == (19, 19)
    assert d["boundary"] == {"conv4": 1, "SIFT r20": 1} and d["n"] == {"conv4": 4, "SIFT r20": 2}
    h = d["hist"]["conv4"]
    assert h[9, 9] == 2 and h[9 + 1, 9 - 2] == 1 and h.sum() == 3  # indexed [dy, dx], centre at 9
    assert d["vmax"] == 2.0  # shared colour scale: the largest count of any panel
    draw_offset_histograms(d, tmp_path / "h.png")
    assert (tmp_path / "h.png").stat().st_size > 3000


def test_alignment_panels_layout(tmp_path):
    img = np.zeros((20, 20, 3), np.uint8)
    gt = np.array([[5.0, 5.0], [np.nan, np.nan]])
    nbrs = [(img, gt + 1, f"n{j}") for j in range(5)]
    warped = {m: {"prediction": gt + 2, "images": [img] * 5, "points": [gt] * 5, "titles": ["E"] * 5}
              for m in ("conv4 flow", "SIFT flow")}
    panels = alignment_panels(img, gt, nbrs, warped, "query")
    grid = {(p.row, p.col): p for p in panels}
    assert set(grid) == {(r, c) for r in range(3) for c in range(6)}
    assert grid[0, 0].title == "query" and grid[1, 0].title == "conv4 flow: prediction"
    assert [o.label for o in grid[2, 0].overlays] == ["query ground truth", "prediction (SIFT flow)"]
    assert grid[0, 3].title == "n2"
    assert draw_panels(panels, tmp_path / "a.png") == (3, 6)
    assert (tmp_path / "a.png").stat().st_size > 3000


def test_padded_view_shows_the_whole_box():
    assert padded_view((0, 10, 50, 40), pad=0.1) == (-5, 5, 55, 45)


def test_interval_plots(tmp_path):
    e = Estimate(0.5, 0.4, 0.6, 10, 3)
    draw_bars_with_ci(["a", "b"], {"m": [e, (0.2, 0.1, 0.3)]}, tmp_path / "b.png", "PCK", ylim="auto")
    draw_curves_with_ci([1e-3, 1e-2], {"m": [e, e]}, tmp_path / "c.png", "beta", "PCK", marks={"m": 1e-2})
    assert (tmp_path / "b.png").stat().st_size > 3000 and (tmp_path / "c.png").stat().st_size > 3000
    Panel(0, 0, None)  # an empty cell is allowed
