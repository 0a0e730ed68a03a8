"""`wool.map(routine, iterable)`: `routine(item)` for each item, a bounded number at a time,
as an async iterator of results.

Theory of operation. The input is pulled lazily, one item per free slot, so the memory a map
holds is bounded by `concurrency` (calls in flight, and results that finished ahead of an
earlier one in `ordered` mode) whatever the length of the input: a million items or an
endless generator. Each call runs in its own task with a copy of the caller's context
(options, tags, `wool.ContextVar`s). The deadline in force when the map starts (from
`wool.options(timeout=...)` or an enclosing routine's) bounds the whole map.

Anything that ends the map early ends every call in it: the first exception a call raises
(or the input raises), the consumer breaking out (`aclose()`, the `async with` block ending,
or the iterator being dropped), the consumer being cancelled, or the deadline passing. The
calls still in flight are cancelled, and, except when the iterator is merely dropped, waited
for, so that their remote `finally` blocks have run when the exception (or `aclose()`)
reaches the consumer.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, Generic, TypeVar

from ._options import deadline, deadline_var, options_var
from ._retry import cancel_all

DEFAULT_CONCURRENCY = 64

T = TypeVar("T")
R = TypeVar("R")


class Map(Generic[R]):
    """The async iterator `wool.map` returns; also an async context manager that closes it
    (cancelling the calls still in flight) when the block ends.

    Nothing runs before the first item is asked for: the calls start then, with the options,
    deadline and context variables in force at that moment.
    """

    def __init__(
        self,
        routine: Callable[[Any], Awaitable[R]],
        iterable: Iterable[Any] | AsyncIterable[Any],
        concurrency: int,
        ordered: bool,
    ) -> None:
        self._routine = routine
        self._sync: Iterator[Any] | None = None
        self._async: AsyncIterator[Any] | None = None
        if isinstance(iterable, AsyncIterable):
            self._async = aiter(iterable)
        elif isinstance(iterable, Iterable):
            self._sync = iter(iterable)
        else:
            raise TypeError(f"wool.map needs an iterable or an async iterable of items, not {type(iterable).__name__}")
        self._concurrency = concurrency
        self._ordered = ordered
        self._running: deque[asyncio.Task[R]] = deque()  # in input order
        self._finished: deque[asyncio.Task[R]] = deque()  # unordered: in completion order
        self._exhausted = False
        self._closed = False
        self._context: contextvars.Context | None = None
        self._deadline: float | None = None

    def __aiter__(self) -> Map[R]:
        return self

    async def __aenter__(self) -> Map[R]:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    async def __anext__(self) -> R:
        if self._closed:
            raise StopAsyncIteration
        if self._context is None:
            self._start()
        try:
            async with asyncio.timeout_at(self._deadline):
                return await self._next()
        except StopAsyncIteration:
            self._closed = True
            raise
        except BaseException:
            await self.aclose()
            raise

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        self._deadline = deadline(loop, options_var.get().timeout)
        self._context = contextvars.copy_context()
        if self._deadline is not None:
            self._context.run(deadline_var.set, self._deadline)

    async def _next(self) -> R:
        while True:
            await self._fill()
            if self._ordered:
                if self._running and self._running[0].done():
                    return await self._take(self._running.popleft())
            elif self._finished:
                return await self._take(self._finished.popleft())
            if not self._running:
                raise StopAsyncIteration
            done, _ = await asyncio.wait(self._running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task.cancelled() or task.exception() is not None:
                    self._running.remove(task)
                    return task.result()  # the first exception ends the map (see __anext__)
            if not self._ordered:
                for task in done:
                    self._running.remove(task)
                    self._finished.append(task)

    async def _take(self, task: asyncio.Task[R]) -> R:
        result = task.result()
        await self._fill()  # the freed slot starts the next item before the consumer runs
        return result

    async def _fill(self) -> None:
        assert self._context is not None
        while not self._exhausted and len(self._running) + len(self._finished) < self._concurrency:
            try:
                if self._sync is not None:
                    item = next(self._sync)
                else:
                    assert self._async is not None
                    item = await anext(self._async)
            except (StopIteration, StopAsyncIteration):
                self._exhausted = True
                return
            call = self._routine(item)
            # A coroutine as it is (one cancelled before it started is closed, not leaked).
            coro = call if inspect.iscoroutine(call) else _awaited(call)
            task = asyncio.get_running_loop().create_task(coro, context=self._context.copy())
            self._running.append(task)

    async def aclose(self) -> None:
        """Cancel the calls still in flight and wait until they have unwound; close the input."""
        self._closed = True
        tasks = [*self._running, *self._finished]
        self._running.clear()
        self._finished.clear()
        try:
            await cancel_all(tasks)
        finally:
            await self._close_input()

    async def _close_input(self) -> None:
        """Close a generator input early (its `finally` runs), sync or async."""
        source, self._sync = self._sync, None
        close = getattr(source, "close", None)
        if callable(close):
            close()
        asource, self._async = self._async, None
        aclose = getattr(asource, "aclose", None)
        if callable(aclose):
            await aclose()

    def __del__(self) -> None:
        # Dropped without aclose() (a `break` out of `async for`): cancel what still runs,
        # which cannot be waited for here; each call still cancels its remote side.
        for task in (*getattr(self, "_running", ()), *getattr(self, "_finished", ())):
            try:
                task.cancel()
            except RuntimeError:  # its loop is closed already: nothing runs any more
                pass


async def _awaited(call: Awaitable[T]) -> T:
    return await call


def map(
    routine: Callable[[Any], Awaitable[R]],
    iterable: Iterable[Any] | AsyncIterable[Any],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    ordered: bool = True,
) -> Map[R]:
    """`routine(item)` for each item of `iterable`, with a bounded number of calls in flight,
    as an async iterator of the results.

    The input is consumed lazily, one item per free slot, so an endless generator runs in
    flat memory. The first exception raised by a call (or by the input) is raised to the
    consumer after the calls still in flight were cancelled and unwound; breaking out
    (`async with`, or `aclose()`), cancelling the consumer, or the deadline in force at the
    start passing, does the same.

    Args:
        routine: A coroutine routine (or any async callable) taking one item.
        iterable: The items, sync or async.
        concurrency: The most calls in flight at once.
        ordered: Results in input order; `False` for completion order.

    Returns:
        An async iterator of the results, also an async context manager.

    Raises:
        TypeError: `routine` is not callable or is an async generator routine, `iterable`
            is not iterable, or `concurrency` is not an int.
        ValueError: `concurrency` is less than 1.

    Example:
        ```python
        async with wool.map(price, trades, concurrency=16) as results:
            async for value in results:
                print(value)
        ```
    """
    if not callable(routine):
        raise TypeError(f"wool.map needs a routine (an async callable), not {routine!r}")
    spec = getattr(routine, "__wool_routine__", None)
    if getattr(spec, "generator", False):
        raise TypeError(f"wool.map needs a coroutine routine; {getattr(routine, '__qualname__', routine)} is an async generator")
    if isinstance(concurrency, bool) or not isinstance(concurrency, int):
        raise TypeError(f"concurrency must be an int, not {type(concurrency).__name__}")
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    return Map(routine, iterable, concurrency, bool(ordered))
