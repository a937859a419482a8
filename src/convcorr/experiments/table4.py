"""Table 4 of the paper: keypoint prediction with conv5 vs dense SIFT, with and without a nearest-neighbour prior.

Method (:mod:`convcorr.methods.prediction`): every instance's box (+ ``margin``, default 0: the box itself) is rescaled to
``size x size`` (500) px. Features: AlexNet (caffe-q8) conv5 with each column described by its 3 x 3
neighbourhood (2304-d), or dense SIFT (step 8, bin 8, 128-d); column descriptors L2-normalised. (Config:
``features`` lists dense-feature specs, default ``["sift:step=8,bin=8", "alexnet:conv5"]``, and ``neighbourhood``
the side k of the k x k column neighbourhood of each, default ``[1, 3]``.) Per keypoint type
a linear SVM (hinge, balanced class weights, ``C``) is trained on the training instances: positives = the
``n_pos`` columns with rf centres nearest the keypoint, negatives = columns whose receptive field does not contain
it; hard-negative mining starts from ``n_init`` random negatives and adds, for ``mining_rounds`` rounds, the
``n_add`` highest-scoring unused negatives with score > -1 (false positives first), retraining each time. The
prediction is the rf centre of the best-scoring column, mapped back to original pixels. "+ prior": the nearest
training neighbour by the global feature (AlexNet pool5 of the 227 x 227 box crop, flattened 9216-d, cosine;
``prior_backbone=efficientnet_lite0``: its 1280-d "pool" feature)
puts a Gaussian (``sigma`` px in the 500 x 500 frame) at each of its keypoints (normalised box coordinates), and
``f = s^(1-eta) p^eta`` with ``s = sigmoid(SVM score)`` (positive, map-independent; see
:func:`convcorr.methods.prediction.to_positive`). "NN prior only" (extra row, not in the paper) is the neighbour's
keypoints themselves. Metric: PCK at alpha = 0.1 of max(box h, w) in original pixels over visible test
keypoints, averaged over keypoint types (``convcorr.evaluation.pck``), per category; "mean" averages the categories. Every
number carries a 95% bootstrap interval resampling the TEST PHOTOS (within categories for the mean) and the
numbers of test keypoints, instances and photos it rests on; "with vs without prior" and "conv5 vs SIFT" are
paired differences on the same keypoints.

Embedded-data protocol: per category, the real photos plus ``n_synthetic`` random warps of each
(``datasets.synthetic_instances``). Categories with >= 3 photos are split by photo (test photos and all their
warps are never seen in training; ``test_fraction`` of the photos); smaller ones by warp (test = the last
``test_warps`` warps of every photo: same animals, new deformations -- much easier, and the nearest neighbour
is then a warp of the same photo, which makes the prior strong). With ``max_types`` a category's keypoint types
are subsampled evenly (e.g. 17 of the 68 face landmarks) to keep the default run short.

Parallel runs (``workers``, ``executor``, ``ray_address``, ``resume``: :mod:`convcorr.experiments.workers`): the
feature grids and global descriptors are computed once per instance in the calling process; the units of work are
the per-(category, feature, keypoint type) SVMs with their hard-negative mining, whose random initial negatives
are seeded by ``seed`` and the type (:func:`convcorr.methods.prediction.type_rng`). Predictions (one matrix product per
test instance) run in the calling process. Each worker holds a copy of the training grids (memory grows with
``workers``). Results are identical for every setting.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..core.errors import ConfigError
from ..datasets import pools
from ..datasets.pools import split_pool
from ..evaluation.pck import PCKProtocol, pck
from ..evaluation.stats import bootstrap_ci, paired_difference, type_mean, verdict
from ..methods.classification import kept_types
from ..methods.prediction import KeypointPredictor, fit_type_task, global_descriptors
from ..methods.transfer import box_copy, retrieve_neighbours
from ..runtime.progress import progress
from ..viz.report import Report, markdown_table
from . import register_experiment
from .workers import run_conf_tasks, unit_key, with_parallel_options

#: the report's Protocol section, written for a reader (Markdown): what is measured, on which data, how it
#: is scored, and what the paper did
PROTOCOL = """\
**What is measured.** How precisely a keypoint can be found in a new image by scanning it with a detector trained
for that keypoint: AlexNet conv5 against dense SIFT, with and without a prior from the most similar training image.

