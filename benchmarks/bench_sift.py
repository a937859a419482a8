"""Measured timings of dense SIFT (convcorr.sift) on this machine.

Usage: python benchmarks/bench_sift.py [--quick]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from convcorr.sift import dense_sift_grid, sift_at_points


def timeit(fn, repeat=3):
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    cases = [(500, 8, 8), (500, 4, 8), (200, 1, 4)] if not args.quick else [(200, 8, 8)]
    print(f"{'image':>10}{'step':>6}{'bin':>5}{'descriptors':>13}{'seconds':>10}")
    for side, step, b in cases:
        im = (rng.random((side, side, 3)) * 255).astype(np.uint8)
        t, (d, _) = timeit(lambda: dense_sift_grid(im, step=step, bin_size=b))
        print(f"{side}x{side:<6}{step:>6}{b:>5}{d.shape[0] * d.shape[1]:>13}{t:>10.3f}")
    im = (rng.random((227, 227, 3)) * 255).astype(np.uint8)
    xy = rng.uniform(0, 226, (300, 2))
    for r in (10, 40, 160):
        t, _ = timeit(lambda: sift_at_points(im, xy, r / 2))
        print(f"sift_at_points: 300 points, radius {r}: {t:.3f} s")


if __name__ == "__main__":
    main()
