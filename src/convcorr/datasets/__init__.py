"""Data sets in one schema (:class:`convcorr.types.Instance` / :class:`Pair`) and synthetic warped pairs."""
from __future__ import annotations

from .berkeley import load_berkeley_xml
from .coco import load_coco_keypoints
from .cub import load_cub
from .embedded import embedded_categories, embedded_instances
from .ibug import load_ibug, load_ibug_folder
from .pfpascal import load_pf_pascal_pairs
from .spair import load_spair
from .synthetic import Warp, random_warp, synthetic_instances, synthetic_pairs, warp_instance

#: name -> loader; ``load_dataset(name, **kw)`` calls it
DATASETS = {
    "embedded": embedded_instances,
    "berkeley": load_berkeley_xml,
    "pf-pascal": load_pf_pascal_pairs,
    "coco": load_coco_keypoints,
    "ibug": load_ibug_folder,
    "spair": load_spair,
    "cub": load_cub,
}


def load_dataset(name: str, **kw):
    """Load a data set by name (see :data:`DATASETS`) with loader-specific keyword arguments."""
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; available: {sorted(DATASETS)}")
    return DATASETS[name](**kw)


__all__ = ["DATASETS", "load_dataset", "load_berkeley_xml", "load_coco_keypoints", "load_cub", "load_ibug",
           "load_ibug_folder", "load_pf_pascal_pairs", "load_spair", "embedded_instances", "embedded_categories",
           "Warp", "random_warp", "synthetic_instances", "synthetic_pairs", "warp_instance"]
