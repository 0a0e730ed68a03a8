"""Read-ahead streams: let a remote generator run up to N items ahead of its consumer.

Theory of operation. A generator's steps are pull-based by default: each `anext` is one
round trip, and the generator never runs ahead of its caller. `wool.readahead(gen, N)` opts a
stream that is only iterated out of that: after the first item the caller grants the worker
a credit of N items (a `credit` message); the worker runs the generator and sends each item
unasked while it has credit, and the caller returns credit as it consumes items (in batches of
half the window), so at most N items are ever in flight or buffered. Values cannot be sent in
(`asend`/`athrow` would have to reach items the worker already produced). Closing the stream
early stops the item in progress on the worker and closes the generator there; `aclose()`
returns once its `finally` ran, as for a local generator, waiting at most one liveness period.
"""

from __future__ import annotations

import asyncio
import dis
import inspect
import sys
import types
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextvars import ContextVar
from typing import Any, Generic, TypeVar

from .. import protocol as p
from ._connection import Connection
from ._context import waiting_on_peer

T = TypeVar("T")

# Set while a `ReadAhead` starts its generator: the proxy reads it to open its stream ahead.
window_var: ContextVar[int | None] = ContextVar("wool_readahead_window", default=None)


# The code of the routine proxies' async generator function (`_stream` registers it; every
# generator routine shares it), by which a generator is recognised as a routine's. Looked up
# by equality: a proxy pickled by value (a routine defined in `__main__`, used on a worker)
# carries an equal copy of it.
_proxy_code: set[types.CodeType] = set()


def register_proxy(fn: Callable[..., Any]) -> None:
    """Record `fn` (an async generator function) as the proxy of generator routines."""
    _proxy_code.add(fn.__code__)


def is_proxy(gen: object) -> bool:
    """Whether `gen` is a generator returned by a generator routine."""
    return inspect.isasyncgen(gen) and gen.ag_code in _proxy_code


def requested_window() -> int | None:
    """The read-ahead window asked for the generator starting now (a function, not the
    variable, because a proxy pickled by value must not capture a ContextVar)."""
    return window_var.get()


_REFUSAL = "a read-ahead stream only iterates: its worker has already produced the next items, so {} cannot reach the generator (iterate it without wool.readahead to {} it)"


class ReadAhead(AsyncIterator[T], Generic[T]):
    """An async iterator over a remote generator that runs up to `window` items ahead:
    what `wool.readahead` returns.

    The worker sends each item as soon as it is yielded, as long as fewer than `window`
    items wait unread on the caller; reading returns credit. Values cannot be sent into the
    generator: `asend()` and `athrow()` raise `TypeError` (iterate the generator itself for
    that). Leaving early with `aclose()` closes it on the worker.
    """

    def __init__(self, gen: AsyncGenerator[T, Any], window: int) -> None:
        if not is_proxy(gen):
            raise TypeError(f"readahead needs a generator returned by a @wool.routine async generator, not {gen!r}")
        if not _unstarted(gen):
            raise ValueError("readahead needs a generator that has not started yet")
        if not isinstance(window, int) or isinstance(window, bool) or window < 1:
            raise ValueError(f"window must be a positive int, got {window!r}")
        self._gen = gen
        self._window = window
        self._started = False

    def __aiter__(self) -> ReadAhead[T]:
        return self

    async def __anext__(self) -> T:
        if self._started:
            return await self._gen.__anext__()
        self._started = True
        token = window_var.set(self._window)
        try:
            return await self._gen.__anext__()
        finally:
            window_var.reset(token)

    async def asend(self, value: Any) -> T:
        raise TypeError(_REFUSAL.format("asend()", "send values into"))

    async def athrow(self, *args: Any) -> T:
        raise TypeError(_REFUSAL.format("athrow()", "throw into"))

    async def aclose(self) -> None:
        """Stop the stream: the item in progress on the worker is cancelled and the generator
        closed there; returns once its `finally` ran (or raises what the `finally` raised)."""
        await self._gen.aclose()


def _unstarted(gen: Any) -> bool:
    """Whether `gen` has not begun: its proxy has sent nothing yet."""
    if sys.version_info >= (3, 12):
        return inspect.getasyncgenstate(gen) == inspect.AGEN_CREATED
    # Python 3.11 has no `getasyncgenstate`: a created generator's frame stands at the
    # instruction that created it, which a started one has left for good.
    frame = gen.ag_frame
    if gen.ag_running or frame is None:
        return False
    created = next(i.offset for i in dis.get_instructions(gen.ag_code) if i.opname == "RETURN_GENERATOR")
    return bool(frame.f_lasti == created)


def readahead(gen: AsyncGenerator[T, Any], window: int = 64) -> ReadAhead[T]:
    """Iterate the remote generator `gen` letting it run up to `window` items ahead: one
    message per item instead of a round trip per item.

    Args:
        gen: What calling a `@wool.routine` async generator returned, not iterated yet.
        window: How many items the worker may send ahead of the ones read (at least 1).

    Returns:
        An async iterator of the generator's items.

    Raises:
        TypeError: `gen` is not a remote generator of a `@wool.routine`.
        ValueError: `gen` has started already, or `window` is not a positive int.

    Example:
        ```python
        async for row in wool.readahead(read_rows(path), window=256):
            total += row.amount
        ```
    """
    return ReadAhead(gen, window)


class Inbox:
    """The caller's end of a read-ahead stream: buffers items, returns credit."""

    def __init__(self, conn: Connection, call_id: int, window: int) -> None:
        self._conn = conn
        self._call_id = call_id
        self._items: deque[p.Reply | BaseException] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._batch = max(1, window // 2)
        self._consumed = 0
        self._closing = False
        conn.subscribe(call_id, self._deliver)
        conn.notify(p.Credit(call_id, window))

    def _deliver(self, item: p.Reply | BaseException) -> None:
        self._items.append(item)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def next(self) -> p.Reply:
        """The next reply (`yield`, or the last one), raising the error that ended it."""
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            with waiting_on_peer():
                await self._waiter
        item = self._items.popleft()
        if isinstance(item, BaseException):
            raise item
        if item.kind is p.Kind.YIELD and not self._closing:
            self._consumed += 1
            if self._consumed >= self._batch:
                self._conn.notify(p.Credit(self._call_id, self._consumed))
                self._consumed = 0
        return item

    def close(self, context: p.Frame) -> bool:
        """Ask the worker to close the generator (`last` then waits for it to end). Returns
        False, sending nothing, if the stream had already ended: its last reply is here."""
        self._closing = True
        if any(not isinstance(item, BaseException) and item.kind is not p.Kind.YIELD for item in self._items):
            return False
        self._conn.notify(p.Close(self._call_id, context))
        return True

    async def last(self) -> p.Reply:
        """After `close`: the reply that ended the stream (`stop`, or the `raise` of its
        `finally`), skipping items that were already on their way."""
        while True:
            reply = await self.next()
            if reply.kind is not p.Kind.YIELD:
                return reply
