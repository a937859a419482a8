"""Table 4 of the paper: keypoint prediction with conv5 vs dense SIFT, with and without a nearest-neighbour prior.

Method (:mod:`convcorr.methods.prediction`): every instance's box (+ ``margin``, default 0: the box itself) is rescaled to
``input_size x input_size`` (500) px. Features: AlexNet (caffe-q8) conv5 with each column described by its 3 x 3
neighbourhood (2304-d), or dense SIFT (step 8, bin 8, 128-d); column descriptors L2-normalised. (Config:
``features`` lists dense-feature specs, default ``["sift:step=8,bin=8", "alexnet:conv5"]``, and ``neighbourhood``
the side k of the k x k column neighbourhood of each, default ``[1, 3]``.) Per keypoint type
a linear SVM (hinge, balanced class weights, C = the one value of ``Cs``) is trained on the training instances:
positives = the ``n_pos`` columns with rf centres nearest the keypoint, negatives = columns whose receptive field
does not contain it; hard-negative mining starts from ``n_init`` random negatives and adds, for ``mining_rounds``
rounds, the ``n_add`` highest-scoring unused negatives with score > -1 (false positives first), retraining each time.
The prediction is the rf centre of the best-scoring column, mapped back to original pixels. "+ prior": the nearest
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
from dataclasses import dataclass
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
from .options import Option
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
    "input_size": 500, "margin": 0.0, "features": ["sift:step=8,bin=8", "alexnet:conv5"], "neighbourhood": [1, 3],
    "prior_backbone": "alexnet", "prior_layer": "auto", "sigma": 22.0, "eta": 0.1, "positive": "sigmoid",
    "n_pos": 10, "Cs": [1.0], "n_init": 2000, "n_add": 2000, "seed": 0, "n_figure": 4, "n_boot": 1000,
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
OPTIONS = [
    Option("neighbourhood", (list, int), "side k of the k x k column neighbourhood: one odd k per feature, or one "
           "for all", item=int),
    Option("prior_backbone", str, "backbone whose global feature finds the nearest training neighbour (prior)"),
    Option("prior_layer", str, "layer of that global feature (auto: AlexNet pool5, else the backbone's global one)"),
    Option("sigma", float, "prior: Gaussian width in pixels of the input_size frame at each neighbour keypoint"),
    Option("eta", float, "weight of the prior: f = s^(1-eta) p^eta"),
    Option("positive", str, "map of SVM scores to positive values before combining with the prior",
           choices=("sigmoid", "minmax")),
    Option("n_pos", int, "positives per keypoint: the columns with rf centres nearest it"),
    Option("Cs", list, "SVM C (one value: Table 4 trains with a fixed C, no cross-validation)", item=float, length=1),
    Option("n_init", int, "random negatives the hard-negative mining starts from"),
    Option("n_add", int, "highest-scoring unused negatives added per mining round"),
    Option("mining_rounds", int, "hard-negative mining rounds (retraining each time)"),
    Option("n_figure", int, "test instances drawn in the prediction figure"),
]

#: the PCK protocol of this table (recorded in results.json): alpha 0.1 of max(box h, w), mean over keypoint
#: types per category, "mean" = mean over categories; every visible test keypoint counts
TABLE4_PCK = PCKProtocol("paper (Table 4)", "target-bbox", "max", (0.1,), "original", ("type",), "category", False,
                         "Long, Zhang & Darrell, NIPS 2014, Sec. 5 (Table 4)")



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
    """PCK of one category at :data:`TABLE4_PCK`'s alpha, mean over keypoint types in sorted order (the order
    :func:`convcorr.evaluation.pck.pck` averages in; :func:`convcorr.evaluation.pck.evaluate` averages in first-seen order, which can
    differ in the last bit, so the published numbers keep this sum)."""
    P, G, L, T = [], [], [], []
    for pred, inst in zip(preds, insts):
        v = inst.visible[keep]
        P.append(pred[v])
        G.append(inst.keypoints[keep][v])
        L.append(np.full(int(v.sum()), inst.bbox_size))
        T += [n for n, vv in zip(names, v) if vv]
    return pck(np.concatenate(P), np.concatenate(G), np.concatenate(L), TABLE4_PCK.alphas[0],
               types=np.array(T))


def _points(preds: list, insts: list, keep: np.ndarray, names: tuple, category: str) -> dict:
    """Per visible kept test keypoint: correct at :data:`TABLE4_PCK`'s alpha, type "category/name", unit (the test
    photo)."""
    from ..evaluation.pck import correct

    C, T, U = [], [], []
    for pred, inst in zip(preds, insts):
        v = inst.visible[keep]
        C.append(correct(np.asarray(pred)[v], inst.keypoints[keep][v], inst.bbox_size,
                         TABLE4_PCK.alphas[0]))
        T += [f"{category}/{n}" for n, vv in zip(names, v) if vv]
        U += [str(inst.meta.get("photo", inst.meta.get("source_id", inst.id)))] * int(v.sum())
    return {"correct": np.concatenate(C).astype(float), "types": np.array(T), "unit": np.array(U),
            "category": np.array([category] * len(T))}


def _concat(pts: dict, cats: list) -> dict:
    return {k: np.concatenate([pts[c][k] for c in cats]) for k in ("correct", "types", "unit", "category")}


# ------------------------------------------------------------------------------------------------------ results
@dataclass
class Table4Results:
    """What :func:`compute` measured (rendering lives in :func:`render`).

    Attributes:
        conf: the configuration.
        categories: categories with training and test instances; splits: {category: split description}.
        features: the feature specs; methods: "<spec>" and "<spec> + prior" per feature, then "NN prior only".
        types: {category: the kept keypoint type names}.
        pck: {method: {category: PCK@0.1, "mean": mean over categories}} under :data:`TABLE4_PCK`.
        points: {method: {category: {"correct" (N,) 0/1, "types", "unit" (test photo), "category"}}} per kept
            visible test keypoint: what the intervals resample.
        pck_ci: {method: {category or "mean": Estimate}} (95% bootstrap over test photos).
        differences: {(method a, method b): Estimate of the paired difference of the means}.
        counts: {category: test points / instances / photos, train instances / photos}.
        mining: {feature: {category: [{"n_neg", "false_pos"} per round, mean over types]}}.
        n_train, n_test: {category: instances}.
        examples: the predictions figure's panels: [{"instance", "keep" (kept type indices), "predictions"
            {method: (K, 2) original pixels}}] (test instances round-robin over the categories).
        score_maps: the score-map figure's inputs for one keypoint of the first category's first test instance
            (:func:`_score_maps`).
        data: (Markdown, rows) of :func:`convcorr.datasets.embedded.category_report` (embedded data), else None.
        timing: {step: seconds}; seconds, cpu_seconds: wall-clock and CPU totals.
    """

    conf: dict
    categories: list
    splits: dict
    features: list
    methods: list
    types: dict
    pck: dict
    points: dict
    pck_ci: dict
    differences: dict
    counts: dict
    mining: dict
    n_train: dict
    n_test: dict
    examples: list
    score_maps: dict
    data: tuple | None
    timing: dict
    seconds: float
    cpu_seconds: float


# ---------------------------------------------------------------------------------------------------- compute
def compute(conf: dict, out_dir: str | Path | None = None) -> Table4Results:
    """Nearest-neighbour priors, per-type SVMs with hard-negative mining, predictions with and without the prior,
    PCK@0.1 with bootstrap intervals, and the figures' inputs.

    The SVMs run through :func:`convcorr.experiments.workers.run_conf_tasks` (options ``workers``, ``executor``,
    ``ray_address``, ``resume``; with ``resume`` every SVM is kept under ``out_dir/tasks/svms-<config hash>/``).
    Results are the same for every setting."""
    from ..backbones import get_backbone

    t0, c0 = time.perf_counter(), time.process_time()
    feats = feature_list(conf)
    train, test, kinds = split_pool(conf)
    cats = [c for c in dict.fromkeys(i.category for i in train) if any(i.category == c for i in test)]
    if not cats:
        raise ConfigError("table4: no category has both training and test instances")
    pbb = get_backbone(conf["prior_backbone"])
    specs = [f.spec for f, _ in feats]
    methods = [_label(f, p) for f in specs for p in (False, True)] + ["NN prior only"]
    timing: dict = {}
    cat_data, models, tasks, training = {}, {}, [], {}
    for c in cats:
        cat_data[c] = _category_setup(conf, c, train, test, pbb, feats, models, training, tasks, timing)
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
    results, pts, preds, mining = _predict_all(cats, specs, methods, cat_data, models, timing)
    for m in methods:
        results[m]["mean"] = float(np.mean([results[m][c] for c in cats]))
    est, diffs, counts = _intervals(conf, methods, specs, cats, pts, train, test)
    data = None
    if conf.get("dataset", "embedded") == "embedded":
        from ..viz.report import category_report

        data = category_report(cats)
    examples = _prediction_examples(conf, cats, cat_data, preds, specs)
    maps = _score_maps(cat_data[cats[0]], [models[(cats[0], fi)] for fi in range(len(specs))][::-1])
    return Table4Results(dict(conf), cats, kinds, specs, methods, {c: cat_data[c]["names"] for c in cats}, results,
                         pts, est, diffs, counts, mining, {c: sum(i.category == c for i in train) for c in cats},
                         {c: sum(i.category == c for i in test) for c in cats}, examples, maps, data, timing,
                         time.perf_counter() - t0, time.process_time() - c0)


def _category_setup(conf: dict, c: str, train: list, test: list, pbb, feats: list, models: dict, training: dict,
                    tasks: list, timing: dict) -> dict:
    """One category: its nearest-neighbour priors, the predictors of every feature with their grids (added to
    ``models`` {(category, feature index): KeypointPredictor}) and training sets (``training``), and one SVM unit
    per (feature, keypoint type) appended to ``tasks``. Returns {"test", "priors", "keep", "names"}."""
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
    for fi, (fo, k) in enumerate(feats):
        t1 = time.perf_counter()
        model = KeypointPredictor(fo, size=conf["input_size"], margin=conf["margin"], k=k, n_pos=conf["n_pos"],
                                  C=conf["Cs"][0], rounds=conf["mining_rounds"], n_init=conf["n_init"],
                                  n_add=conf["n_add"], sigma=conf["sigma"], eta=conf["eta"],
                                  positive=conf["positive"], seed=conf["seed"])
        model.precompute(tr + te, desc=f"{c}: {fo.spec} grids")
        models[(c, fi)] = model
        training[(c, fi)] = model.training_set(tr, names)
        tasks += [((c, fi), n) for n in names]  # one unit per (category, feature, keypoint type)
        timing[f"{c}: {fo.spec} grids"] = time.perf_counter() - t1
    return {"test": te, "priors": priors, "keep": keep, "names": names}


def _predict_all(cats: list, specs: list, methods: list, cat_data: dict, models: dict, timing: dict):
    """Predictions of every method on every test instance and their scores -> ({method: {category: PCK@0.1}},
    {method: {category: :func:`_points`}}, {method: {category: [predictions]}}, mining summary)."""
    results = {m: {} for m in methods}
    pts = {m: {} for m in methods}
    preds = {m: {} for m in methods}
    mining: dict = {}
    for c in cats:
        te, priors, keep, names = (cat_data[c][k] for k in ("test", "priors", "keep", "names"))
        _score_into(results, pts, preds, "NN prior only", c, priors, te, keep, names)
        for fi, f in enumerate(specs):
            model = models[(c, fi)]
            t1 = time.perf_counter()
            for prior in (False, True):
                pr = [model.predict(i, p if prior else None)
                      for i, p in progress(list(zip(te, priors)), f"{c}: {_label(f, prior)}")]
                _score_into(results, pts, preds, _label(f, prior), c, pr, te, keep, names)
            hist = list(model.history.values())
            n_r = max(len(h) for h in hist)  # types whose mining stopped early keep their last round's numbers
            mining.setdefault(f, {})[c] = [
                {k: float(np.mean([h[min(r, len(h) - 1)][k] for h in hist])) for k in ("n_neg", "false_pos")}
                for r in range(n_r)]
            timing[f"{c}: {f} prediction"] = time.perf_counter() - t1
    return results, pts, preds, mining


def _score_into(results: dict, pts: dict, preds: dict, m: str, c: str, pr: list, te: list, keep, names) -> None:
    results[m][c] = _score(pr, te, keep, names)
    pts[m][c] = _points(pr, te, keep, names, c)
    preds[m][c] = pr


def _prediction_examples(conf: dict, cats: list, cat_data: dict, preds: dict, specs: list) -> list:
    """The predictions figure's panels: ``n_figure`` test instances round-robin over the categories, each with
    the predictions of the "+ prior" methods."""
    picks = []  # (category, test index) round-robin over categories
    for r in range(max(len(cat_data[c]["test"]) for c in cats)):
        picks += [(c, r) for c in cats if r < len(cat_data[c]["test"])]
    picks = picks[: max(1, conf["n_figure"])]
    shown = [_label(f, True) for f in reversed(specs)]
    return [{"instance": cat_data[c]["test"][q], "keep": cat_data[c]["keep"],
             "predictions": {m: preds[m][c][q] for m in shown}} for c, q in picks]


def _score_maps(cd: dict, models: list) -> dict:
    """The score-map figure's inputs: the first visible kept keypoint of the category's first test instance and,
    per predictor (``models``, in the figure's row order), its crop, the column extent in crop pixels, the
    ground truth in crop pixels and the maps s (SVM score), p (prior), f (combination) with their argmax pixels."""
    inst, prior = cd["test"][0], cd["priors"][0]
    j = int(np.argmax([inst.visible[k] for k in cd["keep"]]))
    rows = []
    for model in models:
        grid, geom, t, crop = model.grid(inst)
        _, maps = model.predict(inst, prior, return_maps=True)
        h, w = grid.shape[:2]
        ext = [geom.offset - geom.stride / 2, geom.offset + geom.stride * (w - 0.5),
               geom.offset + geom.stride * (h - 0.5), geom.offset - geom.stride / 2]
        m = {k: maps[k][j] for k in ("s", "p", "f")}
        best = {k: geom.column_to_pixel(np.array(np.unravel_index(np.nanargmax(v), v.shape)[::-1], float))
                for k, v in m.items()}
        rows.append({"feature": model.features.spec, "crop": crop, "extent": ext, "size": model.size,
                     "eta": model.eta, "gt": t.to_crop(inst.keypoints[cd["keep"][j]][None])[0], "maps": m,
                     "best": best})
    return {"instance": inst.id, "keypoint": cd["names"][j], "rows": rows}


def headline_pairs(features: list) -> list[tuple[str, str]]:
    """Paired comparisons of method labels: each feature spec with vs without the prior; every non-SIFT feature
    (conv5) vs the first SIFT feature, without and with the prior."""
    out = [(_label(f, True), _label(f, False)) for f in features]
    sift = [f for f in features if f.startswith("sift")]
    if sift:
        out += [(_label(f, p), _label(sift[0], p)) for f in features if not f.startswith("sift") for p in (False, True)]
    return out


def _intervals(conf: dict, methods: list, specs: list, cats: list, pts: dict, train: list, test: list):
    """({method: {category or "mean": Estimate}}, {(a, b): Estimate of the paired difference}, counts): 95%
    bootstrap intervals over test photos (within categories for the mean)."""
    nb, sd = int(conf.get("n_boot", 1000)), conf["seed"]
    est = {m: {c: bootstrap_ci(pts[m][c]["correct"], pts[m][c]["unit"], type_mean(pts[m][c]["types"]), nb, sd)
               for c in cats} for m in methods}
    allp = {m: _concat(pts[m], cats) for m in methods}
    a0 = allp[methods[0]]
    stat = type_mean(a0["types"], a0["category"])
    for m in methods:
        est[m]["mean"] = bootstrap_ci(allp[m]["correct"], allp[m]["unit"], stat, nb, sd, strata=allp[m]["category"])
    diffs = {(a, b): paired_difference(allp[a]["correct"], allp[b]["correct"], a0["unit"], stat, nb, sd,
                                       strata=a0["category"]) for a, b in headline_pairs(specs)}
    counts = {c: {"test points": int(len(pts[methods[0]][c]["types"])),
                  "test instances": sum(i.category == c for i in test),
                  "test photos": len(set(pts[methods[0]][c]["unit"].tolist())),
                  "train instances": sum(i.category == c for i in train),
                  "train photos": len({i.meta.get("photo", i.meta.get("source_id")) for i in train if i.category == c})}
              for c in cats}
    return est, diffs, counts


# ---------------------------------------------------------------------------------------------------- rendering
@register_experiment("table4")
def main(conf: dict, out_dir: Path) -> Path:
    """:func:`compute`, then :func:`render` into ``out_dir``."""
    return render(compute(conf, out_dir), out_dir)


def render(res: Table4Results, out_dir: Path) -> Path:
    """report.md, results.json, pck.png, predictions.png and score_maps.png of computed results."""
    import matplotlib

    matplotlib.use("Agg")
    cats, conf = res.categories, res.conf
    rep = Report(out_dir, "Table 4: keypoint prediction (PCK@0.1)", conf)
    rep.results["pck_protocol"] = TABLE4_PCK.to_dict()
    rows = [{"method": m, **res.pck[m]} for m in res.methods]
    rep.section("Protocol", PROTOCOL + "\n\nSplits: "
                + "; ".join(f"{c}: {res.splits[c]}, {res.n_train[c]} train / {res.n_test[c]} test instances, "
                            f"{len(res.types[c])} keypoint types" for c in cats))
    if res.data is not None:
        md, rep.results["data"] = res.data
        rep.section("Data (real photos before warping)", md)
    rep.section("PCK@0.1 (mean over keypoint types)", markdown_table(rows, ["method", *cats, "mean"]))
    _render_intervals(rep, res)
    mtxt = "Mean over keypoint types of the negatives used per training round and of the negatives of the whole " \
           "pool scoring > 0 (false positives) after that round:\n\n"
    for f, per_cat in res.mining.items():
        for c, rounds in per_cat.items():
            mtxt += f"- {f}, {c}: " + "; ".join(f"round {r}: {d['n_neg']:.0f} negatives, {d['false_pos']:.1f} FP"
                                                 for r, d in enumerate(rounds)) + "\n"
    rep.section("Hard-negative mining", mtxt)
    rep.results.update({"pck@0.1": res.pck, "splits": res.splits, "mining": res.mining, "n_train": res.n_train,
                        "n_test": res.n_test})
    _predictions_figure(rep, res.examples)
    _score_maps_figure(rep, res.score_maps)
    rep.results.update(seconds=res.seconds, cpu_seconds=res.cpu_seconds, timing=res.timing)
    rep.section("Runtime", f"{res.seconds:.1f} s wall clock, {res.cpu_seconds:.1f} s CPU (all threads) on this "
                "machine (" + ", ".join(f"{k} {v:.1f} s" for k, v in res.timing.items()) + ").")
    return rep.save()


def _render_intervals(rep: Report, res: Table4Results) -> None:
    from ..viz.figures import draw_bars_with_ci

    cats, est, diffs = res.categories, res.pck_ci, res.differences
    nb = int(res.conf.get("n_boot", 1000))
    rows = [{"method": m, **{c: est[m][c].fmt() for c in [*cats, "mean"]}} for m in res.methods]
    rep.section("PCK@0.1 with 95% intervals",
                markdown_table(rows, ["method", *cats, "mean"]) +
                f"\nIntervals: 95% percentile bootstrap ({nb} replicates) resampling the test photos (for the mean, "
                "within each category); with 1-3 test photos per category an interval is degenerate or too narrow: "
                "read it as a lower bound on the uncertainty. What each number rests on:\n\n"
                + markdown_table([{"category": c, **v} for c, v in res.counts.items()]))
    drow = [{"comparison": f"{a} - {b}", "difference (mean over categories)": d.fmt(signed=True),
             "resolved": "no (spans 0)" if d.spans_zero else "yes"} for (a, b), d in diffs.items()]
    rep.section("Paired differences (same test keypoints, photos resampled jointly)",
                markdown_table(drow) + "\n" + "\n".join(f"- {verdict(d, a, b)}" for (a, b), d in diffs.items()))
    draw_bars_with_ci([*cats, "mean"], {m: [est[m][c] for c in [*cats, "mean"]] for m in res.methods},
                      rep.out_dir / "pck.png", "PCK@0.1 (mean over keypoint types)", ylim=(0, 1))
    rep.figures.append("pck.png")
    rep.parts.append("![PCK@0.1](pck.png)\n\nPCK@0.1 per category and method; error bars: 95% bootstrap intervals "
                     "over test photos.\n")
    rep.results.update({
        "pck@0.1_ci": {m: {c: e.to_dict() for c, e in v.items()} for m, v in est.items()}, "counts": res.counts,
        "paired_differences": [{"a": a, "b": b, **d.to_dict(), "resolved": not d.spans_zero}
                               for (a, b), d in diffs.items()]})


def _predictions_figure(rep: Report, examples: list) -> None:
    import matplotlib.pyplot as plt

    from ..viz.figures import padded_view

    rows = list(examples[0]["predictions"])
    fig, axes = plt.subplots(len(rows), len(examples), figsize=(3 * len(examples), 3 * len(rows)), squeeze=False)
    for col, ex in enumerate(examples):
        inst, keep = ex["instance"], ex["keep"]
        img = inst.load()
        gt, v = inst.keypoints[keep], inst.visible[keep]
        for row, m in enumerate(rows):
            ax = axes[row, col]
            pred = ex["predictions"][m]
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


def _score_maps_figure(rep: Report, sm: dict) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(sm["rows"]), 4, figsize=(12, 3 * len(sm["rows"])), squeeze=False)
    for row, r in enumerate(sm["rows"]):
        f, crop, gt, size = r["feature"], r["crop"], r["gt"], r["size"]
        axes[row, 0].imshow(crop)
        axes[row, 0].plot(*gt, "g+", ms=12, mew=2)
        axes[row, 0].set_title(f"{sm['instance']} ({size} px box crop)"[:48], fontsize=8)
        for ax, (title, k) in zip(axes[row, 1:], (("SVM score s", "s"), ("prior p", "p"),
                                                  (f"f = s^(1-eta) p^eta, eta={r['eta']}", "f"))):
            ax.imshow(crop, alpha=0.35)
            ax.imshow(r["maps"][k], cmap="jet", alpha=0.65, extent=r["extent"])
            ax.plot(*gt, "g+", ms=12, mew=2)
            ax.plot(*r["best"][k], "wx", ms=10, mew=2)
            ax.set_xlim(0, size - 1)
            ax.set_ylim(size - 1, 0)
            ax.set_title(f"{f}: {title}", fontsize=8)
        for ax in axes[row]:
            ax.axis("off")
    fig.tight_layout()
    rep.figure(fig, "score_maps.png", f"Keypoint {sm['keypoint']!r} of test instance {sm['instance']}: SVM score "
               "map s, nearest-neighbour prior p and combination f over the columns (green +: ground truth, white "
               "x: argmax).")
