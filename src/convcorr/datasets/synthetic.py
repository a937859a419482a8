"""Synthetic same-instance pairs with exact ground truth: real photos warped by random smooth deformations.

A :class:`Warp` is a backward map B from target pixels to source pixels,
``B(p) = c + A (p - c) + t + u(p)``, with A a random affine matrix (rotation, anisotropic scale, shear) about the
image centre c, t a translation and u a thin-plate spline through random displacements of a 4x4 grid of control
points. The warped image is ``target(p) = source(B(p))`` (bilinear sampling, black outside). Keypoints move by the
forward map ``F = B^-1``, found per point by Newton's method to 1e-4 px, so correspondences are exact up to that
tolerance (:func:`random_warp` shrinks the spline part until the map has no fold-over, so the inverse is unique).
Keypoints that land outside the image become invisible and NaN (the schema's "absent"). The warped box is the
extent of the warped box outline, clipped to the image. No horizontal flips: a flip would swap left/right
keypoint names.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage
from scipy.interpolate import RBFInterpolator

from ..core.types import Instance, Pair


@dataclass
class Warp:
    """Backward map target -> source pixels on an (H, W) image (see module docstring)."""

    image_hw: tuple[int, int]
    A: np.ndarray            # (2, 2)
    t: np.ndarray            # (2,)
    ctrl: np.ndarray         # (M, 2) control points (x, y) in the target frame
    disp: np.ndarray         # (M, 2) thin-plate displacements at the control points

    def __post_init__(self):
        self._tps = RBFInterpolator(self.ctrl, self.disp, kernel="thin_plate_spline", degree=1)
        self._Ainv = np.linalg.inv(self.A)

    @property
    def centre(self) -> np.ndarray:
        H, W = self.image_hw
        return np.array([(W - 1) / 2.0, (H - 1) / 2.0])

    def backward(self, xy: np.ndarray) -> np.ndarray:
        """(N, 2) target pixels -> (N, 2) source pixels."""
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        c = self.centre
        return c + (xy - c) @ self.A.T + self.t + self._tps(xy)

    def jacobian(self, xy: np.ndarray, eps: float = 1e-2) -> np.ndarray:
        """(N, 2, 2) Jacobian d(source)/d(target) of ``backward`` at (N, 2) target pixels (central differences)."""
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        n = len(xy)
        dx, dy = np.array([eps, 0.0]), np.array([0.0, eps])
        f = self._tps(np.concatenate([xy + dx, xy - dx, xy + dy, xy - dy]))
        du_dx = (f[:n] - f[n:2 * n]) / (2 * eps)
        du_dy = (f[2 * n:3 * n] - f[3 * n:]) / (2 * eps)
        return self.A[None] + np.stack([du_dx, du_dy], axis=-1)

    def map_points(self, xy_src: np.ndarray, tol: float = 1e-4, max_iter: int = 50) -> np.ndarray:
        """(N, 2) source pixels -> (N, 2) target pixels: the exact inverse of ``backward``.

        Newton's method on ``backward(q) = x`` from the affine-only inverse, to ``tol`` px (default 1e-4).
        NaN in -> NaN out. Points that do not converge (never seen for warps from :func:`random_warp`, whose
        Jacobian determinant is kept positive) are returned as NaN with a warning.
        """
        xy_src = np.asarray(xy_src, dtype=np.float64).reshape(-1, 2)
        out = np.full_like(xy_src, np.nan)
        ok = np.all(np.isfinite(xy_src), axis=1)
        x = xy_src[ok]
        c = self.centre
        q = c + (x - c - self.t) @ self._Ainv.T  # affine-only inverse as the start
        active = np.ones(len(x), bool)
        for _ in range(max_iter):
            if not active.any():
                break
            qa = q[active]
            r = self.backward(qa) - x[active]
            done = np.abs(r).max(axis=1) < tol
            step = np.linalg.solve(self.jacobian(qa), r[..., None])[..., 0]
            step = np.where(done[:, None], 0.0, step)
            q[active] = qa - step
            idx = np.flatnonzero(active)
            active[idx[done]] = False
        if active.any():
            r = np.abs(self.backward(q[active]) - x[active]).max(axis=1)
            still = np.flatnonzero(active)[r >= tol]
            if len(still):
                warnings.warn(f"Warp.map_points: {len(still)} point(s) did not converge; returned as NaN")
                q[still] = np.nan
        out[ok] = q
        return out

    def warp_image(self, image: np.ndarray, order: int = 1) -> np.ndarray:
        """Warp an (H, W, C) image: ``out(p) = image(B(p))``, zeros outside."""
        H, W = self.image_hw
        if image.shape[:2] != (H, W):
            raise ValueError(f"warp is for {W}x{H} images, got {image.shape[1]}x{image.shape[0]}")
        ys, xs = np.mgrid[0:H, 0:W]
        src = self.backward(np.stack([xs.ravel(), ys.ravel()], 1))
        coords = [src[:, 1].reshape(H, W), src[:, 0].reshape(H, W)]
        chans = [ndimage.map_coordinates(image[..., k].astype(np.float32), coords, order=order, mode="constant")
                 for k in range(image.shape[2])]
        out = np.stack(chans, -1)
        return np.clip(np.rint(out), 0, 255).astype(image.dtype) if image.dtype == np.uint8 else out

    def params(self) -> dict:
        """JSON-able parameters; ``Warp.from_params(w.params())`` rebuilds the same warp."""
        return {"image_hw": list(self.image_hw), "A": self.A.tolist(), "t": self.t.tolist(),
                "ctrl": self.ctrl.tolist(), "disp": self.disp.tolist()}

    @classmethod
    def from_params(cls, p: dict) -> "Warp":
        return cls(tuple(p["image_hw"]), np.asarray(p["A"]), np.asarray(p["t"]), np.asarray(p["ctrl"]),
                   np.asarray(p["disp"]))

    def min_jacobian_det(self, n: int = 24, margin: float = 0.25) -> float:
        """Smallest det of the backward Jacobian on an n x n grid over the image (+ margin): > 0 means no fold."""
        H, W = self.image_hw
        gx, gy = np.meshgrid(np.linspace(-margin * W, (1 + margin) * W, n), np.linspace(-margin * H, (1 + margin) * H, n))
        return float(np.linalg.det(self.jacobian(np.stack([gx.ravel(), gy.ravel()], 1))).min())


def random_warp(image_hw: tuple[int, int], rng: np.random.Generator, strength: float = 1.0) -> Warp:
    """A random smooth warp; ``strength`` 1 means rotations ~ +-12 deg, scales ~ +-12 %, TPS bumps ~ 4 % of the side."""
    H, W = image_hw
    s = float(strength)
    ang = rng.uniform(-0.2, 0.2) * s
    sx, sy = np.exp(rng.uniform(-0.12, 0.12, 2) * s)
    sh = rng.uniform(-0.08, 0.08) * s
    R = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    A = R @ np.array([[sx, sh], [0.0, sy]])
    t = rng.uniform(-0.05, 0.05, 2) * s * np.array([W, H])
    gx, gy = np.meshgrid(np.linspace(0, W - 1, 4), np.linspace(0, H - 1, 4))
    ctrl = np.stack([gx.ravel(), gy.ravel()], 1)
    disp = rng.normal(0, 0.04 * s, ctrl.shape) * np.array([W, H])
    warp = Warp((H, W), A, t, ctrl, disp)
    # keep the map a diffeomorphism (no fold-over) so that points have a unique exact image: shrink the
    # thin-plate part until the Jacobian determinant stays above 30 % of the affine part's
    for _ in range(20):
        if warp.min_jacobian_det() > 0.3 * np.linalg.det(A):
            break
        disp = disp * 0.7
        warp = Warp((H, W), A, t, ctrl, disp)
    return warp


def warp_instance(inst: Instance, warp: Warp, new_id: str, photometric: tuple[float, float] = (1.0, 0.0)) -> Instance:
    """Apply ``warp`` to an instance's image, keypoints and box (box = extent of the warped box outline)."""
    img = inst.load()
    H, W = img.shape[:2]
    out = warp.warp_image(img)
    gain, bias = photometric
    if (gain, bias) != (1.0, 0.0):
        out = np.clip(out.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)
    kp = warp.map_points(inst.keypoints)
    inside = np.all(np.isfinite(kp), axis=1) & (kp[:, 0] >= 0) & (kp[:, 0] <= W - 1) & (kp[:, 1] >= 0) & (kp[:, 1] <= H - 1)
    vis = inst.visible & inside
    kp[~vis] = np.nan
    x0, y0, x1, y1 = inst.bbox
    u = np.linspace(0, 1, 25)
    outline = np.concatenate([np.stack([x0 + u * (x1 - x0), np.full_like(u, y0)], 1),
                              np.stack([x0 + u * (x1 - x0), np.full_like(u, y1)], 1),
                              np.stack([np.full_like(u, x0), y0 + u * (y1 - y0)], 1),
                              np.stack([np.full_like(u, x1), y0 + u * (y1 - y0)], 1)])
    ob = warp.map_points(outline)
    bx0, by0 = np.clip(ob.min(0), 0, [W - 1, H - 1])
    bx1, by1 = np.clip(ob.max(0), 0, [W - 1, H - 1])
    if bx1 - bx0 < 2 or by1 - by0 < 2:
        bx0, by0, bx1, by1 = 0, 0, W - 1, H - 1
    meta = dict(inst.meta, source_id=inst.meta.get("source_id", inst.id), warp=warp.params(),
                photometric={"gain": gain, "bias": bias})
    return replace(inst, id=new_id, image=out, image_path=None, keypoints=kp, visible=vis,
                   bbox=np.array([bx0, by0, bx1, by1]), meta=meta)


