"""`wool.readahead`: a remote generator that runs up to N items ahead of its consumer, for
streams that are only iterated."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator

import cloudpickle
import corner_routines
import pytest
import routines
from helpers import Observer

import wool

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(60)]


def produced(observer: Observer) -> int:
    return max((int(e.split()[1]) for e in observer.events if e.startswith("produced ")), default=-1)


async def test_items_arrive_complete_and_in_order() -> None:
    async with wool.WorkerPool(size=2):
        for window in (1, 3, 64):
            assert [i async for i in wool.readahead(routines.numbers(2000), window)] == list(range(2000))


async def test_the_worker_never_runs_more_than_the_window_ahead() -> None:
    window = 4
    async with Observer() as observer, wool.WorkerPool(size=1):
        stream = wool.readahead(routines.produce(observer.address, 40), window)
        consumed = 0
        async for item in stream:
            assert item == consumed
            consumed += 1
            assert produced(observer) <= consumed + window
        await observer.wait_for("closed")
        assert consumed == 40


async def test_an_error_arrives_after_the_items_before_it() -> None:
    async with Observer() as observer, wool.WorkerPool(size=1):
        got: list[int] = []
        with pytest.raises(routines.Oops, match="failed at 5"):
            async for item in wool.readahead(routines.produce(observer.address, 10, fail_at=5), 8):
                got.append(item)
        assert got == [0, 1, 2, 3, 4]
        await observer.wait_for("closed")


async def test_closing_early_closes_the_remote_generator() -> None:
    async with Observer() as observer, wool.WorkerPool(size=1):
        stream = wool.readahead(routines.produce(observer.address, 1000), 4)
        assert [await anext(stream), await anext(stream)] == [0, 1]
        await stream.aclose()
        await observer.wait_for("closed")  # its finally ran on the worker
        assert await routines.add(1, 2) == 3


async def test_closing_a_paused_stream_returns_once_the_remote_finally_ran() -> None:
    """The worker has used up its credit and waits at a `yield`: `aclose` closes it there,
    and returns after its `finally` reported (not merely after sending the close)."""
    async with Observer() as observer, wool.WorkerPool(size=1):
        stream = wool.readahead(routines.produce(observer.address, 1000), 4)
        assert [await anext(stream), await anext(stream)] == [0, 1]
        await observer.wait_for("produced 4")  # the first item, then a credit of 4: used up
        await stream.aclose()
        assert "closed" in observer.events  # no wait: the finally had run
        assert await routines.add(1, 2) == 3


async def test_closing_a_stream_in_the_middle_of_an_item_stops_it_and_waits_for_the_finally() -> None:
    async with Observer() as observer, wool.WorkerPool(size=1):
        stream = wool.readahead(corner_routines.ahead_then_wait(observer.address, 2), 8)
        assert [await anext(stream), await anext(stream)] == [0, 1]
        await observer.wait_for("at stuck")  # producing the next item, which never comes
        await stream.aclose()
        assert observer.events[-2:] == ["ended by CancelledError", "closed"]


async def test_closing_a_stream_raises_what_its_remote_finally_raised() -> None:
    """As `aclose` of a local generator does."""
    async with Observer() as observer, wool.WorkerPool(size=1):
        stream = wool.readahead(corner_routines.failing_finally(observer.address), 2)
        assert await anext(stream) == 1
        with pytest.raises(LookupError, match="the finally failed"):
            await stream.aclose()
        assert await routines.add(1, 2) == 3


async def test_asend_and_athrow_are_refused_and_say_why() -> None:
    async with Observer() as observer, wool.WorkerPool(size=1):
        stream = wool.readahead(routines.produce(observer.address, 1000), 4)
        assert await anext(stream) == 0
        with pytest.raises(TypeError, match="read-ahead stream only iterates"):
            await stream.asend(1)
        with pytest.raises(TypeError, match="read-ahead stream only iterates"):
            await stream.athrow(ValueError("x"))
        await stream.aclose()
        await observer.wait_for("closed")


async def test_a_lost_worker_ends_the_stream_with_worker_lost() -> None:
    async with wool.WorkerPool(size=1) as pool:
        stream = wool.readahead(routines.pid_stream(), 4)
        victim = await anext(stream)
        assert victim == pool.processes[0].pid
        os.kill(victim, signal.SIGKILL)
        with pytest.raises(wool.WorkerLost):
            async with asyncio.timeout(10):
                async for _ in stream:
                    pass


async def test_bad_arguments_are_refused() -> None:
    async def local() -> object:
        yield 1

    with pytest.raises(TypeError, match="@wool.routine async generator"):
        wool.readahead(local(), 4)  # type: ignore[arg-type]
    gen = routines.numbers(3)
    with pytest.raises(ValueError, match="window must be a positive int"):
        wool.readahead(gen, 0)
    async with wool.WorkerPool(size=1):
        assert await anext(gen) == 0
        with pytest.raises(ValueError, match="has not started"):
            wool.readahead(gen, 4)
        await gen.aclose()


def test_generators_of_routines_are_recognised_by_registry_also_when_pickled_by_value() -> None:
    """A routine defined in `__main__` or a closure reaches a worker pickled by value; the
    generators it returns there are still read-ahead capable."""

    def make() -> object:
        @wool.routine
        async def closure_numbers(n: int) -> AsyncIterator[int]:
            for i in range(n):
                yield i

        return closure_numbers

    copy = cloudpickle.loads(cloudpickle.dumps(make()))
    gen = copy(3)
    assert wool.readahead(gen, 2) is not None
    gen.aclose().close()  # never started: nothing to run

    async def lookalike() -> AsyncIterator[int]:
        yield 1

    with pytest.raises(TypeError, match="@wool.routine async generator"):
        wool.readahead(lookalike(), 4)
