"""Atomic file writes: a unique temporary file in the same folder, then ``os.replace``."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable


def file_mode() -> int:
    """Permission bits of a new regular file under the current umask (``tempfile.mkstemp`` makes 0600 files)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: str | Path, write: Callable[[BinaryIO], Any]) -> Path:
    """Write ``path`` atomically: ``write(fh)`` fills a unique temporary file in the same folder, which is then
    fsynced and moved into place with ``os.replace``.

    Readers see the old or the new content, never a partial file; concurrent writers never collide; a symlink at
    ``path`` is replaced, not followed. On any error the temporary file is removed and the error re-raised.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (:func:`atomic_write`)."""
    return atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """UTF-8 text version of :func:`atomic_write_bytes`."""
    return atomic_write_bytes(path, text.encode("utf-8"))
