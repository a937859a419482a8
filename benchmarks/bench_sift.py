"""Measured timings of dense SIFT (convcorr.numerics.sift) on this machine.

Every number printed is measured here on random uint8 RGB images: best of ``--repeat`` runs of wall-clock time
and, separately, of process CPU time (all threads). On a shared, loaded machine wall time exceeds CPU time; the
load average is printed for context.

Usage: python benchmarks/bench_sift.py [--quick] [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from convcorr.numerics.sift import dense_sift, dense_sift_grid, radius_to_bin_size, sift_at_points


def best_of(fn, repeat: int):
    """(best wall seconds, best CPU seconds, last output) over ``repeat`` runs."""
    wall, cpu, out = np.inf, np.inf, None
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        wall = min(wall, time.perf_counter() - t)
        cpu = min(cpu, time.process_time() - c)
    return wall, cpu, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="only the small cases")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, numpy {np.__version__}, "
          f"load average {load:.1f}")

    grid_cases = [(200, 8, 8), (200, 1, 4)] if args.quick else [
        (500, 8, 8), (500, 4, 8), (500, 8, 4), (200, 1, 4), (200, 1, 8), (227, 1, 5), (500, 1, 8)]
    print("\n## dense_sift_grid")
    print(f"{'image':>10} {'step':>5} {'bin':>5} {'grid':>10} {'descriptors':>12} {'wall s':>8} {'cpu s':>8}")
    for side, step, b in grid_cases:
        im = (rng.random((side, side, 3)) * 255).astype(np.uint8)
        t, c, (d, _) = best_of(lambda: dense_sift_grid(im, step=step, bin_size=b), args.repeat)
        print(f"{side}x{side:<6} {step:>5} {b:>5} {d.shape[0]}x{d.shape[1]:<6} {d.shape[0] * d.shape[1]:>12} "
              f"{t:>8.3f} {c:>8.3f}")

    print("\n## dense_sift with the flat ('Fast') window")
    im = (rng.random((500, 500, 3)) * 255).astype(np.uint8)
    t, c, (f, _) = best_of(lambda: dense_sift(im, step=8, bin_size=8, flat_window=True), args.repeat)
    print(f"500x500 step 8 bin 8: {len(f)} descriptors, wall {t:.3f} s, cpu {c:.3f} s")

    print("\n## sift_at_points on a 227x227 crop (paper radii; bin = radius / 2)")
    print(f"{'radius':>7} {'points':>22} {'wall s':>8} {'cpu s':>8}")
    im = (rng.random((227, 227, 3)) * 255).astype(np.uint8)
    scattered = rng.uniform(0, 226, (300, 2))
    d = np.arange(-24, 25)
    xs, ys = np.meshgrid(110 + d, 100 + d)
    window = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float64)
    radii = (10, 160) if args.quick else (10, 20, 40, 80, 160)
    for r in radii:
        for name, pts in (("300 scattered", scattered), (f"{len(window)} window 49x49", window)):
            t, c, _ = best_of(lambda: sift_at_points(im, pts, radius_to_bin_size(r)), args.repeat)
            print(f"{r:>7} {name:>22} {t:>8.3f} {c:>8.3f}")


if __name__ == "__main__":
    main()
