"""Pair benchmark: dense features x matchers (x the box-copy baseline) on pair data sets, PCK under explicit
protocols.

For every pair (source, target) of the configured data (:func:`convcorr.datasets.pools.build_pairs`: synthetic
warped pairs and cross-instance pairs of the embedded photos by default; SPair-71k, PF-PASCAL, PF-WILLOW,
CUB-200-2011, AP-10K, any COCO keypoint JSON, Berkeley PASCAL with ``--set dataset=...``), both images are
prepared the same way (``crop="box"``: the instance box + ``margin`` on every side, the paper's setting and
Table 2's; ``crop="image"``: the whole image, as SPair/PF benchmarks do; then resized to ``input_size`` x
``input_size``
pixels, which may change the aspect ratio), every feature spec (``convcorr.get_features``) gives one grid per
image, every matcher (``convcorr.matchers.get_matcher``) aligns the source grid to the target grid, and the
source keypoints are moved to the target through the matcher's forward pixel map
(``Correspondence.transfer``: no inversion needed), then mapped back to original target pixels.
``box-copy`` (the paper's "NN transfer" without retrieval) copies the source keypoints into the target box in
normalised box coordinates: it knows the target box and nothing else, so it is the floor that a matcher must
beat.

PCK: every protocol in ``pck_protocols`` (presets of :data:`convcorr.evaluation.pck.PROTOCOLS` or dicts of
:class:`convcorr.evaluation.pck.PCKProtocol` fields) is applied to the same predictions; the first is the headline.
The full protocol of each is recorded in results.json, with per-pair values (``per_pair``: the independent
unit for bootstrap confidence intervals; ``confidence`` is left empty for :mod:`convcorr.evaluation.stats`).

Parallel runs (``--workers N``, ``--executor ray``, ``--resume``; :mod:`convcorr.experiments.workers`): the pairs
are the units of work; each category's feature grids are computed once per image in the calling process and
handed to every worker once; with ``resume`` every pair's result is kept under ``tasks/`` and a re-run computes
only the missing pairs. Results are the same for every setting (``seconds`` sum the pairs' own times).
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.errors import ConfigError
from ..datasets import pools
from ..evaluation.pck import evaluate, get_protocol, pck_vs_alpha
from ..methods.pair_transfer import pair_record, prepare, transfer_by_matcher, transfer_inputs
from ..methods.transfer import box_copy
from ..viz.report import Report, markdown_table
from . import register_experiment
from .options import Option
from .workers import all_saved, run_conf_tasks, with_parallel_options

#: the report's Protocol section, written for a reader (Markdown): what is measured, on which data, how it
#: is scored, and what the paper did
PROTOCOL = """\
**What is measured.** How precisely dense features and matchers carry keypoints from one image to another on
image pairs with annotated keypoints, compared with a baseline that only knows the target's box. This extends Table
2 of the paper (which transfers from retrieved neighbours) to the pair data sets used by later work.

**Pairs.** Each pair is a source and a target image of the configured data: by default synthetic warps of the
embedded photos and cross-instance pairs of different photos of one category; with a dataset option SPair-71k,
PF-PASCAL, PF-WILLOW, CUB-200-2011, AP-10K, any COCO keypoint file or Berkeley PASCAL.

