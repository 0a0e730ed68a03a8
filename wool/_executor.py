"""The machinery of `wool.Executor`: a `concurrent.futures.Executor` whose calls run on a
pool's workers.

Theory of operation. `submit` turns its function into a coroutine (a routine's own call; a
plain function goes through `run_function`, a plain `def` routine of this module that calls it
in a worker thread) and hands it to the pool's event loop (`_loopthread.Handoff`); it never blocks, so it
also works on that loop's own thread (`loop.run_in_executor`). Its future stays pending
while the call runs: `future.cancel()` succeeds until the call has ended and cancels it on its
loop, so that the remote side sees `CancelledError` and its `finally` blocks run. The executor
counts the calls still unwinding, so that `shutdown(wait=True)` returns only after the
cancelled ones have ended too.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import inspect
import itertools
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from ._loopthread import Handoff, running_loop
from .caller import routine, run_blocking

T = TypeVar("T")


@routine
def run_function(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> object:
    """A plain function submitted to an executor, called in a worker thread as a plain `def`
    routine is (an undecorated `async def` is run on the worker's loop)."""
    result = fn(*args, **kwargs)
    if inspect.isawaitable(result):
        result = run_blocking(result)
    return result


@routine
def run_chunk(fn: Callable[..., Any], chunk: list[tuple[Any, ...]]) -> list[Any]:
    """`Executor.map(..., chunksize=N)`: N items in one call, in order."""
    results = []
    for args in chunk:
        result = fn(*args)
        if inspect.isawaitable(result):
            result = run_blocking(result)
        results.append(result)
    return results


class RemoteFuture(concurrent.futures.Future[T]):
    """A call's future: pending until the call ends, so that `cancel()` succeeds while the call
    runs (and cancels it remotely); `running()` is true until then."""

    def running(self) -> bool:
        return not self.done()


class ExecutorCore(concurrent.futures.Executor):
    """Submission, cancellation and shutdown over a pool's loop; subclasses say which loop and
    context the calls run in (`_target`) and what shutting down releases (`_release`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._futures: set[RemoteFuture[Any]] = set()
        self._unwinding = 0  # calls whose task has not ended yet
        self._shut = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def _target(self) -> tuple[asyncio.AbstractEventLoop, contextvars.Context]:
        raise NotImplementedError

    def _release(self, wait: bool) -> None:
        """What shutting down releases after the calls ended (with `wait`)."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[T]:
        """Run `fn(*args, **kwargs)` on a worker: `fn` is a routine or a picklable function.
        Returns a future; `future.cancel()` cancels the call, also while it runs."""
        with self._lock:
            if self._shut:
                raise RuntimeError("cannot schedule new futures after shutdown")
        return self._submit(_call_of(fn, args, kwargs))

    def _submit(self, coro: Any) -> concurrent.futures.Future[Any]:
        try:
            loop, context = self._target()
        except BaseException:
            coro.close()
            raise
        self._loop = loop
        future: RemoteFuture[Any] = RemoteFuture()
        with self._lock:
            self._futures.add(future)
            self._unwinding += 1
        try:
            handoff = Handoff(loop, coro, context, lambda task: self._ended(task, future))
        except BaseException:
            self._forget(future)
            raise
        future.add_done_callback(lambda f: _cancel_remotely(f, handoff))
        return future

    def _ended(self, task: asyncio.Task[Any], future: RemoteFuture[Any]) -> None:
        try:
            if not future.done():
                if task.cancelled():
                    future.cancel()
                elif (error := task.exception()) is not None:
                    future.set_exception(error)
                else:
                    future.set_result(task.result())
        except concurrent.futures.InvalidStateError:  # cancelled meanwhile, from another thread
            pass
        finally:
            self._forget(future)

    def _forget(self, future: RemoteFuture[Any]) -> None:
        with self._lock:
            self._futures.discard(future)
            self._unwinding -= 1
            if not self._unwinding:
                self._idle.notify_all()

    def map(
        self, fn: Callable[..., T], *iterables: Iterable[Any], timeout: float | None = None, chunksize: int = 1
    ) -> Iterator[T]:
        """`fn(*args)` for each tuple of items of `iterables`, as `concurrent.futures` does:
        every call is submitted at once, results come in input order, and the first
        exception is raised when its result is reached. `chunksize` sends that many items per
        call (fewer, larger messages for small, fast items)."""
        if isinstance(chunksize, bool) or not isinstance(chunksize, int):
            raise TypeError(f"chunksize must be an int, not {type(chunksize).__name__}")
        if chunksize < 1:
            raise ValueError(f"chunksize must be at least 1, got {chunksize}")
        if chunksize == 1:
            return super().map(fn, *iterables, timeout=timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        items = zip(*iterables, strict=False)
        chunks = iter(lambda: list(itertools.islice(items, chunksize)), [])
        with self._lock:
            if self._shut:
                raise RuntimeError("cannot schedule new futures after shutdown")
        futures = [self._submit(run_chunk(fn, chunk)) for chunk in chunks]
        return itertools.chain.from_iterable(_in_order(futures, deadline))

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Refuse new calls; with `cancel_futures`, cancel every call not ended (remotely);
        with `wait`, return once every call has ended, the cancelled ones included."""
        if wait and self._loop is not None and running_loop() is self._loop:
            raise RuntimeError("shutdown(wait=True) would block the event loop its calls run on: use shutdown(wait=False)")
        with self._lock:
            self._shut = True
            futures = list(self._futures)
        if cancel_futures:
            for future in futures:
                future.cancel()
        if wait:
            with self._lock:
                self._idle.wait_for(lambda: not self._unwinding)
        self._release(wait)


def _in_order(futures: list[concurrent.futures.Future[Any]], deadline: float | None) -> Iterator[Any]:
    """Each future's result in turn, by `deadline`; closing early cancels the rest."""
    futures.reverse()
    try:
        while futures:
            future = futures.pop()
            yield future.result(None if deadline is None else deadline - time.monotonic())
    finally:
        for future in futures:
            future.cancel()


def _call_of(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if not callable(fn):
        raise TypeError(f"submit needs a routine or a function, not {fn!r}")
    spec = getattr(fn, "__wool_routine__", None)
    if spec is None:
        return run_function(fn, args, kwargs)
    if spec.generator:
        raise TypeError(f"{fn.__qualname__} is an async generator routine: an executor runs calls that return one value")
    return fn(*args, **kwargs)


def _cancel_remotely(future: concurrent.futures.Future[Any], handoff: Handoff) -> None:
    if future.cancelled():
        future.set_running_or_notify_cancel()  # wakes wait() and as_completed()
        handoff.cancel()
