"""One small registry per plug-in kind (backbones, dense features, matchers, data sets, experiments).

A plug-in registers itself in its own file with a decorator and optional facts (plain values or callables that
describe it without building it)::

    from convcorr.backbones import BACKBONES

    @BACKBONES.register("mynet", default_weights="imagenet", offline_available=my_weights_status)
    class MyNet(Backbone): ...

    BACKBONES.get("mynet")          # the class; an unknown name raises UnknownName naming the closest names
    BACKBONES.facts("mynet")        # {"default_weights": "imagenet", "offline_available": <function>}
    BACKBONES.names()               # every registered name, built-ins first

A package outside this repository adds a plug-in through an entry point of the registry's group (e.g.
``convcorr.backbones``) in its own metadata (``pyproject.toml``)::

    [project.entry-points."convcorr.backbones"]
    mynet = "mypackage.nets:MyNet"

Entry points are found the first time a name is looked up or the names are listed, and loaded (imported) only
when their name is asked for or the names are listed; importing the module normally runs the plug-in's own
decorator, otherwise the loaded object is registered under the entry point's name without facts. A plug-in that
fails to import raises :class:`PluginError` naming the entry point and its distribution.
"""
from __future__ import annotations

import difflib
import importlib
import types
from typing import Any, Callable, Iterator, Sequence

from .errors import ConfigError, UserError


class UnknownName(ConfigError):
    """A name that no plug-in of this kind has (a ConfigError: a KeyError and a ValueError)."""


class PluginError(UserError, ImportError):
    """An installed plug-in (entry point) that cannot be loaded or that registers nothing under its name."""


class DuplicateName(ValueError):
    """Two different plug-ins of one kind registered under the same name."""


def closest(name: str, names: Sequence[str], n: int = 3) -> list[str]:
    """The registered names most similar to ``name`` (difflib; case-insensitive), best first."""
    lower = {str(k).lower(): k for k in names}
    return [lower[m] for m in difflib.get_close_matches(str(name).lower(), list(lower), n=n, cutoff=0.5)]


def _same_definition(a: Any, b: Any) -> bool:
    """True when ``a`` and ``b`` are the same object or one definition imported twice (module reload)."""
    if a is b:
        return True
    key = lambda o: (getattr(o, "__module__", None), getattr(o, "__qualname__", getattr(o, "__name__", None)))
    return key(a)[1] is not None and key(a) == key(b)