**Method.** Both images are prepared the same way: cropped to the instance box plus a margin (the paper's setting)
or kept whole (as SPair and PF benchmarks do), then resized to a square input, which may change the aspect ratio.
Every dense feature gives one feature grid per image, every matcher aligns the source grid to the target grid, and
the source keypoints are moved to the target through the matcher's pixel map and mapped back to original target
pixels. Box-copy copies the source keypoints into the target box in normalised box coordinates: it knows the target
box and nothing else, so it is the floor a matcher must beat.

**PCK.** A predicted keypoint is correct when it lies within alpha x L of the true position, where L is fixed by
the protocol (the larger side of the target box, of the target image, or of the keypoints' extent) and so are the
alpha values, the resolution distances are measured at and how results are averaged (over keypoints, pairs,
keypoint types or categories). Every listed protocol is applied to the same predictions; the first is the headline,
and results.json records each protocol in full, with per-pair values for interval estimates.

**The paper.** Long, Zhang and Darrell (NIPS 2014) scored transfers by PCK at alpha 0.1, 0.05 and 0.025 of the
larger side of the target box, averaged over keypoint types (protocol paper); the other protocols follow the
published conventions of later work (DIFT, SD-DINO, HPF, CATs), named after them.
"""

_METHODS = {
    "features": ["alexnet:conv4", "sift"], "matchers": ["flow", "nn"], "baselines": ["box-copy"],
    "matcher_options": {"flow": {"radius_px": 64.0, "n_iter": 8}}, "crop": "box", "margin": 0.1,
    "input_size": 227,
    "n_gallery": 3, "gallery_method": None, "n_boot": 1000,
}
CONFIGS = {
    # offline, a few minutes on 2 cores: synthetic warps of every photo + cross-instance pairs of the photos
    "default": pools.with_data_options({
        "dataset": "embedded", "categories": ["face", "horse10", "animalpose", "zebra"], "pairs": "both",
        "n_synthetic_pairs": 4, "max_pairs": 10, "pck_protocols": ["paper", "dift-spair"], **_METHODS}, pairs=True),
    # SPair-71k test split under DIFT's protocol (target bbox max side, alpha 0.1, per image and per point)
    "spair": pools.with_data_options({
        "dataset": "spair", "split": "test", "pck_protocols": ["dift-spair", "sd-dino-spair", "paper"],
        **dict(_METHODS, crop="image", input_size=448)}, pairs=True),
    # PF-PASCAL test pairs: alpha_img as HPF / CATs
    "pf-pascal": pools.with_data_options({
        "dataset": "pf-pascal", "pck_protocols": ["cats-pfpascal", "hpf-pfpascal", "paper"],
        **dict(_METHODS, crop="image", input_size=448)}, pairs=True),
    # PF-WILLOW: alpha_bbox (keypoint extent) as HPF / CATs
    "pf-willow": pools.with_data_options({
        "dataset": "pf-willow", "pck_protocols": ["cats-pfwillow", "hpf-pfwillow", "paper"],
        **dict(_METHODS, crop="image", input_size=448)}, pairs=True),
    # any COCO keypoint JSON + image folder: cross-instance pairs of one category
    "coco": pools.with_data_options({
        "dataset": "coco", "pairs": "cross", "max_pairs": 50, "pck_protocols": ["paper", "dift-spair"],
        **_METHODS}, pairs=True),
}
#: parallel matching loop: ``workers``, ``executor``, ``ray_address``, ``resume`` (convcorr.experiments.workers);
#: the pairs are the units of work. Results are identical for any setting.
CONFIGS = with_parallel_options(CONFIGS)
OPTIONS = [
    Option("n_gallery", int, "pairs drawn in the gallery figure: the n best and the n worst of gallery_method"),
    Option("gallery_method", (str, None), "method drawn in the gallery (None: the first matcher method)"),
]

BOX_COPY = "box-copy"


@dataclass
class PairsResults:
    """What :func:`compute` measured (rendering lives in :func:`render`).

    Attributes:
        conf: the configuration.
        methods: method labels, "<features> + <matcher>" and the baselines.
        pairs: one dict per pair: pair_id, category, kind ("synthetic" / "cross" / "listed"), source, target.
        predictions: {method: [(K, 2) predicted target points (original pixels), one per pair]}.
        pck: {protocol name: {method: PCKResult.to_dict()}}: overall, per category, counts, per_pair, protocol.
        by_kind: {method: {pair kind: {alpha: PCK}}} under the headline protocol's first average.
        seconds: {method: matching + transfer time}; feature_seconds: {feature spec: time}.
        notes: data decisions (categories ignored ...).
        headline: name of the headline protocol (the first of ``pck_protocols``).
        confidence: bootstrap CIs over pairs, {} until convcorr.evaluation.stats fills it.
        curves: PCK against alpha under the headline protocol's first average: {"alphas": [A], "curves":
            {method: {"all pairs" or category: [A] PCK}}} (figure pck_vs_alpha.png).
        gallery: the gallery's pairs: {"method", "alpha", "picks": [("best" / "worst", pair index)]} ({} when
            ``n_gallery`` is 0 or no pair has points).
        pair_list: the :class:`convcorr.core.types.Pair` objects (for figures; not written to JSON).
        predicted: {protocol name: {method: fraction of the counted points with a prediction}}.
        total_seconds: the time :func:`compute` took.
    """

    conf: dict
    methods: list
    pairs: list
    predictions: dict
    pck: dict
    by_kind: dict
    seconds: dict
    feature_seconds: dict
    notes: list
    headline: str
    confidence: dict = field(default_factory=dict)
    curves: dict = field(default_factory=dict)
    gallery: dict = field(default_factory=dict)
    pair_list: list = field(default_factory=list, repr=False)
    predicted: dict = field(default_factory=dict)
    total_seconds: float = 0.0


def method_label(features: str, matcher: str) -> str:
    return f"{features} + {matcher}"


def pair_key(k: int, pair) -> str:
    """File-name-safe name of pair ``k``'s saved result (``resume``): its index and a hash of its id, so that a
    changed pair list never reuses another pair's result."""
    pid = f"{pair.source.id} -> {pair.target.id}"
    return f"pair{k:06d}-{hashlib.sha1(pid.encode()).hexdigest()[:10]}"


