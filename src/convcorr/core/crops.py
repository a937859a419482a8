"""Crops of an instance's box: the integer crop bounds (:func:`margin_box`) and the crop itself with exact point
maps both ways (:func:`crop_instance`, :class:`CropTransform`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .geometry import scale_points
from .types import Instance


@dataclass(frozen=True)
class CropTransform:
    """Integer crop box [x0, x1) x [y0, y1) of the original image, resized to (size, size) pixels.

    ``to_crop`` / ``from_crop`` map (N, 2) (x, y) points exactly both ways (pixel-centre convention of
    resampling: pixel i of the crop box covers [i - 0.5, i + 0.5] and is stretched by size / box side).
    """

    x0: int
    y0: int
    x1: int
    y1: int
    size: int

    @property
    def box_hw(self) -> tuple[int, int]:
        return (self.y1 - self.y0, self.x1 - self.x0)

    @property
    def scale(self) -> np.ndarray:
        """(2,) crop pixels per original pixel along (x, y)."""
        h, w = self.box_hw
        return np.array([self.size / w, self.size / h])

    def to_crop(self, xy: np.ndarray) -> np.ndarray:
        """(N, 2) original pixels -> crop pixels (NaN stays NaN)."""
        xy = np.asarray(xy, dtype=np.float64)
        return scale_points(xy - [self.x0, self.y0], self.box_hw, (self.size, self.size))

    def from_crop(self, xy: np.ndarray) -> np.ndarray:
        """(N, 2) crop pixels -> original pixels (NaN stays NaN)."""
        xy = np.asarray(xy, dtype=np.float64)
        return scale_points(xy, (self.size, self.size), self.box_hw) + [self.x0, self.y0]


def margin_box(bbox: Sequence[float], margin: float) -> tuple[int, int, int, int]:
    """Integer box (x0, y0, x1, y1), x1/y1 exclusive, enclosing ``bbox`` enlarged by ``margin`` x its
    width/height on every side."""
    x0, y0, x1, y1 = [float(v) for v in bbox]
    if margin < 0:
        raise ValueError(f"crop margin must be >= 0, got {margin}")
    mx, my = margin * (x1 - x0), margin * (y1 - y0)
    return int(np.floor(x0 - mx)), int(np.floor(y0 - my)), int(np.ceil(x1 + mx)) + 1, int(np.ceil(y1 + my)) + 1


def crop_instance(inst: Instance, margin: float = 0.1, size: int = 227) -> tuple[np.ndarray, CropTransform]:
    """Crop the instance's box (+ margin; outside the image is black) and resize it.

    Returns:
        crop: (size, size, 3) uint8 RGB.
        transform: :class:`CropTransform` between original and crop pixels.
    """
    from PIL import Image

    if int(size) < 8:
        raise ValueError(f"crop size must be >= 8 pixels, got {size}")
    img = inst.load()
    x0, y0, x1, y1 = margin_box(inst.bbox, margin)
    crop = Image.fromarray(img).crop((x0, y0, x1, y1)).resize((int(size), int(size)), Image.BILINEAR)
    return np.asarray(crop), CropTransform(x0, y0, x1, y1, int(size))
