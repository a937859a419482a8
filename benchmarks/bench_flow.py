"""Alignment throughput of the flow MRF solvers, side by side in one run, and the ratio to brute-force messages.

Usage: python benchmarks/bench_flow.py [--quick] [--threads 1] [--iters 10] [--repeats 3]
                                       [--grids 13 32 48] [--batches 1 16 64] [--cpu-budget 60]

[1] Alignments per second (median over ``--repeats`` timed runs, JIT compilation and CUDA start-up excluded by a
    warm-up run of every solver first) for grid x grid AlexNet-sized problems (C=256, random features) with the
    full displacement range (radius grid - 1: (2 grid - 1)^2 labels), ``--iters`` BP iterations (early stop off):
      numba-f64   convcorr.numerics.mrf.kernels reference solver (float64, one pair at a time, numba prange over rows)
      batch-f32   convcorr.numerics.mrf.batch.bp_flow_batch on CPU, numba message kernel (in-grid labels, float32)
      torch-cpu   the same solver with the vectorised torch message kernel on CPU (what the GPU runs)
      torch-cuda  the torch kernel on the GPU (only when torch sees one)
    A CPU configuration whose predicted time (batch-1 time x batch x repeats) exceeds ``--cpu-budget`` seconds is
    timed once instead of ``--repeats`` times (marked "1 run"); one predicted longer than the budget for a single
    run is skipped and marked so (raise the budget to run it).
    Every row also gives the agreement with numba-f64 on the batch's first pair (same labels, relative energy).
[2] One message over the full label range: distance transform (numba, lower envelope, O(L)) vs brute-force
    O(L^2) minimisation (numba), measured; brute-force alignment throughput extrapolated from it.
[3] A small grid solved end to end with brute-force messages and with distance transforms (sync schedule):
    measured times, ratio, same flow.
Prints measured numbers only; wall times on a shared machine are noisy: compare rows of one run.
"""
from __future__ import annotations

import argparse
import os
import time


def _parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small problems, finishes in seconds (CI smoke test)")
    ap.add_argument("--threads", type=int, default=1, help="numba / torch / BLAS threads (default 1: one core)")
    ap.add_argument("--iters", type=int, default=10, help="BP iterations per alignment (early stop off)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per configuration (median reported)")
    ap.add_argument("--grids", type=int, nargs="+", default=None, help="grid sides (default 13 32 48)")
    ap.add_argument("--batches", type=int, nargs="+", default=None, help="batch sizes (default 1 16 64)")
    ap.add_argument("--cpu-budget", type=float, default=60.0, help="skip CPU configurations predicted longer")
    return ap.parse_args()


ARGS = _parse()
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_v, str(ARGS.threads))

import numba  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from convcorr.core.arrays import l2_normalize  # noqa: E402
from convcorr.numerics.mrf.batch import bp_flow_batch  # noqa: E402
from convcorr.numerics.mrf.common import NORM_EPS  # noqa: E402
from convcorr.numerics.mrf.kernels import _bp_solve, _data_cost, _energy_from_volume, distance_transform_sq
from convcorr.numerics.mrf.solve import bp_flow


@numba.njit(cache=True)
def _brute_message(h, beta, out):
    """out(l) = min_l' h(l') + beta ||l - l'||^2 by explicit minimisation over all label pairs: O(L^2)."""
    ly, lx = h.shape
    for i in range(ly):
        for j in range(lx):
            m = np.inf
            for a in range(ly):
                for b in range(lx):
                    s = h[a, b] + beta * ((i - a) ** 2 + (j - b) ** 2)
                    if s < m:
                        m = s
            out[i, j] = m


@numba.njit(cache=True)
def _brute_messages(hs, beta, out):
    for n in range(hs.shape[0]):
        _brute_message(hs[n], beta, out[n])


@numba.njit(cache=True)
def _brute_sync_iteration(vol, msg_in, msg_out, beta):
    """Synchronous min-sum update with brute-force messages (same conventions as convcorr.numerics.mrf.kernels._bp_update)."""
    h, w, ly, lx = vol.shape
    hbuf = np.empty((ly, lx))
    obuf = np.empty((ly, lx))
    for y in range(h):
        for x in range(w):
            for k_out in range(4):
                ty = y + (1 if k_out == 2 else (-1 if k_out == 3 else 0))
                tx = x + (1 if k_out == 0 else (-1 if k_out == 1 else 0))
                if ty < 0 or ty >= h or tx < 0 or tx >= w:
                    continue
                k_skip = k_out ^ 1
                mn = np.inf
                for i in range(ly):
                    for j in range(lx):
                        s = vol[y, x, i, j]
                        for k in range(4):
                            if k != k_skip:
                                s += msg_in[k, y, x, i, j]
                        hbuf[i, j] = s
                        mn = min(mn, s)
                hbuf -= mn
                _brute_message(hbuf, beta, obuf)
                msg_out[k_out, ty, tx] = obuf


