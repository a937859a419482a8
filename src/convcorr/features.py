"""Features at points: conv-layer columns and SIFT descriptors at keypoints, and 1-pixel-stride conv features.

All points are (x, y) in the pixels of the image the features are computed on (here: instance crops of
:func:`convcorr.transfer.crop_instance`, which are the network input).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .sift import radius_to_bin_size, sift_at_points


def conv_features_at(backbone, crops: Sequence[np.ndarray], xy: Sequence[np.ndarray], layers: Sequence[str],
                     batch_size: int = 16) -> dict[str, np.ndarray]:
    """Feature of the column whose rf centre is nearest each point.

    Args:
        crops: N images (S, S, 3) fed to the network at their own size.
        xy: N arrays (K_i, 2) of points in crop pixels.
    Returns:
        {layer: (sum K_i, C)} rows in the order of the points.
    """
    acts = backbone.extract(list(crops), list(layers), size=None, batch_size=batch_size)
    out = {}
    for l in layers:
        g = backbone.rf(l)
        rows = []
        for a, p in zip(acts[l], xy):
            cr = g.pixel_to_column(np.asarray(p), a.shape[:2])
            rows.append(a[cr[:, 1], cr[:, 0]])
        out[l] = np.concatenate(rows) if rows else np.zeros((0, acts[l].shape[-1]))
    return out


def sift_features_at(crop: np.ndarray, xy: np.ndarray, radius: float) -> np.ndarray:
    """(K, 128) SIFT descriptors of the paper's ``radius`` (bin size radius / 2) centred at the points."""
    return sift_at_points(crop, xy, radius_to_bin_size(radius))


class PixelConvFeatures:
    """Conv features of one image at 1-pixel stride, computed exactly by shifting the input.

    For every shift (sx, sy) in [0, stride)^2 the image translated by (-sx, -sy) is fed to the network, so column
    (c, r) of that pass is centred at pixel (offset + stride * c + sx, offset + stride * r + sy) of the original
    image; together the passes cover every pixel. ``stride^2`` forward passes (256 for AlexNet conv3-pool5),
    done once per image for all requested layers.
    """

    def __init__(self, backbone, image: np.ndarray, layers: Sequence[str], batch_size: int = 32):
        self.backbone = backbone
        self.layers = list(layers)
        self.geoms = {l: backbone.rf(l) for l in self.layers}
        smax = int(max(g.stride for g in self.geoms.values()))
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
        """(M, C) features at integer pixels ``xy`` (M, 2); pixels left of/above the first centre are clamped."""
        g = self.geoms[layer]
        a = self.acts[layer]
        xy = np.rint(np.asarray(xy, dtype=np.float64)).astype(np.int64)
        rel = np.maximum(xy - int(round(g.offset)), 0)
        s = rel % int(g.stride)
        cr = rel // int(g.stride)
        h, w = a.shape[1:3]
        cr[:, 0] = np.clip(cr[:, 0], 0, w - 1)
        cr[:, 1] = np.clip(cr[:, 1], 0, h - 1)
        idx = np.array([self.index[(int(sx), int(sy))] for sx, sy in s])
        return a[idx, cr[:, 1], cr[:, 0]]
