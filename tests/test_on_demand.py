"""Connections on demand: a process connects to a worker when it first dispatches to it, and
closes the connection after `idle_timeout` seconds without calls; discovery alone puts a
worker in rotation."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable

import pytest
import routines
from helpers import REPO, CliWorker

import wool

pytestmark = pytest.mark.multiprocess


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Check `condition` each 50 ms until it holds (connections close on a timer of their own,
    with no event to wait on from outside)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.05)


async def test_workers_that_only_serve_hold_no_connections_to_their_peers() -> None:
    async with wool.WorkerPool(size=3) as pool:
        # Round robin: each worker answers once, and none of them has dispatched anything.
        assert [await routines.connected_peers() for _ in range(3)] == [[], [], []]
        assert len(pool.workers) == 3


async def test_a_worker_connects_to_the_peers_it_calls_and_closes_idle_connections() -> None:
    async with wool.WorkerPool(size=1, idle_timeout=0.3) as pool:
        (worker,) = pool.workers
        assert await routines.pids_of_nested(2) == [worker.pid, worker.pid]  # to itself
        assert await routines.connected_peers() == [worker.id]
        async with asyncio.timeout(10):
            while await routines.connected_peers():  # closed after 0.3 to 0.45 s without calls
                await asyncio.sleep(0.05)
        assert await routines.pids_of_nested(2) == [worker.pid, worker.pid]  # and reopened
        assert pool.workers == [worker]


async def test_the_pool_closes_idle_connections_and_keeps_the_workers_in_rotation() -> None:
    async with wool.WorkerPool(size=2, idle_timeout=0.3) as pool:
        mesh = pool._mesh
        assert mesh is not None
        assert len(mesh.connections) == 2  # entry connected to each spawned worker
        await until(lambda: not mesh.connections)
        assert {w.pid for w in pool.workers} == {p.pid for p in pool.processes}
        pids = {await routines.pid() for _ in range(4)}  # each first call pays a handshake
        assert pids == {p.pid for p in pool.processes}
        assert len(mesh.connections) == 2


async def test_a_connection_with_a_stream_open_is_not_closed_however_long_it_waits() -> None:
    async with wool.WorkerPool(size=1, idle_timeout=3600) as pool:
        mesh = pool._mesh
        assert mesh is not None
        stream = routines.countdown(3)
        assert await anext(stream) == 3
        (conn,) = mesh.connections
        for _ in range(5):  # sweeps, as the timer would run them, with the stream between steps
            mesh._sweep()
        assert mesh.connections == [conn]
        assert [i async for i in stream] == [2, 1]
        for _ in range(3):  # idle for three sweeps in a row: at least the timeout
            mesh._sweep()
        assert mesh.connections == []
        assert await routines.add(1, 2) == 3


async def test_without_an_idle_timeout_connections_stay_open() -> None:
    async with wool.WorkerPool(size=1, idle_timeout=None) as pool:
        assert pool._mesh is not None and pool._mesh._sweeper is None
        assert await routines.add(1, 2) == 3
        assert pool._mesh._sweeper is None


async def test_a_listed_worker_that_never_completes_its_handshake_is_skipped() -> None:
    """Discovery lists it, so it is in rotation; the call chosen for it waits for a handshake
    that never comes (at most max(1 s, 3/4 liveness)), then goes to the other worker: it had
    sent nothing. The silent endpoint is a listening socket nobody reads (the kernel accepts
    the connection, as it does for a frozen worker's)."""
    namespace = wool.LocalDiscovery("silent")
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        ghost = wool.WorkerInfo(uuid.uuid4().hex, f"tcp://127.0.0.1:{silent.getsockname()[1]}", os.getpid())
        async with CliWorker("--discovery", "local:silent") as a:
            await namespace.publish(ghost)
            try:
                async with wool.WorkerPool(discovery=namespace) as pool:  # liveness 5 s: the bound is 3.75 s
                    await pool.wait_for_workers(lambda ws: len(ws) == 2, timeout=10)
                    async with asyncio.timeout(20):
                        assert {await routines.pid() for _ in range(4)} == {a.pid}
                    assert [w.id for w in pool.workers] == [a.id]
            finally:
                await namespace.withdraw(ghost)
            a.signal()
            assert await a.wait() == 0


@pytest.mark.parametrize(("value", "error"), [(0, ValueError), (-1.0, ValueError), (float("inf"), ValueError), ("5", TypeError)])
def test_a_bad_idle_timeout_is_refused(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="idle_timeout"):
        wool.WorkerPool(size=1, idle_timeout=value)  # type: ignore[arg-type]


def test_the_cli_refuses_a_negative_idle_timeout() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "wool.worker", "--discovery", "local:x", "--idle-timeout", "-1"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=30,
    )
    assert done.returncode == 2
    assert "--idle-timeout" in done.stderr
