"""Table 3 and Figure 4 of the paper: keypoint classification with SIFT at several radii vs conv layers.

Every visible keypoint of every instance gives one example. The instance's box, enlarged by ``margin`` (a
fraction of the box width/height on every side), is cropped and resized to ``size`` x ``size`` px (227, the
AlexNet input; :func:`convcorr.features.crop_box`, exact point maps). Features at the keypoint (in crop pixels):
the SIFT descriptor of radius r (bin size r / 2, centred exactly at the keypoint) or the feature of the
conv-layer column whose rf centre is nearest the keypoint. One-vs-all linear SVMs (``LinearSVC`` on
L2-normalised features) predict the keypoint TYPE; C is chosen from ``Cs`` by ``folds``-fold cross-validation on
the training keypoints, grouped like the test split (``GroupKFold``): by source photo for categories split by
photo (no photo, nor any warp of it, on both sides of a fold), by instance for categories split by warp.
Reported: test accuracy per category and feature; chance = 1 / number of types.

Figure 4: for ``n_response`` test keypoints per category (from ``n_response_instances`` test instances), the
classifier of the TRUE type is evaluated at every pixel (1-pixel stride) of a (2w+1)^2 window around the
ground truth (w = ``response_window`` crop px). SIFT is simply computed at every pixel; conv features at
1-pixel stride are computed EXACTLY by shifting the crop by every offset within one stride and re-running the
network (:class:`convcorr.features.PixelConvFeatures`; no interpolation). The 2-D histogram of the offsets of
the response maxima from the ground truth shows how finely each feature localises.

Embedded-data protocol (``dataset="embedded"``): per category, the real annotated photos plus ``n_synthetic``
random warps of each (``datasets.synthetic_instances``). Categories with at least 3 photos are split BY PHOTO
(``test_fraction`` of the photos, with all their warps, are test; never seen in training); smaller categories
are split BY WARP (test = the last ``test_warps`` warps of every photo: the same animals under new
deformations, which is easier), marked in the table. With ``max_types`` a category's keypoint types are
subsampled evenly (the default keeps 17 of the 68 face landmarks, every 4th, to keep the run short; the
animal categories have <= 22 types and are kept whole). ``dataset="berkeley"`` (preset "paper") reads the
Berkeley PASCAL keypoints (needs ``root``: the VOC2011 folder with JPEGImages/ and annotations/); instances are
split by instance with ``test_fraction`` = 0.5.
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..classification import (DEFAULT_CS, accuracy, keypoint_dataset, max_offset_histogram, response_map,
                              response_peak, select_C, train_ova)
from .. import protocols
from ..features import array_digest, cached, crop_box, features_at_pixels, features_at_points
from ..report import Report, markdown_table, progress

_COMMON = {
    "radii": [10, 20, 40, 80, 160], "layers": ["conv1", "conv2", "conv3", "conv4", "conv5"],
    "backbone": "alexnet", "size": 227, "margin": 0.1, "Cs": list(DEFAULT_CS), "folds": 5, "seed": 0,
    "response_window": 16, "n_jobs": 2, "cache": False,
}
CONFIGS = {
    "default": {
        "dataset": "embedded", "root": None, "categories": ["face", "horse10", "animalpose"], "n_synthetic": 4,
        "test_warps": 1, "test_fraction": 0.34, "max_types": 17, "n_response": 16, "n_response_instances": 1,
        **_COMMON,
    },
    "paper": {
        "dataset": "berkeley", "root": None, "categories": None, "n_synthetic": 0, "test_warps": 0,
        "test_fraction": 0.5, "max_types": None, "n_response": 50, "n_response_instances": 25, **_COMMON,
    },
}
CONFIGS = {k: protocols.with_data_options(v) for k, v in CONFIGS.items()}


def feature_names(conf: dict) -> list[str]:
    """Column names: ``SIFT r<radius>`` for every radius, then the conv layer names."""
    return list(feature_specs(conf))


def feature_specs(conf: dict) -> dict[str, str]:
    """{column name: dense-feature spec}: ``SIFT r<r>`` -> ``sift:radius=<r>`` (bin = r / 2, described exactly at
    the keypoint), conv layer ``l`` -> ``<backbone>:<l>`` (the nearest column)."""
    out = {f"SIFT r{r:g}": f"sift:radius={r:g}" for r in conf["radii"]}
    out.update({l: f"{conf['backbone']}:{l}" for l in conf["layers"]})
    return out


def feature_objects(conf: dict) -> dict:
    """{column name: DenseFeatures}, resolved once (:func:`convcorr.dense.get_features`)."""
    from ..dense import get_features

    return {n: get_features(s) for n, s in feature_specs(conf).items()}


def split_pool(conf: dict) -> tuple[list, list, dict]:
    """(train, test, {category: split description}): :func:`convcorr.protocols.split_pool` (shared with Table 4)."""
    return protocols.split_pool(conf)


def kept_types(names, max_types: int | None) -> np.ndarray:
    """Indices of an even subsample of at most ``max_types`` keypoint types (all when None)."""
    if not max_types or len(names) <= max_types:
        return np.arange(len(names))
    return np.unique(np.linspace(0, len(names) - 1, max_types).round().astype(int))


def restrict_types(insts: list, max_types: int | None) -> list:
    """Instances whose keypoints outside :func:`kept_types` are marked invisible (so they yield no examples)."""
    out = []
    for i in insts:
        keep = np.zeros(len(i.keypoint_names), bool)
        keep[kept_types(i.keypoint_names, max_types)] = True
        out.append(replace(i, visible=np.asarray(i.visible, bool) & keep))
    return out


def _visible(inst) -> np.ndarray:
    return np.asarray(inst.visible, dtype=bool) & np.all(np.isfinite(inst.keypoints), axis=1)


def instance_features(inst, conf: dict, feats: dict) -> dict[str, np.ndarray]:
    """{feature name: (V, D)} at the instance's visible keypoints (crop pixels), optionally cached on disk.

    ``feats``: {name: DenseFeatures} (:func:`feature_objects`)."""
    crop, to_crop, _ = crop_box(inst, conf["margin"], conf["size"])
    pts = to_crop(inst.keypoints[_visible(inst)])
    digest = array_digest(crop, pts)
    key = f"{inst.category}/{inst.id}"
    computed: dict = {}

    def get(n):  # every feature in one go (one forward pass per backbone), only when something is not cached
        if not computed:
            computed.update(features_at_points(feats, crop, pts))
        return computed[n]

    return {n: cached(key, f"{f.cache_key}-s{conf['size']}", lambda n=n: get(n), digest, enabled=conf["cache"])
            for n, f in feats.items()}


def _datasets(insts: list, conf: dict, fobjs: dict, desc: str, group_by: str = "source"
              ) -> tuple[dict, np.ndarray, np.ndarray]:
    """({feature name: X (N, D)}, y (N,), groups (N,)) over the instances' visible keypoints."""
    feats = {i.id: instance_features(i, conf, fobjs) for i in progress(insts, desc)}
    out, y, g = {}, None, None
    for n in feature_names(conf):
        out[n], y, g = keypoint_dataset(insts, lambda i, n=n: feats[i.id][n], group_by)
    return out, y, g


