"""Where the read-only shared assets (pretrained weights, real annotated images) live.

Resolution order: $CONVCORR_SHARED, then ``../shared`` next to the repository
checkout, then ``../shared`` next to the current directory. Nothing here is
ever copied into the project.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

#: the checkout this package runs from (<repo>/src/convcorr/runtime/paths.py), whose ../shared is looked up
_REPO = Path(__file__).resolve().parents[3]


def shared_root() -> Optional[Path]:
    """Return the shared asset folder, or None if it cannot be found."""
    cands = []
    if os.environ.get("CONVCORR_SHARED"):
        cands.append(Path(os.environ["CONVCORR_SHARED"]))
    cands += [_REPO.parent / "shared", Path.cwd().parent / "shared", Path.cwd() / "shared"]
    for c in cands:
        if (c / "README.md").is_file() or (c / "weights").is_dir():
            return c.resolve()
    return None


def require_shared(*parts: str) -> Path:
    """Path below the shared folder; FileNotFoundError with a hint when absent."""
    root = shared_root()
    if root is None:
        raise FileNotFoundError(
            "shared asset folder not found: set CONVCORR_SHARED to the folder holding weights/, images/, keypoints/"
        )
    p = root.joinpath(*parts)
    if not p.exists():
        raise FileNotFoundError(f"{p}: not found in the shared asset folder")
    return p


def cache_dir() -> Path:
    """Folder for feature caches ($CONVCORR_CACHE or ~/.cache/convcorr)."""
    p = Path(os.environ.get("CONVCORR_CACHE", Path.home() / ".cache" / "convcorr"))
    p.mkdir(parents=True, exist_ok=True)
    return p
