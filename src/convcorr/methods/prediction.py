"""Keypoint prediction (paper Section 5, Table 4): find every keypoint type in a new instance.

Method (Long, Zhang & Darrell 2014, Sec. 5):

1. Every instance's box (enlarged by ``margin``, default 0) is cropped and rescaled to ``size x size`` (500)
   pixels (:func:`convcorr.core.crops.crop_instance`, exact point maps both ways).
2. A feature grid is computed on the crop: AlexNet conv5 (30 x 30 columns of 256-d on 500 x 500, rf 163 px,
   stride 16) with every column described by its 3 x 3 neighbourhood of columns concatenated (9 x 256 = 2304-d,
   zero padding at the borders, :func:`neighbourhood_features`); or the baseline, dense SIFT (step 8, bin 8:
   60 x 60 columns of 128-d, :func:`convcorr.numerics.sift.dense_sift_grid`). Column descriptors are L2-normalised.
3. Per keypoint type a linear SVM is trained (:func:`train_keypoint_svm`). Positives: per training instance the
   ``n_pos`` (10) columns whose rf centres are closest to the keypoint; negatives: every column whose receptive
   field does not contain the keypoint (:func:`positives_negatives`). Hard-negative mining: start from a random
   subset of ``n_init`` negatives, train, add the ``n_add`` highest-scoring unused negatives that violate the
   margin (score > -1: false positives and near misses), retrain; ``rounds`` rounds or until none violates.
4. Prediction: the SVM score map ``s`` over the test instance's columns; the keypoint is the rf centre of the
   best column, mapped back to original image pixels (:func:`predict_location`).
5. Prior: the test instance's nearest training neighbour by a global feature (AlexNet pool5 flattened, cosine;
   :func:`global_descriptors`) contributes, for each type, a Gaussian of ``sigma`` (22) px in the crop frame
   centred at that neighbour's keypoint box-copied (:func:`convcorr.methods.transfer.box_copy`; :func:`gaussian_prior`);
   ``f = s^(1 - eta) * p^eta`` (eta = 0.1, :func:`combine`). The SVM scores are mapped to positive values by the
   logistic sigmoid ``1 / (1 + exp(-score))`` (an uncalibrated Platt mapping with slope 1: the SVM margin
   +-1 becomes 0.73 / 0.27) -- chosen over per-map min-max scaling because it does not depend on the other
   columns of the map and never yields s = 0. ``to_positive(..., "minmax")`` is available as an option.

Coordinates are (x, y) pixels; maps are (h, w) with row = y.

The per-type SVMs are independent units: :meth:`KeypointPredictor.training_set` gathers what they need (the
training grids, keypoints in crop pixels, SVM options; picklable, without the feature extractor) and
:func:`fit_type_task` trains one type, e.g. in a worker process (``convcorr.runtime.parallel.run_tasks``);
:meth:`KeypointPredictor.fit` is the serial loop over the same function. Hard-negative mining draws its initial
negatives from :func:`type_rng` (seeded by ``seed`` and the type's name), so a type's SVM is the same whichever
other types are trained, in which order or process.
"""
from __future__ import annotations

import warnings
import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVC

from ..core.arrays import l2_normalize
from ..core.geometry import RFGeometry
from ..core.types import Instance


# --------------------------------------------------------------------------------------------- pure functions
def neighbourhood_features(grid: np.ndarray, k: int = 3) -> np.ndarray:
    """Describe every column by its k x k neighbourhood of columns.

    Args:
        grid: (h, w, C) feature grid.
        k: odd neighbourhood side.
    Returns:
        (h, w, k*k*C): blocks ordered row-major over offsets (dy, dx) in [-r, r]^2 (r = k // 2), i.e. block
        ``(dy + r) * k + (dx + r)`` is the column at (row + dy, col + dx); zeros outside the grid.
    """
    grid = np.asarray(grid)
    if grid.ndim != 3:
        raise ValueError(f"neighbourhood_features: grid must be (h, w, C), got shape {grid.shape}")
    if k < 1 or k % 2 == 0:
        raise ValueError(f"neighbourhood_features: k must be a positive odd integer, got {k}")
    if k == 1:
        return grid
    h, w, C = grid.shape
    r = k // 2
    pad = np.zeros((h + 2 * r, w + 2 * r, C), grid.dtype)
    pad[r:r + h, r:r + w] = grid
    return np.concatenate([pad[dy:dy + h, dx:dx + w] for dy in range(k) for dx in range(k)], axis=-1)


