"""Matchers (:class:`Matcher` plug-ins): flow (the paper's MRF), nn, mnn, softargmax."""
from .base import MATCHERS, Correspondence, Matcher, SimilarityMatcher, cosine_similarity, get_matcher, register_matcher


def _load_plugins() -> None:
    from . import flow, mnn, nn, softargmax  # noqa: F401  (each registers itself)


_load_plugins()

__all__ = ["MATCHERS", "Correspondence", "Matcher", "SimilarityMatcher", "cosine_similarity", "get_matcher", "register_matcher"]
