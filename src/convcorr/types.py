"""Common data schema: one annotated object instance, and a pair of them.

Coordinates are (x, y) in pixels of the original image, x to the right and y
down; the centre of the top-left pixel is (0, 0). Boxes are (x0, y0, x1, y1)
in the same frame. Images are (H, W, 3) uint8 RGB arrays.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional, Sequence

import numpy as np


class UserError(Exception):
    """Base of errors caused by the user's input (data, options, paths), not by a bug in convcorr.

    The CLI prints these as one line (exit status 2); any other exception is treated as a bug (traceback).
    """

    def __str__(self) -> str:  # KeyError subclasses would otherwise quote the message
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class DataError(UserError, ValueError):
    """Bad input data (missing file, corrupt image, malformed annotation).

    The message always names the offending file.
    """


class ConfigError(UserError, KeyError, ValueError):
    """Bad option, preset, experiment or output folder (a KeyError and a ValueError for older callers).

    The message names the option (and the experiment it belongs to).
    """


#: default pixel limit of :func:`load_image` (``$CONVCORR_MAX_IMAGE_PIXELS`` overrides it): larger images are
#: refused as likely decompression bombs. 100 megapixels holds any photo of the supported data sets.
MAX_IMAGE_PIXELS = 100_000_000


def max_image_pixels() -> int:
    """The pixel limit in effect: ``$CONVCORR_MAX_IMAGE_PIXELS`` or :data:`MAX_IMAGE_PIXELS`."""
    import os

    v = os.environ.get("CONVCORR_MAX_IMAGE_PIXELS")
    if v:
        try:
            n = int(v)
        except ValueError:
            raise ConfigError(f"CONVCORR_MAX_IMAGE_PIXELS must be a positive integer, got {v!r}") from None
        if n <= 0:
            raise ConfigError(f"CONVCORR_MAX_IMAGE_PIXELS must be a positive integer, got {v!r}")
        return n
    return MAX_IMAGE_PIXELS


def _to_uint8_rgb(im) -> np.ndarray:
    """PIL image of any mode -> (H, W, 3) uint8 RGB; 16/32-bit integer and float grey are rescaled, not clipped."""
    mode = im.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        a = np.asarray(im)
        if a.ndim != 2:  # pragma: no cover - PIL gives 2-D arrays for these modes
            raise ValueError(f"unexpected {mode} array of shape {a.shape}")
        a = a.astype(np.float64)
        if mode.startswith("I;16"):
            scale = 65535.0
        elif mode == "F":
            finite = a[np.isfinite(a)]
            scale = 1.0 if finite.size == 0 or finite.max() <= 1.0 else 255.0
            a = np.nan_to_num(a, nan=0.0, posinf=scale, neginf=0.0)
        else:  # 32-bit integer: 16-bit PNGs in older Pillow; 8-bit range kept as is
            mx = a.max() if a.size else 0
            scale = 255.0 if mx <= 255 else (65535.0 if mx <= 65535 else float(mx))
        g = np.clip(np.rint(a / scale * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(g[:, :, None], 3, axis=2)
    return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def load_image(path: str | Path, max_pixels: int | None = None) -> np.ndarray:
    """Read an image file as an (H, W, 3) uint8 RGB array, as displayed.

    * EXIF orientation is applied (the image is rotated/flipped as a viewer shows it). Keypoints are NOT
      transformed: the annotations of the supported data sets (COCO, AP-10K, SPair, CUB, ...) were made on the
      displayed image, so they already refer to the EXIF-applied frame.
    * 16-bit (and 32-bit integer / float) grey images are rescaled to 8 bits (65535 -> 255), not clipped;
      palette, grey+alpha, RGBA and CMYK images are converted to RGB (alpha dropped).
    * ``max_pixels`` (default :func:`max_image_pixels`) bounds width x height, checked from the header before
      decoding, so a decompression bomb is refused without being decoded.

    Raises DataError naming the file when it is missing, too large or cannot be decoded.
    """
    import warnings

    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    limit = max_image_pixels() if max_pixels is None else int(max_pixels)
    if not path.is_file():
        raise DataError(f"{path}: image file not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # we apply our own limit below
            with Image.open(path) as im:
                w, h = im.size
                if w * h > limit:
                    raise DataError(f"{path}: image of {w}x{h} = {w * h} pixels exceeds the limit of {limit} pixels "
                                    "(a decompression bomb? raise CONVCORR_MAX_IMAGE_PIXELS if the image is genuine)")
                if w < 1 or h < 1:
                    raise DataError(f"{path}: empty image ({w}x{h})")
                im.load()
                im = ImageOps.exif_transpose(im) or im
                return _to_uint8_rgb(im)
    except DataError:
        raise
    except Image.DecompressionBombError as exc:
        raise DataError(f"{path}: image refused as a decompression bomb ({exc})") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, TypeError, EOFError, IndexError, KeyError,
            MemoryError, struct.error) as exc:
        raise DataError(f"{path}: cannot decode image ({type(exc).__name__}: {exc})") from exc


def resize_image(image: np.ndarray, size_hw: Sequence[int]) -> np.ndarray:
    """Bilinear resize (PIL, pixel-centre convention) of an (H, W, 3) uint8 image to (h, w) = size_hw."""
    from PIL import Image

    h, w = int(size_hw[0]), int(size_hw[1])
    if image.shape[:2] == (h, w):
        return image
    return np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))


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

    def with_image(self, image: np.ndarray) -> "Instance":
        return replace(self, image=image)


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
