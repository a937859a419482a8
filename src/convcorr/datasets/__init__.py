"""Data sets in one schema (:class:`convcorr.core.types.Instance` / :class:`Pair`) and synthetic warped pairs.

Conventions (see each module): coordinates are (x, y) pixels with the top-left pixel centre at (0, 0); 1-based
formats are shifted (Berkeley VOC XML, iBUG .pts); menpo .ljson (y, x) is swapped; COCO, PF-PASCAL, SPair-71k and
CUB coordinates are kept as stored. Absent keypoints are NaN with ``visible`` False. Bad input raises
:class:`convcorr.core.errors.DataError` naming the file; ``check_images=True`` loads every image now and checks that
visible keypoints lie inside it. Image names read from annotation files must resolve inside the loader's data root
(:func:`convcorr.datasets._util.resolve_image_path`; every loader takes ``allow_outside_root=True`` to opt out);
visible NaN/inf coordinates, duplicate keypoint names, out-of-range class/category ids and empty data sets are
DataErrors naming the file.
"""
from __future__ import annotations

from .berkeley import load_berkeley_xml
from .coco import load_coco_keypoints
from .cub import load_cub
from .embedded import embedded_categories, embedded_instances
from .ibug import load_ibug, load_ibug_folder
from .pfpascal import load_pf_pascal_pairs
from .pfwillow import load_pf_willow_pairs
from .spair import load_spair
from .synthetic import Warp, random_warp, synthetic_instances, synthetic_pairs, warp_instance

#: name -> loader; ``load_dataset(name, **kw)`` calls it
DATASETS = {
    "embedded": embedded_instances,
    "berkeley": load_berkeley_xml,
    "pf-pascal": load_pf_pascal_pairs,
    "pf-willow": load_pf_willow_pairs,
    "coco": load_coco_keypoints,
    "ibug": load_ibug_folder,
    "spair": load_spair,
    "cub": load_cub,
}


def load_dataset(name: str, **kw):
    """Load a data set by name (see :data:`DATASETS`) with loader-specific keyword arguments.

    e.g. ``load_dataset("berkeley", path=..., image_root=...)``, ``load_dataset("pf-pascal", csv_path=...)``, ``load_dataset("pf-willow", csv_path=...)``,
    ``load_dataset("coco", json_path=..., image_dir=...)``, ``load_dataset("ibug", folder=...)``,
    ``load_dataset("spair", root=..., split="test")``, ``load_dataset("cub", root=...)``,
    ``load_dataset("embedded", category="face")``.
    """
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; available: {sorted(DATASETS)}")
    return DATASETS[name](**kw)


__all__ = ["DATASETS", "load_dataset", "load_berkeley_xml", "load_coco_keypoints", "load_cub", "load_ibug",
           "load_ibug_folder", "load_pf_pascal_pairs", "load_pf_willow_pairs", "load_spair", "embedded_instances", "embedded_categories",
           "Warp", "random_warp", "synthetic_instances", "synthetic_pairs", "warp_instance"]
