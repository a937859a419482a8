"""Image resizing without torch (PIL bilinear, pixel-centre convention)."""
from __future__ import annotations

import numpy as np


def resize_uint8(image: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 -> (h, w, 3) uint8, bilinear with antialiasing."""
    from PIL import Image

    h, w = size_hw
    if image.shape[:2] == (h, w):
        return image
    return np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))
