"""Deadlines across a tree of calls.

`wool.options(timeout=...)` gives each call made in the block a deadline. It travels down
the tree (routines read what is left with `wool.remaining()`), and when it passes, the call
and every nested call below it are cancelled; the caller gets `TimeoutError` once the whole
tree has unwound. Here the deepest routine records its cleanup in a context variable, which
comes back up with the cancellation.

    python examples/deadlines.py
"""

import asyncio

import wool

CLEANUP = wool.ContextVar("cleanup", namespace="example", default="no cleanup")


@wool.routine
async def crawl(depth: int) -> float | None:
    if depth > 0:
        return await crawl(depth - 1)  # a nested call, on a peer
    left = wool.remaining()
    try:
        await asyncio.sleep(3600)  # far more than the deadline allows
    except asyncio.CancelledError:
        CLEANUP.set("the deepest call was cancelled and cleaned up")
        raise
    return left


@wool.routine
async def budget(depth: int) -> float | None:
    if depth > 0:
        return await budget(depth - 1)
    return wool.remaining()


async def main() -> None:
    async with wool.WorkerPool(size=2):
        with wool.options(timeout=30):
            left = await budget(3)
        print("three levels down, the deadline is still there:", left is not None and 0 < left <= 30)
        try:
            with wool.options(timeout=0.5):
                await crawl(3)
        except TimeoutError:
            print("timed out:", CLEANUP.get())


asyncio.run(main())