**Features.** Every instance's box (plus a margin, none by default) is rescaled to 500 x 500 pixels. Features are
AlexNet (Caffe reference weights) conv5 columns, each described together with its 3 x 3 neighbourhood (2304
numbers), or dense SIFT (8-pixel steps and bins, 128 numbers); every column descriptor is L2-normalised.

**Detector.** For every keypoint type a linear SVM is trained on the training instances: the positives are the
columns whose receptive-field centres are nearest the keypoint, the negatives columns whose receptive field does not
contain it. Training starts from random negatives and adds, in a few rounds of hard-negative mining, the
highest-scoring unused negatives. The prediction is the receptive-field centre of the best-scoring column, mapped
back to original pixels.

**Prior.** "+ prior" finds the nearest training instance by a global image feature (AlexNet pool5 of the box crop,
cosine similarity; the shared AlexNet copy has no fc7), puts a Gaussian at each of its keypoints (in normalised box
coordinates) and combines it with the detector: f = s^(1 - eta) x p^eta, with s the SVM score mapped to (0, 1) by a
sigmoid and p the prior. "NN prior only", an extra row not in the paper, predicts the neighbour's keypoints
themselves.

**PCK.** A predicted keypoint is correct when it lies within 0.1 x max(box height, box width) of the true position,
in original pixels. PCK counts every visible test keypoint, is averaged over keypoint types within each category,
and "mean" averages the categories. Every number carries a 95% bootstrap interval that resamples test photos (within
categories for the mean); "with vs without prior" and "conv5 vs SIFT" are paired differences on the same keypoints.

**Data.** The embedded data (preset default) are the real annotated photos of each category plus random smooth
warps of each. Categories with at least 3 photos are split by photo (test photos and all their warps are never seen
in training); smaller ones by warp (the test instances are new deformations of training animals, which is much
easier, and the nearest neighbour is then a warp of the same photo, which makes the prior strong). Some categories
keep an evenly spaced subset of their keypoint types to keep the run short. Preset paper reads PASCAL VOC 2011 with
the Berkeley keypoints.

