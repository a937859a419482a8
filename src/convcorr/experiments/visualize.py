"""Figures 1 and 2 of the paper: feature visualisation by nonparametric reconstruction.

Database: every source photo (the embedded annotated photos and the plain photos in shared/images) except the
query photos, plus ``n_synthetic`` random smooth warps of each (:func:`convcorr.datasets.synthetic_instances`).
``n_views`` random square crops of these (side ``crop_scale`` x the shorter image side, random position, random
horizontal flip) are resized to the network input (227 x 227 for AlexNet) and fed to the network once; each view
is stored as a 227 x 227 uint8 image and every kept column of every layer becomes one database vector with its
provenance (view, rf centre, source photo). ``n_views = ceil(db_size / columns per view of reference_layer)``;
every layer keeps ``ceil(db_size / n_views)`` random columns per view (all columns where the grid is smaller,
e.g. pool5), at most ``db_size`` vectors, so each layer samples every view.

Queries: held-out photos (never in the database, so an image is never rebuilt from its own patches; asserted),
cropped to a square around the object box (``query_margin`` of the box side added on each side, black outside)
and resized to the network input. Reconstruction (Figure 1): every stride x stride patch (one per column) is
replaced by the mean of the stride patches of its k nearest database features (cosine similarity, exact faiss
search unless ``index`` says otherwise). Uniform-rf control: each column's k neighbours contribute their FULL
rf-sized patches, averaged, pasted at the column's rf and overlaps averaged uniformly
(:func:`convcorr.methods.reconstruction.uniform_rf_reconstruct`). Average rf (Figure 2): mean of the rf-sized patches of the
``k_rf`` nearest neighbours of the query feature at a keypoint, per layer. Pixel error: mean absolute difference
(0..255) between the reconstruction and the query over the pixels the reconstruction covers.

Parallel runs and memory (options ``workers``, ``executor``, ``ray_address``, ``resume``, see
:mod:`convcorr.experiments.workers`; results are identical for every setting). Every database view goes through
the network ONCE, in the calling process, and the sampled vectors of all layers, their provenance and the views are
appended to a folder on disk (:func:`convcorr.methods.reconstruction.spill_databases`): a temporary folder inside the output
folder, removed at the end, or, with ``resume``, ``<out>/tasks/database-<hash>/``, kept so that a re-run skips the
forward passes (delete it when done). The unit of work is one layer (:func:`_layer_task`): build that layer's faiss
index from its vectors, reconstruct every query, average the rf patches of every seed; ``workers`` processes work
on different layers (so at most ``len(layers)`` workers are useful). Memory per worker: ONE layer's index (4 D
bytes per vector for ``flat``, 2 D for ``flat16``, D for ``sq8``) + 16 bytes of provenance per vector + one
query's patches; the views (227 x 227 x 3 bytes each) are memory-mapped read-only, so the page cache holds them
once for all workers; the calling process holds the network and one batch of features (a serial run: one
layer's index at a time, never all layers at once). At ``db_size=1000000`` (5,918 views, AlexNet): the largest
layer (conv3 / conv4, D = 384) takes 1.5 GB of index per worker with ``flat`` and 0.4 GB with ``sq8`` (the
``paper`` preset), conv1 0.4 / 0.1 GB; the views 0.9 GB in the page cache; disk: 5.8 GB of vectors + 0.9 GB of
views. Measured (2-core machine, default preset with ``db_size=1000000``, ``index=sq8``, ``workers=2``): each
worker peaked at 0.71 GB resident (0.50 GB anonymous, conv4) and the calling process at 1.31 GB; building the
conv3 index alone in a fresh process peaked at 1.60 GB with ``flat`` and 0.51 GB with ``sq8``. At the default
``db_size=100000``: at most 0.15 GB of index per worker (0.22 GB anonymous measured), 0.7 GB on disk. With ``executor="ray"`` on
several machines the output folder must be on a file system every node sees (workers read the vectors from it).
"""
from __future__ import annotations

