"""Keypoint transfer through an alignment: before/after, side by side in one run (issue #11 item 4, issue #7).

Times, on the same 227 x 227 crop and the same 13 x 13 grid flows (AlexNet conv4 geometry), for N keypoints:

- ``kdtree`` (before): the previous ``warp.transfer_points`` (today ``warp.transfer_back``): a KD-tree over every
  crop pixel's image T(p), nearest T(p) to each keypoint, one Newton step (reimplemented here as the reference; it
  is also wrong where the flow folds);
- ``pixel lattice``: today's ``warp.transfer_back(points, dense)``: exact, fold-correct inversion of the
  per-pixel bilinear map;
- ``column lattice``: ``Correspondence.transfer_back`` (what keypoint transfer uses now): the same exact inverse
  computed on the 13 x 13 column lattice (no per-pixel work at all).

Also prints how many of the fold-regression points each method gets wrong. Numbers are measured, never stored.

    python benchmarks/bench_transfer.py [--repeat 20] [--points 68]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.spatial import cKDTree

from convcorr.core.geometry import RFGeometry
from convcorr.features.base import FeatureGrid
from convcorr.matchers import Correspondence
from convcorr.numerics.warp import dense_flow, transfer_back


def kdtree_transfer(xy, dense):
    """The previous implementation (nearest T(p) by KD-tree + one Newton step)."""
    H, W = dense.shape[:2]
    ys, xs = np.mgrid[0:H, 0:W]
    T = np.stack([xs + dense[..., 0], ys + dense[..., 1]], -1)
    _, idx = cKDTree(T.reshape(-1, 2)).query(xy)
    py, px = np.divmod(idx, W)
    res = xy - T[py, px]
    x0, x1 = np.maximum(px - 1, 0), np.minimum(px + 1, W - 1)
    y0, y1 = np.maximum(py - 1, 0), np.minimum(py + 1, H - 1)
    jx = (T[py, x1] - T[py, x0]) / (x1 - x0)[:, None]
    jy = (T[y1, px] - T[y0, px]) / (y1 - y0)[:, None]
    det = jx[:, 0] * jy[:, 1] - jy[:, 0] * jx[:, 1]
    good = np.abs(det) > 0.05
    sx = (res[:, 0] * jy[:, 1] - jy[:, 0] * res[:, 1]) / np.where(good, det, 1.0)
    sy = (jx[:, 0] * res[:, 1] - res[:, 0] * jx[:, 1]) / np.where(good, det, 1.0)
    step = np.where(good[:, None], np.stack([sx, sy], 1), res)
    return np.stack([px, py], 1) + step


def timeit(fn, repeat):
    fn()  # warm-up
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t) / repeat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--points", type=int, default=68, help="keypoints per alignment (68: an iBUG face)")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    g = RFGeometry(131, 16, 17.0)
    S, n = 227, 13
    grid = FeatureGrid(np.zeros((n, n, 1), np.float32), g, (S, S))
    flows = {"random smooth": np.clip(np.round(np.cumsum(rng.normal(0, 0.6, (n, n, 2)), 1)), -4, 4),
             "fold (shift + wild border)": np.stack([np.full((n, n), -1.0), np.zeros((n, n))], -1)}
    flows["fold (shift + wild border)"][:, 0, 0] = 3
    print(f"{a.points} keypoints per alignment, {S} x {S} crop, {n} x {n} grid, mean of {a.repeat} runs")
    print(f"{'flow':28s} {'kdtree (before)':>16s} {'pixel lattice':>14s} {'column lattice':>15s}   speed-up")
    for name, flow in flows.items():
        ys, xs = np.mgrid[0:n, 0:n]
        corr = Correspondence.from_grid(np.stack([xs + flow[..., 0], ys + flow[..., 1]], -1), grid, grid,
                                        np.zeros((n, n)), "cost", 0.0)
        dense = dense_flow(flow, g, g, (S, S))
        pts = rng.uniform(20, 200, (a.points, 2))
        t0 = timeit(lambda: kdtree_transfer(pts, dense), a.repeat)
        t1 = timeit(lambda: transfer_back(pts, dense), a.repeat)
        t2 = timeit(lambda: corr.transfer_back(pts), a.repeat)
        print(f"{name:28s} {t0 * 1e3:13.2f} ms {t1 * 1e3:11.2f} ms {t2 * 1e3:12.2f} ms   {t0 / t2:6.1f}x")
    # fold regression: interior points must come back exactly (shift by -1 column: source = target + 16 px)
    c = g.column_centers(n)
    q = np.stack(np.meshgrid(np.linspace(c[0], c[11], 45), np.linspace(0, S - 1, 15)), -1).reshape(-1, 2)
    flow = flows["fold (shift + wild border)"]
    ys, xs = np.mgrid[0:n, 0:n]
    corr = Correspondence.from_grid(np.stack([xs + flow[..., 0], ys + flow[..., 1]], -1), grid, grid,
                                    np.zeros((n, n)), "cost", 0.0)
    dense = dense_flow(flow, g, g, (S, S))
    want = q + [16, 0]
    for name, out in (("kdtree (before)", kdtree_transfer(q, dense)), ("pixel lattice", transfer_back(q, dense)),
                      ("column lattice", corr.transfer_back(q))):
        bad = np.linalg.norm(out - want, axis=1) > 1e-6
        print(f"fold regression, {name:16s}: {bad.sum()} of {len(q)} interior points wrong "
              f"(max error {np.abs(out - want).max():.1f} px)")


if __name__ == "__main__":
    main()
