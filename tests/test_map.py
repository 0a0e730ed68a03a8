"""`wool.map`: lazy input (sync, async, endless) in bounded memory, bounded concurrency,
ordered and completion order, the first exception cancelling the rest, and an early end
(break, cancel, deadline) leaving nothing running; nested inside a routine."""

from __future__ import annotations

import asyncio
import gc
import itertools
import tracemalloc
from collections.abc import AsyncIterator, Iterator

import fanout_routines as fr
import pytest
from helpers import Observer

import wool

multiprocess = [pytest.mark.multiprocess, pytest.mark.timeout(60)]


class Counted:
    """An endless input that counts how many items were pulled from it."""

    def __init__(self) -> None:
        self.pulled = 0

    def __iter__(self) -> Iterator[int]:
        for i in itertools.count():
            self.pulled += 1
            yield i


async def local_square(x: int) -> int:
    await asyncio.sleep(0)
    return x * x


async def test_an_endless_input_is_pulled_only_as_slots_free() -> None:
    source = Counted()
    async with wool.map(local_square, source, concurrency=8) as results:
        async for i, y in aenumerate(results):
            assert y == i * i
            assert source.pulled - (i + 1) <= 8  # never more than `concurrency` ahead
            if i == 999:
                break
    assert source.pulled <= 1000 + 8


async def test_an_endless_input_runs_in_flat_memory() -> None:
    """The memory a map holds does not grow with the items it went through."""

    async def consume(n: int, results: wool.Map[int]) -> None:
        count = 0
        async for _ in results:
            count += 1
            if count == n:
                return

    gc.collect()
    tracemalloc.start()
    try:
        async with wool.map(local_square, itertools.count(), concurrency=32) as results:
            await consume(2_000, results)
            after_first, _ = tracemalloc.get_traced_memory()
            await consume(20_000, results)
            after_more, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Ten times the items: the map holds what it held (bounded by `concurrency`), not 20,000 more
    # results; each would take at least 28 bytes, so growth stays far below 20,000 * 28 bytes.
    assert after_more - after_first < 100_000


async def aenumerate(items: wool.Map[int]) -> AsyncIterator[tuple[int, int]]:
    i = 0
    async for item in items:
        yield i, item
        i += 1


async def test_async_input_and_completion_order() -> None:
    async def numbers() -> AsyncIterator[int]:
        for i in range(20):
            yield i

    gates = {i: asyncio.Event() for i in range(3)}

    async def gated(x: int) -> int:
        await gates[x].wait()
        return x

    out = []
    async with wool.map(gated, range(3), ordered=False) as results:
        gates[2].set()
        out.append(await anext(results))
        gates[0].set()
        out.append(await anext(results))
        gates[1].set()
        out.append(await anext(results))
    assert out == [2, 0, 1]
    assert [y async for y in wool.map(local_square, numbers())] == [i * i for i in range(20)]


async def test_concurrency_bounds_the_calls_in_flight() -> None:
    running = peak = 0
    release, full = asyncio.Event(), asyncio.Event()

    async def tracked(x: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        if running == 5:
            full.set()
        try:
            await release.wait()
            return x
        finally:
            running -= 1

    results = wool.map(tracked, range(50), concurrency=5)
    first = asyncio.ensure_future(anext(results))
    await asyncio.wait_for(full.wait(), 10)
    assert not first.done() and running == 5
    release.set()
    assert [await first] + [x async for x in results] == list(range(50))
    assert peak == 5


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="concurrency must be at least 1"):
        wool.map(local_square, range(3), concurrency=0)
    with pytest.raises(TypeError, match="concurrency must be an int"):
        wool.map(local_square, range(3), concurrency=2.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="needs an iterable"):
        wool.map(local_square, 3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="is an async generator"):
        wool.map(fr.stream_dying_after_first, range(3))


