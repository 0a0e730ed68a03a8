"""Values <-> payload frames, by cloudpickle with pickle protocol 5.

Buffers of at least `OUT_OF_BAND` bytes (bytearrays, numpy arrays, anything exposing
`PickleBuffer`) travel as their own frames, so the transport can send them without copying.
Unpickling happens only when the owner of a call asks for the value.
"""

from __future__ import annotations

import copyreg
import io
import pickle
import traceback
import types
from collections import ChainMap
from collections.abc import Callable, Sequence
from typing import Any

import cloudpickle
from tblib import pickling_support

from .._errors import RemoteError
from ._messages import Frame

OUT_OF_BAND = 64 * 1024


def _bytes(buffer: Any) -> bytes:
    # Out of band, `buffer` is the received frame: a view of the transport's buffer, copied
    # here once into the `bytes` the value must be (already bytes when given bytes frames).
    return buffer if type(buffer) is bytes else bytes(buffer)


class _OutOfBand:
    """Stands in for a large `bytes`/`bytearray` while pickling: plain pickle writes those in
    band, copying them into the pickle, and never offers them to `buffer_callback`."""

    __slots__ = ("data",)

    def __init__(self, data: bytes | bytearray) -> None:
        self.data = data

    def __reduce_ex__(self, protocol: Any) -> Any:
        return (_bytes if type(self.data) is bytes else bytearray), (pickle.PickleBuffer(self.data),)


def _lift(value: Any, depth: int = 3) -> Any:
    """`value` with large bytes-likes wrapped for out-of-band pickling, looking into plain
    tuples, lists and dicts a few levels down (enough for `(args, kwargs)` and results)."""
    kind = type(value)
    if kind is bytes or kind is bytearray:
        return _OutOfBand(value) if len(value) >= OUT_OF_BAND else value
    if depth == 0:
        return value
    if kind is tuple or kind is list:
        items = [_lift(v, depth - 1) for v in value]
        return value if all(a is b for a, b in zip(items, value, strict=False)) else kind(items)
    if kind is dict:
        lifted = {k: _lift(v, depth - 1) for k, v in value.items()}
        return value if all(lifted[k] is v for k, v in value.items()) else lifted
    return value


_ATOMS = frozenset({int, float, str, bool, type(None), complex})  # and small bytes


_cloudpickle_code = cloudpickle.Pickler.dispatch_table[types.CodeType]


def _code_in(rebuild: Callable[..., types.CodeType], args: tuple[Any, ...], filename: str) -> types.CodeType:
    return rebuild(*args).replace(co_filename=filename)


def _reduce_code(code: types.CodeType) -> tuple[Any, ...]:
    """A code object pickled by value (a function defined in `__main__`, a notebook cell or
    `python -c`) keeping its file name, which cloudpickle replaces by "<dynamic-code>": the
    frames it runs in on a worker then name the caller's file, whose source the caller's
    tracebacks show."""
    rebuild, args = _cloudpickle_code(code)
    return _code_in, (rebuild, args, code.co_filename)


class _Pickler(cloudpickle.Pickler):  # type: ignore[misc]
    dispatch_table = ChainMap({types.CodeType: _reduce_code}, cloudpickle.Pickler.dispatch_table)


def _plain(value: Any, depth: int = 3) -> bool:
    """Whether `value` is small builtin data (atoms in tuples, lists and str-keyed dicts a
    few levels down): plain pickle writes it exactly as cloudpickle does, ten times faster.
    Loops rather than `all(<generator>)`: this runs on every call's arguments and result,
    where a generator per container cost more than the pickling itself."""
    kind = type(value)
    if kind in _ATOMS:
        return True
    if kind is bytes:
        return len(value) < OUT_OF_BAND
    if depth == 0:
        return False
    if kind is tuple or kind is list:
        for v in value:
            if type(v) not in _ATOMS and not _plain(v, depth - 1):
                return False
        return True
    if kind is dict:
        for k, v in value.items():
            if type(k) is not str or (type(v) not in _ATOMS and not _plain(v, depth - 1)):
                return False
        return True
    return False


def dumps(obj: object) -> tuple[Frame, ...]:
    """Pickle `obj`; the first frame is the pickle, the rest its large buffers (numpy arrays
    and other `PickleBuffer` exporters anywhere; `bytes`/`bytearray` near the top)."""
    if _plain(obj):
        return (pickle.dumps(obj, protocol=5),)
    buffers: list[Frame] = []

    def out_of_band(buf: pickle.PickleBuffer) -> bool:
        raw = buf.raw()
        if raw.nbytes < OUT_OF_BAND:
            return True  # small: cheaper in-band
        buffers.append(raw)
        return False

    with io.BytesIO() as file:
        _Pickler(file, protocol=5, buffer_callback=out_of_band).dump(_lift(obj))
        return (file.getvalue(), *buffers)


def loads(frames: Sequence[Frame]) -> object:
    """Unpickle frames made by `dumps`."""
    return pickle.loads(frames[0], buffers=frames[1:])


def describe(exc: BaseException) -> tuple[str, str, str]:
    """(type name, message, formatted traceback) of `exc`, for reporting as text."""
    cls = type(exc)
    name = cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    return name, str(exc), "".join(traceback.format_exception(exc))


def _rebuilt_from_args(exc: BaseException) -> Any:
    """Reduce a builtin exception by calling its class with its `args` again: the state of
    `SyntaxError` (`msg`, `lineno`, ...) and `UnicodeError` (`start`, `reason`, ...) lives in
    C fields its `__init__` sets from them, which tblib (3.2) skips by rebuilding such classes
    with no arguments, so that they came back with the message `None` or empty. The chain,
    traceback and notes come along as tblib carries them; added attributes as state."""
    return (
        pickling_support.unpickle_exception,
        (
            type(exc),
            exc.args,
            exc.__cause__,
            exc.__traceback__,
            exc.__context__,
            exc.__suppress_context__,
            getattr(exc, "__notes__", None),
        ),
        exc.__dict__ or None,
    )


def _keep_builtin_state(exc: BaseException) -> None:
    """After tblib's `install(exc)`, which registers its reducer for every class in the chain:
    the builtin ones that reduce as `BaseException` does (all but the `OSError` and
    `ImportError` families, whose own `__reduce__` keeps their fields) are reduced by
    `_rebuilt_from_args`."""
    todo, seen = [exc], set()
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        cls = type(e)
        if cls.__module__ == "builtins" and cls.__reduce__ is BaseException.__reduce__:
            copyreg.pickle(cls, _rebuilt_from_args)
        todo += [x for x in (e.__cause__, e.__context__) if x is not None]
        if isinstance(e, BaseExceptionGroup):
            todo += e.exceptions


def dumps_exception(exc: BaseException) -> tuple[Frame, ...]:
    """Pickle `exc` with its traceback and `__cause__`/`__context__` chain; an exception
    that cannot be pickled is carried as a `RemoteError` holding its text instead."""
    pickling_support.install(exc)
    _keep_builtin_state(exc)
    try:
        return dumps(exc)
    except Exception:
        return dumps(RemoteError(*describe(exc)))


def loads_exception(type_name: str, message: str, tb: str, frames: Sequence[Frame]) -> BaseException:
    """Rebuild an exception from `dumps_exception` frames, or a `RemoteError` from its text
    when it cannot be rebuilt here (its class is not importable, its `__init__` rejects its
    own args, ...)."""
    try:
        exc = loads(frames)
    except Exception:
        return RemoteError(type_name, message, tb)
    if not isinstance(exc, BaseException):
        return RemoteError(type_name, message, tb)
    return exc