import math
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import ConfigError
from ..core.types import Instance
from ..runtime.progress import progress
from ..viz.report import Report, markdown_table
from . import register_experiment
from .options import Option
from .workers import run_conf_tasks, task_dir, unit_key, with_parallel_options

#: the report's Protocol section, written for a reader (Markdown): what is measured, on which data, how it
#: is scored, and what the paper did
PROTOCOL = """\
**What is shown.** What a conv feature column "sees": each query image is rebuilt from patches of other images
whose features are nearest to its own, layer by layer (Figure 1), and the average receptive-field patch of the
nearest neighbours of a keypoint's feature shows how much of the image that feature pins down (Figure 2).

**Database.** Every source photo (the embedded annotated photos and the plain photos of the shared folder) except
the query photos, plus random smooth warps of each. Random square crops of these (random size, position and
horizontal flip) are resized to the network input (227 x 227 for AlexNet) and fed through the network once; random
feature columns of every layer, with where they came from, form that layer's database. A query photo is never in the
database, so no image is rebuilt from its own patches.

**Queries.** Held-out photos, cropped to a square around the object box with some margin and resized to the network
input.

**Reconstruction (Figure 1).** Every stride x stride patch of the query (one per feature column) is replaced by the
mean of the corresponding patches of its k nearest database features (cosine similarity). A control with uniform
receptive fields averages the neighbours' full receptive-field patches instead, pasted at the column's receptive
field. Pixel error is the mean absolute difference (0 to 255) between the reconstruction and the query over the
pixels the reconstruction covers.

**Average receptive field (Figure 2).** The mean of the receptive-field patches of the nearest neighbours of the
query feature at a keypoint, for every layer.

**The paper.** Figures 1 and 2 of Long, Zhang and Darrell (NIPS 2014) reconstruct images from AlexNet features with
a database of over a million conv features from a large natural-image collection; the differences of this run are
listed in the next section.
"""

_LAYERS = ["conv1", "conv2", "conv3", "conv4", "conv5", "pool5"]
_SEEDS = [["face/lenna", "p37"], ["face/lenna", "p31"], ["face/lenna", "p49"], ["face/lenna", "p9"]]

CONFIGS = {
    "default": {
        "backbone": "alexnet", "layers": _LAYERS, "recon_layers": _LAYERS, "queries": ["face/lenna", "images/cat"],
        "seeds": _SEEDS, "k": 5, "k_rf": 50, "db_size": 100_000, "reference_layer": "conv5", "n_synthetic": 2,
        "crop_scale": [0.35, 1.0], "query_margin": 0.25, "index": "flat", "batch_size": 16, "seed": 0,
        "save_db": False,
    },
    # paper: 1M+ vectors per layer, k = 5 neighbours per patch. Index "sq8" (exhaustive cosine search over 8-bit
    # codes: D bytes per vector, a quarter of the exact "flat" index; set index=flat for exact search); recall@10
    # vs exact 0.97 on 1M real conv2 vectors (bench_faiss.py). Memory: one layer's index per worker (module
    # docstring); when every layer was held at once, 6 layers x 1M vectors peaked at 3.7 GiB with sq8 and ~11 GB
    # with flat (measured: default preset with db_size=1000000).
    "paper": {
        "backbone": "alexnet", "layers": _LAYERS, "recon_layers": _LAYERS, "queries": ["face/lenna", "images/cat"],
        "seeds": _SEEDS, "k": 5, "k_rf": 100, "db_size": 1_000_000, "reference_layer": "conv5", "n_synthetic": 4,
        "crop_scale": [0.25, 1.0], "query_margin": 0.25, "index": "sq8", "batch_size": 32, "seed": 0,
        "save_db": False,
    },
}
#: parallel options (one unit of work per layer): ``workers``, ``executor``, ``ray_address``, ``resume``
CONFIGS = with_parallel_options(CONFIGS)
OPTIONS = [
    Option("layers", list, "layers whose databases are built (average rfs, Figure 2)", item=str),
    Option("recon_layers", list, "layers whose reconstructions are drawn (Figure 1)", item=str),
    Option("queries", list, "held-out photos reconstructed (ids such as face/lenna)", item=str),
    Option("seeds", list, "[photo id, keypoint name] pairs whose average rfs are drawn (Figure 2)", item=list),
    Option("k", int, "nearest database features averaged per patch (reconstruction)"),
    Option("k_rf", int, "nearest database features averaged into each average rf"),
    Option("db_size", int, "database vectors per layer"),
    Option("reference_layer", str, "layer whose columns per view set the number of views"),
    Option("n_synthetic", int, "random smooth warps added per database photo"),
    Option("crop_scale", list, "[min, max] side of the random square views, a fraction of the shorter image side",
           item=float, length=2),
    Option("query_margin", float, "context around a query's box, a fraction of its side on each side"),
    Option("index", str, "faiss index: flat (exact), flat16, sq8, ivf, ivf16 or hnsw"),
    Option("save_db", bool, "keep the databases in OUT/db"),
]