def synthetic_instances(instances: list[Instance], n_per_instance: int, seed: int = 0, strength: float = 1.0,
                        photometric: bool = True) -> list[Instance]:
    """``n_per_instance`` warped copies of each instance (meta['source_id'] names the real photo). Deterministic."""
    rng = np.random.default_rng(seed)
    out = []
    for inst in instances:
        H, W = inst.load().shape[:2]
        for j in range(n_per_instance):
            w = random_warp((H, W), rng, strength)
            pm = (float(rng.uniform(0.8, 1.2)), float(rng.uniform(-20, 20))) if photometric else (1.0, 0.0)
            out.append(warp_instance(inst, w, f"{inst.id}~w{j}", pm))
    return out


def synthetic_pairs(instances: list[Instance], n_pairs: int, seed: int = 0, strength: float = 1.0,
                    source: str = "real", photometric: bool = False) -> list[Pair]:
    """``n_pairs`` pairs of one photo and a warped copy, cycling through ``instances``. Deterministic.

    Args:
        source: "real" -> (real photo, warp of it); "warp" -> (warp of it, another warp of the same photo),
            both sides carry exact keypoints mapped from the real annotation.
        photometric: random brightness/contrast jitter on the warped side(s).
    """
    if source not in ("real", "warp"):
        raise ValueError(f"source must be 'real' or 'warp', not {source!r}")
    if not instances:
        raise ValueError("synthetic_pairs needs at least one instance")
    rng = np.random.default_rng(seed)

    def one(inst: Instance, name: str) -> Instance:
        H, W = inst.load().shape[:2]
        w = random_warp((H, W), rng, strength)
        pm = (float(rng.uniform(0.8, 1.2)), float(rng.uniform(-20, 20))) if photometric else (1.0, 0.0)
        return warp_instance(inst, w, name, pm)

    pairs = []
    for i in range(n_pairs):
        real = instances[i % len(instances)]
        src = real if source == "real" else one(real, f"{real.id}~p{i}s")
        pairs.append(Pair(src, one(real, f"{real.id}~p{i}")))
    return pairs
