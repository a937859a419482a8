"""Rendering: figures (:mod:`.figures`, :mod:`.flow`) and Markdown/JSON reports (:mod:`.report`). Used only by
experiments and the command line."""