def slug(name: str) -> str:
    """File-name-safe version of an instance id ("face/lenna" -> "face_lenna")."""
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")


def plain_image_instances() -> list[Instance]:
    """The photos of shared/images as Instances ``images/<stem>`` without keypoints (box: centred square)."""
    from ..runtime.paths import require_shared

    out = []
    for p in sorted(require_shared("images").iterdir()):
        if p.suffix.lower() not in (".bmp", ".jpg", ".jpeg", ".png"):
            continue
        inst = Instance(f"images/{p.stem}", "image", [0, 0, 1, 1], (), np.zeros((0, 2)), np.zeros(0, bool), p)
        H, W = inst.load().shape[:2]
        s = min(H, W)
        x0, y0 = (W - s) / 2, (H - s) / 2
        inst.bbox = np.array([x0, y0, x0 + s, y0 + s], dtype=np.float64)
        out.append(inst)
    return out


def square_crop(image: np.ndarray, center_xy, side: float, size: int, flip: bool = False):
    """Square crop of ``side`` px centred at ``center_xy`` (black outside), resized to (size, size, 3).

    Returns (crop, f) where f maps (N, 2) original pixels to crop pixels (pixel-centre convention).
    """
    from PIL import Image

    cx, cy = center_xy
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    s = max(1, int(round(side)))
    crop = Image.fromarray(image).crop((x0, y0, x0 + s, y0 + s)).resize((size, size), Image.BILINEAR)
    out = np.asarray(crop)
    if flip:
        out = out[:, ::-1].copy()

    def f(xy):
        xy = np.asarray(xy, dtype=np.float64)
        return (xy - [x0, y0] + 0.5) * (size / s) - 0.5

    return out, f


def sources(conf: dict) -> list[Instance]:
    """All source photos: embedded annotated photos and shared/images (ids unique)."""
    from ..datasets import embedded_instances

    return list(embedded_instances()) + plain_image_instances()


def view_generator(photos: list[Instance], n_views: int, conf: dict, size: int, rng: np.random.Generator):
    """Yield (view (size, size, 3) uint8, source index): random square crops of photos and their warps."""
    from ..datasets import synthetic_instances

    variants: list[list[np.ndarray]] = []
    for inst in progress(photos, "warping database photos"):
        n_syn = conf["n_synthetic"]
        warps = synthetic_instances([inst], n_syn, seed=int(rng.integers(1 << 31))) if n_syn else []
        variants.append([inst.load()] + [w.image for w in warps])
    lo, hi = conf["crop_scale"]
    for v in range(n_views):
        s = v % len(photos)
        img = variants[s][int(rng.integers(len(variants[s])))]
        H, W = img.shape[:2]
        side = rng.uniform(lo, hi) * min(H, W)
        cx = rng.uniform(side / 2, W - side / 2) if W > side else W / 2
        cy = rng.uniform(side / 2, H - side / 2) if H > side else H / 2
        crop, _ = square_crop(img, (cx, cy), side, size, flip=bool(rng.integers(2)))
        yield crop, s


