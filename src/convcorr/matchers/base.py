"""Matchers as one type: two :class:`~convcorr.dense.FeatureGrid` -> a dense :class:`Correspondence` in pixels.

A plug-in is one class (subclass of :class:`Matcher`) plus one registry line (``@register_matcher("name")``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from ..dense import FeatureGrid


@dataclass
class Correspondence:
    """A dense correspondence from a source image A to a target image B, in pixels.

    Attributes:
        forward: (Hs, Ws, 2) float64: for every source pixel (x, y) its corresponding target pixel (x', y')
            (NaN where the matcher gives none, e.g. ``mnn`` outside mutual matches).
        source_hw, target_hw: (H, W) of the two image frames.
        score: (h, w) per source column: similarity (higher is better) or cost (lower is better), see
            ``score_kind``.
        score_kind: "similarity" or "cost".
        energy: one number ranking the whole alignment, lower is better (MRF energy for ``flow``;
            minus the mean similarity for the others).
        mask: (h, w) bool, source columns that have a match (all True except sparse matchers).
        grid_match: (h, w, 2) float64 target column (c', r') of every source column (NaN where none).
        details: matcher-specific extras (e.g. the flow's data/smooth energies).
        backward: (Ht, Wt, 2) or None: source pixel for every target pixel, when the matcher provides it.
    """

    forward: np.ndarray
    source_hw: tuple[int, int]
    target_hw: tuple[int, int]
    score: np.ndarray
    score_kind: str
    energy: float
    mask: np.ndarray
    grid_match: np.ndarray
    details: dict = field(default_factory=dict)
    backward: Optional[np.ndarray] = None


class Matcher:
    """Base class: ``match(source_grid, target_grid) -> Correspondence``."""

    name: str = ""

    def match(self, source: FeatureGrid, target: FeatureGrid) -> Correspondence:
        raise NotImplementedError

    def __call__(self, source: FeatureGrid, target: FeatureGrid) -> Correspondence:
        return self.match(source, target)


#: name -> Matcher subclass
MATCHERS: dict[str, Callable[..., Matcher]] = {}


def register_matcher(name: str):
    """Class decorator adding a matcher to :data:`MATCHERS`."""

    def deco(cls):
        cls.name = name
        MATCHERS[name] = cls
        return cls

    return deco


def get_matcher(spec, **options) -> Matcher:
    """A matcher from its name (options as keywords) or a :class:`Matcher` passed through.

    Raises ValueError naming the spec and the registered names when unknown.
    """
    if isinstance(spec, Matcher):
        return spec
    if spec not in MATCHERS:
        raise ValueError(f"unknown matcher {spec!r}; available: {sorted(MATCHERS)}")
    return MATCHERS[spec](**options)
