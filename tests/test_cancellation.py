"""Cancellation in both directions: the caller's cancellation reaches the remote routine."""

from __future__ import annotations

import asyncio

import helpers
import pytest
import routines

import wool

pytestmark = pytest.mark.multiprocess


async def test_task_cancel_cancels_the_remote_coroutine() -> None:
    async with wool.WorkerPool(size=1), helpers.Observer() as observer:
        task = asyncio.ensure_future(routines.block(observer.address, "t"))
        await observer.wait_matching(r"running t \d+")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The caller's cancellation completes only after the remote side has unwound.
        assert "cancelled t" in observer.events


async def test_asyncio_timeout_cancels_the_remote_coroutine() -> None:
    async with wool.WorkerPool(size=1), helpers.Observer() as observer:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await routines.block(observer.address, "timeout")
        assert "cancelled timeout" in observer.events
        assert await routines.add(1, 2) == 3


async def test_wait_for_cancels_the_remote_coroutine() -> None:
    async with wool.WorkerPool(size=1), helpers.Observer() as observer:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(routines.block(observer.address, "wait_for"), 0.5)
        assert "cancelled wait_for" in observer.events


async def test_cancel_reaches_a_generator_step() -> None:
    async with wool.WorkerPool(size=1), helpers.Observer() as observer:
        gen = routines.gen_wait_at(observer.address, "g")
        assert await anext(gen) == 1
        step = asyncio.ensure_future(anext(gen))
        await observer.wait_for("at g")
        step.cancel()
        with pytest.raises(asyncio.CancelledError):
            await step
        assert "cancelled g" in observer.events
        # As with a local generator, an exception out of a step finishes it.
        with pytest.raises(StopAsyncIteration):
            await anext(gen)


async def test_timeout_around_a_generator_step() -> None:
    async with wool.WorkerPool(size=1), helpers.Observer() as observer:
        gen = routines.gen_wait_at(observer.address, "slow")
        assert await anext(gen) == 1
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await anext(gen)
        assert "cancelled slow" in observer.events


async def test_cancelled_calls_leave_the_worker_serving() -> None:
    async with wool.WorkerPool(size=2), helpers.Observer() as observer:
        tasks = [asyncio.ensure_future(routines.block(observer.address, f"c{i}")) for i in range(20)]
        for i in range(20):
            await observer.wait_matching(rf"running c{i} \d+")
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, asyncio.CancelledError) for r in results)
        assert sum(e.startswith("cancelled c") for e in observer.events) == 20
        assert await asyncio.gather(*(routines.add(i, 1) for i in range(10))) == list(range(1, 11))
