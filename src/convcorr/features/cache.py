"""On-disk feature cache: keyed by instance, feature name, a digest of the inputs and the feature code version; written atomically, corrupt entries rebuilt."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Callable

import numpy as np

# --------------------------------------------------------------------------------------------------------- cache
#: version of the feature code: bump it when a change to the feature functions changes their output, so that
#: entries written by older code are never reused (it is part of every cache key)
FEATURE_CODE_VERSION = "2"


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", str(s)).strip("_")[:80] or "_"


def _full_key(inst_id: str, name: str, digest: str | None, version: str) -> str:
    return f"v{version}|{inst_id}|{name}|{digest or ''}"


def cache_path(inst_id: str, name: str, digest: str | None = None, root: Path | None = None,
               version: str = FEATURE_CODE_VERSION) -> Path:
    """NPZ path of a cached feature: ``root/features/<inst_id>/<name>-<hash>.npz``.

    The readable parts are sanitised (and shortened); ``<hash>`` is a sha1 of the exact instance id, name, digest
    and code ``version``, so two different keys never share a file even when their sanitised names coincide.
    """
    from ..runtime.paths import cache_dir

    root = Path(root) if root is not None else cache_dir()
    h = hashlib.sha1(_full_key(inst_id, name, digest, version).encode()).hexdigest()[:16]
    return root / "features" / _safe(inst_id) / f"{_safe(name)}-{h}.npz"


def array_digest(*arrays: np.ndarray) -> str:
    """Short content hash (sha1, 12 hex digits) of arrays (values, dtypes and shapes)."""
    h = hashlib.sha1()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:12]


_WEIGHTS_DIGESTS: "weakref.WeakKeyDictionary" = None  # type: ignore[assignment]


def weights_digest(model) -> str:
    """Content hash (sha1, 16 hex digits) of a torch module's parameters and buffers (names, shapes, values).

    Part of every cache key of features computed by ``model``: different weights never share cache entries.
    Memoised per module object and recomputed after in-place changes of its tensors (torch version counters);
    about 0.3 s for AlexNet's 61M parameters.
    """
    global _WEIGHTS_DIGESTS
    import weakref

    if _WEIGHTS_DIGESTS is None:
        _WEIGHTS_DIGESTS = weakref.WeakKeyDictionary()
    sd = model.state_dict()
    versions = tuple(getattr(t, "_version", 0) for t in sd.values())  # in-place updates bump these
    try:
        memo = _WEIGHTS_DIGESTS.get(model)
    except TypeError:  # pragma: no cover - not weak-referenceable
        memo = None
    if memo is not None and memo[0] == versions:
        return memo[1]
    h = hashlib.sha1()
    for k, t in sorted(sd.items()):
        a = t.detach().cpu().contiguous().numpy()
        h.update(f"{k}:{a.dtype.str}:{a.shape};".encode())
        h.update(a.tobytes())
    d = h.hexdigest()[:16]
    try:
        _WEIGHTS_DIGESTS[model] = (versions, d)
    except TypeError:  # pragma: no cover
        pass
    return d


_warned_dirs: set = set()


def _warn_unwritable(where, exc) -> None:
    import warnings

    key = str(where)
    if key not in _warned_dirs:
        _warned_dirs.add(key)
        warnings.warn(f"feature cache {where} is not usable ({exc}); continuing without caching", RuntimeWarning,
                      stacklevel=3)


def read_cache_entry(path: Path, key: str) -> np.ndarray | None:
    """The value stored at ``path`` for ``key``, or None when absent, unreadable, corrupt or for another key."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if "key" not in z.files or "value" not in z.files or str(z["key"]) != key:
                return None
            return z["value"]
    except FileNotFoundError:
        return None
    except Exception:  # corrupt, truncated or unreadable entry: rebuilt by the caller
        return None


def write_cache_entry(path: Path, key: str, value: np.ndarray) -> bool:
    """Write ``value`` for ``key`` atomically (unique temporary file in the same folder + ``os.replace``).

    Concurrent writers of the same entry never collide and readers never see a partial file. Returns False (after
    one warning per folder) when the folder cannot be written, e.g. read-only or full: the caller goes on
    without caching.
    """
    from ..runtime.io import atomic_write

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda fh: np.savez(fh, key=np.array(key), value=value))
        return True
    except OSError as exc:
        _warn_unwritable(path.parent, exc)
        return False


def cached(inst_id: str, name: str, compute: Callable[[], np.ndarray], digest: str | None = None,
           root: Path | None = None, enabled: bool = True, version: str = FEATURE_CODE_VERSION) -> np.ndarray:
    """``compute()`` once per (instance id, feature name, digest, code version); later calls load the NPZ.

    ``name`` must encode everything the value depends on besides the input content: for dense features their
    :attr:`~convcorr.features.base.DenseFeatures.cache_key` (spec and, for backbone layers, the weights digest)
    plus input size and crop margin when they vary; ``digest`` (e.g.
    :func:`array_digest` of the crop and points) covers the input. ``version`` (default
    :data:`FEATURE_CODE_VERSION`) is the code version of the feature function.

    A corrupt, truncated or unreadable entry is recomputed and rewritten; entries are written atomically with
    unique temporary names (safe for concurrent processes sharing the cache); an unusable cache folder
    (read-only, full, a file in the way) degrades to computing without caching, with one warning.
    """
    if not enabled:
        return np.asarray(compute())
    key = _full_key(inst_id, name, digest, version)
    try:
        p = cache_path(inst_id, name, digest, root, version)
    except OSError as exc:  # cache_dir() cannot be created
        _warn_unwritable(root or "$CONVCORR_CACHE", exc)
        return np.asarray(compute())
    v = read_cache_entry(p, key)
    if v is not None:
        return v
    value = np.asarray(compute())
    write_cache_entry(p, key, value)
    return value
