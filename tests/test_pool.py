"""WorkerPool: how many processes it spawns, that it leaves none behind however its block
ends, how it validates its arguments, which pool a call goes to, and what a caller sees when
a worker dies under a call."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from collections import Counter
from pathlib import Path

import helpers
import psutil
import pytest
import routines
from helpers import Observer

import wool

pytestmark = pytest.mark.multiprocess


def worker_pids() -> set[int]:
    """Pids of this process's live descendants that are workers: processes running
    `wool.worker`, less the pool's template, the parent the workers are forked from."""
    running = {}
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "wool.worker" in child.cmdline():
                running[child.pid] = child.ppid()
        except psutil.NoSuchProcess:
            pass
    return set(running) - set(running.values())


def live_children() -> list[psutil.Process]:
    return [c for c in psutil.Process().children(recursive=True) if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]


async def pids_of(calls: int) -> Counter[int]:
    return Counter([await routines.pid() for _ in range(calls)])


# -- processes ---------------------------------------------------------------------------------


async def test_size_spawns_exactly_that_many_workers_and_stops_them() -> None:
    async with wool.WorkerPool(size=3) as pool:
        spawned = {w.pid for w in pool.processes}
        assert len(spawned) == 3
        assert worker_pids() == spawned
        assert len(pool.workers) == 3
        assert all(isinstance(w, wool.WorkerInfo) for w in pool.workers)
        assert {w.pid for w in pool.workers} == spawned
        assert set(await pids_of(6)) == spawned
    assert worker_pids() == set()
    assert live_children() == []


async def test_default_size_is_one_worker_per_cpu() -> None:
    async with wool.WorkerPool() as pool:
        assert len(pool.workers) == os.cpu_count()
        assert len(worker_pids()) == os.cpu_count()
    assert worker_pids() == set()


class Boom(Exception):
    pass


async def test_exception_in_body_propagates_unchanged_and_stops_workers() -> None:
    boom = Boom("from the body")
    spawned: set[int] = set()
    with pytest.raises(Boom) as raised:
        async with wool.WorkerPool(size=2) as pool:
            spawned = {w.pid for w in pool.processes if w.pid is not None}
            assert await routines.add(1, 2) == 3
            raise boom
    assert raised.value is boom
    assert len(spawned) == 2
    assert worker_pids() == set()
    assert live_children() == []


async def test_cancelled_body_cancels_its_calls_and_stops_workers() -> None:
    spawned: set[int] = set()
    async with Observer() as observer:

        async def body() -> None:
            async with wool.WorkerPool(size=2) as pool:
                spawned.update(w.pid for w in pool.processes if w.pid is not None)
                await routines.block(observer.address, "x")

        task = asyncio.create_task(body())
        await observer.wait_matching(r"running x \d+")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)
        assert task.cancelled()
        # The call in flight was cancelled on its worker (its `except CancelledError` ran).
        assert "cancelled x" in observer.events
    assert len(spawned) == 2
    assert worker_pids() == set()
    assert live_children() == []


# -- arguments ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"size": -1}, ValueError, r"size.*negative"),
        ({"size": "2"}, TypeError, r"size must be an int.*str"),
        ({"size": True}, TypeError, r"size must be an int.*bool"),
        ({"size": 0}, ValueError, r"size=0.*discovery"),
        ({"discovery": object()}, TypeError, r"discovery must implement wool\.Discovery"),
        ({"grace": -1}, ValueError, r"grace must be a finite, non-negative number of seconds"),
        ({"start_timeout": 0}, ValueError, r"start_timeout must be a finite, positive number of seconds"),
        ({"connect_timeout": "5"}, TypeError, r"connect_timeout must be a number of seconds, not str"),
    ],
    ids=["negative", "str", "bool", "zero-without-discovery", "not-a-discovery", "grace", "start-timeout", "connect-timeout"],
)
def test_invalid_arguments_are_rejected(kwargs: dict[str, object], error: type[Exception], pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        wool.WorkerPool(**kwargs)  # type: ignore[arg-type]
    assert worker_pids() == set()


def test_a_size_given_as_the_first_positional_argument_is_pointed_out() -> None:
    """Positional arguments are tags: `WorkerPool(4)` suggests what was probably meant."""
    with pytest.raises(TypeError, match=r"positional arguments are worker tags, got 4: did you mean size=4\?"):
        wool.WorkerPool(4)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"tags must be non-empty strings, got 4.5"):
        wool.WorkerPool(4.5)  # type: ignore[arg-type]
    assert worker_pids() == set()


# -- which pool a call goes to -----------------------------------------------------------------


async def test_call_outside_any_pool_raises_no_pool_error() -> None:
    assert issubclass(wool.NoPoolError, wool.WoolError)
    with pytest.raises(wool.NoPoolError, match=r"outside any worker pool.*WorkerPool"):
        await routines.add(1, 2)
    async with wool.WorkerPool(size=1):
        assert await routines.add(1, 2) == 3
    with pytest.raises(wool.NoPoolError, match=r"outside any worker pool"):
        await routines.add(1, 2)


