"""Matchers (:class:`Matcher` plug-ins): flow (the paper's MRF), nn, mnn, softargmax."""
from .base import MATCHERS, Correspondence, Matcher, get_matcher, register_matcher

__all__ = ["MATCHERS", "Correspondence", "Matcher", "get_matcher", "register_matcher"]
