"""Data sets in one schema (:class:`convcorr.core.types.Instance` / :class:`Pair`) and synthetic warped pairs.

Registry (:data:`DATASETS`): every data set registers its loader in its own module with its kind ("instances"
or "pairs") and takes the uniform arguments ``root`` / ``annotations`` / ``images`` (:func:`load_dataset`); other
packages add data sets through the entry-point group ``convcorr.datasets``.

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

from ._util import DATASET_FACTS, DATASET_KINDS, DATASETS, MissingArgument
from .berkeley import berkeley_dataset, load_berkeley_xml
from .coco import ap10k_dataset, coco_dataset, load_coco_keypoints
from .cub import cub_dataset, load_cub
from .embedded import embedded_categories, embedded_dataset, embedded_instances, synthetic_dataset
from .ibug import ibug_dataset, load_ibug, load_ibug_folder
from .pfpascal import load_pf_pascal_pairs, pf_pascal_dataset
from .pfwillow import load_pf_willow_pairs, pf_willow_dataset
from .spair import load_spair, spair_dataset
from .synthetic import Warp, random_warp, synthetic_instances, synthetic_pairs, warp_instance


def load_dataset(name: str, root=None, annotations=None, images=None, **options):
    """Load a registered data set (:data:`DATASETS`) with the uniform arguments ``root`` (the data root),
    ``annotations`` (the annotation file or folder) and ``images`` (the image folder), plus the loader's own options.

    e.g. ``load_dataset("berkeley", root="VOC2011")``, ``load_dataset("pf-pascal", annotations="test_pairs.csv")``,
    ``load_dataset("coco", annotations="person_keypoints.json", images="val2017")``, ``load_dataset("ibug",
    root=...)``, ``load_dataset("spair", root=..., split="test")``, ``load_dataset("cub", root=...)``,
    ``load_dataset("embedded", categories=["face"])``.

    Raises:
        UnknownName (a KeyError): an unknown data set, with the closest names.
    """
    return DATASETS.get(name)(root=root, annotations=annotations, images=images, **options)


__all__ = ["DATASETS", "DATASET_KINDS", "DATASET_FACTS", "MissingArgument", "load_dataset", "load_berkeley_xml",
           "load_coco_keypoints", "load_cub", "load_ibug", "load_ibug_folder", "load_pf_pascal_pairs",
           "load_pf_willow_pairs", "load_spair", "embedded_instances", "embedded_categories", "Warp", "random_warp",
           "synthetic_instances", "synthetic_pairs", "warp_instance", "embedded_dataset", "synthetic_dataset",
           "coco_dataset", "ap10k_dataset", "cub_dataset", "berkeley_dataset", "spair_dataset", "pf_pascal_dataset",
           "pf_willow_dataset", "ibug_dataset"]