def brute_bp(vol: np.ndarray, beta: float, n_iter: int, r: int) -> np.ndarray:
    """Synchronous BP with O(L^2) messages; returns the lowest-energy belief argmin over the iterations."""
    h, w, L = vol.shape[:3]
    zero = np.zeros((h, w, 2), np.int64)
    msg = np.zeros((4, h, w, L, L))
    new = np.zeros_like(msg)
    best, best_e = None, np.inf
    for it in range(n_iter + 1):
        if it:
            _brute_sync_iteration(vol, msg, new, beta)
            msg, new = new, msg
        b = (vol + msg.sum(0)).reshape(h, w, -1).argmin(-1)
        dy, dx = np.divmod(b, L)
        lab = np.stack([dx - r, dy - r], -1)
        e = sum(_energy_from_volume(vol, lab, zero, r, beta))
        if best is None or e < best_e - 1e-9 * max(1.0, abs(best_e)):
            best, best_e = lab, e
    return best


def shifted_features(grid: int, C: int, dx: int, dy: int, rng, batch: int = 1):
    """Targets = random features; sources = targets shifted by (dx, dy) cells plus noise (fresh at the border)."""
    ft = rng.standard_normal((batch, grid, grid, C)).astype(np.float32)
    fs = rng.standard_normal((batch, grid, grid, C)).astype(np.float32)
    ys, xs = np.mgrid[0:grid, 0:grid]
    ok = (ys + dy >= 0) & (ys + dy < grid) & (xs + dx >= 0) & (xs + dx < grid)
    noise = 0.5 * rng.standard_normal((batch, ok.sum(), C)).astype(np.float32)
    fs[:, ok] = ft[:, (ys + dy)[ok], (xs + dx)[ok]] + noise
    return fs, ft, ok


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def main() -> None:
    T = ARGS.threads
    numba.set_num_threads(min(T, numba.config.NUMBA_NUM_THREADS))
    torch.set_num_threads(T)
    quick = ARGS.quick
    grids = ARGS.grids or ([8, 13] if quick else [13, 32, 48])
    batches = ARGS.batches or ([1, 4] if quick else [1, 16, 64])
    iters = 3 if quick and ARGS.iters == 10 else ARGS.iters
    reps = 2 if quick and ARGS.repeats == 3 else ARGS.repeats
    C, beta = (64 if quick else 256), 3e-3
    kw = dict(beta=beta, n_iter=iters, tol_iters=iters + 1)
    cuda = torch.cuda.is_available()
    solvers = ["numba-f64", "batch-f32", "torch-cpu"] + (["torch-cuda"] if cuda else [])

    def run(solver, fs, ft):
        if solver == "numba-f64":
            return [bp_flow(s, t, backend="numba", **kw) for s, t in zip(fs, ft)]
        if solver == "batch-f32":
            return bp_flow_batch(fs, ft, device="cpu", kernel="numba", **kw)
        if solver == "torch-cpu":
            return bp_flow_batch(fs, ft, device="cpu", kernel="torch", **kw)
        dev = torch.device("cuda")
        out = bp_flow_batch(torch.as_tensor(fs, device=dev), torch.as_tensor(ft, device=dev), kernel="torch", **kw)
        _sync(dev)
        return out

    rng = np.random.default_rng(0)
    t = time.perf_counter()  # JIT load / compile (cached on disk after the first run), CUDA context
    w_fs, w_ft, _ = shifted_features(5, 8, 1, 0, rng, 2)
    for s in solvers:
        run(s, w_fs, w_ft)
    bp_flow(w_fs[0], w_ft[0], radius=2, n_iter=1, schedule="sync", backend="numba")
    _brute_messages(np.zeros((1, 3, 3)), beta, np.zeros((1, 3, 3)))
    _brute_sync_iteration(np.zeros((2, 2, 3, 3)), np.zeros((4, 2, 2, 3, 3)), np.zeros((4, 2, 2, 3, 3)), beta)
    t_jit = time.perf_counter() - t
    print(f"threads: numba {numba.get_num_threads()}, torch {torch.get_num_threads()}, BLAS env "
          f"{os.environ['OMP_NUM_THREADS']}; CUDA: {torch.cuda.get_device_name() if cuda else 'none (not measured)'}; "
          f"JIT/warm-up {t_jit:.2f} s (excluded below)")

    # ---- [1] throughput table
    print(f"\n[1] alignments/s, C={C}, full displacement range, {iters} BP iterations (checkerboard, no early stop), "
          f"median of {reps} runs")
    print(f"{'grid':>5} {'labels':>6} {'batch':>5} {'solver':>11} {'align/s':>9} {'x numba':>8} {'s/batch':>9} "
          f"{'same labels':>11} {'rel dE':>8}")
    summary = {}
    for g in grids:
        L = (2 * g - 1) ** 2
        fs_all, ft_all, _ = shifted_features(g, C, 3, -2, rng, max(batches))
        ref = run("numba-f64", fs_all[:1], ft_all[:1])[0]  # agreement reference (untimed)
        t_one = {}
        for B in batches:
            fs, ft = fs_all[:B], ft_all[:B]
            for solver in solvers:
                if solver == "numba-f64" and B > 1:
                    continue  # one pair at a time: its throughput does not depend on the batch
                on_cpu = solver != "torch-cuda"
                one = t_one.get(solver, 0.0) * B  # predicted seconds of one timed run
                n_rep = reps if not on_cpu or one * reps <= ARGS.cpu_budget else 1  # long CPU rows: one run
                if on_cpu and one > ARGS.cpu_budget:
                    print(f"{g:>5} {L:>6} {B:>5} {solver:>11}   skipped (predicted {one:.0f} s > --cpu-budget "
                          f"{ARGS.cpu_budget:.0f} s)")
                    continue
                if solver == "torch-cuda":
                    run(solver, fs, ft)  # warm-up of this shape (allocator, kernels)
                ts = []
                for _ in range(n_rep):
                    t0 = time.perf_counter()
                    res = run(solver, fs, ft)
                    ts.append(time.perf_counter() - t0)
                tm = float(np.median(ts))
                if B == 1:
                    t_one[solver] = tm
                aps = B / tm
                summary[(g, B, solver)] = aps
                base = summary.get((g, 1, "numba-f64"))
                same = np.mean(np.all(res[0].flow == ref.flow, -1))
                de = abs(res[0].energy - ref.energy) / abs(ref.energy)
                print(f"{g:>5} {L:>6} {B:>5} {solver:>11} {aps:>9.3f} {aps / base:>7.2f}x {tm:>9.3f} "
                      f"{same * 100:>10.1f}% {de:>8.1e}" + ("  (1 run)" if n_rep < reps else ""), flush=True)
    if not cuda:
        print("    torch-cuda: no GPU here, not measured (the CUDA path is the torch-cpu kernel on CUDA tensors)")

    # ---- [2] one message, DT vs brute force (both numba, float64)
    print("\n[2] one message over the full label range: distance transform vs brute force O(L^2) (numba, measured)")
    for g in grids:
        side = 2 * g - 1
        L = side * side
        n_dt, n_bf = 200, max(2, min(50, int(2e8 // (L * L))))
        hs = rng.random((n_dt, side, side)) * 4
        distance_transform_sq(hs[:2], beta)
        t = time.perf_counter()
        a = distance_transform_sq(hs, beta)
        t_dt = (time.perf_counter() - t) / n_dt
        b = np.empty_like(hs[:n_bf])
        t = time.perf_counter()
        _brute_messages(hs[:n_bf], beta, b)
        t_bf = (time.perf_counter() - t) / n_bf
        assert np.allclose(a[:n_bf], b), "distance transform disagrees with brute force"
        n_msgs = iters * 2 * (2 * g * (g - 1))
        bf_aps = 1.0 / (t_bf * n_msgs)
        base = summary.get((g, 1, "numba-f64"))
        extra = f"; numba-f64 measured {base:.3g} align/s = {base / bf_aps:.3g}x" if base else ""
        for sv in solvers[1:]:
            best = max((v for (gg, _, s), v in summary.items() if gg == g and s == sv), default=None)
            if best:
                extra += f", {sv} (best batch) {best / bf_aps:.3g}x"
        print(f"    grid {g}: {L} labels: DT {t_dt * 1e3:.4f} ms, brute {t_bf * 1e3:.3f} ms per message "
              f"(ratio {t_bf / t_dt:.3g}x); EXTRAPOLATED brute-force BP {bf_aps:.3g} align/s "
              f"({n_msgs} messages){extra}")

    # ---- [3] small grid end to end, both ways (synchronous schedule, the same messages)
    small = 6 if quick else 12
    rs = small - 1
    fs2, ft2, _ = shifted_features(small, C, 2, -1, rng)
    vol, _ = _data_cost(l2_normalize(fs2[0], NORM_EPS), l2_normalize(ft2[0], NORM_EPS), rs)
    it = 5
    zero = np.zeros((small, small, 2), np.int64)
    t = time.perf_counter()
    fl_dt, _, _ = _bp_solve(vol, zero, rs, beta, it, "sync", 0.0, it + 1, np.inf)
    t_small_dt = time.perf_counter() - t
    t = time.perf_counter()
    fl_bf = brute_bp(vol, beta, it, rs)
    t_small_bf = time.perf_counter() - t
    same = np.mean(np.all(fl_bf == fl_dt, -1))
    print(f"\n[3] small grid {small}x{small}, radius {rs} ({(2 * rs + 1) ** 2} labels), {it} sync iterations, "
          f"measured end to end: brute force {t_small_bf:.3f} s, distance transform {t_small_dt:.4f} s: "
          f"ratio {t_small_bf / t_small_dt:.3g}x; same best-energy flow at {same * 100:.1f}% of columns")


if __name__ == "__main__":
    main()