async def test_sequential_calls_are_spread_round_robin() -> None:
    async with wool.WorkerPool(size=2) as pool:
        spawned = {w.pid for w in pool.processes}
        counts = await pids_of(6)
    assert set(counts) == spawned
    assert sorted(counts.values()) == [3, 3]


async def test_inner_pool_takes_over_for_its_block() -> None:
    async with wool.WorkerPool(size=1) as outer:
        outer_pid = outer.processes[0].pid
        assert await routines.pid() == outer_pid
        async with wool.WorkerPool(size=1) as inner:
            inner_pid = inner.processes[0].pid
            assert inner_pid != outer_pid
            assert await routines.pid() == inner_pid
        assert inner_pid not in worker_pids()
        assert await routines.pid() == outer_pid
    assert worker_pids() == set()


# -- a worker dying under a call ---------------------------------------------------------------


async def test_worker_killed_mid_call_raises_worker_lost_and_pool_keeps_serving() -> None:
    async with Observer() as observer, wool.WorkerPool(size=2) as pool:
        task = asyncio.create_task(routines.block(observer.address, "x"))
        event = await observer.wait_matching(r"running x \d+")
        victim = int(event.rsplit(" ", 1)[1])
        assert victim in {w.pid for w in pool.processes}
        os.kill(victim, signal.SIGKILL)
        with pytest.raises(wool.WorkerLost):
            await asyncio.wait_for(task, 10)
        assert victim not in {w.pid for w in pool.workers}
        assert [await routines.add(i, 1) for i in range(4)] == [1, 2, 3, 4]
        survivors = await pids_of(4)
        assert victim not in survivors
        assert set(survivors) == {w.pid for w in pool.processes} - {victim}


async def test_routine_exiting_its_worker_raises_worker_lost_and_pool_keeps_serving() -> None:
    async with wool.WorkerPool(size=2) as pool:
        with pytest.raises(wool.WorkerLost):
            await asyncio.wait_for(routines.exit_now(3), 10)
        assert len(pool.workers) == 1
        (dead,) = [w for w in pool.processes if w.pid not in {i.pid for i in pool.workers}]
        assert await dead.wait(10) == 3
        assert [await routines.add(i, 1) for i in range(4)] == [1, 2, 3, 4]
        assert set(await pids_of(4)) == {pool.workers[0].pid}


# -- registry ----------------------------------------------------------------------------------


async def test_spawned_workers_are_published_in_a_private_namespace(runtime_dir: Path) -> None:
    registry = runtime_dir / "registry"
    async with wool.WorkerPool(size=2) as pool, wool.WorkerPool(size=1) as other:
        files = sorted(p.name for p in registry.glob("*.json"))
        assert len(files) == 2, files  # one namespace per pool
        assert all(re.fullmatch(r"pool-[0-9a-f]+\.json", name) for name in files)
        published = {}
        for name in files:
            entries = await wool.LocalDiscovery(name.removesuffix(".json")).workers()
            published[frozenset(w.pid for w in entries)] = {w.id for w in entries}
        assert published == {
            frozenset(w.pid for w in pool.processes): {w.id for w in pool.workers},
            frozenset(w.pid for w in other.processes): {w.id for w in other.workers},
        }
    assert sorted(p.name for p in registry.iterdir()) == []


# -- workers that fail to start ----------------------------------------------------------------


async def test_worker_not_ready_in_time_raises_worker_start_error_and_is_killed() -> None:
    # A Python interpreter cannot start and bind within 10 ms: the start-up deadline expires.
    pool = wool.WorkerPool(size=1, start_timeout=0.01)
    with pytest.raises(wool.WorkerStartError, match=r"not ready within"):
        await pool.__aenter__()
    assert pool.processes == []
    assert worker_pids() == set()
    assert live_children() == []


async def test_an_unusable_runtime_directory_is_named_before_any_worker_starts(
    runtime_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = runtime_dir / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("WOOL_RUNTIME_DIR", str(blocker / "runtime"))
    try:
        with pytest.raises(wool.DiscoveryError, match=r"cannot create wool runtime directory"):
            async with wool.WorkerPool(size=1):
                pytest.fail("the pool opened although its worker could not publish itself")
        assert worker_pids() == set()
        assert live_children() == []
    finally:
        blocker.unlink()


async def test_user_defined_discovery_class_works_with_spawned_workers() -> None:
    async with wool.WorkerPool(size=1, discovery=helpers.DelegatingDiscovery("custom")) as pool:
        assert await routines.pid() == pool.processes[0].pid


async def test_wait_for_workers() -> None:
    pool = wool.WorkerPool(size=1)
    with pytest.raises(RuntimeError, match="not open"):
        await pool.wait_for_workers()
    async with pool:
        (worker,) = await pool.wait_for_workers(timeout=10)
        assert worker.pid == pool.processes[0].pid
        with pytest.raises(TimeoutError):
            await pool.wait_for_workers(lambda workers: len(workers) == 2, timeout=0.2)
