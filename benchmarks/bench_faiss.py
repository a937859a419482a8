"""Scale of the feature database (paper Sec. 2 uses >= 1M vectors): build and query times, recall, memory.

Builds a database of ``--n`` (default 1,000,000) vectors and indexes it exactly (faiss IndexFlatIP) and
approximately (IndexIVFFlat at several nprobe; IndexHNSWFlat unless --no-hnsw), all with cosine similarity
(inner product of L2-normalised vectors).

Vectors: by default REAL AlexNet (caffe-q8) features of ``--layer`` (conv2: 256-d, 729 columns per 227 x 227 view,
so 1M vectors need ~1,400 views) from random square crops / flips of the shared photos and their random smooth
warps (the view generator of ``convcorr.experiments.visualize``), with the query photos (face/lenna, images/cat)
held out; queries are columns of random crops of the held-out photos. ``--synthetic`` uses random Gaussian
vectors of the layer's dimension instead (queries: database vectors plus noise), stated in the output.

Usage: python benchmarks/bench_faiss.py [--n 1000000] [--layer conv2] [--synthetic] [--no-hnsw] [--quick]
Prints measured numbers only.
"""
from __future__ import annotations

import argparse
import math
import resource
import time

import faiss
import numpy as np

from convcorr.visualize import FeatureDatabase, l2_normalize


def rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def real_features(n: int, layer: str, n_queries: int, seed: int = 0):
    from convcorr.backbones import get_backbone
    from convcorr.experiments.visualize import CONFIGS, sources, view_generator
    from convcorr.visualize import build_database

    conf = dict(CONFIGS["default"])
    bb = get_backbone("alexnet")
    size = bb.input_size
    per_view = int(np.prod(bb.extract([np.zeros((size, size, 3), np.uint8)], [layer], size=None)[layer].shape[1:3]))
    held = set(conf["queries"])
    photos = sources(conf)
    db_photos = [p for p in photos if p.id not in held]
    q_photos = [p for p in photos if p.id in held]
    n_views = math.ceil(n / per_view)
    rng = np.random.default_rng(seed)
    t = time.perf_counter()
    db = build_database(bb, (v for v, _ in view_generator(db_photos, n_views, conf, size, rng)), layer,
                        max_vectors=n, n_images=n_views, batch_size=32, desc=f"{layer} features")
    t_total = time.perf_counter() - t
    X = db.index.reconstruct_n(0, db.index.ntotal)  # the normalised vectors
    qv = [v for v, _ in view_generator(q_photos, max(2, math.ceil(n_queries / per_view)), conf, size, rng)]
    Q = bb.extract(qv, [layer], size=None)[layer].reshape(-1, X.shape[1])
    Q = Q[rng.choice(len(Q), min(n_queries, len(Q)), replace=False)]
    info = (f"REAL AlexNet caffe-q8 {layer} features ({X.shape[1]}-d) of {len(db.images)} augmented 227x227 views of "
            f"{len(db_photos)} shared photos (+2 warps each); queries from the held-out photos {sorted(held)}")
    return X, l2_normalize(Q), info, {"features_s": db.timings["features_s"], "views_total_s": t_total,
                                     "flat_add_s": db.timings["add_s"]}


def synthetic_features(n: int, dim: int, n_queries: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = l2_normalize(rng.standard_normal((n, dim), dtype=np.float32))
    idx = rng.choice(n, n_queries, replace=False)
    Q = l2_normalize(X[idx] + 0.5 * rng.standard_normal((n_queries, dim), dtype=np.float32) / np.sqrt(dim))
    return X, Q, f"SYNTHETIC random Gaussian vectors ({dim}-d); queries = database vectors + noise", {}


def recall(ids: np.ndarray, ref: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(ids, ref)]))


def timed_search(db: FeatureDatabase, Q: np.ndarray, k: int, single: int = 20):
    t = time.perf_counter()
    sims, ids = db.search(Q, k)
    batch_ms = 1000 * (time.perf_counter() - t) / len(Q)
    t = time.perf_counter()
    for q in Q[:single]:
        db.search(q[None], k)
    single_ms = 1000 * (time.perf_counter() - t) / min(single, len(Q))
    return ids, batch_ms, single_ms


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--layer", default="conv2")
    ap.add_argument("--dim", type=int, default=256, help="dimension of --synthetic vectors")
    ap.add_argument("--synthetic", action="store_true")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--nlist", type=int, default=1024)
    ap.add_argument("--nprobe", type=int, nargs="+", default=[8, 32, 128])
    ap.add_argument("--hnsw-m", type=int, default=32)
    ap.add_argument("--ef-search", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--no-hnsw", action="store_true")
    ap.add_argument("--quick", action="store_true", help="100k vectors, for a smoke run")
    args = ap.parse_args()
    n = 100_000 if args.quick else args.n
    print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads")
    t = time.perf_counter()
    if args.synthetic:
        X, Q, info, extra = synthetic_features(n, args.dim, args.queries)
    else:
        X, Q, info, extra = real_features(n, args.layer, args.queries)
    print(f"vectors: {len(X):,} x {X.shape[1]}  ({info}); {len(Q)} queries, k={args.k}")
    print(f"  data preparation {time.perf_counter() - t:.1f} s {extra}", flush=True)
    dummy = np.zeros((len(X), 2), np.float32)

    def build(kind, **kw):
        db = FeatureDatabase(X.shape[1], kind, **kw)
        t = time.perf_counter()
        for a in range(0, len(X), 200_000):
            db.add(X[a:a + 200_000], 0, dummy[a:a + 200_000])
        db.finalize()
        return db, time.perf_counter() - t

    print(f"\n{'index':48s} {'build s':>8s} {'ms/query (batch)':>17s} {'ms/query (single)':>18s} "
          f"{'recall@' + str(args.k):>10s} {'index MB':>9s}", flush=True)

    class Rows(list):
        def append(self, r):
            name, tb, bm, sm, rc, nb = r
            print(f"{name:48s} {tb:8.1f} {bm:17.3f} {sm:18.2f} {rc:10.3f} {nb / 2**20:9.0f}", flush=True)
            super().append(r)

    rows = Rows()
    flat, t_flat = build("flat")
    ref, b_ms, s_ms = timed_search(flat, Q, args.k)
    mem = flat.nbytes()
    rows.append(("flat (exact)", t_flat, b_ms, s_ms, 1.0, mem["index"]))
    prov = mem["provenance"]
    del flat
    ivf, t_ivf = build("ivf", nlist=args.nlist)
    for p in args.nprobe:
        ivf.index.nprobe = p
        ids, b_ms, s_ms = timed_search(ivf, Q, args.k)
        rows.append((f"ivf nlist={ivf.nlist} nprobe={p} (train {ivf.timings['train_s']:.1f} s)", t_ivf, b_ms, s_ms,
                     recall(ids, ref), ivf.nbytes()["index"]))
    del ivf
    if not args.no_hnsw:
        hnsw, t_h = build("hnsw", hnsw_m=args.hnsw_m, ef_construction=64)
        for ef in args.ef_search:
            hnsw.ef_search = ef
            ids, b_ms, s_ms = timed_search(hnsw, Q, args.k)
            rows.append((f"hnsw M={args.hnsw_m} efSearch={ef}", t_h, b_ms, s_ms, recall(ids, ref),
                         hnsw.nbytes()["index"]))
        del hnsw
    print(f"\nprovenance {prov / 2**20:.0f} MB (16 B/vector); peak RSS {rss_gb():.2f} GB")


if __name__ == "__main__":
    main()
