"""Small costs found by profiling, before/after side by side in one run (issue #11, item 4).

Usage: python benchmarks/bench_small_costs.py [--threads 1] [--repeats 7]

[1] Hard-negative mining scores: ``X_neg @ w + b`` for 16,000 x 2304 float32 conv5-3x3 negatives (Table 4's
    largest pool) with the float64 weight vector (numpy upcasts the whole matrix every round: the former code)
    vs. :func:`convcorr.methods.prediction.svm_scores` (float32 product), and their largest difference.
[2] AlexNet's LRN on conv1's output (8 x 96 x 55 x 55): torch.nn.LocalResponseNorm vs
    convcorr.backbones.alexnet.LocalResponseNorm, next to conv1 itself, and their largest difference.
Prints median wall times over ``--repeats`` runs (after one warm-up run).
"""
from __future__ import annotations

import argparse
import os
import time

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--repeats", type=int, default=7)
ARGS = ap.parse_args()
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, str(ARGS.threads))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

from convcorr.backbones.alexnet import LocalResponseNorm  # noqa: E402
from convcorr.methods.prediction import svm_scores  # noqa: E402


def timeit(fn, reps):
    fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def main():
    torch.set_num_threads(ARGS.threads)
    reps = ARGS.repeats
    print(f"threads: torch {torch.get_num_threads()}, BLAS env {os.environ['OMP_NUM_THREADS']}; "
          f"median of {reps} runs")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((16000, 2304)).astype(np.float32)
    w = rng.standard_normal(2304)
    t_old = timeit(lambda: X @ w + 0.1, reps)
    t_new = timeit(lambda: svm_scores(X, w, 0.1), reps)
    diff = np.abs(svm_scores(X, w, 0.1) - (X @ w + 0.1)).max()
    print(f"[1] mining scores 16000 x 2304: float64 upcast {t_old * 1e3:.1f} ms, float32 {t_new * 1e3:.1f} ms: "
          f"{t_old / t_new:.2f}x faster; max |diff| {diff:.2e} (scores ~{np.abs(X @ w).mean():.0f})")

    x = torch.relu(torch.randn(8, 96, 55, 55) * 50)
    img = torch.randn(8, 3, 227, 227)
    conv = nn.Conv2d(3, 96, 11, 4)
    ref, new = nn.LocalResponseNorm(5, 1e-4, 0.75, 1.0), LocalResponseNorm(5, 1e-4, 0.75, 1.0)
    with torch.no_grad():
        t_conv = timeit(lambda: conv(img), reps)
        t_ref = timeit(lambda: ref(x), reps)
        t_lrn = timeit(lambda: new(x), reps)
        d = (ref(x) - new(x)).abs().max().item()
    print(f"[2] LRN on 8 x 96 x 55 x 55: torch.nn {t_ref * 1e3:.1f} ms ({t_ref / t_conv:.2f}x conv1's "
          f"{t_conv * 1e3:.1f} ms), convcorr {t_lrn * 1e3:.1f} ms ({t_lrn / t_conv:.2f}x conv1): "
          f"{t_ref / t_lrn:.2f}x faster; max |diff| {d:.1e}")


if __name__ == "__main__":
    main()
