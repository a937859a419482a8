"""Time one MRF alignment (loopy BP with distance-transform messages) against brute-force O(labels^2) messages.

Usage: python benchmarks/bench_flow.py [--quick] [--threads 1] [--iters 10]

1. One alignment of a grid x grid feature map (C-d) with the full displacement range (radius grid - 1):
   data term + ``iters`` BP iterations (early stopping off), single thread by default.
2. One message, (2r+1)^2 labels: distance transform vs brute force O(L^2) (both numba, same thread count),
   measured over many messages; the brute-force time of the whole alignment is EXTRAPOLATED from it.
3. A small grid solved both ways end to end (synchronous BP, brute-force messages vs distance transforms):
   measured times, their ratio, and a check that both give the same flow.
Prints measured numbers only. Wall times on a busy machine are inflated; the process CPU time of [1] is
printed too (single-threaded, it is the time on an idle core).
"""
from __future__ import annotations

import argparse
import os
import time


def _parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small problem, finishes in seconds (CI smoke test)")
    ap.add_argument("--threads", type=int, default=1, help="numba / BLAS threads (default 1: one core)")
    ap.add_argument("--iters", type=int, default=10, help="BP iterations of the main alignment")
    return ap.parse_args()


ARGS = _parse()
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_v, str(ARGS.threads))

import numba  # noqa: E402
import numpy as np  # noqa: E402

from convcorr.flow import (_bp_solve, _data_cost, _energy_from_volume, bp_flow,  # noqa: E402
                           distance_transform_sq, l2_normalize)


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
    """Synchronous min-sum update with brute-force messages (same conventions as convcorr.flow._bp_update)."""
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


