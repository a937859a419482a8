"""Scale of the feature database (paper Sec. 2 uses >= 1M vectors): memory, build and query times, recall.

The ``--n`` (default 1,000,000) vectors are written to a float32 file on disk chunk by chunk (never held in
memory at once); exact top-k neighbours of the queries are computed from that file chunk by chunk (the reference).
Then EVERY index kind is built from the file and queried in its OWN child process, which reports its peak resident
memory (``resource.getrusage(RUSAGE_SELF).ru_maxrss``), so each row's memory is that of one 1M-vector database:

  flat    IndexFlatIP, float32, exhaustive: exact (the reference kind of convcorr.methods.reconstruction.FeatureDatabase)
  flat16  float16 codes, exhaustive (IndexScalarQuantizer fp16): half the memory
  sq8     8-bit codes with trained per-dimension ranges, exhaustive: a quarter
  ivf16   IVF (nlist cells) over float16 codes, at several nprobe
  ivf     IVF over float32 vectors (IndexIVFFlat) at several nprobe
  hnsw    IndexHNSWFlat (only with --hnsw: slow to build on 2 cores)

Vectors: by default REAL AlexNet (caffe-q8) features of ``--layer`` (conv2: 256-d, 729 columns per 227 x 227 view,
so 1M vectors need ~1,400 views) from random square crops / flips of the shared photos and their random smooth
warps (the view generator of ``convcorr.experiments.visualize``), with the query photos (face/lenna, images/cat)
held out; queries are columns of random crops of the held-out photos. ``--synthetic`` uses random Gaussian
vectors instead (queries: database vectors plus noise), stated in the output.

Usage: python benchmarks/bench_faiss.py [--n 1000000] [--layer conv2] [--synthetic] [--kinds flat flat16 sq8 ivf16]
                                        [--queries 200] [--hnsw] [--quick] [--work DIR]
Prints measured numbers only.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def peak_rss_gb() -> float:
    """Peak resident memory of this process, GB: ``resource.getrusage(RUSAGE_SELF).ru_maxrss``, or on Linux the
    VmHWM of /proc/self/status when smaller: a child started by fork + exec inherits the parent's ru_maxrss
    (Linux keeps it across execve), while VmHWM belongs to the process's own address space."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peak = min(peak, int(line.split()[1]) / 2**20)
    except OSError:
        pass
    return peak


def _l2n(x):
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(n, 1e-12)).astype(np.float32)


# ---------------------------------------------------------------------------------------------- data to disk
def write_real(path: Path, n: int, layer: str, n_queries: int, seed: int = 0):
    from convcorr.backbones import get_backbone
    from convcorr.experiments.visualize import CONFIGS, sources, view_generator

    conf = dict(CONFIGS["default"])
    bb = get_backbone("alexnet")
    size = bb.input_size
    held = set(conf["queries"])
    photos = sources(conf)
    db_photos = [p for p in photos if p.id not in held]
    q_photos = [p for p in photos if p.id in held]
    per_view = int(np.prod(bb.extract([np.zeros((size, size, 3), np.uint8)], [layer], size=None)[layer].shape[1:3]))
    n_views = math.ceil(n / per_view)
    rng = np.random.default_rng(seed)
    written, batch, t = 0, [], time.perf_counter()
    with open(path, "wb") as f:
        def flush():
            nonlocal written, batch
            a = bb.extract(batch, [layer], size=None)[layer]
            a = _l2n(a.reshape(-1, a.shape[-1]))[: n - written]
            f.write(a.tobytes())
            written += len(a)
            batch = []
        for v, _ in view_generator(db_photos, n_views, conf, size, rng):
            batch.append(v)
            if len(batch) == 32:
                flush()
        if batch:
            flush()
    qv = [v for v, _ in view_generator(q_photos, max(2, math.ceil(n_queries / per_view)), conf, size, rng)]
    Q = bb.extract(qv, [layer], size=None)[layer]
    dim = Q.shape[-1]
    Q = Q.reshape(-1, dim)
    Q = _l2n(Q[rng.choice(len(Q), min(n_queries, len(Q)), replace=False)])
    info = (f"REAL AlexNet caffe-q8 {layer} features ({dim}-d) of {n_views} augmented 227x227 views of "
            f"{len(db_photos)} shared photos (+2 warps each); queries from the held-out photos {sorted(held)}")
    return written, dim, Q, info, time.perf_counter() - t


