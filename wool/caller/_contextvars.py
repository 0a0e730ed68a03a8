"""`wool.ContextVar`: a context variable whose value travels with routine calls, both ways.

Theory of operation. Each variable is identified by its (namespace, name), not by the object:
the same key names the same variable in every process, even in a worker that has not yet
imported the module defining it (a value arriving for an unknown key is kept under that key,
and the `wool.ContextVar` the module creates later finds it). Storage is one stdlib
`contextvars.ContextVar` per key, so asyncio's copy-on-task semantics hold unchanged: tasks
fork their own copy, `gather`/`TaskGroup` children never see each other's values.

A call carries a snapshot of the variables set in the caller's context (none set: an empty
frame, nothing pickled). The worker sets them in the call's context, runs the routine, and
sends back the variables whose value the routine changed (by identity), which the caller sets
in its own context before the call's result or exception reaches it; a generator does so at
every step, in both directions. Unsetting travels too: a variable is "unset" when its storage
holds `_UNSET` (a variable cannot be deleted from a context, but it can be set to that).
"""

from __future__ import annotations

import contextvars
import pickle
from collections.abc import Iterable
from typing import Any, Generic, TypeVar, overload

import cloudpickle

from .._errors import SerializationError

T = TypeVar("T")
D = TypeVar("D")

Key = tuple[str, str]  # (namespace, name); namespace "" when none was given


class _Unset:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<unset>"

    def __reduce__(self) -> str:
        return "_UNSET"


_UNSET: Any = _Unset()
_MISSING: Any = object()

_storage: dict[Key, contextvars.ContextVar[Any]] = {}


def _slot(key: Key) -> contextvars.ContextVar[Any]:
    var = _storage.get(key)
    if var is None:
        var = _storage[key] = contextvars.ContextVar(f"wool:{_label(key)}", default=_UNSET)
    return var


def _label(key: Key) -> str:
    return f"{key[0]}:{key[1]}" if key[0] else key[1]


