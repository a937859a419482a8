"""Keypoint transfer by intra-class alignment (paper Section 3, Table 2).

For a query instance: retrieve its k nearest training neighbours of the same category by a global feature
(cosine similarity; the paper uses AlexNet fc7, here any backbone's ``global_features``, by default
EfficientNet-Lite0 "pool", because the shared AlexNet copy has no fc6/fc7 weights), compute dense features of
every crop (a :class:`convcorr.features.base.DenseFeatures` plug-in, e.g. ``"alexnet:conv4"`` or ``"sift"``), match the
query to each neighbour with a matcher (:mod:`convcorr.matchers`; the paper's MRF is ``"flow"``), move the
neighbour's keypoints into the query through the correspondence, rank the neighbours by the correspondence's
energy (lowest first), and predict each keypoint type as the coordinate-wise median over the ``top``
best-ranked neighbours in which that type is visible (:class:`KeypointTransfer`).
Baseline "box-copy" (:class:`BoxCopyTransfer`, no features, no matcher): copy the keypoints of the single
nearest neighbour (by the global feature) in normalised box coordinates (:func:`box_copy`, the one box copy of
the package: the pair benchmark and Table 4's prior use it too),
``x' = (x - x0_nn) / w_nn * w_q + x0_q`` (a type the nearest neighbour lacks is taken from the next neighbour
that has it).

Frames. Every instance is cropped to its box enlarged by ``margin`` (a fraction of the box width/height on each
side; outside the image is black) and resized to ``size x size`` pixels, the network input. A
:class:`CropTransform` maps points exactly between ORIGINAL image pixels and crop pixels (pixel-centre
convention, :func:`convcorr.core.geometry.scale_points`); feature geometries (:class:`convcorr.core.geometry.RFGeometry`)
are in crop pixels since the crop is fed to the network at its own size. Predictions are returned in the
query's ORIGINAL image pixels, (x, y).

Direction. The matcher is run with the QUERY as the source grid and the neighbour as the target (the paper's
alignment energy lives on the query grid), so the pixel map is defined at every query pixel p. A neighbour
keypoint q is transferred to the query pixel p with ``T(p) = q`` by the exact inverse of the piecewise-bilinear
map (:meth:`convcorr.matchers.Correspondence.transfer_back` -> :func:`convcorr.numerics.warp.invert_lattice`): where the
map folds back (a border column with a wild match), the unfolded preimage that follows the consensus motion is
kept, so folded border columns cannot steal interior points. The neighbour image is resampled into the query
frame by :meth:`~convcorr.matchers.Correspondence.warp`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..core.arrays import l2_normalize
from ..core.crops import CropTransform, crop_instance
from ..core.types import Instance


# ------------------------------------------------------------------------------------------------------- pieces
def retrieve_neighbours(query: np.ndarray, db: np.ndarray, k: int, mask: np.ndarray | None = None) -> np.ndarray:
    """Indices of the k most cosine-similar rows of ``db`` for each query row.

    Args:
        query: (Q, D) global features; db: (N, D).
        k: neighbours per query.
        mask: (Q, N) bool, True where a candidate is allowed (e.g. same category, not the query itself).
    Returns:
        (Q, k) int indices into ``db``, most similar first; -1 fills the end when fewer than k are allowed.
    """
    query = np.atleast_2d(np.asarray(query, dtype=np.float64))
    db = np.atleast_2d(np.asarray(db, dtype=np.float64))
    if query.shape[1] != db.shape[1]:
        raise ValueError(f"query features have {query.shape[1]} dims, database {db.shape[1]}")
    sim = l2_normalize(query) @ l2_normalize(db).T
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != sim.shape:
            raise ValueError(f"mask must be (Q, N) = {sim.shape}, got {mask.shape}")
        sim = np.where(mask, sim, -np.inf)
    order = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    taken = np.take_along_axis(sim, order, 1)
    out = np.where(np.isfinite(taken), order, -1)
    if out.shape[1] < k:
        out = np.concatenate([out, np.full((len(out), k - out.shape[1]), -1)], 1)
    return out


def visible_keypoints(inst: Instance) -> np.ndarray:
    """(K, 2) keypoints with NaN where the type is not visible."""
    kp = np.array(inst.keypoints, dtype=np.float64)
    kp[~inst.visible] = np.nan
    return kp


def box_copy(source: Instance, target_bbox: Sequence[float]) -> np.ndarray:
    """The box-copy baseline: ``source``'s visible keypoints copied into ``target_bbox`` in normalised box
    coordinates.

    ``x' = (x - x0_s) / w_s * w_t + x0_t`` (likewise y). Returns (K, 2) in the target's original pixels,
    NaN where the type is not visible in ``source``.
    """
    tx0, ty0, tx1, ty1 = [float(v) for v in target_bbox]
    sx0, sy0, sx1, sy1 = [float(v) for v in source.bbox]
    u = (visible_keypoints(source) - [sx0, sy0]) / [sx1 - sx0, sy1 - sy0]
    return u * [tx1 - tx0, ty1 - ty0] + [tx0, ty0]


def first_available(candidates: np.ndarray) -> np.ndarray:
    """(M, K, 2) candidate keypoints in preference order -> (K, 2): per type the first finite candidate."""
    out = np.full(candidates.shape[1:], np.nan)
    for j in range(candidates.shape[1]):
        have = np.flatnonzero(np.all(np.isfinite(candidates[:, j]), axis=1))
        if len(have):
            out[j] = candidates[have[0], j]
    return out


def median_of_top(transferred: np.ndarray, energies: np.ndarray, top: int) -> np.ndarray:
    """Coordinate-wise median per keypoint type over the ``top`` lowest-energy neighbours that have the type.

    Args:
        transferred: (M, K, 2) keypoints of M neighbours in the query frame (NaN where not visible).
        energies: (M,) alignment energies (lower is better; ties keep the given order).
        top: neighbours per type.
    Returns:
        (K, 2); NaN for a type no neighbour has.
    """
    transferred = np.asarray(transferred, dtype=np.float64)
    order = np.argsort(np.asarray(energies, dtype=np.float64), kind="stable")
    t = transferred[order]
    out = np.full(t.shape[1:], np.nan)
    for j in range(t.shape[1]):
        have = np.all(np.isfinite(t[:, j]), axis=1)
        if have.any():
            out[j] = np.median(t[have][:top, j], axis=0)
    return out


def transfer_back_keypoints(kp_neighbour: np.ndarray, t_neighbour: CropTransform, t_query: CropTransform,
                            alignment) -> np.ndarray:
    """Neighbour keypoints (K, 2) in ITS original pixels -> query ORIGINAL pixels, back through an alignment
    from the query (source) to the neighbour (target): neighbour crop -> the query crop points that map onto
    them -> query original pixels.

    Args:
        kp_neighbour: (K, 2) (NaN rows stay NaN).
        t_neighbour, t_query: crop transforms of the neighbour and the query.
        alignment: a :class:`convcorr.matchers.Correspondence` from the query crop (source) to the neighbour crop
            (target), or an (S, S, 2) dense pixel flow (query crop -> neighbour crop). Either way the points go
            through the exact, fold-correct inverse of the query -> neighbour map
            (:meth:`~convcorr.matchers.Correspondence.transfer_back`, :func:`convcorr.numerics.warp.transfer_back`).
    """
    from ..numerics.warp import transfer_back

    pts = t_neighbour.to_crop(kp_neighbour)
    if hasattr(alignment, "transfer_back"):
        in_q_crop = alignment.transfer_back(pts)
    else:
        in_q_crop = transfer_back(pts, alignment)
    return t_query.from_crop(in_q_crop)


# ------------------------------------------------------------------------------------------------------ the method
@dataclass
class TransferConfig:
    """Settings of a keypoint-transfer method (:func:`make_transfer`).

    Attributes:
        method: "align" (features + matcher, :class:`KeypointTransfer`) or "box-copy" (copy the nearest
            neighbour's keypoints in normalised box coordinates, :class:`BoxCopyTransfer`; no features).
        features: dense-feature spec or object (:func:`convcorr.features.base.get_features`), e.g. "alexnet:conv4",
            "sift:step=8,bin=8".
        matcher: matcher name or object (:func:`convcorr.matchers.get_matcher`), e.g. "flow", "nn".
        matcher_options: options of the matcher (e.g. ``{"beta": 3e-3, "radius_px": 64, "n_iter": 10}`` for flow).
        retrieval_backbone: backbone (name or object) whose ``global_features`` rank neighbours (cosine).
        k: neighbours retrieved; top: neighbours (lowest energy) whose transfers are medianed.
        size: crop side in pixels (network input); margin: crop context as a fraction of the box side.
        rank_by: "energy" (the correspondence's energy) or a numeric key of its ``details`` (e.g. "data_energy",
            "smooth_energy" for flow; "data"/"smooth" are accepted as short names).
    """

    method: str = "align"
    features: object = "alexnet:conv4"
    matcher: object = "flow"
    matcher_options: dict = field(default_factory=dict)
    retrieval_backbone: object = "efficientnet_lite0"
    k: int = 10
    top: int = 5
    size: int = 227
    margin: float = 0.1
    rank_by: str = "energy"

    def __post_init__(self):
        if self.method not in TRANSFER_METHODS:
            raise ValueError(f"unknown transfer method {self.method!r}; choose from {sorted(TRANSFER_METHODS)}")
        self.rank_by = {"data": "data_energy", "smooth": "smooth_energy"}.get(self.rank_by, self.rank_by)
        if self.k < 1 or self.top < 1:
            raise ValueError(f"k and top must be >= 1, got k={self.k}, top={self.top}")


def _backbone_key(bb) -> str:
    return bb if isinstance(bb, str) else f"{getattr(bb, 'name', type(bb).__name__)}@{id(bb)}"


class InstanceMemo:
    """In-memory memo of each instance's crop, global feature and feature grids (keyed by ``Instance.id``),
    shareable between several transfer methods of one run (not the on-disk feature cache of
    :mod:`convcorr.features.cache`)."""

    def __init__(self, size: int = 227, margin: float = 0.1):
        self.size, self.margin = int(size), float(margin)
        self.crops: dict = {}
        self.glob: dict = {}
        self.grids: dict = {}

    def crop(self, inst: Instance) -> tuple[np.ndarray, CropTransform]:
        if inst.id not in self.crops:
            self.crops[inst.id] = crop_instance(inst, self.margin, self.size)
        return self.crops[inst.id]

    def global_features(self, insts: Sequence[Instance], backbone) -> np.ndarray:
        """(N, D) global features of the crops (computed in batches, once per instance); ``backbone`` is a name
        or a :class:`convcorr.backbones.Backbone`."""
        from ..backbones import get_backbone

        key = _backbone_key(backbone)
        todo = [i for i in {i.id: i for i in insts}.values() if (i.id, key) not in self.glob]
        if todo:
            bb = get_backbone(backbone) if isinstance(backbone, str) else backbone
            f = bb.global_features([self.crop(i)[0] for i in todo])
            for i, row in zip(todo, f):
                self.glob[(i.id, key)] = np.asarray(row, dtype=np.float32)
        return np.stack([self.glob[(i.id, key)] for i in insts])

    def precompute(self, insts: Sequence[Instance], features) -> None:
        """Compute and cache the feature grids of several instances' crops (batched where the plug-in can)."""
        from ..features.base import get_features

        features = get_features(features)
        todo = [i for i in {i.id: i for i in insts}.values() if (i.id, features.cache_key) not in self.grids]
        if todo:
            for i, g in zip(todo, features.compute_many([self.crop(i)[0] for i in todo])):
                self.grids[(i.id, features.cache_key)] = g

    def grid(self, inst: Instance, features):
        """The :class:`convcorr.features.base.FeatureGrid` of the instance's crop (geometry in crop pixels)."""
        from ..features.base import get_features

        features = get_features(features)
        key = (inst.id, features.cache_key)
        if key not in self.grids:
            self.precompute([inst], features)
        return self.grids[key]


class _TransferBase:
    """Shared parts: configuration, cache, neighbour retrieval, prediction from retrieved neighbours."""

    def __init__(self, conf: TransferConfig | None = None, cache: InstanceMemo | None = None, **kw):
        if conf is not None and kw:
            raise TypeError("pass either a TransferConfig or keyword settings, not both")
        self.conf = conf or TransferConfig(**kw)
        self.cache = cache or InstanceMemo(self.conf.size, self.conf.margin)
        if (self.cache.size, self.cache.margin) != (self.conf.size, self.conf.margin):
            raise ValueError("the shared InstanceMemo was made for another crop size/margin")

    def crop(self, inst: Instance) -> tuple[np.ndarray, CropTransform]:
        return self.cache.crop(inst)

    def neighbours(self, query: Instance, train: Sequence[Instance],
                   exclude_same_source: bool = False) -> list[Instance]:
        """The k training instances of the query's category (same keypoint names, not the query itself) most
        similar to it by the retrieval backbone's global feature, most similar first.

        With ``exclude_same_source`` instances with the query's ``meta["source_id"]`` (warps of the same photo)
        are skipped too.
        """
        src = query.meta.get("source_id", query.id)
        cand = [t for t in train if t.category == query.category and t.keypoint_names == query.keypoint_names
                and t.id != query.id and not (exclude_same_source and t.meta.get("source_id", t.id) == src)]
        if not cand:
            raise ValueError(f"{query.id}: no training instance of category {query.category!r}")
        fq = self.cache.global_features([query], self.conf.retrieval_backbone)
        fd = self.cache.global_features(cand, self.conf.retrieval_backbone)
        idx = retrieve_neighbours(fq, fd, self.conf.k)[0]
        return [cand[i] for i in idx if i >= 0]

    def predict_from_neighbours(self, query: Instance, neighbours: Sequence[Instance], return_details: bool = False):
        raise NotImplementedError

    def _check(self, query: Instance, neighbours: Sequence[Instance]) -> None:
        if not neighbours:
            raise ValueError(f"{query.id}: no neighbours to transfer from")
        for n in neighbours:
            if n.keypoint_names != query.keypoint_names:
                raise ValueError(f"{n.id}: keypoint names differ from the query's ({query.id})")

    def predict(self, query: Instance, train_instances: Sequence[Instance], return_details: bool = False,
                exclude_same_source: bool = False):
        """(K, 2) predicted keypoints of ``query`` in its ORIGINAL image pixels: retrieve the k nearest
        same-category training instances, then :meth:`predict_from_neighbours` (see the module docstring).
        With ``return_details`` also returns its details plus "neighbours"."""
        nb = self.neighbours(query, train_instances, exclude_same_source)
        out = self.predict_from_neighbours(query, nb, return_details)
        if return_details:
            out[1]["neighbours"] = nb
        return out


class BoxCopyTransfer(_TransferBase):
    """Baseline "box-copy": copy the keypoints of the nearest neighbour (by the global feature) in normalised box
    coordinates (:func:`box_copy`); a type the nearest neighbour lacks comes from the next one that has it.
    Uses no dense features and no matcher. ``top`` is 1 (the single nearest neighbour)."""

    label = "box-copy"

    def predict_from_neighbours(self, query: Instance, neighbours: Sequence[Instance], return_details: bool = False):
        """(K, 2) prediction (query original pixels) from already retrieved ``neighbours`` (most similar first)."""
        self._check(query, neighbours)
        trans = np.stack([box_copy(n, query.bbox) for n in neighbours])
        pred = first_available(trans)
        det = {"alignments": [], "transferred": trans, "energies": np.arange(len(neighbours), dtype=float),
               "order": np.arange(len(neighbours)), "top": 1}
        return (pred, det) if return_details else pred


class KeypointTransfer(_TransferBase):
    """Predict a query's keypoints from neighbours aligned by a matcher on dense features (module docstring).

    >>> kt = KeypointTransfer(TransferConfig(features="alexnet:conv4", matcher="flow", k=25, top=5))
    >>> xy = kt.predict(query, train_instances)          # (K, 2) in the query's original pixels

    Crops, global features and feature grids are computed once per instance and cached in memory
    (``cache``, a :class:`InstanceMemo`, may be shared between objects with the same size/margin).
    """

    def __init__(self, conf: TransferConfig | None = None, cache: InstanceMemo | None = None, **kw):
        from ..features.base import get_features
        from ..matchers import get_matcher

        super().__init__(conf, cache, **kw)
        self.features = get_features(self.conf.features)
        self.matcher = get_matcher(self.conf.matcher, **dict(self.conf.matcher_options))

    @property
    def label(self) -> str:
        return f"{self.features.spec} + {self.matcher.name}"

    def grid(self, inst: Instance):
        """The instance crop's :class:`convcorr.features.base.FeatureGrid`."""
        return self.cache.grid(inst, self.features)

    def align_pair(self, query: Instance, neighbour: Instance):
        """Match the query crop (source) to the neighbour crop (target) -> :class:`convcorr.matchers.Correspondence`
        (its energy ranks the neighbour)."""
        return self.matcher.match(self.grid(query), self.grid(neighbour))

    def transfer_back(self, query: Instance, neighbour: Instance, alignment) -> np.ndarray:
        """Neighbour's visible keypoints -> query ORIGINAL pixels, back through the query -> neighbour alignment
        (:func:`transfer_back_keypoints`), (K, 2)."""
        return transfer_back_keypoints(visible_keypoints(neighbour), self.crop(neighbour)[1], self.crop(query)[1],
                                       alignment)

    def warped_neighbour(self, query: Instance, neighbour: Instance, alignment) -> np.ndarray:
        """The neighbour's crop resampled into the query's crop frame (for figures)."""
        return alignment.warp(self.crop(neighbour)[0])

    def _rank_value(self, corr) -> float:
        key = self.conf.rank_by
        if key == "energy":
            return float(corr.energy)
        if key not in corr.details:
            raise ValueError(f"rank_by={key!r}: matcher {self.matcher.name!r} reports no such quantity "
                             f"(has {sorted(k for k, v in corr.details.items() if np.isscalar(v))})")
        return float(corr.details[key])

    def predict_from_neighbours(self, query: Instance, neighbours: Sequence[Instance], return_details: bool = False):
        """(K, 2) prediction (query original pixels) from already retrieved ``neighbours`` (most similar first).

        With ``return_details`` also returns {"alignments" (Correspondences), "transferred" (M, K, 2),
        "energies" (M,), "order" (neighbour indices by rank), "top"}.
        """
        self._check(query, neighbours)
        aligns = [self.align_pair(query, n) for n in neighbours]
        trans = np.stack([self.transfer_back(query, n, a) for n, a in zip(neighbours, aligns)])
        energies = np.array([self._rank_value(a) for a in aligns])
        pred = median_of_top(trans, energies, self.conf.top)
        if return_details:
            return pred, {"alignments": aligns, "transferred": trans, "energies": energies,
                          "order": np.argsort(energies, kind="stable"), "top": self.conf.top}
        return pred


#: transfer method name -> class (``TransferConfig.method``)
TRANSFER_METHODS = {"align": KeypointTransfer, "box-copy": BoxCopyTransfer}


def make_transfer(conf: TransferConfig | None = None, cache: InstanceMemo | None = None, **kw):
    """The transfer object of ``conf.method`` (:data:`TRANSFER_METHODS`)."""
    conf = conf or TransferConfig(**kw)
    return TRANSFER_METHODS[conf.method](conf, cache)