class Registry:
    """Name -> plug-in object with facts, for one plug-in kind.

    Args:
        kind: what is registered, for messages ("backbone", "matcher", ...).
        group: the entry-point group of plug-ins from other packages (e.g. "convcorr.backbones"), or None.
        builtins: modules imported on the first look-up or listing (the built-in plug-ins register themselves
            there); use it where importing them eagerly would be slow.
        on_register: called as ``on_register(name, obj, facts)`` for every new entry (e.g. to check the object's
            type or set its ``name``); may raise TypeError / ValueError to refuse it.
        hint: text appended to the "unknown name" message (e.g. other accepted spellings).

    Membership (``name in reg``), iteration (names), ``len`` and ``reg[name]`` (= :meth:`get`) work too.
    """

    def __init__(self, kind: str, group: str | None = None, builtins: Sequence[str] = (),
                 on_register: Callable[[str, Any, dict], None] | None = None, hint: str = ""):
        self.kind, self.group, self.hint = kind, group, hint
        self._builtins = tuple(builtins)
        self._on_register = on_register
        self._entries: dict[str, tuple[Any, dict]] = {}
        self._builtins_loaded = not self._builtins
        self._entry_points: dict | None = None  # name -> importlib.metadata.EntryPoint, found on first use
        self._loading: set[str] = set()

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, group={self.group!r}, {len(self._entries)} registered)"

    # ------------------------------------------------------------------------------------------ registration
    def register(self, name: str, **facts) -> Callable:
        """Decorator: ``@REG.register("name", fact=value, ...)`` registers the decorated object (returned as is).

        Raises:
            DuplicateName: ``name`` is taken by another object.
        """

        def deco(obj):
            self.add(name, obj, **facts)
            return obj

        return deco

    def add(self, name: str, obj: Any, **facts) -> None:
        """Register ``obj`` under ``name`` (the non-decorator form of :meth:`register`)."""
        if not isinstance(name, str) or not name.strip() or name != name.strip():
            raise ValueError(f"{self.kind} name must be a non-empty string without surrounding blanks, got {name!r}")
        old = self._entries.get(name)
        if old is not None and not _same_definition(old[0], obj):
            raise DuplicateName(f"{self.kind} {name!r} is already registered (by {_describe(old[0])}); "
                                f"{_describe(obj)} cannot take the same name")
        if self._on_register is not None:
            self._on_register(name, obj, facts)
        self._entries[name] = (obj, dict(facts))

    # ------------------------------------------------------------------------------------------------ lookup
    def get(self, name: str) -> Any:
        """The object registered under ``name``; an installed plug-in's entry point is loaded on first use.

        Raises:
            UnknownName: naming the unknown name, the closest registered names and all of them.
            PluginError: the entry point of that name cannot be loaded.
        """
        return self._lookup(name)[0]

    def facts(self, name: str) -> dict:
        """The facts registered with ``name`` (a copy; callables are returned uncalled)."""
        return dict(self._lookup(name)[1])

    def fact(self, name: str, key: str, default: Any = None) -> Any:
        """One fact of ``name`` (``default`` when the plug-in did not declare it)."""
        return self._lookup(name)[1].get(key, default)

    def names(self) -> list[str]:
        """Every registered name (built-ins in registration order, then installed plug-ins, which are loaded)."""
        self._load_builtins()
        for ep_name in list(self._find_entry_points()):
            if ep_name not in self._entries:
                self._load_entry_point(ep_name)
        # built-ins in the order of ``builtins`` whatever was imported first, then the rest as registered
        pos = {m: i for i, m in enumerate(self._builtins)}
        order = sorted(enumerate(self._entries.items()),
                       key=lambda t: (pos.get(_module_of(t[1][1][0]), len(pos)), t[0]))
        return [name for _, (name, _) in order]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        self._load_builtins()
        return name in self._entries or name in self._find_entry_points()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __getitem__(self, name: str) -> Any:
        return self.get(name)

    def unknown(self, name: Any) -> UnknownName:
        """The error for an unknown ``name`` (also for callers that accept other spellings first)."""
        return UnknownName(f"unknown {self.kind} {name!r}; {self.suggest(name)}")

    def suggest(self, name: Any) -> str:
        """"did you mean 'x'? available: ..." for an unknown ``name`` (the closest names first)."""
        known = self.names()
        near = closest(str(name), known)
        did = f"did you mean {' or '.join(repr(n) for n in near)}? " if near else ""
        return f"{did}available: {', '.join(sorted(known))}" + (f" {self.hint}" if self.hint else "")

    # ----------------------------------------------------------------------------------------------- loading
    def _lookup(self, name: str) -> tuple[Any, dict]:
        self._load_builtins()
        if isinstance(name, str) and name not in self._entries and name in self._find_entry_points():
            self._load_entry_point(name)
        if not isinstance(name, str) or name not in self._entries:
            raise self.unknown(name)
        return self._entries[name]

    def _load_builtins(self) -> None:
        if self._builtins_loaded:
            return
        self._builtins_loaded = True
        try:
            for mod in self._builtins:
                importlib.import_module(mod)
        except BaseException:
            self._builtins_loaded = False
            raise

    def _find_entry_points(self) -> dict:
        if self._entry_points is None:
            found: dict = {}
            if self.group:
                from importlib.metadata import entry_points

                for ep in _select(entry_points(), self.group):
                    found.setdefault(ep.name, ep)
            self._entry_points = found
        return self._entry_points

    def refresh(self) -> None:
        """Find entry points again on the next look-up (after installing a plug-in in a running process)."""
        self._entry_points = None

    def _load_entry_point(self, name: str) -> None:
        ep = self._find_entry_points()[name]
        if name in self._loading:  # the plug-in's module looks itself up while importing
            return
        where = f"entry point {ep.name!r} = {ep.value!r} (group {self.group!r}) of {_distribution(ep)}"
        self._loading.add(name)
        try:
            obj = ep.load()
        except Exception as exc:
            raise PluginError(f"cannot load {self.kind} {name!r}: {where} failed: {type(exc).__name__}: {exc}") \
                from exc
        finally:
            self._loading.discard(name)
        if name in self._entries:  # the module registered it with its decorator
            return
        if isinstance(obj, types.ModuleType):
            raise PluginError(f"{where} imported module {obj.__name__!r}, which registers no {self.kind} named "
                              f"{name!r} (registered: {sorted(self._entries)})")
        facts = next((f for o, f in self._entries.values() if o is obj), {})  # registered under another name
        try:
            self.add(name, obj, **facts)
        except (TypeError, ValueError) as exc:
            raise PluginError(f"{where} cannot be registered: {exc}") from exc


def _select(eps, group: str):
    """Entry points of ``group`` (importlib.metadata's API differs before Python 3.10)."""
    if hasattr(eps, "select"):
        return list(eps.select(group=group))
    return list(eps.get(group, []))  # pragma: no cover - Python < 3.10


def _distribution(ep) -> str:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "an unknown distribution"
    try:
        return f"distribution {dist.metadata['Name']!r} {dist.version}"
    except Exception:  # pragma: no cover - broken metadata
        return f"distribution {getattr(dist, 'name', '?')!r}"


def _module_of(obj: Any) -> str | None:
    return obj.__name__ if isinstance(obj, types.ModuleType) else getattr(obj, "__module__", None)


def _describe(obj: Any) -> str:
    if isinstance(obj, types.ModuleType):
        return f"module {obj.__name__}"
    mod, qual = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    return f"{mod}.{qual}" if mod and qual else repr(obj)


__all__ = ["Registry", "UnknownName", "PluginError", "DuplicateName", "closest"]
