"""Common data schema: one annotated object instance, and a pair of them.

Coordinates are (x, y) in pixels of the original image, x to the right and y
down; the centre of the top-left pixel is (0, 0). Boxes are (x0, y0, x1, y1)
in the same frame. Images are (H, W, 3) uint8 RGB arrays.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .errors import DataError
from .images import load_image


@dataclass
class Instance:
    """One annotated object instance.

    Attributes:
        id: unique, human-readable identifier (e.g. "cat/2007_000528#0").
        category: object class name.
        bbox: (4,) float (x0, y0, x1, y1) in pixels.
        keypoint_names: names of the K keypoint types of this category, in a fixed order.
        keypoints: (K, 2) float (x, y) in pixels; NaN where the type is not annotated.
        visible: (K,) bool, True where the keypoint is annotated and visible.
        image_path: file the image comes from (None for in-memory synthetic images).
        image: (H, W, 3) uint8 RGB, or None to load lazily from image_path.
        meta: free-form provenance (source data set, warp parameters, ...).
    """

    id: str
    category: str
    bbox: np.ndarray
    keypoint_names: tuple[str, ...]
    keypoints: np.ndarray
    visible: np.ndarray
    image_path: Optional[Path] = None
    image: Optional[np.ndarray] = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.bbox = np.asarray(self.bbox, dtype=np.float64).reshape(4)
        self.keypoints = np.asarray(self.keypoints, dtype=np.float64).reshape(-1, 2)
        self.visible = np.asarray(self.visible, dtype=bool).reshape(-1)
        self.keypoint_names = tuple(self.keypoint_names)
        where = self.image_path or self.id
        if len(self.keypoint_names) != len(self.keypoints) or len(self.visible) != len(self.keypoints):
            raise DataError(
                f"{where}: {len(self.keypoint_names)} keypoint names, {len(self.keypoints)} keypoints, "
                f"{len(self.visible)} visibility flags"
            )
        x0, y0, x1, y1 = self.bbox
        if not np.all(np.isfinite(self.bbox)) or x1 <= x0 or y1 <= y0:
            raise DataError(f"{where}: empty or invalid bounding box {self.bbox.tolist()}")

    def load(self) -> np.ndarray:
        """Return the image, reading it from image_path on first use."""
        if self.image is None:
            if self.image_path is None:
                raise DataError(f"{self.id}: instance has neither an image nor an image path")
            self.image = load_image(self.image_path)
        return self.image

    @property
    def bbox_size(self) -> float:
        """max(box height, box width) in pixels: the PCK normaliser of the paper."""
        x0, y0, x1, y1 = self.bbox
        return float(max(x1 - x0, y1 - y0))


@dataclass
class Pair:
    """A source/target pair of instances of one category.

    Ground-truth correspondences are keypoints of the same name visible in both.
    """

    source: Instance
    target: Instance

    def common_keypoints(self) -> np.ndarray:
        """Indices (into source.keypoint_names) of types visible in both instances."""
        tidx = {n: i for i, n in enumerate(self.target.keypoint_names)}
        keep = [
            i
            for i, n in enumerate(self.source.keypoint_names)
            if self.source.visible[i] and n in tidx and self.target.visible[tidx[n]]
        ]
        return np.asarray(keep, dtype=np.int64)


def check_keypoints_inside(inst: Instance, image_shape: Sequence[int], tol: float = 1.0) -> None:
    """Raise DataError if a visible keypoint lies outside an (H, W, ...) image by more than tol px."""
    h, w = int(image_shape[0]), int(image_shape[1])
    kp = inst.keypoints[inst.visible]
    bad = (kp[:, 0] < -tol) | (kp[:, 0] > w - 1 + tol) | (kp[:, 1] < -tol) | (kp[:, 1] > h - 1 + tol)
    if np.any(bad):
        names = [n for n, v in zip(inst.keypoint_names, inst.visible) if v]
        first = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{inst.image_path or inst.id}: keypoint {names[first]!r} at {kp[first].tolist()} "
            f"lies outside the {w}x{h} image"
        )