@pytest.mark.multiprocess
@pytest.mark.timeout(60)
async def test_results_in_input_order_from_workers() -> None:
    async with wool.WorkerPool(size=2):
        assert [y async for y in wool.map(fr.square, range(200), concurrency=16)] == [x * x for x in range(200)]
        source = Counted()
        async with wool.map(fr.square, source, concurrency=16) as results:
            async for i, y in aenumerate(results):
                assert y == i * i and source.pulled - (i + 1) <= 16
                if i == 499:
                    break


@pytest.mark.multiprocess
@pytest.mark.timeout(60)
async def test_the_first_exception_cancels_the_calls_in_flight() -> None:
    async with Observer() as observer, wool.WorkerPool(size=2):

        async def items() -> AsyncIterator[int]:
            for x in (1, 2, 3):
                yield x

        async def call(x: int) -> int:
            if x == 3:
                for started in (1, 2):
                    await observer.wait_for(f"start {started}")
                raise ValueError("item 3 is bad")
            return await fr.slow_square(observer.address, x)

        seen = []
        with pytest.raises(ValueError, match="item 3 is bad"):
            async for y in wool.map(call, items(), concurrency=3):
                seen.append(y)
        assert seen == []
        # Both calls in flight were cancelled, and had unwound when the exception arrived.
        assert {e for e in observer.events if e.startswith("end")} == {"end 1", "end 2"}


@pytest.mark.multiprocess
@pytest.mark.timeout(60)
async def test_breaking_out_cancels_everything() -> None:
    async with Observer() as observer, wool.WorkerPool(size=2):
        observer.open("0")
        async with wool.map(lambda x: fr.slow_square(observer.address, x), range(100), concurrency=4) as results:
            async for y in results:
                assert y == 0
                for x in (1, 2, 3, 4):
                    await observer.wait_for(f"start {x}")
                break
        assert sorted(e for e in observer.events if e.startswith("end")) == ["end 0", "end 1", "end 2", "end 3", "end 4"]
        assert "start 5" not in observer.events


@pytest.mark.multiprocess
@pytest.mark.timeout(60)
async def test_dropping_the_iterator_after_break_cancels_the_calls() -> None:
    async with Observer() as observer, wool.WorkerPool(size=2):
        observer.open("0")
        async for y in wool.map(lambda x: fr.slow_square(observer.address, x), range(100), concurrency=3):
            assert y == 0
            for x in (1, 2, 3):
                await observer.wait_for(f"start {x}")
            break
        for x in (1, 2, 3):
            await observer.wait_for(f"end {x}")  # cancelled, not left waiting at their gates


@pytest.mark.multiprocess
@pytest.mark.timeout(60)
async def test_cancelling_the_consumer_and_the_deadline_cancel_everything() -> None:
    async with Observer() as observer, wool.WorkerPool(size=2):

        async def consume() -> list[int]:
            return [y async for y in wool.map(lambda x: fr.slow_square(observer.address, x), range(10), concurrency=2)]

        task = asyncio.ensure_future(consume())
        await observer.wait_for("start 0")
        await observer.wait_for("start 1")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert sorted(e for e in observer.events if e.startswith("end")) == ["end 0", "end 1"]

        observer.events.clear()
        with wool.options(timeout=1.0), pytest.raises(TimeoutError):
            await consume()
        assert sorted(e for e in observer.events if e.startswith("end")) == ["end 0", "end 1"]


@pytest.mark.multiprocess
@pytest.mark.timeout(60)
async def test_map_inside_a_routine() -> None:
    async with wool.WorkerPool(size=2):
        assert await fr.nested_map(30) == [x * x for x in range(30)]


async def test_ending_early_closes_a_generator_input() -> None:
    closed = []

    def sync_items() -> Iterator[int]:
        try:
            yield from itertools.count()
        finally:
            closed.append("sync")

    async def async_items() -> AsyncIterator[int]:
        try:
            for i in itertools.count():
                yield i
        finally:
            closed.append("async")

    for source in (sync_items(), async_items()):
        async with wool.map(local_square, source) as results:
            async for _ in results:
                break
    assert closed == ["sync", "async"]
