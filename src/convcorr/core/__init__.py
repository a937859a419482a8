"""Core: the data schema (instances, pairs), errors, images, rf geometry, crops and small array helpers.

Imports nothing of convcorr's but :mod:`convcorr.runtime`. Coordinates are (x, y) pixels, x right, y down, the
centre of the top-left pixel at (0, 0); images are (H, W, 3) uint8 RGB arrays.
"""
from .errors import ConfigError, DataError, UserError
from .geometry import RFGeometry
from .images import load_image
from .types import Instance, Pair

__all__ = ["ConfigError", "DataError", "UserError", "RFGeometry", "load_image", "Instance", "Pair"]