def _match_pair(k: int, shared: dict) -> dict:
    """Task of the matching loop: pair ``k`` through every feature x matcher -> {method: (prediction (K, 2) in
    original target pixels, seconds)}. ``shared``: {"grids": {feature spec: {image id: FeatureGrid}},
    "matchers": {name: Matcher}, "units": {k: :func:`convcorr.methods.pair_transfer.transfer_inputs` of pair k}}."""
    sid, tid, kps, vis, tf_s, tf_t = shared["units"][k]
    out = {}
    for f, grid in shared["grids"].items():
        for mname, matcher in shared["matchers"].items():
            t0 = time.perf_counter()
            pred = transfer_by_matcher(matcher, grid[sid], grid[tid], kps, vis, tf_s, tf_t)
            out[method_label(f, mname)] = (pred, time.perf_counter() - t0)
    return out


def compute(conf: dict, out_dir: str | Path | None = None) -> PairsResults:
    """Run every feature x matcher (and baseline) on every pair; PCK under every configured protocol.

    The pairs run through :func:`convcorr.experiments.workers.run_conf_tasks` (options ``workers``,
    ``executor``, ``ray_address``, ``resume``; with ``resume`` every pair's result is kept under
    ``out_dir/tasks/pairs-<config hash>/``). Results are the same for every setting."""
    from ..features.base import get_features
    from ..matchers import get_matcher

    t0 = time.perf_counter()
    conf = dict(conf)
    pcks = [get_protocol(p) for p in (conf.get("pck_protocols") or ["paper"])]
    pairs = pools.build_pairs(conf)
    notes = pools.data_notes(pairs)
    baselines = list(conf.get("baselines") or [])
    bad = [b for b in baselines if b != BOX_COPY]
    if bad:
        raise ConfigError(f"pairs: unknown baseline(s) {bad}; available: [{BOX_COPY!r}]")
    mopts = conf.get("matcher_options") or {}
    matchers = {m: get_matcher(m, **mopts.get(m, {})) for m in conf["matchers"]}
    feats = {f: get_features(f) for f in conf["features"]}

    methods = [method_label(f, m) for f in feats for m in matchers] + baselines
    n = len(pairs)
    acc = {"preds": {m: [None] * n for m in methods}, "records": {m: [None] * n for m in methods},
           "seconds": {m: 0.0 for m in methods}, "feature_seconds": {f: 0.0 for f in feats}, "info": [None] * n}
    # one category at a time: features of its images only are held in memory (SPair: ~100 images per category);
    # they are computed here, once per image, and handed to the workers once per category (``shared``); the
    # pairs are the units of work (serially, on a process pool or on Ray: ``workers`` / ``executor``)
    by_cat: dict = {}
    for k, p in enumerate(pairs):
        by_cat.setdefault(p.source.category, []).append(k)
    for cat, idx in by_cat.items():
        _match_category(conf, out_dir, cat, idx, pairs, feats, matchers, baselines, acc)
    preds, records, info = acc["preds"], acc["records"], acc["info"]

    pck = {}
    for proto in pcks:
        pck[proto.name] = {m: evaluate(records[m], proto).to_dict() for m in methods}
    head = pcks[0]
    avg = head.averages[0]
    by_kind = {}
    for m in methods:
        by_kind[m] = {}
        for kind in dict.fromkeys(i["kind"] for i in info):
            sub = [r for r, i in zip(records[m], info) if i["kind"] == kind]
            by_kind[m][kind] = evaluate(sub, head).overall[avg]
    res = PairsResults(conf, methods, info, preds, pck, by_kind, acc["seconds"], acc["feature_seconds"], notes,
                       head.name, pair_list=list(pairs))
    res.confidence = confidence_intervals(res, int(conf.get("n_boot", 1000)), int(conf.get("seed", 0)))
    res.curves = pck_curves(res, avg)
    res.gallery = gallery_picks(res, conf)
    res.predicted = {n: {m: predicted_fraction(r) for m, r in per_m.items()} for n, per_m in pck.items()}
    res.total_seconds = time.perf_counter() - t0
    return res


