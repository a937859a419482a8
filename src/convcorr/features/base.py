"""Dense features as one type: a :class:`FeatureGrid` made by a :class:`DenseFeatures` plug-in.

Everything downstream (matchers, flow, keypoint transfer, classification, prediction) takes a
:class:`FeatureGrid`, never a method name. A plug-in is one class registered in its own file with
``@DENSE_FEATURES.register("kind")`` (other packages: entry-point group ``convcorr.features``);
:func:`get_features` builds one from a spec string:

- ``"sift"`` / ``"sift:step=8,bin=8"``: dense SIFT (VLFeat dsift conventions, :mod:`convcorr.numerics.sift`).
- ``"<backbone>:<layer>"``: one layer of a registered backbone, e.g. ``"alexnet:conv4"``; the layer is the part
  after the LAST colon, so backbone names may contain colons (``"timm:resnet50:layer2"``).
- ``"<backbone>:<layer>+<layer>..."``: several layers of one backbone as a hypercolumn (every layer resampled to
  the grid of the finest-stride layer and concatenated along channels).

Frames: a grid's geometry is in pixels of the image it was computed on (``image_hw``); column ``(c, r)`` is
centred at ``geometry.column_to_pixel((c, r))``. Coordinates are (x, y) pixels, the top-left pixel's centre at
(0, 0).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..core.geometry import RFGeometry
from ..core.registry import Registry


@dataclass
class FeatureGrid:
    """A dense feature map with its geometry.

    Attributes:
        features: (h, w, C) float32, column (c, r) at ``features[r, c]``.
        geometry: receptive-field geometry of the columns, in pixels of the ``image_hw`` frame.
        image_hw: (H, W) of the image the grid was computed on.
        name: the spec that made it (e.g. ``"alexnet:conv4"``), for reports and cache keys.
    """

    features: np.ndarray
    geometry: RFGeometry
    image_hw: tuple[int, int]
    name: str = ""

    def __post_init__(self) -> None:
        f = np.asarray(self.features)
        if f.ndim != 3 or f.shape[2] < 1:
            raise ValueError(f"FeatureGrid {self.name!r}: features must be (h, w, C) with C >= 1, got {f.shape}")
        self.features = f
        self.image_hw = (int(self.image_hw[0]), int(self.image_hw[1]))

    @property
    def grid_hw(self) -> tuple[int, int]:
        """(h, w) columns."""
        return int(self.features.shape[0]), int(self.features.shape[1])

    @property
    def channels(self) -> int:
        return int(self.features.shape[2])

    def centers(self) -> np.ndarray:
        """(h, w, 2) (x, y) pixel centres of every column."""
        return self.geometry.grid_centers(self.grid_hw)


class DenseFeatures:
    """Base class of dense-feature plug-ins: image -> :class:`FeatureGrid`.

    Subclasses implement :meth:`compute` (one image) and may override :meth:`compute_many` (batches) and
    :attr:`cache_key` (must change whenever the output could change: weights, layer, options, code version).
    """

    #: the spec string this object answers to (e.g. "alexnet:conv4", "sift:step=8,bin=8")
    spec: str = ""

    def compute(self, image: np.ndarray) -> FeatureGrid:
        """(H, W, 3) uint8 RGB image -> :class:`FeatureGrid` in that image's pixels."""
        raise NotImplementedError

    def compute_many(self, images: Sequence[np.ndarray]) -> list[FeatureGrid]:
        """One grid per image (default: a loop over :meth:`compute`)."""
        return [self.compute(im) for im in images]

    def __call__(self, image: np.ndarray) -> FeatureGrid:
        return self.compute(image)

    def at_points(self, image: np.ndarray, xy: np.ndarray) -> np.ndarray:
        """(N, C) features at (N, 2) (x, y) pixels of ``image``: by default the column whose rf centre is nearest
        each point (clipped into the grid); plug-ins that can describe any point exactly (dense SIFT) override it."""
        g = self.compute(image)
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        cr = g.geometry.pixel_to_column(xy, g.grid_hw)
        return g.features[cr[:, 1], cr[:, 0]]

    @property
    def cache_key(self) -> str:
        """Everything that determines the output, as a string (default: the spec)."""
        return self.spec

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r})"


def _check_features(kind: str, factory, facts: dict) -> None:
    if not callable(factory):
        raise TypeError(f"dense features {kind!r} must be a DenseFeatures class or a factory, got {factory!r}")
    if kind != kind.lower() or ":" in kind:
        raise ValueError(f"dense features kind {kind!r} must be lower case without ':' (it starts a spec)")


#: kind -> plug-in class (or factory). A class with a ``from_spec(rest, **options)`` classmethod is built from it,
#: else it is called as ``factory(rest, **options)``. "backbone" is the fallback kind for "<backbone>:<layer>"
#: specs; other kinds are matched on the text before the first colon (e.g. "sift"). Built-ins: ``sift`` and
#: ``backbone`` (:mod:`convcorr.features.sift`, :mod:`convcorr.features.backbone`, imported on the first
#: look-up).
DENSE_FEATURES = Registry("dense features", group="convcorr.features", on_register=_check_features,
                          builtins=["convcorr.features.sift", "convcorr.features.backbone"])


def _build(factory, rest: str, options: dict):
    make = getattr(factory, "from_spec", factory)
    return make(rest, **options)


def get_features(spec, **options) -> DenseFeatures:
    """A :class:`DenseFeatures` from a spec string (see the module docstring) or pass an object through.

    Args:
        spec: e.g. ``"sift"``, ``"sift:step=4,bin=6"``, ``"alexnet:conv4"``, ``"alexnet:conv3+conv4"``, or a
            :class:`DenseFeatures` object (returned as is; ``options`` must then be empty).
        **options: plug-in options (e.g. ``step=4`` for SIFT; ``device=``, ``weights=``, ``batch_size=`` for
            backbone layers; ``backbone=<Backbone object>`` with ``spec="<layer>"`` or ``":<layer>"``).
    Raises:
        ValueError: naming the spec when it cannot be parsed or names an unknown plug-in/backbone/layer.
    """
    if isinstance(spec, DenseFeatures):
        if options:
            raise ValueError(f"features: options {sorted(options)} given with an already built {spec!r}")
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"features: expected a spec string such as 'alexnet:conv4' or 'sift', got {spec!r}")
    spec = spec.strip()
    kind, _, rest = spec.partition(":")
    kind = kind.strip().lower()
    if kind != "backbone" and kind in DENSE_FEATURES:
        return _build(DENSE_FEATURES.get(kind), rest, options)
    if ":" not in spec and "backbone" not in options:
        kinds = sorted(k for k in DENSE_FEATURES.names() if k != "backbone")
        raise ValueError(f"features {spec!r}: unknown kind; use one of {kinds} or '<backbone>:<layer>' "
                         "(e.g. 'alexnet:conv4', hypercolumn 'alexnet:conv3+conv4')")
    return _build(DENSE_FEATURES.get("backbone"), spec, options)