**The paper.** Table 4 of Long, Zhang and Darrell (NIPS 2014): keypoint prediction on PASCAL VOC 2011 with the
Berkeley keypoints, conv5 (3 x 3 neighbourhoods) against SIFT, each with and without the nearest-neighbour prior,
scored by PCK at alpha 0.1 per category.
"""

_COMMON = {
    "size": 500, "margin": 0.0, "features": ["sift:step=8,bin=8", "alexnet:conv5"], "neighbourhood": [1, 3],
    "prior_backbone": "alexnet", "prior_layer": "auto", "sigma": 22.0, "eta": 0.1, "positive": "sigmoid",
    "n_pos": 10, "C": 1.0, "n_init": 2000, "n_add": 2000, "seed": 0, "n_figure": 4, "n_boot": 1000,
}
CONFIGS = {
    "default": {
        "dataset": "embedded", "root": None, "categories": ["face", "person", "hand"], "n_synthetic": 1, "test_warps": 1,
        "test_fraction": 0.34, "max_types": 17, "mining_rounds": 2, **_COMMON,
    },
    "paper": {
        "dataset": "berkeley", "root": None, "categories": None, "n_synthetic": 0, "test_warps": 0,
        "test_fraction": 0.5, "max_types": None, "mining_rounds": 3, **_COMMON,
    },
}
CONFIGS = {k: pools.with_data_options(v) for k, v in CONFIGS.items()}
#: parallel SVM training: ``workers``, ``executor``, ``ray_address``, ``resume`` (convcorr.experiments.workers);
#: results are identical for any setting
CONFIGS = with_parallel_options(CONFIGS)

#: the PCK protocol of this table (recorded in results.json): alpha 0.1 of max(box h, w), mean over keypoint
#: types per category, "mean" = mean over categories; every visible test keypoint counts
TABLE4_PCK = PCKProtocol("paper (Table 4)", "target-bbox", "max", (0.1,), "original", ("type",), "category", False,
                         "Long, Zhang & Darrell, NIPS 2014, Sec. 5 (Table 4)")


#: ``neighbourhood``: one odd k per feature, or one k for all (see :func:`feature_list`)
OPTION_TYPES = {"neighbourhood": (list, int)}


def _label(feature: str, prior: bool) -> str:
    return feature + (" + prior" if prior else "")


def feature_list(conf: dict) -> list[tuple]:
    """[(DenseFeatures, neighbourhood side k)] from ``features`` (spec strings, resolved once) and
    ``neighbourhood`` (one odd k per feature: the paper describes a conv5 column by its 3 x 3 neighbours and uses
    single SIFT descriptors; a single number applies to every feature)."""
    from ..features.base import get_features

    feats = [get_features(f) for f in conf["features"]]
    ks = conf.get("neighbourhood", 3)
    ks = [ks] * len(feats) if np.isscalar(ks) else list(ks)
    if len(ks) != len(feats):
        raise ConfigError(f"table4: 'neighbourhood' needs one k per feature ({len(feats)}), got {ks}")
    return list(zip(feats, (int(k) for k in ks)))


def prior_layer(conf: dict, pbb) -> str | None:
    """Layer of the retrieval descriptor: "auto" = AlexNet pool5 (flattened), else the backbone's global feature
    (EfficientNet-Lite0 "pool")."""
    layer = conf["prior_layer"]
    if layer == "auto":
        return "pool5" if "pool5" in pbb.layer_names else None
    return layer


def _score(preds: list, insts: list, keep: np.ndarray, names: tuple) -> float:
    P, G, L, T = [], [], [], []
    for pred, inst in zip(preds, insts):
        v = inst.visible[keep]
        P.append(pred[v])
        G.append(inst.keypoints[keep][v])
        L.append(np.full(int(v.sum()), inst.bbox_size))
        T += [n for n, vv in zip(names, v) if vv]
    return pck(np.concatenate(P), np.concatenate(G), np.concatenate(L), 0.1, types=np.array(T))


def _points(preds: list, insts: list, keep: np.ndarray, names: tuple, category: str) -> dict:
    """Per visible kept test keypoint: correct at alpha 0.1, type "category/name", unit (the test photo)."""
    from ..evaluation.pck import correct

    C, T, U = [], [], []
    for pred, inst in zip(preds, insts):
        v = inst.visible[keep]
        C.append(correct(np.asarray(pred)[v], inst.keypoints[keep][v], inst.bbox_size, 0.1))
        T += [f"{category}/{n}" for n, vv in zip(names, v) if vv]
        U += [str(inst.meta.get("photo", inst.meta.get("source_id", inst.id)))] * int(v.sum())
    return {"correct": np.concatenate(C).astype(float), "types": np.array(T), "unit": np.array(U),
            "category": np.array([category] * len(T))}


def _concat(pts: dict, cats: list) -> dict:
    return {k: np.concatenate([pts[c][k] for c in cats]) for k in ("correct", "types", "unit", "category")}


@register_experiment("table4")
def main(conf: dict, out_dir: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    from ..backbones import get_backbone

    t0, c0 = time.perf_counter(), time.process_time()
    rep = Report(out_dir, "Table 4: keypoint prediction (PCK@0.1)", conf)
    rep.results["pck_protocol"] = TABLE4_PCK.to_dict()
    feats = feature_list(conf)
    train, test, kinds = split_pool(dict(conf, n_warps=conf["n_synthetic"]))
    cats = [c for c in dict.fromkeys(i.category for i in train) if any(i.category == c for i in test)]
    if not cats:
        raise ConfigError("table4: no category has both training and test instances")
    pbb = get_backbone(conf["prior_backbone"])
    names_f = [f.spec for f, _ in feats]
    methods = [_label(f, p) for f in names_f for p in (False, True)] + ["NN prior only"]
    results = {m: {} for m in methods}
    pts = {m: {} for m in methods}
    mining, examples, timing = {}, {}, {}
    models, training, tasks = {}, {}, []
    for c in cats:
        tr = [i for i in train if i.category == c]
        te = [i for i in test if i.category == c]
        names_all = tr[0].keypoint_names
        keep = kept_types(names_all, conf["max_types"])
        names = tuple(names_all[k] for k in keep)
        t1 = time.perf_counter()
        glob = global_descriptors(pbb, tr + te, prior_layer(conf, pbb), conf["margin"])
        nn = retrieve_neighbours(glob[len(tr):], glob[: len(tr)], 1)[:, 0]
        priors = [box_copy(tr[n], i.bbox)[keep] for i, n in zip(te, nn)]
        timing[f"{c}: prior retrieval"] = time.perf_counter() - t1
        results["NN prior only"][c] = _score(priors, te, keep, names)
        pts["NN prior only"][c] = _points(priors, te, keep, names, c)
        examples[c] = {"test": te, "priors": priors, "keep": keep, "names": names}
        for fi, (fo, k) in enumerate(feats):
            t1 = time.perf_counter()
            model = KeypointPredictor(fo, size=conf["size"], margin=conf["margin"], k=k, n_pos=conf["n_pos"],
                                      C=conf["C"], rounds=conf["mining_rounds"], n_init=conf["n_init"],
                                      n_add=conf["n_add"], sigma=conf["sigma"], eta=conf["eta"],
                                      positive=conf["positive"], seed=conf["seed"])
            model.precompute(tr + te, desc=f"{c}: {fo.spec} grids")
            models[(c, fi)] = model
            training[(c, fi)] = model.training_set(tr, names)
            tasks += [((c, fi), n) for n in names]  # one unit per (category, feature, keypoint type)
            timing[f"{c}: {fo.spec} grids"] = time.perf_counter() - t1
    # the SVMs with hard-negative mining (the expensive part) as independent tasks; every unit needs all training
    # grids of its (category, feature): they are sent once per worker (each worker holds a copy of them)
    t1 = time.perf_counter()
    fitted = run_conf_tasks(fit_type_task, tasks, conf, out_dir, "svms", shared=training,
                            key=lambda t: unit_key("svm", t[0][0], f"f{t[0][1]}", t[1]),
                            desc="keypoint SVMs (mining)")
    timing["SVMs"] = time.perf_counter() - t1
    del training
    for ((c, fi), n), r in zip(tasks, fitted):
        models[(c, fi)].set_fitted({n: r})
    for c in cats:
        te, priors, keep, names = (examples[c][k] for k in ("test", "priors", "keep", "names"))
        for fi, (fo, _) in enumerate(feats):
            f, model = fo.spec, models[(c, fi)]
            t1 = time.perf_counter()
            for prior in (False, True):
                preds = [model.predict(i, p if prior else None)
                         for i, p in progress(list(zip(te, priors)), f"{c}: {_label(f, prior)}")]
                results[_label(f, prior)][c] = _score(preds, te, keep, names)
                pts[_label(f, prior)][c] = _points(preds, te, keep, names, c)
                examples[c][_label(f, prior)] = preds
            hist = list(model.history.values())
            n_r = max(len(h) for h in hist)  # types whose mining stopped early keep their last round's numbers
            mining.setdefault(f, {})[c] = [
                {k: float(np.mean([h[min(r, len(h) - 1)][k] for h in hist])) for k in ("n_neg", "false_pos")}
                for r in range(n_r)]
            examples[c][f"model:{f}"] = model
            timing[f"{c}: {f} prediction"] = time.perf_counter() - t1
    for m in methods:
        results[m]["mean"] = float(np.mean([results[m][c] for c in cats]))
    rows = [{"method": m, **results[m]} for m in methods]

    rep.section("Protocol", PROTOCOL + "\n\nSplits: "
                + "; ".join(f"{c}: {kinds[c]}, {sum(i.category == c for i in train)} train / "
                            f"{sum(i.category == c for i in test)} test instances, "
                            f"{len(examples[c]['names'])} keypoint types" for c in cats))
    if conf.get("dataset", "embedded") == "embedded":
        from ..viz.report import category_report

        md, rep.results["data"] = category_report(cats)
        rep.section("Data (real photos before warping)", md)
    rep.section("PCK@0.1 (mean over keypoint types)", markdown_table(rows, ["method", *cats, "mean"]))
    _intervals(rep, conf, methods, cats, pts, train, test)
    mtxt = "Mean over keypoint types of the negatives used per training round and of the negatives of the whole " \
           "pool scoring > 0 (false positives) after that round:\n\n"
    for f, per_cat in mining.items():
        for c, rounds in per_cat.items():
            mtxt += f"- {f}, {c}: " + "; ".join(f"round {r}: {d['n_neg']:.0f} negatives, {d['false_pos']:.1f} FP"
                                                 for r, d in enumerate(rounds)) + "\n"
    rep.section("Hard-negative mining", mtxt)
    rep.results.update({"pck@0.1": results, "splits": kinds, "mining": mining,
                        "n_train": {c: sum(i.category == c for i in train) for c in cats},
                        "n_test": {c: sum(i.category == c for i in test) for c in cats}})
    _figures(rep, examples, conf, cats)
    total = time.perf_counter() - t0
    cpu = time.process_time() - c0
    rep.results.update(seconds=total, cpu_seconds=cpu, timing=timing)
    rep.section("Runtime", f"{total:.1f} s wall clock, {cpu:.1f} s CPU (all threads) on this machine ("
                + ", ".join(f"{k} {v:.1f} s" for k, v in timing.items()) + ").")
    return rep.save()


def headline_pairs(features: list) -> list[tuple[str, str]]:
    """Paired comparisons of method labels: each feature spec with vs without the prior; every non-SIFT feature
    (conv5) vs the first SIFT feature, without and with the prior."""
    out = [(_label(f, True), _label(f, False)) for f in features]
    sift = [f for f in features if f.startswith("sift")]
    if sift:
        out += [(_label(f, p), _label(sift[0], p)) for f in features if not f.startswith("sift") for p in (False, True)]
    return out


def _intervals(rep: Report, conf: dict, methods: list, cats: list, pts: dict, train: list, test: list) -> None:
    from ..viz.figures import draw_bars_with_ci

    nb, sd = int(conf.get("n_boot", 1000)), conf["seed"]
    est = {m: {c: bootstrap_ci(pts[m][c]["correct"], pts[m][c]["unit"], type_mean(pts[m][c]["types"]), nb, sd)
               for c in cats} for m in methods}
    allp = {m: _concat(pts[m], cats) for m in methods}
    a0 = allp[methods[0]]
    stat = type_mean(a0["types"], a0["category"])
    for m in methods:
        est[m]["mean"] = bootstrap_ci(allp[m]["correct"], allp[m]["unit"], stat, nb, sd, strata=allp[m]["category"])
    diffs = {(a, b): paired_difference(allp[a]["correct"], allp[b]["correct"], a0["unit"], stat, nb, sd,
                                       strata=a0["category"]) for a, b in headline_pairs([f.spec for f, _ in feature_list(conf)])}
    counts = {c: {"test points": int(len(pts[methods[0]][c]["types"])),
                  "test instances": sum(i.category == c for i in test),
                  "test photos": len(set(pts[methods[0]][c]["unit"].tolist())),
                  "train instances": sum(i.category == c for i in train),
                  "train photos": len({i.meta.get("photo", i.meta.get("source_id")) for i in train if i.category == c})}
              for c in cats}
    rows = [{"method": m, **{c: est[m][c].fmt() for c in [*cats, "mean"]}} for m in methods]
    rep.section("PCK@0.1 with 95% intervals",
                markdown_table(rows, ["method", *cats, "mean"]) +
                f"\nIntervals: 95% percentile bootstrap ({nb} replicates) resampling the test photos (for the mean, "
                "within each category); with 1-3 test photos per category an interval is degenerate or too narrow: "
                "read it as a lower bound on the uncertainty. What each number rests on:\n\n"
                + markdown_table([{"category": c, **v} for c, v in counts.items()]))
    drow = [{"comparison": f"{a} - {b}", "difference (mean over categories)": d.fmt(signed=True),
             "resolved": "no (spans 0)" if d.spans_zero else "yes"} for (a, b), d in diffs.items()]
    rep.section("Paired differences (same test keypoints, photos resampled jointly)",
                markdown_table(drow) + "\n" + "\n".join(f"- {verdict(d, a, b)}" for (a, b), d in diffs.items()))
    draw_bars_with_ci([*cats, "mean"], {m: [est[m][c] for c in [*cats, "mean"]] for m in methods},
                      rep.out_dir / "pck.png", "PCK@0.1 (mean over keypoint types)", ylim=(0, 1))
    rep.figures.append("pck.png")
    rep.parts.append("![PCK@0.1](pck.png)\n\nPCK@0.1 per category and method; error bars: 95% bootstrap intervals "
                     "over test photos.\n")
    rep.results.update({
        "pck@0.1_ci": {m: {c: e.to_dict() for c, e in v.items()} for m, v in est.items()}, "counts": counts,
        "paired_differences": [{"a": a, "b": b, **d.to_dict(), "resolved": not d.spans_zero}
                               for (a, b), d in diffs.items()]})


def _figures(rep: Report, examples: dict, conf: dict, cats: list) -> None:
    import matplotlib.pyplot as plt

    from ..viz.figures import padded_view

    feats = [f.spec for f, _ in feature_list(conf)]
    picks = []  # (category, test index) round-robin over categories
    for r in range(max(len(examples[c]["test"]) for c in cats)):
        picks += [(c, r) for c in cats if r < len(examples[c]["test"])]
    picks = picks[: max(1, conf["n_figure"])]
    rows = [_label(f, True) for f in reversed(feats)]
    fig, axes = plt.subplots(len(rows), len(picks), figsize=(3 * len(picks), 3 * len(rows)), squeeze=False)
    for col, (c, q) in enumerate(picks):
        ex = examples[c]
        inst, keep = ex["test"][q], ex["keep"]
        img = inst.load()
        gt, v = inst.keypoints[keep], inst.visible[keep]
        for row, m in enumerate(rows):
            ax = axes[row, col]
            pred = ex[m][q]
            ax.imshow(img)
            for a, b in zip(gt[v], pred[v]):
                ax.plot([a[0], b[0]], [a[1], b[1]], "y-", lw=0.7)
            ax.plot(gt[v, 0], gt[v, 1], "g.", ms=6, label="ground truth")
            ax.plot(pred[v, 0], pred[v, 1], "rx", ms=5, label=m)
            x0, y0, x1, y1 = inst.bbox
            ax.plot([x0, x1, x1, x0, x0], [y0, y0, y1, y1, y0], "c-", lw=0.6)
            vx0, vy0, vx1, vy1 = padded_view(inst.bbox)  # the whole box, zoomed so the points are visible
            ax.set_xlim(vx0, vx1)
            ax.set_ylim(vy1, vy0)
            name = inst.id.split("/")[-1]
            ax.set_title(f"{m}\n{name if len(name) <= 40 else name[:39] + '…'}", fontsize=7)
            ax.axis("off")
            if col == 0:  # one legend per row (method), below the row's first panel
                ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(0, 0.0), frameon=False, ncol=1)
    fig.tight_layout(h_pad=2.5)
    rep.figure(fig, "predictions.png", "Test instances: ground truth (green) vs predictions (red, yellow lines "
               "join each pair) of " + " and ".join(rows) + "; cyan: the box.")

    c = cats[0]
    ex = examples[c]
    inst, prior = ex["test"][0], ex["priors"][0]
    j = int(np.argmax([inst.visible[k] for k in ex["keep"]]))
    fig, axes = plt.subplots(len(feats), 4, figsize=(12, 3 * len(feats)), squeeze=False)
    for row, f in enumerate(reversed(feats)):
        model = ex[f"model:{f}"]
        grid, geom, t, crop = model.grid(inst)
        pred, maps = model.predict(inst, prior, return_maps=True)
        h, w = grid.shape[:2]
        ext = [geom.offset - geom.stride / 2, geom.offset + geom.stride * (w - 0.5),
               geom.offset + geom.stride * (h - 0.5), geom.offset - geom.stride / 2]
        gt = t.to_crop(inst.keypoints[ex["keep"][j]][None])[0]
        axes[row, 0].imshow(crop)
        axes[row, 0].plot(*gt, "g+", ms=12, mew=2)
        axes[row, 0].set_title(f"{inst.id} ({model.size} px box crop)"[:48], fontsize=8)
        for ax, (title, m) in zip(axes[row, 1:], (("SVM score s", maps["s"][j]), ("prior p", maps["p"][j]),
                                                  (f"f = s^(1-eta) p^eta, eta={model.eta}", maps["f"][j]))):
            ax.imshow(crop, alpha=0.35)
            ax.imshow(m, cmap="jet", alpha=0.65, extent=ext)
            best = geom.column_to_pixel(np.array(np.unravel_index(np.nanargmax(m), m.shape)[::-1], float))
            ax.plot(*gt, "g+", ms=12, mew=2)
            ax.plot(*best, "wx", ms=10, mew=2)
            ax.set_xlim(0, model.size - 1)
            ax.set_ylim(model.size - 1, 0)
            ax.set_title(f"{f}: {title}", fontsize=8)
        for ax in axes[row]:
            ax.axis("off")
    fig.tight_layout()
    rep.figure(fig, "score_maps.png", f"Keypoint {ex['names'][j]!r} of test instance {inst.id}: SVM score map s, "
               f"nearest-neighbour prior p and combination f over the columns (green +: ground truth, white x: "
               f"argmax).")