def _match_category(conf: dict, out_dir, cat: str, idx: list, pairs: list, feats: dict, matchers: dict,
                    baselines: list, acc: dict) -> None:
    """The pairs ``idx`` of category ``cat``: its images prepared and their feature grids computed once (unless a
    resumed run has every pair saved), the pairs matched as units of work, the baselines run, and everything
    stored into ``acc`` (predictions, PCK records, pair info and seconds by pair index)."""
    size, crop, margin = int(conf["input_size"]), conf["crop"], float(conf["margin"])
    insts = {}
    for k in idx:
        for i in (pairs[k].source, pairs[k].target):
            insts.setdefault(i.id, i)
    prepared = {key: prepare(i, crop, margin, size) for key, i in insts.items()}
    ids = list(prepared)
    grids = {f: {} for f in feats}
    # a resumed run does not recompute the features of a category whose pairs are all saved
    done = all_saved(conf, out_dir, "pairs", [pair_key(k, pairs[k]) for k in idx])
    for f, fe in ({} if done else feats).items():
        t0 = time.perf_counter()
        out = []
        for j in range(0, len(ids), 16):
            out += fe.compute_many([prepared[i][0] for i in ids[j:j + 16]])
        grids[f] = dict(zip(ids, out))
        acc["feature_seconds"][f] += time.perf_counter() - t0
    units = {k: transfer_inputs(pairs[k], prepared) for k in idx}
    shared = {"grids": grids, "matchers": matchers, "units": units}
    matched = run_conf_tasks(_match_pair, idx, conf, out_dir, "pairs", shared=shared,
                             key=lambda k: pair_key(k, pairs[k]), desc=f"pairs ({cat})")
    preds, records, seconds = acc["preds"], acc["records"], acc["seconds"]
    for k, res_k in zip(idx, matched):
        p = pairs[k]
        s, t = p.source, p.target
        (_, tf_s), (_, tf_t) = prepared[s.id], prepared[t.id]
        kind = s.meta.get("pair_kind", "listed")
        acc["info"][k] = {"pair_id": f"{s.id} -> {t.id}", "category": s.category, "kind": kind, "source": s.id,
                          "target": t.id}
        for label, (pred, sec) in res_k.items():
            seconds[label] += sec
            preds[label][k] = pred
            records[label][k] = pair_record(p, pred, tf_s, tf_t)
        for b in baselines:
            t0 = time.perf_counter()
            pred = box_copy(s, t.bbox)
            seconds[b] += time.perf_counter() - t0
            preds[b][k] = pred
            records[b][k] = pair_record(p, pred, tf_s, tf_t)