def positives_negatives(geom: RFGeometry, grid_hw: tuple[int, int], xy: np.ndarray,
                        n_pos: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Training columns for a keypoint at ``xy`` (x, y) in the grid's input pixels.

    Returns:
        pos: (n_pos,) flat column indices (row * w + col) of the columns whose rf centres are nearest the
            keypoint (ties broken by index).
        neg: (h * w,) bool, True for columns whose receptive field does NOT contain the keypoint
            (:meth:`RFGeometry.rf_contains`); always disjoint from ``pos`` when the rf is larger than the
            spacing of the positives.
    """
    h, w = grid_hw
    xy = np.asarray(xy, dtype=np.float64).reshape(2)
    if not np.all(np.isfinite(xy)):
        raise ValueError(f"positives_negatives: keypoint {xy} is not finite")
    centres = geom.grid_centers((h, w)).reshape(-1, 2)
    d = np.linalg.norm(centres - xy, axis=1)
    pos = np.argsort(d, kind="stable")[:n_pos]
    rows, cols = np.divmod(np.arange(h * w), w)
    neg = ~geom.rf_contains(np.stack([cols, rows], 1), xy)
    neg[pos] = False
    return pos, neg


def _fit_linear_svm(X: np.ndarray, y: np.ndarray, C: float, max_iter: int = 5000) -> tuple[np.ndarray, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        m = LinearSVC(C=C, class_weight="balanced", max_iter=max_iter, random_state=0).fit(X, y)
    return m.coef_[0].astype(np.float64), float(m.intercept_[0])


def svm_scores(X: np.ndarray, w: np.ndarray, b: float) -> np.ndarray:
    """``X @ w + b`` in X's floating dtype (float64 result): a float32 X is NOT upcast to float64 (a copy of up to
    16,000 x 2304 values per mining round, ~9x slower); the float32 dot products agree to ~1e-6 relative.
    (N, D), (D,) -> (N,) float64."""
    X = np.asarray(X)
    dt = X.dtype if X.dtype in (np.float32, np.float64) else np.float64
    return (X.astype(dt, copy=False) @ np.asarray(w, dtype=dt)).astype(np.float64) + float(b)


def train_keypoint_svm(X_pos: np.ndarray, X_neg: np.ndarray, C: float = 1.0, rounds: int = 3,
                       rng: np.random.Generator | None = None, n_init: int = 2000, n_add: int = 2000,
                       return_history: bool = False):
    """Linear SVM (hinge loss, balanced class weights) of positives vs negatives with hard-negative mining.

    Round 0 trains on ``n_init`` random negatives. Each mining round scores ALL negatives, adds the ``n_add``
    highest-scoring unused ones whose score is above -1 (false positives first, then margin violators) and
    retrains; mining stops after ``rounds`` rounds or when no unused negative violates the margin.

    Args:
        X_pos: (P, D) positive features; X_neg: (N, D) negative pool.
        C: SVM regularisation constant.
        rounds: number of mining rounds (0 = plain random-subset SVM).
    Returns:
        (w (D,), b) with score = X @ w + b; with ``return_history`` also a list of dicts per training round
        (``n_neg`` negatives used, ``false_pos`` negatives of the whole pool scoring > 0).
    """
    X_pos = np.asarray(X_pos)
    X_neg = np.asarray(X_neg)
    if len(X_pos) == 0 or len(X_neg) == 0:
        raise ValueError(f"train_keypoint_svm: need positives and negatives, got {len(X_pos)} and {len(X_neg)}")
    rng = rng if rng is not None else np.random.default_rng(0)
    used = np.zeros(len(X_neg), bool)
    used[rng.choice(len(X_neg), size=min(n_init, len(X_neg)), replace=False)] = True
    history = []
    for it in range(rounds + 1):
        X = np.concatenate([X_pos, X_neg[used]])
        y = np.r_[np.ones(len(X_pos)), -np.ones(int(used.sum()))]
        w, b = _fit_linear_svm(X, y, C)
        s = svm_scores(X_neg, w, b)
        history.append({"n_neg": int(used.sum()), "false_pos": int((s > 0).sum())})
        if it == rounds:
            break
        s[used] = -np.inf
        cand = np.flatnonzero(s > -1)
        if len(cand) == 0:
            break
        used[cand[np.argsort(-s[cand], kind="stable")[:n_add]]] = True
    return (w, b, history) if return_history else (w, b)


def type_rng(seed: int, name: str) -> np.random.Generator:
    """Random generator of the hard-negative mining of keypoint type ``name``: seeded by (``seed``, CRC-32 of the
    name), independent of the other types and of the order or process they are trained in."""
    return np.random.default_rng([int(seed), zlib.crc32(str(name).encode("utf-8"))])


@dataclass
class TrainingSet:
    """What the per-type SVMs of a :class:`KeypointPredictor` need, without the feature extractor (picklable).

    Attributes:
        grids: per training instance, its (h*w, D) column descriptors (row-major columns).
        shapes: per instance, the grid's (h, w).
        geoms: per instance, the grid's :class:`RFGeometry` in crop pixels.
        points: per instance, (K_i, 2) keypoints in crop pixels (order of ``names[i]``).
        visible: per instance, (K_i,) bool.
        names: per instance, its keypoint names.
        options: :func:`train_keypoint_svm` / :func:`positives_negatives` options (n_pos, C, rounds, n_init,
            n_add) and ``seed`` (:func:`type_rng`), all given (:meth:`KeypointPredictor.training_set`).
    """

    grids: list
    shapes: list
    geoms: list
    points: list
    visible: list
    names: list
    options: dict

    def examples(self, name: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(positives (P, D), negative pool (N, D)) of type ``name`` over the instances where it is visible
        (:func:`positives_negatives`), or None when no instance shows it."""
        P, N = [], []
        for flat, hw, geom, pts, vis, names in zip(self.grids, self.shapes, self.geoms, self.points, self.visible,
                                                   self.names):
            if name not in names:
                continue
            j = names.index(name)
            if not vis[j]:
                continue
            pos, neg = positives_negatives(geom, hw, pts[j], self.options["n_pos"])
            P.append(flat[pos])
            N.append(flat[neg])
        if not P:
            return None
        return np.concatenate(P), np.concatenate(N)


