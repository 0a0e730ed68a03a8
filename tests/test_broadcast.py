"""`pool.broadcast`: once per worker in rotation, results and exceptions per worker id,
tags honoured, at most once, joiners left out, one deadline and cancellation for all."""

from __future__ import annotations

import asyncio

import fanout_routines as fr
import pytest
from helpers import CliWorker, Observer

import wool

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(60)]


async def test_runs_once_on_every_worker_keyed_by_worker_id() -> None:
    async with wool.WorkerPool(size=3) as pool:
        results = await pool.broadcast(fr.whoami)
        assert results == {w.id: w.pid for w in pool.workers}


async def test_one_failure_and_one_lost_worker_never_hide_the_others() -> None:
    async with wool.WorkerPool(size=3) as pool:
        a, b, c = pool.workers
        results = await pool.broadcast(fr.fail_on, a.pid)
        assert isinstance(results[a.id], ValueError) and str(results[a.id]) == f"refused on {a.pid}"
        assert results[b.id] == b.pid and results[c.id] == c.pid
        results = await pool.broadcast(fr.die_on, b.pid)
        assert isinstance(results[b.id], wool.WorkerLost)
        assert results[a.id] == a.pid and results[c.id] == c.pid


async def test_only_workers_with_the_tags_of_the_routine_and_the_block() -> None:
    async with CliWorker("--discovery", "local:bc", "--tag", "gpu") as gpu, CliWorker("--discovery", "local:bc") as cpu:
        async with wool.WorkerPool(discovery=wool.LocalDiscovery("bc")) as pool:
            await pool.wait_for_workers(lambda ws: len(ws) == 2, timeout=20)
            assert await pool.broadcast(fr.gpu_pid) == {gpu.id: gpu.pid}
            with wool.options(tags="gpu"):
                assert await pool.broadcast(fr.whoami) == {gpu.id: gpu.pid}
            assert set(await pool.broadcast(fr.whoami)) == {gpu.id, cpu.id}
            with wool.options(tags="tpu"), pytest.raises(wool.NoWorkersAvailable, match="tags tpu"):
                await pool.broadcast(fr.whoami)
        for w in (gpu, cpu):
            w.signal()
            assert await w.wait() == 0


async def test_a_worker_joining_during_a_broadcast_is_left_out_and_each_runs_it_once() -> None:
    async with Observer() as observer, CliWorker("--discovery", "local:join") as first:
        async with wool.WorkerPool(discovery=wool.LocalDiscovery("join")) as pool:
            await pool.wait_for_workers(timeout=20)
            running = asyncio.ensure_future(pool.broadcast(fr.held, observer.address, "go"))
            await observer.wait_for(f"ran {first.pid}")
            async with CliWorker("--discovery", "local:join") as second:
                await pool.wait_for_workers(lambda ws: len(ws) == 2, timeout=20)
                observer.open("go")
                assert await running == {first.id: first.pid}
                assert observer.events.count(f"ran {first.pid}") == 1
                assert f"ran {second.pid}" not in observer.events
                second.signal()
                assert await second.wait() == 0
        first.signal()
        assert await first.wait() == 0


async def test_a_timeout_applies_to_the_whole_broadcast_and_cancels_every_call() -> None:
    async with Observer() as observer, wool.WorkerPool(size=2) as pool:
        pids = [w.pid for w in pool.workers]
        with wool.options(timeout=1.0), pytest.raises(TimeoutError):
            await pool.broadcast(fr.stuck, observer.address)
        # when TimeoutError arrived, every remote call had unwound
        assert sorted(e for e in observer.events if e.startswith("cleanup")) == sorted(f"cleanup {p}" for p in pids)


async def test_cancelling_the_broadcast_cancels_every_call() -> None:
    async with Observer() as observer, wool.WorkerPool(size=2) as pool:
        pids = [w.pid for w in pool.workers]
        task = asyncio.ensure_future(pool.broadcast(fr.stuck, observer.address))
        for pid in pids:
            await observer.wait_for(f"started {pid}")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert sorted(e for e in observer.events if e.startswith("cleanup")) == sorted(f"cleanup {p}" for p in pids)


async def test_bad_uses_are_named() -> None:
    async def plain() -> None:
        pass

    async with wool.WorkerPool(size=1) as pool:
        with pytest.raises(TypeError, match="broadcast needs a @wool.routine"):
            await pool.broadcast(plain)
        with pytest.raises(TypeError, match="is an async generator"):
            await pool.broadcast(fr.stream_dying_after_first, 1)
    with pytest.raises(RuntimeError, match="not open"):
        await pool.broadcast(fr.whoami)


async def test_an_idempotent_routine_is_still_broadcast_at_most_once_per_worker() -> None:
    async with wool.WorkerPool(size=3) as pool:
        a, b, c = pool.workers
        results = await pool.broadcast(fr.die_unless, a.pid)  # kills b and c: not retried elsewhere
        assert results[a.id] == a.pid
        assert isinstance(results[b.id], wool.WorkerLost) and isinstance(results[c.id], wool.WorkerLost)
