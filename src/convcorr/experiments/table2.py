"""Table 2 of the paper: keypoint transfer by alignment, (dense features x matcher) combinations vs box-copy.

Method (:mod:`convcorr.methods.transfer`): each query's k nearest same-category training instances by the retrieval
backbone's global feature (cosine) are matched to it by every configured matcher (``matchers``; the paper's MRF
is ``flow``, its options -- ``beta``, ``radius_px``, ``n_iter``, ``coarse_to_fine``, ``normalize`` -- in
``matcher_options["flow"]``, every matcher's in ``matcher_options[name]``) on every configured dense feature
(``features``: spec strings such as ``alexnet:conv4`` or ``sift:step=8,bin=8``, :func:`convcorr.features.base.get_features`),
their keypoints are transferred through the correspondence, the neighbours are ranked by its energy and every
keypoint type is predicted as the coordinate-wise median over the ``top`` best neighbours showing it;
``box-copy`` (in ``baselines``) copies the keypoints of the single nearest neighbour in normalised box
coordinates. Every instance is
cropped to its box (+ ``margin`` context) and resized to ``input_size`` pixels first; predictions are mapped back
exactly to original pixels. PCK at alpha 0.1 / 0.05 / 0.025 of max(box h, w), averaged over keypoint types
(``convcorr.evaluation.pck``). "random in box" is a reference: uniformly random points in the query box.

beta is chosen as in the paper, by validation (``validate_beta=True``): per (features, matcher) with a beta option,
the value of ``beta_grid`` with the best PCK@0.1 on ``n_val_queries`` validation queries per category, disjoint
from the test queries and never using one as a neighbour (figure ``beta_validation.png``). Every PCK carries a
95% bootstrap interval resampling the query PHOTOS (within categories) and the numbers of keypoints, queries and
photos it rests on; deepest conv features vs SIFT and vs box-copy are paired differences on the same keypoints.

Protocols.

* ``dataset="embedded"`` (presets ``default``, ``strict``, ``same-source``). The shared folder holds only a few real photos per category, so the data are
  real photos plus ``n_synthetic`` synthetic random smooth warps of each (``datasets.synthetic_instances``: affine +
  thin-plate deformation and a photometric change; exact keypoints). Queries are WARPED copies (``n_queries``
  per category, cycling over the photos). With ``exclude_same_source=False`` the training pool of a query is
  every other instance of its category: the other real photos, their warps, AND the query's own real photo and
  its sibling warps (only the query itself is held out). Neighbours from the query's own photo are then
  different deformations of the same object (a same-instance alignment, easier than the paper's cross-instance
  setting); the report gives the fraction of retrieved (and of top-ranked) neighbours that come from the query's
  photo (preset ``same-source``). With ``exclude_same_source=True`` (presets ``default`` and ``strict``)
  everything derived from the query's object and every instance of its photo are held out, so every alignment
  is between different object instances, the paper's setting (default categories ``face``, ``person`` and
  ``hand``: 8, 6 and 5 photos; ``strict``: faces only).
* ``dataset="berkeley"`` (the paper's protocol): PASCAL VOC 2011 instances with the Berkeley keypoint
  annotations, needs ``root`` (a folder with JPEGImages/ and the Berkeley XML annotations in annotations/; with
  ImageSets/Main/val.txt the val instances are the queries and the others the training pool, else every instance
  is a query against all other instances); k = 25, top 5, conv1..conv5 of AlexNet.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..core.errors import ConfigError
from ..datasets import pools
from ..evaluation.pck import PAPER_ALPHAS, PCKProtocol, correct, pck_curve
from ..evaluation.stats import bootstrap_ci, paired_difference, type_mean, verdict
from ..methods.transfer import InstanceMemo, KeypointTransfer, TransferConfig, make_transfer, retrieve_neighbours
from ..runtime.progress import progress
from ..viz.report import Report, markdown_table
from . import register_experiment
from .options import Option
from .workers import run_conf_tasks, with_parallel_options

#: the report's Protocol section, written for a reader (Markdown): what is measured, on which data, how it
#: is scored, and what the paper did
PROTOCOL = """\
**What is measured.** How precisely keypoints can be transferred to a query image from similar annotated images by
aligning dense features, and which features align best: conv layers of AlexNet or dense SIFT.