def _check(what: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(f"a wool.ContextVar {what} must be a non-empty str, not {value!r}")
    return value


class Token(Generic[T]):
    """What `ContextVar.set` returns: `reset(token)` restores the value before that `set`,
    in the same context, once (as `contextvars.Token`)."""

    MISSING: Any = contextvars.Token.MISSING

    __slots__ = ("_var", "_old", "_token")

    def __init__(self, var: ContextVar[T], old: Any, token: contextvars.Token[Any]) -> None:
        self._var, self._old, self._token = var, old, token

    @property
    def var(self) -> ContextVar[T]:
        return self._var

    @property
    def old_value(self) -> Any:
        """The value before the `set`, or `Token.MISSING` if there was none."""
        return Token.MISSING if self._old is _UNSET else self._old

    def __reduce__(self) -> Any:
        raise TypeError(f"a wool.ContextVar token cannot travel: reset {self._var!r} where it was set")

    def __repr__(self) -> str:
        return f"<wool.Token var={self._var!r}>"


class ContextVar(Generic[T]):
    """A context variable (as `contextvars.ContextVar`) whose value follows routine calls to
    workers and back. Identified by `name` within `namespace`: two `wool.ContextVar`s with the
    same name and namespace are the same variable, in this process and on every worker.
    Its values must be picklable (cloudpickle) to travel."""

    __slots__ = ("_key", "_default", "_var", "__weakref__")

    def __init__(self, name: str, *, namespace: str | None = None, default: Any = _MISSING) -> None:
        self._key: Key = ("" if namespace is None else _check("namespace", namespace), _check("name", name))
        self._default = default
        self._var = _slot(self._key)

    @property
    def name(self) -> str:
        return self._key[1]

    @property
    def namespace(self) -> str | None:
        return self._key[0] or None

    @overload
    def get(self) -> T: ...
    @overload
    def get(self, default: D, /) -> T | D: ...
    def get(self, *args: Any) -> Any:
        """The value in the current context; else `default` (the argument, then the one
        given at construction); else `LookupError`."""
        value = self._var.get()
        if value is not _UNSET:
            return value
        if args:
            return args[0]
        if self._default is not _MISSING:
            return self._default
        raise LookupError(self)

    def set(self, value: T) -> Token[T]:
        """Set the value in the current context."""
        old = self._var.get()
        return Token(self, old, self._var.set(value))

    def reset(self, token: Token[T]) -> None:
        """Restore the value the variable had before the `set` that returned `token`."""
        if not isinstance(token, Token):
            raise TypeError(f"reset() needs a wool.Token, not {type(token).__name__}")
        if token.var._key != self._key:
            raise ValueError(f"{token!r} was created by a different ContextVar")
        self._var.reset(token._token)

    def __reduce__(self) -> Any:
        # Pickled by key (e.g. inside a routine pickled by value): the worker's copy shares
        # the storage of that key.
        return (_restore, (self._key, self._default))

    def __repr__(self) -> str:
        default = "" if self._default is _MISSING else f" default={self._default!r}"
        return f"<wool.ContextVar name={_label(self._key)!r}{default} at {id(self):#x}>"


def _restore(key: Key, default: Any) -> ContextVar[Any]:
    var = ContextVar.__new__(ContextVar)
    var._key, var._default, var._var = key, default, _slot(key)
    return var


# -- travelling -------------------------------------------------------------------------------

Snapshot = dict[Key, Any]


def _pickle(values: Snapshot) -> bytes:
    try:
        data: bytes = cloudpickle.dumps(values, protocol=5)
        return data
    except Exception:
        pass
    for key, value in values.items():  # name the culprit
        try:
            cloudpickle.dumps(value, protocol=5)
        except Exception as e:
            raise TypeError(
                f"wool.ContextVar {_label(key)!r} holds a value that cannot be pickled, so it cannot travel "
                f"with a routine call: {type(e).__name__}: {e}"
            ) from None
    raise TypeError("the wool.ContextVar values could not be pickled together")  # pragma: no cover


def capture(extra: Snapshot | None = None) -> bytes:
    """The variables set in the current context, and `extra` (the trace context, under a
    key no variable has), pickled (`b""` when there is nothing): what a call carries.
    Raises `TypeError` naming a variable whose value cannot be pickled."""
    if not _storage and extra is None:
        return b""
    values = {key: value for key, var in tuple(_storage.items()) if (value := var.get()) is not _UNSET}
    if extra is not None:
        values.update(extra)
    return _pickle(values) if values else b""


def unpickle(what: str, frame: Any) -> Snapshot:
    """The values in a context frame (`SerializationError` if they cannot be unpickled)."""
    if not len(frame):
        return {}
    try:
        values = pickle.loads(frame)
    except Exception as e:
        raise SerializationError(f"the context variables sent with {what} could not be unpickled: {type(e).__name__}: {e}") from e
    if not isinstance(values, dict) or not all(isinstance(k, tuple) and len(k) == 2 for k in values):
        raise SerializationError(f"the context variables sent with {what} are not a snapshot")
    return values


def apply(values: Snapshot) -> Snapshot:
    """Make the current context's variables exactly `values` (every other one unset): a
    call, or a generator's step, sees its caller's variables. Returns the baseline `changes`
    compares against."""
    merge(values.items())
    for key, var in tuple(_storage.items()):
        if key not in values and var.get() is not _UNSET:
            var.set(_UNSET)
    return dict(values)


def changes(context: contextvars.Context, baseline: Snapshot) -> Snapshot:
    """The variables whose value in `context` is not (by identity) the one in `baseline`,
    including those set or unset since; unset ones map to `_UNSET`."""
    found: Snapshot = {}
    for key, var in tuple(_storage.items()):
        value = context.get(var, _UNSET)
        if value is not baseline.get(key, _UNSET):
            found[key] = value
    return found


def send_back(context: contextvars.Context, baseline: Snapshot) -> bytes:
    """`changes` pickled for a reply, and folded into `baseline` (the next step's changes
    are counted from here). Raises `TypeError` naming an unpicklable value."""
    found = changes(context, baseline)
    if not found:
        return b""
    data = _pickle(found)
    baseline.update(found)
    return data


def merge(values: Iterable[tuple[Key, Any]]) -> None:
    """Set values a reply brought back in the current context (`_UNSET` unsets)."""
    for key, value in values:
        var = _slot(key)
        if var.get() is not value:
            var.set(value)
