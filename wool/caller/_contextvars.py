"""`wool.ContextVar`: a context variable whose value travels with routine calls, both ways.

Theory of operation. Each variable is identified by its (namespace, name), not by the object:
the same key names the same variable in every process, even in a worker that has not yet
imported the module defining it. Storage is one stdlib `contextvars.ContextVar` per key some
`wool.ContextVar` of this process names, so asyncio's copy-on-task semantics hold unchanged:
tasks fork their own copy, `gather`/`TaskGroup` children never see each other's values. Values
arriving for keys no variable of this process names (yet) are held in the context too, in one
dict under one stdlib variable (`_strangers`), never as process-wide state: a peer sending
fresh keys costs the call it sends them with, not every later call (a variable per key ever
seen, walked on every call, once made each call 100 times slower). The `wool.ContextVar` a
module creates later finds its value there.

A call carries at most `MAX_CONTEXT_KEYS` values in at most `MAX_CONTEXT_BYTES` pickled bytes:
the caller refuses to send more (`ValueError` naming the limit), a receiver to unpickle more.

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

MAX_CONTEXT_KEYS = 1024  # variables one call, step or reply carries (a few is usual)
MAX_CONTEXT_BYTES = 1 << 20  # their pickled size: larger values belong in arguments

_NO_STRANGERS: dict[Key, Any] = {}  # never mutated: a new dict replaces it
# Values of keys no variable of this process names, per context (dicts replaced, not mutated).
_strangers: contextvars.ContextVar[dict[Key, Any]] = contextvars.ContextVar("wool_strangers", default=_NO_STRANGERS)


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
    in the same context, once (as `contextvars.Token`).

    A token stays in the process that made it: pickling one (passing it to a routine, say)
    raises `TypeError`, since only the context it came from can be reset with it.

    Attributes:
        MISSING: What `old_value` is when the variable had no value before the `set`.
    """

    MISSING: Any = contextvars.Token.MISSING

    __slots__ = ("_var", "_old", "_token")

    def __init__(self, var: ContextVar[T], old: Any, token: contextvars.Token[Any]) -> None:
        self._var, self._old, self._token = var, old, token

    @property
    def var(self) -> ContextVar[T]:
        """The variable whose `set` returned this token."""
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
    workers and back.

    Identified by `name` within `namespace`: two `wool.ContextVar`s with the same name and
    namespace are the same variable, in this process and on every worker, so a worker matches
    the values a call brings to the variable even if it imports the module defining it later.
    Only variables that were set travel; their values must be picklable (cloudpickle). A call
    carries at most 1,024 variables, 1 MiB pickled (more fails at the call site with
    `ValueError`); what a routine sets comes back to its caller when the call returns.

    Args:
        name: The variable's name: a non-empty string.
        namespace: Keeps variables of unrelated libraries apart (a non-empty string, usually
            the package's name); `None` for none.
        default: What `get()` returns when the variable has no value in the context.

    Raises:
        TypeError: `name` or `namespace` is not a non-empty string.

    Example:
        ```python
        REQUEST_ID = wool.ContextVar("request_id", namespace="billing", default="-")

        @wool.routine
        async def handle() -> str:
            return REQUEST_ID.get()        # on the worker: the caller's value

        token = REQUEST_ID.set("r-42")
        assert await handle() == "r-42"
        REQUEST_ID.reset(token)
        ```
    """

    __slots__ = ("_key", "_default", "_var", "__weakref__")

    def __init__(self, name: str, *, namespace: str | None = None, default: Any = _MISSING) -> None:
        self._key: Key = ("" if namespace is None else _check("namespace", namespace), _check("name", name))
        self._default = default
        self._var = _slot(self._key)

    @property
    def name(self) -> str:
        """The name given at construction."""
        return self._key[1]

    @property
    def namespace(self) -> str | None:
        """The namespace given at construction, or `None`."""
        return self._key[0] or None

    @overload
    def get(self) -> T: ...
    @overload
    def get(self, default: D, /) -> T | D: ...
    def get(self, *args: Any) -> Any:
        """The value in the current context. `get(default)` returns `default` when the
        variable has no value there; `get()` returns the default given at construction.

        Returns:
            The value, or the first default there is.

        Raises:
            LookupError: The variable has no value and there is no default.
        """
        value = self._var.get()
        if value is not _UNSET:
            return value
        value = _strangers.get().get(self._key, _UNSET)  # arrived before this variable existed
        if value is not _UNSET:
            return value
        if args:
            return args[0]
        if self._default is not _MISSING:
            return self._default
        raise LookupError(self)

    def set(self, value: T) -> Token[T]:
        """Set the value in the current context (and so for the routine calls made from it).

        Args:
            value: The new value; it must be picklable to travel with a call.

        Returns:
            A token for `reset`, which restores the value this `set` replaced.
        """
        old = self._var.get()
        if old is _UNSET:
            old = _strangers.get().get(self._key, _UNSET)
        return Token(self, old, self._var.set(value))

    def reset(self, token: Token[T]) -> None:
        """Restore the value the variable had before the `set` that returned `token`.

        Args:
            token: What `set` returned, in this same context.

        Raises:
            TypeError: `token` is not a `wool.Token`.
            ValueError: `token` was made by another variable, or in another context.
            RuntimeError: `token` was already used.
        """
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
    """`values` pickled for a call, step or reply. Raises `TypeError` naming a value that
    cannot be pickled, `ValueError` when they are more than a call carries."""
    if len(values) > MAX_CONTEXT_KEYS:
        raise ValueError(
            f"{len(values)} wool.ContextVars are set, and a routine call carries at most {MAX_CONTEXT_KEYS}: "
            "use fewer variables (one holding a dict, say)"
        )
    try:
        data: bytes = cloudpickle.dumps(values, protocol=5)
    except Exception:
        _name_unpicklable(values)
        raise TypeError("the wool.ContextVar values could not be pickled together") from None  # pragma: no cover
    if len(data) > MAX_CONTEXT_BYTES:
        raise ValueError(
            f"the wool.ContextVar values set pickle to {len(data)} bytes, and a routine call carries at most "
            f"{MAX_CONTEXT_BYTES}: pass large values as arguments instead"
        )
    return data


def _name_unpicklable(values: Snapshot) -> None:
    for key, value in values.items():
        try:
            cloudpickle.dumps(value, protocol=5)
        except Exception as e:
            raise TypeError(
                f"wool.ContextVar {_label(key)!r} holds a value that cannot be pickled, so it cannot travel "
                f"with a routine call: {type(e).__name__}: {e}"
            ) from None


def _current() -> Snapshot:
    """The values set in the current context, including those held for unknown keys."""
    strangers = _strangers.get()
    values = dict(strangers) if strangers else {}
    for key, var in tuple(_storage.items()):
        if (value := var.get()) is not _UNSET:
            values[key] = value
    return values


def capture(extra: Snapshot | None = None) -> bytes:
    """The variables set in the current context, and `extra` (the trace context, under a
    key no variable has), pickled (`b""` when there is nothing): what a call carries.
    Raises `TypeError` naming a variable whose value cannot be pickled, `ValueError` when
    there are more than a call carries (`MAX_CONTEXT_KEYS`, `MAX_CONTEXT_BYTES`)."""
    if not _storage and extra is None and not _strangers.get():
        return b""
    values = _current()
    if extra is not None:
        values.update(extra)
    return _pickle(values) if values else b""


def unpickle(what: str, frame: Any) -> Snapshot:
    """The values in a context frame (`SerializationError` if they cannot be unpickled, or
    are more than a call carries: checked before unpickling for the size, after for the
    number)."""
    if not len(frame):
        return {}
    if len(frame) > MAX_CONTEXT_BYTES:
        raise SerializationError(
            f"the context variables sent with {what} were refused: {len(frame)} bytes, more than the "
            f"{MAX_CONTEXT_BYTES} a call may carry"
        )
    try:
        values = pickle.loads(frame)
    except Exception as e:
        raise SerializationError(f"the context variables sent with {what} could not be unpickled: {type(e).__name__}: {e}") from e
    if not isinstance(values, dict) or not all(
        type(k) is tuple and len(k) == 2 and type(k[0]) is str and type(k[1]) is str for k in values
    ):
        raise SerializationError(f"the context variables sent with {what} are not a snapshot")
    if len(values) > MAX_CONTEXT_KEYS:
        raise SerializationError(
            f"the context variables sent with {what} were refused: {len(values)} of them, more than the "
            f"{MAX_CONTEXT_KEYS} a call may carry"
        )
    return values


def apply(values: Snapshot) -> Snapshot:
    """Make the current context's variables exactly `values` (every other one unset): a
    call, or a generator's step, sees its caller's variables. Values for keys no variable of
    this process names are held in the context (`_strangers`), not given a variable each.
    Returns the baseline `changes` compares against."""
    unknown: dict[Key, Any] | None = None
    for key, value in values.items():
        var = _storage.get(key)
        if var is None:
            if value is not _UNSET:
                if unknown is None:
                    unknown = {}
                unknown[key] = value
        elif var.get() is not value:
            var.set(value)
    if unknown is not None or _strangers.get():
        _strangers.set(unknown or _NO_STRANGERS)
    for key, var in tuple(_storage.items()):
        if key not in values and var.get() is not _UNSET:
            var.set(_UNSET)
    return dict(values)


def changes(context: contextvars.Context, baseline: Snapshot) -> Snapshot:
    """The variables whose value in `context` is not (by identity) the one in `baseline`,
    including those set or unset since; unset ones map to `_UNSET`."""
    found: Snapshot = {}
    strangers = context.get(_strangers, _NO_STRANGERS)
    for key, var in tuple(_storage.items()):
        value = context.get(var, _UNSET)
        if value is _UNSET:
            value = strangers.get(key, _UNSET)
        if value is not baseline.get(key, _UNSET):
            found[key] = value
    # Unknown keys change only through `merge` (a nested call's reply): both sides bounded.
    for key, value in strangers.items():
        if key not in _storage and value is not baseline.get(key, _UNSET):
            found[key] = value
    if baseline:  # unknown keys a nested reply unset are gone from `strangers`
        for key in baseline.keys() - strangers.keys() - _storage.keys():
            if baseline[key] is not _UNSET:
                found[key] = _UNSET
    return found


def send_back(context: contextvars.Context, baseline: Snapshot) -> bytes:
    """`changes` pickled for a reply, and folded into `baseline` (the next step's changes
    are counted from here). Raises `TypeError` naming an unpicklable value, `ValueError`
    when there are more than a reply carries."""
    found = changes(context, baseline)
    if not found:
        return b""
    data = _pickle(found)
    baseline.update(found)
    return data


def merge(values: Iterable[tuple[Key, Any]]) -> None:
    """Set values a reply brought back in the current context (`_UNSET` unsets); values for
    keys no variable of this process names are held with the context's other such values."""
    strangers = _strangers.get()
    held = strangers
    for key, value in values:
        var = _storage.get(key)
        if var is not None:
            if var.get() is not value:
                var.set(value)
            if key in held:  # known now: its variable holds it (or holds it unset)
                held = dict(held) if held is strangers else held
                del held[key]
        elif value is _UNSET:
            if key in held:
                held = dict(held) if held is strangers else held
                del held[key]
        else:
            held = dict(held) if held is strangers else held
            held[key] = value
    if held is not strangers:
        _strangers.set(held)
