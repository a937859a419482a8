"""Progress bars on stderr (quiet when CONVCORR_QUIET=1)."""
from __future__ import annotations

from typing import Iterable


def progress(iterable: Iterable, desc: str, total: int | None = None, **kw):
    """tqdm progress bar on stderr (quiet when CONVCORR_QUIET=1)."""
    import os

    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, disable=os.environ.get("CONVCORR_QUIET") == "1",
                dynamic_ncols=True, leave=False, **kw)