def pck_curves(res: PairsResults, avg: str) -> dict:
    """PCK against alpha (40 values in (0, 0.2]) under the headline protocol, all pairs and per category, from
    the per-pair errors: {"alphas": [A], "curves": {method: {"all pairs" or category: [A]}}}."""
    head = res.pck[res.headline]
    alphas = np.linspace(0.0, 0.2, 41)[1:]
    cats = list(next(iter(head.values()))["counts"]["per_category"])
    curves = {}
    for title, sel in [("all pairs", None)] + [(c, c) for c in cats]:
        for m in res.methods:
            pp = [p for p in head[m]["per_pair"] if sel is None or p["category"] == sel]
            curves.setdefault(m, {})[title] = pck_vs_alpha(pp, alphas, avg).tolist()
    return {"alphas": alphas.tolist(), "curves": curves}


def gallery_picks(res: PairsResults, conf: dict) -> dict:
    """The gallery's pairs: the ``n_gallery`` best and worst pairs of ``gallery_method`` (default: the first
    matcher method) by PCK at the headline protocol's first alpha, ties broken by the mean clipped error."""
    n = int(conf.get("n_gallery") or 0)
    if n <= 0:
        return {}
    head = res.pck[res.headline]
    m = conf.get("gallery_method") or next((x for x in res.methods if x != BOX_COPY), res.methods[0])
    if m not in head:
        raise ConfigError(f"pairs: gallery_method {m!r} is not among the methods {res.methods}")
    a = head[m]["protocol"]["alphas"][0]
    scored = [(k, p["pck"][a], float(np.mean(np.minimum(p["errors"], 10.0)))) for k, p in enumerate(head[m]["per_pair"])
              if p["n_points"]]
    if not scored:
        return {}
    scored.sort(key=lambda x: (-x[1], x[2]))
    best = [k for k, _, _ in scored[:n]]
    worst = [k for k, _, _ in scored[::-1][:n] if k not in best]
    return {"method": m, "alpha": a, "picks": [("best", k) for k in best] + [("worst", k) for k in worst]}


def predicted_fraction(r: dict) -> float:
    """Fraction of the counted points with a finite prediction (errors are +inf where there is none)."""
    e = np.concatenate([np.asarray(p["errors"], float) for p in r["per_pair"]]) if r["per_pair"] else np.zeros(0)
    return float(np.isfinite(e).mean()) if len(e) else float("nan")


# ------------------------------------------------------------------------------------------------- uncertainty
def _rows(r: dict, avg: str, alpha: float):
    """(values, groups, strata, statistic kind) of one method's per-pair records for a bootstrap."""
    pp = r["per_pair"]
    if avg == "pair":
        keep = [k for k, p in enumerate(pp) if p["n_points"]]
        return (np.array([pp[k]["pck"][alpha] for k in keep]), np.array(keep),
                np.array([pp[k]["category"] for k in keep]), None)
    vals = np.concatenate([np.asarray(p["errors"], float) <= alpha for p in pp]) if pp else np.zeros(0)
    groups = np.concatenate([np.full(p["n_points"], k) for k, p in enumerate(pp)]) if pp else np.zeros(0)
    cats = np.concatenate([np.full(p["n_points"], p["category"], dtype=object) for p in pp]) if pp else np.zeros(0)
    types = [f"{p['category']}/{n}" for p in pp for n in p["names"]]
    return vals.astype(float), groups, cats.astype(str), (types if avg == "type" else None)