**Method.** For every query instance, the k most similar training instances of its category are retrieved by the
cosine similarity of a global image feature (the paper used AlexNet's fc7; the shared AlexNet copy has no fc6/fc7
weights, so the retrieval backbone's global feature stands in). Each neighbour is aligned to the query by every
configured matcher on every configured dense feature. The paper's matcher is an MRF flow as in SIFT Flow: a data
term on feature distances plus a smoothness term weighted by beta, solved by loopy belief propagation. The
neighbours' keypoints are carried through the alignment into the query, the neighbours are ranked by their alignment
energy, and every keypoint type is predicted as the coordinate-wise median over the `top` best-aligned neighbours
that show it. Before alignment every instance is cropped to its box plus a margin and resized to a square input;
predictions are mapped back exactly to the original pixels.

**Baselines.** Box-copy copies the keypoints of the single nearest neighbour in normalised box coordinates (the
paper's nearest-neighbour transfer). "Random in box" places points uniformly at random in the query box.

**beta.** When validated, beta is chosen for each (features, matcher) pair from a small grid by the best PCK at
alpha 0.1 on validation queries, which are disjoint from the test queries and never serve as neighbours.

**PCK.** A predicted keypoint is correct when it lies within alpha x max(box height, box width) of the true
position, measured in original pixels, for alpha = 0.1, 0.05 and 0.025. The fraction of correct keypoints is
computed for each keypoint type and averaged over the types. Every PCK carries a 95% bootstrap interval that
resamples query photos within categories, and the numbers of keypoints, queries and photos it rests on; the deepest
conv layer is compared with SIFT and with box-copy by paired differences on the same keypoints.

**Data.** The embedded data (presets default, strict and same-source) are the few real annotated photos per
category of the shared folder, each also present as several synthetic smooth warps (affine plus thin-plate
deformation and a photometric change, with exact keypoints); the queries are warped copies. In presets default and
strict everything derived from the query's object or photo is held out of its training pool, so every alignment is
between different object instances, as in the paper. Preset same-source keeps the query's own photo and its other
warps in the pool (an easier, same-instance alignment) and reports how often such neighbours are retrieved. Preset
paper reads PASCAL VOC 2011 instances with the Berkeley keypoint annotations.

**The paper.** Table 2 of Long, Zhang and Darrell (NIPS 2014): PASCAL VOC 2011 with the Berkeley keypoints, 25
neighbours per query, the median over the 5 best-aligned ones, alignment on AlexNet conv1 to conv5 and on SIFT,
scored by PCK at alpha 0.1, 0.05 and 0.025.
"""

#: uncertainty and beta validation (shared by the presets): ``validate_beta`` picks, per (features, matcher)
#: with a ``beta`` option, the value of ``beta_grid`` with the best PCK@0.1 on ``n_val_queries`` validation
#: queries per category (disjoint from the test queries); with ``validate_beta=False`` the matcher's ``beta``
#: (``matcher_options.flow.beta``) is used as is. ``n_boot``: bootstrap replicates of the intervals.
_STATS = {"validate_beta": True, "beta_grid": [3e-3, 3e-2, 3e-1], "n_val_queries": 1, "n_boot": 1000}
#: the flow matcher's options (``normalize``: L2-normalise feature columns first; True: the data term is in
#: [0, 4]; False: the features' raw scale, where beta must be scaled by their squared norm, see the README)
_FLOW = {"beta": 3e-3, "radius_px": 64.0, "n_iter": 8, "coarse_to_fine": False, "normalize": True}

CONFIGS = {
    "default": {
        "dataset": "embedded", "root": None, "categories": ["face", "person", "hand"], "n_synthetic": 3,
        "n_queries": 4, "exclude_same_source": True, "k": 8, "top": 5,
        "features": ["alexnet:conv4", "sift:step=8,bin=8"], "matchers": ["flow"],
        "baselines": ["box-copy"], "retrieval_backbone": "efficientnet_lite0",
        "matcher_options": {"flow": dict(_FLOW)}, "input_size": 227, "margin": 0.1, "strength": 1.0, "seed": 0,
        **_STATS,
    },
    "paper": {
        "dataset": "berkeley", "root": None, "categories": None, "n_synthetic": 0, "n_queries": None,
        "exclude_same_source": True, "k": 25, "top": 5,
        "features": ["alexnet:conv1", "alexnet:conv2", "alexnet:conv3", "alexnet:conv4", "alexnet:conv5",
                     "sift:step=8,bin=8"], "matchers": ["flow"], "baselines": ["box-copy"],
        "retrieval_backbone": "efficientnet_lite0",
        "matcher_options": {"flow": dict(_FLOW, n_iter=10, radius_px=None, coarse_to_fine=True)},
        "input_size": 227, "margin": 0.1, "strength": 1.0, "seed": 0, **dict(_STATS, n_val_queries=10),
    },
}
CONFIGS = {k: pools.with_data_options(v) for k, v in CONFIGS.items()}
#: cross-instance protocol on the embedded faces only (every alignment between different people)
CONFIGS["strict"] = dict(CONFIGS["default"], categories=["face"], n_queries=6, exclude_same_source=True)
#: easier same-instance variant: the query's own photo and its other warps stay in the pool
CONFIGS["same-source"] = dict(CONFIGS["default"], exclude_same_source=False)
#: parallel alignment loop: ``workers``, ``executor``, ``ray_address``, ``resume`` (convcorr.experiments.workers);
#: the aligned queries are the units of work. Results are identical for any setting.
CONFIGS = with_parallel_options(CONFIGS)
#: this table's own options (the shared ones: convcorr.experiments.options.COMMON_OPTIONS)
OPTIONS = [
    Option("n_queries", (int, None), "test queries per category, cycling over the photos (None: every instance)"),
    Option("exclude_same_source", bool, "hold out everything derived from the query's object (cross-instance)"),
    Option("k", int, "nearest training instances retrieved per query (global feature, cosine)"),
    Option("top", int, "best-aligned neighbours (lowest energy) whose keypoints are combined by the median"),
    Option("retrieval_backbone", str, "backbone whose global feature retrieves the neighbours"),
    Option("validate_beta", bool, "choose flow's beta from beta_grid on validation queries (else use it as set)"),
    Option("beta_grid", list, "candidate values of beta for validate_beta", item=float),
    Option("n_val_queries", int, "validation queries per category (disjoint from the test queries)"),
]

#: the PCK protocol of this table (recorded in results.json): the paper's, where every visible query keypoint
#: counts (predictions come from several neighbours; a type no neighbour shows counts as wrong)
TABLE2_PCK = PCKProtocol("paper (Table 2)", "target-bbox", "max", PAPER_ALPHAS, "original", ("type",), "pooled",
                         False, "Long, Zhang & Darrell, NIPS 2014, Sec. 4 (Table 2)")


# -------------------------------------------------------------------------------------------------------- data
def _transfer_task(qi: int, shared: dict, full: bool = False) -> dict:
    """Task of the alignment loop: every method's prediction for query ``qi`` -> {method: (prediction (K, 2),
    details, seconds)}; ``details`` keep only order / top / energies unless ``full`` (picklable, small), plus
    "figure" (:func:`_figure_record`: warped neighbours for Figure 3) for the methods in ``shared["fig_methods"]``."""
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
        fig = _figure_record(kt, query, nb, det, p) if m in shared.get("fig_methods", ()) else None
        if not full:
            det = {k: det[k] for k in ("order", "top", "energies")}
        if fig is not None:
            det["figure"] = fig
        out[m] = (p, det, sec)
    return out


def build_pool(conf: dict) -> list:
    """All instances of the configured data (:func:`convcorr.datasets.pools.build_pool`: real photos + ``n_synthetic``
    warps of each; every data set of :mod:`convcorr.datasets.pools`, e.g. ``--set dataset=coco --set json=...``)."""
    return pools.build_pool(conf)


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
    ``exclude_same_source`` nothing derived from the query's object nor any instance of the query's photo, e.g.
    the other people of one COCO photo; for berkeley only the train split)."""
    cat = np.array([i.category for i in pool])
    src = np.array([i.meta["source_id"] for i in pool])
    photo = np.array([str(i.meta.get("photo", i.meta["source_id"])) for i in pool])
    names = np.array([hash(i.keypoint_names) for i in pool])
    split = np.array([i.meta.get("split", "") for i in pool])
    q = np.asarray(queries)
    m = (cat[q][:, None] == cat[None, :]) & (names[q][:, None] == names[None, :])
    m &= np.arange(len(pool))[None, :] != q[:, None]
    if exclude_same_source:
        m &= (src[q][:, None] != src[None, :]) & (photo[q][:, None] != photo[None, :])
    if (split == "test").any():
        m &= split[None, :] != "test"
    return m