def shifted_features(grid: int, C: int, dx: int, dy: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Target = random features; source = target shifted by (dx, dy) cells plus noise (fresh at the border)."""
    ft = rng.standard_normal((grid, grid, C)).astype(np.float32)
    fs = rng.standard_normal((grid, grid, C)).astype(np.float32)
    ys, xs = np.mgrid[0:grid, 0:grid]
    ok = (ys + dy >= 0) & (ys + dy < grid) & (xs + dx >= 0) & (xs + dx < grid)
    fs[ok] = ft[(ys + dy)[ok], (xs + dx)[ok]] + 0.5 * rng.standard_normal((ok.sum(), C)).astype(np.float32)
    return fs, ft, ok


def main() -> None:
    numba.set_num_threads(min(ARGS.threads, numba.config.NUMBA_NUM_THREADS))
    grid, C, small = (12, 64, 8) if ARGS.quick else (32, 256, 12)
    r = grid - 1
    L = (2 * r + 1) ** 2
    beta = 3e-3
    rng = np.random.default_rng(0)
    dx, dy = 3, -2
    fs, ft, ok = shifted_features(grid, C, dx, dy, rng)

    t = time.perf_counter()  # JIT load / compile (cached on disk after the first run)
    bp_flow(fs[:4, :4], ft[:4, :4], radius=2, n_iter=1)
    bp_flow(fs[:4, :4], ft[:4, :4], radius=2, n_iter=1, schedule="sync")
    _brute_messages(np.zeros((1, 3, 3)), beta, np.zeros((1, 3, 3)))
    _brute_sync_iteration(np.zeros((2, 2, 3, 3)), np.zeros((4, 2, 2, 3, 3)), np.zeros((4, 2, 2, 3, 3)), beta)
    t_jit = time.perf_counter() - t
    print(f"threads: numba {numba.get_num_threads()}, BLAS env {os.environ['OMP_NUM_THREADS']}; "
          f"JIT load/compile {t_jit:.2f} s (excluded below)")

    # ---- 1. one alignment, full displacement range
    print(f"\n[1] alignment: grid {grid}x{grid}, C={C}, radius {r}: {L} labels ({2 * r + 1}x{2 * r + 1}), "
          f"beta {beta}, {ARGS.iters} iterations (checkerboard schedule, no early stop)")
    t0, c0 = time.perf_counter(), time.process_time()
    res = bp_flow(fs, ft, beta=beta, radius=r, n_iter=ARGS.iters, tol_iters=ARGS.iters + 1)
    t_total, c_total = time.perf_counter() - t0, time.process_time() - c0
    t = time.perf_counter()
    _data_cost(l2_normalize(fs), l2_normalize(ft), r)
    t_data = time.perf_counter() - t
    n_msgs = res.n_iter * 2 * (2 * grid * (grid - 1))  # directed messages on the 4-connected grid
    print(f"    total {t_total:.3f} s wall, {c_total:.3f} s process CPU "
          f"(data term ~{t_data:.3f} s, BP ~{t_total - t_data:.3f} s = "
          f"{(t_total - t_data) / res.n_iter:.3f} s / iteration, {n_msgs} messages)")
    print("    energy per iteration: " + " ".join(f"{e:.2f}" for e in res.energies))
    acc = np.mean(np.all(res.flow[ok] == [dx, dy], -1))
    print(f"    best energy {res.energy:.2f} (data {res.data_energy:.2f} + smooth {res.smooth_energy:.2f}); "
          f"true shift ({dx}, {dy}) recovered at {acc * 100:.1f}% of the overlap columns")
    res_s = bp_flow(fs, ft, beta=beta, radius=r, n_iter=ARGS.iters, tol_iters=ARGS.iters + 1, schedule="sync")
    print("    sync schedule, energy per iteration: " + " ".join(f"{e:.2f}" for e in res_s.energies))

    # ---- 2. one message, DT vs brute force (both numba)
    n_dt, n_bf = 2000, (20 if L > 1000 else 200)
    hs = rng.random((n_dt, 2 * r + 1, 2 * r + 1)) * 4
    t = time.perf_counter()
    a = distance_transform_sq(hs, beta)
    t_dt = (time.perf_counter() - t) / n_dt
    b = np.empty_like(hs[:n_bf])
    t = time.perf_counter()
    _brute_messages(hs[:n_bf], beta, b)
    t_bf = (time.perf_counter() - t) / n_bf
    assert np.allclose(a[:n_bf], b), "distance transform disagrees with brute force"
    print(f"\n[2] one message over {L} labels (measured, {n_dt} / {n_bf} messages): distance transform "
          f"{t_dt * 1e3:.4f} ms, brute force O(L^2) {t_bf * 1e3:.2f} ms: ratio {t_bf / t_dt:.0f}x")
    print(f"    EXTRAPOLATED brute-force BP of alignment [1]: {n_msgs} messages x {t_bf * 1e3:.2f} ms = "
          f"{t_bf * n_msgs:.0f} s (vs {t_total - t_data:.2f} s measured with distance transforms)")

    # ---- 3. small grid end to end, both ways (synchronous schedule, the same messages)
    rs = small - 1
    fs2, ft2, _ = shifted_features(small, C, 2, -1, rng)
    vol, _ = _data_cost(l2_normalize(fs2), l2_normalize(ft2), rs)
    it = 5
    t = time.perf_counter()
    zero = np.zeros((small, small, 2), np.int64)
    fl_dt, _, _ = _bp_solve(vol, zero, rs, beta, it, "sync", 0.0, it + 1, np.inf)
    t_small_dt = time.perf_counter() - t
    t = time.perf_counter()
    fl_bf = brute_bp(vol, beta, it, rs)
    t_small_bf = time.perf_counter() - t
    print(f"\n[3] small grid {small}x{small}, radius {rs} ({(2 * rs + 1) ** 2} labels), {it} sync iterations, "
          f"measured end to end: brute force {t_small_bf:.3f} s, distance transform {t_small_dt:.4f} s: "
          f"ratio {t_small_bf / t_small_dt:.0f}x")
    same = np.mean(np.all(fl_bf == fl_dt, -1))
    print(f"    both give the same best-energy flow at {same * 100:.1f}% of columns")


if __name__ == "__main__":
    main()
