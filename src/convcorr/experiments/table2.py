"""Table 2 of the paper: keypoint transfer by conv flow vs SIFT flow vs nearest-neighbour copy.

Protocol on the embedded data (``dataset="embedded"``): for every category, each REAL photo is a query; its
candidate neighbours are the other real photos of the category plus ``n_warps`` synthetic warps of each of them
(never the query's own photo or its warps, so every alignment is between different object instances). The k
nearest candidates by the retrieval backbone's global feature are aligned to the query; PCK at alpha 0.1 /
0.05 / 0.025 of max(box h, w), averaged over keypoint types, is reported per method (``convcorr.pck``).
``dataset="berkeley"`` runs the paper's protocol on PASCAL VOC 2011 (needs ``root``: the VOC2011 folder holding
JPEGImages and the Berkeley annotation folder ``annotations``), with the k=25 neighbours taken from all other
instances of the category.
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..pck import PAPER_ALPHAS, pck_curve
from ..report import Report, markdown_table, progress
from ..transfer import KeypointTransfer, TransferConfig, crop_instance, retrieve_neighbours

CONFIGS = {
    "default": {
        "dataset": "embedded", "root": None, "categories": ["face", "horse10", "animalpose"], "n_warps": 3,
        "max_queries": 6, "k": 8, "top": 5, "methods": ["nn", "sift", "conv2", "conv4"], "backbone": "alexnet",
        "retrieval_backbone": "efficientnet_lite0", "beta": 3e-3, "n_iter": 8, "size": 227, "margin": 0.1,
        "max_radius_px": 96.0, "seed": 0,
    },
    "paper": {
        "dataset": "berkeley", "root": None, "categories": None, "n_warps": 0, "max_queries": None, "k": 25,
        "top": 5, "methods": ["nn", "sift", "conv1", "conv2", "conv3", "conv4", "conv5"], "backbone": "alexnet",
        "retrieval_backbone": "efficientnet_lite0", "beta": 3e-3, "n_iter": 10, "size": 227, "margin": 0.1,
        "max_radius_px": 227.0, "seed": 0,
    },
}


def build_pool(conf: dict) -> list:
    """All instances (real + warps) of the configured categories; meta['source_id'] names the photo."""
    from .. import datasets

    if conf["dataset"] == "embedded":
        cats = conf["categories"] or list(datasets.embedded_categories())
        pool = []
        for c in cats:
            real = datasets.embedded_instances(c)
            real = [replace(r, meta=dict(r.meta, source_id=r.id, real=True)) for r in real]
            warps = datasets.synthetic_instances(real, conf["n_warps"], seed=conf["seed"])
            pool += real + [replace(w, meta=dict(w.meta, real=False)) for w in warps]
        return pool
    if conf["dataset"] == "berkeley":
        if not conf["root"]:
            raise FileNotFoundError("dataset 'berkeley' needs --set root=/path/to/VOC2011 (with JPEGImages/ and "
                                    "the Berkeley keypoint annotations in annotations/)")
        root = Path(conf["root"])
        insts = datasets.load_berkeley_xml(root / "annotations", image_root=root / "JPEGImages")
        if conf["categories"]:
            insts = [i for i in insts if i.category in conf["categories"]]
        return [replace(i, meta=dict(i.meta, source_id=i.id, real=True)) for i in insts]
    raise KeyError(f"table2 supports datasets 'embedded' and 'berkeley', not {conf['dataset']!r}")


def method_config(name: str, conf: dict) -> TransferConfig:
    base = dict(backbone=conf["backbone"], size=conf["size"], margin=conf["margin"], beta=conf["beta"],
                n_iter=conf["n_iter"], top=conf["top"], max_radius_px=conf["max_radius_px"])
    if name in ("nn", "sift"):
        return TransferConfig(method=name, **base)
    return TransferConfig(method="conv", layer=name, **base)


def main(conf: dict, out_dir: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    from ..backbones import get_backbone

    t0 = time.perf_counter()
    rep = Report(out_dir, "Table 2: keypoint transfer by alignment (conv flow vs SIFT flow vs NN)", conf)
    pool = build_pool(conf)
    retr = get_backbone(conf["retrieval_backbone"])
    crops = [crop_instance(i, conf["margin"], conf["size"])[0] for i in progress(pool, "crops")]
    glob = retr.global_features(crops)
    src = np.array([i.meta["source_id"] for i in pool])
    cat = np.array([i.category for i in pool])
    real = np.array([bool(i.meta.get("real")) for i in pool])
    queries = []
    for c in dict.fromkeys(cat):
        idx = np.flatnonzero(real & (cat == c))
        queries += list(idx[: conf["max_queries"]] if conf["max_queries"] else idx)
    mask = (cat[queries][:, None] == cat[None, :]) & (src[queries][:, None] != src[None, :])
    nbrs = retrieve_neighbours(glob[queries], glob, conf["k"], mask)

    methods = {m: KeypointTransfer(method_config(m, conf)) for m in conf["methods"]}
    preds = {m: [] for m in methods}
    per_query, details0 = [], None
    fig_method = [m for m in methods if m != "nn"][-1:] or [None]
    for qi, q in enumerate(progress(queries, "queries")):
        query = pool[q]
        nb = [pool[j] for j in nbrs[qi] if j >= 0]
        if not nb:
            continue
        rec = {"query": query.id, "category": query.category, "neighbours": [n.id for n in nb]}
        for m, kt in methods.items():
            if m == fig_method[0] and details0 is None:
                p, det = kt.predict(query, nb, return_details=True)
                details0 = (m, query, nb, det, kt)
            else:
                p = kt.predict(query, nb)
            preds[m].append((query, p))
            rec[m] = p.tolist()
        per_query.append(rec)

    rows, curves = [], {}
    for m, lst in preds.items():
        P, G, L, T, C = [], [], [], [], []
        for query, p in lst:
            v = query.visible
            P.append(p[v])
            G.append(query.keypoints[v])
            L.append(np.full(v.sum(), query.bbox_size))
            T += [f"{query.category}/{n}" for n, vv in zip(query.keypoint_names, v) if vv]
            C += [query.category] * int(v.sum())
        P, G, L, T, C = np.concatenate(P), np.concatenate(G), np.concatenate(L), np.array(T), np.array(C)
        curve = pck_curve(P, G, L, PAPER_ALPHAS, types=T)
        curves[m] = curve
        row = {"method": m}
        row.update({f"PCK@{a}": v for a, v in curve.items()})
        for c in dict.fromkeys(C):
            row[f"{c} @0.1"] = pck_curve(P[C == c], G[C == c], L[C == c], [0.1], types=T[C == c])[0.1]
        rows.append(row)
    # random-keypoint reference: uniformly random points inside the box
    rng = np.random.default_rng(conf["seed"])
    Rp, Rg, Rl, Rt = [], [], [], []
    for query, _ in next(iter(preds.values())):
        v = query.visible
        x0, y0, x1, y1 = query.bbox
        Rp.append(rng.uniform([x0, y0], [x1, y1], (v.sum(), 2)))
        Rg.append(query.keypoints[v])
        Rl.append(np.full(v.sum(), query.bbox_size))
        Rt += [n for n, vv in zip(query.keypoint_names, v) if vv]
    rand = pck_curve(np.concatenate(Rp), np.concatenate(Rg), np.concatenate(Rl), PAPER_ALPHAS, types=np.array(Rt))
    rows.append({"method": "random in box", **{f"PCK@{a}": v for a, v in rand.items()}})

    rep.section("Protocol", __doc__.split("\n\n", 1)[1].strip() + f"\n\n{len(per_query)} queries, pool of {len(pool)} "
                f"instances (real + warps), k = {conf['k']}, median of top {conf['top']}. Methods: `nn` = nearest-"
                "neighbour keypoint copy in box coordinates, `sift` = SIFT flow (dense SIFT, step "
                f"{methods.get('sift', KeypointTransfer()).conf.sift_step}, bin "
                f"{methods.get('sift', KeypointTransfer()).conf.sift_bin}, same MRF solver), `convN` = conv flow on "
                f"{conf['backbone']} layer convN.")
    rep.section("PCK (mean over keypoint types)", markdown_table(rows))
    rep.results.update({"pck": curves, "random": rand, "rows": rows, "per_query": per_query,
                        "n_queries": len(per_query), "pool_size": len(pool), "seconds": time.perf_counter() - t0})
    _plots(rep, curves, rand, details0)
    rep.section("Runtime", f"{time.perf_counter() - t0:.1f} s on this machine.")
    return rep.save()


def _plots(rep: Report, curves: dict, rand: dict, details0) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for m, c in curves.items():
        ax.plot(list(c), list(c.values()), "o-", label=m)
    ax.plot(list(rand), list(rand.values()), "k--", label="random in box")
    ax.set_xscale("log")
    ax.set_xlabel("alpha (fraction of max(box h, w))")
    ax.set_ylabel("PCK")
    ax.legend()
    rep.figure(fig, "pck_vs_alpha.png", "PCK against alpha per method.")
    if details0 is None:
        return
    m, query, nb, det, kt = details0
    crop_q, tq = kt.crop(query)
    order = np.argsort(det["energies"], kind="stable")[: kt.conf.top]
    n = len(order) + 1
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 2.9))
    axes[0].imshow(crop_q)
    g = tq.to_crop(query.keypoints[query.visible])
    pred = tq.to_crop(np.asarray(kt.predict(query, nb)))[query.visible]
    axes[0].plot(g[:, 0], g[:, 1], "g.", ms=6, label="ground truth")
    axes[0].plot(pred[:, 0], pred[:, 1], "rx", ms=5, label="prediction")
    axes[0].set_title(f"query {query.id}", fontsize=7)
    axes[0].legend(fontsize=6, loc="lower left")
    for ax, j in zip(axes[1:], order):
        ax.imshow(kt.warped_neighbour(query, nb[j], det["alignments"][j]))
        t = tq.to_crop(det["transferred"][j])
        ax.plot(t[:, 0], t[:, 1], "y.", ms=4)
        ax.set_title(f"{nb[j].id}\nE={det['energies'][j]:.2f}", fontsize=6)
    for ax in axes:
        ax.axis("off")
    rep.figure(fig, "neighbours.png", f"Top neighbours warped into the query frame by {m} flow, with their "
               "transferred keypoints (yellow); left: query with ground truth (green) and the median prediction (red).")