def write_synthetic(path: Path, n: int, dim: int, n_queries: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    t = time.perf_counter()
    qidx = np.sort(rng.choice(n, n_queries, replace=False))
    Q = []
    with open(path, "wb") as f:
        for a in range(0, n, 100_000):
            X = _l2n(rng.standard_normal((min(100_000, n - a), dim), dtype=np.float32))
            sel = qidx[(qidx >= a) & (qidx < a + len(X))] - a
            Q.append(X[sel])
            f.write(X.tobytes())
    Q = np.concatenate(Q)
    Q = _l2n(Q + 0.5 * rng.standard_normal(Q.shape, dtype=np.float32) / np.sqrt(dim))
    return n, dim, Q, f"SYNTHETIC random Gaussian vectors ({dim}-d); queries = database vectors + noise", \
        time.perf_counter() - t


def chunks(path: Path, n: int, dim: int, size: int = 100_000):
    with open(path, "rb") as f:
        for a in range(0, n, size):
            m = min(size, n - a)
            yield a, np.frombuffer(f.read(m * dim * 4), np.float32).reshape(m, dim)


def exact_topk(path: Path, n: int, dim: int, Q: np.ndarray, k: int) -> np.ndarray:
    """(Q, k) ids of the exact cosine top-k, chunk by chunk (the reference)."""
    best_s = np.full((len(Q), k), -np.inf, np.float32)
    best_i = np.full((len(Q), k), -1, np.int64)
    for a, X in chunks(path, n, dim):
        S = Q @ X.T
        kk = min(k, S.shape[1])
        idx = np.argpartition(-S, kk - 1, axis=1)[:, :kk]
        s = np.take_along_axis(S, idx, 1)
        cs, ci = np.concatenate([best_s, s], 1), np.concatenate([best_i, idx + a], 1)
        o = np.argsort(-cs, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(cs, o, 1), np.take_along_axis(ci, o, 1)
    return best_i


def recall(ids: np.ndarray, ref: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(ids, ref)]))


