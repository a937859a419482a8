"""Keypoint transfer by intra-class alignment (paper Section 3, Table 2).

For a query instance: retrieve its k nearest training neighbours of the same category by a global feature
(cosine similarity; the paper uses AlexNet fc7, here any backbone's ``global_features``, by default
EfficientNet-Lite0 "pool", because the shared AlexNet copy has no fc6/fc7 weights), align each neighbour to the
query with the flow MRF (:func:`convcorr.flow.bp_flow`) on conv-layer or dense-SIFT features, interpolate the
grid flow with bivariate splines (:func:`convcorr.warp.dense_flow`), move the neighbour's keypoints into the
query, rank the neighbours by their alignment energy (lowest first), and predict each keypoint type as the
coordinate-wise median over the ``top`` best-ranked neighbours in which that type is visible.
Baseline "nn": copy the keypoints of the single nearest neighbour (by the global feature) in normalised box
coordinates, ``x' = (x - x0_nn) / w_nn * w_q + x0_q`` (a type the nearest neighbour lacks is taken from the
next neighbour that has it).

Frames. Every instance is cropped to its box enlarged by ``margin`` (a fraction of the box width/height on each
side; outside the image is black) and resized to ``size x size`` pixels, the network input. A
:class:`CropTransform` maps points exactly between ORIGINAL image pixels and crop pixels (pixel-centre
convention, :func:`convcorr.geometry.scale_points`); feature geometries (:class:`convcorr.geometry.RFGeometry`)
are in crop pixels since the crop is fed to the network at its own size. Predictions are returned in the
query's ORIGINAL image pixels, (x, y).

Direction. The MRF is posed with the QUERY as the flow's source grid and the neighbour as the target, so the
dense flow is defined at every query pixel p: ``p + dense(p)`` is the corresponding neighbour pixel. A neighbour
keypoint q is transferred to the query pixel whose image under the flow is nearest q
(:func:`convcorr.warp.transfer_points`), and the neighbour image is resampled into the query frame by
:func:`convcorr.warp.warp_image`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .geometry import RFGeometry, scale_points
from .types import Instance

METHODS = ("conv", "sift", "nn")


# --------------------------------------------------------------------------------------------------------- crops
@dataclass(frozen=True)
class CropTransform:
    """Integer crop box [x0, x1) x [y0, y1) of the original image, resized to (size, size) pixels.

    ``to_crop`` / ``from_crop`` map (N, 2) (x, y) points exactly both ways (pixel-centre convention of
    resampling: pixel i of the crop box covers [i - 0.5, i + 0.5] and is stretched by size / box side).
    """

    x0: int
    y0: int
    x1: int
    y1: int
    size: int

    @property
    def box_hw(self) -> tuple[int, int]:
        return (self.y1 - self.y0, self.x1 - self.x0)

    @property
    def scale(self) -> np.ndarray:
        """(2,) crop pixels per original pixel along (x, y)."""
        h, w = self.box_hw
        return np.array([self.size / w, self.size / h])

    def to_crop(self, xy: np.ndarray) -> np.ndarray:
        """(N, 2) original pixels -> crop pixels (NaN stays NaN)."""
        xy = np.asarray(xy, dtype=np.float64)
        return scale_points(xy - [self.x0, self.y0], self.box_hw, (self.size, self.size))

    def from_crop(self, xy: np.ndarray) -> np.ndarray:
        """(N, 2) crop pixels -> original pixels (NaN stays NaN)."""
        xy = np.asarray(xy, dtype=np.float64)
        return scale_points(xy, (self.size, self.size), self.box_hw) + [self.x0, self.y0]


def crop_box(bbox: Sequence[float], margin: float) -> tuple[int, int, int, int]:
    """Integer box (x0, y0, x1, y1), x1/y1 exclusive, enclosing ``bbox`` enlarged by ``margin`` x its
    width/height on every side."""
    x0, y0, x1, y1 = [float(v) for v in bbox]
    if margin < 0:
        raise ValueError(f"crop margin must be >= 0, got {margin}")
    mx, my = margin * (x1 - x0), margin * (y1 - y0)
    return int(np.floor(x0 - mx)), int(np.floor(y0 - my)), int(np.ceil(x1 + mx)) + 1, int(np.ceil(y1 + my)) + 1


def crop_instance(inst: Instance, margin: float = 0.1, size: int = 227) -> tuple[np.ndarray, CropTransform]:
    """Crop the instance's box (+ margin; outside the image is black) and resize it.

    Returns:
        crop: (size, size, 3) uint8 RGB.
        transform: :class:`CropTransform` between original and crop pixels.
    """
    from PIL import Image

    if int(size) < 8:
        raise ValueError(f"crop size must be >= 8 pixels, got {size}")
    img = inst.load()
    x0, y0, x1, y1 = crop_box(inst.bbox, margin)
    crop = Image.fromarray(img).crop((x0, y0, x1, y1)).resize((int(size), int(size)), Image.BILINEAR)
    return np.asarray(crop), CropTransform(x0, y0, x1, y1, int(size))


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
    q = query / np.maximum(np.linalg.norm(query, axis=1, keepdims=True), 1e-12)
    d = db / np.maximum(np.linalg.norm(db, axis=1, keepdims=True), 1e-12)
    sim = q @ d.T
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


def nn_transfer(query_bbox: Sequence[float], nn: Instance) -> np.ndarray:
    """Copy ``nn``'s visible keypoints into the query box in normalised box coordinates.

    ``x' = (x - x0_nn) / w_nn * w_q + x0_q`` (likewise y). Returns (K, 2) in the query's original pixels,
    NaN where the type is not visible in ``nn``.
    """
    qx0, qy0, qx1, qy1 = [float(v) for v in query_bbox]
    nx0, ny0, nx1, ny1 = [float(v) for v in nn.bbox]
    u = (visible_keypoints(nn) - [nx0, ny0]) / [nx1 - nx0, ny1 - ny0]
    return u * [qx1 - qx0, qy1 - qy0] + [qx0, qy0]


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


@dataclass
class Alignment:
    """A neighbour aligned to the query.

    Attributes:
        dense: (S, S, 2) pixel displacement (dx, dy) at every query-crop pixel p: p + dense(p) is the
            corresponding neighbour-crop pixel.
        energy, data_energy, smooth_energy: MRF energy of the grid flow and its terms.
        flow: (h, w, 2) integer grid flow (dx, dy) in cells.

    Unpacks as ``dense, energy = align(...)``.
    """

    dense: np.ndarray
    energy: float
    data_energy: float = float("nan")
    smooth_energy: float = float("nan")
    flow: np.ndarray | None = None

    def __iter__(self):
        return iter((self.dense, self.energy))


def align(fs: np.ndarray, ft: np.ndarray, geom: RFGeometry, size: int | tuple[int, int], beta: float = 3e-3,
          radius: int | None = None, n_iter: int = 10, spline_k: int = 1,
          geom_t: RFGeometry | None = None, **flow_kw) -> Alignment:
    """Align a neighbour's feature grid ``ft`` to the query's grid ``fs`` by the flow MRF.

    Args:
        fs: (h, w, C) query features; ft: (h2, w2, C) neighbour features.
        geom: geometry of the query grid in query-crop pixels (``geom_t``: of the neighbour grid; default same).
        size: query crop side S (or (H, W)) in pixels: the frame of the dense flow.
        beta: smoothness weight; radius: search radius in grid cells (None: whole grid); n_iter: BP iterations.
        spline_k: degree of the bivariate spline interpolating the grid flow (1 = bilinear).
        **flow_kw: passed to :func:`convcorr.flow.bp_flow` (e.g. ``coarse_to_fine=True``).
    Returns:
        :class:`Alignment` (dense (S, S, 2) pixel flow, energy, ...).
    """
    from .flow import bp_flow
    from .warp import dense_flow

    hw = (int(size), int(size)) if np.isscalar(size) else tuple(int(s) for s in size)
    res = bp_flow(fs, ft, beta=beta, radius=radius, n_iter=n_iter, **flow_kw)
    dense = dense_flow(res.flow, geom, geom_t or geom, hw, k=spline_k)
    return Alignment(dense, float(res.energy), float(res.data_energy), float(res.smooth_energy), res.flow)


def transfer_keypoints(kp_neighbour: np.ndarray, t_neighbour: CropTransform, t_query: CropTransform,
                       dense: np.ndarray) -> np.ndarray:
    """Neighbour keypoints (K, 2) in ITS original pixels -> query ORIGINAL pixels through an alignment.

    Args:
        kp_neighbour: (K, 2) (NaN rows stay NaN).
        t_neighbour, t_query: crop transforms of the neighbour and the query.
        dense: (S, S, 2) pixel flow of :func:`align` (query crop -> neighbour crop).
    """
    from .warp import transfer_points

    in_q_crop = transfer_points(t_neighbour.to_crop(kp_neighbour), dense)
    return t_query.from_crop(in_q_crop)


# ------------------------------------------------------------------------------------------------------ the method
@dataclass
class TransferConfig:
    """Settings of :class:`KeypointTransfer`.

    Attributes:
        method: "conv" (conv flow), "sift" (SIFT flow) or "nn" (nearest-neighbour copy).
        backbone, layer: feature layer for "conv".
        retrieval_backbone: backbone whose ``global_features`` rank neighbours (cosine).
        k: neighbours retrieved; top: neighbours (lowest energy) whose transfers are medianed.
        size: crop side in pixels (network input); margin: crop context as a fraction of the box side.
        beta, n_iter: MRF smoothness and BP iterations; max_radius_px: flow search radius in crop pixels
            (converted to grid cells of the layer; None = whole grid).
        coarse_to_fine: solve the MRF coarse-to-fine (:func:`convcorr.flow.bp_flow`; for large grids/radii).
        sift_step, sift_bin: dense SIFT grid step and bin size in crop pixels.
        rank_by: "energy" (total), "data" or "smooth".
        normalize: L2-normalise every feature column before the flow (default; the data term is then in [0, 4] and
            beta is on that scale); False keeps the raw feature scale (the paper's convention for raw conv4/SIFT,
            where beta must be scaled by the features' squared norm, see the README).
    """

    method: str = "conv"
    backbone: str = "alexnet"
    layer: str = "conv4"
    retrieval_backbone: str = "efficientnet_lite0"
    k: int = 10
    top: int = 5
    size: int = 227
    margin: float = 0.1
    beta: float = 3e-3
    max_radius_px: float | None = 112.0
    n_iter: int = 10
    coarse_to_fine: bool = False
    sift_step: int = 8
    sift_bin: int = 8
    rank_by: str = "energy"
    normalize: bool = True

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown transfer method {self.method!r}; choose from {METHODS}")
        if self.rank_by not in ("energy", "data", "smooth"):
            raise ValueError(f"rank_by must be 'energy', 'data' or 'smooth', got {self.rank_by!r}")
        if self.k < 1 or self.top < 1:
            raise ValueError(f"k and top must be >= 1, got k={self.k}, top={self.top}")


class FeatureCache:
    """In-memory per-instance cache of crops, global features and feature grids (keyed by ``Instance.id``),
    shareable between several :class:`KeypointTransfer` objects of one run."""

    def __init__(self, size: int = 227, margin: float = 0.1):
        self.size, self.margin = int(size), float(margin)
        self.crops: dict = {}
        self.glob: dict = {}
        self.grids: dict = {}

    def crop(self, inst: Instance) -> tuple[np.ndarray, CropTransform]:
        if inst.id not in self.crops:
            self.crops[inst.id] = crop_instance(inst, self.margin, self.size)
        return self.crops[inst.id]

    def global_features(self, insts: Sequence[Instance], backbone: str) -> np.ndarray:
        """(N, D) global features of the crops (computed in batches, once per instance)."""
        from .backbones import get_backbone

        todo = [i for i in {i.id: i for i in insts}.values() if (i.id, backbone) not in self.glob]
        if todo:
            f = get_backbone(backbone).global_features([self.crop(i)[0] for i in todo])
            for i, row in zip(todo, f):
                self.glob[(i.id, backbone)] = np.asarray(row, dtype=np.float32)
        return np.stack([self.glob[(i.id, backbone)] for i in insts])

    def conv_grids(self, insts: Sequence[Instance], backbone: str, layers: Sequence[str]) -> None:
        """Compute and cache (h, w, C) grids of several layers for several instances in batches."""
        from .backbones import get_backbone

        todo = [i for i in {i.id: i for i in insts}.values()
                if any(("conv", i.id, backbone, l) not in self.grids for l in layers)]
        if not todo:
            return
        bb = get_backbone(backbone)
        acts = bb.extract([self.crop(i)[0] for i in todo], list(layers), size=None)
        for l in layers:
            g = bb.rf(l)
            for i, a in zip(todo, acts[l]):
                self.grids[("conv", i.id, backbone, l)] = (a, g)

    def grid(self, inst: Instance, conf: TransferConfig) -> tuple[np.ndarray, RFGeometry]:
        """(h, w, C) feature grid of the instance's crop for ``conf`` and its geometry in crop pixels."""
        if conf.method == "sift":
            key = ("sift", inst.id, conf.sift_step, conf.sift_bin)
            if key not in self.grids:
                from .sift import dense_sift_grid

                self.grids[key] = dense_sift_grid(self.crop(inst)[0], step=conf.sift_step, bin_size=conf.sift_bin)
            return self.grids[key]
        key = ("conv", inst.id, conf.backbone, conf.layer)
        if key not in self.grids:
            self.conv_grids([inst], conf.backbone, [conf.layer])
        return self.grids[key]


class KeypointTransfer:
    """Predict a query's keypoints from aligned training neighbours (see the module docstring).

    >>> kt = KeypointTransfer(TransferConfig(method="conv", layer="conv4", k=25, top=5))
    >>> xy = kt.predict(query, train_instances)          # (K, 2) in the query's original pixels

    Crops, global features and feature grids are computed once per instance and cached in memory
    (``cache``, a :class:`FeatureCache`, may be shared between objects with the same size/margin).
    """

    def __init__(self, conf: TransferConfig | None = None, cache: FeatureCache | None = None, **kw):
        self.conf = conf or TransferConfig(**kw)
        if conf is not None and kw:
            raise TypeError("pass either a TransferConfig or keyword settings, not both")
        self.cache = cache or FeatureCache(self.conf.size, self.conf.margin)
        if (self.cache.size, self.cache.margin) != (self.conf.size, self.conf.margin):
            raise ValueError("the shared FeatureCache was made for another crop size/margin")

    # -- pieces
    def crop(self, inst: Instance) -> tuple[np.ndarray, CropTransform]:
        return self.cache.crop(inst)

    def grid(self, inst: Instance) -> tuple[np.ndarray, RFGeometry]:
        return self.cache.grid(inst, self.conf)

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

    def radius_cells(self, geom: RFGeometry, grid_hw: tuple[int, int]) -> int | None:
        if self.conf.max_radius_px is None:
            return None
        return int(min(max(grid_hw) - 1, max(1, round(self.conf.max_radius_px / geom.stride))))

    def align_pair(self, query: Instance, neighbour: Instance) -> Alignment:
        """Align ``neighbour`` to ``query`` (dense flow on the query crop)."""
        fs, geom = self.grid(query)
        ft, geom_t = self.grid(neighbour)
        c = self.conf
        kw = {"coarse_to_fine": True} if c.coarse_to_fine else {}
        if not c.normalize:
            kw["normalize"] = False
        return align(fs, ft, geom, c.size, c.beta, self.radius_cells(geom, ft.shape[:2]), c.n_iter,
                     geom_t=geom_t, **kw)

    def transfer(self, query: Instance, neighbour: Instance, alignment: Alignment) -> np.ndarray:
        """Neighbour's visible keypoints -> query ORIGINAL pixels through the alignment, (K, 2)."""
        return transfer_keypoints(visible_keypoints(neighbour), self.crop(neighbour)[1], self.crop(query)[1],
                                  alignment.dense)

    def warped_neighbour(self, query: Instance, neighbour: Instance, alignment: Alignment) -> np.ndarray:
        """The neighbour's crop resampled into the query's crop frame (for figures)."""
        from .warp import warp_image

        return warp_image(self.crop(neighbour)[0], alignment.dense)

    # -- the method
    def predict_from_neighbours(self, query: Instance, neighbours: Sequence[Instance], return_details: bool = False):
        """(K, 2) prediction (query original pixels) from already retrieved ``neighbours`` (most similar first).

        With ``return_details`` also returns {"alignments", "transferred" (M, K, 2), "energies" (M,),
        "order" (neighbour indices by rank)}.
        """
        if not neighbours:
            raise ValueError(f"{query.id}: no neighbours to transfer from")
        for n in neighbours:
            if n.keypoint_names != query.keypoint_names:
                raise ValueError(f"{n.id}: keypoint names differ from the query's ({query.id})")
        c = self.conf
        if c.method == "nn":
            trans = np.stack([nn_transfer(query.bbox, n) for n in neighbours])
            pred = first_available(trans)
            det = {"alignments": [], "transferred": trans, "energies": np.arange(len(neighbours), dtype=float),
                   "order": np.arange(len(neighbours))}
            return (pred, det) if return_details else pred
        aligns = [self.align_pair(query, n) for n in neighbours]
        trans = np.stack([self.transfer(query, n, a) for n, a in zip(neighbours, aligns)])
        key = {"energy": "energy", "data": "data_energy", "smooth": "smooth_energy"}[c.rank_by]
        energies = np.array([getattr(a, key) for a in aligns])
        pred = median_of_top(trans, energies, c.top)
        if return_details:
            return pred, {"alignments": aligns, "transferred": trans, "energies": energies,
                          "order": np.argsort(energies, kind="stable")}
        return pred

    def predict(self, query: Instance, train_instances: Sequence[Instance], return_details: bool = False,
                exclude_same_source: bool = False):
        """(K, 2) predicted keypoints of ``query`` in its ORIGINAL image pixels: retrieve the k nearest
        same-category training instances, align, transfer, median of the top ones (see module docstring).
        With ``return_details`` also returns the details of :meth:`predict_from_neighbours` plus "neighbours"."""
        nb = self.neighbours(query, train_instances, exclude_same_source)
        out = self.predict_from_neighbours(query, nb, return_details)
        if return_details:
            out[1]["neighbours"] = nb
        return out
