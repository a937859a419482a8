"""Feature visualisation by nonparametric reconstruction (paper Sec. 2, Figures 1 and 2).

A :class:`FeatureDatabase` holds L2-normalised feature vectors of one layer (one per column of many images) in a
faiss index, together with their provenance: the image they come from (kept in the database's image store,
(M, H, W, 3) uint8), the (x, y) pixel centre of the column's receptive field in that image, and a *group* id (the
source photo), so that a query can exclude neighbours from its own source. Image patches are cut on demand
(:func:`extract_patches`, zeros outside the image), so the database stays 16 bytes + 4 D bytes per vector plus the
images.

Building: :func:`build_databases` feeds every image through the network once and indexes the sampled columns of
all layers in memory. :func:`spill_databases` makes the same single pass but appends the vectors, provenance and
images to a folder on disk; :meth:`SpilledDatabases.open` then builds one layer's index at a time (images
memory-mapped), so a 1M-vector database never holds more than one layer's index in a process, and processes
working on different layers share the image store through the page cache.

Similarity is cosine similarity = inner product of L2-normalised vectors (faiss ``IndexFlatIP`` for exact search,
the reference; ``IndexIVFFlat`` or ``IndexHNSWFlat`` with inner product for >= 1M vectors). Memory-lean kinds store
the vectors compressed and still search exhaustively or by IVF: ``flat16`` (float16 storage, exhaustive: half the
memory, near-exact), ``sq8`` (8-bit per dimension, trained per-dimension ranges: a quarter) and ``ivf16`` (IVF over
float16 codes); ``benchmarks/bench_faiss.py`` measures their recall against exact search. A zero vector (all
ReLUs off) stays zero and has similarity 0 to everything.

Patch convention: a patch of side S centred at rf centre c (pixel coordinates, centre of the top-left pixel at
(0, 0)) covers pixels ``start .. start + S - 1`` with ``start = floor(c - (S - 1) / 2)`` along each axis. For odd S
(every rf size) it is exactly centred; for even S (strides) it is shifted by half a pixel towards the top-left, and
the stride patches of neighbouring columns tile the image without gaps or overlap.

* :func:`reconstruct` (Figure 1): each stride x stride patch of the query (one per column of its feature grid) is
  replaced by the mean of the stride x stride patches of its k nearest database features. Pixels outside the
  tiled area (image borders not covered by any column's stride patch) are black.
* :func:`uniform_rf_reconstruct` (control): each column's k nearest neighbours contribute their FULL rf-sized
  patches (side ``geom.size``), averaged over the k neighbours; these rf patches are pasted at the column's rf
  location and overlapping rf patches are averaged with uniform weight per pixel. This is what the image would
  look like if every pixel of the receptive field were equally represented by the feature. (Averaging rf patches
  and pasting their stride-sized centre crops is identical to :func:`reconstruct`, because cropping commutes
  with averaging, so it is not a separate control.)
* :func:`average_rf` (Figure 2): the mean of the rf-sized patches of the k nearest neighbours of a seed feature.
"""
from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..core.arrays import l2_normalize
from ..core.geometry import RFGeometry

INDEX_TYPES = ("flat", "flat16", "sq8", "ivf", "ivf16", "hnsw")
_IVF_KINDS = ("ivf", "ivf16")


# ------------------------------------------------------------------------------------------------- small helpers
def patch_start(centers: np.ndarray, size: int) -> np.ndarray:
    """Integer top-left pixel ``floor(c - (size - 1) / 2)`` of size-S patches centred at ``centers`` (any shape)."""
    return np.floor(np.asarray(centers, dtype=np.float64) - (size - 1) / 2.0 + 1e-6).astype(np.int64)


