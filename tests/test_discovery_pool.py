"""Pools over workers started by hand (`python -m wool.worker --discovery local:NAME`): the
pool spawns nothing it was not asked to, dispatches to what it discovers, follows workers
joining and leaving, and leaves the workers it did not spawn running."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter

import helpers
import psutil
import pytest
import routines
from helpers import CliWorker

import wool

pytestmark = pytest.mark.multiprocess

NAME = "desk"


def cli_worker() -> CliWorker:
    return CliWorker("--discovery", f"local:{NAME}")


def discovery() -> wool.LocalDiscovery:
    return wool.LocalDiscovery(NAME)


def child_pids() -> set[int]:
    """Live worker processes this process started: hand-started ones are children, spawned
    ones are forked by a pool's template (a child too, left out: it is no worker)."""
    live = {
        c.pid: c.ppid()
        for c in psutil.Process().children(recursive=True)
        if c.is_running() and c.status() != psutil.STATUS_ZOMBIE
    }
    return set(live) - set(live.values())


async def wait_serving(pool: wool.WorkerPool, pids: set[int]) -> None:
    """Wait until exactly the workers `pids` are in the pool's rotation."""
    await pool.wait_for_workers(lambda workers: {w.pid for w in workers} == pids, timeout=10)


def serving(pool: wool.WorkerPool) -> set[int]:
    return {w.pid for w in pool.workers}


async def pids_of(calls: int) -> Counter[int]:
    return Counter([await routines.pid() for _ in range(calls)])


async def stop(*workers: CliWorker) -> None:
    """SIGTERM hand-started workers; each withdraws and exits 0."""
    for worker in workers:
        worker.signal(signal.SIGTERM)
    for worker in workers:
        assert await worker.wait() == 0


async def test_discovery_pool_spawns_nothing_and_leaves_workers_running() -> None:
    async with cli_worker() as a, cli_worker() as b:
        async with wool.WorkerPool(discovery=discovery()) as pool:
            assert pool.processes == []
            assert child_pids() == {a.pid, b.pid}
            await wait_serving(pool, {a.pid, b.pid})
            assert await pids_of(4) == Counter({a.pid: 2, b.pid: 2})
        assert child_pids() == {a.pid, b.pid}
        assert a.proc is not None and a.proc.poll() is None
        assert b.proc is not None and b.proc.poll() is None
        async with wool.WorkerPool(discovery=discovery()) as again:
            await wait_serving(again, {a.pid, b.pid})
            assert await routines.add(2, 3) == 5
            assert set(await pids_of(4)) == {a.pid, b.pid}
        await stop(a, b)
    assert await discovery().workers() == []


async def test_pool_spawns_into_a_discovered_namespace() -> None:
    async with cli_worker() as cli:
        async with wool.WorkerPool(size=1, discovery=discovery()) as pool:
            (spawned,) = [w.pid for w in pool.processes]
            assert child_pids() == {cli.pid, spawned}
            assert {w.pid for w in await discovery().workers()} == {cli.pid, spawned}
            await wait_serving(pool, {cli.pid, spawned})
            assert await pids_of(4) == Counter({cli.pid: 2, spawned: 2})
        # The spawned worker is gone (and withdrawn); the hand-started one still serves.
        assert child_pids() == {cli.pid}
        assert [w.pid for w in await discovery().workers()] == [cli.pid]
        await stop(cli)


async def test_pool_follows_workers_joining_and_leaving() -> None:
    async with cli_worker() as a:
        async with wool.WorkerPool(discovery=discovery()) as pool:
            await wait_serving(pool, {a.pid})
            assert set(await pids_of(2)) == {a.pid}
            async with cli_worker() as b:
                await wait_serving(pool, {a.pid, b.pid})
                assert await pids_of(4) == Counter({a.pid: 2, b.pid: 2})
                b.signal(signal.SIGTERM)
                assert await b.wait() == 0
                await wait_serving(pool, {a.pid})
                assert [await routines.add(i, i) for i in range(3)] == [0, 2, 4]
                assert set(await pids_of(4)) == {a.pid}
        await stop(a)


