"""Errors caused by the user's input (data, options, paths), as opposed to bugs in convcorr."""
from __future__ import annotations


class UserError(Exception):
    """Base of errors caused by the user's input (data, options, paths), not by a bug in convcorr.

    The CLI prints these as one line (exit status 2); any other exception is treated as a bug (traceback).
    """

    def __str__(self) -> str:  # KeyError subclasses would otherwise quote the message
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class DataError(UserError, ValueError):
    """Bad input data (missing file, corrupt image, malformed annotation).

    The message always names the offending file.
    """


class ConfigError(UserError, KeyError, ValueError):
    """Bad option, preset, experiment or output folder (a KeyError and a ValueError for older callers).

    The message names the option (and the experiment it belongs to).
    """
