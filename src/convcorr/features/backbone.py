"""Backbone layers (and hypercolumns) as a :class:`~convcorr.features.base.DenseFeatures` plug-in."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..core.arrays import l2_normalize
from ..core.geometry import RFGeometry
from .base import DENSE_FEATURES, DenseFeatures, FeatureGrid
from .cache import weights_digest


def _resample_grid(a: np.ndarray, g: RFGeometry, centres_x: np.ndarray, centres_y: np.ndarray) -> np.ndarray:
    """Bilinear samples of a (h, w, C) grid with geometry ``g`` at pixel positions (clamped to the outer columns).

    Returns (len(centres_y), len(centres_x), C)."""
    h, w = a.shape[:2]

    def axis(pos, n):
        u = np.clip((pos - g.offset) / g.stride, 0, n - 1)
        i0 = np.minimum(np.floor(u).astype(np.int64), max(n - 2, 0))
        t = u - i0 if n > 1 else np.zeros_like(u)
        return i0, np.minimum(i0 + 1, n - 1), t

    x0, x1, tx = axis(centres_x, w)
    y0, y1, ty = axis(centres_y, h)
    top = a[y0][:, x0] * (1 - tx)[None, :, None] + a[y0][:, x1] * tx[None, :, None]
    bot = a[y1][:, x0] * (1 - tx)[None, :, None] + a[y1][:, x1] * tx[None, :, None]
    return (top * (1 - ty)[:, None, None] + bot * ty[:, None, None]).astype(np.float32)


@DENSE_FEATURES.register("backbone")
class BackboneLayerFeatures(DenseFeatures):
    """One layer (or a hypercolumn of several layers) of a backbone as a plug-in.

    Spec: ``"<backbone>:<layer>"`` or ``"<backbone>:<layer>+<layer>..."`` (the layers are the part after the LAST
    colon). Images are fed at their own size (no resizing), so the grid's geometry is ``backbone.rf(layer)`` in
    the image's pixels. A hypercolumn resamples every layer bilinearly to the column centres of the
    finest-stride layer (clamped at the borders), L2-normalises each layer's columns (``normalize_layers``, so
    every layer weighs the same) and concatenates them; its geometry is the finest layer's centres with the
    largest receptive field.

    Args:
        backbone: a :class:`convcorr.backbones.Backbone` object or a registered name.
        layers: layer name(s).
        device, weights: passed to :func:`convcorr.backbones.get_backbone` when ``backbone`` is a name.
        batch_size: images per forward pass in :meth:`compute_many`.
    """

    def __init__(self, backbone, layers, device=None, weights: str | None = None, batch_size: int = 16,
                 normalize_layers: bool = True):
        from ..backbones import get_backbone

        if isinstance(backbone, str):
            kw = {k: v for k, v in (("device", device), ("weights", weights)) if v is not None}
            try:
                backbone = get_backbone(backbone, **kw)
            except KeyError as exc:
                raise ValueError(f"features: {exc.args[0]}") from exc
        self.backbone = backbone
        self.layers = [layers] if isinstance(layers, str) else list(layers)
        if not self.layers:
            raise ValueError(f"features: no layer given for backbone {backbone.name!r}")
        bad = [l for l in self.layers if l not in backbone.layer_names]
        if bad:
            raise ValueError(f"features: backbone {backbone.name!r} has no spatial layer(s) {bad}; "
                             f"layers: {list(backbone.layer_names)}")
        self.batch_size, self.normalize_layers = int(batch_size), bool(normalize_layers)
        self.geoms = {l: backbone.rf(l) for l in self.layers}
        self.spec = f"{backbone.name}:{'+'.join(self.layers)}"

    @classmethod
    def from_spec(cls, spec: str, backbone=None, **options) -> "BackboneLayerFeatures":
        name, _, layers = spec.rpartition(":")
        if backbone is None:
            if not name or not layers:
                raise ValueError(f"features {spec!r}: expected '<backbone>:<layer>' (e.g. 'alexnet:conv4')")
            backbone = name
        return cls(backbone, [l.strip() for l in layers.split("+") if l.strip()], **options)

    @property
    def cache_key(self) -> str:
        # the weights digest (issue #10): other weights under the same name never reuse cached features
        return (f"{self.spec}-w{weights_digest(self.backbone)}"
                + ("" if self.normalize_layers or len(self.layers) == 1 else "-raw"))

    @property
    def geometry(self) -> RFGeometry:
        fine = min(self.layers, key=lambda l: self.geoms[l].stride)
        g = self.geoms[fine]
        return RFGeometry(max(self.geoms[l].size for l in self.layers), g.stride, g.offset)

    def _grids(self, acts: dict, n: int, image_hw) -> list[FeatureGrid]:
        out = []
        for i in range(n):
            if len(self.layers) == 1:
                l = self.layers[0]
                a = acts[l][i]
                if a.shape[0] < 1 or a.shape[1] < 1:
                    raise ValueError(f"features {self.spec!r}: image {image_hw} is too small for layer {l}")
                out.append(FeatureGrid(a, self.geoms[l], image_hw, self.spec))
                continue
            geom = self.geometry
            fine = min(self.layers, key=lambda l: self.geoms[l].stride)
            h, w = acts[fine][i].shape[:2]
            cx, cy = geom.column_centers(w), geom.column_centers(h)
            parts = []
            for l in self.layers:
                a = _resample_grid(acts[l][i], self.geoms[l], cx, cy)
                if self.normalize_layers:
                    a = l2_normalize(a, dtype=a.dtype)
                parts.append(a.astype(np.float32))
            out.append(FeatureGrid(np.concatenate(parts, -1), geom, image_hw, self.spec))
        return out

    def compute(self, image: np.ndarray) -> FeatureGrid:
        return self.compute_many([image])[0]

    def compute_many(self, images: Sequence[np.ndarray]) -> list[FeatureGrid]:
        """Grids of several images; images of equal size go through the network in batches."""
        images = [np.asarray(im) for im in images]
        out: list = [None] * len(images)
        by_size: dict = {}
        for i, im in enumerate(images):
            by_size.setdefault(im.shape, []).append(i)
        for shape, idx in by_size.items():
            acts = self.backbone.extract([images[i] for i in idx], self.layers, size=None,
                                         batch_size=self.batch_size)
            for i, g in zip(idx, self._grids(acts, len(idx), shape[:2])):
                out[i] = g
        return out