def stack_images(images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """List of (H_i, W_i, 3) uint8 -> ((M, Hmax, Wmax, 3) uint8 zero-padded at the bottom/right, (M, 2) (H_i, W_i))."""
    if len(images) == 0:
        return np.zeros((0, 1, 1, 3), np.uint8), np.zeros((0, 2), np.int64)
    for j, im in enumerate(images):
        if im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8:
            raise ValueError(f"images[{j}]: expected (H, W, 3) uint8, got {im.shape} {im.dtype}")
    hw = np.array([im.shape[:2] for im in images], dtype=np.int64)
    if len({im.shape for im in images}) == 1:
        return np.stack(images), hw
    out = np.zeros((len(images), hw[:, 0].max(), hw[:, 1].max(), 3), np.uint8)
    for j, im in enumerate(images):
        out[j, : im.shape[0], : im.shape[1]] = im
    return out, hw


def extract_patches(images: np.ndarray, image_idx: np.ndarray, centers: np.ndarray, size: int,
                    image_hw: np.ndarray | None = None) -> np.ndarray:
    """Cut size x size patches, zeros outside the image.

    Args:
        images: (M, H, W, 3) uint8 image store, or one (H, W, 3) image (then ``image_idx`` may be None).
        image_idx: (N,) int index into the store.
        centers: (N, 2) float (x, y) patch centres in pixels.
        size: patch side S in pixels.
        image_hw: (M, 2) true (H, W) of each stored image (pixels beyond it count as outside); default: full size.
    Returns:
        (N, S, S, 3) uint8.
    """
    images = np.asarray(images)
    centers = np.asarray(centers, dtype=np.float64).reshape(-1, 2)
    if images.ndim == 3:
        images = images[None]
        image_idx = np.zeros(len(centers), np.int64)
    image_idx = np.asarray(image_idx, dtype=np.int64).reshape(-1)
    if len(image_idx) != len(centers):
        raise ValueError(f"image_idx has {len(image_idx)} entries, centers {len(centers)}")
    size = int(size)
    M, H, W = images.shape[:3]
    if image_hw is None:
        hh = np.full(len(image_idx), H)
        ww = np.full(len(image_idx), W)
    else:
        image_hw = np.asarray(image_hw)
        hh, ww = image_hw[image_idx, 0], image_hw[image_idx, 1]
    s = patch_start(centers, size)  # (N, 2) x0, y0
    xa, ya = np.maximum(s[:, 0], 0), np.maximum(s[:, 1], 0)
    xb, yb = np.minimum(s[:, 0] + size, ww), np.minimum(s[:, 1] + size, hh)
    out = np.zeros((len(centers), size, size, 3), np.uint8)
    # one slice copy per patch (each a vectorised block copy): much cheaper than fancy indexing for large patches
    ok = np.flatnonzero((xa < xb) & (ya < yb))
    cols = [a[ok].tolist() for a in (ok, image_idx, s[:, 0], s[:, 1], xa, ya, xb, yb)]
    for n, i, x0, y0, x1, y1, x2, y2 in zip(*cols):
        out[n, y1 - y0: y2 - y0, x1 - x0: x2 - x0] = images[i, y1:y2, x1:x2]
    return out


# ------------------------------------------------------------------------------------------------------ database
class FeatureDatabase:
    """Feature vectors of one layer in a faiss inner-product index, with provenance and an image store.

    Args:
        dim: feature dimension D.
        index: "flat" (exact, ``IndexFlatIP``: 4 D bytes per vector), "flat16" (exhaustive over float16 codes,
            ``IndexScalarQuantizer`` fp16: 2 D bytes), "sq8" (exhaustive over 8-bit codes with per-dimension ranges
            trained on the first ``train_size`` vectors: D bytes), "ivf" (``IndexIVFFlat``, inner product; trained
            on the first ``train_size`` added vectors, which are buffered until then), "ivf16" (IVF over float16
            codes, ``IndexIVFScalarQuantizer``) or "hnsw" (``IndexHNSWFlat``, inner product).
        nlist, nprobe: IVF cells and cells visited per query.
        hnsw_m, ef_construction, ef_search: HNSW graph degree and beam widths.
        train_size: vectors used to train the IVF quantiser (default ``64 * nlist``).
        images: (M, H, W, 3) uint8 image store the provenance refers to (or add images with :meth:`add_images`).

    Provenance per vector: ``image_idx`` (int32 into the store), ``xy`` (float32 (x, y) rf centre in that image's
    pixels), ``group`` (int32 source id, e.g. the source photo; used by ``search(exclude_groups=...)``).
    """

    def __init__(self, dim: int, index: str = "flat", nlist: int = 1024, nprobe: int = 16, hnsw_m: int = 32,
                 ef_construction: int = 64, ef_search: int = 64, train_size: int | None = None,
                 images: np.ndarray | None = None, image_hw: np.ndarray | None = None):
        import faiss

        if index not in INDEX_TYPES:
            raise ValueError(f"index={index!r}: choose one of {INDEX_TYPES}")
        self.dim, self.kind = int(dim), index
        self.nlist, self.nprobe, self.hnsw_m = int(nlist), int(nprobe), int(hnsw_m)
        self.ef_construction, self.ef_search = int(ef_construction), int(ef_search)
        self.train_size = int(train_size or 64 * self.nlist)
        if index == "flat":
            self.index = faiss.IndexFlatIP(self.dim)
        elif index in ("flat16", "sq8"):
            qt = faiss.ScalarQuantizer.QT_fp16 if index == "flat16" else faiss.ScalarQuantizer.QT_8bit
            self.index = faiss.IndexScalarQuantizer(self.dim, qt, faiss.METRIC_INNER_PRODUCT)
        elif index in _IVF_KINDS:
            self._make_ivf(self.nlist)
        else:
            self.index = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            self.index.hnsw.efConstruction = self.ef_construction
            self.index.hnsw.efSearch = self.ef_search
        self._pending: list[np.ndarray] = []
        self._prov: dict[str, list[np.ndarray]] = {"image_idx": [], "xy": [], "group": []}
        self._prov_cat: dict[str, np.ndarray] | None = None
        self.images = images if images is not None else np.zeros((0, 1, 1, 3), np.uint8)
        self.image_hw = (np.asarray(image_hw, dtype=np.int64) if image_hw is not None
                         else np.tile(np.array(self.images.shape[1:3]), (len(self.images), 1)))
        self.timings: dict[str, float] = {"add_s": 0.0, "train_s": 0.0}

    def _make_ivf(self, nlist: int) -> None:
        import faiss

        self._quantizer = faiss.IndexFlatIP(self.dim)
        if self.kind == "ivf":
            self.index = faiss.IndexIVFFlat(self._quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        else:
            self.index = faiss.IndexIVFScalarQuantizer(self._quantizer, self.dim, nlist, faiss.ScalarQuantizer.QT_fp16,
                                                       faiss.METRIC_INNER_PRODUCT)
        self.index.nprobe = min(self.nprobe, nlist)

    # -- building ---------------------------------------------------------------------------------------
    def reserve(self, n: int) -> None:
        """Allocate the index's storage for ``n`` more vectors up front ("flat", "flat16", "sq8"; a no-op for the
        other kinds), so that adding them never reallocates: a growing buffer is copied when it fills and briefly
        needs the old and the new copy (measured: 1.8x the final size for 400k 384-d "flat" vectors)."""
        codes = getattr(self.index, "codes", None) if self.kind in ("flat", "flat16", "sq8") else None
        if codes is None or n <= 0:
            return
        size = int(codes.size())
        codes.resize(size + int(n) * int(self.index.code_size))  # capacity stays when shrunk back
        codes.resize(size)

    def __len__(self) -> int:
        return int(self.index.ntotal) + sum(len(p) for p in self._pending)

    def add_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Append images to the store; returns their (n,) indices."""
        first = len(self.images)
        if len(images):
            new, hw = stack_images(list(images))
            if len(self.images) == 0:
                self.images, self.image_hw = new, hw
            else:
                old = self.images
                H, W = max(old.shape[1], new.shape[1]), max(old.shape[2], new.shape[2])
                if old.shape[1:3] != (H, W) or new.shape[1:3] != (H, W):
                    pad = lambda a: np.pad(a, ((0, 0), (0, H - a.shape[1]), (0, W - a.shape[2]), (0, 0)))
                    old, new = pad(old), pad(new)
                self.images = np.concatenate([old, new])
                self.image_hw = np.concatenate([self.image_hw, hw])
        return np.arange(first, len(self.images))

    def add(self, features: np.ndarray, image_idx: np.ndarray, xy: np.ndarray, group: np.ndarray | int = 0) -> None:
        """Add (N, D) features (L2-normalised here) with provenance: (N,) image index, (N, 2) xy, (N,) group."""
        f = np.asarray(features)
        if f.ndim != 2 or f.shape[1] != self.dim:
            raise ValueError(f"features: expected (N, {self.dim}), got {f.shape}")
        n = len(f)
        image_idx = np.broadcast_to(np.asarray(image_idx, dtype=np.int32), (n,))
        xy = np.asarray(xy, dtype=np.float32).reshape(n, 2)
        group = np.broadcast_to(np.asarray(group, dtype=np.int32), (n,))
        self._prov["image_idx"].append(np.array(image_idx))
        self._prov["xy"].append(np.array(xy))
        self._prov["group"].append(np.array(group))
        self._prov_cat = None
        t = time.perf_counter()
        f = l2_normalize(f, dtype=np.float32)
        if not self.index.is_trained:  # ivf / ivf16 / sq8: buffer until train_size vectors
            self._pending.append(f)
            if sum(len(p) for p in self._pending) >= self.train_size:
                self._flush()
        else:
            self.index.add(f)
        self.timings["add_s"] += time.perf_counter() - t

    def _flush(self) -> None:
        """Train the IVF quantiser on the buffered vectors (if not yet trained) and add them."""
        if not self._pending:
            return
        allf = np.concatenate(self._pending)
        self._pending = []
        if not self.index.is_trained:
            t = time.perf_counter()
            nlist = self.nlist
            if self.kind in _IVF_KINDS and len(allf) < 39 * nlist:
                # faiss wants >= 39 points per centroid: shrink nlist for small data
                nlist = max(1, len(allf) // 39)
                self.nlist = nlist
                self._make_ivf(nlist)
            rng = np.random.default_rng(0)
            sample = allf if len(allf) <= self.train_size else allf[rng.choice(len(allf), self.train_size, replace=False)]
            self.index.train(sample)
            self.timings["train_s"] += time.perf_counter() - t
        self.index.add(allf)

    def finalize(self) -> "FeatureDatabase":
        """Make every added vector searchable (trains a pending IVF index). Called by :meth:`search`."""
        t = time.perf_counter()
        self._flush()
        self.timings["add_s"] += time.perf_counter() - t
        return self

    # -- provenance -------------------------------------------------------------------------------------
    def _provenance(self) -> dict[str, np.ndarray]:
        if self._prov_cat is None:
            self._prov_cat = {
                "image_idx": np.concatenate(self._prov["image_idx"]) if self._prov["image_idx"] else np.zeros(0, np.int32),
                "xy": np.concatenate(self._prov["xy"]) if self._prov["xy"] else np.zeros((0, 2), np.float32),
                "group": np.concatenate(self._prov["group"]) if self._prov["group"] else np.zeros(0, np.int32),
            }
            self._prov = {k: [v] for k, v in self._prov_cat.items()}
        return self._prov_cat

    @property
    def image_idx(self) -> np.ndarray:
        return self._provenance()["image_idx"]

    @property
    def xy(self) -> np.ndarray:
        return self._provenance()["xy"]

    @property
    def group(self) -> np.ndarray:
        return self._provenance()["group"]

    def nbytes(self) -> dict[str, int]:
        """Approximate memory: feature index (faiss), provenance and image store, in bytes."""
        import faiss

        n = int(self.index.ntotal)
        if self.kind == "flat":
            idx = n * self.dim * 4
        elif self.kind in ("flat16", "sq8"):
            idx = n * int(self.index.code_size)
        elif self.kind == "ivf16":  # codes + 8-byte ids in the inverted lists, plus the coarse centroids
            idx = n * (int(self.index.code_size) + 8) + self.nlist * self.dim * 4
        else:
            idx = int(faiss.serialize_index(self.index).nbytes)
        prov = sum(v.nbytes for v in self._provenance().values())
        return {"index": idx, "provenance": int(prov), "images": int(self.images.nbytes)}

    # -- search -----------------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int, exclude_groups: Iterable[int] | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """k most cosine-similar database vectors of each (Q, D) query -> (sims (Q, k) float32, ids (Q, k) int64).

        Rows are sorted by decreasing similarity; ``exclude_groups`` removes every vector of those groups from the
        candidates (a faiss ID selector, so exact search stays exact). Missing results (fewer than k candidates)
        have id -1 and similarity -inf.
        """
        import faiss

        self.finalize()
        q = l2_normalize(np.asarray(queries).reshape(-1, self.dim), dtype=np.float32)
        k = int(k)
        if k < 1:
            raise ValueError(f"k={k}: must be >= 1")
        params = None
        if exclude_groups is not None:
            excl = np.flatnonzero(np.isin(self.group, np.asarray(list(exclude_groups), dtype=np.int32)))
            if len(excl):
                sel = faiss.IDSelectorNot(faiss.IDSelectorBatch(excl.astype(np.int64)))
                self._sel_keepalive = sel  # the python wrapper must outlive the search call
                if self.kind in _IVF_KINDS:
                    params = faiss.SearchParametersIVF(sel=sel, nprobe=self.index.nprobe)
                elif self.kind == "hnsw":
                    params = faiss.SearchParametersHNSW(sel=sel, efSearch=max(self.ef_search, k))
                else:
                    params = faiss.SearchParameters(sel=sel)
        if self.kind == "hnsw":
            self.index.hnsw.efSearch = max(self.ef_search, k)
        if params is None:
            sims, ids = self.index.search(q, k)
        else:
            sims, ids = self.index.search(q, k, params=params)
        sims = np.where(ids < 0, -np.inf, sims).astype(np.float32)
        return sims, ids.astype(np.int64)

    def patches(self, ids: np.ndarray, size: int) -> np.ndarray:
        """(..., S, S, 3) uint8 patches of side ``size`` centred at the rf centres of database vectors ``ids`` (...).

        Ids of -1 give black patches.
        """
        ids = np.asarray(ids, dtype=np.int64)
        flat = ids.reshape(-1)
        ok = flat >= 0
        safe = np.where(ok, flat, 0)
        p = extract_patches(self.images, self.image_idx[safe], self.xy[safe], size, self.image_hw)
        p[~ok] = 0
        return p.reshape(ids.shape + p.shape[1:])

    def mean_patches(self, ids: np.ndarray, size: int) -> np.ndarray:
        """(Q, S, S, 3) float32 mean over the k neighbours of (Q, k) ``ids`` (ids of -1 are left out)."""
        ids = np.asarray(ids, dtype=np.int64)
        out = np.zeros((len(ids), size, size, 3), np.float32)
        chunk = max(1, 2**25 // (max(ids.shape[1], 1) * size * size * 3))  # <= 32 MB of uint8 patches at a time
        for a in range(0, len(ids), chunk):
            part = ids[a:a + chunk]
            p = self.patches(part, size)  # (q, k, S, S, 3) uint8, black for id -1
            cnt = np.maximum((part >= 0).sum(1), 1).astype(np.float32)[:, None, None, None]
            out[a:a + chunk] = p.sum(1, dtype=np.float32) / cnt
        return out

    # -- persistence ------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> tuple[Path, Path]:
        """Write ``<path>.npz`` (provenance, images, settings) and ``<path>.faiss`` (the index), each atomically
        (:func:`convcorr.runtime.io.atomic_write`)."""
        import faiss

        from ..runtime.io import atomic_write

        self.finalize()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        npz, fidx = path.with_suffix(".npz"), path.with_suffix(".faiss")
        settings = {k: getattr(self, k) for k in ("dim", "kind", "nlist", "nprobe", "hnsw_m", "ef_construction",
                                                  "ef_search", "train_size")}
        prov = self._provenance()
        # both files written atomically (temp file + os.replace): an interrupted save never leaves a partial file
        atomic_write(npz, lambda fh: np.savez_compressed(fh, images=self.images, image_hw=self.image_hw,
                                                         settings=json.dumps(settings), **prov))

        def write_index(fh):
            writer = faiss.PyCallbackIOWriter(fh.write)
            faiss.write_index(self.index, writer)
            del writer  # flushes faiss's buffer into fh

        atomic_write(fidx, write_index)
        return npz, fidx

    @classmethod
    def load(cls, path: str | Path) -> "FeatureDatabase":
        """Read a database written by :meth:`save` (``path`` with or without suffix)."""
        import faiss

        path = Path(path)
        npz, fidx = path.with_suffix(".npz"), path.with_suffix(".faiss")
        for p in (npz, fidx):
            if not p.is_file():
                raise FileNotFoundError(f"{p}: feature database file not found")
        with np.load(npz) as z:
            s = json.loads(str(z["settings"]))
            db = cls(s["dim"], s["kind"], s["nlist"], s["nprobe"], s["hnsw_m"], s["ef_construction"],
                     s["ef_search"], s["train_size"], images=z["images"], image_hw=z["image_hw"])
            db._prov = {k: [z[k]] for k in ("image_idx", "xy", "group")}
        db.index = faiss.read_index(str(fidx))
        if db.kind in _IVF_KINDS:
            db.index.nprobe = db.nprobe
        if len(db.group) != db.index.ntotal:
            raise ValueError(f"{npz}: {len(db.group)} provenance rows but {db.index.ntotal} vectors in {fidx}")
        return db


# ------------------------------------------------------------------------------------------------- construction
class _ImageStore:
    """Images appended batch by batch into ONE preallocated (n, H, W, 3) uint8 array when the count is known and
    every image has the same size (no list + final stack: that held the store twice, ~1.8 GB at 1M conv5
    vectors); otherwise a list stacked at the end."""

    def __init__(self, n_expected: int | None):
        self.n_expected, self.buf, self.items, self.count = n_expected, None, [], 0

    def __len__(self) -> int:
        return self.count

    def extend(self, images: Sequence[np.ndarray]) -> None:
        for im in images:
            if self.buf is None and not self.items and self.n_expected and im.ndim == 3 and im.dtype == np.uint8:
                self.buf = np.empty((int(self.n_expected),) + im.shape, np.uint8)
            if self.buf is not None and (im.shape != self.buf.shape[1:] or im.dtype != np.uint8
                                         or self.count >= len(self.buf)):
                self.items = list(self.buf[:self.count])  # fall back to a list (views into buf)
                self.buf = None
            if self.buf is not None:
                self.buf[self.count] = im
            else:
                self.items.append(im)
            self.count += 1

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        if self.buf is not None:
            imgs = self.buf[:self.count]
            return imgs, np.tile(np.array(imgs.shape[1:3], np.int64), (self.count, 1))
        return stack_images(self.items)


def _sampled_columns(backbone, images: Iterable[np.ndarray], layers: Sequence[str], groups, max_vectors, per_image,
                     n_images, batch_size: int, seed: int, desc: str, timings: dict):
    """The one pass over ``images`` shared by :func:`build_databases` and :func:`spill_databases`.

    Feeds the images to the network in batches (each image ONCE, all layers together) and yields per batch
    ``(batch, dims, adds)``: the batch's images (list of (H, W, 3) uint8), {layer: D}, and a list of
    ``(layer, features (n, D), j (index of the image in the batch), centres (n, 2), group)`` — the randomly kept
    columns of each image and layer (``per_image`` of them, until the layer holds ``max_vectors``), in the order
    layer by layer, image by image. Stops early once every layer is full. ``timings["features_s"]`` accumulates
    the forward-pass seconds.
    """
    from ..runtime.progress import progress

    rng = np.random.default_rng(seed)
    layers = list(layers)
    cap = {l: (max_vectors.get(l) if isinstance(max_vectors, dict) else max_vectors) for l in layers}
    per = {l: (per_image.get(l) if isinstance(per_image, dict) else per_image) for l in layers}
    geoms = {l: backbone.rf(l) for l in layers}
    count = {l: 0 for l in layers}
    groups_it = iter(groups) if groups is not None else None
    timings.setdefault("features_s", 0.0)

    def full(l):
        return cap[l] is not None and count[l] >= cap[l]

    def run_batch(batch, batch_groups):
        t = time.perf_counter()
        acts = backbone.extract(batch, layers, size=None, batch_size=len(batch))
        timings["features_s"] += time.perf_counter() - t
        adds, dims = [], {}
        for l in layers:
            a = acts[l]
            dims[l] = int(a.shape[-1])
            if full(l):
                continue
            n, h, w, D = a.shape
            centers = geoms[l].grid_centers((h, w)).reshape(-1, 2)
            for j in range(n):
                sel = np.arange(h * w)
                if per[l] is not None and per[l] < h * w:
                    sel = np.sort(rng.choice(h * w, per[l], replace=False))
                if cap[l] is not None:
                    sel = sel[: max(0, cap[l] - count[l])]
                if len(sel) == 0:
                    break
                adds.append((l, a[j].reshape(-1, D)[sel], j, centers[sel], batch_groups[j]))
                count[l] += len(sel)
        return batch, dims, adds

    batch: list[np.ndarray] = []
    batch_groups: list[int] = []
    for im in progress(images, desc, total=n_images):
        batch.append(np.asarray(im))
        batch_groups.append(int(next(groups_it)) if groups_it is not None else 0)
        if len(batch) == batch_size:
            yield run_batch(batch, batch_groups)
            batch, batch_groups = [], []
            if all(full(l) for l in layers):
                break
    if batch:
        yield run_batch(batch, batch_groups)


def build_databases(backbone, images: Iterable[np.ndarray], layers: Sequence[str], groups: Iterable[int] | None = None,
                    max_vectors: int | dict | None = None, per_image: int | dict | None = None,
                    n_images: int | None = None, index: str = "flat", batch_size: int = 16, seed: int = 0,
                    desc: str = "feature database", **index_kw) -> dict[str, FeatureDatabase]:
    """Feature databases of several layers from one pass over ``images``, all held in memory.

    Every image is fed to the network at its own size (all images of a batch must be equal in size: use crops
    resized to the network input). Each image becomes an entry of the image store shared by all layers.
    For very large databases see :func:`spill_databases` (vectors on disk, one layer's index in memory at a time).

    Args:
        images: iterable of (H, W, 3) uint8 (may be a generator; ``n_images`` is its length for the progress bar).
        layers: layer names.
        groups: one int per image (source id), default 0.
        max_vectors: stop adding to a layer after this many vectors (int, or {layer: int}).
        per_image: keep at most this many randomly chosen columns per image and layer (int or {layer: int}; None:
            all), so that a layer whose grid is dense still samples many images.
        index, index_kw: faiss index type and settings (see :class:`FeatureDatabase`).
    Returns:
        {layer: FeatureDatabase} (finalized; ``db.timings`` holds feature/index seconds).
    """
    dbs: dict[str, FeatureDatabase] = {}
    store = _ImageStore(n_images)
    timings: dict[str, float] = {}
    for batch, dims, adds in _sampled_columns(backbone, images, layers, groups, max_vectors, per_image, n_images,
                                              batch_size, seed, desc, timings):
        base = len(store)
        store.extend(batch)
        for l in layers:
            if l not in dbs:
                dbs[l] = FeatureDatabase(dims[l], index, **index_kw)
        for l, f, j, centers, g in adds:
            dbs[l].add(f, base + j, centers, g)
    imgs, hw = store.finish()
    for l, db in dbs.items():
        db.images, db.image_hw = imgs, hw  # one store shared by every layer (no copy)
        db.finalize()
        db.timings["features_s"] = timings.get("features_s", 0.0)
    return dbs


# ------------------------------------------------------------------------------------------ on-disk vector store
_SPILL_META = "meta.json"
#: per-layer files of a spill folder: vectors, then provenance (image index, column centre, group)
_SPILL_FILES = ("f32", "idx.i32", "xy.f32", "group.i32")


def spill_databases(backbone, images: Iterable[np.ndarray], layers: Sequence[str], folder: str | Path,
                    groups: Iterable[int] | None = None, max_vectors: int | dict | None = None,
                    per_image: int | dict | None = None, n_images: int | None = None, batch_size: int = 16,
                    seed: int = 0, desc: str = "feature database") -> "SpilledDatabases":
    """The vectors of :func:`build_databases` (same images, same sampled columns, same order) written to ``folder``
    instead of being indexed in memory; :meth:`SpilledDatabases.open` then builds one layer's index at a time.

    Each image goes through the network once for all layers; only one batch of features is in memory at a time.
    All images must have the same size (e.g. crops resized to the network input). Files in ``folder`` (raw
    little-endian arrays, appended batch by batch): ``images.u8`` ((M, H, W, 3) uint8, the image store),
    ``layer<i>.f32`` ((N, D) float32 features of the i-th layer as the network gave them), ``layer<i>.idx.i32`` /
    ``.xy.f32`` / ``.group.i32`` (provenance), and ``meta.json`` (layer names, counts, shapes, seconds), written
    last and atomically: a folder without it is incomplete. Disk: ``H W 3`` bytes per image + ``4 D + 16`` bytes
    per vector and layer.

    Args: as :func:`build_databases`; ``folder`` is created (existing files of the same names are overwritten).
    """
    from ..runtime.io import atomic_write_text

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / _SPILL_META).unlink(missing_ok=True)
    layers = list(layers)
    stems = {l: f"layer{i:03d}" for i, l in enumerate(layers)}  # file names never depend on the layer's spelling
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    count = {l: 0 for l in layers}
    dims: dict[str, int] = {}
    shape = None
    n_img = 0
    with contextlib.ExitStack() as stack:
        files = {"images": stack.enter_context(open(folder / "images.u8", "wb"))}
        for l in layers:
            for ext in _SPILL_FILES:
                files[(l, ext)] = stack.enter_context(open(folder / f"{stems[l]}.{ext}", "wb"))
        for batch, bdims, adds in _sampled_columns(backbone, images, layers, groups, max_vectors, per_image,
                                                   n_images, batch_size, seed, desc, timings):
            dims.update(bdims)
            for j, im in enumerate(batch):
                if im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8:
                    raise ValueError(f"images[{n_img + j}]: expected (H, W, 3) uint8, got {im.shape} {im.dtype}")
                if shape is None:
                    shape = im.shape
                if im.shape != shape:
                    raise ValueError(f"images[{n_img + j}]: size {im.shape[:2]} differs from the first image's "
                                     f"{shape[:2]}; spill_databases needs equal-size images")
                files["images"].write(np.ascontiguousarray(im).tobytes())
            for l, f, j, centers, g in adds:
                n = len(f)
                files[(l, "f32")].write(np.ascontiguousarray(f, dtype="<f4").tobytes())
                files[(l, "idx.i32")].write(np.full(n, n_img + j, "<i4").tobytes())
                files[(l, "xy.f32")].write(np.asarray(centers, "<f4").tobytes())
                files[(l, "group.i32")].write(np.full(n, g, "<i4").tobytes())
                count[l] += n
            n_img += len(batch)
    meta = {"layers": {l: {"count": count[l], "dim": dims.get(l, 0), "stem": stems[l]} for l in layers},
            "n_images": n_img,
            "image_shape": list(shape) if shape is not None else [1, 1, 3],
            "features_s": timings.get("features_s", 0.0), "seconds": time.perf_counter() - t0}
    atomic_write_text(folder / _SPILL_META, json.dumps(meta))
    return SpilledDatabases(folder)


class SpilledDatabases:
    """A folder written by :func:`spill_databases`: per-layer vectors and provenance on disk, images memory-mapped.

    :meth:`open` builds ONE layer's :class:`FeatureDatabase` from it: the index holds that layer's vectors only
    (``4 D`` bytes per vector for "flat", ``2 D`` for "flat16", ``D`` for "sq8"), the provenance is read into
    memory (16 bytes per vector) and the image store is a read-only memory map of ``images.u8`` (the operating
    system's page cache holds it once, however many processes open it). Vectors are added in chunks of at most
    ``chunk_bytes``; for index kinds that need training (sq8, ivf, ivf16) the first chunk is exactly the first
    ``train_size`` vectors, so the trained index does not depend on the chunk size.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        meta = self.folder / _SPILL_META
        if not meta.is_file():
            raise FileNotFoundError(f"{meta}: not found; {self.folder} is not a complete spill_databases folder")
        self.meta = json.loads(meta.read_text())
        self.layers = list(self.meta["layers"])
        self.n_images = int(self.meta["n_images"])
        self.features_s = float(self.meta["features_s"])

    @classmethod
    def complete(cls, folder: str | Path, layers: Sequence[str]) -> "SpilledDatabases | None":
        """The folder as SpilledDatabases if it is complete and holds every layer in ``layers``, else None."""
        try:
            sp = cls(folder)
        except (OSError, ValueError, KeyError):
            return None
        ok = set(layers) <= set(sp.layers) and all(
            (sp.folder / f"{sp._stem(l)}.{ext}").is_file() for l in layers
            for ext in _SPILL_FILES)
        return sp if ok else None

    def _stem(self, layer: str) -> str:
        if layer not in self.meta["layers"]:
            raise KeyError(f"layer {layer!r} is not in {self.folder} (layers: {self.layers})")
        return self.meta["layers"][layer]["stem"]

    def _array(self, name: str, dtype: str, shape: tuple) -> np.ndarray:
        if int(np.prod(shape)) == 0:
            return np.zeros(shape, dtype)
        path = self.folder / name
        want = int(np.prod(shape)) * np.dtype(dtype).itemsize
        if path.stat().st_size != want:
            raise ValueError(f"{path}: {path.stat().st_size} bytes, expected {want} (shape {shape}); "
                             "the folder is damaged")
        return np.memmap(path, dtype=dtype, mode="r", shape=shape)

    def images(self) -> np.ndarray:
        """(M, H, W, 3) uint8 read-only memory map of the image store."""
        return self._array("images.u8", "u1", (self.n_images, *self.meta["image_shape"]))

    def vectors(self, layer: str) -> np.ndarray:
        """(N, D) float32 read-only memory map of ``layer``'s vectors (as the network gave them)."""
        m = self.meta["layers"][layer]
        return self._array(f"{self._stem(layer)}.f32", "<f4", (m["count"], m["dim"]))

    def open(self, layer: str, index: str = "flat", chunk_bytes: int = 32 * 2**20, **index_kw) -> FeatureDatabase:
        """``layer``'s finalized :class:`FeatureDatabase` (index kind and settings as in its constructor)."""
        t0 = time.perf_counter()
        n, dim = self.vectors(layer).shape  # checks the file size
        stem = self._stem(layer)
        idx = np.fromfile(self.folder / f"{stem}.idx.i32", "<i4", count=n)
        xy = np.fromfile(self.folder / f"{stem}.xy.f32", "<f4", count=2 * n).reshape(n, 2)
        grp = np.fromfile(self.folder / f"{stem}.group.i32", "<i4", count=n)
        images = self.images()
        db = FeatureDatabase(dim, index, images=images,
                             image_hw=np.tile(np.array(images.shape[1:3], np.int64), (len(images), 1)), **index_kw)
        rows = max(1, int(chunk_bytes) // max(4 * dim, 1))
        bounds = set(range(0, n, rows)) | {n}
        if not db.index.is_trained and db.train_size < n:
            bounds.add(db.train_size)
        bounds = sorted(bounds)
        # plain reads, chunk by chunk (not a memory map: its pages would stay in this process's resident set)
        reserved = False
        with open(self.folder / f"{stem}.f32", "rb") as fh:
            for a, b in zip(bounds[:-1], bounds[1:]):
                if not reserved and db.index.is_trained:  # after training (sq8): the training buffer is gone
                    db.reserve(n - a)
                    reserved = True
                f = np.fromfile(fh, "<f4", count=(b - a) * dim).reshape(b - a, dim)
                db.add(f, idx[a:b], xy[a:b], grp[a:b])
        db.finalize()
        db.timings["open_s"] = time.perf_counter() - t0
        db.timings["features_s"] = self.features_s
        return db


# --------------------------------------------------------------------------------------------- reconstructions
def _paste(canvas: np.ndarray, weight: np.ndarray | None, patch: np.ndarray, x0: int, y0: int) -> None:
    """Add ``patch`` (h, w, 3) into ``canvas`` at top-left (x0, y0), clipped to the canvas."""
    H, W = canvas.shape[:2]
    ph, pw = patch.shape[:2]
    xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + pw, W), min(y0 + ph, H)
    if xa >= xb or ya >= yb:
        return
    canvas[ya:yb, xa:xb] += patch[ya - y0: yb - y0, xa - x0: xb - x0]
    if weight is not None:
        weight[ya:yb, xa:xb] += 1


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _neighbours(query_grid, db, k, exclude_groups, ids):
    if ids is not None:
        ids = np.asarray(ids, dtype=np.int64).reshape(-1, np.shape(ids)[-1])
        if len(ids) != query_grid.shape[0] * query_grid.shape[1]:
            raise ValueError(f"ids: expected one row per column of the {query_grid.shape[:2]} grid, got {len(ids)}")
        return ids
    return db.search(query_grid.reshape(-1, query_grid.shape[-1]), k, exclude_groups)[1]


def reconstruct(query_grid: np.ndarray, geom: RFGeometry, db: FeatureDatabase, k: int, image_hw: tuple[int, int],
                exclude_groups: Iterable[int] | None = None, return_ids: bool = False, ids: np.ndarray | None = None):
    """Rebuild an image from database patches (paper Figure 1).

    Args:
        query_grid: (h, w, D) features of the query image (in its network-input frame).
        geom: rf geometry of the layer (stride = patch side), in the same pixel frame.
        db: database of the same layer.
        k: neighbours averaged per patch.
        image_hw: (H, W) of the output (the query's network input).
        exclude_groups: database groups never used (e.g. the query's own source photo).
        ids: precomputed (h, w, k) neighbour ids (skips the search; e.g. from ``return_ids`` of another call).
    Returns:
        (H, W, 3) uint8: column (c, r)'s stride x stride patch (top-left ``patch_start(centre, stride)``) is the
        mean of its k neighbours' stride patches; uncovered pixels are 0. With ``return_ids`` also (h, w, k) ids.
    """
    h, w, D = query_grid.shape
    S = int(round(geom.stride))
    ids = _neighbours(query_grid, db, k, exclude_groups, ids)
    k = ids.shape[1]
    means = db.mean_patches(ids, S)  # (h*w, S, S, 3)
    H, W = image_hw
    x0, y0 = (int(v) for v in patch_start(geom.grid_centers((1, 1))[0, 0], S))
    # the columns' stride patches tile an (h*S, w*S) block whose top-left pixel is (x0, y0)
    block = means.reshape(h, w, S, S, 3).transpose(0, 2, 1, 3, 4).reshape(h * S, w * S, 3)
    canvas = np.zeros((H, W, 3), np.float32)
    _paste(canvas, None, block, x0, y0)
    out = _to_uint8(canvas)
    return (out, ids.reshape(h, w, k)) if return_ids else out


def uniform_rf_reconstruct(query_grid: np.ndarray, geom: RFGeometry, db: FeatureDatabase, k: int,
                           image_hw: tuple[int, int], exclude_groups: Iterable[int] | None = None,
                           chunk: int = 256, ids: np.ndarray | None = None) -> np.ndarray:
    """"Uniform rf" control: paste each column's mean FULL-rf patch of its k neighbours, overlaps averaged.

    Every column (c, r) contributes the mean (over its k nearest database features) of their rf-sized patches
    (side ``geom.size``) at its own rf location; each output pixel is the unweighted mean of all contributions
    covering it (0 where none does). ``ids``: precomputed (h, w, k) neighbour ids. Returns (H, W, 3) uint8.
    """
    h, w, D = query_grid.shape
    S = int(round(geom.size))
    ids = _neighbours(query_grid, db, k, exclude_groups, ids)
    H, W = image_hw
    canvas = np.zeros((H, W, 3), np.float32)
    weight = np.zeros((H, W, 1), np.float32)
    starts = patch_start(geom.grid_centers((h, w)).reshape(-1, 2), S)
    for a in range(0, len(ids), chunk):
        means = db.mean_patches(ids[a:a + chunk], S)
        for p, (x0, y0) in zip(means, starts[a:a + chunk]):
            _paste(canvas, weight, p, int(x0), int(y0))
    return _to_uint8(canvas / np.maximum(weight, 1))


def average_rf(db: FeatureDatabase, seed_feature: np.ndarray, k: int, geom: RFGeometry,
               exclude_groups: Iterable[int] | None = None, as_float: bool = False) -> np.ndarray:
    """Mean of the rf-sized (S = ``geom.size``) patches of the k nearest neighbours of one (D,) seed feature.

    Returns (S, S, 3) uint8 (float32 with ``as_float``) — paper Figure 2.
    """
    S = int(round(geom.size))
    _, ids = db.search(np.asarray(seed_feature).reshape(1, -1), k, exclude_groups)
    m = db.mean_patches(ids, S)[0]
    return m if as_float else _to_uint8(m)


__all__ = ["FeatureDatabase", "build_databases", "spill_databases", "SpilledDatabases",
           "reconstruct", "uniform_rf_reconstruct", "average_rf", "extract_patches", "patch_start", "stack_images"]
