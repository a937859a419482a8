"""Keypoint transfer by intra-class alignment (paper Section 3, Table 2).

For a query instance: retrieve its k nearest training neighbours by a global feature (cosine similarity),
align each neighbour to the query with the flow MRF (:func:`convcorr.flow.bp_flow`) on conv-layer or dense-SIFT
features, interpolate the flow with bivariate splines (:func:`convcorr.warp.dense_flow`), move the neighbour's
keypoints into the query, rank neighbours by their alignment energy, and predict each keypoint type as the
coordinate-wise median over the ``top`` best-ranked neighbours that have that type. Baseline "nn": copy the
keypoints of the single nearest neighbour in normalised box coordinates.

Every instance is first cropped to its box enlarged by ``margin`` (a fraction of the box side on each side) and
resized to ``size x size`` pixels; :class:`CropTransform` maps points exactly between original and crop pixels.
All predictions are returned in the query's ORIGINAL image pixels, (x, y).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .flow import bp_flow
from .geometry import RFGeometry
from .sift import dense_sift_grid
from .types import Instance
from .warp import dense_flow, transfer_points, warp_image


# --------------------------------------------------------------------------------------------------------- crops
@dataclass(frozen=True)
class CropTransform:
    """Integer crop box (x0, y0, x1, y1) of the original image resized to (size, size) pixels."""

    x0: int
    y0: int
    x1: int
    y1: int
    size: int

    @property
    def scale(self) -> np.ndarray:
        return np.array([self.size / (self.x1 - self.x0), self.size / (self.y1 - self.y0)])

    def to_crop(self, xy: np.ndarray) -> np.ndarray:
        """(N, 2) original pixels -> crop pixels (pixel-centre convention of resampling)."""
        return (np.asarray(xy, dtype=np.float64) - [self.x0, self.y0] + 0.5) * self.scale - 0.5

    def from_crop(self, xy: np.ndarray) -> np.ndarray:
        """(N, 2) crop pixels -> original pixels."""
        return (np.asarray(xy, dtype=np.float64) + 0.5) / self.scale - 0.5 + [self.x0, self.y0]


def crop_box(bbox: Sequence[float], margin: float) -> tuple[int, int, int, int]:
    """Integer box enclosing ``bbox`` enlarged by ``margin`` x its width/height on every side."""
    x0, y0, x1, y1 = [float(v) for v in bbox]
    mx, my = margin * (x1 - x0), margin * (y1 - y0)
    return int(np.floor(x0 - mx)), int(np.floor(y0 - my)), int(np.ceil(x1 + mx)) + 1, int(np.ceil(y1 + my)) + 1


def crop_instance(inst: Instance, margin: float = 0.1, size: int = 227) -> tuple[np.ndarray, CropTransform]:
    """Crop the instance's box (+ margin; outside the image is black) and resize to (size, size, 3)."""
    from PIL import Image

    img = inst.load()
    x0, y0, x1, y1 = crop_box(inst.bbox, margin)
    crop = Image.fromarray(img).crop((x0, y0, x1, y1)).resize((size, size), Image.BILINEAR)
    return np.asarray(crop), CropTransform(x0, y0, x1, y1, size)


# ------------------------------------------------------------------------------------------------------- pieces
def retrieve_neighbours(query: np.ndarray, db: np.ndarray, k: int, mask: np.ndarray | None = None) -> np.ndarray:
    """Indices of the k most cosine-similar rows of ``db`` (N, D) for each query row (Q, D) -> (Q, k).

    ``mask`` (Q, N) bool marks allowed candidates (e.g. excluding the query itself); fewer than k allowed
    candidates give -1 entries at the end.
    """
    q = query / np.maximum(np.linalg.norm(query, axis=1, keepdims=True), 1e-12)
    d = db / np.maximum(np.linalg.norm(db, axis=1, keepdims=True), 1e-12)
    sim = q @ d.T
    if mask is not None:
        sim = np.where(mask, sim, -np.inf)
    order = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    taken = np.take_along_axis(sim, order, 1)
    return np.where(np.isfinite(taken), order, -1)


def nn_transfer(query_bbox: Sequence[float], nn: Instance) -> np.ndarray:
    """Copy ``nn``'s keypoints into the query box in normalised box coordinates -> (K, 2), NaN where absent."""
    qx0, qy0, qx1, qy1 = [float(v) for v in query_bbox]
    nx0, ny0, nx1, ny1 = nn.bbox
    u = (nn.keypoints - [nx0, ny0]) / [nx1 - nx0, ny1 - ny0]
    return u * [qx1 - qx0, qy1 - qy0] + [qx0, qy0]


def median_of_top(transferred: np.ndarray, energies: np.ndarray, top: int) -> np.ndarray:
    """Coordinate-wise median per keypoint type over the ``top`` lowest-energy neighbours that have the type.

    Args:
        transferred: (M, K, 2) keypoints of M neighbours in the query frame (NaN where absent).
        energies: (M,) alignment energies (lower is better).
    Returns:
        (K, 2); NaN for a type no neighbour has.
    """
    order = np.argsort(energies, kind="stable")
    t = transferred[order]
    out = np.full(t.shape[1:], np.nan)
    for j in range(t.shape[1]):
        have = np.all(np.isfinite(t[:, j]), axis=1)
        if have.any():
            out[j] = np.median(t[have][:top, j], axis=0)
    return out