@dataclass
class VisualizeResults:
    """What :func:`compute` measured (rendering lives in :func:`render`).

    Attributes:
        conf: the configuration.
        layers: the layers with a database; recon_layers: those that reconstruct the queries.
        held_out: the query and seed photos (never in the database); db_photos: the database's source photos.
        n_views: database views; device: where the network ran.
        query_crops: {photo id: (S, S, 3) uint8 network-input crop} of every held-out photo.
        reconstructions, uniform_rf: {query: {layer: (S, S, 3) uint8}} (Figure 1 and its uniform-rf control).
        seeds: one (photo id, keypoint name, (2,) crop px, {layer: average rf patch (s, s, 3) uint8}) per seed
            (Figure 2).
        pixel_error: {query: {layer: {"pixel_error", "uniform_rf_pixel_error"}}}.
        database: {layer: vectors, dim, views, stride, rf, index MB, provenance / images bytes};
            database_rows: the report's table of it (with the index build seconds).
        layer_times: {layer: index build / reconstruct / task seconds, peak RSS and anonymous MB}; query_times: one
            row per reconstructing layer (search time per query vector).
        build_seconds, features_seconds: database extraction and its network forward passes; reused: whether the
            database came from an earlier run (``resume``); seconds: total.
    """

    conf: dict
    layers: list
    recon_layers: list
    held_out: list
    db_photos: list
    n_views: int
    device: str
    query_crops: dict
    reconstructions: dict
    uniform_rf: dict
    seeds: list
    pixel_error: dict
    database: dict
    database_rows: list
    layer_times: dict
    query_times: list
    build_seconds: float
    features_seconds: float
    reused: bool
    seconds: float = 0.0


def compute(conf: dict, out_dir: str | Path | None = None) -> VisualizeResults:
    """Database of every layer (each view through the network once, spilled to disk), one unit of work per layer
    (index, reconstructions, average rfs) through :func:`convcorr.experiments.workers.run_conf_tasks`, and the
    pixel errors. ``out_dir`` holds the temporary database folder (with ``resume``: ``out_dir/tasks/``) and, with
    ``save_db``, the saved indexes."""
    from ..backbones import get_backbone

    t_start = time.perf_counter()
    rng = np.random.default_rng(conf["seed"])
    bb = get_backbone(conf["backbone"])
    layers = list(conf["layers"])
    recon_layers = [l for l in conf["recon_layers"] if l in layers]
    geoms = {l: bb.rf(l) for l in layers}
    q = _queries(conf, bb, layers, geoms)
    if conf["save_db"] and out_dir is None:
        raise ConfigError("visualize: save_db=True needs an output folder")
    save_dir = str(Path(out_dir) / "db") if conf["save_db"] else None
    res, n_views, spill, reused = _layers(conf, out_dir, bb, layers, geoms, q, rng, recon_layers, save_dir)
    recon = {qq: {l: res[l]["rec"][qq] for l in recon_layers} for qq in conf["queries"]}
    uni = {qq: {l: res[l]["uni"][qq] for l in recon_layers} for qq in conf["queries"]}
    pixel_error = {qq: {l: {"pixel_error": _pixel_error(recon[qq][l], q["crops"][qq][0]),
                            "uniform_rf_pixel_error": _pixel_error(uni[qq][l], q["crops"][qq][0])}
                        for l in recon_layers} for qq in conf["queries"]}
    seeds = [(qq, name, xy, {l: res[l]["rf"][i] for l in layers})
             for i, ((qq, name), xy) in enumerate(zip(conf["seeds"], q["seed_xy"]))]
    db_rows, db_res, layer_times = [], {}, {}
    for l in layers:
        r = res[l]
        row = {"layer": l, "vectors": r["vectors"], "dim": r["dim"], "views": r["views"], "stride": geoms[l].stride,
               "rf": geoms[l].size, "index MB": r["index_bytes"] / 2**20}
        db_rows.append({**row, "index build s": r["index_s"]})
        db_res[l] = {**row, "provenance_bytes": r["provenance_bytes"], "images_bytes": r["images_bytes"]}
        layer_times[l] = {"index_build_s": r["index_s"], "reconstruct_s": r["search_s"], "task_s": r["task_s"],
                          "peak_rss_mb": r["peak_rss_mb"], "anon_mb": r["anon_mb"]}
    time_rows = []
    for l in recon_layers:
        tot, nq = res[l]["search_s"], res[l]["search_columns"]
        time_rows.append({"layer": l, "vectors": res[l]["vectors"], "query columns": nq,
                          "reconstruct s (search + patches)": tot, "ms per query vector": 1000 * tot / max(nq, 1)})
    out = VisualizeResults(dict(conf), layers, recon_layers, q["held"], [p.id for p in q["db_photos"]], n_views,
                           str(bb.device), {h: c[0] for h, c in q["crops"].items()}, recon, uni, seeds, pixel_error,
                           db_res, db_rows, layer_times, time_rows, float(spill.meta["seconds"]), spill.features_s,
                           reused)
    out.seconds = time.perf_counter() - t_start
    return out