def main(conf: dict, out_dir: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")

    t0 = time.perf_counter()
    rep = Report(out_dir, "Table 3: keypoint classification accuracy (SIFT radii vs conv layers)", conf)
    names = feature_names(conf)
    if not names:
        raise ValueError("table3: no features (both 'radii' and 'layers' are empty)")
    train, test, kinds = split_pool(conf)
    train, test = restrict_types(train, conf["max_types"]), restrict_types(test, conf["max_types"])
    cats = [c for c in dict.fromkeys(i.category for i in train) if any(i.category == c for i in test)]
    if not cats:
        raise ValueError("table3: no category has both training and test instances")
    fobjs = feature_objects(conf)
    rows, cv, models, timing = [], {}, {}, {}
    for c in cats:
        t1 = time.perf_counter()
        tr = [i for i in train if i.category == c]
        te = [i for i in test if i.category == c]
        # CV folds mirror the test split: grouped by photo for photo splits, by instance (warp) for warp splits
        group_by = "source" if kinds[c].startswith("by photo") else "instance"
        Ftr, ytr, gtr = _datasets(tr, conf, fobjs, f"{c}: train features", group_by)
        Fte, yte, _ = _datasets(te, conf, fobjs, f"{c}: test features")
        timing[f"{c}: features"] = time.perf_counter() - t1
        t1 = time.perf_counter()
        row = {"category": c, "split": kinds[c], "types": len(np.unique(ytr)), "train pts": len(ytr),
               "test pts": len(yte), "chance": 1.0 / len(np.unique(ytr))}
        for n in progress(names, f"{c}: SVMs (CV over C)"):
            bestC, scores = select_C(Ftr[n], ytr, conf["Cs"], conf["folds"], gtr, n_jobs=conf["n_jobs"])
            models[(c, n)] = train_ova(Ftr[n], ytr, bestC)
            row[n] = accuracy(models[(c, n)], Fte[n], yte)
            row[f"C {n}"] = bestC
            cv.setdefault(c, {})[n] = scores
        timing[f"{c}: SVMs"] = time.perf_counter() - t1
        rows.append(row)
    def mean_row(label: str, rs: list) -> dict:
        m = {"category": label, "split": "", "types": "", "train pts": sum(r["train pts"] for r in rs),
             "test pts": sum(r["test pts"] for r in rs)}
        m.update({n: float(np.mean([r[n] for r in rs])) for n in names + ["chance"]})
        return m

    table = rows + [mean_row("mean", rows)]
    by_photo = [r for r in rows if r["split"].startswith("by photo")]
    if 0 < len(by_photo) < len(rows):  # the harder, cross-instance protocol on its own
        table.append(mean_row("mean (photo splits)", by_photo))

    rep.section("Protocol", __doc__.split("\n\n", 1)[1].strip())
    shown = [{k: (f"**{v:.3f}**" if k in names and v == max(r[n] for n in names) else v) for k, v in r.items()}
             for r in table]
    rep.section("Accuracy (fraction of test keypoints classified to the right type; best per row in bold)",
                markdown_table(shown, ["category", *names, "chance", "split", "types", "train pts", "test pts"]))
    rep.section("C chosen by cross-validation",
                markdown_table([{"category": r["category"], **{n: r[f"C {n}"] for n in names}} for r in rows],
                               floatfmt="{:g}"))
    rep.results.update({"accuracy": {r["category"]: {n: r[n] for n in names} for r in table},
                        "chance": {r["category"]: r["chance"] for r in table}, "splits": kinds,
                        "chosen_C": {r["category"]: {n: r[f"C {n}"] for n in names} for r in rows},
                        "cv_accuracy": cv,
                        "n_points": {r["category"]: {"train": r["train pts"], "test": r["test pts"]} for r in rows}})
    _cv_figure(rep, cv, names, cats, solid={f"SIFT r{r:g}" for r in conf["radii"]})
    t1 = time.perf_counter()
    _response_figures(rep, conf, fobjs, test, cats, models, names)
    timing["response maps"] = time.perf_counter() - t1
    total = time.perf_counter() - t0
    rep.results["seconds"] = total
    rep.results["timing"] = timing
    rep.section("Runtime", f"{total:.1f} s in total on this machine.\n\n"
                + markdown_table([{"step": k, "seconds": v} for k, v in timing.items()], floatfmt="{:.1f}"))
    return rep.save()


def _cv_figure(rep: Report, cv: dict, names: list, cats: list, solid: set = frozenset()) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(cats), figsize=(4.2 * len(cats), 3.4), squeeze=False, layout="constrained")
    for ax, c in zip(axes[0], cats):
        for n in names:
            Cs = sorted(cv[c][n])
            ax.plot(Cs, [cv[c][n][C] for C in Cs], "o-" if n in solid else "s--", ms=3, label=n)
        ax.set_xscale("log")
        ax.set_xlabel("C")
        ax.set_ylabel("CV accuracy")
        ax.set_title(c, fontsize=9)
    axes[0, -1].legend(fontsize=6, ncol=2)
    rep.figure(fig, "cv_accuracy.png", "Cross-validated accuracy (grouped folds on the training keypoints) "
               "against the SVM's C, per category and feature.")