def matcher_options(conf: dict, name: str) -> dict:
    """Options of matcher ``name``: ``conf["matcher_options"][name]`` (e.g. ``beta``, ``radius_px``, ``n_iter``,
    ``coarse_to_fine``, ``normalize`` for flow); the matcher gets no other option of ``conf``."""
    from ..matchers import MATCHERS

    if name not in MATCHERS:
        raise MATCHERS.unknown(name)
    opts = dict((conf.get("matcher_options") or {}).get(name, {}))
    if "coarse_to_fine" in opts:
        opts["coarse_to_fine"] = as_bool(opts["coarse_to_fine"], "coarse_to_fine")
    return opts


def method_configs(conf: dict, betas: dict | None = None) -> dict[str, TransferConfig]:
    """{method label: TransferConfig}: one "<features> + <matcher>" entry per (features, matcher) combination,
    then the baselines (``box-copy``).

    ``betas`` {method label: beta} sets the ``beta`` option per combination (the values chosen by validation;
    otherwise the matcher gets its ``matcher_options`` beta).
    """
    from ..features.base import get_features

    base = dict(retrieval_backbone=conf["retrieval_backbone"], k=conf["k"], top=conf["top"],
                size=conf["input_size"], margin=conf["margin"])
    out = {}
    feats = [get_features(f) for f in conf.get("features") or []]   # resolved once, validated early
    for m in conf.get("matchers") or []:
        opts = matcher_options(conf, m)
        for f in feats:
            key = f"{f.spec} + {m}"
            o = dict(opts)
            if "beta" in o and betas and key in betas:
                o["beta"] = float(betas[key])
            out[key] = TransferConfig(method="align", features=f, matcher=m, matcher_options=o, **base)
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


# ---------------------------------------------------------------------------------------------------- statistics
def point_table(records: list[tuple], alphas=PAPER_ALPHAS) -> dict:
    """Per visible keypoint of the queries: what the bootstrap resamples.

    Args:
        records: [(query Instance, prediction (K, 2))].
    Returns:
        {"correct": (N, A) bool at each alpha, "types": (N,) "category/name", "unit": (N,) the query's photo (the
        independent unit), "category": (N,), "query": (N,) query id}.
    """
    C, T, U, K, Q = [], [], [], [], []
    for q, p in records:
        v = np.asarray(q.visible, bool) & np.all(np.isfinite(q.keypoints), axis=1)
        L = np.full(int(v.sum()), q.bbox_size)
        C.append(np.stack([correct(np.asarray(p)[v], q.keypoints[v], L, float(a)) for a in alphas], 1))
        T += [f"{q.category}/{n}" for n, vv in zip(q.keypoint_names, v) if vv]
        U += [str(q.meta.get("photo", q.meta.get("source_id", q.id)))] * int(v.sum())
        K += [q.category] * int(v.sum())
        Q += [q.id] * int(v.sum())
    return {"correct": np.concatenate(C) if C else np.zeros((0, len(alphas)), bool), "types": np.array(T),
            "unit": np.array(U), "category": np.array(K), "query": np.array(Q)}


def pck_estimates(pt: dict, alphas=PAPER_ALPHAS, n_boot: int = 1000, seed: int = 0, stratify: bool = True
                  ) -> dict:
    """{alpha: Estimate} of PCK (mean over types) with a 95% interval resampling query photos (within categories
    with ``stratify``)."""
    stat = type_mean(pt["types"])
    strata = pt["category"] if stratify else None
    return {float(a): bootstrap_ci(pt["correct"][:, j], pt["unit"], stat, n_boot, seed, strata=strata)
            for j, a in enumerate(alphas)}


def paired_pck(pa: dict, pb: dict, alphas=PAPER_ALPHAS, n_boot: int = 1000, seed: int = 0) -> dict:
    """{alpha: Estimate} of PCK(a) - PCK(b) on the same keypoints, query photos resampled jointly."""
    if not (np.array_equal(pa["query"], pb["query"]) and np.array_equal(pa["types"], pb["types"])):
        raise ValueError("paired_pck: the two methods were scored on different keypoints")
    stat = type_mean(pa["types"])
    return {float(a): paired_difference(pa["correct"][:, j], pb["correct"][:, j], pa["unit"], stat, n_boot, seed,
                                        strata=pa["category"]) for j, a in enumerate(alphas)}