def _queries(conf: dict, bb, layers: list, geoms: dict) -> dict:
    """The held-out photos and the database photos, the query crops, their features (once per photo) and the
    seed columns, checked before the long work -> {"held", "db_photos", "crops" {id: (crop, to-crop map)},
    "seed_xy", "qgrid" {id: {layer: grid}}, "seed_columns" {layer: [(id, (c, r))]}, "per_view" {layer: columns}}."""
    size = bb.input_size
    photos = sources(conf)
    by_id = {p.id: p for p in photos}
    seed_ids = [s[0] for s in conf["seeds"]]
    missing = [q for q in list(conf["queries"]) + seed_ids if q not in by_id]
    if missing:
        raise ConfigError(f"visualize: queries/seeds {missing} are not source photos; available: {sorted(by_id)}")
    held = list(dict.fromkeys(list(conf["queries"]) + seed_ids))
    held_paths = {str(by_id[q].image_path) for q in held}
    db_photos = [p for p in photos if p.id not in held and str(p.image_path) not in held_paths]
    assert not {p.id for p in db_photos} & set(held), "query photos leaked into the database"
    grid_hw = {l: a.shape[1:3] for l, a in bb.extract([np.zeros((size, size, 3), np.uint8)], layers, size=None).items()}
    per_view = {l: int(np.prod(grid_hw[l])) for l in layers}
    if conf["reference_layer"] not in per_view:
        raise ConfigError(f"visualize: reference_layer {conf['reference_layer']!r} must be one of layers {layers}")
    qcrops = {}
    for q in held:
        inst = by_id[q]
        x0, y0, x1, y1 = inst.bbox
        margin = 0.0 if inst.category == "image" else conf["query_margin"]  # shared/images: centred square
        side = max(x1 - x0, y1 - y0) * (1 + 2 * margin)
        qcrops[q] = square_crop(inst.load(), ((x0 + x1) / 2, (y0 + y1) / 2), side, size)
    seed_xy = []
    for q, name in conf["seeds"]:
        inst = by_id[q]
        kidx = inst.keypoint_names.index(name) if name in inst.keypoint_names else None
        if kidx is None or not inst.visible[kidx]:
            raise ConfigError(f"visualize: seed keypoint {name!r} is not annotated on {q}")
        seed_xy.append(qcrops[q][1](inst.keypoints[kidx][None])[0])
    qacts = bb.extract([qcrops[q][0] for q in held], layers, size=None)
    qgrid = {q: {l: qacts[l][i] for l in layers} for i, q in enumerate(held)}
    seed_columns = {l: [(q, tuple(int(v) for v in geoms[l].pixel_to_column(xy[None], grid_hw[l])[0]))
                        for (q, _), xy in zip(conf["seeds"], seed_xy)] for l in layers}
    return {"held": held, "db_photos": db_photos, "crops": qcrops, "seed_xy": seed_xy, "qgrid": qgrid,
            "seed_columns": seed_columns, "per_view": per_view}


