"""Time one MRF alignment (loopy BP with distance-transform messages) against brute-force O(labels^2) messages.

Usage: python benchmarks/bench_flow.py [--quick] [--threads 1]
Prints measured numbers only.
"""
from __future__ import annotations

import argparse
import time

import numba
import numpy as np

from convcorr.flow import bp_flow, data_cost, distance_transform_sq, l2_normalize


def brute_message(h: np.ndarray, beta: float, r: int) -> np.ndarray:
    """O(L^2) message: out(l) = min_l' h(l') + beta ||l - l'||^2 for all labels, by explicit minimisation."""
    d = np.arange(-r, r + 1)
    ly, lx = np.meshgrid(d, d, indexing="ij")
    lab = np.stack([ly.ravel(), lx.ravel()], 1).astype(np.float64)
    out = np.empty(len(lab))
    hv = h.ravel()
    for start in range(0, len(lab), 512):  # chunks of target labels, all source labels at once
        l = lab[start:start + 512]
        d2 = ((l[:, None, :] - lab[None, :, :]) ** 2).sum(-1)
        out[start:start + 512] = (hv[None, :] + beta * d2).min(1)
    return out.reshape(h.shape)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small grid, finishes in seconds")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--iters", type=int, default=10)
    args = ap.parse_args()
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    grid, r, C = (12, 5, 64) if args.quick else (32, 31, 256)
    rng = np.random.default_rng(0)
    fs = rng.standard_normal((grid, grid, C)).astype(np.float32)
    ft = np.roll(fs, (3, -2), axis=(0, 1)) + 0.1 * rng.standard_normal(fs.shape).astype(np.float32)
    bp_flow(fs[:4, :4], ft[:4, :4], radius=2, n_iter=1)  # JIT warm-up (cached after the first run)

    L = (2 * r + 1) ** 2
    t = time.perf_counter()
    vol = data_cost(l2_normalize(fs), l2_normalize(ft), r)
    t_data = time.perf_counter() - t
    t = time.perf_counter()
    res = bp_flow(fs, ft, beta=3e-3, radius=r, n_iter=args.iters, tol_iters=args.iters + 1, volume=vol)
    t_bp = time.perf_counter() - t
    n_msgs = res.n_iter * 2 * (2 * grid * (grid - 1))  # directed messages on the 4-grid
    print(f"grid {grid}x{grid}, {C}-d features, radius {r}: {L} labels ({2 * r + 1}x{2 * r + 1}), "
          f"threads {numba.get_num_threads()}")
    print(f"data term: {t_data:.3f} s; BP: {res.n_iter} iterations, {n_msgs} messages in {t_bp:.3f} s "
          f"({t_bp / res.n_iter:.3f} s / iteration); total {t_data + t_bp:.3f} s")
    inner = res.flow[3:-3, 3:-3]
    print(f"recovered shift (dx, dy) = (-2, 3) at {np.mean(np.all(inner == [-2, 3], -1)) * 100:.1f}% of interior columns")

    h = rng.random((2 * r + 1, 2 * r + 1)) * 4
    n_rep = 20 if L > 1000 else 200
    t = time.perf_counter()
    for _ in range(n_rep):
        a = distance_transform_sq(h, 3e-3)
    t_dt = (time.perf_counter() - t) / n_rep
    n_bf = 3 if L > 1000 else 20
    t = time.perf_counter()
    for _ in range(n_bf):
        b = brute_message(h, 3e-3, r)
    t_bf = (time.perf_counter() - t) / n_bf
    assert np.allclose(a, b), "distance transform disagrees with brute force"
    print(f"one message: distance transform {t_dt * 1e3:.3f} ms, brute force O(L^2) {t_bf * 1e3:.1f} ms "
          f"(measured over {n_rep} / {n_bf} messages): ratio {t_bf / t_dt:.0f}x")
    print(f"brute-force BP of the same run, extrapolated from the measured per-message time: "
          f"{t_bf * n_msgs:.0f} s vs {t_bp:.2f} s measured")


if __name__ == "__main__":
    main()
