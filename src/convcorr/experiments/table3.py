"""Table 3 and Figure 4 of the paper: keypoint classification with SIFT at several radii vs conv layers.

Every visible keypoint of every instance gives one example. The instance's box, enlarged by ``margin`` (a
fraction of the box width/height on every side), is cropped and resized to ``input_size`` x ``input_size`` px
(227, the AlexNet input; :func:`convcorr.core.crops.crop_instance`, exact point maps). Features at the keypoint
(in crop pixels):
the SIFT descriptor of radius r (bin size r / 2, centred exactly at the keypoint) or the feature of the
conv-layer column whose rf centre is nearest the keypoint. One-vs-all linear SVMs (``LinearSVC`` on
L2-normalised features) predict the keypoint TYPE; C is chosen from ``Cs`` by ``folds``-fold cross-validation on
the training keypoints, grouped like the test split (``GroupKFold``): by source photo for categories split by
photo (no photo, nor any warp of it, on both sides of a fold), by instance for categories split by warp.
Reported: test accuracy per category and feature with a 95% bootstrap interval resampling the test PHOTOS (a
photo's warps and keypoints move together), the numbers of test keypoints, instances and photos it rests on,
and paired differences conv4 - SIFT (each radius) on the same test keypoints; chance = 1 / number of types.

Figure 4: for ``n_response`` test keypoints per category (from ``n_response_instances`` test instances, spread
evenly over the keypoint types), the classifier of the TRUE type is evaluated at every pixel (1-pixel stride) of
a (2w+1)^2 window around the ground truth (w = ``response_window`` crop px; 10 gives the paper's 21 x 21 px
window). Maxima ON the window boundary (the response is still rising outside the window) are excluded from the
histograms and counted, as in the paper. SIFT is simply computed at every pixel; conv features at
1-pixel stride are computed EXACTLY by shifting the crop by every offset within one stride and re-running the
network (:class:`convcorr.features.sampling.PixelConvFeatures`; no interpolation). The 2-D histogram of the offsets of
the response maxima from the ground truth shows how finely each feature localises.

Embedded-data protocol (``dataset="embedded"``): per category, the real annotated photos plus ``n_synthetic``
random warps of each (``datasets.synthetic_instances``). Categories with at least 3 photos are split BY PHOTO
(``test_fraction`` of the photos, with all their warps, are test; never seen in training); smaller categories
are split BY WARP (test = the last ``test_warps`` warps of every photo: the same animals under new
deformations, which is easier), marked in the table. With ``max_types`` a category's keypoint types are
subsampled evenly (the default keeps 17 of the 68 face landmarks, every 4th, and 17 of the 21 hand points, to
keep the run short; the 17 COCO person keypoints are kept whole). ``dataset="berkeley"`` (preset "paper") reads the
Berkeley PASCAL keypoints (needs ``root``: the VOC2011 folder with JPEGImages/ and annotations/); instances are
split by instance with ``test_fraction`` = 0.5.

Parallel runs (``workers``, ``executor``, ``ray_address``, ``resume``: :mod:`convcorr.experiments.workers`): the
keypoint features are extracted once per instance in the calling process; the units of work are the
(category, feature) SVMs (each with its cross-validation over C) and the Figure-4 response-map jobs (one per
(category, test instance): its 1-pixel-stride window features and the maps of the true types' classifiers).
Results are identical for every setting.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.arrays import l2_normalize
from ..core.crops import crop_instance
from ..core.errors import ConfigError
from ..datasets import pools
from ..evaluation.stats import bootstrap_ci, paired_difference, type_mean, verdict
from ..features.cache import array_digest, cached
from ..features.sampling import features_at_pixels, features_at_points
from ..methods.classification import (DEFAULT_CS, keypoint_dataset, response_map, response_peak, restrict_types,
                                      select_C, train_ova)
from ..runtime.progress import progress
from ..viz.report import Report, markdown_table
from . import register_experiment
from .options import Option
from .workers import run_conf_tasks, unit_key, with_parallel_options

#: the report's Protocol section, written for a reader (Markdown): what is measured, on which data, how it
#: is scored, and what the paper did
PROTOCOL = """\
**What is measured.** How well the feature at a keypoint tells which keypoint it is (left eye, nose, right
wrist, ...): SIFT descriptors at several radii against the columns of each conv layer. Figure 4 then asks how
finely each feature localises a keypoint.