def _pick(test: list, cat: str, conf: dict, rng: np.random.Generator) -> list[tuple]:
    """[(instance, [keypoint indices])]: ``n_response`` visible keypoints spread over a few test instances."""
    insts = [i for i in test if i.category == cat]
    n_inst = max(1, min(int(conf["n_response_instances"]), len(insts)))
    insts = [insts[k] for k in sorted(rng.choice(len(insts), n_inst, replace=False))]
    per = np.full(n_inst, int(conf["n_response"]) // n_inst)
    per[: int(conf["n_response"]) % n_inst] += 1
    out = []
    for inst, k in zip(insts, per):
        vis = np.flatnonzero(_visible(inst))
        if k > 0 and len(vis):
            out.append((inst, sorted(rng.choice(vis, size=min(int(k), len(vis)), replace=False))))
    return out


def _response_figures(rep: Report, conf: dict, fobjs: dict, test: list, cats: list, models: dict,
                      names: list) -> None:
    """Figure 4: response maps at 1-pixel stride around test keypoints and histograms of their maxima."""
    import matplotlib.pyplot as plt

    W, S = int(conf["response_window"]), int(conf["size"])
    rng = np.random.default_rng(conf["seed"])
    d = np.arange(-W, W + 1)
    offsets = {n: [] for n in names}
    per_cat = {c: {n: [] for n in names} for c in cats}
    example = None
    jobs = [(c, inst, kps) for c in cats for inst, kps in _pick(test, c, conf, rng)] if conf["n_response"] else []
    for c, inst, kps in progress(jobs, "response maps (1-px stride)"):
        crop, to_crop, _ = crop_box(inst, conf["margin"], S)
        centres = np.rint(to_crop(inst.keypoints[kps])).astype(int)
        wins = [np.stack(np.meshgrid(g[0] + d, g[1] + d), -1) for g in centres]  # (2W+1, 2W+1, 2) each
        allw = np.concatenate([w.reshape(-1, 2) for w in wins])
        inside = np.all((allw >= 0) & (allw < S), axis=1).reshape(len(kps), 2 * W + 1, 2 * W + 1)
        F = features_at_pixels(fobjs, crop, allw)
        grids = {n: F[n].reshape(len(kps), 2 * W + 1, 2 * W + 1, -1) for n in names}
        for j, k in enumerate(kps):
            label = inst.keypoint_names[k]
            maps = {}
            for n in names:
                s = response_map(models[(c, n)], label, grids[n][j])
                s = np.where(inside[j], s, -np.inf)  # pixels outside the crop cannot be the maximum
                maps[n] = s
                off = response_peak(s, W)
                offsets[n].append(off)
                per_cat[c][n].append(off)
            if example is None and inside[j].all():
                example = (crop, centres[j], c, label, maps)
    if not any(offsets.values()) or not offsets[names[0]]:
        return
    rep.results["response_peak_offsets"] = {n: np.array(v).tolist() for n, v in offsets.items()}
    stats = []
    for n in names:
        o = np.array(offsets[n], dtype=float).reshape(-1, 2)
        dist = np.linalg.norm(o, axis=1)
        stats.append({"feature": n, "keypoints": len(o), "mean |offset| (px)": float(dist.mean()),
                      "median |offset| (px)": float(np.median(dist)), "within 2 px": float(np.mean(dist <= 2)),
                      "within 5 px": float(np.mean(dist <= 5))})
    rep.results["response_peak_stats"] = {s["feature"]: {k: v for k, v in s.items() if k != "feature"}
                                          for s in stats}
    rep.results["response_peak_mean_distance_px"] = {s["feature"]: s["mean |offset| (px)"] for s in stats}
    rep.results["response_peak_mean_distance_px_per_category"] = {
        c: {n: float(np.mean(np.linalg.norm(np.array(v, float).reshape(-1, 2), axis=1))) if v else float("nan")
            for n, v in d_.items()} for c, d_ in per_cat.items()}
    rep.section("Localisation of classifier responses (Figure 4)",
                f"Window +-{W} crop px around each ground-truth keypoint, 1-pixel stride; offsets of the maximum "
                f"of the true type's classifier from the ground truth (pooled over categories).\n\n"
                + markdown_table(stats, floatfmt="{:.2f}"))
    if example is not None:
        crop, g, c, label, maps = example
        n = len(names) + 1
        fig, axes = plt.subplots(1, n, figsize=(2.0 * n, 2.3))
        x0, y0 = g - W
        axes[0].imshow(crop[y0:y0 + 2 * W + 1, x0:x0 + 2 * W + 1])
        axes[0].plot(W, W, "r+", ms=10)
        axes[0].set_title(f"{c}: {label}", fontsize=7)
        for ax, nm in zip(axes[1:], names):
            ax.imshow(maps[nm], cmap="jet")
            ax.plot(W, W, "w+", ms=10)
            pk = response_peak(maps[nm], W) + W
            ax.plot(pk[0], pk[1], "kx", ms=6)
            ax.set_title(nm, fontsize=7)
        for ax in axes:
            ax.axis("off")
        rep.figure(fig, "response_maps.png", "Response of the true type's classifier at 1-pixel stride around a "
                   "test keypoint (left: the crop window; white +: ground truth; black x: maximum).")
    fig, axes = plt.subplots(1, len(names), figsize=(2.0 * len(names), 2.3), squeeze=False)
    for ax, nm in zip(axes[0], names):
        hist, edges = max_offset_histogram(np.array(offsets[nm]), W)
        ax.imshow(hist, extent=[edges[0], edges[-1], edges[-1], edges[0]], cmap="hot", interpolation="nearest")
        ax.axhline(0, color="c", lw=0.3)
        ax.axvline(0, color="c", lw=0.3)
        ax.set_title(nm, fontsize=7)
        ax.tick_params(labelsize=5)
    rep.figure(fig, "max_histograms.png", "2-D histograms of the response maxima relative to the ground truth "
               "(crop pixels, dx right, dy down); a tight central peak means fine localisation (Figure 4).")