def confidence_intervals(res: PairsResults, n_boot: int = 1000, seed: int = 0) -> dict:
    """95% cluster-bootstrap intervals over PAIRS (resampled within categories) with :mod:`convcorr.evaluation.stats`.

    Returns ``{"unit": "pair", "estimates": {protocol: {method: {average: {alpha: {...}}}}}, "differences":
    [...]}`` for protocols whose overall rule is "pooled" (a category mean would need per-category resampling
    weights; not done), and paired differences under the headline protocol (first average and alpha): every
    matcher vs box-copy and every two feature specs under the same matcher. ``{}`` when convcorr.evaluation.stats is not
    available.
    """
    try:
        from ..evaluation import stats
    except ImportError:
        return {}
    est: dict = {}
    for pname, per_m in res.pck.items():
        for m, r in per_m.items():
            proto = r["protocol"]
            if proto["overall"] != "pooled":
                continue
            for avg in proto["averages"]:
                for a in proto["alphas"]:
                    v, g, c, types = _rows(r, avg, a)
                    stat = stats.type_mean(types) if types is not None else None
                    e = stats.bootstrap_ci(v, g, stat, n_boot=n_boot, seed=seed, strata=c)
                    est.setdefault(pname, {}).setdefault(m, {}).setdefault(avg, {})[a] = e.to_dict()
    head = res.pck[res.headline]
    proto = next(iter(head.values()))["protocol"]
    avg, a = proto["averages"][0], proto["alphas"][0]
    feats = list(dict.fromkeys(m.split(" + ")[0] for m in res.methods if " + " in m))
    matchers = list(dict.fromkeys(m.split(" + ")[1] for m in res.methods if " + " in m))
    comps = [(m, BOX_COPY) for m in res.methods if m != BOX_COPY and BOX_COPY in res.methods]
    comps += [(method_label(f1, mt), method_label(f2, mt)) for mt in matchers
              for i, f1 in enumerate(feats) for f2 in feats[i + 1:]]
    diffs = []
    for x, y in comps:
        vx, g, c, types = _rows(head[x], avg, a)
        vy = _rows(head[y], avg, a)[0]
        stat = stats.type_mean(types) if types is not None else None
        d = stats.paired_difference(vx, vy, g, stat, n_boot=n_boot, seed=seed, strata=c)
        diffs.append({"a": x, "b": y, "protocol": res.headline, "average": avg, "alpha": a, **d.to_dict(),
                      "verdict": stats.verdict(d, x, y)})
    return {"unit": "pair (resampled within categories)", "n_boot": n_boot, "estimates": est, "differences": diffs}


# ---------------------------------------------------------------------------------------------------- rendering
def _fmt_alpha(a: float) -> str:
    return f"{a:g}"


def _fmt_ci(d: dict) -> str:
    lo, hi = d.get("ci95", [float("nan")] * 2)
    v = d["value"]
    return "n/a" if v is None or not np.isfinite(v) else f"{v:.3f} [{lo:.3f}, {hi:.3f}]"


@register_experiment("pairs")
def main(conf: dict, out_dir: Path) -> Path:
    """:func:`compute`, then :func:`render` into ``out_dir``."""
    return render(compute(conf, out_dir), out_dir)


def _protocol_text(res: PairsResults) -> str:
    conf = res.conf
    counts = next(iter(res.pck[res.headline].values()))["counts"]
    kinds = {}
    for i in res.pairs:
        kinds[i["kind"]] = kinds.get(i["kind"], 0) + 1
    return (PROTOCOL + "\n\n"
            f"This run: dataset `{conf['dataset']}`, {counts['pairs']} pairs "
            f"({', '.join(f'{n} {k}' for k, n in kinds.items())}), {counts['points']} keypoints counted under "
            f"the headline protocol; crop `{conf['crop']}` (margin {conf['margin']}) resized to "
            f"{conf['input_size']} x {conf['input_size']} px.\n\n" +
            "PCK protocols (first = headline):\n\n" +
            "\n".join(f"- `{n}`: threshold {p0['protocol']['threshold']} ({p0['protocol']['size']} side), "
                      f"alphas {p0['protocol']['alphas']}, averages {p0['protocol']['averages']} then "
                      f"{p0['protocol']['overall']}, {p0['protocol']['resolution']} resolution, "
                      f"{'visible in both' if p0['protocol']['visible_in_both'] else 'all target points'}; "
                      f"source: {p0['protocol']['reference'] or '-'}"
                      for n, d in res.pck.items() for p0 in [next(iter(d.values()))]) +
            ("\n\nData notes: " + "; ".join(res.notes) if res.notes else ""))


