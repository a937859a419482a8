"""Evaluation: PCK under named protocols (:mod:`.pck`) and bootstrap statistics (:mod:`.stats`). Depends only on
:mod:`convcorr.core`."""