def _layers(conf: dict, out_dir, bb, layers: list, geoms: dict, q: dict, rng, recon_layers: list, save_dir):
    """The database (every view through the network once, spilled to disk: a temporary folder, or with
    ``resume`` ``out_dir/tasks/database-<hash>/``, reused when complete) and one unit of work per layer ->
    ({layer: :func:`_layer_task` result}, views, the SpilledDatabases, whether it was reused)."""
    from ..methods.reconstruction import SpilledDatabases, spill_databases

    size, per_view = bb.input_size, q["per_view"]
    n_views = math.ceil(conf["db_size"] / per_view[conf["reference_layer"]])
    keep = math.ceil(conf["db_size"] / n_views)
    per_image = {l: min(keep, per_view[l]) for l in layers}
    folder = task_dir(conf, out_dir, "database") if out_dir is not None else None
    temporary = folder is None
    if temporary:
        folder = Path(tempfile.mkdtemp(prefix=".database-", dir=out_dir))
    try:
        spill = None if temporary else SpilledDatabases.complete(folder, layers)
        reused = spill is not None
        if spill is None:
            views = view_generator(q["db_photos"], n_views, conf, size, rng)
            srcs: list[int] = []

            def images():
                for v, s in views:
                    srcs.append(s)
                    yield v

            spill = spill_databases(bb, images(), layers, folder, groups=_groups(srcs), max_vectors=conf["db_size"],
                                    per_image=per_image, n_images=n_views, batch_size=conf["batch_size"],
                                    seed=conf["seed"], desc=f"database ({n_views} views)")
        shared = {"folder": str(folder), "index": conf["index"], "k": conf["k"], "k_rf": conf["k_rf"], "size": size,
                  "geoms": geoms, "recon_layers": recon_layers, "queries": list(conf["queries"]),
                  "qgrid": q["qgrid"], "seed_columns": q["seed_columns"]}
        per_layer = run_conf_tasks(_layer_task, layers, conf, out_dir, "layers", shared=shared,
                                   kwargs={"save_dir": save_dir}, key=unit_key, desc="layers (index, queries)")
    finally:
        if temporary:
            shutil.rmtree(folder, ignore_errors=True)
    return dict(zip(layers, per_layer)), n_views, spill, reused