def render(res: PairsResults, out_dir: Path) -> Path:
    """report.md (protocols, PCK tables, intervals, per category and pair kind), results.json, pck_vs_alpha.png
    and gallery.png of computed results."""
    import matplotlib

    matplotlib.use("Agg")
    t0 = time.perf_counter()
    conf = res.conf
    rep = Report(out_dir, "Pair benchmark: dense features x matchers, PCK under explicit protocols", conf)
    head = res.pck[res.headline]
    proto = next(iter(head.values()))["protocol"]
    alphas = proto["alphas"]
    counts = next(iter(head.values()))["counts"]
    rep.section("Protocol", _protocol_text(res))
    for pname, per_m in res.pck.items():
        p = next(iter(per_m.values()))["protocol"]
        cols = ["method"] + [f"{avg} PCK@{_fmt_alpha(a)}" for avg in p["averages"] for a in p["alphas"]]
        rows = [{"method": m, **{f"{avg} PCK@{_fmt_alpha(a)}": r["overall"][avg][a] for avg in p["averages"]
                                 for a in p["alphas"]}, "predicted": res.predicted[pname][m], "seconds": res.seconds[m]}
                for m, r in per_m.items()]
        rep.section(f"PCK, protocol `{pname}`" + (" (headline)" if pname == res.headline else ""),
                    markdown_table(rows, cols + (["predicted", "seconds"] if pname == res.headline else [])) +
                    f"\n{counts['pairs']} pairs, {per_m[res.methods[0]]['counts']['points']} points, "
                    f"{per_m[res.methods[0]]['counts']['types']} keypoint types." +
                    (" `predicted`: fraction of the counted points that got a prediction (sparse matchers such as "
                     "mnn leave some out; those count as wrong). `seconds`: matching + transfer."
                     if pname == res.headline else ""))
    if res.confidence:
        ci = res.confidence["estimates"].get(res.headline, {})
        rows = [{"method": m, **{f"{av} PCK@{_fmt_alpha(a)}": _fmt_ci(ci[m][av][a]) for av in ci[m]
                                 for a in ci[m][av]}} for m in ci]
        rep.section("95% confidence intervals (bootstrap over pairs)",
                    markdown_table(rows) + f"\nUnit: {res.confidence['unit']}, {res.confidence['n_boot']} "
                    "replicates (convcorr.evaluation.stats). Paired differences (same pairs, same replicates):\n\n" +
                    "\n".join(f"- {d['verdict']}" for d in res.confidence["differences"]))
    else:
        rep.section("Confidence intervals", "Not computed: convcorr.evaluation.stats is not available in this installation. "
                    "Per-pair values are kept in results.json (`pck.<protocol>.<method>.per_pair`).")
    avg = proto["averages"][0]
    cat_rows = []
    for c, cc in counts["per_category"].items():
        for m in res.methods:
            v = head[m]["per_category"][c][avg]
            cat_rows.append({"category": c, "pairs": cc["pairs"], "points": cc["points"], "method": m,
                             **{f"PCK@{_fmt_alpha(a)}": v[a] for a in alphas}})
    rep.section(f"PCK per category (`{res.headline}`, {avg} average)",
                markdown_table(cat_rows, ["category", "pairs", "points", "method"] +
                               [f"PCK@{_fmt_alpha(a)}" for a in alphas]))
    kind_rows = [{"method": m, **{f"{k} PCK@{_fmt_alpha(a)}": v[a] for k, v in res.by_kind[m].items()
                                  for a in alphas[:1]}} for m in res.methods]
    rep.section("Same-instance (synthetic warp) vs cross-instance pairs",
                markdown_table(kind_rows) + "\nSynthetic pairs are one photo and a random smooth warp of it (exact "
                "ground truth, same object); cross pairs are two different objects of one category.")
    _curves(rep, res, avg)
    _gallery(rep, res)
    rep.results.update({
        "headline_protocol": res.headline,
        "pck_protocols": {n: next(iter(d.values()))["protocol"] for n, d in res.pck.items()},
        "methods": res.methods, "pairs": res.pairs, "pck": res.pck,
        "by_kind": res.by_kind, "seconds": res.seconds, "feature_seconds": res.feature_seconds,
        "notes": res.notes, "confidence": res.confidence,
        "predictions": {m: [p.tolist() for p in v] for m, v in res.predictions.items()},
    })
    total = res.total_seconds + time.perf_counter() - t0
    rep.results["total_seconds"] = total
    rep.section("Runtime", f"{total:.1f} s in total; features: " +
                ", ".join(f"{f} {s:.1f} s" for f, s in res.feature_seconds.items()) + "; matching: " +
                ", ".join(f"{m} {s:.1f} s" for m, s in res.seconds.items()) + ".")
    return rep.save()


