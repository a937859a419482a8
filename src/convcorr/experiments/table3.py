"""Table 3 and Figure 4 of the paper: keypoint classification with SIFT at several radii vs conv layers.

Every visible keypoint of every instance gives one example: the SIFT descriptor of radius r centred at the
keypoint, or the feature of the conv-layer column whose rf centre is nearest the keypoint, computed on the
instance's box crop (box + margin, resized to ``size`` px). One-vs-all linear SVMs predict the keypoint type;
C is chosen by 5-fold cross-validation grouped by photo. Reported: test accuracy per category and feature.
Figure 4: for test keypoints, the true type's classifier is evaluated at every pixel (1-pixel stride; conv
features exactly by shifted inputs) in a window around the ground truth, and the 2-D histogram of the
response maxima's offsets shows how finely each feature localises.

Embedded-data protocol: per category, real photos plus ``n_warps`` synthetic warps of each. Categories with
at least 3 photos are split by photo (test photos and their warps never seen in training); smaller categories
are split by warp (test = the last ``test_warps`` warps of every photo: same animals, new deformations),
which is easier, and is marked in the table.
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..classification import (DEFAULT_CS, accuracy, class_scores, max_offset_histogram, response_peak, select_C,
                              train_ova)
from ..features import PixelConvFeatures, conv_features_at, sift_features_at
from ..report import Report, markdown_table, progress
from ..transfer import crop_instance

CONFIGS = {
    "default": {
        "dataset": "embedded", "root": None, "categories": ["face", "horse10"], "n_warps": 4, "test_warps": 1,
        "test_fraction": 0.34, "radii": [10, 20, 40, 80, 160], "layers": ["conv1", "conv2", "conv3", "conv4", "conv5"],
        "backbone": "alexnet", "size": 227, "margin": 0.1, "Cs": list(DEFAULT_CS), "folds": 5, "seed": 0,
        "response_window": 24, "n_response_instances": 2, "n_response_keypoints": 12,
    },
    "paper": {
        "dataset": "berkeley", "root": None, "categories": None, "n_warps": 0, "test_warps": 0,
        "test_fraction": 0.5, "radii": [10, 20, 40, 80, 160], "layers": ["conv1", "conv2", "conv3", "conv4", "conv5"],
        "backbone": "alexnet", "size": 227, "margin": 0.1, "Cs": list(DEFAULT_CS), "folds": 5, "seed": 0,
        "response_window": 24, "n_response_instances": 20, "n_response_keypoints": 20,
    },
}


def split_pool(conf: dict) -> tuple[list, list, dict]:
    """(train instances, test instances, {category: split kind}) of the configured data."""
    from .. import datasets
    from .table2 import build_pool

    pool = build_pool(dict(conf, max_queries=None))
    train, test, kinds = [], [], {}
    for c in dict.fromkeys(i.category for i in pool):
        insts = [i for i in pool if i.category == c]
        sources = list(dict.fromkeys(i.meta["source_id"] for i in insts))
        if len(sources) >= 3:
            n_test = max(1, int(round(len(sources) * conf["test_fraction"])))
            test_src = set(sources[-n_test:])
            train += [i for i in insts if i.meta["source_id"] not in test_src]
            test += [i for i in insts if i.meta["source_id"] in test_src]
            kinds[c] = f"by photo ({len(sources) - n_test} train / {n_test} test photos)"
        else:
            is_test = [(not i.meta.get("real")) and int(i.id.rsplit("~w", 1)[-1]) >= conf["n_warps"] - conf["test_warps"]
                       for i in insts]
            train += [i for i, t in zip(insts, is_test) if not t]
            test += [i for i, t in zip(insts, is_test) if t]
            kinds[c] = f"by warp ({len(sources)} photos; test = unseen warps)"
    return train, test, kinds


def _examples(insts: list, conf: dict, backbone) -> tuple[dict, np.ndarray, np.ndarray, list]:
    """Features of every visible keypoint: ({feature name: (N, D)}, types (N,), groups (N,), crops)."""
    crops, pts, types, groups = [], [], [], []
    for inst in progress(insts, "crops"):
        crop, t = crop_instance(inst, conf["margin"], conf["size"])
        v = inst.visible
        crops.append((crop, t))
        pts.append(t.to_crop(inst.keypoints[v]))
        types += [n for n, vv in zip(inst.keypoint_names, v) if vv]
        groups += [inst.meta["source_id"]] * int(v.sum())
    feats = {}
    for r in conf["radii"]:
        feats[f"SIFT r{r}"] = np.concatenate([sift_features_at(c, p, r) for (c, _), p in zip(crops, pts)])
    if conf["layers"]:
        conv = conv_features_at(backbone, [c for c, _ in crops], pts, conf["layers"])
        feats.update(conv)
    return feats, np.array(types), np.array(groups), crops


def main(conf: dict, out_dir: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..backbones import get_backbone

    t0 = time.perf_counter()
    rep = Report(out_dir, "Table 3: keypoint classification accuracy (SIFT radii vs conv layers)", conf)
    bb = get_backbone(conf["backbone"])
    train, test, kinds = split_pool(conf)
    cats = list(dict.fromkeys(i.category for i in train))
    names = [f"SIFT r{r}" for r in conf["radii"]] + list(conf["layers"])
    rows, cv_curves, models = [], {n: [] for n in names}, {}
    for c in cats:
        tr = [i for i in train if i.category == c]
        te = [i for i in test if i.category == c]
        Ftr, ytr, gtr, _ = _examples(tr, conf, bb)
        Fte, yte, _, _ = _examples(te, conf, bb)
        row = {"category": c, "split": kinds[c], "types": len(np.unique(ytr)), "train pts": len(ytr),
               "test pts": len(yte)}
        for n in progress(names, f"{c}: features"):
            bestC, scores = select_C(Ftr[n], ytr, conf["Cs"], conf["folds"], gtr)
            model = train_ova(Ftr[n], ytr, bestC)
            models[(c, n)] = model
            row[n] = accuracy(model, Fte[n], yte)
            row[f"C {n}"] = bestC
            cv_curves[n].append(scores)
        row["chance"] = 1.0 / len(np.unique(ytr))
        rows.append(row)
    mean = {"category": "mean", "split": "", "types": "", "train pts": sum(r["train pts"] for r in rows),
            "test pts": sum(r["test pts"] for r in rows)}
    mean.update({n: float(np.mean([r[n] for r in rows])) for n in names + ["chance"]})
    table = rows + [mean]
    rep.section("Protocol", __doc__.split("\n\n", 1)[1].strip())
    rep.section("Accuracy (test keypoints classified to the right type)",
                markdown_table(table, ["category", *names, "chance", "split", "types", "train pts", "test pts"]))
    rep.section("C chosen by cross-validation",
                markdown_table([{"category": r["category"], **{n: r[f"C {n}"] for n in names}} for r in rows],
                               floatfmt="{:g}"))
    rep.results.update({"accuracy": {r["category"]: {n: r[n] for n in names} for r in table},
                        "chance": {r["category"]: r["chance"] for r in table}, "splits": kinds,
                        "cv": {n: v for n, v in cv_curves.items()}})

    fig, ax = plt.subplots(figsize=(6, 4))
    for n in names:
        Cs = sorted(cv_curves[n][0])
        ax.plot(Cs, [np.nanmean([d[C] for d in cv_curves[n]]) for C in Cs], "o-", label=n)
    ax.set_xscale("log")
    ax.set_xlabel("C")
    ax.set_ylabel("mean CV accuracy")
    ax.legend(fontsize=7, ncol=2)
    rep.figure(fig, "cv_accuracy.png", "Cross-validated accuracy against the SVM's C (mean over categories).")
    _response_figures(rep, conf, bb, test, cats[0], models, names)
    rep.results["seconds"] = time.perf_counter() - t0
    rep.section("Runtime", f"{time.perf_counter() - t0:.1f} s on this machine.")
    return rep.save()


def _response_figures(rep: Report, conf: dict, bb, test: list, cat: str, models: dict, names: list) -> None:
    """Figure 4: response maps at 1-pixel stride around test keypoints and histograms of their maxima."""
    import matplotlib.pyplot as plt

    W = conf["response_window"]
    rng = np.random.default_rng(conf["seed"])
    insts = [i for i in test if i.category == cat][: conf["n_response_instances"]]
    offsets = {n: [] for n in names}
    example = None
    d = np.arange(-W, W + 1)
    for inst in progress(insts, "response maps"):
        crop, t = crop_instance(inst, conf["margin"], conf["size"])
        pix = PixelConvFeatures(bb, crop, conf["layers"]) if conf["layers"] else None
        vis = np.flatnonzero(inst.visible)
        pick = rng.choice(vis, size=min(conf["n_response_keypoints"], len(vis)), replace=False)
        for j in pick:
            g = np.rint(t.to_crop(inst.keypoints[j][None])[0])
            xs, ys = np.meshgrid(g[0] + d, g[1] + d)
            win = np.stack([xs.ravel(), ys.ravel()], 1)
            maps = {}
            for n in names:
                if n.startswith("SIFT"):
                    F = sift_features_at(crop, win, float(n.split("r")[1]))
                else:
                    F = pix.at(n, np.clip(win, 0, conf["size"] - 1))
                s = class_scores(models[(cat, n)], F, inst.keypoint_names[j]).reshape(2 * W + 1, 2 * W + 1)
                maps[n] = s
                offsets[n].append(response_peak(s, W))
            if example is None:
                example = (crop, g, inst.keypoint_names[j], maps)
    rep.results["response_peak_offsets"] = {n: np.array(v).tolist() for n, v in offsets.items()}
    rep.results["response_peak_mean_distance_px"] = {
        n: float(np.mean(np.linalg.norm(np.array(v), axis=1))) if v else float("nan") for n, v in offsets.items()}
    rep.section("Localisation of classifier responses (Figure 4)",
                markdown_table([{"feature": n, "mean |peak - ground truth| (px)": v}
                                for n, v in rep.results["response_peak_mean_distance_px"].items()], floatfmt="{:.2f}"))
    if example is None:
        return
    crop, g, kname, maps = example
    n = len(names) + 1
    fig, axes = plt.subplots(1, n, figsize=(2.2 * n, 2.4))
    x0, y0 = g - W
    axes[0].imshow(crop[int(max(y0, 0)):int(y0 + 2 * W + 1), int(max(x0, 0)):int(x0 + 2 * W + 1)])
    axes[0].set_title(f"{cat} {kname}", fontsize=7)
    for ax, nm in zip(axes[1:], names):
        ax.imshow(maps[nm], cmap="jet")
        ax.plot(W, W, "w+", ms=8)
        ax.set_title(nm, fontsize=7)
    for ax in axes:
        ax.axis("off")
    rep.figure(fig, "response_maps.png", "Response of the true type's classifier at 1-pixel stride around a test "
               "keypoint (white cross: ground truth).")
    fig, axes = plt.subplots(1, len(names), figsize=(2.2 * len(names), 2.4))
    for ax, nm in zip(np.atleast_1d(axes), names):
        hist, edges = max_offset_histogram(np.array(offsets[nm]), W)
        ax.imshow(hist, extent=[edges[0], edges[-1], edges[-1], edges[0]], cmap="hot")
        ax.set_title(nm, fontsize=7)
        ax.tick_params(labelsize=5)
    rep.figure(fig, "max_histograms.png", "2-D histograms of the response maxima relative to the ground truth "
               "(pixels); a tight central peak means fine localisation.")
