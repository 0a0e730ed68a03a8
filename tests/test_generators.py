"""Async generator routines: driven remotely with exactly the local protocol."""

from __future__ import annotations

import asyncio

import helpers
import pytest
import routines
from routines import Oops

import wool

pytestmark = pytest.mark.multiprocess


async def test_async_for_consumes_every_item_then_stops() -> None:
    async with wool.WorkerPool(size=1):
        assert [i async for i in routines.countdown(4)] == [4, 3, 2, 1]


async def test_anext_then_stop_async_iteration() -> None:
    async with wool.WorkerPool(size=1):
        gen = routines.countdown(1)
        assert await anext(gen) == 1
        with pytest.raises(StopAsyncIteration):
            await anext(gen)
        with pytest.raises(StopAsyncIteration):
            await anext(gen)


async def test_asend_drives_the_remote_generator() -> None:
    async with wool.WorkerPool(size=1):
        gen = routines.accumulate()
        assert await anext(gen) == 0
        assert await gen.asend(5) == 5
        assert await gen.asend(7) == 12
        assert await anext(gen) == 12
        await gen.aclose()


async def test_asend_non_none_to_a_fresh_generator_is_a_type_error_as_locally() -> None:
    async with wool.WorkerPool(size=1):
        with pytest.raises(TypeError, match="non-None"):
            await routines.accumulate().asend(1)


async def test_athrow_raises_at_the_remote_yield() -> None:
    async with wool.WorkerPool(size=1):
        gen = routines.resilient()
        assert await anext(gen) == "ready"
        assert await gen.athrow(ValueError("boom")) == "caught boom"
        with pytest.raises(KeyError):
            await gen.athrow(KeyError("not caught"))
        with pytest.raises(StopAsyncIteration):
            await anext(gen)


async def test_aclose_runs_the_remote_finally() -> None:
    async with wool.WorkerPool(size=1), helpers.Observer() as observer:
        gen = routines.countdown(10, observer.address)
        assert await anext(gen) == 10
        await gen.aclose()
        assert observer.events == ["step 10", "finally"]
        with pytest.raises(StopAsyncIteration):
            await anext(gen)


async def test_break_out_of_async_for_runs_the_remote_finally() -> None:
    async with wool.WorkerPool(size=1), helpers.Observer() as observer:
        async for i in routines.countdown(10, observer.address):
            if i == 8:
                break
        await observer.wait_for("finally")
        assert observer.events == ["step 10", "step 9", "step 8", "finally"]


async def test_generator_is_pull_based() -> None:
    """The remote generator runs one step per request, never ahead of the consumer."""
    async with wool.WorkerPool(size=1), helpers.Observer() as observer:
        gen = routines.countdown(5, observer.address)
        assert await anext(gen) == 5
        assert await anext(gen) == 4
        # A full round trip through the same worker: a step running ahead would have
        # reported by now.
        assert await routines.echo("sync") == "sync"
        assert observer.events == ["step 5", "step 4"]
        await gen.aclose()


async def test_error_after_yields_arrives_after_the_values() -> None:
    async with wool.WorkerPool(size=1):
        seen = []
        with pytest.raises(Oops) as info:
            async for i in routines.fail_after(3):
                seen.append(i)
        assert seen == [0, 1, 2]
        assert info.value.code == 3


async def test_aclose_of_an_unstarted_generator_sends_nothing() -> None:
    async with wool.WorkerPool(size=1), helpers.Observer() as observer:
        gen = routines.countdown(3, observer.address)
        await gen.aclose()
        assert await routines.echo(1) == 1
        assert observer.events == []


async def test_unpicklable_yield_fails_the_step_and_closes_the_generator() -> None:
    @wool.routine
    async def yields_lock():  # type: ignore[no-untyped-def]
        import threading

        yield 1
        yield threading.Lock()

    async with wool.WorkerPool(size=1):
        gen = yields_lock()
        assert await anext(gen) == 1
        with pytest.raises(wool.SerializationError, match="yielded value"):
            await anext(gen)
        with pytest.raises(StopAsyncIteration):
            await anext(gen)


async def test_concurrent_generators_do_not_interfere() -> None:
    async with wool.WorkerPool(size=2):

        async def drain(n: int) -> list[int]:
            return [i async for i in routines.countdown(n)]

        results = await asyncio.gather(*(drain(n) for n in range(1, 21)))
        assert results == [list(range(n, 0, -1)) for n in range(1, 21)]
