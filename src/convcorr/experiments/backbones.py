"""The study across backbones: does localisation track the receptive field, the stride, or neither?

For EVERY spatial layer of several backbones, on the same data, two measurements of how finely a layer's
features localise keypoints:

* **Keypoint transfer** (the pair benchmark's protocol, :mod:`convcorr.methods.pair_transfer`): for every pair
  (``convcorr.datasets.pools.build_pairs``: by default cross-instance pairs of different objects of one category),
  both images are cropped to the instance box + ``margin`` and resized to the backbone's input side
  (``input_size`` overrides it), the layer's feature grids are matched (``matchers``: one, by default ``nn``: cosine
  nearest neighbour; only the columns the pixel map reads at the keypoints are matched,
  :meth:`Matcher.transfer_points`), the source keypoints are moved through the matcher's pixel map and mapped back
  to original target pixels, and PCK is computed by :func:`convcorr.evaluation.pck.evaluate` under
  ``pck_protocols`` (one; the paper's: alpha 0.1 / 0.05 / 0.025
  of the target box's max side, averaged over keypoint types).
* **Keypoint classification** (Table 3's protocol): per category, one-vs-all linear SVMs on the layer's
  feature at each keypoint (the column whose rf centre is nearest) predict the keypoint TYPE; C by grouped
  ``folds``-fold cross-validation over ``Cs``; the train/test split is ``convcorr.datasets.pools.split_pool``'s
  (by photo where a category has >= 3 photos, else by warp). Accuracy = mean over categories of the fraction of
  test keypoints classified to the right type.

Uncertainty: 95% cluster-bootstrap intervals (:mod:`convcorr.evaluation.stats`) over the independent units: PAIRS for
transfer, TEST PHOTOS for classification, resampled within categories. The SAME replicates are used for every
layer, so the association of accuracy with the geometry gets an interval too: Spearman rank correlations over
the layers (global-rf layers excluded: their size is infinite) of each measure with log rf size and with log
stride, and PARTIAL rank correlations (with rf given stride and the backbone, with stride given rf and the
backbone), each with a bootstrap interval. rf and stride grow together along every network, so only the partial
correlations separate them; an interval that spans zero is reported as "not resolved". (Resampling adds noise to
every layer's measure, which pulls replicate correlations towards zero: the percentile intervals of the
correlations lean towards zero, i.e. they err on the side of "not resolved".)

Parallel runs (``--workers N``, ``--executor ray``, ``--resume``; :mod:`convcorr.experiments.workers`): each
backbone's features are extracted once per image, in one forward pass for all its layers, in the calling process;
its layers' measurements (matching every pair + the SVMs) are the units of work, the statistics are computed
afterwards in the calling process. With ``resume`` every layer's result is kept under ``tasks/`` and a re-run
recomputes only the missing layers. Results are the same for every setting.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.errors import ConfigError, DataError
from ..datasets import pools
from ..runtime.progress import progress
from ..viz.report import Report, markdown_table
from . import register_experiment
from .options import Option
from .workers import all_saved, run_conf_tasks, unit_key, with_parallel_options

#: the report's Protocol section, written for a reader (Markdown): what is measured, on which data, how it
#: is scored, and what the paper did
PROTOCOL = """\
**Question.** Does how finely a layer's features localise keypoints follow the layer's receptive-field size, its
stride, or neither? Every spatial layer of several backbones is measured twice, on the same data.

**Keypoint transfer** (the pair benchmark's protocol). For every pair (by default two different objects of one
category), both images are cropped to the instance box plus a margin and resized to the backbone's input side, the
layer's feature grids are matched (by default cosine nearest neighbour), the source keypoints are moved through the
match and mapped back to original target pixels. PCK: a keypoint is correct within alpha x the larger side of the
target box (alpha 0.1, 0.05 and 0.025), averaged over keypoint types.

