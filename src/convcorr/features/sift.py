"""Dense SIFT as a :class:`~convcorr.features.base.DenseFeatures` plug-in (kind ``sift``)."""
from __future__ import annotations

import numpy as np

from ..core.options import parse_key_values
from ..numerics.sift import radius_to_bin_size, sift_at_points
from .base import DENSE_FEATURES, DenseFeatures, FeatureGrid


@DENSE_FEATURES.register("sift")
class DenseSiftFeatures(DenseFeatures):
    """Dense SIFT (VLFeat ``vl_dsift`` conventions, :func:`convcorr.numerics.sift.dense_sift_grid`) as a plug-in.

    Spec: ``"sift"`` or ``"sift:step=8,bin=8"``; ``radius=r`` is the paper's SIFT radius (``bin = r / 2``).

    Args:
        step: distance between descriptor centres in pixels (grid stride).
        bin: spatial bin side in pixels (the descriptor spans 4 bins).
        smooth, magnif, flat_window, window_size, contrast_threshold: see :func:`convcorr.numerics.sift.dense_sift_grid`.
    """

    def __init__(self, step: int = 8, bin: float = 8, radius: float | None = None, **sift_kw):
        if radius is not None:
            bin = radius_to_bin_size(float(radius))
        if not isinstance(step, (int, float, np.integer, np.floating)) or int(step) != step or int(step) < 1:
            raise ValueError(f"features 'sift': step must be a positive integer, got {step!r}")
        if not isinstance(bin, (int, float, np.integer, np.floating)) or not float(bin) >= 1:
            raise ValueError(f"features 'sift': bin must be >= 1 pixel, got {bin!r}")
        allowed = {"smooth", "magnif", "flat_window", "window_size", "contrast_threshold"}
        unknown = set(sift_kw) - allowed
        if unknown:
            raise ValueError(f"features 'sift': unknown option(s) {sorted(unknown)}; "
                             f"valid: {sorted(allowed | {'step', 'bin', 'radius'})}")
        self.step, self.bin, self.sift_kw = int(step), float(bin), dict(sift_kw)
        extra = "".join(f",{k}={v}" for k, v in sorted(self.sift_kw.items()))
        self.spec = f"sift:step={self.step},bin={self.bin:g}{extra}"

    @classmethod
    def from_spec(cls, rest: str, **options) -> "DenseSiftFeatures":
        return cls(**{**parse_key_values(rest, f"features 'sift:{rest}': option"), **options})

    def compute(self, image: np.ndarray) -> FeatureGrid:
        from ..numerics.sift import dense_sift_grid

        image = np.asarray(image)
        d, geom = dense_sift_grid(image, step=self.step, bin_size=self.bin, **self.sift_kw)
        if d.shape[0] < 1 or d.shape[1] < 1:
            raise ValueError(f"features {self.spec!r}: image {image.shape[:2]} is too small for a 4 x {self.bin:g} px "
                             "descriptor")
        return FeatureGrid(d, geom, image.shape[:2], self.spec)

    def at_points(self, image: np.ndarray, xy: np.ndarray) -> np.ndarray:
        """(N, 128) descriptors centred exactly at the points (:func:`convcorr.numerics.sift.sift_at_points`)."""
        return sift_at_points(np.asarray(image), np.asarray(xy, dtype=np.float64).reshape(-1, 2), self.bin,
                              **self.sift_kw)
