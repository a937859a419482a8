"""Feature-grid geometry: where each feature column sits in the input image.

A layer with receptive-field geometry ``RFGeometry(size, stride, offset)`` has
column ``(col, row)`` centred at input pixel
``(x, y) = (offset + stride * col, offset + stride * row)`` and its receptive
field covers ``[x - (size - 1) / 2, x + (size - 1) / 2]`` (likewise in y).
Pixel coordinates are (x, y) with the centre of the top-left pixel at (0, 0).
Geometry is the same along x and y (square kernels, equal strides).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RFGeometry:
    """Receptive field of one layer.

    Attributes:
        size: receptive-field side in input pixels (ignoring image borders); ``inf`` for a global layer.
        stride: distance in input pixels between neighbouring columns.
        offset: input-pixel coordinate of the centre of column 0 (may be
            negative or fractional when padding is involved).
    """

    size: float
    stride: float
    offset: float

    @property
    def is_global(self) -> bool:
        """True after global mixing (attention, global pooling, squeeze-excitation): every column sees the
        whole image (``size == inf``); ``stride`` / ``offset`` then locate the tokens' patches."""
        return self.size == float("inf")

    def column_centers(self, n: int) -> np.ndarray:
        """(n,) pixel coordinates of the centres of columns 0..n-1 along one axis."""
        return self.offset + self.stride * np.arange(n, dtype=np.float64)

    def grid_centers(self, grid_hw: tuple[int, int]) -> np.ndarray:
        """(h, w, 2) (x, y) pixel centres of every column of an h x w grid."""
        h, w = grid_hw
        xs, ys = self.column_centers(w), self.column_centers(h)
        return np.stack(np.meshgrid(xs, ys), axis=-1)

    def column_to_pixel(self, colrow: np.ndarray) -> np.ndarray:
        """(N, 2) (col, row) -> (N, 2) (x, y) rf centres in input pixels."""
        colrow = np.asarray(colrow, dtype=np.float64)
        return self.offset + self.stride * colrow

    def pixel_to_column(self, xy: np.ndarray, grid_hw: tuple[int, int] | None = None) -> np.ndarray:
        """(N, 2) (x, y) input pixels -> (N, 2) int (col, row) of the column whose rf centre is nearest.

        With ``grid_hw=(h, w)`` the result is clipped into the grid.
        """
        xy = np.asarray(xy, dtype=np.float64)
        cr = np.rint((xy - self.offset) / self.stride).astype(np.int64)
        if grid_hw is not None:
            h, w = grid_hw
            cr[..., 0] = np.clip(cr[..., 0], 0, w - 1)
            cr[..., 1] = np.clip(cr[..., 1], 0, h - 1)
        return cr

    def rf_contains(self, colrow: np.ndarray, xy: np.ndarray) -> np.ndarray:
        """Whether the receptive field of column(s) ``colrow`` contains pixel(s) ``xy`` (broadcasting)."""
        c = self.column_to_pixel(colrow)
        half = (self.size - 1) / 2.0
        d = np.abs(np.asarray(xy, dtype=np.float64) - c)
        return np.all(d <= half + 1e-9, axis=-1)


def scale_points(xy: np.ndarray, from_hw: tuple[int, int], to_hw: tuple[int, int]) -> np.ndarray:
    """Map (N, 2) (x, y) pixel coordinates between two resolutions of the same image.

    Uses the pixel-centre convention of resampling (align_corners=False):
    ``x' = (x + 0.5) * W' / W - 0.5``.
    """
    xy = np.asarray(xy, dtype=np.float64)
    sx = to_hw[1] / from_hw[1]
    sy = to_hw[0] / from_hw[0]
    out = np.empty_like(xy)
    out[..., 0] = (xy[..., 0] + 0.5) * sx - 0.5
    out[..., 1] = (xy[..., 1] + 0.5) * sy - 0.5
    return out
