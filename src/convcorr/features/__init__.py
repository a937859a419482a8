"""Dense features behind one interface (:class:`DenseFeatures` -> :class:`FeatureGrid`), built from spec strings.

>>> get_features("alexnet:conv4")          # a backbone layer (hypercolumns: "alexnet:conv3+conv4")
>>> get_features("sift:step=4,bin=6")      # dense SIFT

Plug-ins register themselves with ``@DENSE_FEATURES.register("kind")`` in their own module (built in: ``backbone``,
``sift``, imported on the first look-up); other packages through the entry-point group ``convcorr.features``.
"""
from .base import DENSE_FEATURES, DenseFeatures, FeatureGrid, get_features

__all__ = ["DENSE_FEATURES", "DenseFeatures", "FeatureGrid", "get_features"]
