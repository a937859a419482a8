"""Features at points of instance crops: conv-layer columns, SIFT descriptors, and dense (1-pixel-stride) conv maps.

Every instance is first cropped to its box enlarged by ``margin`` (fraction of the box width/height on every
side; outside the image is black) and resized to ``size x size`` pixels, the network input (paper Sec. 4). The
crop comes with exact point maps between original-image pixels and crop pixels (pixel-centre convention of
resampling, as :func:`convcorr.core.geometry.scale_points`). All points are (x, y) in pixels of the image the
features are computed on.

- :func:`conv_features_at`: for each point the feature of the column whose rf centre is nearest
  (``backbone.rf(layer).pixel_to_column``; the crop is fed to the network at its own size).
- :func:`sift_features_at`: SIFT descriptor of the paper's "radius" r (bin size r / 2, 4 x 4 bins span 2r px)
  centred exactly at each point (:func:`convcorr.numerics.sift.sift_at_points`).
- :class:`PixelConvFeatures`: a layer on one crop at 1-pixel stride (exact: the crop is shifted by every offset
  within one stride and re-run).
- :func:`convcorr.features.cache.cached`: a tiny on-disk NPZ cache in ``cache_dir()/features`` keyed by instance id
  + feature name (a plug-in's :attr:`~convcorr.features.base.DenseFeatures.cache_key`: spec and weights digest,
  plus input size) + a content digest of the input + the feature code version; written atomically, corrupt
  entries rebuilt, an unusable folder means no caching.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..numerics.sift import radius_to_bin_size, sift_at_points
from .backbone import BackboneLayerFeatures


# --------------------------------------------------------------------------------------------- features at points
def conv_features_at(backbone, crops: Sequence[np.ndarray], xy: Sequence[np.ndarray], layers: Sequence[str],
                     batch_size: int = 16) -> dict[str, np.ndarray]:
    """Feature of the column whose rf centre is nearest each point.

    Args:
        crops: N images (S, S, 3) uint8 fed to the network at their own size (all the same size).
        xy: N arrays (K_i, 2) of points in crop pixels.
        layers: spatial layer names of ``backbone``.
    Returns:
        {layer: (sum K_i, C) float32} rows in the order of the points.
    """
    crops, xy = list(crops), [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in xy]
    if len(crops) != len(xy):
        raise ValueError(f"conv_features_at: {len(crops)} crops but {len(xy)} point arrays")
    if not crops:
        return {l: np.zeros((0, 0), np.float32) for l in layers}
    acts = backbone.extract(crops, list(layers), size=None, batch_size=batch_size)
    out = {}
    for l in layers:
        g = backbone.rf(l)
        rows = []
        for a, p in zip(acts[l], xy):
            cr = g.pixel_to_column(p, a.shape[:2])
            rows.append(a[cr[:, 1], cr[:, 0]])
        out[l] = np.concatenate(rows).astype(np.float32)
    return out


def sift_features_at(crops, xy, radius: float) -> np.ndarray:
    """SIFT descriptors of the paper's ``radius`` r (bin size r / 2) centred exactly at points.

    Args:
        crops: one image (H, W[, 3]) with ``xy`` (K, 2), or a sequence of images with a sequence of (K_i, 2).
        radius: SIFT radius in pixels (the descriptor spans 2r px).
    Returns:
        (K, 128) or (sum K_i, 128) float32, rows in the order of the points.
    """
    if isinstance(crops, np.ndarray) and crops.ndim in (2, 3) and crops.dtype != object:
        return sift_at_points(crops, np.asarray(xy, dtype=np.float64).reshape(-1, 2), radius_to_bin_size(radius))
    crops, xy = list(crops), list(xy)
    if len(crops) != len(xy):
        raise ValueError(f"sift_features_at: {len(crops)} crops but {len(xy)} point arrays")
    if not crops:
        return np.zeros((0, 128), np.float32)
    return np.concatenate([sift_features_at(c, p, radius) for c, p in zip(crops, xy)])


# ------------------------------------------------------------------------------------------------ dense features
class PixelConvFeatures:
    """Conv features of one image at 1-pixel stride, computed exactly by shifting the input.

    For every shift (sx, sy) in [0, stride)^2 the image translated by (-sx, -sy) (zero fill on the right/bottom) is
    fed to the network, so column (c, r) of that pass is centred at pixel (offset + stride * c + sx,
    offset + stride * r + sy) of the original image; together the passes cover every pixel. ``stride^2``
    forward passes (256 for AlexNet conv3-pool5), done once per image for all requested layers. Pixels
    left of/above the first column centre are clamped to it (and likewise beyond the last one).
    """

    def __init__(self, backbone, image: np.ndarray, layers: Sequence[str], batch_size: int = 32):
        self.backbone = backbone
        self.layers = list(layers)
        self.image_hw = image.shape[:2]
        self.geoms = {l: backbone.rf(l) for l in self.layers}
        self.smax = smax = int(max(g.stride for g in self.geoms.values()))
        H, W = image.shape[:2]
        shifted, self.shifts = [], []
        for sy in range(smax):
            for sx in range(smax):
                im = np.zeros_like(image)
                im[: H - sy, : W - sx] = image[sy:, sx:]
                shifted.append(im)
                self.shifts.append((sx, sy))
        self.acts = backbone.extract(shifted, self.layers, size=None, batch_size=batch_size)
        self.index = {s: i for i, s in enumerate(self.shifts)}

    def at(self, layer: str, xy: np.ndarray) -> np.ndarray:
        """(M, C) features at integer pixels ``xy`` (M, 2) (rounded)."""
        g = self.geoms[layer]
        a = self.acts[layer]
        xy = np.rint(np.asarray(xy, dtype=np.float64).reshape(-1, 2)).astype(np.int64)
        st = int(g.stride)
        rel = np.maximum(xy - int(round(g.offset)), 0)
        s = rel % st
        cr = rel // st
        h, w = a.shape[1:3]
        cr[:, 0] = np.clip(cr[:, 0], 0, w - 1)
        cr[:, 1] = np.clip(cr[:, 1], 0, h - 1)
        idx = s[:, 1] * self.smax + s[:, 0]  # shifts are enumerated row-major: index = sy * smax + sx
        return a[idx, cr[:, 1], cr[:, 0]]

    def grid(self, layer: str) -> np.ndarray:
        """(H, W, C) features at every pixel of the image (pixel (x, y) -> row y, column x)."""
        H, W = self.image_hw
        xs, ys = np.meshgrid(np.arange(W), np.arange(H))
        return self.at(layer, np.stack([xs.ravel(), ys.ravel()], 1)).reshape(H, W, -1)


def _group_by_backbone(feats: dict) -> tuple[dict, dict]:
    """Split {name: DenseFeatures} into {id(backbone): (backbone, {name: layer})} for single-layer backbone
    plug-ins (computed together, one forward pass per image) and the rest."""
    groups: dict = {}
    rest = {}
    for n, f in feats.items():
        if isinstance(f, BackboneLayerFeatures) and len(f.layers) == 1:
            groups.setdefault(id(f.backbone), (f.backbone, {}))[1][n] = f.layers[0]
        else:
            rest[n] = f
    return groups, rest


def features_at_points(feats: dict, image: np.ndarray, xy: np.ndarray) -> dict[str, np.ndarray]:
    """{name: (N, C)} features of several plug-ins at the points (x, y) of one image: each plug-in's
    :meth:`~convcorr.features.base.DenseFeatures.at_points` (exact SIFT at the point; nearest column for backbone
    layers, all layers of one backbone from one forward pass)."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    groups, rest = _group_by_backbone(feats)
    out = {n: f.at_points(image, xy) for n, f in rest.items()}
    for bb, layers in groups.values():
        got = conv_features_at(bb, [image], [xy], sorted(set(layers.values())))
        out.update({n: got[l] for n, l in layers.items()})
    return {n: out[n] for n in feats}


def features_at_pixels(feats: dict, image: np.ndarray, xy: np.ndarray) -> dict[str, np.ndarray]:
    """{name: (N, C)} features at 1-pixel stride: for each integer pixel (x, y) (clipped into the image) the
    feature of a column centred EXACTLY there: dense SIFT computed at the pixel; backbone layers by
    :class:`PixelConvFeatures` (the image shifted by every offset within one stride and re-run; one set of passes
    per backbone for all its layers). Other plug-ins: :meth:`~convcorr.features.base.DenseFeatures.at_points`."""
    H, W = np.asarray(image).shape[:2]
    xy = np.clip(np.rint(np.asarray(xy, dtype=np.float64).reshape(-1, 2)), 0, [W - 1, H - 1])
    groups, rest = _group_by_backbone(feats)
    out = {n: f.at_points(image, xy) for n, f in rest.items()}
    for bb, layers in groups.values():
        pix = PixelConvFeatures(bb, image, sorted(set(layers.values())))
        out.update({n: pix.at(l, xy) for n, l in layers.items()})
    return {n: out[n] for n in feats}
