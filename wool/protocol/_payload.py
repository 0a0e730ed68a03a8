"""Values <-> payload frames, by cloudpickle with pickle protocol 5.

Buffers of at least `OUT_OF_BAND` bytes (bytearrays, numpy arrays, anything exposing
`PickleBuffer`) travel as their own frames, so the transport can send them without copying.
Unpickling happens only when the owner of a call asks for the value.
"""

from __future__ import annotations

import pickle
import traceback
from collections.abc import Sequence

import cloudpickle
from tblib import pickling_support

from .._errors import RemoteError
from ._messages import Frame

OUT_OF_BAND = 64 * 1024


def dumps(obj: object) -> tuple[Frame, ...]:
    """Pickle `obj`; the first frame is the pickle, the rest its large buffers."""
    buffers: list[Frame] = []

    def out_of_band(buf: pickle.PickleBuffer) -> bool:
        raw = buf.raw()
        if raw.nbytes < OUT_OF_BAND:
            return True  # small: cheaper in-band
        buffers.append(raw)
        return False

    return (cloudpickle.dumps(obj, protocol=5, buffer_callback=out_of_band), *buffers)


def loads(frames: Sequence[Frame]) -> object:
    """Unpickle frames made by `dumps`."""
    return pickle.loads(frames[0], buffers=frames[1:])


def describe(exc: BaseException) -> tuple[str, str, str]:
    """(type name, message, formatted traceback) of `exc`, for reporting as text."""
    cls = type(exc)
    name = cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    return name, str(exc), "".join(traceback.format_exception(exc))


def dumps_exception(exc: BaseException) -> tuple[Frame, ...]:
    """Pickle `exc` with its traceback and `__cause__`/`__context__` chain; an exception
    that cannot be pickled is carried as a `RemoteError` holding its text instead."""
    pickling_support.install(exc)
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
