"""A worker runs at most `max_calls` calls at once; past it, calls go to a worker with room or
wait (in the caller, which keeps at most that many open on the worker, or on the worker for
calls of several callers), and nested fan-out under a limit does not deadlock."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import routines
from helpers import CliWorker, Observer

import wool
from wool.workers import survey

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(60)]


async def load_of(discovery: wool.LocalDiscovery) -> list[tuple[int, int]]:
    """(calls running, calls queued) of each worker, as it reports them over the wire."""
    return [(r["calls"], r["queued"]) for r in await survey(await discovery.workers(), 5.0)]


async def until_load(discovery: wool.LocalDiscovery, expected: list[tuple[int, int]]) -> None:
    """Ask until the worker reports `expected` (its calls arrive on other connections, in
    their own time)."""
    async with asyncio.timeout(10):
        while await load_of(discovery) != expected:
            pass


async def test_calls_past_the_limit_wait_and_each_ending_call_starts_the_next() -> None:
    namespace = wool.LocalDiscovery("limited")
    async with Observer() as obs, CliWorker("--discovery", "local:limited", "--max-calls", "2") as worker:
        async with wool.WorkerPool(discovery=namespace) as first:
            await first.wait_for_workers()
            a = [asyncio.create_task(routines.wait_at(obs.address, f"a{i}")) for i in range(3)]
            await obs.wait_for("at a0")
            await obs.wait_for("at a1")
            # The caller keeps the third call: the worker's window is full.
            await until_load(namespace, [(2, 0)])
            async with wool.WorkerPool(discovery=namespace) as second:
                await second.wait_for_workers()
                b = asyncio.create_task(routines.wait_at(obs.address, "b0"))
                await until_load(namespace, [(2, 1)])  # another caller's call waits on the worker
                obs.open("a0")
                await obs.wait_for("at b0")  # first come, first served
                await until_load(namespace, [(2, 1)])  # a1 and b0 run; a2 waits
                assert "at a2" not in obs.events
                a[2].cancel()  # cancelled while it waits: answered at once, never run
                with pytest.raises(asyncio.CancelledError):
                    await a[2]
                await until_load(namespace, [(2, 0)])
                obs.open("a1")
                obs.open("b0")
                assert await asyncio.gather(a[0], a[1], b) == ["a0", "a1", "b0"]
            assert "at a2" not in obs.events
        worker.signal()
        assert await worker.wait() == 0


async def test_calls_waiting_on_a_stopping_worker_go_to_another_worker() -> None:
    namespace = wool.LocalDiscovery("handoff")
    async with (
        Observer() as obs,
        CliWorker("--discovery", "local:handoff", "--max-calls", "1", "--grace", "30") as stopping,
    ):
        async with wool.WorkerPool(discovery=namespace) as first:
            await first.wait_for_workers()
            running = asyncio.create_task(routines.wait_at(obs.address, "a"))
            await obs.wait_for("at a")
            async with wool.WorkerPool(discovery=namespace) as second:
                await second.wait_for_workers()
                waiting = asyncio.create_task(routines.pid())
                await until_load(namespace, [(1, 1)])
                async with CliWorker("--discovery", "local:handoff") as other:
                    await second.wait_for_workers(lambda ws: len(ws) == 2, timeout=10)
                    stopping.signal()
                    # It never ran on the stopping worker, so it may run elsewhere.
                    assert await asyncio.wait_for(waiting, 10) == other.pid
                    obs.open("a")
                    assert await running == "a"  # finished within the grace period
                    assert await stopping.wait() == 0
                    other.signal()
                    assert await other.wait() == 0


async def test_a_call_goes_to_a_worker_with_room_or_waits_in_the_caller() -> None:
    namespace = wool.LocalDiscovery("room")
    async with Observer() as obs, wool.WorkerPool(size=2, max_calls=1, discovery=namespace):
        x = asyncio.create_task(routines.block(obs.address, "x"))
        x_pid = (await obs.wait_matching(r"running x \d+")).rsplit(" ", 1)[1]
        other = await routines.pid()  # round robin's turn passes to x's worker next
        y = asyncio.create_task(routines.block(obs.address, "y"))
        y_pid = (await obs.wait_matching(r"running y \d+")).rsplit(" ", 1)[1]
        assert y_pid != x_pid and int(y_pid) == other  # not queued behind x
        z = asyncio.create_task(routines.add(1, 2))
        await until_load(namespace, [(1, 0), (1, 0)])  # z waits in the caller, on no worker
        x.cancel()
        assert await asyncio.wait_for(z, 10) == 3
        y.cancel()
        await asyncio.gather(x, y, return_exceptions=True)


async def test_nested_fan_out_under_a_limit_of_one_call_does_not_deadlock() -> None:
    async with wool.WorkerPool(size=2, max_calls=1):
        assert await asyncio.wait_for(routines.fib(7), 50) == 13


async def test_many_concurrent_calls_never_exceed_the_window_on_the_worker() -> None:
    namespace = wool.LocalDiscovery("window")
    async with CliWorker("--discovery", "local:window", "--max-calls", "5") as worker:
        async with wool.WorkerPool(discovery=namespace) as pool:
            await pool.wait_for_workers()
            calls = asyncio.gather(*(routines.add(i, 1) for i in range(2000)))
            seen: list[tuple[int, int]] = []
            while not calls.done():
                seen += await load_of(namespace)
            assert await calls == [i + 1 for i in range(2000)]
            assert seen and all(running <= 5 and queued == 0 for running, queued in seen), seen
        worker.signal()
        assert await worker.wait() == 0


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [({"max_calls": 0}, ValueError, "at least 1"), ({"max_calls": 1.5}, TypeError, "must be an int")],
)
def test_bad_max_calls_is_refused(kwargs: dict[str, Any], error: type[Exception], pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        wool.WorkerPool(size=1, **kwargs)
