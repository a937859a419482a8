"""The one KEY=VALUE parser: ``--set KEY=VALUE`` on the command line and plug-in specs such as ``"sift:step=8,bin=8"``.

A value is read as a Python literal when it is one (``3``, ``0.5``, ``[1, 2]``, ``'x'``), as ``True`` / ``False`` /
``None`` for the words ``true`` / ``false`` / ``none`` / ``null`` (any case), and as its own (stripped) text
otherwise (``conv4``, ``/data/voc``).
"""
from __future__ import annotations

import ast

from .errors import ConfigError

_WORDS = {"true": True, "false": False, "none": None, "null": None}


def parse_value(text: str):
    """One option value from its text (module docstring): a literal, true/false/none/null, else the text."""
    t = str(text).strip()
    if t.lower() in _WORDS:
        return _WORDS[t.lower()]
    try:
        return ast.literal_eval(t)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return t


def split_key_value(item: str, what: str = "option") -> tuple[str, str]:
    """``"KEY=VALUE"`` -> (stripped KEY, VALUE text as given; it may itself contain ``=``). Raises
    :class:`convcorr.core.errors.ConfigError` naming ``what`` and the item when there is no ``=`` or no KEY."""
    if "=" not in item:
        raise ConfigError(f"{what} {item!r} must be KEY=VALUE")
    k, v = item.split("=", 1)
    if not k.strip():
        raise ConfigError(f"{what} {item!r}: empty KEY in KEY=VALUE")
    return k.strip(), v


def parse_key_values(text: str, what: str = "option") -> dict:
    """Comma-separated ``"KEY=VALUE,KEY=VALUE"`` (a plug-in spec's options, e.g. ``"step=8,bin=8"``) ->
    {key: :func:`parse_value`}; empty items are skipped. Values cannot contain commas here (on the command line one
    ``--set KEY=VALUE`` is one option and its value may: :func:`split_key_value`)."""
    out: dict = {}
    for item in filter(None, (t.strip() for t in str(text).split(","))):
        k, v = split_key_value(item, what)
        out[k] = parse_value(v)
    return out
