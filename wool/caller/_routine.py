"""`@wool.routine`: an `async def` or async generator that runs on a worker.

Theory of operation. The decorator returns a genuine `async def` (or async generator
function) with the decorated function's name, docstring and signature, so `inspect`, `help()`
and frameworks that check `iscoroutinefunction` see what they expect; it also makes methods,
static methods and class methods work by the ordinary descriptor rules. Awaiting the
coroutine (or iterating the generator) is what dispatches: calling alone sends nothing.

What travels is the wrapper itself, pickled once per process and cached by digest on both
sides. cloudpickle pickles a wrapper defined in an importable module by reference and one
defined in `__main__` or a closure by value; either way the worker unwraps it (`__wrapped__`)
and runs the original function there, where nested routine calls dispatch to its peers.

A coroutine routine's call is one request and one reply: `_dispatch` sends it and reads its
outcome (shared with generator routines, whose proxy and steps are in `_stream`).

Each call (and each generator step) carries the caller's `wool.ContextVar`s and brings back
the ones the routine changed, which are set in the caller's context before the result or
exception is seen (see `_contextvars`). `wool.options` and the routine's own tags decide
which workers may run it; a deadline bounds the wait and travels with the call.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
from collections.abc import AsyncGenerator, Callable, Coroutine, Iterable
from typing import Any, ParamSpec, TypeVar, overload

from .. import protocol as p
from . import _retry, _unawaited
from ._context import rehandle, waiting_on_peer
from ._dispatch import _dispatch, _dump, _outcome, _Placement
from ._options import check_tags
from ._stream import generator_routine

P = ParamSpec("P")
R = TypeVar("R")
Y = TypeVar("Y")
S = TypeVar("S")

F = TypeVar("F", bound=Callable[..., Any])


@overload
def routine(fn: Callable[P, AsyncGenerator[Y, S]], /) -> Callable[P, AsyncGenerator[Y, S]]: ...
@overload
def routine(fn: Callable[P, Coroutine[Any, Any, R]], /) -> Callable[P, Coroutine[Any, Any, R]]: ...
@overload
def routine(*, tags: str | Iterable[str] = (), idempotent: bool = False) -> Callable[[F], F]: ...
def routine(fn: Any = None, /, *, tags: str | Iterable[str] = (), idempotent: bool = False) -> Any:
    """Make `fn` (an `async def` or async generator function) run on a worker of the current
    `WorkerPool`. Raises `TypeError` at decoration time for anything else.

    `@wool.routine(tags={"gpu"})`: run only on workers that have every one of `tags` (a
    single string is one tag); `wool.NoWorkersAvailable` names them when none is live.

    `@wool.routine(idempotent=True)`: running a call twice is harmless, so a call whose
    worker is lost is sent again, to another worker when there is one (at most 3 attempts
    in all, within the call's one deadline), and `wool.options(hedge_after=...)` may send a
    second copy. A generator is sent again only if its worker is lost before its first item
    arrived, and is never hedged."""
    required = check_tags(tags, "routine tags")
    if not isinstance(idempotent, bool):
        raise TypeError(f"idempotent must be True or False, not {idempotent!r}")
    spec = RoutineSpec(required, idempotent)
    if fn is None:
        return lambda f: _decorate(f, spec)
    return _decorate(fn, spec)


@dataclasses.dataclass(frozen=True, slots=True)
class RoutineSpec:
    """How a routine was declared; its wrapper carries it as `__wool_routine__`."""

    tags: frozenset[str] = frozenset()
    idempotent: bool = False
    generator: bool = False


def _decorate(fn: Any, spec: RoutineSpec) -> Any:
    if isinstance(fn, staticmethod):
        return staticmethod(_decorate(fn.__func__, spec))
    if isinstance(fn, classmethod):
        return classmethod(_decorate(fn.__func__, spec))
    if inspect.isasyncgenfunction(fn):
        wrapper = generator_routine(fn, spec.tags, spec.idempotent)
        wrapper.__wool_routine__ = dataclasses.replace(spec, generator=True)  # type: ignore[attr-defined]
        return wrapper
    if inspect.iscoroutinefunction(fn):
        wrapper = _coroutine_routine(fn, spec)
        wrapper.__wool_routine__ = spec  # type: ignore[attr-defined]
        _unawaited.register(wrapper)
        return wrapper
    raise TypeError(f"@wool.routine needs an `async def` or async generator function, not {fn!r}")


def _coroutine_routine(fn: Callable[..., Any], spec: RoutineSpec) -> Callable[..., Any]:
    tags = spec.tags
    if spec.idempotent:

        @functools.wraps(fn)
        async def idempotent(*args: Any, **kwargs: Any) -> Any:
            return await _call(idempotent, tags, args, kwargs, idempotent=True)

        return idempotent

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        return await _call(wrapper, tags, args, kwargs)

    return wrapper


async def _call(
    wrapper: Callable[..., Any], tags: frozenset[str], args: tuple[Any, ...], kwargs: dict[str, Any], idempotent: bool = False
) -> Any:
    """One call's placement, pickling and CLIENT span. An idempotent routine's attempts and
    hedged copies (see `_retry`) share all three: one deadline, one pickling, one span, the
    parent of each attempt's SERVER span. (No closure here: its cells would be three more
    objects per call in flight for the garbage collector to traverse, thousands at a time.)"""
    name = wrapper.__qualname__
    place = _Placement.now(name, tags)
    try:
        if not idempotent and place.options.hedge_after is not None:
            raise TypeError(
                f"{name} is not idempotent: wool.options(hedge_after=...) would run it twice; "
                "declare it @wool.routine(idempotent=True) if running it twice is harmless"
            )
        args, kwargs = rehandle(args, kwargs)  # values that came as `wool.Shared` go on as handles
        payload = _dump("the arguments of {}", name, (args, kwargs))
        if idempotent:
            attempt = functools.partial(_send, wrapper, place, payload)
            result = await _retry.idempotent(name, attempt, place.options.hedge_after)
        else:
            result = await _send(wrapper, place, payload)
    except BaseException as e:
        if place.watch is not None:
            place.end_watch(e)
        raise
    if place.watch is not None:
        place.end_watch(None)
    return result


async def _send(wrapper: Callable[..., Any], place: _Placement, payload: tuple[p.Frame, ...]) -> Any:
    name = wrapper.__qualname__
    with waiting_on_peer() as nested:
        if place.deadline is None:
            _, _, reply = await _dispatch(wrapper, place, payload, False, nested)
        else:
            async with asyncio.timeout_at(place.deadline):
                _, _, reply = await _dispatch(wrapper, place, payload, False, nested)
    return _outcome(name, reply)