def counts(pt: dict) -> dict:
    """What a number rests on: keypoints, queries, distinct query photos."""
    return {"points": int(len(pt["types"])), "queries": int(len(np.unique(pt["query"]))),
            "photos": int(len(np.unique(pt["unit"])))}


def headline_pairs(methods: dict) -> list[tuple[str, str]]:
    """(a, b) method labels compared as paired differences: the last configured non-SIFT features (the deepest
    conv layer) vs the SIFT features (same matcher) and vs the baselines (box-copy), and SIFT vs the baselines."""
    aligned = {m: kt for m, kt in methods.items() if isinstance(kt, KeypointTransfer)}
    convs = [m for m, kt in aligned.items() if not kt.features.spec.startswith("sift")]
    sift = [m for m, kt in aligned.items() if kt.features.spec.startswith("sift")]
    base = [m for m in methods if m not in aligned]
    out = []
    if convs:
        same = lambda o: aligned[o].matcher.name == aligned[convs[-1]].matcher.name
        out += [(convs[-1], o) for o in sift if same(o)] + [(convs[-1], o) for o in base]
    if sift:
        out += [(sift[0], o) for o in base]
    return out


# ------------------------------------------------------------------------------------------------ beta by validation
def select_validation_queries(pool: list, conf: dict, test_queries: list[int]) -> list[int]:
    """``n_val_queries`` per category, disjoint from ``test_queries``: the next warps in :func:`select_queries`'s
    order (other deformations, cycling over the photos); for real-only data (berkeley) instances outside the test
    split, evenly spaced."""
    n = int(conf.get("n_val_queries") or 0)
    taken = set(test_queries)
    order = select_queries(pool, dict(conf, n_queries=None))
    out = []
    for c in dict.fromkeys(i.category for i in pool):
        if any(i.category == c and not i.meta.get("real") for i in pool):
            idx = [j for j in order if pool[j].category == c and j not in taken]
        else:
            idx = [j for j, i in enumerate(pool) if i.category == c and j not in taken and i.meta.get("split") != "test"]
            idx = [idx[k] for k in np.unique(np.linspace(0, len(idx) - 1, min(n, len(idx))).round().astype(int))] \
                if idx and n else []
        out += idx[:n]
    return out


def validate_beta(conf: dict, pool: list, cache: InstanceMemo, glob: np.ndarray, val_q: list[int],
                  test_q: list[int]) -> dict:
    """Choose beta per (features, matcher) with a ``beta`` option by PCK@0.1 on validation queries (None: none has).

    The validation queries' neighbours come from the same candidates as the test queries' (same category, not
    derived from the query's photo) minus the test queries themselves, so no test annotation is used.
    Returns:
        {"grid": [beta], "curves": {method: [Estimate per beta]}, "chosen": {method: beta},
         "queries": [validation query ids], "counts": {...}}; the best beta of each method (ties: the smaller).
    """
    grid = [float(b) for b in conf["beta_grid"]]
    if not grid:
        raise ValueError("table2: validate_beta=True needs a non-empty beta_grid")
    if not val_q:
        raise ValueError("table2: validate_beta=True found no validation queries disjoint from the test queries "
                         "(raise n_synthetic or n_val_queries, or set validate_beta=false)")
    mask = candidate_mask(pool, val_q, conf["exclude_same_source"])
    mask[:, test_q] = False
    nbrs = retrieve_neighbours(glob[val_q], glob, conf["k"], mask)
    flows = {m: tc for m, tc in method_configs(conf).items() if tc.method == "align" and "beta" in tc.matcher_options}
    if not flows:
        return None
    used = sorted(set(val_q) | {int(j) for j in nbrs.ravel() if j >= 0})
    for kt in {m: make_transfer(tc, cache=cache) for m, tc in flows.items()}.values():
        cache.precompute([pool[j] for j in used], kt.features)
    curves, chosen, pt = {}, {}, None
    jobs = [(m, b) for m in flows for b in grid]
    for m, b in progress(jobs, "beta validation"):
        kt = make_transfer(replace(flows[m], matcher_options=dict(flows[m].matcher_options, beta=b)), cache=cache)
        recs = [(pool[q], kt.predict_from_neighbours(pool[q], [pool[j] for j in nbrs[i] if j >= 0]))
                for i, q in enumerate(val_q)]
        pt = point_table(recs, [0.1])
        # few validation photos (often one per category): resample them across categories for a visible band
        curves.setdefault(m, []).append(pck_estimates(pt, [0.1], conf.get("n_boot", 1000), conf["seed"], False)[0.1])
    for m, ests in curves.items():
        vals = np.array([e.value for e in ests])
        chosen[m] = grid[int(np.nanargmax(vals))] if np.isfinite(vals).any() else 3e-3
    return {"grid": grid, "curves": curves, "chosen": chosen, "queries": [pool[q].id for q in val_q],
            "counts": counts(pt) if pt is not None else {}}