def _curves(rep: Report, res: PairsResults, avg: str) -> None:
    import matplotlib.pyplot as plt

    head = res.pck[res.headline]
    alphas, curves = np.array(res.curves["alphas"]), res.curves["curves"]
    titles = list(next(iter(curves.values())))
    n = len(titles)
    ncol = min(n, 3)
    nrow = int(np.ceil(n / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.2 * nrow), squeeze=False)
    for k, title in enumerate(titles):
        ax = axes.flat[k]
        for m in res.methods:
            ax.plot(alphas, curves[m][title], "--" if m == BOX_COPY else "-", label=m,
                    color="0.5" if m == BOX_COPY else None)
        for a in next(iter(head.values()))["protocol"]["alphas"]:
            ax.axvline(a, color="0.85", lw=0.8, zorder=0)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("alpha")
        ax.set_ylabel(f"PCK ({avg} average)")
        ax.set_ylim(0, 1)
        ax.set_xlim(0, alphas[-1])
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="lower right")
    rep.results["pck_vs_alpha"] = res.curves
    rep.figure(fig, "pck_vs_alpha.png", f"PCK vs alpha under `{res.headline}` ({avg} average; vertical lines: the "
               "protocol's alphas), all pairs and per category.")


def _gallery(rep: Report, res: PairsResults) -> None:
    import matplotlib.pyplot as plt

    if not res.gallery:
        return
    head = res.pck[res.headline]
    m, a, sel = res.gallery["method"], res.gallery["alpha"], res.gallery["picks"]
    pairs = res.pair_list
    fig, axes = plt.subplots(len(sel), 2, figsize=(6.0, 2.8 * len(sel)), squeeze=False)
    for row, (tag, k) in enumerate(sel):
        p = pairs[k]
        s, t = p.source, p.target
        pred = res.predictions[m][k]
        tidx = {nm: i for i, nm in enumerate(t.keypoint_names)}
        axes[row, 0].imshow(s.load())
        axes[row, 1].imshow(t.load())
        for i, nm in enumerate(s.keypoint_names):
            if not s.visible[i]:
                continue
            col = plt.cm.tab20(i % 20)
            axes[row, 0].plot(*s.keypoints[i], "o", ms=4, color=col, mec="k", mew=0.5)
            if nm in tidx and t.visible[tidx[nm]] and np.all(np.isfinite(pred[i])):
                g = t.keypoints[tidx[nm]]
                axes[row, 1].plot(*g, "o", ms=4, color=col, mec="k", mew=0.5)
                axes[row, 1].plot(*pred[i], "x", ms=5, color=col, mew=1.5)
                axes[row, 1].plot([g[0], pred[i][0]], [g[1], pred[i][1]], "-", color=col, lw=0.8)
        pp = head[m]["per_pair"][k]
        axes[row, 0].set_title(f"{tag}: {s.id}", fontsize=6)
        axes[row, 1].set_title(f"{t.id}\nPCK@{a:g} = {pp['pck'][a]:.2f} ({pp['n_points']} pts, "
                               f"{res.pairs[k]['kind']})", fontsize=6)
        for ax, inst in zip(axes[row], (s, t)):
            x0, y0, x1, y1 = inst.bbox
            mx, my = 0.15 * (x1 - x0) + 5, 0.15 * (y1 - y0) + 5
            ax.set_xlim(x0 - mx, x1 + mx)
            ax.set_ylim(y1 + my, y0 - my)
            ax.axis("off")
    rep.figure(fig, "gallery.png", f"Best and worst pairs for {m} under `{res.headline}` (PCK@{a:g}): source "
               "keypoints (left, dots), target ground truth (right, dots) and predictions (crosses), joined by a "
               "line; one colour per keypoint type.")
