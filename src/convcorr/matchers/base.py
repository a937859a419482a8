"""Matchers as one type: two :class:`~convcorr.features.base.FeatureGrid` -> a dense :class:`Correspondence` in pixels.

A plug-in is one class (subclass of :class:`Matcher`) registered in its own file with ``@MATCHERS.register("name")``
(other packages: entry-point group ``convcorr.matchers``).
It implements :meth:`Matcher.match_grid` (features -> per-column target positions, score, energy); the base
class turns column matches into pixel maps: the displacement ``target_pixel(column match) - column centre`` is
interpolated bilinearly between source column centres and held constant beyond the outermost ones (exactly
:func:`convcorr.numerics.warp.dense_flow` with ``k=1``), so the pixel map is piecewise bilinear on the column lattice.

Both directions: :meth:`Correspondence.transfer` moves source points to the target through the forward map
(no inversion); :meth:`Correspondence.transfer_back` moves target points to the source through the reverse
correspondence when the matcher computed one (``Matcher.match(..., both=True)``), else through the exact
fold-correct inversion of the forward map (:func:`convcorr.numerics.warp.invert_lattice`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..core.geometry import RFGeometry
from ..core.registry import Registry
from ..features.base import FeatureGrid


@dataclass
class Correspondence:
    """A dense correspondence from a source image A to a target image B, in pixels.

    Attributes:
        forward: (Hs, Ws, 2) float64: for every source pixel (x, y) its corresponding target pixel (x', y')
            (NaN where the matcher gives none, e.g. ``mnn`` where the nearest column has no mutual match).
        source_hw, target_hw: (H, W) of the two image frames.
        score: (h, w) per source column: similarity (higher is better) or cost (lower is better), see
            ``score_kind``.
        score_kind: "similarity" or "cost".
        energy: one number ranking the whole alignment, lower is better (MRF energy for ``flow``;
            minus the mean similarity for the others).
        mask: (h, w) bool, source columns that have a match (all True except sparse matchers).
        grid_match: (h, w, 2) float64 target column (c', r') of every source column (NaN where none;
            fractional for ``softargmax``).
        details: matcher-specific extras (e.g. the flow's data/smooth energies and integer flow).
        backward: (Ht, Wt, 2) or None: source pixel for every target pixel, when the matcher provides it.
        source_geometry, target_geometry: the two grids' geometries (pixels of their frames).
        reverse: the correspondence B -> A computed by the matcher (``match(..., both=True)``), or None.
        matcher: the matcher's spec (name and options), for reports.
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
    source_geometry: Optional[RFGeometry] = None
    target_geometry: Optional[RFGeometry] = None
    reverse: Optional["Correspondence"] = None
    matcher: dict = field(default_factory=dict)

    # ------------------------------------------------------------------------------------------- construction
    @classmethod
    def from_grid(cls, grid_match: np.ndarray, source: FeatureGrid, target: FeatureGrid, score: np.ndarray,
                  score_kind: str, energy: float, mask: np.ndarray | None = None, details: dict | None = None,
                  matcher: dict | None = None) -> "Correspondence":
        """Build from column matches (h, w, 2) (target column (c', r') per source column, NaN where none)."""
        gm = np.asarray(grid_match, dtype=np.float64)
        if gm.shape != source.grid_hw + (2,):
            raise ValueError(f"grid_match must be {source.grid_hw + (2,)}, got {gm.shape}")
        if mask is None:
            mask = np.all(np.isfinite(gm), axis=-1)
        c = cls(forward=np.zeros((0, 0, 2)), source_hw=source.image_hw, target_hw=target.image_hw,
                score=np.asarray(score, dtype=np.float64), score_kind=score_kind, energy=float(energy),
                mask=np.asarray(mask, bool), grid_match=gm, details=dict(details or {}),
                source_geometry=source.geometry, target_geometry=target.geometry, matcher=dict(matcher or {}))
        from ..numerics.warp import dense_lattice

        xs, ys, d = c.lattice()
        c.forward = dense_lattice(xs, ys, d, c.source_hw, sparse=c.sparse) + np.stack(
            np.meshgrid(np.arange(c.source_hw[1], dtype=np.float64), np.arange(c.source_hw[0], dtype=np.float64)),
            -1)
        return c

    @property
    def sparse(self) -> bool:
        """True when some source column has no match."""
        return not bool(np.all(self.mask))

    def lattice(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(xs (nx,), ys (ny,), displacement (ny, nx, 2)) in source pixels on the extended column lattice
        (:func:`convcorr.numerics.warp.extend_displacement`); NaN at unmatched columns."""
        from ..numerics.warp import extend_displacement

        if self.source_geometry is None or self.target_geometry is None:
            raise ValueError("this Correspondence carries no grid geometry (built without from_grid)")
        h, w = self.grid_match.shape[:2]
        gs, gt = self.source_geometry, self.target_geometry
        cx, cy = gs.column_centers(w), gs.column_centers(h)
        tgt = gt.offset + gt.stride * self.grid_match
        disp = tgt - np.stack(np.meshgrid(cx, cy), -1)
        return extend_displacement(disp, cx, cy, self.source_hw)

    @property
    def displacement(self) -> np.ndarray:
        """(Hs, Ws, 2) ``forward - p``: the pixel flow (dx, dy) at every source pixel."""
        H, W = self.source_hw
        return self.forward - np.stack(np.meshgrid(np.arange(W, dtype=np.float64),
                                                   np.arange(H, dtype=np.float64)), -1)

    # --------------------------------------------------------------------------------------------------- use
    def transfer(self, xy_source: np.ndarray) -> np.ndarray:
        """(N, 2) source pixels -> (N, 2) target pixels through the forward map (bilinear; NaN where none)."""
        from ..numerics.warp import sample_lattice

        xy = np.asarray(xy_source, dtype=np.float64).reshape(-1, 2)
        if self.source_geometry is None:
            return _sample_dense(self.forward, xy)
        xs, ys, d = self.lattice()
        return xy + sample_lattice(xy, xs, ys, d, sparse=self.sparse)

    def transfer_back(self, xy_target: np.ndarray) -> np.ndarray:
        """(N, 2) target pixels -> (N, 2) source pixels: through :attr:`reverse` when present, else by the exact,
        fold-correct inversion of the forward map (:meth:`invert`)."""
        if self.reverse is not None:
            return self.reverse.transfer(xy_target)
        if self.backward is not None:
            return _sample_dense(self.backward, np.asarray(xy_target, dtype=np.float64).reshape(-1, 2))
        return self.invert(xy_target)

    def invert(self, xy_target: np.ndarray) -> np.ndarray:
        """(N, 2) target pixels -> source pixels by inverting the forward map exactly
        (:func:`convcorr.numerics.warp.invert_lattice`: correct where the field folds). Sparse maps are inverted over
        their matched columns only (nearest-column pieces)."""
        from ..numerics.warp import invert_lattice, transfer_back

        xy = np.asarray(xy_target, dtype=np.float64).reshape(-1, 2)
        if self.source_geometry is None:
            return transfer_back(xy, self.displacement)
        xs, ys, d = self.lattice()
        if self.sparse:
            ok = self.mask
            if not ok.any():
                return np.full_like(xy, np.nan)
            h, w = ok.shape
            gs, gt = self.source_geometry, self.target_geometry
            src = gs.column_to_pixel(np.stack(np.meshgrid(np.arange(w), np.arange(h)), -1)[ok].astype(float))
            tgt = gt.offset + gt.stride * self.grid_match[ok]
            out = np.full_like(xy, np.nan)
            good = np.all(np.isfinite(xy), axis=1)
            j = np.linalg.norm(tgt[None] - xy[good, None], axis=2).argmin(1)
            out[good] = src[j] + (xy[good] - tgt[j])
            return out
        T = np.stack(np.meshgrid(xs, ys), -1) + d
        h, w = self.grid_match.shape[:2]
        cx, cy = self.source_geometry.column_centers(w), self.source_geometry.column_centers(h)
        return invert_lattice(xy, xs, ys, T, self.source_hw, core=(cx[0], cx[-1], cy[0], cy[-1]))

    def warp(self, target_image: np.ndarray, order: int = 1) -> np.ndarray:
        """The target image B resampled into the source frame A: ``out(p) = B(forward(p))`` (zeros where
        there is no match or outside B). Returns (Hs, Ws[, C]) of B's dtype."""
        from ..numerics.warp import warp_image

        img = np.asarray(target_image)
        if img.shape[:2] != tuple(self.target_hw):
            raise ValueError(f"warp: target image is {img.shape[:2]}, the correspondence's target frame is "
                             f"{tuple(self.target_hw)}")
        disp = self.displacement
        bad = ~np.all(np.isfinite(disp), axis=-1)
        out = warp_image(img, np.where(bad[..., None], -1e6, disp), order)
        return out

    def inverse(self) -> "Correspondence":
        """The B -> A correspondence: :attr:`reverse` when present (raises otherwise)."""
        if self.reverse is None:
            raise ValueError("no reverse correspondence: call match(..., both=True) or use transfer_back/invert")
        return self.reverse


def _sample_dense(field_: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Bilinear samples of an (H, W, 2) pixel map at (N, 2) points (clamped to the image)."""
    from ..numerics.warp import sample_lattice

    H, W = field_.shape[:2]
    return sample_lattice(xy, np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64), field_,
                          sparse=bool(np.isnan(field_).any()))


class Matcher:
    """Base class: ``match(source_grid, target_grid) -> Correspondence``.

    Subclasses implement :meth:`match_grid` and may override :meth:`match_both` (e.g. to reuse a similarity
    matrix for the reverse direction). ``options`` holds the constructor options (for reports and specs).
    """

    name: str = ""
    #: True when the matcher leaves columns unmatched (mask)
    sparse: bool = False

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        """The options this matcher takes: the named parameters of its constructor (override to add more)."""
        import inspect

        params = inspect.signature(cls.__init__).parameters
        return tuple(k for k, p in params.items()
                     if k != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))

    def __init__(self, **options):
        if options:  # matchers with options define their own __init__ and set self.options
            raise TypeError(f"unknown option(s) {sorted(options)}; {type(self).__name__} takes none")
        self.options: dict = {}

    @property
    def spec(self) -> dict:
        return {"name": self.name, **self.options}

    def match_grid(self, source: FeatureGrid, target: FeatureGrid) -> dict:
        """-> dict(grid_match (h, w, 2), score (h, w), score_kind, energy, [mask], [details])."""
        raise NotImplementedError

    def _correspondence(self, source: FeatureGrid, target: FeatureGrid, res: dict) -> Correspondence:
        return Correspondence.from_grid(res["grid_match"], source, target, res["score"], res["score_kind"],
                                        res["energy"], res.get("mask"), res.get("details"), self.spec)

    def match(self, source: FeatureGrid, target: FeatureGrid, both: bool = False) -> Correspondence:
        """Dense correspondence source -> target in pixels; with ``both`` also the reverse one
        (``.reverse``, ``.backward``)."""
        _check_pair(source, target, self.name)
        if both:
            return self.match_both(source, target)
        return self._correspondence(source, target, self.match_grid(source, target))

    def match_both(self, source: FeatureGrid, target: FeatureGrid) -> Correspondence:
        """Both directions (default: the matcher run each way)."""
        return _link(self._correspondence(source, target, self.match_grid(source, target)),
                     self._correspondence(target, source, self.match_grid(target, source)))

    def __call__(self, source: FeatureGrid, target: FeatureGrid, both: bool = False) -> Correspondence:
        return self.match(source, target, both)

    def transfer_points(self, source: FeatureGrid, target: FeatureGrid, xy: np.ndarray) -> np.ndarray:
        """(N, 2) source pixels -> (N, 2) target pixels: ``match(source, target).transfer(xy)``.

        Matchers whose columns are matched independently (``nn``) override it to match only the columns that
        the bilinear pixel map reads at the points (same result, far less work on fine grids)."""
        return self.match(source, target).transfer(xy)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.options.items())})"


def _check_pair(source, target, name: str) -> None:
    for nm, g in (("source", source), ("target", target)):
        if not isinstance(g, FeatureGrid):
            raise TypeError(f"matcher {name!r}: {nm} must be a FeatureGrid (convcorr.get_features(...)(image)), "
                            f"got {type(g).__name__}")
    if source.channels != target.channels:
        raise ValueError(f"matcher {name!r}: feature dimensions differ: source {source.name!r} has "
                         f"{source.channels}, target {target.name!r} has {target.channels}")


def cosine_similarity(source: FeatureGrid, target: FeatureGrid) -> np.ndarray:
    """(h*w, h2*w2) cosine similarities between every source and every target column (float32 BLAS)."""
    from ..core.arrays import l2_normalize

    a = l2_normalize(source.features.reshape(-1, source.channels), dtype=np.float32)
    b = l2_normalize(target.features.reshape(-1, target.channels), dtype=np.float32)
    return a @ b.T


def lattice_columns(geometry: RFGeometry, grid_hw: tuple[int, int], xy: np.ndarray) -> np.ndarray:
    """Flat indices of the columns a bilinear read of a column-lattice map at the (N, 2) pixels ``xy`` touches:
    for each point the (up to) 2 x 2 columns around it, clipped into the (h, w) grid (beyond the outermost
    columns the map is held constant, so the outermost ones). Returns sorted unique indices (M,)."""
    h, w = grid_hw
    u = (np.asarray(xy, dtype=np.float64).reshape(-1, 2) - geometry.offset) / geometry.stride
    u = u[np.all(np.isfinite(u), axis=1)]
    c0 = np.floor(u).astype(np.int64)
    cs = np.clip(np.concatenate([c0[:, :1], c0[:, :1] + 1], 1), 0, w - 1)  # (N, 2) columns
    rs = np.clip(np.concatenate([c0[:, 1:], c0[:, 1:] + 1], 1), 0, h - 1)  # (N, 2) rows
    idx = rs[:, :, None] * w + cs[:, None, :]
    return np.unique(idx.ravel())


def column_grid(index: np.ndarray, w: int) -> np.ndarray:
    """Flat column indices (...) of a grid w columns wide -> (..., 2) float (c, r)."""
    r, c = np.divmod(np.asarray(index), w)
    return np.stack([c, r], -1).astype(np.float64)


def _link(fwd: Correspondence, rev: Correspondence) -> Correspondence:
    """Make two opposite correspondences each other's ``reverse`` (and ``backward`` map); returns ``fwd``."""
    fwd.reverse, fwd.backward = rev, rev.forward
    rev.reverse, rev.backward = fwd, fwd.forward
    return fwd


class SimilarityMatcher(Matcher):
    """A matcher that reads only the (h*w, h2*w2) cosine-similarity matrix of the two grids: subclasses implement
    :meth:`from_similarity`; both directions share one matrix (transposed for the reverse)."""

    def from_similarity(self, sim: np.ndarray, source: FeatureGrid, target: FeatureGrid) -> dict:
        """(Ns, Nt) similarities -> the :meth:`match_grid` dict for ``source`` -> ``target``."""
        raise NotImplementedError

    def match_grid(self, source: FeatureGrid, target: FeatureGrid) -> dict:
        return self.from_similarity(cosine_similarity(source, target), source, target)

    def match_both(self, source: FeatureGrid, target: FeatureGrid) -> Correspondence:
        sim = cosine_similarity(source, target)
        return _link(self._correspondence(source, target, self.from_similarity(sim, source, target)),
                     self._correspondence(target, source, self.from_similarity(sim.T, target, source)))

def _check_matcher(name: str, cls, facts: dict) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Matcher)):
        raise TypeError(f"matcher {name!r} must be a subclass of convcorr.matchers.Matcher, got {cls!r}")
    cls.name = name


#: name -> Matcher subclass; a plug-in registers itself with ``@MATCHERS.register("name")`` in its own file, other
#: packages through the entry-point group ``convcorr.matchers`` (:class:`convcorr.core.registry.Registry`)
MATCHERS = Registry("matcher", group="convcorr.matchers", on_register=_check_matcher,
                    builtins=[f"convcorr.matchers.{m}" for m in ("flow", "mnn", "nn", "softargmax")])


def matcher_option_names(name: str) -> tuple[str, ...]:
    """The options matcher ``name`` declares: its class's ``option_names()`` (default: the named parameters of
    its constructor). Experiments pass a matcher only these (never any other option that shares a name)."""
    return tuple(MATCHERS.get(name).option_names())


def get_matcher(spec, **options) -> Matcher:
    """A matcher from its name (options as keywords) or a :class:`Matcher` passed through.

    Raises ValueError naming the spec and the registered names when unknown (a ConfigError that suggests the
    closest names), or an unknown option.
    """
    if isinstance(spec, Matcher):
        if options:
            raise ValueError(f"matcher: options {sorted(options)} given with an already built {spec!r}")
        return spec
    cls = MATCHERS.get(spec)
    try:
        return cls(**options)
    except TypeError as exc:
        raise ValueError(f"matcher {spec!r}: {exc}") from exc