@dataclass
class Alignment:
    """Result of aligning a neighbour to the query: dense (S, S, 2) pixel flow in crop pixels and energy."""

    dense: np.ndarray
    energy: float
    data_energy: float
    smooth_energy: float


def align(fs: np.ndarray, ft: np.ndarray, geom: RFGeometry, size: int, beta: float = 3e-3,
          radius: int | None = None, n_iter: int = 10, spline_k: int = 1) -> Alignment:
    """Align target grid ``ft`` to source grid ``fs`` (same geometry, crops of ``size`` px) -> Alignment."""
    res = bp_flow(fs, ft, beta=beta, radius=radius, n_iter=n_iter)
    dense = dense_flow(res.flow, geom, geom, (size, size), k=spline_k)
    return Alignment(dense, res.energy, res.data_energy, res.smooth_energy)


# ------------------------------------------------------------------------------------------------------ the method
@dataclass
class TransferConfig:
    method: str = "conv"            # "conv", "sift" or "nn"
    backbone: str = "alexnet"
    layer: str = "conv4"
    size: int = 227                 # crop side in pixels (network input)
    margin: float = 0.1
    beta: float = 3e-3
    max_radius_px: float = 112.0    # flow search radius in crop pixels (converted to grid cells)
    n_iter: int = 10
    top: int = 5
    sift_step: int = 8
    sift_bin: int = 8
    rank_by: str = "energy"         # "energy" (total), "data" or "smooth"


@dataclass
class KeypointTransfer:
    """Predict a query's keypoints from aligned neighbours (see the module docstring).

    Features of every instance are computed once and cached in memory (keyed by ``Instance.id``).
    """

    conf: TransferConfig = field(default_factory=TransferConfig)
    _crops: dict = field(default_factory=dict, repr=False)
    _grids: dict = field(default_factory=dict, repr=False)

    def crop(self, inst: Instance) -> tuple[np.ndarray, CropTransform]:
        if inst.id not in self._crops:
            self._crops[inst.id] = crop_instance(inst, self.conf.margin, self.conf.size)
        return self._crops[inst.id]

    def grid(self, inst: Instance) -> tuple[np.ndarray, RFGeometry]:
        """(h, w, C) feature grid of the instance's crop and its geometry in crop pixels."""
        c = self.conf
        key = (inst.id, c.method, c.backbone, c.layer, c.sift_step, c.sift_bin)
        if key not in self._grids:
            crop, _ = self.crop(inst)
            if c.method == "sift":
                g, geom = dense_sift_grid(crop, step=c.sift_step, bin_size=c.sift_bin)
            else:
                from .backbones import get_backbone

                bb = get_backbone(c.backbone)
                g = bb.extract([crop], [c.layer], size=None)[c.layer][0]
                geom = bb.rf(c.layer)
            self._grids[key] = (g, geom)
        return self._grids[key]

    def align_pair(self, query: Instance, neighbour: Instance) -> Alignment:
        fs, geom = self.grid(query)
        ft, _ = self.grid(neighbour)
        r = int(min(max(ft.shape[:2]) - 1, max(1, round(self.conf.max_radius_px / geom.stride))))
        return align(fs, ft, geom, self.conf.size, self.conf.beta, r, self.conf.n_iter)

    def transfer(self, query: Instance, neighbour: Instance, alignment: Alignment) -> np.ndarray:
        """Neighbour keypoints -> query ORIGINAL pixels through the alignment, (K, 2)."""
        _, tq = self.crop(query)
        _, tn = self.crop(neighbour)
        in_q_crop = transfer_points(tn.to_crop(neighbour.keypoints), alignment.dense)
        return tq.from_crop(in_q_crop)

    def predict(self, query: Instance, neighbours: Sequence[Instance], return_details: bool = False):
        """(K, 2) predicted keypoints of ``query`` (original pixels) from its retrieved ``neighbours`` (best first).

        Neighbours must share the query's ``keypoint_names``.
        """
        for n in neighbours:
            if n.keypoint_names != query.keypoint_names:
                raise ValueError(f"{n.id}: keypoint names differ from the query's ({query.id})")
        if self.conf.method == "nn":
            pred = nn_transfer(query.bbox, neighbours[0])
            return (pred, {}) if return_details else pred
        aligns = [self.align_pair(query, n) for n in neighbours]
        trans = np.stack([self.transfer(query, n, a) for n, a in zip(neighbours, aligns)])
        key = {"energy": "energy", "data": "data_energy", "smooth": "smooth_energy"}[self.conf.rank_by]
        energies = np.array([getattr(a, key) for a in aligns])
        pred = median_of_top(trans, energies, self.conf.top)
        if return_details:
            return pred, {"alignments": aligns, "transferred": trans, "energies": energies}
        return pred

    def warped_neighbour(self, query: Instance, neighbour: Instance, alignment: Alignment) -> np.ndarray:
        """The neighbour's crop resampled into the query's crop frame (for figures)."""
        crop, _ = self.crop(neighbour)
        return warp_image(crop, alignment.dense)
