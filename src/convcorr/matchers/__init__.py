"""Matchers (:class:`Matcher` plug-ins): flow (the paper's MRF), nn, mnn, softargmax.

Each built-in registers itself in its own module (``@MATCHERS.register("name")``), imported on the first look-up;
other packages add matchers through the entry-point group ``convcorr.matchers``.
"""
from .base import (MATCHERS, Correspondence, Matcher, SimilarityMatcher, cosine_similarity, get_matcher,
                   matcher_option_names)

__all__ = ["MATCHERS", "Correspondence", "Matcher", "SimilarityMatcher", "cosine_similarity", "get_matcher",
           "matcher_option_names"]