def fit_type_task(task, shared) -> tuple | None:
    """Task function (``convcorr.runtime.parallel.run_tasks``) training ONE keypoint type's SVM with hard-negative mining.

    Args:
        task: ``(key, name)``: ``shared[key]`` is a :class:`TrainingSet`, ``name`` the keypoint type.
        shared: {key: TrainingSet} (e.g. one per (category, feature)).
    Returns:
        (w (D,), b, history) (:func:`train_keypoint_svm` with ``return_history``), or None when no training
        instance shows the type. The initial negatives come from :func:`type_rng` (seed, name).
    """
    key, name = task
    data = shared[key]
    ex = data.examples(name)
    if ex is None:
        return None
    o = data.options
    return train_keypoint_svm(ex[0], ex[1], o["C"], o["rounds"], rng=type_rng(o["seed"], name), n_init=o["n_init"],
                              n_add=o["n_add"], return_history=True)


def gaussian_prior(centres: np.ndarray, xy: np.ndarray, sigma: float = 22.0) -> np.ndarray:
    """Gaussian prior ``exp(-||c - xy||^2 / (2 sigma^2))`` at column centres.

    Args:
        centres: (h, w, 2) (x, y) rf centres (e.g. :meth:`RFGeometry.grid_centers`), pixels.
        xy: (2,) prior location in the same pixels; NaN gives a flat prior of ones.
        sigma: pixels.
    Returns:
        (h, w) in (0, 1], 1 at xy.
    """
    xy = np.asarray(xy, dtype=np.float64).reshape(2)
    centres = np.asarray(centres, dtype=np.float64)
    if not np.all(np.isfinite(xy)):
        return np.ones(centres.shape[:2])
    d2 = ((centres - xy) ** 2).sum(-1)
    return np.exp(-d2 / (2.0 * sigma * sigma))