**Examples and features.** Every visible keypoint of every instance is one example. The instance's box, enlarged by
a margin on every side, is cropped and resized to a square input (227 pixels, AlexNet's input). The feature of a
keypoint is the SIFT descriptor of radius r centred exactly at it (bins of r / 2 pixels), or the feature of the
conv-layer column whose receptive-field centre is nearest to it.

**Classifier and accuracy.** One-vs-all linear SVMs on L2-normalised features predict the keypoint type. The SVM
cost C is chosen by cross-validation on the training keypoints, with folds grouped like the test split so that no
photo is on both sides of a fold. Accuracy is the fraction of test keypoints assigned their true type, per category
and feature; chance is 1 / (number of types). Every accuracy carries a 95% bootstrap interval that resamples test
photos (a photo's warps and keypoints move together), and conv4 is compared with SIFT at each radius by paired
differences on the same test keypoints.

**Localisation (Figure 4).** For test keypoints spread evenly over the types, the SVM of the true type is evaluated
at every pixel of a window around the true position (21 x 21 pixels, as in the paper). SIFT is computed at every
pixel; conv features at 1-pixel steps are computed exactly, by shifting the crop by every offset within one stride
and running the network again (no interpolation). The histograms show where the response maxima lie relative to the
true position; maxima on the window's border (the response still rising outside it) are left out and counted.

**Data.** The embedded data (preset default) are the real annotated photos of each category plus random smooth
warps of each. Categories with at least 3 photos are split by photo: the test photos and all their warps are never
seen in training. Smaller categories are split by warp (the test instances are new deformations of training
animals, which is easier), and the table marks them. Some categories keep an evenly spaced subset of their keypoint
types to keep the run short. Preset paper reads PASCAL VOC 2011 with the Berkeley keypoints and splits by instance,
half for testing.

**The paper.** Table 3 and Figure 4 of Long, Zhang and Darrell (NIPS 2014): linear SVMs predicting the keypoint type
from AlexNet conv1 to conv5 features and from SIFT at several radii, on PASCAL VOC 2011 with the Berkeley
keypoints, and the offsets of the SVM response maxima in a 21 x 21 pixel window.
"""

_COMMON = {
    "radii": [10, 20, 40, 80, 160], "layers": ["conv1", "conv2", "conv3", "conv4", "conv5"],
    "backbone": "alexnet", "input_size": 227, "margin": 0.1, "Cs": list(DEFAULT_CS), "folds": 5, "seed": 0,
    "response_window": 10, "cache": False, "n_boot": 1000,
}
CONFIGS = {
    "default": {
        "dataset": "embedded", "root": None, "categories": ["face", "person", "hand"], "n_synthetic": 1,
        "test_warps": 1, "test_fraction": 0.34, "max_types": 17, "n_response": 20, "n_response_instances": 1,
        **_COMMON,
    },
    "paper": {
        "dataset": "berkeley", "root": None, "categories": None, "n_synthetic": 0, "test_warps": 0,
        "test_fraction": 0.5, "max_types": None, "n_response": 50, "n_response_instances": 25, **_COMMON,
    },
}
CONFIGS = {k: pools.with_data_options(v) for k, v in CONFIGS.items()}
#: parallel SVM and response-map loops: ``workers``, ``executor``, ``ray_address``, ``resume``
#: (convcorr.experiments.workers); results are identical for any setting
CONFIGS = with_parallel_options(CONFIGS)
OPTIONS = [
    Option("radii", list, "SIFT descriptor radii in crop pixels (one feature column each; bin = radius / 2)",
           item=int),
    Option("layers", list, "conv layers of backbone (one feature column each)", item=str),
    Option("response_window", int, "Figure 4: half-side w of the (2w+1)^2 response window in crop pixels"),
    Option("cache", bool, "keep the keypoint features on disk (convcorr's cache folder) for re-runs"),
    Option("n_response", int, "Figure 4: test keypoints per category whose response maps are computed"),
    Option("n_response_instances", int, "Figure 4: test instances per category the keypoints come from"),
]


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
    """{column name: DenseFeatures}, resolved once (:func:`convcorr.features.base.get_features`)."""
    from ..features.base import get_features

    return {n: get_features(s) for n, s in feature_specs(conf).items()}


def split_pool(conf: dict) -> tuple[list, list, dict]:
    """(train, test, {category: split description}): :func:`convcorr.datasets.pools.split_pool` (shared with Table 4)."""
    return pools.split_pool(conf)


def _visible(inst) -> np.ndarray:
    return np.asarray(inst.visible, dtype=bool) & np.all(np.isfinite(inst.keypoints), axis=1)


def instance_features(inst, conf: dict, feats: dict) -> dict[str, np.ndarray]:
    """{feature name: (V, D)} at the instance's visible keypoints (crop pixels), optionally cached on disk.

    ``feats``: {name: DenseFeatures} (:func:`feature_objects`)."""
    crop, tf = crop_instance(inst, conf["margin"], conf["input_size"])
    to_crop = tf.to_crop
    pts = to_crop(inst.keypoints[_visible(inst)])
    digest = array_digest(crop, pts)
    key = f"{inst.category}/{inst.id}"
    computed: dict = {}

    def get(n):  # every feature in one go (one forward pass per backbone), only when something is not cached
        if not computed:
            computed.update(features_at_points(feats, crop, pts))
        return computed[n]

    return {n: cached(key, f"{f.cache_key}-s{conf['input_size']}", lambda n=n: get(n), digest, enabled=conf["cache"])
            for n, f in feats.items()}


def _datasets(insts: list, conf: dict, fobjs: dict, desc: str, group_by: str = "source"
              ) -> tuple[dict, np.ndarray, np.ndarray]:
    """({feature name: X (N, D)}, y (N,), groups (N,)) over the instances' visible keypoints."""
    feats = {i.id: instance_features(i, conf, fobjs) for i in progress(insts, desc)}
    out, y, g = {}, None, None
    for n in feature_names(conf):
        out[n], y, g = keypoint_dataset(insts, lambda i, n=n: feats[i.id][n], group_by)
    return out, y, g


# ------------------------------------------------------------------------------------------------------ results
@dataclass
class ResponseResults:
    """Figure 4's measurements: response maxima around test keypoints.

    Attributes:
        window: w (the window is (2w+1) x (2w+1) crop px).
        offsets: {feature name: (N, 2) offsets (dx, dy) of the response maxima from the ground truth}, the N
            keypoints pooled over categories.
        per_category: {category: {feature name: (N_c, 2) offsets}}.
        mean_distance_per_category: {category: {feature name: mean |offset| (px) of all its maxima, boundary
            maxima included; NaN without keypoints}}.
        units: (N,) test photo of each keypoint; types: (N,) "category/name".
        stats: one dict per feature: "feature", "maxima", "on boundary (excluded)" and the Estimates "mean |offset|
            (px)", "within 2 px", "within 5 px" (95% bootstrap over the photos, boundary maxima excluded).
        examples: up to 3 dicts, one per category, of keypoints whose window lies inside the crop: "crop" (S, S, 3)
            uint8, "centre" (2,) ground truth in crop px, "category", "label" ("category/name"), "maps" {feature
            name: (2w+1, 2w+1) response map}, "peaks" {feature name: (2,) offset of the map's maximum}.
        histograms: :func:`convcorr.figures.offset_histograms` of ``offsets``.
    """

    window: int
    offsets: dict
    per_category: dict
    mean_distance_per_category: dict
    units: np.ndarray
    types: list
    stats: list
    examples: list
    histograms: dict


@dataclass
class Table3Results:
    """What :func:`compute` measured (rendering lives in :func:`render`).

    Attributes:
        conf: the configuration.
        names: feature (column) names: ``SIFT r<r>`` then the conv layers.
        categories: the categories with training and test instances; splits: {category: split description}.
        rows: one dict per category: split, types, train / test points, chance, accuracy per feature name and
            the chosen C per feature (``C <name>``).
        table: ``rows`` plus the "mean" row (and "mean (photo splits)" when only some categories are split by
            photo).
        cv: {category: {feature name: {C: cross-validated accuracy}}}.
        counts: {category: test points / instances / photos, train points / photos}.
        accuracy_ci: {category: {feature name: Estimate}} (95% bootstrap over test photos).
        mean_ci: {feature name: Estimate} of the mean over categories.
        differences: {(conv layer, SIFT radius): Estimate of the paired difference of the means}.
        response: Figure 4's :class:`ResponseResults` (None when no keypoint was drawn).
        data: (Markdown, rows) of :func:`convcorr.datasets.embedded.category_report` (embedded data), else None.
        timing: {step: seconds}; seconds: total.
    """

    conf: dict
    names: list
    categories: list
    splits: dict
    rows: list
    table: list
    cv: dict
    counts: dict
    accuracy_ci: dict
    mean_ci: dict
    differences: dict
    response: ResponseResults | None
    data: tuple | None
    timing: dict
    seconds: float


# ---------------------------------------------------------------------------------------------------- compute
def compute(conf: dict, out_dir: str | Path | None = None) -> Table3Results:
    """Keypoint features, SVMs per (category, feature) with C by cross-validation, accuracies with bootstrap
    intervals and paired differences, and Figure 4's response maps.

    The SVMs and the response maps run through :func:`convcorr.experiments.workers.run_conf_tasks` (options
    ``workers``, ``executor``, ``ray_address``, ``resume``; with ``resume`` every unit's result is kept under
    ``out_dir/tasks/``). Results are the same for every setting."""
    t0 = time.perf_counter()
    names = feature_names(conf)
    if not names:
        raise ConfigError("table3: no features (both 'radii' and 'layers' are empty)")
    train, test, kinds = split_pool(conf)
    train, test = restrict_types(train, conf["max_types"]), restrict_types(test, conf["max_types"])
    cats = [c for c in dict.fromkeys(i.category for i in train) if any(i.category == c for i in test)]
    if not cats:
        raise ConfigError("table3: no category has both training and test instances")
    timing: dict = {}
    rows, labels, tasks, units, counts = _keypoint_data(conf, cats, train, test, kinds, names, timing)
    t1 = time.perf_counter()
    fits = run_conf_tasks(_svm_task, tasks, conf, out_dir, "svms", shared={"labels": labels},
                          kwargs={"Cs": [float(C) for C in conf["Cs"]], "folds": int(conf["folds"])},
                          key=lambda t: unit_key("svm", t[0], t[1]), desc="SVMs (CV over C)")
    timing["SVMs"] = time.perf_counter() - t1
    by_cat = {r["category"]: r for r in rows}
    models, hits, cv = {}, {}, {}
    for (c, n, _, _), fit in zip(tasks, fits):
        models[(c, n)] = fit["model"]
        hits.setdefault(c, {})[n] = fit["hits"]
        by_cat[c][n] = float(fit["hits"].mean()) if len(fit["hits"]) else float("nan")
        by_cat[c][f"C {n}"] = fit["C"]
        cv.setdefault(c, {})[n] = fit["scores"]
    data = None
    if conf.get("dataset", "embedded") == "embedded":
        from ..viz.report import category_report

        data = category_report(cats)
    est, mean, diffs = _intervals(conf, names, cats, hits, units)
    t1 = time.perf_counter()
    response = _response_maps(conf, out_dir, test, cats, models, names)
    timing["response maps"] = time.perf_counter() - t1
    return Table3Results(dict(conf), names, cats, kinds, rows, _accuracy_table(rows, names), cv, counts, est, mean,
                         diffs, response, data, timing, time.perf_counter() - t0)


def _keypoint_data(conf: dict, cats: list, train: list, test: list, kinds: dict, names: list, timing: dict):
    """Per category: the keypoint features of its training and test instances (extracted here, once per
    instance). Returns (rows: one table row per category, labels: {category: (train types, train CV groups,
    test types)}, tasks: one SVM unit (category, feature name, X train, X test) per (category, feature),
    units: {category: test photo of every test keypoint}, counts: {category: what the numbers rest on})."""
    fobjs = feature_objects(conf)
    rows, labels, tasks, units, counts = [], {}, [], {}, {}
    for c in cats:
        t1 = time.perf_counter()
        tr = [i for i in train if i.category == c]
        te = [i for i in test if i.category == c]
        # CV folds mirror the test split: grouped by photo for photo splits, by instance (warp) for warp splits
        group_by = "source" if kinds[c].startswith("by photo") else "instance"
        Ftr, ytr, gtr = _datasets(tr, conf, fobjs, f"{c}: train features", group_by)
        Fte, yte, _ = _datasets(te, conf, fobjs, f"{c}: test features")
        timing[f"{c}: features"] = time.perf_counter() - t1
        labels[c] = (ytr, gtr, yte)
        # one unit per (category, feature); its two matrices go with the task (no other unit needs them)
        tasks += [(c, n, Ftr[n], Fte[n]) for n in names]
        rows.append({"category": c, "split": kinds[c], "types": len(np.unique(ytr)), "train pts": len(ytr),
                     "test pts": len(yte), "chance": 1.0 / len(np.unique(ytr))})
        units[c] = _photo_of_rows(te)
        counts[c] = {"test points": len(yte), "test instances": sum(bool(_visible(i).any()) for i in te),
                     "test photos": len(set(units[c])), "train points": len(ytr),
                     "train photos": len(set(_photo_of_rows(tr)))}
    return rows, labels, tasks, units, counts


def _accuracy_table(rows: list, names: list) -> list:
    """``rows`` plus the mean over categories (and over the photo-split categories when only some are)."""

    def mean_row(label: str, rs: list) -> dict:
        m = {"category": label, "split": "", "types": "", "train pts": sum(r["train pts"] for r in rs),
             "test pts": sum(r["test pts"] for r in rs)}
        m.update({n: float(np.mean([r[n] for r in rs])) for n in names + ["chance"]})
        return m

    table = rows + [mean_row("mean", rows)]
    by_photo = [r for r in rows if r["split"].startswith("by photo")]
    if 0 < len(by_photo) < len(rows):  # the harder, cross-instance protocol on its own
        table.append(mean_row("mean (photo splits)", by_photo))
    return table


def _svm_task(task: tuple, shared: dict, Cs: list, folds: int) -> dict:
    """Unit of the SVM loop: task = (category, feature name, X train (N, D), X test (M, D)); ``shared["labels"]``
    = {category: (train types (N,), train CV groups (N,), test types (M,))}.

    C by grouped cross-validation (:func:`select_C`, serially: the unit runs in one worker), the one-vs-all SVMs
    trained on all training keypoints with it, and the test keypoints classified -> {"C", "scores" ({C: CV
    accuracy}), "model" (LinearSVC), "hits" ((M,) 1.0 where the type is right)}."""
    c, _, Xtr, Xte = task
    ytr, gtr, yte = shared["labels"][c]
    best, scores = select_C(Xtr, ytr, Cs, folds, gtr, n_jobs=1)
    model = train_ova(Xtr, ytr, best)
    hits = (model.predict(l2_normalize(Xte)) == yte).astype(float) if len(yte) else np.zeros(0)
    return {"C": best, "scores": scores, "model": model, "hits": hits}


def _response_task(task: dict, shared: dict, window: int) -> dict:
    """Unit of the Figure-4 loop: the response maps around some keypoints of one test crop.

    task: {"category", "crop" (S, S, 3) uint8, "centres" (M, 2) int ground truths in crop px, "labels" (M,) their
    types}; shared: {"specs": {feature name: dense-feature spec}, "models": {(category, feature name): LinearSVC}}.
    Features at every pixel of the (2w+1)^2 windows (:func:`features_at_pixels`: exact 1-pixel stride) ->
    {"maps": [{feature name: (2w+1, 2w+1) score of the true type's classifier, -inf outside the crop}] per
    keypoint, "inside": [whether the whole window lies in the crop] per keypoint}."""
    from ..features.base import get_features

    W, c, crop = int(window), task["category"], task["crop"]
    S = crop.shape[0]
    fobjs = {n: get_features(s) for n, s in shared["specs"].items()}  # backbones are built once per process
    d = np.arange(-W, W + 1)
    centres = np.asarray(task["centres"]).reshape(-1, 2)
    wins = [np.stack(np.meshgrid(g[0] + d, g[1] + d), -1) for g in centres]  # (2W+1, 2W+1, 2) each
    allw = np.concatenate([w.reshape(-1, 2) for w in wins])
    inside = np.all((allw >= 0) & (allw < S), axis=1).reshape(len(centres), 2 * W + 1, 2 * W + 1)
    F = features_at_pixels(fobjs, crop, allw)
    grids = {n: F[n].reshape(len(centres), 2 * W + 1, 2 * W + 1, -1) for n in fobjs}
    maps = []
    for j, label in enumerate(task["labels"]):
        # pixels outside the crop cannot be the maximum
        maps.append({n: np.where(inside[j], response_map(shared["models"][(c, n)], label, grids[n][j]), -np.inf)
                     for n in fobjs})
    return {"maps": maps, "inside": [bool(v.all()) for v in inside]}


def _photo_of_rows(insts: list) -> list[str]:
    """The photo (``meta["photo"]``, else the source photo id) of every keypoint row, in
    :func:`convcorr.methods.classification.keypoint_dataset`'s order."""
    out = []
    for i in insts:
        out += [str(i.meta.get("photo", i.meta.get("source_id", i.id)))] * int(_visible(i).sum())
    return out


def reference_pairs(names: list[str]) -> list[tuple[str, str]]:
    """(conv layer, SIFT radius) pairs compared as paired differences: conv4 (else the deepest layer) vs every
    SIFT radius."""
    convs = [n for n in names if not n.startswith("SIFT")]
    sift = [n for n in names if n.startswith("SIFT")]
    if not convs:
        return []
    ref = "conv4" if "conv4" in convs else convs[-1]
    return [(ref, s) for s in sift]


def _intervals(conf: dict, names: list, cats: list, hits: dict, units: dict) -> tuple[dict, dict, dict]:
    """Accuracy with 95% bootstrap intervals over test photos: ({category: {feature: Estimate}}, {feature:
    Estimate of the mean over categories}, {(conv, SIFT): Estimate of the paired difference of the means})."""
    nb, sd = int(conf.get("n_boot", 1000)), conf["seed"]
    est = {c: {n: bootstrap_ci(hits[c][n], units[c], n_boot=nb, seed=sd) for n in names} for c in cats}
    # "mean": the mean over categories of each category's accuracy, photos resampled within categories
    cat_of = np.concatenate([[c] * len(units[c]) for c in cats])
    U = np.concatenate([[f"{c}|{u}" for u in units[c]] for c in cats])
    stat = type_mean(cat_of)
    H = {n: np.concatenate([hits[c][n] for c in cats]) for n in names}
    mean = {n: bootstrap_ci(H[n], U, stat, nb, sd, strata=cat_of) for n in names}
    diffs = {(a, b): paired_difference(H[a], H[b], U, stat, nb, sd, strata=cat_of) for a, b in reference_pairs(names)}
    return est, mean, diffs


def _response_maps(conf: dict, out_dir, test: list, cats: list, models: dict, names: list) -> ResponseResults | None:
    """Figure 4: response maps at 1-pixel stride around test keypoints, the offsets of their maxima and their
    statistics (None when no keypoint was drawn)."""
    from ..viz.figures import offset_histograms

    W, S = int(conf["response_window"]), int(conf["input_size"])
    rng = np.random.default_rng(conf["seed"])  # which keypoints are shown: drawn here, before the parallel loop
    jobs = [(c, inst, kps) for c in cats for inst, kps in _pick(test, c, conf, rng)] if conf["n_response"] else []
    tasks = []
    for c, inst, kps in jobs:  # crops here (the images are read once, in this process); the maps are the units
        crop, tf = crop_instance(inst, conf["margin"], S)
        to_crop = tf.to_crop
        tasks.append({"category": c, "crop": crop, "centres": np.rint(to_crop(inst.keypoints[kps])).astype(int),
                      "labels": [inst.keypoint_names[k] for k in kps]})
    specs = feature_specs(conf)
    shared = {"specs": {n: specs[n] for n in names},
              "models": {(c, n): models[(c, n)] for c in cats for n in names}}
    maps_of = run_conf_tasks(_response_task, tasks, conf, out_dir, "response", shared=shared,
                             kwargs={"window": W}, desc="response maps (1-px stride)")
    offsets = {n: [] for n in names}
    per_cat = {c: {n: [] for n in names} for c in cats}
    unit, types = [], []
    examples = []  # up to 3 keypoints of different types whose window lies inside the crop
    for (c, inst, kps), task, res in zip(jobs, tasks, maps_of):
        for j, (label, maps, inside) in enumerate(zip(task["labels"], res["maps"], res["inside"])):
            peaks = {n: response_peak(maps[n], W) for n in names}
            for n in names:
                offsets[n].append(peaks[n])
                per_cat[c][n].append(peaks[n])
            unit.append(str(inst.meta.get("photo", inst.meta.get("source_id", inst.id))))
            types.append(f"{c}/{label}")
            if len(examples) < 3 and inside and c not in [e["category"] for e in examples]:  # one per category
                examples.append({"crop": task["crop"], "centre": task["centres"][j], "category": c,
                                 "label": f"{c}/{label}", "maps": maps, "peaks": peaks})
    if not offsets[names[0]]:
        return None
    offsets = {n: np.array(v) for n, v in offsets.items()}
    per_cat = {c: {n: np.array(v, dtype=float).reshape(-1, 2) for n, v in d_.items()} for c, d_ in per_cat.items()}
    unit = np.array(unit)
    mean_dist = {c: {n: float(np.mean(np.linalg.norm(v, axis=1))) if len(v) else float("nan") for n, v in d_.items()}
                 for c, d_ in per_cat.items()}
    return ResponseResults(W, offsets, per_cat, mean_dist, unit, types, _peak_stats(conf, names, offsets, unit, W),
                           examples, offset_histograms(offsets, W))


def _peak_stats(conf: dict, names: list, offsets: dict, unit: np.ndarray, W: int) -> list:
    """Per feature: maxima, maxima on the window boundary (excluded) and bootstrap Estimates (over photos) of
    the mean distance of the others from the ground truth and of the fractions within 2 and 5 px."""
    nb, sd = int(conf.get("n_boot", 1000)), conf["seed"]
    stats = []
    for n in names:
        o = np.array(offsets[n], dtype=float).reshape(-1, 2)
        on_b = np.any(np.abs(o) >= W, axis=1)
        dist = np.linalg.norm(o[~on_b], axis=1)
        u = unit[~on_b]
        stats.append({"feature": n, "maxima": len(o), "on boundary (excluded)": int(on_b.sum()),
                      "mean |offset| (px)": bootstrap_ci(dist, u, n_boot=nb, seed=sd),
                      "within 2 px": bootstrap_ci((dist <= 2).astype(float), u, n_boot=nb, seed=sd),
                      "within 5 px": bootstrap_ci((dist <= 5).astype(float), u, n_boot=nb, seed=sd)})
    return stats


def _pick(test: list, cat: str, conf: dict, rng: np.random.Generator) -> list[tuple]:
    """[(instance, [keypoint indices])]: ``n_response`` visible keypoints over ``n_response_instances`` test
    instances (chosen at random, preferring different photos), spread evenly over the keypoint types."""
    insts = [i for i in test if i.category == cat and _visible(i).any()]
    if not insts:
        return []
    n_inst = max(1, min(int(conf["n_response_instances"]), len(insts)))
    order = [int(k) for k in rng.permutation(len(insts))]
    photo = lambda k: insts[k].meta.get("photo", insts[k].meta.get("source_id", insts[k].id))
    first = [k for j, k in enumerate(order) if photo(k) not in {photo(o) for o in order[:j]}]  # a new photo each
    chosen = (first + [k for k in order if k not in first])[:n_inst]
    per = np.full(n_inst, int(conf["n_response"]) // n_inst)
    per[: int(conf["n_response"]) % n_inst] += 1
    out = []
    for k, m in zip(sorted(chosen), per):
        vis = np.flatnonzero(_visible(insts[k]))
        if m > 0 and len(vis):
            out.append((insts[k], sorted(set(vis[np.linspace(0, len(vis) - 1, min(int(m), len(vis))).round()
                                                 .astype(int)].tolist()))))
    return out


# ---------------------------------------------------------------------------------------------------- rendering
@register_experiment("table3")
def main(conf: dict, out_dir: Path) -> Path:
    """:func:`compute`, then :func:`render` into ``out_dir``."""
    return render(compute(conf, out_dir), out_dir)


def render(res: Table3Results, out_dir: Path) -> Path:
    """report.md, results.json, accuracy.png, cv_accuracy.png, response_maps.png and max_histograms.png of
    computed results."""
    import matplotlib

    matplotlib.use("Agg")
    t0 = time.perf_counter()
    names, rows = res.names, res.rows
    rep = Report(out_dir, "Table 3: keypoint classification accuracy (SIFT radii vs conv layers)", res.conf)
    rep.section("Protocol", PROTOCOL)
    shown = [{k: (f"**{v:.3f}**" if k in names and v == max(r[n] for n in names) else v) for k, v in r.items()}
             for r in res.table]
    if res.data is not None:
        md, rep.results["data"] = res.data
        rep.section("Data (real photos before warping)", md)
    rep.section("Accuracy (fraction of test keypoints classified to the right type; best per row in bold)",
                markdown_table(shown, ["category", *names, "chance", "split", "types", "train pts", "test pts"]))
    rep.section("C chosen by cross-validation",
                markdown_table([{"category": r["category"], **{n: r[f"C {n}"] for n in names}} for r in rows],
                               floatfmt="{:g}"))
    rep.results.update({"accuracy": {r["category"]: {n: r[n] for n in names} for r in res.table},
                        "chance": {r["category"]: r["chance"] for r in res.table}, "splits": res.splits,
                        "chosen_C": {r["category"]: {n: r[f"C {n}"] for n in names} for r in rows},
                        "cv_accuracy": res.cv,
                        "n_points": {r["category"]: {"train": r["train pts"], "test": r["test pts"]} for r in rows}})
    _render_intervals(rep, res)
    _cv_figure(rep, res.cv, names, res.categories, solid={f"SIFT r{r:g}" for r in res.conf["radii"]})
    if res.response is not None:
        _render_response(rep, res.response, names, res.categories)
    rep.results["seconds"] = res.seconds
    rep.results["timing"] = res.timing
    rep.section("Runtime", f"{res.seconds:.1f} s of computation in total on this machine, "
                f"{time.perf_counter() - t0:.1f} s rendering.\n\n"
                + markdown_table([{"step": k, "seconds": v} for k, v in res.timing.items()], floatfmt="{:.1f}"))
    return rep.save()


def _render_intervals(rep: Report, res: Table3Results) -> None:
    """Accuracy with 95% intervals (table and accuracy.png), counts, and paired conv - SIFT differences."""
    from ..viz.figures import draw_bars_with_ci

    names, cats, est, mean, diffs = res.names, res.categories, res.accuracy_ci, res.mean_ci, res.differences
    nb = int(res.conf.get("n_boot", 1000))
    table = [{"feature": n, **{c: est[c][n].fmt() for c in cats}, "mean over categories": mean[n].fmt()}
             for n in names]
    crow = [{"category": c, **res.counts[c]} for c in cats]
    rep.section("Accuracy with 95% intervals",
                markdown_table(table, ["feature", *cats, "mean over categories"]) +
                f"\nIntervals: 95% percentile bootstrap ({nb} replicates) resampling the TEST PHOTOS (all keypoints of "
                "a photo and of its warps move together; for the mean, within each category). A category with "
                "1-3 test photos gives a degenerate or too narrow interval: read it as a lower bound on the "
                "uncertainty. What each number rests on:\n\n" + markdown_table(crow, floatfmt="{:g}"))
    draw_bars_with_ci(names, {**{c: [est[c][n] for n in names] for c in cats}, "mean": [mean[n] for n in names]},
                      rep.out_dir / "accuracy.png", "test accuracy", ylim=(0, 1),
                      figsize=(max(6.0, 0.9 * len(names)), 3.4))
    rep.figures.append("accuracy.png")
    rep.parts.append("![accuracy](accuracy.png)\n\nTest accuracy per feature and category; error bars: 95% "
                     "bootstrap intervals over test photos.\n")
    if diffs:
        drow = [{"comparison": f"{a} - {b}", "difference (mean over categories)": d.fmt(signed=True),
                 "resolved": "no (spans 0)" if d.spans_zero else "yes"} for (a, b), d in diffs.items()]
        rep.section("Paired differences (same test keypoints, photos resampled jointly)",
                    markdown_table(drow) + "\n" + "\n".join(f"- {verdict(d, a, b)}" for (a, b), d in diffs.items()))
    rep.results.update({
        "accuracy_ci": {c: {n: est[c][n].to_dict() for n in names} for c in cats} | {
            "mean": {n: mean[n].to_dict() for n in names}},
        "counts": res.counts,
        "paired_differences": [{"a": a, "b": b, **d.to_dict(), "resolved": not d.spans_zero}
                               for (a, b), d in diffs.items()]})


def _render_response(rep: Report, r: ResponseResults, names: list, cats: list) -> None:
    """Figure 4: statistics of the response maxima, example maps (response_maps.png) and the 2-D histograms of
    the maxima (max_histograms.png)."""
    from ..viz.figures import draw_offset_histograms

    W, types = r.window, r.types
    keys = ["mean |offset| (px)", "within 2 px", "within 5 px"]
    rep.results["response_peak_offsets"] = {n: v.tolist() for n, v in r.offsets.items()}
    rep.results["response_peak_stats"] = {
        s["feature"]: {"maxima": s["maxima"], "on_boundary": s["on boundary (excluded)"],
                       **{k: s[k].to_dict() for k in keys}} for s in r.stats}
    rep.results["response_peak_mean_distance_px"] = {s["feature"]: s["mean |offset| (px)"].value for s in r.stats}
    rep.results["response_peak_mean_distance_px_per_category"] = r.mean_distance_per_category
    n_types = len(set(types))
    rep.section("Localisation of classifier responses (Figure 4)",
                f"Window {2 * W + 1} x {2 * W + 1} crop px around each ground-truth keypoint, 1-pixel stride; offsets "
                f"of the maximum of the true type's classifier from the ground truth, pooled over {len(types)} test "
                f"keypoints of {n_types} keypoint types from {len(set(r.units.tolist()))} test photos "
                f"({', '.join(f'{c}: {sum(t.startswith(c + chr(47)) for t in types)}' for c in cats)}). Maxima on "
                "the window boundary are excluded from the statistics and the histograms and counted; intervals: "
                "95% bootstrap over the photos.\n\n"
                + markdown_table([{k: (v.fmt(2) if hasattr(v, "fmt") else v) for k, v in s.items()} for s in r.stats]))
    if r.examples:
        _example_maps(rep, r.examples, names, W)
    draw_offset_histograms(r.histograms, rep.out_dir / "max_histograms.png")
    rep.figures.append("max_histograms.png")
    rep.parts.append(f"![Figure 4](max_histograms.png)\n\nFigure 4: 2-D histograms of the response maxima relative "
                     f"to the ground truth (crop pixels, dx right, dy down) inside the {2 * W + 1} x {2 * W + 1} window, "
                     f"pooled over {len(types)} keypoints of {n_types} types; maxima on the window boundary are "
                     "excluded (their number is in each title); one colour scale for all panels. A tight central "
                     "peak means fine localisation.\n")


def _example_maps(rep: Report, examples: list, names: list, W: int) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(examples), len(names) + 1, figsize=(1.6 * (len(names) + 1), 1.75 * len(examples)),
                             squeeze=False, layout="constrained")
    for r, ex in enumerate(examples):
        crop, g, label, maps = ex["crop"], ex["centre"], ex["label"], ex["maps"]
        axes[r, 0].imshow(crop)  # context: 4 windows wide, the window outlined
        axes[r, 0].plot(g[0], g[1], "r+", ms=8)
        axes[r, 0].plot(g[0] + W * np.array([-1, 1, 1, -1, -1]), g[1] + W * np.array([-1, -1, 1, 1, -1]), "y-", lw=0.8)
        axes[r, 0].set_xlim(g[0] - 4 * W, g[0] + 4 * W)
        axes[r, 0].set_ylim(g[1] + 4 * W, g[1] - 4 * W)
        axes[r, 0].set_title(label, fontsize=6)
        for ax, nm in zip(axes[r, 1:], names):
            ax.imshow(maps[nm], cmap="jet")
            ax.plot(W, W, "w+", ms=10)
            ax.plot(ex["peaks"][nm][0] + W, ex["peaks"][nm][1] + W, "kx", ms=6)
            if r == 0:
                ax.set_title(nm, fontsize=7)
        for ax in axes[r]:
            ax.axis("off")
    rep.figure(fig, "response_maps.png", f"Response of the true type's classifier at 1-pixel stride in the "
               f"{2 * W + 1} x {2 * W + 1} px window around test keypoints of {len(examples)} types (rows; left: "
               "the keypoint in context with the window outlined in yellow; red/white +: ground truth, black x: "
               "the maximum; each map on its own colour scale, red = high).")


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