# ------------------------------------------------------------------------------------------------------ results
@dataclass
class Table2Results:
    """What :func:`compute` measured (rendering lives in :func:`render`).

    Attributes:
        conf: the configuration (flags read as bools).
        methods: method labels ("<features> + <matcher>", then the baselines); aligned: the aligned ones.
        feature_specs: the aligned methods' feature specs; matcher_options: {matcher: its resolved options}.
        betas: {aligned method: beta used} (those with a beta option).
        validation: beta validation (:func:`validate_beta`: grid, curves of Estimates, chosen, queries, counts)
            or None.
        queries: the test query Instances; categories: their categories in order.
        pck: {method: {alpha: PCK}} (mean over keypoint types, all queries) at :data:`TABLE2_PCK`'s alphas;
            random: the same for "random in box".
        per_category: {category: {method: {alpha: PCK}}}; per_category_ci: {category: {method: {alpha: dict}}}.
        pck_ci: {method or "random in box": {alpha: Estimate}} (95% bootstrap over query photos).
        point_counts: {method or "random in box": keypoints / queries / photos}; counts: the first method's.
        differences: {(a, b): {alpha: Estimate}} paired differences (:func:`headline_pairs`).
        rows, ci_rows, category_rows, difference_rows: the report's tables (statistics per row).
        same_source_k: fraction of the k retrieved neighbours from the query's object;
            same_source_top: {method: fraction of the used neighbours from it}.
        per_query: one dict per query: ids, neighbours, ground truth, every method's prediction, energies, rank and
            PCK@0.1.
        pool_sizes, photos, objects: {category: instances in the pool / real photos / objects}.
        figures: Figure 3's inputs (:func:`_figure_inputs`) or None.
        data: (Markdown, rows) of the embedded categories' summary, else None.
        seconds: {method: alignment + transfer time}; retrieval_seconds, validation_seconds, total_seconds.
    """

    conf: dict
    methods: list
    aligned: list
    feature_specs: list
    matcher_options: dict
    betas: dict
    validation: dict | None
    queries: list
    categories: list
    pck: dict
    random: dict
    per_category: dict
    per_category_ci: dict
    pck_ci: dict
    point_counts: dict
    counts: dict
    differences: dict
    rows: list
    ci_rows: list
    category_rows: list
    difference_rows: list
    same_source_k: float
    same_source_top: dict
    per_query: list
    pool_sizes: dict
    photos: dict
    objects: dict
    figures: dict | None
    data: tuple | None
    seconds: dict
    retrieval_seconds: float
    validation_seconds: float
    total_seconds: float = 0.0


# ---------------------------------------------------------------------------------------------------- compute
def compute(conf: dict, out_dir: str | Path | None = None) -> Table2Results:
    """Retrieval, beta validation, the alignment of every query by every method, PCK with bootstrap intervals and
    paired differences, and Figure 3's inputs.

    The aligned queries run through :func:`convcorr.experiments.workers.run_conf_tasks` (options ``workers``,
    ``executor``, ``ray_address``, ``resume``; with ``resume`` every query's result is kept under
    ``out_dir/tasks/queries-<config hash>/``). Results are the same for every setting."""
    t0 = time.perf_counter()
    conf = dict(conf, exclude_same_source=as_bool(conf["exclude_same_source"], "exclude_same_source"))
    pool, queries, cache, glob, nbrs = _retrieve(conf)
    t_retrieval = time.perf_counter() - t0
    t1 = time.perf_counter()
    val = None
    if as_bool(conf.get("validate_beta", False), "validate_beta"):
        val = validate_beta(conf, pool, cache, glob, select_validation_queries(pool, conf, queries), queries)
    t_val = time.perf_counter() - t1
    methods = {m: make_transfer(c, cache=cache)
               for m, c in method_configs(conf, val["chosen"] if val else None).items()}
    aligned = {m: kt for m, kt in methods.items() if isinstance(kt, KeypointTransfer)}
    used = sorted(set(queries) | {int(j) for j in nbrs.ravel() if j >= 0})
    for f in {kt.features.cache_key: kt.features for kt in aligned.values()}.values():
        cache.precompute([pool[j] for j in used], f)
    # Figure 3: the deepest conv features and SIFT, else the first two aligned methods
    convs = [m for m, kt in aligned.items() if not kt.features.spec.startswith("sift")]
    sifts = [m for m, kt in aligned.items() if kt.features.spec.startswith("sift")]
    fig_methods = (convs[-1:] + sifts[:1]) or list(aligned)[:2]
    # alignments of every query (the expensive part) as independent tasks: serially, on a process pool or Ray;
    # features are computed above once per instance and sent once per worker with the methods
    shared = {"pool": pool, "queries": queries, "nbrs": nbrs, "methods": methods, "fig_methods": fig_methods}
    # query 0 runs here (its full details feed the figures); the others as tasks
    first = _transfer_task(0, shared, full=True)
    rest = run_conf_tasks(_transfer_task, list(range(1, len(queries))), conf, out_dir, "queries", shared=shared,
                          key=lambda qi: f"q{qi:05d}", desc="aligned queries")
    col = _collect(pool, queries, nbrs, methods, [first] + rest)
    qs = [pool[q] for q in queries]
    st = _statistics(conf, qs, col, methods, aligned)
    cats = st.pop("categories")
    real = lambda c: [i for i in pool if i.category == c and i.meta.get("real")]
    data = None
    if conf.get("dataset", "embedded") == "embedded":
        from ..viz.report import category_report

        data = category_report(cats)
    res = Table2Results(
        conf, list(methods), list(aligned), list({kt.features.spec: kt for kt in aligned.values()}),
        {m: matcher_options(conf, m) for m in conf.get("matchers") or []},
        {m: kt.conf.matcher_options["beta"] for m, kt in aligned.items() if "beta" in kt.conf.matcher_options},
        val, qs, cats, **st, same_source_k=float(np.mean(col["same_src_k"])),
        same_source_top={m: float(np.mean(v)) for m, v in col["same_src_top"].items()},
        per_query=col["per_query"], pool_sizes={c: sum(i.category == c for i in pool) for c in cats},
        photos={c: len({i.meta.get("photo", i.meta["source_id"]) for i in real(c)}) for c in cats},
        objects={c: len({i.meta["source_id"] for i in real(c)}) for c in cats},
        figures=_figure_inputs(methods, col["fig_data"], col["per_query"], qs, {i.id: i for i in pool}),
        data=data, seconds=col["seconds"], retrieval_seconds=t_retrieval, validation_seconds=t_val)
    res.total_seconds = time.perf_counter() - t0
    return res


