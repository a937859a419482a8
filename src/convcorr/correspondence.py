"""``convcorr.correspond``: dense correspondence between two images of any size, in their ORIGINAL pixels.

>>> import convcorr
>>> c = convcorr.correspond(img_a, img_b, features="alexnet:conv4", matcher="flow")
>>> c.transfer([[120.0, 80.0]])          # A pixels -> B pixels
>>> c.transfer_back([[300.0, 200.0]])    # B pixels -> A pixels
>>> c.forward.shape, c.backward.shape    # (Ha, Wa, 2) B pixel per A pixel, (Hb, Wb, 2) A pixel per B pixel
>>> c.warp(img_b)                        # B resampled onto A's frame, (Ha, Wa, 3)

Resizing (documented behaviour). Each image is resized (bilinear, aspect ratio kept) so that its LONGER side is
``max_side`` pixels (default 256, up or down; at least ``min_side`` pixels on the shorter side), features are
computed on the resized image at its own size, and every result is mapped back EXACTLY to original pixels with
the pixel-centre convention of resampling (:func:`convcorr.core.geometry.scale_points`:
``x' = (x + 0.5) * W' / W - 0.5``). ``max_side=None`` uses the images as they are. So any sizes and aspect
ratios work, and the two images may differ in size.

Directions. ``both=True`` (default) runs the matcher both ways (A -> B and B -> A; for ``nn``, ``mnn`` and
``softargmax`` the reverse reuses the similarity matrix); ``both=False`` runs it A -> B only and obtains B -> A by
the exact, fold-correct inversion of the A -> B map (:meth:`convcorr.matchers.Correspondence.invert`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .core.geometry import scale_points
from .matchers.base import Correspondence


def working_size(hw: tuple[int, int], max_side: Optional[int], min_side: int = 64) -> tuple[int, int]:
    """(h, w) an (H, W) image is resized to: longer side ``max_side`` (aspect ratio kept, rounded), shorter side
    at least ``min_side``; ``max_side=None`` keeps (H, W)."""
    H, W = int(hw[0]), int(hw[1])
    if max_side is None:
        return H, W
    s = float(max_side) / max(H, W)
    if min(H, W) * s < min_side:
        s = float(min_side) / min(H, W)
    return max(1, int(round(H * s))), max(1, int(round(W * s)))


@dataclass
class ImageCorrespondence:
    """Correspondence between two images in their ORIGINAL pixels (x, y), top-left pixel centre at (0, 0).

    Attributes:
        correspondence: the matcher's :class:`~convcorr.matchers.Correspondence` in the working frames (A -> B,
            with ``.reverse`` when computed both ways).
        a_hw, b_hw: original (H, W) of A and B; work_a_hw, work_b_hw: the resized frames the features saw.
        spec: features, matcher (name and options), resizing, for reports and JSON.
    """

    correspondence: Correspondence
    a_hw: tuple[int, int]
    b_hw: tuple[int, int]
    work_a_hw: tuple[int, int]
    work_b_hw: tuple[int, int]
    spec: dict = field(default_factory=dict)
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def energy(self) -> float:
        return self.correspondence.energy

    def transfer(self, points_a) -> np.ndarray:
        """(N, 2) (x, y) pixels of A -> (N, 2) pixels of B through the A -> B map (NaN where none)."""
        p = np.asarray(points_a, dtype=np.float64).reshape(-1, 2)
        w = self.correspondence.transfer(scale_points(p, self.a_hw, self.work_a_hw))
        return scale_points(w, self.work_b_hw, self.b_hw)

    def transfer_back(self, points_b) -> np.ndarray:
        """(N, 2) (x, y) pixels of B -> (N, 2) pixels of A (the B -> A map, or the exact inverse of A -> B)."""
        p = np.asarray(points_b, dtype=np.float64).reshape(-1, 2)
        w = self.correspondence.transfer_back(scale_points(p, self.b_hw, self.work_b_hw))
        return scale_points(w, self.work_a_hw, self.a_hw)

    @property
    def forward(self) -> np.ndarray:
        """(Ha, Wa, 2) float64: the B pixel of every A pixel (NaN where none)."""
        if "forward" not in self._cache:
            H, W = self.a_hw
            xy = np.stack(np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64)), -1)
            self._cache["forward"] = self.transfer(xy.reshape(-1, 2)).reshape(H, W, 2)
        return self._cache["forward"]

    @property
    def backward(self) -> np.ndarray:
        """(Hb, Wb, 2) float64: the A pixel of every B pixel. Without a reverse correspondence it is the exact
        inverse computed at B's working resolution and interpolated bilinearly to B's pixels."""
        if "backward" not in self._cache:
            H, W = self.b_hw
            xy = np.stack(np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64)), -1)
            xy = xy.reshape(-1, 2)
            c = self.correspondence
            if c.reverse is not None:
                out = self.transfer_back(xy)
            else:
                from .numerics.warp import sample_lattice

                h, w = self.work_b_hw
                wxy = np.stack(np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64)), -1)
                inv = c.invert(wxy.reshape(-1, 2)).reshape(h, w, 2)
                pw = sample_lattice(scale_points(xy, self.b_hw, self.work_b_hw), np.arange(w, dtype=np.float64),
                                    np.arange(h, dtype=np.float64), inv)
                out = scale_points(pw, self.work_a_hw, self.a_hw)
            self._cache["backward"] = out.reshape(H, W, 2)
        return self._cache["backward"]

    def warp(self, image_b: np.ndarray, order: int = 1) -> np.ndarray:
        """B resampled onto A's frame: ``out(p) = B(forward(p))`` for every A pixel p (zeros where there is no
        match or outside B). Returns (Ha, Wa[, C]) of B's dtype."""
        from .numerics.warp import warp_image

        img = np.asarray(image_b)
        if img.shape[:2] != tuple(self.b_hw):
            raise ValueError(f"warp: image_b is {img.shape[:2]}, expected B's size {tuple(self.b_hw)}")
        H, W = self.a_hw
        disp = self.forward - np.stack(np.meshgrid(np.arange(W, dtype=np.float64),
                                                   np.arange(H, dtype=np.float64)), -1)
        disp = np.where(np.isfinite(disp), disp, -1e6)
        return warp_image(img, disp, order)

    def inverse(self) -> "ImageCorrespondence":
        """The B -> A correspondence (needs ``both=True``)."""
        c = self.correspondence.inverse()
        return ImageCorrespondence(c, self.b_hw, self.a_hw, self.work_b_hw, self.work_a_hw, dict(self.spec))