def to_positive(scores: np.ndarray, method: str = "sigmoid") -> np.ndarray:
    """Map raw SVM scores to positive values: "sigmoid" 1/(1+exp(-s)) in (0, 1), or "minmax" over the map
    to [eps, 1] (eps = 1e-6 so that the log of the combination stays finite)."""
    s = np.asarray(scores, dtype=np.float64)
    if method == "sigmoid":
        return 0.5 * (1.0 + np.tanh(0.5 * s))  # = 1 / (1 + exp(-s)), overflow-free
    if method == "minmax":
        lo, hi = np.min(s), np.max(s)
        return np.clip((s - lo) / max(hi - lo, 1e-12), 1e-6, 1.0)
    raise ValueError(f"to_positive: unknown method {method!r}; use 'sigmoid' or 'minmax'")


def combine(scores: np.ndarray, prior: np.ndarray, eta: float = 0.1, positive: str = "sigmoid") -> np.ndarray:
    """Paper's combination ``f = s^(1 - eta) * p^eta`` with ``s = to_positive(scores, positive)``.

    eta = 0 ranks columns exactly as the scores, eta = 1 exactly as the prior.
    """
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"combine: eta must lie in [0, 1], got {eta}")
    s = to_positive(scores, positive)
    return s ** (1.0 - eta) * np.asarray(prior, dtype=np.float64) ** eta


def predict_location(score_map: np.ndarray, geom: RFGeometry) -> np.ndarray:
    """(2,) (x, y) rf centre, in the grid's input pixels, of the best-scoring column of an (h, w) map."""
    r, c = np.unravel_index(int(np.nanargmax(score_map)), score_map.shape)
    return geom.column_to_pixel(np.array([c, r], dtype=np.float64))


def global_descriptors(backbone, instances: Sequence[Instance], layer: str | None = "pool5", margin: float = 0.0,
                       batch_size: int = 16) -> np.ndarray:
    """(N, D) global descriptor of each instance's box crop at the backbone's input size (227 for AlexNet).

    ``layer`` names a spatial layer (flattened, e.g. AlexNet "pool5": 6 x 6 x 256 = 9216-d) or None / the
    backbone's ``global_layer`` for its global feature (EfficientNet-Lite0 "pool": 1280-d).
    """
    from ..core.crops import crop_instance

    crops = [crop_instance(i, margin, backbone.input_size)[0] for i in instances]
    if layer is None or layer == backbone.global_layer:
        return backbone.global_features(crops, batch_size=batch_size)
    a = backbone.extract(crops, [layer], batch_size=batch_size)[layer]
    return a.reshape(len(crops), -1)