def _layer_task(layer: str, shared: dict, save_dir: str | None = None) -> dict:
    """One unit of work: build ``layer``'s index from the spilled vectors, reconstruct every query (Figure 1 and
    the uniform-rf control) and average the rf patches of every seed's neighbours (Figure 2).

    Returns small, picklable results: reconstructions ({query: (size, size, 3) uint8}), average rfs (one
    (S, S, 3) uint8 per seed), database sizes and timings. Uses no random numbers (the column sampling happened
    once, in the calling process), so the result does not depend on which worker runs it.
    """
    import resource

    from ..methods.reconstruction import SpilledDatabases, average_rf, reconstruct, uniform_rf_reconstruct

    t0 = time.perf_counter()
    db = SpilledDatabases(shared["folder"]).open(layer, shared["index"])
    geom, size, k = shared["geoms"][layer], shared["size"], shared["k"]
    nb = db.nbytes()
    out = {"vectors": len(db), "dim": db.dim, "views": len(db.images), "index_bytes": nb["index"],
           "provenance_bytes": nb["provenance"], "images_bytes": nb["images"], "index_s": db.timings["open_s"],
           "rec": {}, "uni": {}, "rf": [], "search_s": 0.0, "search_columns": 0}
    if layer in shared["recon_layers"]:
        for q in shared["queries"]:
            g = shared["qgrid"][q][layer]
            t = time.perf_counter()
            out["rec"][q], ids = reconstruct(g, geom, db, k, (size, size), return_ids=True)
            out["search_s"] += time.perf_counter() - t
            out["search_columns"] += g.shape[0] * g.shape[1]
            out["uni"][q] = uniform_rf_reconstruct(g, geom, db, k, (size, size), ids=ids)
    for q, (c, r) in shared["seed_columns"][layer]:
        out["rf"].append(average_rf(db, shared["qgrid"][q][layer][r, c], shared["k_rf"], geom))
    if save_dir is not None:
        db.save(Path(save_dir) / layer)
    out["task_s"] = time.perf_counter() - t0
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["anon_mb"] = _anon_mb()  # while this layer's index is still in memory
    return out