def _as_image(x, name: str) -> np.ndarray:
    from .core.images import load_image

    if isinstance(x, (str, bytes)) or hasattr(x, "__fspath__"):
        return load_image(x)
    a = np.asarray(x)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ValueError(f"correspond: {name} must be an (H, W, 3) RGB image or a path, got shape {a.shape}")
    if a.dtype != np.uint8:
        if np.issubdtype(a.dtype, np.floating) and a.size and float(np.nanmax(a)) <= 1.0:
            a = a * 255.0
        a = np.clip(np.rint(a), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(a[..., :3])


def correspond(img_a, img_b, features="alexnet:conv4", matcher="flow", *, max_side: Optional[int] = 256,
               min_side: int = 64, both: bool = True, **options) -> ImageCorrespondence:
    """Dense correspondence from image A to image B (see the module docstring for resizing and directions).

    Args:
        img_a, img_b: (H, W, 3) uint8 RGB arrays (grey or float in [0, 1] are converted) or image paths.
        features: dense-feature spec or object (:func:`convcorr.features.base.get_features`), e.g. "alexnet:conv4",
            "sift:step=4,bin=4", "alexnet:conv3+conv4".
        matcher: matcher name or object (:func:`convcorr.matchers.get_matcher`): "flow", "nn", "mnn",
            "softargmax".
        max_side, min_side: resizing (None: no resizing).
        both: run the matcher both ways (else B -> A by exact inversion).
        **options: matcher options (e.g. ``beta=0.01, radius=6`` for flow; ``window=5`` for softargmax).
    Returns:
        :class:`ImageCorrespondence`.
    """
    from .core.images import resize_image
    from .features.base import get_features
    from .matchers import get_matcher

    a, b = _as_image(img_a, "img_a"), _as_image(img_b, "img_b")
    feats = get_features(features)
    m = get_matcher(matcher, **options)
    wa, wb = working_size(a.shape[:2], max_side, min_side), working_size(b.shape[:2], max_side, min_side)
    ga, gb = feats.compute_many([resize_image(a, wa), resize_image(b, wb)])
    c = m.match(ga, gb, both=both)
    spec = {"features": feats.spec, "matcher": m.spec, "max_side": max_side, "min_side": min_side, "both": both,
            "work_a_hw": list(wa), "work_b_hw": list(wb)}
    return ImageCorrespondence(c, tuple(a.shape[:2]), tuple(b.shape[:2]), wa, wb, spec)