def _retrieve(conf: dict):
    """The pool, the test queries, the crops and global features (a InstanceMemo) and every query's k nearest
    allowed training instances -> (pool, queries, cache, global features (N, D), neighbours (Q, k))."""
    pool = build_pool(conf)
    queries = select_queries(pool, conf)
    if not queries:
        raise ConfigError("table2: no queries (check categories / n_queries / n_synthetic)")
    method_configs(conf)  # validate the options before any work
    mask = candidate_mask(pool, queries, conf["exclude_same_source"])
    cache = InstanceMemo(conf["input_size"], conf["margin"])
    for i in progress(pool, "crops"):
        cache.crop(i)
    glob = cache.global_features(pool, conf["retrieval_backbone"])
    nbrs = retrieve_neighbours(glob[queries], glob, conf["k"], mask)
    return pool, queries, cache, glob, nbrs


def _collect(pool: list, queries: list, nbrs: np.ndarray, methods: dict, results: list) -> dict:
    """The per-query task results gathered: {"preds": {method: [(query, prediction)]}, "per_query": [record],
    "fig_data": [{method: Figure-3 record}], "seconds": {method: s}, "same_src_top": {method: [fraction]},
    "same_src_k": [fraction]}."""
    preds = {m: [] for m in methods}
    per_query, fig_data, seconds = [], [], {m: 0.0 for m in methods}
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
               "photo": query.meta.get("photo"), "neighbours": [n.id for n in nb], "same_source": is_same.tolist(),
               "ground_truth": np.where(query.visible[:, None], query.keypoints, np.nan).tolist(), "methods": {}}
        fd = {}
        for m in methods:
            p, det, sec = results[qi][m]
            seconds[m] += sec
            top = det["order"][: det["top"]]
            same_src_top[m].append(is_same[top].mean())
            preds[m].append((query, p))
            rec["methods"][m] = {"prediction": p.tolist(), "energies": det["energies"].tolist(),
                                 "rank": det["order"].tolist(), "pck@0.1": _pck_of([(query, p)], [0.1])[0.1]}
            if "figure" in det:
                fd[m] = det["figure"]
        fig_data.append(fd)
        per_query.append(rec)
    return {"preds": preds, "per_query": per_query, "fig_data": fig_data, "seconds": seconds,
            "same_src_top": same_src_top, "same_src_k": same_src_k}


def _statistics(conf: dict, qs: list, col: dict, methods: dict, aligned: dict) -> dict:
    """PCK (all queries and per category), the random-in-box reference, bootstrap intervals, paired differences
    and the report's tables -> the matching :class:`Table2Results` fields (and "categories"). ``col``:
    :func:`_collect`'s output."""
    alphas, preds = TABLE2_PCK.alphas, col["preds"]
    rand_preds = random_predictions(qs, conf["seed"])
    rand = _pck_of(list(zip(qs, rand_preds)), alphas)
    curves = {m: _pck_of(lst, alphas) for m, lst in preds.items()}
    nb_, sd = int(conf.get("n_boot", 1000)), conf["seed"]
    pts = {m: point_table(lst, alphas) for m, lst in preds.items()}
    pts["random in box"] = point_table(list(zip(qs, rand_preds)), alphas)
    ests = {m: pck_estimates(pt, alphas, nb_, sd) for m, pt in pts.items()}
    a0 = float(alphas[0])
    rows = [{"method": m, **{f"PCK@{a}": v for a, v in c.items()},
             "top nbrs from query's photo": float(np.mean(col["same_src_top"][m])), "seconds": col["seconds"][m]}
            for m, c in curves.items()]
    rows.append({"method": "random in box", **{f"PCK@{a}": v for a, v in rand.items()}})
    ci_rows = [{"method": m, "beta": (methods[m].conf.matcher_options.get("beta", "") if m in aligned else ""),
                **{f"PCK@{a}": e.fmt() for a, e in ests[m].items()}, **counts(pts[m])} for m in pts]
    diffs = {(a, b): paired_pck(pts[a], pts[b], alphas, nb_, sd) for a, b in headline_pairs(methods)}
    diff_rows = [{"comparison": f"{a} - {b}", **{f"PCK@{al}": e.fmt(signed=True) for al, e in d.items()},
                  "resolved at 0.1": "no (spans 0)" if d[a0].spans_zero else "yes"} for (a, b), d in diffs.items()]
    cats = list(dict.fromkeys(q.category for q in qs))
    cat_rows, per_cat, per_cat_ci = [], {}, {}
    for c in cats:
        per_cat[c], per_cat_ci[c] = {}, {}
        for m, lst in preds.items():
            per_cat[c][m] = _pck_of([r for r in lst if r[0].category == c], alphas)
            ptc = point_table([r for r in lst if r[0].category == c], alphas)
            e = pck_estimates(ptc, alphas, nb_, sd)
            per_cat_ci[c][m] = {a: x.to_dict() for a, x in e.items()}
            cat_rows.append({"category": c, "method": m, **{f"PCK@{a}": x.fmt() for a, x in e.items()},
                             **counts(ptc)})
        rnd = _pck_of([(q, r) for q, r in zip(qs, rand_preds) if q.category == c], alphas)
        cat_rows.append({"category": c, "method": "random in box", **{f"PCK@{a}": v for a, v in rnd.items()}})
    return {"pck": curves, "random": rand, "per_category": per_cat, "per_category_ci": per_cat_ci,
            "pck_ci": ests, "point_counts": {m: counts(pt) for m, pt in pts.items()},
            "counts": counts(pts[next(iter(methods))]), "differences": diffs, "rows": rows, "ci_rows": ci_rows,
            "category_rows": cat_rows, "difference_rows": diff_rows, "categories": cats}