# -------------------------------------------------------------------------------------------- child process
def child(a) -> None:
    """Build one index kind from the vector file, query it, print one JSON line per setting."""
    import faiss

    from convcorr.methods.reconstruction import FeatureDatabase

    faiss.omp_set_num_threads(a.threads)
    Q = np.load(a.work / "queries.npy")
    ref = np.load(a.work / "ref.npy")
    kw = {"ivf": dict(nlist=a.nlist), "ivf16": dict(nlist=a.nlist), "hnsw": dict(hnsw_m=a.hnsw_m),
          "sq8": dict(train_size=100_000)}.get(a.child, {})
    db = FeatureDatabase(a.dim, a.child, **kw)
    t = time.perf_counter()
    for s, X in chunks(a.work / "vectors.f32", a.n, a.dim):
        db.add(X, 0, np.zeros((len(X), 2), np.float32))
    db.finalize()
    t_build = time.perf_counter() - t
    settings = {"ivf": a.nprobe, "ivf16": a.nprobe, "hnsw": a.ef_search}.get(a.child, [None])
    for st in settings:
        if a.child in ("ivf", "ivf16"):
            db.index.nprobe = st
        elif a.child == "hnsw":
            db.ef_search = st
        t = time.perf_counter()
        ids = db.search(Q, a.k)[1]
        batch_ms = 1000 * (time.perf_counter() - t) / len(Q)
        t = time.perf_counter()
        for q in Q[:20]:
            db.search(q[None], a.k)
        single_ms = 1000 * (time.perf_counter() - t) / min(20, len(Q))
        name = a.child + ("" if st is None else
                          f" nlist={db.nlist} nprobe={st}" if a.child.startswith("ivf") else f" efSearch={st}")
        print(json.dumps({"name": name, "build_s": t_build, "batch_ms": batch_ms, "single_ms": single_ms,
                          "recall": recall(ids, ref), "index_mb": db.nbytes()["index"] / 2**20,
                          "peak_gb": peak_rss_gb()}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--layer", default="conv2")
    ap.add_argument("--dim", type=int, default=256, help="dimension of --synthetic vectors")
    ap.add_argument("--synthetic", action="store_true")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--kinds", nargs="+", default=["flat", "flat16", "sq8", "ivf16", "ivf"])
    ap.add_argument("--nlist", type=int, default=1024)
    ap.add_argument("--nprobe", type=int, nargs="+", default=[8, 32, 128])
    ap.add_argument("--hnsw", action="store_true", help="also build IndexHNSWFlat (slow)")
    ap.add_argument("--hnsw-m", type=int, default=32)
    ap.add_argument("--ef-search", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    ap.add_argument("--quick", action="store_true", help="100k vectors, for a smoke run")
    ap.add_argument("--work", type=Path, default=None, help="folder for the vector file (default: a temp dir)")
    ap.add_argument("--reuse", action="store_true", help="reuse vectors/queries/reference already in --work")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child(a)
    n = 100_000 if a.quick else a.n
    kinds = list(a.kinds) + (["hnsw"] if a.hnsw else [])
    import faiss

    tmp = None
    if a.work is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_faiss_")
        a.work = Path(tmp.name)
    a.work.mkdir(parents=True, exist_ok=True)
    print(f"faiss {faiss.__version__}, {a.threads} threads; vectors on disk in {a.work}")
    vec = a.work / "vectors.f32"
    if a.reuse and all((a.work / f).is_file() for f in ("vectors.f32", "queries.npy", "ref.npy", "info.json")):
        Q, ref = np.load(a.work / "queries.npy"), np.load(a.work / "ref.npy")
        meta = json.loads((a.work / "info.json").read_text())
        n, dim, info, t_data = meta["n"], meta["dim"], meta["info"], 0.0
        print(f"vectors: {n:,} x {dim}  ({info}); {len(Q)} queries, k={a.k}; REUSED from {a.work}")
    elif a.synthetic:
        n, dim, Q, info, t_data = write_synthetic(vec, n, a.dim, a.queries)
    else:
        n, dim, Q, info, t_data = write_real(vec, n, a.layer, a.queries)
    if not a.reuse or t_data:
        print(f"vectors: {n:,} x {dim}  ({info}); {len(Q)} queries, k={a.k}; written in {t_data:.1f} s")
        t = time.perf_counter()
        ref = exact_topk(vec, n, dim, Q, a.k)
        print(f"exact reference (chunked brute force from disk): {time.perf_counter() - t:.1f} s; "
              f"this process's peak RSS so far {peak_rss_gb():.2f} GB", flush=True)
        np.save(a.work / "queries.npy", Q)
        np.save(a.work / "ref.npy", ref)
        (a.work / "info.json").write_text(json.dumps({"n": n, "dim": dim, "info": info}))
    print(f"\n{'index (own process)':34s} {'build s':>8s} {'ms/q batch':>11s} {'ms/q single':>12s} "
          f"{'recall@' + str(a.k):>10s} {'index MB':>9s} {'peak RSS GB':>12s}", flush=True)
    base = [sys.executable, __file__, "--work", str(a.work), "--n", str(n), "--dim", str(dim), "--k", str(a.k),
            "--nlist", str(a.nlist), "--hnsw-m", str(a.hnsw_m), "--threads", str(a.threads),
            "--nprobe", *map(str, a.nprobe), "--ef-search", *map(str, a.ef_search)]
    for kind in kinds:
        p = subprocess.run(base + ["--child", kind], capture_output=True, text=True)
        if p.returncode:
            print(f"{kind:34s} FAILED: {p.stderr.strip().splitlines()[-1] if p.stderr.strip() else p.returncode}")
            continue
        for line in p.stdout.splitlines():
            if line.startswith("{"):
                r = json.loads(line)
                print(f"{r['name']:34s} {r['build_s']:8.1f} {r['batch_ms']:11.3f} {r['single_ms']:12.2f} "
                      f"{r['recall']:10.3f} {r['index_mb']:9.0f} {r['peak_gb']:12.2f}", flush=True)
    print(f"\ndata-preparation process peak RSS {peak_rss_gb():.2f} GB (features extracted and written in chunks)")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
