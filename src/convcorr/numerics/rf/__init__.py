"""Receptive-field geometry: traced through one forward pass (:mod:`.trace`) or composed from a layer list
(:mod:`.compose`)."""
from .compose import compose_rf, compute_rf, format_rf_table, spatial_ops
from .trace import GeometryError, trace_geometry

__all__ = ["GeometryError", "compose_rf", "compute_rf", "format_rf_table", "spatial_ops", "trace_geometry"]
