"""Reading and resizing images: (H, W, 3) uint8 RGB arrays, EXIF orientation applied, a pixel limit."""
from __future__ import annotations

import struct
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import ConfigError, DataError

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
