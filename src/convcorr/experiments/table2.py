"""Table 2 of the paper: keypoint transfer by alignment, (dense features x matcher) combinations vs box-copy.

Method (:mod:`convcorr.transfer`): each query's k nearest same-category training instances by the retrieval
backbone's global feature (cosine) are matched to it by every configured matcher (``matchers``; the paper's MRF
is ``flow``, options from the top-level keys that are the matcher's option names -- ``beta``, ``n_iter``,
``radius_px``, ``coarse_to_fine`` -- and from ``matcher_options[name]``) on every configured dense feature
(``features``: spec strings such as ``alexnet:conv4`` or ``sift:step=8,bin=8``, :func:`convcorr.dense.get_features`),
their keypoints are transferred through the correspondence, the neighbours are ranked by its energy and every
keypoint type is predicted as the coordinate-wise median over the ``top`` best neighbours showing it;
``box-copy`` (in ``baselines``) copies the keypoints of the single nearest neighbour in normalised box
coordinates. Every instance is
cropped to its box (+ ``margin`` context) and resized to ``input_size`` pixels first; predictions are mapped back
exactly to original pixels. PCK at alpha 0.1 / 0.05 / 0.025 of max(box h, w), averaged over keypoint types
(``convcorr.pck``). "random in box" is a reference: uniformly random points in the query box.

Protocols.

* ``dataset="embedded"`` (presets ``default``, ``strict``, ``same-source``). The shared folder holds only a few real photos per category, so the data are
  real photos plus ``n_warps`` synthetic random smooth warps of each (``datasets.synthetic_instances``: affine +
  thin-plate deformation and a photometric change; exact keypoints). Queries are WARPED copies (``n_queries``
  per category, cycling over the photos). With ``exclude_same_source=False`` the training pool of a query is
  every other instance of its category: the other real photos, their warps, AND the query's own real photo and
  its sibling warps (only the query itself is held out). Neighbours from the query's own photo are then
  different deformations of the same object (a same-instance alignment, easier than the paper's cross-instance
  setting); the report gives the fraction of retrieved (and of top-ranked) neighbours that come from the query's
  photo (preset ``same-source``). With ``exclude_same_source=True`` (presets ``default`` and ``strict``)
  everything derived from the query's photo is held out, so every alignment is between different object
  instances, the paper's setting; ``face`` has 6 real photos, ``horse10`` 3 and ``animalpose`` 2, so the
  animal pools are small (``strict``: faces only).
* ``dataset="berkeley"`` (the paper's protocol): PASCAL VOC 2011 instances with the Berkeley keypoint
  annotations, needs ``root`` (a folder with JPEGImages/ and the Berkeley XML annotations in annotations/; with
  ImageSets/Main/val.txt the val instances are the queries and the others the training pool, else every instance
  is a query against all other instances); k = 25, top 5, conv1..conv5 of AlexNet.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .. import protocols
from ..pck import PAPER_ALPHAS, PCKProtocol, pck_curve
from ..report import Report, markdown_table, progress
from ..transfer import FeatureCache, KeypointTransfer, TransferConfig, make_transfer, retrieve_neighbours
from ..types import ConfigError

CONFIGS = {
    "default": {
        "dataset": "embedded", "root": None, "categories": ["face", "horse10", "animalpose"], "n_warps": 3,
        "n_queries": 4, "exclude_same_source": True, "k": 8, "top": 5,
        "features": ["alexnet:conv2", "alexnet:conv4", "sift:step=8,bin=8"], "matchers": ["flow"],
        "baselines": ["box-copy"], "retrieval_backbone": "efficientnet_lite0",
        "beta": 3e-3, "n_iter": 8, "radius_px": 64.0, "coarse_to_fine": False, "matcher_options": {},
        "input_size": 227, "margin": 0.1, "strength": 1.0, "seed": 0,
    },
    "paper": {
        "dataset": "berkeley", "root": None, "categories": None, "n_warps": 0, "n_queries": None,
        "exclude_same_source": True, "k": 25, "top": 5,
        "features": ["alexnet:conv1", "alexnet:conv2", "alexnet:conv3", "alexnet:conv4", "alexnet:conv5",
                     "sift:step=8,bin=8"], "matchers": ["flow"], "baselines": ["box-copy"],
        "retrieval_backbone": "efficientnet_lite0", "beta": 3e-3, "n_iter": 10, "radius_px": None,
        "coarse_to_fine": True, "matcher_options": {}, "input_size": 227, "margin": 0.1, "strength": 1.0,
        "seed": 0,
    },
}
CONFIGS = {k: protocols.with_data_options(v) for k, v in CONFIGS.items()}
#: cross-instance protocol on the embedded faces only (every alignment between different people)
CONFIGS["strict"] = dict(CONFIGS["default"], categories=["face"], n_queries=6, exclude_same_source=True)
#: easier same-instance variant: the query's own photo and its other warps stay in the pool
CONFIGS["same-source"] = dict(CONFIGS["default"], exclude_same_source=False)
#: parallel alignment loop (convcorr.parallel.run_tasks): ``workers`` processes (or Ray tasks with
#: ``executor="ray"`` on ``ray_address``; None starts a local cluster); ``resume`` keeps per-query results in
#: <out>/tasks/<config hash>/ and skips them when the run is repeated. Results are identical for any setting.
for _c in CONFIGS.values():
    _c.update({k: v for k, v in {"workers": 1, "executor": None, "ray_address": None, "resume": False}.items()
               if k not in _c})

#: the PCK protocol of this table (recorded in results.json): the paper's, where every visible query keypoint
#: counts (predictions come from several neighbours; a type no neighbour shows counts as wrong)
TABLE2_PCK = PCKProtocol("paper (Table 2)", "target-bbox", "max", PAPER_ALPHAS, "original", ("type",), "pooled",
                         False, "Long, Zhang & Darrell, NIPS 2014, Sec. 4 (Table 2)")


# -------------------------------------------------------------------------------------------------------- data
def _transfer_task(qi: int, shared: dict, full: bool = False) -> dict:
    """Task of the alignment loop: every method's prediction for query ``qi`` -> {method: (prediction (K, 2),
    details, seconds)}; ``details`` keep only order / top / energies unless ``full`` (picklable, small)."""
    pool, nbrs, methods = shared["pool"], shared["nbrs"], shared["methods"]
    query = pool[shared["queries"][qi]]
    nb = [pool[j] for j in nbrs[qi] if j >= 0]
    if not nb:
        raise ValueError(f"{query.id}: no allowed training instance of category {query.category!r}")
    out = {}
    for m, kt in methods.items():
        ts = time.perf_counter()
        p, det = kt.predict_from_neighbours(query, nb, return_details=True)
        sec = time.perf_counter() - ts
        if not full:
            det = {k: det[k] for k in ("order", "top", "energies")}
        out[m] = (p, det, sec)
    return out


def build_pool(conf: dict) -> list:
    """All instances of the configured data (:func:`convcorr.protocols.build_pool`: real photos + ``n_warps``
    warps of each; every data set of :mod:`convcorr.protocols`, e.g. ``--set dataset=coco --set json=...``)."""
    return protocols.build_pool(conf)


def select_queries(pool: list, conf: dict) -> list[int]:
    """Indices of the query instances: per category, ``n_queries`` warped copies cycling over the photos
    (warp 0 of every photo, then warp 1, ...); for real-only data (berkeley) the "test" split or every instance."""
    out = []
    for c in dict.fromkeys(i.category for i in pool):
        idx = [j for j, i in enumerate(pool) if i.category == c and not i.meta.get("real")]
        if not idx:  # real data only: test split if any, else all
            idx = [j for j, i in enumerate(pool) if i.category == c]
            test = [j for j in idx if pool[j].meta.get("split") == "test"]
            idx = test or idx
        else:
            w = lambda j: int(pool[j].id.rsplit("~w", 1)[-1])
            idx = sorted(idx, key=lambda j: (w(j), j))
        n = conf.get("n_queries")
        out += idx[:n] if n else idx
    return out


def candidate_mask(pool: list, queries: list[int], exclude_same_source: bool) -> np.ndarray:
    """(Q, N) bool: allowed training instances per query (same category and keypoint set, not the query; with
    ``exclude_same_source`` nothing derived from the query's photo; for berkeley only the train split)."""
    cat = np.array([i.category for i in pool])
    src = np.array([i.meta["source_id"] for i in pool])
    names = np.array([hash(i.keypoint_names) for i in pool])
    split = np.array([i.meta.get("split", "") for i in pool])
    q = np.asarray(queries)
    m = (cat[q][:, None] == cat[None, :]) & (names[q][:, None] == names[None, :])
    m &= np.arange(len(pool))[None, :] != q[:, None]
    if exclude_same_source:
        m &= src[q][:, None] != src[None, :]
    if (split == "test").any():
        m &= split[None, :] != "test"
    return m


def matcher_options(conf: dict, name: str) -> dict:
    """Options of matcher ``name``: the top-level keys of ``conf`` that are named options of the matcher class
    (e.g. ``beta``, ``n_iter``, ``radius_px``, ``coarse_to_fine`` for flow), overridden by
    ``conf["matcher_options"][name]``."""
    import inspect

    from ..matchers import MATCHERS
    if name not in MATCHERS:
        raise ConfigError(f"table2: unknown matcher {name!r}; available: {sorted(MATCHERS)}")
    params = inspect.signature(MATCHERS[name].__init__).parameters
    named = [k for k, p in params.items() if k != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    opts = {k: conf[k] for k in named if k in conf}
    if "coarse_to_fine" in opts:
        opts["coarse_to_fine"] = as_bool(opts["coarse_to_fine"], "coarse_to_fine")
    opts.update((conf.get("matcher_options") or {}).get(name, {}))
    return opts


def method_configs(conf: dict) -> dict[str, TransferConfig]:
    """{method label: TransferConfig}: one "<features> + <matcher>" entry per (features, matcher) combination,
    then the baselines (``box-copy``)."""
    from ..dense import get_features

    base = dict(retrieval_backbone=conf["retrieval_backbone"], k=conf["k"], top=conf["top"],
                size=conf["input_size"], margin=conf["margin"])
    out = {}
    feats = [get_features(f) for f in conf.get("features") or []]   # resolved once, validated early
    for m in conf.get("matchers") or []:
        opts = matcher_options(conf, m)
        for f in feats:
            out[f"{f.spec} + {m}"] = TransferConfig(method="align", features=f, matcher=m, matcher_options=opts,
                                                    **base)
    for b in conf.get("baselines") or []:
        if b == "align":
            raise ConfigError("table2: 'align' is not a baseline; configure features and matchers instead")
        out[b] = TransferConfig(method=b, **base)
    if not out:
        raise ConfigError("table2: nothing to compare; set features + matchers and/or baselines")
    return out


def as_bool(v, name: str) -> bool:
    """Config flag from a bool or a command-line string ("true"/"false"/"1"/"0"/"yes"/"no")."""
    if isinstance(v, str):
        if v.strip().lower() in ("true", "1", "yes", "on"):
            return True
        if v.strip().lower() in ("false", "0", "no", "off", ""):
            return False
        raise ConfigError(f"table2: option {name!r} must be true or false, got {v!r}")
    return bool(v)


# ------------------------------------------------------------------------------------------------------ metrics
def _pck_of(records: list[tuple], alphas=PAPER_ALPHAS) -> dict:
    """records: (query Instance, pred (K, 2)) -> {alpha: PCK} over the queries' visible keypoints."""
    P, G, L, T = [], [], [], []
    for q, p in records:
        v = q.visible
        P.append(np.asarray(p)[v])
        G.append(q.keypoints[v])
        L.append(np.full(int(v.sum()), q.bbox_size))
        T += [f"{q.category}/{n}" for n, vv in zip(q.keypoint_names, v) if vv]
    if not T:
        return {float(a): float("nan") for a in alphas}
    return pck_curve(np.concatenate(P), np.concatenate(G), np.concatenate(L), alphas, types=np.array(T))


def random_predictions(queries: list, seed: int) -> list[np.ndarray]:
    """Uniformly random points inside each query's box (a chance reference)."""
    rng = np.random.default_rng(seed)
    return [rng.uniform(q.bbox[:2], q.bbox[2:], (len(q.keypoints), 2)) for q in queries]


# --------------------------------------------------------------------------------------------------------- main
def main(conf: dict, out_dir: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")

    t0 = time.perf_counter()
    conf = dict(conf, exclude_same_source=as_bool(conf["exclude_same_source"], "exclude_same_source"))
    rep = Report(out_dir, "Table 2: keypoint transfer by alignment (features x matchers vs box-copy)", conf)
    rep.results["pck_protocol"] = TABLE2_PCK.to_dict()
    pool = build_pool(conf)
    queries = select_queries(pool, conf)
    if not queries:
        raise ConfigError("table2: no queries (check categories / n_queries / n_warps)")
    mask = candidate_mask(pool, queries, conf["exclude_same_source"])
    cache = FeatureCache(conf["input_size"], conf["margin"])
    for i in progress(pool, "crops"):
        cache.crop(i)
    glob = cache.global_features(pool, conf["retrieval_backbone"])
    nbrs = retrieve_neighbours(glob[queries], glob, conf["k"], mask)
    t_retrieval = time.perf_counter() - t0

    methods = {m: make_transfer(c, cache=cache) for m, c in method_configs(conf).items()}
    aligned = {m: kt for m, kt in methods.items() if isinstance(kt, KeypointTransfer)}
    used = sorted(set(queries) | {int(j) for j in nbrs.ravel() if j >= 0})
    for f in {kt.features.cache_key: kt.features for kt in aligned.values()}.values():
        cache.precompute([pool[j] for j in used], f)

    # alignments of every query (the expensive part) as independent tasks: serially, on a process pool or Ray;
    # features are computed above once per instance and sent once per worker with the methods
    from ..parallel import run_tasks

    shared = {"pool": pool, "queries": queries, "nbrs": nbrs, "methods": methods}
    task_dir = None
    if as_bool(conf.get("resume", False), "resume"):
        import hashlib
        import json

        sig = {k: v for k, v in conf.items() if k not in ("workers", "executor", "ray_address", "resume")}
        h = hashlib.sha1(json.dumps(sig, sort_keys=True, default=str).encode()).hexdigest()[:12]
        task_dir = Path(out_dir) / "tasks" / h
    # query 0 runs here (its full details feed the figures); the others as tasks
    first = _transfer_task(0, shared, full=True)
    rest = run_tasks(_transfer_task, list(range(1, len(queries))), shared=shared, workers=int(conf.get("workers", 1)),
                     executor=conf.get("executor"), address=conf.get("ray_address"), out_dir=task_dir,
                     key=lambda qi: f"q{qi:05d}", desc="aligned queries")
    results = [first] + rest

    preds = {m: [] for m in methods}
    per_query, details, seconds = [], {}, {m: 0.0 for m in methods}
    same_src_top = {m: [] for m in methods}
    same_src_k = []
    for qi, q in enumerate(progress(queries, "queries")):
        query = pool[q]
        nb = [pool[j] for j in nbrs[qi] if j >= 0]
        if not nb:
            raise ValueError(f"{query.id}: no allowed training instance of category {query.category!r}")
        is_same = np.array([n.meta["source_id"] == query.meta["source_id"] for n in nb])
        same_src_k.append(is_same.mean())
        rec = {"query": query.id, "category": query.category, "source": query.meta["source_id"],
               "neighbours": [n.id for n in nb], "same_source": is_same.tolist(),
               "ground_truth": np.where(query.visible[:, None], query.keypoints, np.nan).tolist(), "methods": {}}
        for m, kt in methods.items():
            p, det, sec = results[qi][m]
            seconds[m] += sec
            top = det["order"][: det["top"]]
            same_src_top[m].append(is_same[top].mean())
            preds[m].append((query, p))
            rec["methods"][m] = {"prediction": p.tolist(), "energies": det["energies"].tolist(),
                                 "rank": det["order"].tolist(), "pck@0.1": _pck_of([(query, p)], [0.1])[0.1]}
            if qi == 0 and m in aligned:
                details[m] = (query, nb, det, kt)
        per_query.append(rec)

    qs = [pool[q] for q in queries]
    rand_preds = random_predictions(qs, conf["seed"])
    rand = _pck_of(list(zip(qs, rand_preds)))
    curves = {m: _pck_of(lst) for m, lst in preds.items()}
    a0, a1, a2 = (float(a) for a in PAPER_ALPHAS)
    cols = ["method", f"PCK@{a0}", f"PCK@{a1}", f"PCK@{a2}"]
    rows = [{"method": m, **{f"PCK@{a}": v for a, v in c.items()},
             "top nbrs from query's photo": float(np.mean(same_src_top[m])), "seconds": seconds[m]}
            for m, c in curves.items()]
    rows.append({"method": "random in box", **{f"PCK@{a}": v for a, v in rand.items()}})
    cats = list(dict.fromkeys(q.category for q in qs))
    cat_rows, per_cat = [], {}
    for c in cats:
        per_cat[c] = {}
        for m, lst in preds.items():
            cv = _pck_of([r for r in lst if r[0].category == c])
            per_cat[c][m] = cv
            cat_rows.append({"category": c, "method": m, **{f"PCK@{a}": v for a, v in cv.items()}})
        rnd = _pck_of([(q, r) for q, r in zip(qs, rand_preds) if q.category == c])
        cat_rows.append({"category": c, "method": f"random in box ({sum(q.category == c for q in qs)} queries)",
                         **{f"PCK@{a}": v for a, v in rnd.items()}})

    n_pool = {c: sum(i.category == c for i in pool) for c in cats}
    proto = ("strict cross-instance: everything derived from the query's photo is held out"
             if conf["exclude_same_source"] else
             "the query's own photo and its sibling warps stay in the training pool (only the query is held out)")
    rep.section("Protocol", __doc__.split("\n\n", 1)[1].strip() + "\n\n"
                f"This run: dataset `{conf['dataset']}`, {len(qs)} queries ({', '.join(f'{c}: {sum(q.category == c for q in qs)}' for c in cats)}), "
                f"pools {n_pool} instances per category; {proto}. k = {conf['k']} neighbours by "
                f"`{conf['retrieval_backbone']}` global features (cosine), median of the top {conf['top']} by "
                f"alignment energy; crops: box + {conf['margin']} margin -> {conf['input_size']} px; features: "
                + ", ".join(f"`{kt.features.spec}`" for kt in {kt.features.spec: kt for kt in aligned.values()}.values())
                + "; matchers: " + ", ".join(f"`{m}` {matcher_options(conf, m)}" for m in conf.get("matchers") or [])
                + f"; baselines: {', '.join(conf.get('baselines') or []) or '-'}.\n\n"
                f"Retrieved neighbours from the query's own photo: {np.mean(same_src_k):.0%} of the k.")
    rep.section("PCK (mean over keypoint types), all queries",
                markdown_table(rows, cols + ["top nbrs from query's photo", "seconds"]) +
                "\n`top nbrs from query's photo`: fraction of the neighbours actually used (the top by energy; the "
                "single nearest for box-copy) that are warps/the photo of the query's own object. `seconds`: "
                "alignment + transfer time of the method.")
    rep.section("PCK per category", markdown_table(cat_rows, ["category"] + cols))
    rep.results.update({
        "pck": curves, "random": rand, "per_category": per_cat, "rows": rows, "category_rows": cat_rows,
        "same_source_fraction_k": float(np.mean(same_src_k)),
        "same_source_fraction_top": {m: float(np.mean(v)) for m, v in same_src_top.items()},
        "per_query": per_query, "n_queries": len(qs), "pool_sizes": n_pool, "method_seconds": seconds,
        "retrieval_seconds": t_retrieval,
    })
    _plots(rep, curves, rand, details)
    total = time.perf_counter() - t0
    rep.results["seconds"] = total
    rep.section("Runtime", f"{total:.1f} s in total ({t_retrieval:.1f} s crops + global features); per method: "
                + ", ".join(f"{m} {s:.1f} s" for m, s in seconds.items()) + ".")
    return rep.save()


def _plots(rep: Report, curves: dict, rand: dict, details: dict) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    alphas = [float(a) for a in PAPER_ALPHAS]
    n = len(curves) + 1
    wd = 0.8 / n
    for i, (m, c) in enumerate(list(curves.items()) + [("random in box", rand)]):
        ax.bar(np.arange(len(alphas)) + (i - (n - 1) / 2) * wd, [c[a] for a in alphas], wd,
               label=m, color="0.6" if m == "random in box" else None)
    ax.set_xticks(range(len(alphas)), [f"alpha = {a}" for a in alphas])
    ax.set_ylabel("PCK (mean over keypoint types)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    rep.figure(fig, "pck_vs_alpha.png", "PCK at the paper's three alphas per method.")
    if not details:
        return
    m = max(details, key=lambda k: np.nan_to_num(curves[k][float(PAPER_ALPHAS[0])], nan=-1))  # the best method
    query, nb, det, kt = details[m]
    crop_q, tq = kt.crop(query)
    order = det["order"][: kt.conf.top]
    pred = tq.to_crop(_median(det, kt.conf.top))
    v = query.visible
    n = len(order) + 1
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 3.0))
    axes[0].imshow(crop_q)
    g = tq.to_crop(query.keypoints[v])
    axes[0].plot(g[:, 0], g[:, 1], "g.", ms=6, label="ground truth")
    axes[0].plot(pred[v, 0], pred[v, 1], "rx", ms=5, label="prediction")
    axes[0].set_title(f"query {query.id}", fontsize=7)
    axes[0].legend(fontsize=6, loc="lower left")
    for rank, (ax, j) in enumerate(zip(axes[1:], order), 1):
        ax.imshow(kt.warped_neighbour(query, nb[j], det["alignments"][j]))
        t = tq.to_crop(det["transferred"][j])
        ax.plot(t[:, 0], t[:, 1], "y.", ms=4)
        same = nb[j].meta.get("source_id") == query.meta.get("source_id")
        ax.set_title(f"#{rank} {nb[j].id}{' (same photo)' if same else ''}\nE = {det['energies'][j]:.1f}", fontsize=6)
    for ax in axes:
        ax.axis("off")
    rep.figure(fig, "neighbours.png", f"Top {len(order)} neighbours by alignment energy, warped into the query "
               f"frame by {m} (the best method at PCK@{float(PAPER_ALPHAS[0])}; Correspondence.warp), with their transferred keypoints (yellow); left: the query "
               "with ground truth (green) and the median prediction (red).")


def _median(det: dict, top: int) -> np.ndarray:
    from ..transfer import median_of_top

    return median_of_top(det["transferred"], det["energies"], top)