async def test_empty_namespace_raises_no_workers_available() -> None:
    """Once no worker appeared within `connect_timeout` (see tests/test_pool_waits.py)."""
    async with wool.WorkerPool(discovery=wool.LocalDiscovery("empty"), connect_timeout=0.1) as pool:
        assert pool.workers == []
        with pytest.raises(wool.NoWorkersAvailable, match=r"no live workers.*\(waited 0.1 s\)"):
            await routines.add(1, 2)
    assert issubclass(wool.NoWorkersAvailable, wool.WoolError)


async def test_nested_calls_on_a_worker_reach_its_peers() -> None:
    async with cli_worker() as a, cli_worker() as b:
        async with wool.WorkerPool(discovery=discovery()) as pool:
            await wait_serving(pool, {a.pid, b.pid})
            # Each worker learns of its peer through the same registry, on its own schedule:
            # retry (real calls, no sleeping) until the one serving the call has its peer too.
            async with asyncio.timeout(10):
                while set(nested := await routines.pids_of_nested(8)) != {a.pid, b.pid}:
                    assert set(nested) <= {a.pid, b.pid}
            assert sorted(Counter(nested).values()) == [4, 4]
        await stop(a, b)


async def test_a_call_made_as_the_first_worker_connects_is_not_refused() -> None:
    async with cli_worker() as worker:
        async with wool.WorkerPool(discovery=discovery()) as pool:
            # One call starts in every loop iteration until the worker is in rotation, so one
            # of them starts at the moment its connection completes.
            calls = []
            async with asyncio.timeout(10):
                while not pool.workers:
                    calls.append(asyncio.create_task(routines.add(1, 2)))
                    await asyncio.sleep(0)
            results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 10)
        await stop(worker)
    assert [r for r in results if r != 3] == []


class FrozenView(helpers.DelegatingDiscovery):
    """A discovery that reports the workers present when watched, then never a change, so
    the pool keeps choosing a worker that has withdrawn."""

    async def watch(self):  # type: ignore[no-untyped-def,override]
        for worker in await self.inner.workers():
            yield wool.DiscoveryEvent("added", worker)
        await asyncio.Event().wait()


class Prefer:
    """Choose the worker with pid `pid` whenever it is a candidate."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.offered: list[int] = []

    def choose(self, candidates):  # type: ignore[no-untyped-def]
        self.offered.append(len(candidates))
        return next((c for c in candidates if c.worker.pid == self.pid), candidates[0])


async def test_a_call_refused_by_a_stopping_worker_runs_once_elsewhere() -> None:
    """A draining worker refuses new calls before running them: the call goes to another
    worker (it ran exactly once), and the draining worker's own call still completes."""
    async with helpers.Observer() as observer, cli_worker() as stopping, cli_worker() as other:
        balancer = Prefer(stopping.pid)
        async with wool.WorkerPool(discovery=FrozenView(NAME), loadbalancer=balancer) as pool:
            await wait_serving(pool, {stopping.pid, other.pid})
            held = asyncio.ensure_future(routines.wait_at(observer.address, "held"))
            await observer.wait_for("at held")
            await helpers.stop_and_wait_withdrawn(discovery(), stopping)  # it is draining now
            offered = len(balancer.offered)
            assert await routines.pid() == other.pid
            # Either the stopping worker's goodbye (sent as it starts draining) had already
            # taken it out of rotation, or the balancer chose it, was refused, and chose again.
            assert balancer.offered[offered:] in ([1], [2, 1])
            assert serving(pool) == {other.pid}
            observer.open("held")
            assert await asyncio.wait_for(held, 10) == "held"
        assert await stopping.wait() == 0
        other.signal(signal.SIGTERM)
        assert await other.wait() == 0