def _figure_inputs(methods: dict, fig_data: list, per_query: list, qs: list, by_id: dict) -> dict | None:
    """Figure 3's inputs: queries ranked by the deepest conv method's mean normalised error, the good / typical /
    bad one with its crop and ground truth, its five neighbours' crops and keypoints and every shown method's
    warped neighbours (None when no method recorded figure data)."""
    from ..viz.figures import pick_by_rank

    if not fig_data or not fig_data[0]:
        return None
    conv = next(iter(fig_data[0]))
    # rank queries by the deepest conv layer's mean normalised error of its prediction (lower = better)
    err = []
    for q, rec in zip(qs, per_query):
        p = np.array(rec["methods"][conv]["prediction"], float)
        v = q.visible
        err.append(-float(np.nanmean(np.linalg.norm(p[v] - q.keypoints[v], axis=1)) / q.bbox_size))
    kt0 = methods[conv]
    picks = {}
    for kind, qi in pick_by_rank(err).items():
        q = qs[qi]
        crop_q, tq = kt0.crop(q)
        nbrs = []
        for j, nid in enumerate(per_query[qi]["neighbours"][:5]):
            n = by_id[nid]
            nbrs.append((kt0.crop(n)[0], kt0.crop(n)[1].to_crop(np.where(n.visible[:, None], n.keypoints, np.nan)),
                         f"neighbour {j + 1}\n{_short(nid)}"))
        picks[kind] = {"query": q.id, "index": qi, "rank": sorted(err, reverse=True).index(err[qi]) + 1,
                       "crop": crop_q, "ground_truth": tq.to_crop(np.where(q.visible[:, None], q.keypoints, np.nan)),
                       "neighbours": nbrs, "methods": dict(fig_data[qi])}
    return {"method": conv, "errors": err, "picks": picks}


# ---------------------------------------------------------------------------------------------------- rendering
@register_experiment("table2")
def main(conf: dict, out_dir: Path) -> Path:
    """:func:`compute`, then :func:`render` into ``out_dir``."""
    return render(compute(conf, out_dir), out_dir)


def render(res: Table2Results, out_dir: Path) -> Path:
    """report.md, results.json, pck_vs_alpha.png, beta_validation.png and the Figure-3 panels
    (alignment_<kind>.png) of computed results."""
    import matplotlib

    matplotlib.use("Agg")
    t0 = time.perf_counter()
    conf, val, cnt = res.conf, res.validation, res.counts
    rep = Report(out_dir, "Table 2: keypoint transfer by alignment (features x matchers vs box-copy)", conf)
    rep.results["pck_protocol"] = TABLE2_PCK.to_dict()
    cols = ["method"] + [f"PCK@{float(a)}" for a in TABLE2_PCK.alphas]
    rep.section("Protocol", _protocol_text(res))
    if res.data is not None:
        md, rep.results["data"] = res.data
        rep.section("Data (real photos before warping)", md)
    nb_ = int(conf.get("n_boot", 1000))
    rep.section("PCK with 95% intervals (mean over keypoint types)",
                markdown_table(res.ci_rows, ["method", "beta", *cols[1:], "points", "queries", "photos"]) +
                f"\nIntervals: 95% percentile bootstrap ({nb_} replicates) resampling the queries' PHOTOS (the "
                "independent unit: all keypoints of one photo's warps move together) within each category; with "
                "few photos per category (below ~10) percentile intervals are too narrow, read them as a lower "
                "bound on the uncertainty. "
                f"These numbers rest on {cnt['points']} keypoints of {cnt['queries']} queries from {cnt['photos']} "
                "distinct photos.")
    a0 = float(TABLE2_PCK.alphas[0])
    rep.section("Paired differences (same keypoints, photos resampled jointly)",
                markdown_table(res.difference_rows, ["comparison", *cols[1:], "resolved at 0.1"]) + "\n"
                + "\n".join(f"- {verdict(d[a0], a, b)}" for (a, b), d in res.differences.items()))
    rep.section("PCK (mean over keypoint types), all queries: point estimates and timing",
                markdown_table(res.rows, cols + ["top nbrs from query's photo", "seconds"]) +
                "\n`top nbrs from query's photo`: fraction of the neighbours actually used (the top by energy; the "
                "single nearest for box-copy) that are warps/the photo of the query's own object. `seconds`: "
                "alignment + transfer time of the method.")
    rep.section("PCK per category (95% intervals over the category's query photos)",
                markdown_table(res.category_rows, ["category"] + cols + ["points", "queries", "photos"]))
    rep.results.update({
        "pck": res.pck, "random": res.random, "per_category": res.per_category, "rows": res.rows,
        "category_rows": res.category_rows,
        "pck_ci": {m: {a: e.to_dict() for a, e in v.items()} for m, v in res.pck_ci.items()},
        "per_category_ci": res.per_category_ci, "counts": cnt,
        "paired_differences": [{"a": a, "b": b, "alpha": al, **e.to_dict(), "resolved": not e.spans_zero}
                               for (a, b), d in res.differences.items() for al, e in d.items()],
        "beta": res.betas,
        "beta_validation": None if val is None else {
            "grid": val["grid"], "chosen": val["chosen"], "queries": val["queries"], "counts": val["counts"],
            "pck@0.1": {m: [e.to_dict() for e in v] for m, v in val["curves"].items()}},
        "same_source_fraction_k": res.same_source_k, "same_source_fraction_top": res.same_source_top,
        "per_query": res.per_query, "n_queries": len(res.queries), "pool_sizes": res.pool_sizes,
        "photos": res.photos, "objects": res.objects, "method_seconds": res.seconds,
        "retrieval_seconds": res.retrieval_seconds, "validation_seconds": res.validation_seconds,
    })
    _plots(rep, res)
    total = res.total_seconds + time.perf_counter() - t0
    rep.results["seconds"] = total
    rep.section("Runtime", f"{total:.1f} s in total ({res.retrieval_seconds:.1f} s crops + global features, "
                f"{res.validation_seconds:.1f} s beta validation); per method: "
                + ", ".join(f"{m} {s:.1f} s" for m, s in res.seconds.items()) + ".")
    return rep.save()


