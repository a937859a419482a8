"""convcorr: do convnets learn correspondence? Measured.

Coordinates everywhere are (x, y) in pixels, x to the right, y down, with the
centre of the top-left pixel at (0, 0). Image arrays are (H, W, C) uint8 RGB.

>>> import convcorr
>>> c = convcorr.correspond(img_a, img_b, features="alexnet:conv4", matcher="flow")
>>> c.transfer(points_a)        # -> points in B;  c.transfer_back(points_b), c.warp(img_b)

Heavy submodules (torch backbones, data sets) are imported on first use of a name.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: public name -> module that defines it (imported lazily, so ``import convcorr`` stays light)
_EXPORTS = {
    "correspond": "convcorr.correspondence",
    "ImageCorrespondence": "convcorr.correspondence",
    "get_features": "convcorr.features",
    "FeatureGrid": "convcorr.features",
    "DenseFeatures": "convcorr.features",
    "get_matcher": "convcorr.matchers",
    "Matcher": "convcorr.matchers",
    "Correspondence": "convcorr.matchers",
    "get_backbone": "convcorr.backbones",
    "RFGeometry": "convcorr.core.geometry",
    "pck": "convcorr.evaluation.pck",
    "pck_curve": "convcorr.evaluation.pck",
    "PCKProtocol": "convcorr.evaluation.pck",
    "get_protocol": "convcorr.evaluation.pck",
    "evaluate": "convcorr.evaluation.pck",
    "load_image": "convcorr.core.images",
    "Instance": "convcorr.core.types",
    "Pair": "convcorr.core.types",
    "DataError": "convcorr.core.errors",
}
#: data-set loaders and helpers: every name in ``convcorr.datasets.__all__`` (load_dataset, the loaders,
#: embedded and synthetic data) is re-exported; these are the ones every version has
_DATASET_NAMES = ("load_dataset", "load_berkeley_xml", "load_coco_keypoints", "load_cub", "load_ibug",
                  "load_ibug_folder", "load_pf_pascal_pairs", "load_spair", "embedded_instances",
                  "embedded_categories", "synthetic_instances", "synthetic_pairs")

__all__ = sorted(set(_EXPORTS) | set(_DATASET_NAMES) | {"__version__"})


def _dataset_names() -> list[str]:
    return list(getattr(importlib.import_module("convcorr.datasets"), "__all__", _DATASET_NAMES))


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if not name.startswith("_") and (name in _DATASET_NAMES or name in _dataset_names()):
        return getattr(importlib.import_module("convcorr.datasets"), name)
    raise AttributeError(f"module 'convcorr' has no attribute {name!r}")


def __dir__():
    return sorted(set(__all__) | set(_dataset_names()))