# ------------------------------------------------------------------------------------------------------ class
class KeypointPredictor:
    """Per-keypoint-type linear SVMs over dense feature grids of box crops (conv5 3x3 neighbourhoods or dense SIFT).

    Args:
        features: dense-feature spec or object (:func:`convcorr.features.base.get_features`): "alexnet:conv5" (the paper),
            "sift:step=8,bin=8" (the baseline), any backbone layer; a bare layer name ("conv5") with ``backbone``.
        backbone: a :class:`convcorr.backbones.Backbone` for a bare layer name in ``features``.
        size: crop side in pixels (500); margin: box enlargement fraction per side (0 = the box itself).
        k: neighbourhood side (3: the paper's conv5 3x3; 1: a single column, the paper's SIFT baseline).
        n_pos, C, rounds, n_init, n_add: see :func:`positives_negatives` / :func:`train_keypoint_svm`.
        sigma: prior Gaussian in crop pixels; eta: prior weight; positive: score mapping of :func:`combine`.
        normalize: L2-normalise every column descriptor.

    Feature grids are cached per instance id (``self.cache``) so one grid serves training, prediction with
    and without the prior, and figures.
    """

    def __init__(self, features="alexnet:conv5", backbone=None, size: int = 500, margin: float = 0.0,
                 k: int = 3, n_pos: int = 10, C: float = 1.0, rounds: int = 3, n_init: int = 2000,
                 n_add: int = 2000, sigma: float = 22.0, eta: float = 0.1, positive: str = "sigmoid",
                 normalize: bool = True, seed: int = 0):
        from ..features.base import get_features

        try:
            self.features = get_features(features, **({"backbone": backbone} if backbone is not None else {}))
        except ValueError as exc:
            raise ValueError(f"KeypointPredictor: {exc}") from exc
        self.feature = self.features.spec
        self.size, self.margin = int(size), float(margin)
        self.k = int(k)
        self.n_pos, self.C, self.rounds, self.n_init, self.n_add = n_pos, C, rounds, n_init, n_add
        self.sigma, self.eta, self.positive = sigma, eta, positive
        self.normalize, self.seed = normalize, seed
        self.cache: dict[str, tuple] = {}
        self.models: dict[str, tuple[np.ndarray, float]] = {}
        self.history: dict[str, list] = {}
        self.keypoint_names: tuple = ()
        self.geom: RFGeometry | None = None

    # ---- features ---------------------------------------------------------------------------------------
    def crop(self, inst: Instance):
        """(crop (size, size, 3) uint8, CropTransform)."""
        from ..core.crops import crop_instance

        return crop_instance(inst, self.margin, self.size)

    def _finish(self, raw: np.ndarray) -> np.ndarray:
        g = neighbourhood_features(raw, self.k)
        return l2_normalize(g, dtype=np.float32) if self.normalize else g.astype(np.float32)

    def precompute(self, instances: Sequence[Instance], batch_size: int = 8, desc: str | None = None) -> None:
        """Compute and cache the grids of all ``instances`` (in batches)."""
        from ..runtime.progress import progress

        todo = [i for i in dict((i.id, i) for i in instances).values() if i.id not in self.cache]
        if not todo:
            return
        for s in progress(range(0, len(todo), batch_size), desc or f"{self.feature} grids",
                          total=(len(todo) + batch_size - 1) // batch_size):
            part = todo[s:s + batch_size]
            crops = [self.crop(i) for i in part]
            grids = self.features.compute_many([c for c, _ in crops])
            for inst, (c, t), g in zip(part, crops, grids):
                self.cache[inst.id] = (self._finish(g.features), g.geometry, t, c)

    def grid(self, inst: Instance):
        """(grid (h, w, D) float32, RFGeometry in crop pixels, CropTransform, crop) of an instance (cached)."""
        if inst.id not in self.cache:
            self.precompute([inst])
        return self.cache[inst.id]

    # ---- training -----------------------------------------------------------------------------------------
    def training_set(self, instances: Sequence[Instance], names: Sequence[str] | None = None) -> TrainingSet:
        """Prepare training on ``instances`` for the keypoint types ``names`` (default: the first instance's):
        computes their grids, sets :attr:`keypoint_names` and the geometry, and returns the picklable
        :class:`TrainingSet` the per-type units (:func:`fit_type_task`) train from."""
        if not instances:
            raise ValueError("KeypointPredictor.fit: no training instances")
        self.keypoint_names = tuple(names if names is not None else instances[0].keypoint_names)
        self.precompute(instances)
        grids = [self.grid(i) for i in instances]
        self.geom = grids[0][1]
        return TrainingSet(
            grids=[g.reshape(-1, g.shape[-1]) for g, _, _, _ in grids], shapes=[g.shape[:2] for g, _, _, _ in grids],
            geoms=[geom for _, geom, _, _ in grids],
            points=[t.to_crop(np.asarray(i.keypoints, dtype=np.float64)) for i, (_, _, t, _) in zip(instances, grids)],
            visible=[np.asarray(i.visible, dtype=bool) for i in instances],
            names=[tuple(i.keypoint_names) for i in instances],
            options={"n_pos": self.n_pos, "C": self.C, "rounds": self.rounds, "n_init": self.n_init,
                     "n_add": self.n_add, "seed": self.seed})

    def set_fitted(self, fitted: dict) -> "KeypointPredictor":
        """Adopt trained types: ``fitted`` {name: (w, b, history) or None} (:func:`fit_type_task` results)."""
        for name, r in fitted.items():
            if r is not None:
                self.models[name] = (r[0], r[1])
                self.history[name] = r[2]
        return self

    def fit(self, instances: Sequence[Instance], names: Sequence[str] | None = None) -> "KeypointPredictor":
        """Train one SVM per keypoint type (``names``, default the first instance's) on ``instances``, one type
        after the other (:meth:`training_set` + :func:`fit_type_task`; parallel callers run the types as tasks)."""
        from ..runtime.progress import progress

        data = self.training_set(instances, names)
        return self.set_fitted({n: fit_type_task((0, n), {0: data})
                                for n in progress(self.keypoint_names, f"{self.feature} SVMs")})

    # ---- prediction ---------------------------------------------------------------------------------------
    def score_maps(self, inst: Instance) -> np.ndarray:
        """(K, h, w) raw SVM scores of every trained type over the instance's columns (NaN for untrained)."""
        g = self.grid(inst)[0]
        h, w, D = g.shape
        flat = g.reshape(-1, D)
        out = np.full((len(self.keypoint_names), h, w), np.nan)
        trained = [j for j, n in enumerate(self.keypoint_names) if n in self.models]
        if trained:  # one float64 product for all types (not one upcast copy of the grid per type)
            Wt = np.stack([self.models[self.keypoint_names[j]][0] for j in trained], 1)
            b = np.array([self.models[self.keypoint_names[j]][1] for j in trained])
            out[trained] = (flat.astype(np.float64) @ Wt + b).T.reshape(len(trained), h, w)
        return out

    def prior_maps(self, inst: Instance, prior_xy: np.ndarray) -> np.ndarray:
        """(K, h, w) Gaussian priors at ``prior_xy`` (K, 2) ORIGINAL image pixels of ``inst`` (NaN: flat)."""
        g, geom, t, _ = self.grid(inst)
        centres = geom.grid_centers(g.shape[:2])
        pc = t.to_crop(np.asarray(prior_xy, dtype=np.float64))
        return np.stack([gaussian_prior(centres, p, self.sigma) for p in pc])

    def predict(self, inst: Instance, prior_xy: np.ndarray | None = None, return_maps: bool = False):
        """(K, 2) predicted (x, y) in ORIGINAL image pixels of ``inst`` for ``self.keypoint_names``.

        Args:
            prior_xy: optional (K, 2) prior keypoints in the instance's original pixels (e.g.
                :func:`convcorr.methods.transfer.box_copy` of its nearest training neighbour); combined as
                ``s^(1-eta) p^eta``.
            return_maps: also return {"s": raw scores, "p": priors or None, "f": final maps} each (K, h, w).
        """
        if not self.keypoint_names:
            raise RuntimeError("KeypointPredictor.predict: call fit() first")
        _, geom, t, _ = self.grid(inst)
        s = self.score_maps(inst)
        p = self.prior_maps(inst, prior_xy) if prior_xy is not None else None
        f = combine(s, p, self.eta, self.positive) if p is not None else s
        out = np.full((len(self.keypoint_names), 2), np.nan)
        for j in range(len(out)):
            if np.isfinite(s[j]).any():
                out[j] = predict_location(f[j], geom)
        out = t.from_crop(out)
        return (out, {"s": s, "p": p, "f": f}) if return_maps else out
