"""convcorr: do convnets learn correspondence? Measured.

Coordinates everywhere are (x, y) in pixels, x to the right, y down, with the
centre of the top-left pixel at (0, 0). Image arrays are (H, W, C) uint8 RGB.
"""

__version__ = "0.1.0"