def _protocol_text(res: Table2Results) -> str:
    conf, qs, cats = res.conf, res.queries, res.categories
    proto = ("strict cross-instance: everything derived from the query's object or photo is held out"
             if conf["exclude_same_source"] else
             "the query's own photo and its sibling warps stay in the training pool (only the query is held out)")
    beta_txt = (f"beta chosen per (features, matcher) by validation ({_beta_text(res.validation)})"
                if res.validation else "beta as in matcher_options (fixed)")
    return (PROTOCOL + "\n\n"
            f"This run: dataset `{conf['dataset']}`, {len(qs)} queries "
            f"({', '.join(f'{c}: {sum(q.category == c for q in qs)}' for c in cats)}), "
            f"pools {res.pool_sizes} instances per category from {res.photos} real photos ({res.objects} objects); "
            f"{proto}. k = {conf['k']} neighbours by `{conf['retrieval_backbone']}` global features (cosine), median "
            f"of the top {conf['top']} by alignment energy; {beta_txt}; crops: box + {conf['margin']} margin -> "
            f"{conf['input_size']} px; features: " + ", ".join(f"`{f}`" for f in res.feature_specs)
            + "; matchers: " + ", ".join(f"`{m}` {o}" for m, o in res.matcher_options.items())
            + f"; baselines: {', '.join(conf.get('baselines') or []) or '-'}.\n\n"
            f"Retrieved neighbours from the query's own object: {res.same_source_k:.0%} of the k.")


def _short(iid: str, n: int = 30) -> str:
    """An instance id shortened for a panel title (folder and annotation number dropped)."""
    s = iid.split("/")[-1].split("#")[0] + ("~" + iid.rsplit("~", 1)[1] if "~" in iid else "")
    return s if len(s) <= n else s[: n - 1] + "…"


def _beta_text(val: dict) -> str:
    c = val["counts"]
    return (", ".join(f"{m}: {b:g}" for m, b in val["chosen"].items()) + f" from {val['grid']} on "
            f"{c.get('queries', 0)} validation queries ({c.get('points', 0)} keypoints, {c.get('photos', 0)} photos) "
            "disjoint from the test queries")


def _figure_record(kt: KeypointTransfer, query, nb: list, det: dict, pred: np.ndarray, n: int = 5) -> dict:
    """What the Figure-3 panels need of one query and one flow method (crops in the query-crop frame)."""
    tq = kt.crop(query)[1]
    return {"prediction": tq.to_crop(pred),
            "images": [kt.warped_neighbour(query, nb[j], det["alignments"][j]) for j in range(min(n, len(nb)))],
            "points": [tq.to_crop(det["transferred"][j]) for j in range(min(n, len(nb)))],
            "titles": [f"E = {det['energies'][j]:.1f} (rank {int(np.flatnonzero(det['order'] == j)[0]) + 1})"
                       for j in range(min(n, len(nb)))]}


def _plots(rep: Report, res: Table2Results) -> None:
    from ..viz.figures import alignment_panels, draw_bars_with_ci, draw_curves_with_ci, draw_panels

    ests, val = res.pck_ci, res.validation
    alphas = [float(a) for a in TABLE2_PCK.alphas]
    series = {m: [ests[m][a] for a in alphas] for m in ests}
    draw_bars_with_ci([f"alpha = {a}" for a in alphas], series, rep.out_dir / "pck_vs_alpha.png",
                      "PCK (mean over keypoint types)", ylim="auto", colors={"random in box": "0.6"})
    rep.figures.append("pck_vs_alpha.png")
    rep.parts.append("![PCK vs alpha](pck_vs_alpha.png)\n\nPCK at the paper's three alphas per method; error bars: "
                     "95% bootstrap intervals over query photos.\n")
    if val:
        draw_curves_with_ci(val["grid"], {m: v for m, v in val["curves"].items()},
                            rep.out_dir / "beta_validation.png", "beta (smoothness weight)", "validation PCK@0.1",
                            marks={m: b for m, b in val["chosen"].items()},
                            title=f"beta by validation ({val['counts'].get('queries', 0)} queries)")
        rep.figures.append("beta_validation.png")
        rep.parts.append("![beta validation](beta_validation.png)\n\nValidation curve: PCK@0.1 of each flow feature "
                         "against beta on the validation queries (band: 95% bootstrap interval over their photos); "
                         "circled: the chosen beta.\n")
    if res.figures is None:
        return
    conv, err = res.figures["method"], res.figures["errors"]
    for kind, p in res.figures["picks"].items():
        panels = alignment_panels(p["crop"], p["ground_truth"], p["neighbours"], p["methods"],
                                  f"query ({kind})\n{_short(p['query'])}")
        name = f"alignment_{kind}.png"
        draw_panels(panels, rep.out_dir / name, panel_in=2.0)
        rep.figures.append(name)
        rep.parts.append(f"![alignment {kind}]({name})\n\nA {kind} query (rank {p['rank']}"
                         f" of {len(err)} by {conv}'s mean error, {-err[p['index']]:.3f} of the box size; as the "
                         "paper's Figure 3). Top row: the query with its ground truth (green) and its five nearest "
                         "neighbours by the global feature with their keypoints (yellow). Further rows: each "
                         "method's prediction (red x) and the neighbours warped into the query frame by its flow, "
                         "with their transferred keypoints (yellow); titles give each neighbour's alignment energy "
                         "and its rank by energy.\n")