**Keypoint classification** (Table 3's protocol). In each category, one-vs-all linear SVMs on the layer's feature at
each keypoint (the column whose receptive-field centre is nearest) predict the keypoint type; the SVM cost is chosen
by grouped cross-validation, and the test split is by photo where a category has at least 3 photos, else by warp.
Accuracy is the mean over categories of the fraction of test keypoints assigned their true type.

**Uncertainty and association.** Intervals are 95% cluster-bootstrap intervals over the independent units: pairs
for transfer, test photos for classification, resampled within categories. The same replicates serve every layer,
so the association of each measure with geometry gets an interval too: rank (Spearman) correlations over the layers
(layers with a global receptive field left out) with the log receptive-field size and with the log stride, and
partial rank correlations (receptive field given stride and backbone, stride given receptive field and backbone).
Receptive field and stride grow together along every network, so only the partial correlations separate them; an
interval that spans zero is reported as not resolved. Resampling adds noise to every layer's measure and so pulls
the correlations towards zero: the intervals err on the side of "not resolved".

**The paper.** Long, Zhang and Darrell (NIPS 2014) observed, for AlexNet alone, that conv features localise more
finely than their receptive fields suggest. This study asks the same question across backbones and layers.
"""

_METHODS = {
    "backbones": ["alexnet", "efficientnet_lite0", "squeezenet1_0", "mobilenet_v1", "mobilenet_v2"],
    "layers": None, "pretrained": True, "matchers": ["nn"], "matcher_options": {}, "crop": "box", "margin": 0.1,
    "input_size": None,
    "pck_protocols": ["paper"], "alpha": 0.1, "batch_size": 16,
    # classification (Table 3's options)
    "n_synthetic": 2, "test_warps": 1, "test_fraction": 0.34, "max_types": 12, "Cs": [0.1, 1.0, 10.0],
    "folds": 3,
    "n_boot": 1000,
}
CONFIGS = {
    # offline, ~2-3 minutes on 2 cores: the five pretrained CNNs of the shared folder, every spatial layer;
    # cross-instance pairs and photo-split classification on the embedded face / person / hand photos
    "default": pools.with_data_options({
        "dataset": "embedded", "categories": ["face", "person", "hand"], "pairs": "cross", "max_pairs": 20,
        "n_synthetic_pairs": 0, **_METHODS}, pairs=True),
    # models from timm / torchvision (weights need a network or a warm cache): residual nets, ConvNeXt, DINOv2
    "zoo": pools.with_data_options({
        "dataset": "embedded", "categories": ["face", "person", "hand"], "pairs": "cross", "max_pairs": 20,
        "n_synthetic_pairs": 0,
        **dict(_METHODS, backbones=["timm:resnet50", "timm:convnext_tiny", "timm:vit_small_patch14_dinov2.lvd142m",
                                    "torchvision:vgg16"])}, pairs=True),
}
#: parallel layer loop: ``workers``, ``executor``, ``ray_address``, ``resume`` (convcorr.experiments.workers);
#: the (backbone, layer) measurements are the units of work. Results are identical for any setting.
CONFIGS = with_parallel_options(CONFIGS)
OPTIONS = [
    Option("layers", (dict, None), "{backbone: [layers]} measured (None: every spatial layer of every backbone)"),
    Option("pretrained", bool, "pretrained weights (false: random weights, a control)"),
    Option("matchers", list, "the one matcher of the keypoint transfer (every layer is measured under it)",
           item=str, length=1),
    Option("input_size", (int, None), "crop side in pixels (None: each backbone's own input size)"),
    Option("pck_protocols", list, "the one PCK protocol of the transfer (it must pool over categories)",
           item=(str, dict), length=1),
    Option("alpha", float, "PCK threshold the layers are ranked and correlated by (one of the protocol's alphas)"),
]


# ------------------------------------------------------------------------------------------------------ results
@dataclass
class LayerResult:
    """Measurements of one (backbone, layer).

    Attributes:
        backbone, layer: names; input_size: crop side (pixels) the layer ran on.
        rf_size, stride, offset: ``backbone.rf(layer, input_size)`` (rf_size is inf for a global layer).
        channels: feature dimension; grid_hw: (h, w) columns at ``input_size``.
        pck: {alpha: Estimate} transfer PCK under the protocol's first average, CI over pairs.
        pck_overall: {alpha: PCK} the same numbers from :func:`convcorr.evaluation.pck.evaluate` (the protocol engine).
        pck_per_category: {category: {alpha: PCK}}.
        accuracy: Estimate, mean over categories of the classification accuracy, CI over test photos.
        accuracy_per_category: {category: Estimate}.
        chosen_C: {category: C}.
        n_pairs, n_transfer_points: pairs and counted target keypoints of the transfer.
        n_train_points, n_test_points, n_test_units: classification examples and test photos.
        seconds: time spent on this layer's matching + SVMs.
    """

    backbone: str
    layer: str
    input_size: int
    rf_size: float
    stride: float
    offset: float
    channels: int
    grid_hw: tuple
    pck: dict
    pck_overall: dict
    pck_per_category: dict
    accuracy: object
    accuracy_per_category: dict
    chosen_C: dict
    n_pairs: int
    n_transfer_points: int
    n_train_points: int
    n_test_points: int
    n_test_units: int
    seconds: float = 0.0

    @property
    def is_global(self) -> bool:
        return not np.isfinite(self.rf_size)

    def to_dict(self) -> dict:
        return {"backbone": self.backbone, "layer": self.layer, "input_size": self.input_size,
                "rf_size": self.rf_size if np.isfinite(self.rf_size) else "inf", "stride": self.stride,
                "offset": self.offset, "channels": self.channels, "grid_hw": list(self.grid_hw),
                "global": self.is_global, "pck": {a: e.to_dict() for a, e in self.pck.items()},
                "pck_overall": self.pck_overall,
                "pck_per_category": self.pck_per_category, "accuracy": self.accuracy.to_dict(),
                "accuracy_per_category": {c: e.to_dict() for c, e in self.accuracy_per_category.items()},
                "chosen_C": self.chosen_C, "n_pairs": self.n_pairs, "n_transfer_points": self.n_transfer_points,
                "n_train_points": self.n_train_points, "n_test_points": self.n_test_points,
                "n_test_units": self.n_test_units, "seconds": self.seconds}


@dataclass
class Fit:
    """One association of a measure with the geometry over the layers with a finite rf.

    Attributes:
        measure: "transfer PCK@<alpha>" or "classification accuracy".
        variable: "rf size" or "stride".
        kind: "rank correlation" or "partial rank correlation" (given the other variable and the backbone).
        estimate: Estimate of Spearman's rho (n = layers, n_units = bootstrap units).
        n_layers: layers in the fit.
    """

    measure: str
    variable: str
    kind: str
    estimate: object
    n_layers: int

    @property
    def label(self) -> str:
        given = {"rf size": "stride", "stride": "rf size"}[self.variable]
        return (f"rho({self.measure}, {self.variable})" if self.kind == "rank correlation"
                else f"rho({self.measure}, {self.variable} | {given}, backbone)")

    def to_dict(self) -> dict:
        return {"measure": self.measure, "variable": self.variable, "kind": self.kind, "label": self.label,
                **self.estimate.to_dict(), "n_layers": self.n_layers, "resolved": not self.estimate.spans_zero}


@dataclass
class BackbonesResults:
    """What :func:`compute` measured (rendering lives in :func:`main`).

    Attributes:
        conf: the configuration.
        layers: one :class:`LayerResult` per (backbone, layer), in backbone then layer order.
        fits: :class:`Fit` list (both measures x both variables x plain / partial).
        answers: {measure: one sentence answering "rf, stride, or neither?"}.
        alphas: the PCK protocol's alphas; alpha: the one the fits use.
        protocol: the PCK protocol as a dict.
        counts: pairs and points per category (transfer), train/test points and photos (classification).
        splits: {category: split description} of the classification.
        box_copy: {alpha: Estimate} PCK of the box-copy baseline (source keypoints copied into the target box in
            normalised box coordinates: the floor a layer must beat), same pairs and intervals.
        chance: mean over categories of 1 / (keypoint types) (classification at chance).
        notes: data decisions and skipped layers.
        seconds: {step: seconds}.
    """

    conf: dict
    layers: list
    fits: list
    answers: dict
    alphas: tuple
    alpha: float
    protocol: dict
    counts: dict
    splits: dict
    box_copy: dict
    chance: float
    notes: list = field(default_factory=list)
    seconds: dict = field(default_factory=dict)

    def layer(self, backbone: str, layer: str) -> LayerResult:
        for r in self.layers:
            if r.backbone == backbone and r.layer == layer:
                return r
        raise KeyError(f"no result for {backbone}:{layer}")


# ---------------------------------------------------------------------------------------------------- pieces
def backbone_layers(bb, conf: dict) -> list[str]:
    """The layers of ``bb`` to study: ``conf['layers'][name]`` when given (a dict), else every spatial layer."""
    want = conf.get("layers")
    if want is None:
        return list(bb.layer_names)
    if not isinstance(want, dict):
        raise ConfigError("backbones: option 'layers' must be None (every spatial layer) or a dict "
                         f"{{backbone: [layers]}}, got {want!r}")
    layers = want.get(bb.name, want.get(getattr(bb, "spec", bb.name)))
    if layers is None:
        return list(bb.layer_names)
    bad = [l for l in layers if l not in bb.layer_names]
    if bad:
        raise ConfigError(f"backbones: {bb.name!r} has no spatial layer(s) {bad}; layers: {list(bb.layer_names)}")
    return list(layers)


def _photo(inst) -> str:
    """The independent unit of a test keypoint: its photo (people of one photo and the warps of a photo stay
    together)."""
    m = inst.meta
    return str(m.get("photo") or m.get("source_id") or inst.id)


def _visible(inst) -> np.ndarray:
    return np.asarray(inst.visible, bool) & np.all(np.isfinite(inst.keypoints), axis=1)


def _rank(a: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(a, axis=0)


def partial_rank_correlation(y: np.ndarray, x: np.ndarray, covariates: np.ndarray | None = None) -> np.ndarray:
    """Spearman correlation of ``y`` with ``x`` over L items, optionally partial on covariates.

    Args:
        y: (L,) or (L, B) values (B replicates, ranked separately).
        x: (L,) values.
        covariates: (L, K) columns to partial out (numeric columns are ranked; pass 0/1 indicator columns for
            groups, which ranking leaves a monotone recoding of), or None.
    Returns:
        (B,) (or a float for 1-D y) Pearson correlation of the residual ranks of y and x after least squares on
        [1, covariates] (NaN where a residual is constant).
    """
    y = np.asarray(y, float)
    one = y.ndim == 1
    Y = _rank(y.reshape(len(y), -1))
    X = _rank(np.asarray(x, float))
    Z = np.ones((len(X), 1))
    if covariates is not None and np.size(covariates):
        C = np.asarray(covariates, float).reshape(len(X), -1)
        Z = np.concatenate([Z, _rank(C)], 1)
    P = np.eye(len(X)) - Z @ np.linalg.pinv(Z)  # residual projector
    rx, RY = P @ X, P @ Y
    nx = np.linalg.norm(rx)
    ny = np.linalg.norm(RY, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (rx @ RY) / (nx * ny)
    r = np.where((nx > 1e-9) & (ny > 1e-9), r, np.nan)
    return float(r[0]) if one else r


def _prepare_all(insts: dict, crop: str, margin: float, size: int) -> dict:
    from ..methods.pair_transfer import prepare

    return {k: prepare(i, crop, margin, size) for k, i in insts.items()}


def layer_key(backbone: str, layer: str) -> str:
    """File-name-safe name of one layer's saved result (``resume``), e.g. ``alexnet-conv4`` or
    ``timm_resnet50-layer3.<crc32>`` (:func:`convcorr.experiments.workers.unit_key`)."""
    return unit_key(backbone, layer)


def _layer_task(task: tuple, shared: dict) -> dict:
    """Task of the layer loop: the expensive measurements of one layer (matching + SVMs; the statistics are the
    caller's).

    Args:
        task: (layer name, {pair image id: FeatureGrid}, {classification instance id: (n_visible, C) keypoint
            features}).
        shared: {"matcher", "Cs", "folds", "pairs": [:func:`convcorr.methods.pair_transfer.transfer_inputs` per pair],
            "classification": {category: {"train"/"test": [instance ids], "ytr", "gtr", "yte"}}}.

    Returns:
        {"predictions": [(K, 2) original target pixels per pair], "classification": {category: (hits (n_test,)
        float 0/1, chosen C)}, "grid_hw": (h, w) columns of the pair images, "channels": feature dimension,
        "seconds": time of this task}.
    """
    from ..core.arrays import l2_normalize
    from ..methods.classification import select_C, train_ova
    from ..methods.pair_transfer import transfer_by_matcher

    _, grids, kp = task
    t0 = time.perf_counter()
    matcher = shared["matcher"]
    preds = [transfer_by_matcher(matcher, grids[sid], grids[tid], xy, vis, tf_s, tf_t, points_only=True)
             for sid, tid, xy, vis, tf_s, tf_t in shared["pairs"]]
    cls = {}
    Cs = shared["Cs"]
    for c, d in shared["classification"].items():
        Xtr = np.concatenate([kp[i] for i in d["train"]])
        Xte = np.concatenate([kp[i] for i in d["test"]])
        C = float(Cs[0]) if len(Cs) == 1 else select_C(Xtr, d["ytr"], Cs, shared["folds"], d["gtr"])[0]
        model = train_ova(Xtr, d["ytr"], C)
        cls[c] = ((model.predict(l2_normalize(Xte)) == d["yte"]).astype(float), C)
    hw = next(iter(grids.values())).grid_hw if grids else (0, 0)
    return {"predictions": preds, "classification": cls, "grid_hw": tuple(int(x) for x in hw),
            "channels": int(next(iter(kp.values())).shape[1]), "seconds": time.perf_counter() - t0}


# ---------------------------------------------------------------------------------------------------- compute
def compute(conf: dict, out_dir: str | Path | None = None) -> BackbonesResults:
    """Transfer PCK and classification accuracy with bootstrap intervals for every layer of every backbone,
    and rank correlations of both with rf size and stride.

    Each backbone's layers run through :func:`convcorr.experiments.workers.run_conf_tasks` (options
    ``workers``, ``executor``, ``ray_address``, ``resume``; with ``resume`` every layer's result is kept under
    ``out_dir/tasks/layers-<config hash>/``). Results are the same for every setting."""
    conf = dict(conf)
    t_all = time.perf_counter()
    seconds: dict = {}
    notes: list = []
    proto, alpha, matcher, nets = _methods(conf)
    t0 = time.perf_counter()
    data = _data(conf, notes)
    seconds["data"] = time.perf_counter() - t0
    pairs, cats, cls_rows = data["pairs"], data["cats"], data["cls_rows"]
    # the shared bootstrap: counted transfer points (the same for every layer), units, weights, replicates
    boot = {"n_boot": int(conf.get("n_boot", 1000)), "seed": int(conf.get("seed", 0)), "transfer_rows": None,
            "W_t": None, "W_c": None, "pck": [], "acc": [],
            "cat_of": np.concatenate([[c] * len(cls_rows[c]["yte"]) for c in cats]),
            "units_cls": np.concatenate([[f"{c}|{u}" for u in cls_rows[c]["ute"]] for c in cats])}
    results: list[LayerResult] = []
    prepared_cache: dict = {}
    for bb, wanted in nets:
        results += _measure_backbone(conf, out_dir, bb, wanted, data, matcher, proto, alpha, boot, prepared_cache,
                                     seconds, notes)
    if not results:
        raise DataError("backbones: no layer could be measured")
    transfer_rows, units_cls = boot["transfer_rows"], boot["units_cls"]
    measure_pck = f"transfer PCK@{alpha:g}"
    fits = _fits(results, {measure_pck: np.array(boot["pck"]), "classification accuracy": np.array(boot["acc"])},
                 {measure_pck: [r.pck[alpha] for r in results],
                  "classification accuracy": [r.accuracy for r in results]},
                 {measure_pck: len(np.unique(transfer_rows[1])) if transfer_rows else 0,
                  "classification accuracy": len(np.unique(units_cls))})
    answers = {m: answer(m, [f for f in fits if f.measure == m]) for m in (measure_pck, "classification accuracy")}
    n_glob = sum(r.is_global for r in results)
    if n_glob:
        notes.append(f"{n_glob} layer(s) with a global receptive field (size inf) are shown but left out of the fits")
    counts = {"transfer": {"pairs": len(pairs), "points": int(len(transfer_rows[0])) if transfer_rows else 0,
                           "per_category": {c: {"pairs": sum(p.source.category == c for p in pairs),
                                                "points": int(np.sum(transfer_rows[2] == c))}
                                            for c in dict.fromkeys(p.source.category for p in pairs)}},
              "classification": {c: {"train points": len(cls_rows[c]["ytr"]), "test points": len(cls_rows[c]["yte"]),
                                     "test photos": len(np.unique(cls_rows[c]["ute"])),
                                     "types": len(np.unique(cls_rows[c]["ytr"]))} for c in cats}}
    t0 = time.perf_counter()
    box, chance = _floors(pairs, cats, cls_rows, next(iter(prepared_cache.values()))[0], proto, boot)
    seconds["baselines"] = time.perf_counter() - t0
    seconds["total"] = time.perf_counter() - t_all
    return BackbonesResults(conf, results, fits, answers, tuple(proto.alphas), alpha, proto.to_dict(), counts,
                            data["splits"], box, chance, notes, seconds)


def _methods(conf: dict):
    """The PCK protocol, the alpha of the fits, the matcher and [(backbone, its layers)], checked before any
    data is loaded."""
    from ..backbones import get_backbone
    from ..evaluation.pck import get_protocol
    from ..matchers import get_matcher

    proto = get_protocol((conf.get("pck_protocols") or ["paper"])[0])
    if proto.overall != "pooled" or proto.averages[0] not in ("type", "point"):
        raise ConfigError(f"backbones: pck_protocols {proto.name!r} must pool over categories with a 'type' or "
                         f"'point' first average (got overall={proto.overall!r}, averages={proto.averages})")
    alpha = float(conf.get("alpha") or proto.alphas[0])
    if alpha not in proto.alphas:
        raise ConfigError(f"backbones: alpha {alpha} is not among the protocol's alphas {list(proto.alphas)}")
    if not conf.get("backbones"):
        raise ConfigError("backbones: option 'backbones' is empty")
    matcher = get_matcher(conf["matchers"][0], **(conf.get("matcher_options") or {}).get(conf["matchers"][0], {}))
    nets = []
    for name in conf["backbones"]:
        try:
            bb = get_backbone(name, pretrained=bool(conf.get("pretrained", True))) if isinstance(name, str) else name
        except KeyError as exc:
            raise ConfigError(f"backbones: option 'backbones': {exc.args[0] if exc.args else exc}") from exc
        nets.append((bb, backbone_layers(bb, conf)))
    return proto, alpha, matcher, nets


def _data(conf: dict, notes: list) -> dict:
    """The data, the same for every backbone: {"pairs", "train", "test", "splits", "cats" (categories with a
    classification split), "pair_insts" {id: Instance}, "cls_rows" {category: train / test instances, train
    types and CV groups, test types and photos}}."""
    from ..methods.classification import restrict_types

    pairs = pools.build_pairs(conf)
    notes += pools.data_notes(pairs)
    train, test, splits = pools.split_pool(conf)
    train, test = restrict_types(train, conf.get("max_types")), restrict_types(test, conf.get("max_types"))
    cats = [c for c in dict.fromkeys(i.category for i in train) if any(i.category == c for i in test)]
    if not cats:
        raise DataError("backbones: no category has both training and test instances for classification")
    for c in dict.fromkeys(i.category for i in train + test):
        if c not in cats:
            notes.append(f"classification: category {c!r} has no train/test split, left out")
    train = [i for i in train if i.category in cats and _visible(i).any()]
    test = [i for i in test if i.category in cats and _visible(i).any()]
    pair_insts: dict = {}
    for p in pairs:
        for i in (p.source, p.target):
            pair_insts.setdefault(i.id, i)
    # classification rows (the same for every layer): labels, CV groups, test units
    cls_rows = {}
    for c in cats:
        tr = [i for i in train if i.category == c]
        te = [i for i in test if i.category == c]
        by_photo = splits[c].startswith("by photo")
        ytr = np.concatenate([np.asarray(i.keypoint_names)[_visible(i)] for i in tr])
        gtr = np.concatenate([[str(i.meta.get("source_id", i.id)) if by_photo else i.id] * int(_visible(i).sum())
                              for i in tr])
        yte = np.concatenate([np.asarray(i.keypoint_names)[_visible(i)] for i in te])
        ute = np.concatenate([[_photo(i)] * int(_visible(i).sum()) for i in te])
        cls_rows[c] = {"train": tr, "test": te, "ytr": ytr, "gtr": gtr, "yte": yte, "ute": ute}
    return {"pairs": pairs, "train": train, "test": test, "splits": splits, "cats": cats, "pair_insts": pair_insts,
            "cls_rows": cls_rows}


def _measure_backbone(conf: dict, out_dir, bb, wanted: list, data: dict, matcher, proto, alpha: float, boot: dict,
                      prepared_cache: dict, seconds: dict, notes: list) -> list:
    """Every traceable layer of ``bb``: features once per image, the layers as units of work, then their
    statistics (:func:`_layer_result`) -> [LayerResult]."""
    from ..core.crops import crop_instance
    from ..methods.pair_transfer import transfer_inputs
    from ..numerics.rf.trace import GeometryError

    t_bb = time.perf_counter()
    size = int(conf.get("input_size") or bb.input_size)
    layers = []
    for l in wanted:
        try:
            bb.rf(l, size)
            layers.append(l)
        except GeometryError as exc:
            notes.append(f"{bb.name}:{l}: left out, its receptive field cannot be traced ({exc})")
    if not layers:
        return []
    geoms = {l: bb.rf(l, size) for l in layers}
    pairs, cats, cls_rows, train, test = (data[k] for k in ("pairs", "cats", "cls_rows", "train", "test"))
    crop, margin = conf.get("crop", "box"), float(conf["margin"])
    if size not in prepared_cache:
        prepared_cache[size] = (_prepare_all(data["pair_insts"], crop, margin, size),
                                {i.id: crop_instance(i, margin, size) for i in train + test})
    prep_pairs, prep_cls = prepared_cache[size]
    # one forward pass per image for all layers (skipped when ``resume`` finds every layer of this backbone
    # already measured: a resumed run does not recompute finished backbones' features)
    grids: dict = {l: {} for l in layers}
    kp: dict = {l: {} for l in layers}
    if not all_saved(conf, out_dir, "layers", [layer_key(bb.name, l) for l in layers]):
        _extract(bb, layers, geoms, prep_pairs, prep_cls, {i.id: i for i in train + test}, crop == "box",
                 int(conf.get("batch_size", 16)), grids, kp)
    seconds[f"{bb.name}: features"] = time.perf_counter() - t_bb
    # the layers are the units of work (serially, on a process pool or on Ray: ``workers`` / ``executor``):
    # each task carries its own layer's grids and keypoint features (needed by that task only, so sent once),
    # ``shared`` what every layer needs (pairs, classification labels, matcher)
    shared = {"matcher": matcher, "Cs": list(conf["Cs"]), "folds": int(conf["folds"]),
              "pairs": [transfer_inputs(p, prep_pairs) for p in pairs],
              "classification": {c: {k: cls_rows[c][k] for k in ("ytr", "gtr", "yte")} |
                                 {"train": [i.id for i in cls_rows[c]["train"]],
                                  "test": [i.id for i in cls_rows[c]["test"]]} for c in cats}}
    tasks = [(l, grids[l], kp[l]) for l in layers]
    measured = run_conf_tasks(_layer_task, tasks, conf, out_dir, "layers", shared=shared,
                              key=lambda t, b=bb.name: layer_key(b, t[0]), desc=f"{bb.name}: layers")
    out = [_layer_result(bb.name, l, size, geoms[l], res, data, prep_pairs, proto, alpha, boot)
           for l, res in zip(layers, measured)]
    seconds[f"{bb.name}: total"] = time.perf_counter() - t_bb
    return out


def _extract(bb, layers: list, geoms: dict, prep_pairs: dict, prep_cls: dict, cls_by_id: dict, shared_img: bool,
             bs: int, grids: dict, kp: dict) -> None:
    """One forward pass per image for all layers: FeatureGrids of the pair images into ``grids`` {layer: {id:
    grid}}, the keypoint features of the classification instances into ``kp`` {layer: {id: (V, C)}} (a real
    photo that is both in a pair and in the classification data goes through once when the crops are the same,
    ``shared_img``: crop="box")."""
    from ..features.base import FeatureGrid

    images = {("cls", k): v[0] for k, v in prep_cls.items()}
    images.update({("pair", k): v[0] for k, v in prep_pairs.items() if not (shared_img and k in prep_cls)})
    keys = list(images)
    for j in progress(range(0, len(keys), bs), f"{bb.name}: features", total=-(-len(keys) // bs)):
        chunk = keys[j:j + bs]
        acts = bb.extract([images[key] for key in chunk], layers, size=None, batch_size=bs)
        for n, (role, k) in enumerate(chunk):
            hw = images[(role, k)].shape[:2]
            for l in layers:
                a = acts[l][n]
                if role == "pair" or (shared_img and k in prep_pairs):
                    grids[l][k] = FeatureGrid(a.copy(), geoms[l], hw, f"{bb.name}:{l}")
                if role == "cls":
                    inst = cls_by_id[k]
                    xy = prep_cls[k][1].to_crop(inst.keypoints[_visible(inst)])
                    cr = geoms[l].pixel_to_column(xy, a.shape[:2])
                    kp[l][k] = a[cr[:, 1], cr[:, 0]].copy()
        del acts


def _layer_result(bname: str, l: str, size: int, g, out: dict, data: dict, prep_pairs: dict, proto, alpha: float,
                  boot: dict) -> LayerResult:
    """One layer's transfer PCK (:func:`convcorr.evaluation.pck.evaluate` and bootstrap intervals over pairs)
    and classification accuracy (intervals over test photos) from its unit's ``out``; appends the layer's
    bootstrap replicates (shared weights) to ``boot``."""
    from ..evaluation.pck import evaluate, pair_errors
    from ..evaluation.stats import bootstrap_ci, bootstrap_weights, type_mean, weighted_mean
    from ..methods.pair_transfer import pair_record

    pairs, cats, cls_rows = data["pairs"], data["cats"], data["cls_rows"]
    n_boot, seed = boot["n_boot"], boot["seed"]
    # -- transfer
    records = [pair_record(p, pred, prep_pairs[p.source.id][1], prep_pairs[p.target.id][1])
               for p, pred in zip(pairs, out["predictions"])]
    ev = evaluate(records, proto)
    errs, types, units, strata = [], [], [], []
    for k, r in enumerate(records):
        e, idx = pair_errors(r, proto)
        errs.append(e)
        types += [f"{r.category}/{r.names[i]}" for i in idx]
        units += [k] * len(idx)
        strata += [r.category] * len(idx)
    errs = np.concatenate(errs) if errs else np.zeros(0)
    rows = (np.array(types), np.array(units), np.array(strata))
    if boot["transfer_rows"] is None:
        boot["transfer_rows"] = rows
        boot["W_t"] = bootstrap_weights(rows[1], n_boot, seed, rows[2]) if len(errs) else None
    elif not all(np.array_equal(a, b) for a, b in zip(rows, boot["transfer_rows"])):
        raise RuntimeError("backbones: the counted transfer points differ between layers")
    stat = type_mean(rows[0]) if proto.averages[0] == "type" else weighted_mean
    pck = {a: bootstrap_ci((errs <= a).astype(float), rows[1], stat, n_boot, seed, strata=rows[2])
           for a in proto.alphas}
    W_t = boot["W_t"]
    boot["pck"].append(stat((errs <= alpha).astype(float), W_t) if W_t is not None else np.full(n_boot, np.nan))
    # -- classification
    hits, chosen, n_tr = [], {}, 0
    per_cat = {}
    for c in cats:
        h, C = out["classification"][c]
        per_cat[c] = bootstrap_ci(h, cls_rows[c]["ute"], n_boot=n_boot, seed=seed)
        hits.append(h)
        chosen[c] = C
        n_tr += len(cls_rows[c]["ytr"])
    hits = np.concatenate(hits)
    units_cls, cat_of = boot["units_cls"], boot["cat_of"]
    acc_stat = type_mean(cat_of)  # mean over categories of each category's accuracy
    if boot["W_c"] is None:
        boot["W_c"] = bootstrap_weights(units_cls, n_boot, seed, cat_of)
    acc = bootstrap_ci(hits, units_cls, acc_stat, n_boot, seed, strata=cat_of)
    boot["acc"].append(acc_stat(hits, boot["W_c"]))
    return LayerResult(bname, l, size, float(g.size), float(g.stride), float(g.offset), out["channels"],
                       out["grid_hw"], pck, ev.overall[proto.averages[0]],
                       {c: v[proto.averages[0]] for c, v in ev.per_category.items()}, acc, per_cat, chosen,
                       len(records), int(len(errs)), n_tr, int(len(hits)), int(len(np.unique(units_cls))),
                       out["seconds"])


def _floors(pairs: list, cats: list, cls_rows: dict, prep_pairs: dict, proto, boot: dict) -> tuple[dict, float]:
    """Box-copy transfer ({alpha: Estimate}, the same pairs and statistic as the layers) and classification at
    chance (mean over categories of 1 / types)."""
    from ..evaluation.pck import pair_errors
    from ..evaluation.stats import bootstrap_ci, type_mean, weighted_mean
    from ..methods.pair_transfer import pair_record
    from ..methods.transfer import box_copy

    transfer_rows, n_boot, seed = boot["transfer_rows"], boot["n_boot"], boot["seed"]
    # crop transforms of the first input side (only "resized" protocols read them)
    bc_recs = [pair_record(p, box_copy(p.source, p.target.bbox), prep_pairs[p.source.id][1], prep_pairs[p.target.id][1])
               for p in pairs]
    bc_err = np.concatenate([pair_errors(r, proto)[0] for r in bc_recs]) if bc_recs else np.zeros(0)
    stat = type_mean(transfer_rows[0]) if proto.averages[0] == "type" else weighted_mean
    box = {a: bootstrap_ci((bc_err <= a).astype(float), transfer_rows[1], stat, n_boot, seed, strata=transfer_rows[2])
           for a in proto.alphas}
    chance = float(np.mean([1.0 / len(np.unique(cls_rows[c]["ytr"])) for c in cats]))
    return box, chance


#: a fit needs at least this many layers beyond its intercept and covariates (else it is reported as too few)
MIN_RESIDUAL_DF = 4


def _fits(results: list, reps: dict, estimates: dict, n_units: dict) -> list:
    """Plain and partial rank correlations of each measure with log rf size and log stride over finite-rf
    layers, with percentile intervals from the shared bootstrap replicates."""
    keep = np.array([not r.is_global for r in results])
    rf = np.log2([r.rf_size if not r.is_global else 1.0 for r in results])[keep]
    st = np.log2([r.stride for r in results])[keep]
    bbs = [r.backbone for r in results if not r.is_global]
    names = list(dict.fromkeys(bbs))
    dummies = np.array([[b == n for n in names[1:]] for b in bbs], float).reshape(len(bbs), -1)
    out = []
    for m, R in reps.items():
        y = np.array([e.value for e in estimates[m]])[keep]
        Y = R[keep]
        for var, x, other in (("rf size", rf, st), ("stride", st, rf)):
            for kind, cov in (("rank correlation", None),
                              ("partial rank correlation", np.concatenate([other[:, None], dummies], 1))):
                est = _corr_estimate(y, Y, x, cov, n_units[m])
                out.append(Fit(m, var, kind, est, int(keep.sum())))
    return out


def _corr_estimate(y, Y, x, cov, n_units):
    from ..evaluation.stats import Estimate

    k = 0 if cov is None else np.asarray(cov).reshape(len(y), -1).shape[1]
    if len(y) - k - 1 < MIN_RESIDUAL_DF:  # a (partial) correlation of a handful of layers is +-1 by construction
        return Estimate(float("nan"), float("nan"), float("nan"), len(y), n_units)
    point = partial_rank_correlation(y, x, cov)
    r = partial_rank_correlation(Y, x, cov)
    r = r[np.isfinite(r)]
    lo, hi = (np.quantile(r, [0.025, 0.975]) if len(r) and np.isfinite(point) else (np.nan, np.nan))
    return Estimate(float(point), float(lo), float(hi), len(y), n_units, 0.95, int(Y.shape[1]))


def answer(measure: str, fits: list) -> str:
    """One sentence: does ``measure`` track the rf, the stride, both, or neither (from the partial rank
    correlations; "not resolved" where an interval spans zero)?"""
    part = {f.variable: f.estimate for f in fits if f.kind == "partial rank correlation"}
    plain = {f.variable: f.estimate for f in fits if f.kind == "rank correlation"}
    if not part or any(not np.isfinite(e.value) for e in part.values()):
        return (f"{measure}: too few layers with a finite receptive field to fit (a fit needs at least "
                f"{MIN_RESIDUAL_DF} layers beyond the intercept and its covariates: the other variable and one "
                "indicator per additional backbone).")
    res = {v: (not e.spans_zero) for v, e in part.items()}
    desc = "; ".join(f"given the other and the backbone, rho with {v} = {part[v].fmt(2, signed=True)}"
                     for v in ("rf size", "stride"))
    plain_d = "; ".join(f"rho with {v} = {plain[v].fmt(2, signed=True)}" for v in ("rf size", "stride"))
    sign = lambda v: "rises" if part[v].value > 0 else "falls"
    if res["rf size"] and res["stride"]:
        verdict = (f"tracks BOTH: it {sign('rf size')} with the rf at fixed stride and {sign('stride')} with the "
                   "stride at fixed rf")
    elif res["rf size"]:
        verdict = (f"tracks the RECEPTIVE FIELD: at fixed stride (and backbone) it {sign('rf size')} with the rf; "
                   "its association with the stride at fixed rf is not resolved")
    elif res["stride"]:
        verdict = (f"tracks the STRIDE: at fixed rf (and backbone) it {sign('stride')} with the stride; its "
                   "association with the rf at fixed stride is not resolved")
    else:
        verdict = ("NEITHER is resolved: both partial intervals span zero (not resolved with these data; "
                   "rf and stride cannot be told apart here)")
    return f"{measure} {verdict} ({desc}; without adjustment: {plain_d})."


# ---------------------------------------------------------------------------------------------------- rendering
@register_experiment("backbones")
def main(conf: dict, out_dir: Path) -> Path:
    """Run :func:`compute` and write report.md, results.json and the figures into ``out_dir``."""
    return render(compute(conf, out_dir), out_dir)


def render(res: BackbonesResults, out_dir: Path) -> Path:
    """report.md (answer, every layer with intervals, counts), results.json, accuracy_vs_geometry.png and
    correlations.png of computed results."""
    import matplotlib

    matplotlib.use("Agg")
    t0 = time.perf_counter()
    conf = res.conf
    rep = Report(out_dir, "The study across backbones: localisation vs receptive field and stride", conf)
    a = res.alpha
    tc = res.counts["transfer"]
    rep.section("Protocol", PROTOCOL + "\n\n" +
                f"This run: dataset `{conf['dataset']}`, transfer on {tc['pairs']} pairs ({tc['points']} counted "
                f"keypoints; matcher `{conf['matchers'][0]}`, PCK protocol `{res.protocol['name']}`); classification "
                "split: " + "; ".join(f"{c}: {s}" for c, s in res.splits.items() if c in res.counts["classification"])
                + "." + ("\n\nNotes: " + "; ".join(res.notes) if res.notes else ""))
    rep.section("Answer", "\n".join(f"- {s}" for s in res.answers.values()) + "\n\n" + markdown_table(
        [{"association": f.label, "Spearman rho [95% CI]": f.estimate.fmt(2, signed=True), "layers": f.n_layers,
          "units resampled": f.estimate.n_units, "resolved": "yes" if not f.estimate.spans_zero else "no (spans 0)"}
         for f in res.fits]) +
        "\nRank correlations over the layers with a finite receptive field (log rf and log stride; ranks are "
        "unchanged by the log). Partial: ranks of the measure and of the variable are residualised on the other "
        "variable's rank and one indicator per backbone (so differences between networks do not count), then "
        "correlated. Intervals: percentile bootstrap over the independent units (pairs / test photos, within "
        "categories), the same replicates for every layer.")
    rows = [{"backbone": r.backbone, "layer": r.layer, "rf": "global" if r.is_global else f"{r.rf_size:g}",
             "stride": f"{r.stride:g}", "offset": f"{r.offset:g}", "C": r.channels,
             "grid": f"{r.grid_hw[0]}x{r.grid_hw[1]}",
             **{f"PCK@{x:g}": r.pck[x].fmt() for x in res.alphas}, "accuracy": r.accuracy.fmt()} for r in res.layers]
    rows.append({"backbone": "box copy (baseline)", "layer": "-", **{f"PCK@{x:g}": res.box_copy[x].fmt()
                                                                      for x in res.alphas},
                 "accuracy": f"chance {res.chance:.3f}"})
    best = []
    for b in dict.fromkeys(r.backbone for r in res.layers):
        rs = [r for r in res.layers if r.backbone == b]
        bp, ba = max(rs, key=lambda r: r.pck[a].value), max(rs, key=lambda r: r.accuracy.value)
        best.append({"backbone": b,
                     f"best layer for PCK@{a:g}": f"{bp.layer} (rf {bp.rf_size:g}, stride {bp.stride:g})",
                     f"PCK@{a:g}": bp.pck[a].fmt(),
                     "best layer for accuracy": f"{ba.layer} (rf {ba.rf_size:g}, stride {ba.stride:g})",
                     "accuracy": ba.accuracy.fmt()})
    rep.section("Best layer of each backbone", markdown_table(best))
    rep.section("Every layer", markdown_table(rows) + "\n" +
                f"Input side {sorted({r.input_size for r in res.layers})} px (each backbone's own unless "
                f"`input_size` is set); PCK: {res.protocol['averages'][0]} average, 95% CI over {tc['pairs']} pairs; "
                "accuracy: mean over categories, 95% CI over test photos. What the numbers rest on:\n\n" +
                markdown_table([{"category": c, **v} for c, v in tc["per_category"].items()], floatfmt="{:g}") + "\n" +
                markdown_table([{"category": c, **v} for c, v in res.counts["classification"].items()],
                               floatfmt="{:g}"))
    _scatter(rep, res)
    _forest(rep, res)
    rep.results.update({"layers": [r.to_dict() for r in res.layers], "fits": [f.to_dict() for f in res.fits],
                        "answers": res.answers, "alpha": a, "alphas": list(res.alphas), "protocol": res.protocol,
                        "counts": res.counts, "splits": res.splits, "notes": res.notes, "seconds": res.seconds,
                        "box_copy": {x: e.to_dict() for x, e in res.box_copy.items()}, "chance": res.chance})
    total = res.seconds.get("total", 0.0) + time.perf_counter() - t0
    rep.results["total_seconds"] = total
    rep.section("Runtime", f"{total:.1f} s in total on this machine; " + ", ".join(
        f"{k} {v:.1f} s" for k, v in res.seconds.items() if k != "total") + ".")
    return rep.save()


def _scatter(rep: Report, res: BackbonesResults) -> None:
    import matplotlib.pyplot as plt

    a = res.alpha
    bbs = list(dict.fromkeys(r.backbone for r in res.layers))
    colours = {b: plt.cm.tab10(k % 10) for k, b in enumerate(bbs)}
    finite = [r.rf_size for r in res.layers if not r.is_global]
    glob_x = (max(finite) if finite else 100.0) * 2.0
    fig, axes = plt.subplots(2, 2, figsize=(10.5, 7.0), layout="constrained")
    measures = [(f"transfer PCK@{a:g}", lambda r: r.pck[a]), ("classification accuracy", lambda r: r.accuracy)]
    for row, (label, get) in enumerate(measures):
        for col, var in enumerate(("rf size", "stride")):
            ax = axes[row, col]
            for k, b in enumerate(bbs):
                rs = [r for r in res.layers if r.backbone == b]
                if var == "rf size":
                    x = np.array([glob_x if r.is_global else r.rf_size for r in rs])
                else:  # spread backbones a little around each stride so error bars do not overlap
                    x = np.array([r.stride for r in rs]) * 2 ** (0.06 * (k - (len(bbs) - 1) / 2))
                e = np.array([[get(r).value, get(r).lo, get(r).hi] for r in rs], float)
                fin = np.array([not r.is_global for r in rs])
                err = np.abs(np.stack([e[:, 0] - e[:, 1], e[:, 2] - e[:, 0]]))
                ax.errorbar(x[fin], e[fin, 0], yerr=np.nan_to_num(err[:, fin]), fmt="o-" if var == "rf size" else "o",
                            ms=3.5, lw=1.0, capsize=2, elinewidth=0.7, color=colours[b], label=b)
                if (~fin).any():
                    ax.errorbar(x[~fin], e[~fin, 0], yerr=np.nan_to_num(err[:, ~fin]), fmt="^", ms=6, mfc="none",
                                capsize=2, color=colours[b])
            floor = res.box_copy[a] if row == 0 else None
            if floor is not None and np.isfinite(floor.value):
                ax.axhline(floor.value, color="0.4", ls="--", lw=0.9, label="box copy" if col == 0 else None)
                ax.axhspan(floor.lo, floor.hi, color="0.5", alpha=0.12, lw=0)
            elif row == 1:
                ax.axhline(res.chance, color="0.4", ls="--", lw=0.9, label="chance" if col == 0 else None)
            ax.set_xscale("log", base=2)
            if var == "rf size" and any(r.is_global for r in res.layers):
                ax.axvline(glob_x / 1.4, color="0.6", ls=":", lw=0.8)
                ax.text(glob_x, ax.get_ylim()[1], "global", ha="center", va="top", fontsize=7)
            ax.set_xlabel("receptive-field size (px, log scale)" if var == "rf size" else "stride (px, log scale)")
            ax.set_ylabel(label)
            fit = next((f for f in res.fits if f.measure == label and f.variable == var
                        and f.kind == "rank correlation"), None)
            pf = next((f for f in res.fits if f.measure == label and f.variable == var
                       and f.kind == "partial rank correlation"), None)
            if fit is not None:
                ax.set_title(f"rho = {fit.estimate.fmt(2, signed=True)}; partial {pf.estimate.fmt(2, signed=True)}",
                             fontsize=8)
    axes[0, 0].legend(fontsize=7)
    axes[1, 0].legend(fontsize=7)
    rep.figure(fig, "accuracy_vs_geometry.png",
               f"Transfer PCK@{a:g} (top) and keypoint-classification accuracy (bottom) of every layer against its "
               "receptive-field size (left) and stride (right), one colour per backbone, layers joined in network "
               "order (left); error bars: 95% bootstrap intervals (pairs / test photos). Titles: Spearman rho over the "
               "layers and the partial rho (given the other variable and the backbone) with 95% intervals. "
               "Hollow triangles: layers with a global receptive field (left out of the fits). Dashed: the box-copy "
               "baseline with its interval (top) and chance (bottom).")


def _forest(rep: Report, res: BackbonesResults) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.0, 0.38 * len(res.fits) + 0.9), layout="constrained")
    for k, f in enumerate(res.fits):
        e = f.estimate
        y = len(res.fits) - 1 - k
        c = "k" if not e.spans_zero else "0.55"
        if np.isfinite(e.value):  # the interval as a bar (a percentile interval need not contain the estimate)
            if np.isfinite(e.lo) and np.isfinite(e.hi):
                ax.plot([e.lo, e.hi], [y, y], "-|", color=c, ms=6)
            ax.plot([e.value], [y], "s" if "partial" in f.kind else "o", color=c)
    ax.axvline(0, color="r", lw=0.8)
    ax.set_yticks(range(len(res.fits)), [f.label for f in res.fits][::-1], fontsize=7)
    ax.set_xlim(-1.05, 1.05)
    ax.set_xlabel("Spearman rho over layers (95% bootstrap interval)")
    rep.figure(fig, "correlations.png", "Rank correlations of each measure with rf size and stride (circles) and "
               "partial ones given the other variable and the backbone (squares); grey: the interval spans zero "
               "(not resolved).")