def _anon_mb() -> float | None:
    """This process's anonymous resident memory in MB (Linux ``RssAnon``: excludes memory-mapped files such as the
    shared views), or None where /proc is unavailable."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


class _groups:
    """Lazy iterator over the source index of each view, filled by the view generator as views are drawn."""

    def __init__(self, srcs: list[int]):
        self.srcs, self.i = srcs, 0

    def __iter__(self):
        return self

    def __next__(self) -> int:
        v = self.srcs[self.i]
        self.i += 1
        return v


def _pixel_error(rec: np.ndarray, img: np.ndarray) -> float:
    covered = rec.any(-1)
    if not covered.any():
        return float("nan")
    return float(np.abs(rec.astype(np.float32) - img.astype(np.float32))[covered].mean())


@register_experiment("visualize")
def main(conf: dict, out_dir: Path) -> Path:
    """:func:`compute`, then :func:`render` into ``out_dir``."""
    return render(compute(conf, out_dir), out_dir)


def render(res: VisualizeResults, out_dir: Path) -> Path:
    """report.md, results.json, reconstruction_<query>.png, uniform_rf_<query>.png and average_rf.png of computed
    results."""
    import matplotlib

    matplotlib.use("Agg")
    conf = res.conf
    rep = Report(out_dir, "Figures 1 and 2: nonparametric reconstruction from conv features", conf)
    for q in conf["queries"]:
        img = res.query_crops[q]
        _row_figure(rep, img, res.reconstructions[q], f"reconstruction_{slug(q)}.png",
                    f"Figure 1 style: query {q} (left) rebuilt from the stride patches of the k={conf['k']} nearest "
                    f"database features per column, per layer.")
        _row_figure(rep, img, res.uniform_rf[q], f"uniform_rf_{slug(q)}.png",
                    f"Uniform-rf control for {q}: the neighbours' full rf patches, averaged and overlap-averaged.")
    if res.seeds:
        _average_rf_figure(rep, res.query_crops, res.seeds, res.layers, conf["k_rf"])
    err_rows = []
    for q, per in res.pixel_error.items():
        err_rows.append({"query": q, "kind": "reconstruction", **{l: per[l]["pixel_error"] for l in res.recon_layers}})
        err_rows.append({"query": q, "kind": "uniform rf",
                         **{l: per[l]["uniform_rf_pixel_error"] for l in res.recon_layers}})
    rss_rows = [{"layer": l, "task s": t["task_s"], "peak RSS MB": t["peak_rss_mb"],
                 "anonymous MB at the end": t["anon_mb"]} for l, t in res.layer_times.items()]
    rep.section("Protocol", PROTOCOL)
    rep.section("Differences from the paper", (
        "The paper's database holds >= 1M conv features of a large natural-image collection; here the vectors come "
        f"from {len(res.db_photos)} shared photos, multiplied by random crops, flips and smooth warps, so neighbours "
        "are far less varied (expect repeated textures). Weights: the 8-bit Caffe reference AlexNet (caffe-q8). "
        f"k = {conf['k']} neighbours per patch and k_rf = {conf['k_rf']} for the average rf are this project's "
        "choices (k = 5 as in the brief; neither value was checked against the paper text offline). "
        "The uniform-rf control is defined in the protocol above."))
    rep.section("Database", f"{res.n_views} views of {len(res.db_photos)} source photos (+ {conf['n_synthetic']} warps "
                f"each); held-out query photos: {', '.join(res.held_out)}. Index: `{conf['index']}`.\n\n"
                + markdown_table(res.database_rows, floatfmt="{:.2f}")
                + f"\nVectors extracted in {res.build_seconds:.1f} s, of which network forward passes "
                  f"{res.features_seconds:.1f} s (device: {res.device})"
                + (" (in an earlier run: reused with `resume`)" if res.reused else "")
                + "; each layer's index is built from them in its own unit of work (index build s).")
    rep.section("Query timings (measured)", markdown_table(res.query_times, floatfmt="{:.3f}"))
    rep.section("Reconstruction pixel error (mean |difference|, 0..255, covered pixels)",
                markdown_table(err_rows, ["query", "kind", *res.recon_layers], floatfmt="{:.1f}"))
    rep.results.update({"database": res.database, "n_views": res.n_views, "db_photos": res.db_photos,
                        "held_out": res.held_out, "pixel_error": res.pixel_error,
                        "timing": {"build_s": res.build_seconds, "features_s": res.features_seconds,
                                   "layers": res.layer_times, "query": res.query_times}})
    rep.results["seconds"] = res.seconds
    rep.section("Runtime", f"{res.seconds:.1f} s on this machine (workers={conf['workers']}, executor="
                f"{conf['executor'] or 'default'}). Per layer unit: peak resident memory of the process that ran it "
                "since that process started (including the pages of the memory-mapped views it read, shared between "
                "processes), and its anonymous memory at the end of the unit, with the layer's index still "
                "loaded:\n\n" + markdown_table(rss_rows, floatfmt="{:.1f}"))
    return rep.save()


def _row_figure(rep: Report, img: np.ndarray, recs: dict, name: str, caption: str) -> None:
    import matplotlib.pyplot as plt

    n = 1 + len(recs)
    fig, axes = plt.subplots(1, n, figsize=(2.2 * n, 2.5))
    axes = np.atleast_1d(axes)
    axes[0].imshow(img)
    axes[0].set_title("query", fontsize=9)
    for ax, (l, r) in zip(axes[1:], recs.items()):
        ax.imshow(r)
        ax.set_title(l, fontsize=9)
    for ax in axes:
        ax.axis("off")
    rep.figure(fig, name, caption)


def _average_rf_figure(rep: Report, qcrops: dict, rfs: list, layers: list, k_rf: int) -> None:
    import matplotlib.pyplot as plt

    n_rows, n_cols = len(rfs), 1 + len(layers)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.9 * n_cols, 2.0 * n_rows), squeeze=False)
    for r, (q, name, xy, row) in enumerate(rfs):
        axes[r, 0].imshow(qcrops[q])
        axes[r, 0].plot(*xy, "r+", ms=12, mew=2)
        axes[r, 0].set_title(f"{q} {name}", fontsize=7)
        for c, l in enumerate(layers, 1):
            axes[r, c].imshow(row[l])
            axes[r, c].set_title(f"{l} ({row[l].shape[0]} px)", fontsize=8)
    for ax in axes.ravel():
        ax.axis("off")
    rep.figure(fig, "average_rf.png",
               f"Figure 2 style: mean rf-sized patch of the k={k_rf} nearest database features of the query feature at "
               "each seed keypoint (red cross), per layer (each shown at the same display size).")
