"""`wool.run(awaitable)`: the one blocking form, for code that cannot `await`.

Inside a plain `def` routine on a worker it hands the awaitable to the worker's event loop
(`wool.caller._blocking`). In synchronous code holding a pool opened with `with` (on an event
loop thread of its own) it is `pool.run` on the most recently opened pool still open, so a
script and a plain routine make nested calls the same way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from ._loopthread import running_loop
from .caller import home_var, latest_pool, run_blocking

T = TypeVar("T")


def run(awaitable: Awaitable[T], /) -> T:
    """Run `awaitable` (a routine call, `asyncio.gather(...)`, any coroutine) and block this
    thread until it ends: its result, or the exception it raised. In a plain `def` routine
    it runs on the worker's event loop (a nested call); in synchronous code inside
    `with wool.WorkerPool(...) as pool:` it is `pool.run(awaitable)` on the most recently
    opened pool.

    Raises:
        asyncio.CancelledError: The plain routine's own call was cancelled (the nested call
            is cancelled too).
        RuntimeError: There is no loop to hand it to (neither in a plain `def` routine nor
            inside a `with` pool), or it was called from a running event loop (`await`
            there instead).
        TypeError: `awaitable` is not awaitable.
    """
    if home_var.get() is None and running_loop() is None:
        entry = latest_pool()
        if entry is not None and entry.loop.is_running():
            pool_run: Callable[[Awaitable[T]], T] | None = getattr(entry.pool, "run", None)
            if pool_run is not None:
                return pool_run(awaitable)
    return run_blocking(awaitable)
