"""A pool can start together with its workers: over a discovery namespace with no worker
yet (or none with the tags a call needs), a call waits up to `connect_timeout` for one to
appear, and only then raises `NoWorkersAvailable`."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Iterator

import pytest
import routines
from helpers import CliWorker, logged_to

import wool

pytestmark = pytest.mark.multiprocess


class Waiting(logging.Handler):
    """Sets an event when the mesh logs that a call waits for a worker to appear: the
    handshake that tells the test the call is blocked, before it starts the worker."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.event = asyncio.Event()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "waits up to" in record.getMessage():
            self.messages.append(record.getMessage())
            self.event.set()


@pytest.fixture
def waiting() -> Iterator[Waiting]:
    handler = Waiting()
    with logged_to(handler, "wool.mesh", logging.INFO):
        yield handler


async def _stop(worker: CliWorker) -> None:
    worker.signal(signal.SIGTERM)
    assert await worker.wait() == 0  # and withdrawn from the registry


async def test_a_call_made_before_any_worker_exists_runs_on_the_first_that_appears(waiting: Waiting) -> None:
    async with wool.WorkerPool(discovery=wool.LocalDiscovery("late"), connect_timeout=30) as pool:
        assert pool.workers == []  # entering over an empty namespace does not fail
        call = asyncio.ensure_future(routines.pid())
        async with asyncio.timeout(10):
            await waiting.event.wait()
        assert not call.done()
        assert waiting.messages == ["no worker in LocalDiscovery('late') yet: a call waits up to 30 s for one to appear"]
        async with CliWorker("--discovery", "local:late") as worker:
            assert await asyncio.wait_for(call, 20) == worker.pid
            await _stop(worker)


async def test_a_call_waits_for_a_worker_with_its_tags_while_others_serve(waiting: Waiting) -> None:
    async with CliWorker("--discovery", "local:tagged") as plain:
        async with wool.WorkerPool(discovery=wool.LocalDiscovery("tagged"), connect_timeout=30) as pool:
            await pool.wait_for_workers(timeout=10)
            with wool.options(tags="gpu"):
                call = asyncio.ensure_future(routines.pid())
            async with asyncio.timeout(10):
                await waiting.event.wait()
            assert await routines.pid() == plain.pid  # untagged calls still run meanwhile
            assert not call.done()
            assert "no worker with the tags gpu in LocalDiscovery('tagged') yet" in waiting.messages[0]
            async with CliWorker("--discovery", "local:tagged", "--tag", "gpu") as gpu:
                assert await asyncio.wait_for(call, 20) == gpu.pid
                await _stop(gpu)
        await _stop(plain)


async def test_the_wait_is_bounded_by_connect_timeout() -> None:
    async with wool.WorkerPool(discovery=wool.LocalDiscovery("never"), connect_timeout=0.2):
        with pytest.raises(wool.NoWorkersAvailable, match=r"add was not called: no live workers in .*\(waited 0.2 s\)"):
            await routines.add(1, 2)


async def test_a_spawned_pool_does_not_wait_for_workers_nobody_can_add() -> None:
    """Its namespace is private: once its workers are gone, no other can appear, so a call
    fails at once rather than after `connect_timeout`."""
    async with wool.WorkerPool(size=1, connect_timeout=3600) as pool:
        (process,) = pool.processes
        await process.kill()
        await pool.wait_for_workers(lambda ws: not ws, timeout=10)
        with pytest.raises(wool.NoWorkersAvailable, match=r"no live workers"):
            await routines.add(1, 2)


@pytest.mark.parametrize(
    ("value", "error", "pattern"),
    [(-1, ValueError, "non-negative"), ("10", TypeError, "number of seconds"), (float("inf"), ValueError, "finite")],
)
def test_connect_timeout_is_checked(value: object, error: type[Exception], pattern: str) -> None:
    with pytest.raises(error, match=f"connect_timeout must be a.*{pattern}"):
        wool.WorkerPool(discovery=wool.LocalDiscovery("x"), connect_timeout=value)  # type: ignore[arg-type]
