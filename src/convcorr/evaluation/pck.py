"""PCK: percentage of correct keypoints. The one implementation in convcorr.

A predicted keypoint (x, y) is correct when its Euclidean distance to the
ground truth is at most ``alpha * L``, where ``L`` is the normaliser of its
instance: ``max(bbox height, bbox width)`` (:attr:`convcorr.core.types.Instance.bbox_size`,
the paper's choice) or ``max(image height, image width)`` (used by PF-PASCAL / SPair
style protocols; the engine's ``threshold`` and ``size``).

Averaging:
  * ``average="type"`` (the paper): PCK is computed separately for every
    keypoint type and the per-type values are averaged, so rare types weigh
    as much as frequent ones.
  * ``average="point"``: the fraction of all points that are correct.

The protocol engine (:class:`PCKProtocol`, :func:`evaluate`, presets in :data:`PROTOCOLS`) makes every choice
explicit (threshold source and size, alphas, resolution, per-point / per-pair / per-type averages, pooled or
category mean, visible-in-both) and reproduces each peer's published convention by name.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Iterable, Optional, Sequence

import numpy as np

PAPER_ALPHAS = (0.1, 0.05, 0.025)


def check_alpha(alpha) -> float:
    """``alpha`` as a float in (0, 1]; ValueError naming ``alpha`` otherwise."""
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        raise ValueError(f"alpha must be a number in (0, 1], got {alpha!r}") from None
    if not (0 < a <= 1):
        raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
    return a


def check_normaliser(L, n: int) -> np.ndarray:
    """``L`` (scalar or (n,)) broadcast to (n,) float; ValueError naming ``L`` unless every value is finite > 0."""
    try:
        L = np.broadcast_to(np.asarray(L, dtype=np.float64), (n,))
    except (TypeError, ValueError):
        raise ValueError(f"L: PCK normaliser must be a scalar or one value per point ({n}), got shape "
                         f"{np.shape(L)}") from None
    if not np.all(np.isfinite(L) & (L > 0)):
        bad = L[~(np.isfinite(L) & (L > 0))]
        raise ValueError(f"L: PCK normalisers must be finite and > 0, got {bad[:5].tolist()}")
    return L


def correct(pred: np.ndarray, gt: np.ndarray, L: np.ndarray | float, alpha: float) -> np.ndarray:
    """Per-point correctness: ``||pred - gt|| <= alpha * L``.

    Args:
        pred, gt: (N, 2) (x, y) in pixels.
        L: scalar or (N,) normaliser in pixels.
        alpha: threshold as a fraction of L, in (0, 1].
    Returns:
        (N,) bool. Non-finite predictions count as wrong.
    Raises:
        ValueError naming the argument: shapes differ, non-finite ``gt``, ``L`` <= 0 or non-finite, ``alpha``
        outside (0, 1].
    """
    pred = np.asarray(pred, dtype=np.float64).reshape(-1, 2)
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 2)
    if pred.shape != gt.shape:
        raise ValueError(f"pred {pred.shape} and gt {gt.shape} differ in shape")
    if not np.all(np.isfinite(gt)):
        raise ValueError("ground truth contains non-finite coordinates; mask them out first")
    alpha = check_alpha(alpha)
    L = check_normaliser(L, len(gt))
    d = np.linalg.norm(pred - gt, axis=1)
    return np.where(np.isfinite(d), d <= alpha * L, False)


def pck(pred: np.ndarray, gt: np.ndarray, L: np.ndarray | float, alpha: float = 0.1,
        types: Optional[Sequence] = None, average: str = "type") -> float:
    """PCK at one alpha.

    Args:
        pred, gt: (N, 2) (x, y) in pixels.
        L: scalar or (N,) normaliser in pixels (e.g. ``Instance.bbox_size``).
        alpha: threshold fraction.
        types: (N,) keypoint-type labels; required for ``average="type"``.
        average: "type" (mean over keypoint types of per-type PCK) or "point".
    Returns:
        PCK in [0, 1]; NaN when there are no points.
    """
    ok = correct(pred, gt, L, alpha)
    if len(ok) == 0:
        return float("nan")
    if average == "point":
        return float(ok.mean())
    if average != "type":
        raise ValueError(f"unknown average {average!r}: use 'type' or 'point'")
    if types is None:
        raise ValueError("average='type' needs the keypoint type of every point")
    types = np.asarray(types)
    if len(types) != len(ok):
        raise ValueError(f"{len(types)} type labels for {len(ok)} points")
    return float(np.mean([ok[types == t].mean() for t in np.unique(types)]))


def pck_curve(pred: np.ndarray, gt: np.ndarray, L: np.ndarray | float,
              alphas: Iterable[float] = PAPER_ALPHAS, types: Optional[Sequence] = None,
              average: str = "type") -> dict[float, float]:
    """PCK at several alphas: {alpha: pck}."""
    return {float(a): pck(pred, gt, L, a, types=types, average=average) for a in alphas}


# ================================================================================================ protocol engine
#
# One engine for every published PCK convention. A :class:`PCKProtocol` names every switch explicitly; it is
# recorded in full in each results.json (``PCKProtocol.to_dict``), and each peer's published protocol is a
# named preset in :data:`PROTOCOLS` (sources in the preset docstrings below).

THRESHOLDS = ("target-bbox", "source-bbox", "target-image", "source-image")
SIZES = ("max", "diagonal")
AVERAGES = ("point", "pair", "type")
OVERALLS = ("pooled", "category")
RESOLUTIONS = ("original", "resized")


@dataclass(frozen=True)
class PCKProtocol:
    """Every choice that changes a PCK number.

    Attributes:
        name: label of the protocol (a preset name or "custom").
        threshold: where the length L comes from: ``"target-bbox"`` (the target instance's box: SPair-71k,
            PF-WILLOW, the paper, whose query is the target of the transfer), ``"source-bbox"``,
            ``"target-image"`` / ``"source-image"`` (the image; PF-PASCAL's alpha_img).
        size: which length of that box/image: ``"max"`` = max(h, w) (every peer and the paper) or
            ``"diagonal"`` = sqrt(h^2 + w^2).
        alphas: thresholds as fractions of L; a point is correct when ``||pred - gt|| <= alpha * L``.
        resolution: ``"original"``: distances and L in original image pixels (DIFT: features upsampled to the
            original size); ``"resized"``: in the frame the method ran on (HPF / CATs: images resized, the
            threshold scaled by the same ratio). The two differ only when the resize is anisotropic.
        averages: which averages to report (all are computed from the same points):
            ``"point"``: fraction of all points that are correct;
            ``"pair"``: PCK of every pair (image), then the mean over pairs (DIFT's "per image");
            ``"type"``: PCK of every keypoint type (category, name), then the mean over types (the paper).
        overall: the headline over categories: ``"pooled"`` (every point/pair/type of every category at once)
            or ``"category"`` (the mean of the per-category values). Per-category values are always reported.
        visible_in_both: True: only keypoints visible in both source and target count (every peer); False:
            every keypoint visible in the target counts, and one that cannot be predicted (not visible in the
            source, or a NaN prediction) counts as wrong.
        reference: where the convention comes from.
    """

    name: str = "custom"
    threshold: str = "target-bbox"
    size: str = "max"
    alphas: tuple = PAPER_ALPHAS
    resolution: str = "original"
    averages: tuple = ("type",)
    overall: str = "pooled"
    visible_in_both: bool = True
    reference: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "alphas", tuple(float(a) for a in self.alphas))
        avgs = (self.averages,) if isinstance(self.averages, str) else tuple(self.averages)
        object.__setattr__(self, "averages", avgs)
        for attr, allowed in (("threshold", THRESHOLDS), ("size", SIZES), ("overall", OVERALLS),
                              ("resolution", RESOLUTIONS)):
            if getattr(self, attr) not in allowed:
                raise ValueError(f"PCKProtocol.{attr} must be one of {list(allowed)}, got {getattr(self, attr)!r}")
        bad = [a for a in avgs if a not in AVERAGES]
        if bad or not avgs:
            raise ValueError(f"PCKProtocol.averages must be a non-empty subset of {list(AVERAGES)}, got {avgs!r}")
        if not self.alphas or not all(a > 0 for a in self.alphas):
            raise ValueError(f"PCKProtocol.alphas must be positive, got {self.alphas!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["alphas"], d["averages"] = list(self.alphas), list(self.averages)
        return d

    def with_options(self, **kw) -> "PCKProtocol":
        """A copy with some switches changed (its name becomes ``<name>+custom`` unless given)."""
        if not kw:
            return self
        kw.setdefault("name", self.name if self.name.endswith("+custom") else f"{self.name}+custom")
        return replace(self, **kw)


#: Named presets. Each peer's protocol as its paper/code states it.
PROTOCOLS: dict[str, PCKProtocol] = {
    # Long, Zhang & Darrell (NIPS 2014), Sec. 4: PCK at alpha 0.1 / 0.05 / 0.025 of max(bbox h, w), averaged
    # over keypoint types (the target/query instance's box).
    "paper": PCKProtocol("paper", "target-bbox", "max", PAPER_ALPHAS, "original", ("type",), "pooled", True,
                         "Long, Zhang & Darrell, NIPS 2014, Sec. 4 (Table 2)"),
    # DIFT (Tang et al., NeurIPS 2023), eval_spair.py of github.com/Tsingularity/dift: L = max side of the
    # target bbox (trg_bndbox), alpha 0.1, features upsampled to the ORIGINAL image size so distances are in
    # original pixels; "per image" = mean over all pairs of the pair's PCK, "per point" = all points pooled;
    # all SPair test keypoints are visible in both images.
    "dift-spair": PCKProtocol("dift-spair", "target-bbox", "max", (0.1,), "original", ("pair", "point"), "pooled",
                              True, "DIFT (Tang et al. 2023), github.com/Tsingularity/dift eval_spair.py"),
    # SD-DINO (Zhang et al., NeurIPS 2023, "A Tale of Two Features") and GeoAware-SC (Zhang et al., CVPR 2024)
    # follow the same SPair-71k convention (target bbox max side, per image and per point); GeoAware-SC
    # reports alpha 0.10 / 0.05 / 0.01.
    "sd-dino-spair": PCKProtocol("sd-dino-spair", "target-bbox", "max", (0.1, 0.05, 0.01), "original",
                                 ("pair", "point"), "pooled", True,
                                 "SD-DINO (Zhang et al. 2023) / GeoAware-SC (Zhang et al. 2024), SPair-71k"),
    # HPF (Min et al., ICCV 2019), github.com/juhongm999/hpf: images resized (util.resize), the threshold scaled
    # by the same ratio (evaluation.py: pckthres * trg_intratio), per-pair PCK averaged over pairs; PF-PASCAL
    # uses alpha_img = max(target image h, w); PF-WILLOW and SPair alpha_bbox (PF-WILLOW's "bbox" is the
    # extent of the target keypoints, data/pfwillow.py get_pckthres, which is the bbox our loader stores).
    "hpf-pfpascal": PCKProtocol("hpf-pfpascal", "target-image", "max", (0.1,), "resized", ("pair",), "pooled",
                                True, "HPF (Min et al. 2019), github.com/juhongm999/hpf model/evaluation.py"),
    "hpf-pfwillow": PCKProtocol("hpf-pfwillow", "target-bbox", "max", (0.1,), "resized", ("pair",), "pooled",
                                True, "HPF (Min et al. 2019), data/pfwillow.py: L = target keypoint extent"),
    "hpf-spair": PCKProtocol("hpf-spair", "target-bbox", "max", (0.1,), "resized", ("pair",), "pooled", True,
                             "HPF (Min et al. 2019), SPair-71k alpha_bbox"),
    # CATs (Cho et al., NeurIPS 2021), github.com/SunghwanHong/Cost-Aggregation-transformers (built on DHPF):
    # PF-PASCAL alpha_img at 0.05 / 0.1 / 0.15, PF-WILLOW alpha_bbox at 0.05 / 0.1 / 0.15, SPair alpha_bbox 0.1;
    # per-pair PCK averaged over pairs, at the resized resolution.
    "cats-pfpascal": PCKProtocol("cats-pfpascal", "target-image", "max", (0.05, 0.1, 0.15), "resized", ("pair",),
                                 "pooled", True, "CATs (Cho et al. 2021), PF-PASCAL alpha_img"),
    "cats-pfwillow": PCKProtocol("cats-pfwillow", "target-bbox", "max", (0.05, 0.1, 0.15), "resized", ("pair",),
                                 "pooled", True, "CATs (Cho et al. 2021), PF-WILLOW alpha_bbox"),
    "cats-spair": PCKProtocol("cats-spair", "target-bbox", "max", (0.1,), "resized", ("pair",), "pooled", True,
                              "CATs (Cho et al. 2021), SPair-71k alpha_bbox"),
}


def get_protocol(spec, **overrides) -> PCKProtocol:
    """A :class:`PCKProtocol` from a preset name, a dict of fields, or a protocol; ``overrides`` change fields.

    A dict whose ``name`` is a preset starts from that preset (its name becomes ``<preset>+custom`` when a field
    changes); any other dict builds a protocol from the defaults of :class:`PCKProtocol`.
    """
    if isinstance(spec, PCKProtocol):
        p = spec
    elif isinstance(spec, str):
        if spec not in PROTOCOLS:
            raise ValueError(f"unknown PCK protocol {spec!r}; presets: {sorted(PROTOCOLS)}")
        p = PROTOCOLS[spec]
    elif isinstance(spec, dict):
        unknown = set(spec) - set(PCKProtocol.__dataclass_fields__)
        if unknown:
            raise ValueError(f"PCK protocol: unknown fields {sorted(unknown)}; fields: "
                             f"{sorted(PCKProtocol.__dataclass_fields__)}")
        if spec.get("name") in PROTOCOLS:  # a preset with some switches changed -> "<preset>+custom"
            p = PROTOCOLS[spec["name"]].with_options(**{k: v for k, v in spec.items() if k != "name"})
        else:
            p = PCKProtocol(**spec)
    else:
        raise ValueError(f"PCK protocol: expected a preset name, dict or PCKProtocol, got {spec!r}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return p.with_options(**overrides)


@dataclass
class PairKeypoints:
    """Predicted and ground-truth target keypoints of one source/target pair (input of :func:`evaluate`).

    Attributes (K = keypoint types of the pair):
        pair_id: identifier, e.g. "src.jpg->trg.jpg".
        category: object class.
        names: (K,) keypoint type names.
        pred: (K, 2) predicted target (x, y), original target pixels; NaN where no prediction.
        gt: (K, 2) ground-truth target (x, y), original target pixels; NaN where not annotated.
        source_visible, target_visible: (K,) bool.
        source_bbox, target_bbox: (4,) (x0, y0, x1, y1) original pixels.
        source_hw, target_hw: (H, W) of the original images.
        eval_source_scale, eval_target_scale: (sx, sy) pixels of the frame the method ran on (resized image or
            crop) per original pixel, for ``resolution="resized"``; None = 1 (the original frame). Distances,
            boxes and image sides are scaled by it (translations do not change distances).
    """

    pair_id: str
    category: str
    names: tuple
    pred: np.ndarray
    gt: np.ndarray
    source_visible: np.ndarray
    target_visible: np.ndarray
    source_bbox: np.ndarray
    target_bbox: np.ndarray
    source_hw: tuple
    target_hw: tuple
    eval_source_scale: Optional[tuple] = None
    eval_target_scale: Optional[tuple] = None

    def __post_init__(self) -> None:
        self.names = tuple(self.names)
        self.pred = np.asarray(self.pred, dtype=np.float64).reshape(-1, 2)
        self.gt = np.asarray(self.gt, dtype=np.float64).reshape(-1, 2)
        self.source_visible = np.asarray(self.source_visible, dtype=bool).reshape(-1)
        self.target_visible = np.asarray(self.target_visible, dtype=bool).reshape(-1)
        K = len(self.names)
        for attr in ("pred", "gt", "source_visible", "target_visible"):
            if len(getattr(self, attr)) != K:
                raise ValueError(f"pair {self.pair_id}: {attr} has {len(getattr(self, attr))} rows for {K} names")
        self.source_bbox = np.asarray(self.source_bbox, dtype=np.float64).reshape(4)
        self.target_bbox = np.asarray(self.target_bbox, dtype=np.float64).reshape(4)


def _length(box_or_hw, kind: str, size: str, scale=(1.0, 1.0)) -> float:
    sx, sy = float(scale[0]), float(scale[1])
    if kind == "bbox":
        x0, y0, x1, y1 = [float(v) for v in box_or_hw]
        h, w = (y1 - y0) * sy, (x1 - x0) * sx
    else:
        h, w = float(box_or_hw[0]) * sy, float(box_or_hw[1]) * sx
    L = max(h, w) if size == "max" else float(np.hypot(h, w))
    if not (np.isfinite(L) and L > 0):
        raise ValueError(f"PCK normaliser must be positive, got {L} from {kind} {list(box_or_hw)}")
    return float(L)


def pair_errors(rec: PairKeypoints, protocol: PCKProtocol) -> tuple[np.ndarray, np.ndarray]:
    """Normalised errors ``||pred - gt|| / L`` of the counted points of one pair and their indices.

    Returns:
        (errors (M,), idx (M,)): ``idx`` indexes ``rec.names``; errors are +inf where no prediction exists.
        The counted points: visible in the target (and in the source with ``visible_in_both``) with a finite
        ground truth.
    """
    keep = rec.target_visible & np.all(np.isfinite(rec.gt), axis=1)
    if protocol.visible_in_both:
        keep &= rec.source_visible
    idx = np.flatnonzero(keep)
    diff = rec.pred[idx] - rec.gt[idx]
    side, kind = protocol.threshold.split("-")
    box = rec.target_bbox if side == "target" else rec.source_bbox
    hw = rec.target_hw if side == "target" else rec.source_hw
    scale = (1.0, 1.0)
    if protocol.resolution == "resized":
        st = np.asarray(rec.eval_target_scale if rec.eval_target_scale is not None else (1.0, 1.0), float)
        diff = diff * st
        ss = rec.eval_source_scale if rec.eval_source_scale is not None else (1.0, 1.0)
        scale = tuple(st) if side == "target" else tuple(ss)
    L = _length(box if kind == "bbox" else hw, kind, protocol.size, scale)
    d = np.linalg.norm(diff, axis=1) / L
    return np.where(np.isfinite(d), d, np.inf), idx


@dataclass
class PCKResult:
    """Output of :func:`evaluate`.

    Attributes:
        protocol: the protocol as a dict (recorded in results.json).
        overall: {average: {alpha: PCK}} with the protocol's ``overall`` rule.
        per_category: {category: {average: {alpha: PCK}}}.
        counts: {"pairs": n, "points": n, "types": n, "per_category": {cat: {"pairs", "points", "types"}}}.
        per_pair: one dict per pair: pair_id, category, n_points, pck {alpha: value} (NaN without points),
            errors (normalised, per counted point) and names of the counted points: the unit for bootstrap CIs.
        confidence: placeholder for bootstrap confidence intervals over pairs ({} until filled).
    """

    protocol: dict
    overall: dict
    per_category: dict
    counts: dict
    per_pair: list
    confidence: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _aggregate(errs: list[np.ndarray], types: list[list], alphas, average: str) -> dict:
    """{alpha: PCK} of pairs' normalised errors with one averaging rule (NaN when there are no points)."""
    out = {}
    flat = np.concatenate(errs) if errs else np.zeros(0)
    for a in alphas:
        if len(flat) == 0:
            out[a] = float("nan")
        elif average == "point":
            out[a] = float(np.mean(flat <= a))
        elif average == "pair":
            out[a] = float(np.mean([np.mean(e <= a) for e in errs if len(e)]))
        else:
            flat_t = [x for ts in types for x in ts]
            ids = {k: i for i, k in enumerate(dict.fromkeys(flat_t))}
            t = np.array([ids[x] for x in flat_t], dtype=np.int64)
            ok = flat <= a
            out[a] = float(np.mean([ok[t == i].mean() for i in range(len(ids))]))
    return out


def evaluate(records, protocol="paper") -> PCKResult:
    """PCK of many pairs under one protocol: every requested average, per category and overall.

    Args:
        records: iterable of :class:`PairKeypoints`.
        protocol: a :class:`PCKProtocol`, preset name or dict.
    Returns:
        :class:`PCKResult`.
    """
    protocol = get_protocol(protocol)
    records = list(records)
    per_pair, by_cat = [], {}
    for r in records:
        e, idx = pair_errors(r, protocol)
        types = [(r.category, r.names[i]) for i in idx]
        per_pair.append({"pair_id": r.pair_id, "category": r.category, "n_points": int(len(e)),
                         "pck": {a: (float(np.mean(e <= a)) if len(e) else float("nan")) for a in protocol.alphas},
                         "errors": e.tolist(), "names": [r.names[i] for i in idx]})
        c = by_cat.setdefault(r.category, ([], []))
        c[0].append(e)
        c[1].append(types)
    per_category, counts = {}, {"per_category": {}}
    for cat, (errs, types) in by_cat.items():
        per_category[cat] = {avg: _aggregate(errs, types, protocol.alphas, avg) for avg in protocol.averages}
        counts["per_category"][cat] = {"pairs": len(errs), "pairs_with_points": int(sum(len(e) > 0 for e in errs)),
                                       "points": int(sum(len(e) for e in errs)),
                                       "types": len({t for ts in types for t in ts})}
    all_e = [e for errs, _ in by_cat.values() for e in errs]
    all_t = [t for _, ts in by_cat.values() for t in ts]
    overall = {}
    for avg in protocol.averages:
        if protocol.overall == "pooled":
            overall[avg] = _aggregate(all_e, all_t, protocol.alphas, avg)
        else:
            overall[avg] = {a: float(np.nanmean([per_category[c][avg][a] for c in per_category]))
                            if per_category else float("nan") for a in protocol.alphas}
    counts.update(pairs=len(records), points=int(sum(len(e) for e in all_e)),
                  types=len({t for ts in all_t for t in ts}))
    return PCKResult(protocol.to_dict(), overall, per_category, counts, per_pair)


def pck_vs_alpha(per_pair: list, alphas: Sequence[float], average: str = "point") -> np.ndarray:
    """PCK at many alphas from the normalised errors kept in ``PCKResult.per_pair`` (a curve).

    Args:
        per_pair: ``PCKResult.per_pair`` (or a subset, e.g. one category).
        alphas: (A,) thresholds.
        average: "point", "pair" or "type" (types keyed by (category, name)).
    Returns:
        (A,) PCK values (NaN without points).
    """
    errs = [np.asarray(p["errors"], dtype=np.float64) for p in per_pair]
    types = [[(p["category"], n) for n in p["names"]] for p in per_pair]
    res = _aggregate(errs, types, [float(a) for a in alphas], average)
    return np.array([res[float(a)] for a in alphas])
