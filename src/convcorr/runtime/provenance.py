"""Provenance of a run: what produced a results file (code version and commit, command, machine, libraries).

Imports nothing of convcorr's: the version is read from the already imported package (or the installed
distribution's metadata), library versions from the imported modules or the distributions' metadata (no library is
imported for it), the commit by asking git about the checkout this package was imported from. Nothing here raises:
an unknown fact is None.
"""
from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

#: library -> (module, distribution names that provide it: the first installed one is reported)
LIBRARIES = {"torch": ("torch", ("torch",)), "numpy": ("numpy", ("numpy",)), "scipy": ("scipy", ("scipy",)),
             "scikit-learn": ("sklearn", ("scikit-learn",)),
             "faiss": ("faiss", ("faiss-cpu", "faiss-gpu", "faiss-gpu-cu12", "faiss")), "numba": ("numba", ("numba",)),
             "torchvision": ("torchvision", ("torchvision",)), "timm": ("timm", ("timm",))}
_PACKAGE = "convcorr"


def _dist_version(*names: str) -> str | None:
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        except Exception:  # a broken installation's metadata
            return None
    return None


def library_version(module: str, dists: Sequence[str]) -> str | None:
    """Version of a library: the imported module's ``__version__`` (with torch's build tag, e.g. ``+cu130``) when
    it is already imported, else the installed distribution's metadata; None when not installed."""
    v = getattr(sys.modules.get(module), "__version__", None)
    return str(v) if v else _dist_version(*dists)


def package_version() -> str | None:
    """convcorr's version: ``convcorr.__version__`` of the imported package, else the installed metadata."""
    v = getattr(sys.modules.get(_PACKAGE), "__version__", None)
    return str(v) if v else _dist_version(_PACKAGE)


def _package_dir() -> Path:
    """The folder of the convcorr package this module belongs to."""
    here = Path(__file__).resolve()
    return next((p for p in here.parents if p.name == _PACKAGE), here.parent)


def git_state(timeout: float = 5.0) -> dict[str, Any] | None:
    """``{"commit": sha, "dirty": bool}`` when convcorr runs from a git checkout (``<root>/src/convcorr``), else
    None: an installed copy, no git executable, git failing or too slow. ``dirty``: tracked files differ from the
    commit (untracked files are ignored)."""
    root = _package_dir().parent.parent  # <root>/src/convcorr -> <root>
    if not (root / "pyproject.toml").is_file():
        return None

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True,
                              timeout=timeout).stdout.strip()

    try:
        top = Path(git("rev-parse", "--show-toplevel")).resolve()
        if top != root.resolve():  # e.g. an installed copy inside some other repository
            return None
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return {"commit": commit, "dirty": dirty}


def device_info(device: Any = None) -> dict[str, Any]:
    """``{"device": "cpu" | "cuda" | ..., "gpu": name or None}`` for ``device`` (a torch device or its string;
    default: CUDA when available)."""
    try:
        import torch

        dev = torch.device(device) if device is not None else torch.device(
            "cuda" if torch.cuda.is_available() else "cpu")
        gpu = torch.cuda.get_device_name(dev) if dev.type == "cuda" and torch.cuda.is_available() else None
        return {"device": dev.type, "gpu": gpu}
    except Exception:  # no torch, a broken driver
        return {"device": None if device is None else str(device), "gpu": None}


def provenance(device: Any = None, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Facts about this run for the ``meta`` block of results.json.

    Keys: ``convcorr`` (version), ``git`` (:func:`git_state`), ``command`` (``sys.argv``, or ``argv``),
    ``platform``, ``machine``, ``python``, ``device`` and ``gpu`` (:func:`device_info`) and ``versions`` (library ->
    version or None when not installed, :data:`LIBRARIES`).
    """
    return {
        "convcorr": package_version(),
        "git": git_state(),
        "command": list(sys.argv if argv is None else argv),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        **device_info(device),
        "versions": {lib: library_version(mod, dists) for lib, (mod, dists) in LIBRARIES.items()},
    }
