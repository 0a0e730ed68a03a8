"""Recycling workers after N calls or above a memory limit: callers see none of it, except
the callers of a worker killed far above its limit, who get `WorkerLost` naming it."""

from __future__ import annotations

import asyncio
import collections
import functools
import re

import lifespans
import pytest
import recycle_routines as rr
import routines
from helpers import CliWorker, Observer

import wool
from wool._memory import check_memory_limit, parse_size, rss

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(120)]


def test_sizes_are_parsed_with_their_units() -> None:
    assert parse_size("2GiB") == 2 * 1024**3
    assert parse_size("150MB") == 150_000_000
    assert parse_size("1.5 G") == 1_500_000_000
    assert parse_size("4096") == 4096
    with pytest.raises(ValueError, match="'12 parsecs' is not a size"):
        parse_size("12 parsecs")
    with pytest.raises(ValueError, match="at least 1 MiB"):
        check_memory_limit(1000)


def test_bad_settings_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="recycle_after must be at least 1, got 0"):
        wool.WorkerPool(size=1, recycle_after=0)
    with pytest.raises(TypeError, match="memory_limit must be a number of bytes"):
        wool.WorkerPool(size=1, memory_limit=1.5)  # type: ignore[arg-type]


async def test_recycled_workers_fail_no_call_and_run_none_twice(tmp_path) -> None:
    log = tmp_path / "runs"
    async with wool.WorkerPool(size=2, recycle_after=20):
        pids: list[int] = []
        for batch in range(50):  # 10 at a time: some reach a worker as it stops
            pids += await asyncio.gather(*(rr.record(str(log), batch * 10 + i) for i in range(10)))
    assert len(pids) == 500
    assert len(set(pids)) >= 20
    runs = collections.Counter(line.split()[0] for line in log.read_text().splitlines())
    assert len(runs) == 500 and set(runs.values()) == {1}, "a call ran twice"
    served = collections.Counter(pids)
    assert max(served.values()) <= 20


async def test_a_leaking_routine_is_kept_under_the_memory_limit() -> None:
    limit = parse_size("150MB")
    peak = 0
    async with wool.WorkerPool(size=2, memory_limit=limit) as pool:
        pids = set()
        for _ in range(300):
            pids.add(await rr.leak(5))
            for process in pool.processes:
                if process.pid is not None:
                    peak = max(peak, rss(process.pid) or 0)
        assert len(pids) > 2  # it did recycle
    assert 0 < peak <= limit * 1.2


async def test_a_call_far_over_the_limit_gets_worker_lost_and_the_pool_keeps_serving() -> None:
    async with wool.WorkerPool(size=1, memory_limit="150MB") as pool:
        first = await rr.pid()
        with pytest.raises(wool.WorkerLost, match=r"RSS of [0-9.]+ MB exceeded 1.2 x its memory limit of 150.0 MB"):
            await rr.allocate(1000)
        await pool.wait_for_workers(lambda ws: any(w.pid != first for w in ws), timeout=30)
        assert await rr.pid() != first


async def test_lifespans_are_exited_and_entered_across_a_recycle() -> None:
    async with Observer() as observer:
        async with wool.WorkerPool(size=1, recycle_after=3, lifespan=functools.partial(lifespans.curves, observer.address)):
            pids = [await rr.pid() for _ in range(7)]
            await observer.wait_for(f"exit {pids[0]}")
        first, second = pids[0], pids[3]
        assert first != second and pids[:3] == [first] * 3 and pids[3:6] == [second] * 3
        events = observer.events
        assert events.index(f"enter {first}") < events.index(f"exit {first}")
        assert f"enter {second}" in events and f"exit {second}" in events


async def test_a_hand_started_worker_reexecutes_itself_with_its_options(tmp_path) -> None:
    name = f"recycle-{tmp_path.name}"
    async with CliWorker("--discovery", f"local:{name}", "--recycle-after", "3") as worker:
        async with wool.WorkerPool(discovery=wool.LocalDiscovery(name)) as pool:
            ids = set()
            for _ in range(9):
                assert await rr.pid() == worker.pid  # execve keeps the pid
                ids.update(w.id for w in pool.workers)
            # Three incarnations at least: each had a new id.
            await pool.wait_for_workers(lambda ws: any(w.id not in ids for w in ws) or len(ids) >= 3, timeout=30)
            assert len(ids) >= 3
        worker.signal()
        assert await worker.wait() == 0


async def test_recycle_exit_makes_a_hand_started_worker_exit_0(tmp_path) -> None:
    name = f"recycle-exit-{tmp_path.name}"
    async with CliWorker("--discovery", f"local:{name}", "--recycle-after", "2", "--recycle-exit") as worker:
        async with wool.WorkerPool(discovery=wool.LocalDiscovery(name)):
            await rr.pid()
            await rr.pid()
        assert await worker.wait() == 0
        assert re.match(r"wool worker \w+ listening", worker.line)


async def test_a_hand_started_worker_far_over_its_limit_fails_its_calls_by_name_and_restarts(tmp_path) -> None:
    name = f"memory-{tmp_path.name}"
    async with CliWorker("--discovery", f"local:{name}", "--memory-limit", "150MB") as worker:
        async with wool.WorkerPool(discovery=wool.LocalDiscovery(name)) as pool:
            first = pool.workers[0].id if pool.workers else (await pool.wait_for_workers(timeout=10))[0].id
            with pytest.raises(wool.WorkerLost, match=r"exceeded 1.2 x its memory limit of 150.0 MB"):
                await rr.allocate(1000)
            # The same process, re-executed: a new incarnation that serves.
            await pool.wait_for_workers(lambda ws: any(w.id != first for w in ws), timeout=30)
            assert await rr.pid() == worker.pid
        worker.signal()
        assert await worker.wait() == 0


async def test_a_stopping_worker_tells_its_callers_before_it_closes(tmp_path) -> None:
    """Its goodbye takes it out of every caller's rotation while its calls finish, so that
    no call reaches its socket after it closed (and is lost)."""
    name = f"goodbye-{tmp_path.name}"
    async with Observer() as observer, CliWorker("--discovery", f"local:{name}") as worker:
        async with wool.WorkerPool(discovery=wool.LocalDiscovery(name)) as pool:
            await pool.wait_for_workers(timeout=10)
            held = asyncio.ensure_future(routines.wait_at(observer.address, "held"))
            await observer.wait_for("at held")
            worker.signal()
            await pool.wait_for_workers(lambda ws: not ws, timeout=10)  # out of rotation, draining
            assert worker.proc is not None and worker.proc.poll() is None
            observer.open("held")
            assert await asyncio.wait_for(held, 10) == "held"
        assert await worker.wait() == 0
