"""A bad registry never breaks a running pool or worker, with real processes.

A truncated or garbage registry file, a stale entry of a dead process, and an entry whose
endpoint refuses connections are skipped, and the rest keeps working: calls reach the real
workers, the workers stay up, and a worker that starts later is found. (The discovery class
on its own is tested on corrupt files in `tests/discovery/test_local.py`.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import helpers
import pytest
import routines
from helpers import CliWorker, logged_to

import wool

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(60)]

NAME = "faulty"
CONNECT_TIMEOUT = 10.0  # how long a call waits for a worker that is still connecting (Mesh)


class WoolWarnings(logging.Handler):
    """The `wool` logger's warnings in this process, and a way to wait for one (a handshake
    with the code that logs it, not a sleep). Records may come from discovery's threads."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []
        self._loop = loop
        self._changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        self._loop.call_soon_threadsafe(self._record, message)

    def _record(self, message: str) -> None:
        self.messages.append(message)
        self._changed.set()

    def matching(self, pattern: str) -> list[str]:
        return [m for m in self.messages if re.search(pattern, m)]

    async def wait_for(self, pattern: str, timeout: float = 10.0) -> str:
        async with asyncio.timeout(timeout):
            while not (found := self.matching(pattern)):
                self._changed.clear()
                await self._changed.wait()
        return found[0]


@pytest.fixture
async def wool_warnings() -> AsyncIterator[WoolWarnings]:
    handler = WoolWarnings(asyncio.get_running_loop())
    try:
        with logged_to(handler):
            yield handler
    finally:
        print(f"\nwool warnings logged in the test process: {handler.messages}")


@contextlib.contextmanager
def refusing_endpoint() -> Iterator[str]:
    """A 127.0.0.1 endpoint that refuses connections: its port is bound (so nobody else takes
    it) but not listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"tcp://127.0.0.1:{sock.getsockname()[1]}"


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def entry(label: str, endpoint: str, pid: int) -> wool.WorkerInfo:
    return wool.WorkerInfo(f"{label}-{uuid.uuid4().hex[:8]}", endpoint, pid, socket.gethostname())


def registry_file(runtime_dir: Path) -> Path:
    return runtime_dir / "registry" / f"{NAME}.json"


def listed_in_file(runtime_dir: Path) -> set[str]:
    return set(json.loads(registry_file(runtime_dir).read_bytes())["workers"])


def worker() -> CliWorker:
    return CliWorker("--discovery", f"local:{NAME}")


def ids(workers: list[wool.WorkerInfo]) -> set[str]:
    return {w.id for w in workers}


async def stop(*workers: CliWorker) -> None:
    """SIGTERM: each worker withdraws and exits 0 (so it was alive until then)."""
    for w in workers:
        w.signal(signal.SIGTERM)
    for w in workers:
        assert await w.wait() == 0


def remove_registry(runtime_dir: Path) -> None:
    """After a failure, so that the leak check does not report a registry we clobbered."""
    for path in (registry_file(runtime_dir), registry_file(runtime_dir).with_suffix(".lock")):
        path.unlink(missing_ok=True)


# ---- stale and unreachable entries


async def test_calls_skip_a_stale_entry_and_an_endpoint_that_refuses_connections(
    runtime_dir: Path, wool_warnings: WoolWarnings
) -> None:
    discovery = wool.LocalDiscovery(NAME)
    with refusing_endpoint() as endpoint:
        stale = entry("stale", endpoint, dead_pid())
        refusing = entry("refusing", endpoint, os.getpid())  # alive, but nobody listens there
        async with worker() as real:
            await discovery.publish(refusing)
            # A publisher's word stands, whatever its pid; the next reader prunes it.
            await discovery.publish(stale)
            try:
                async with wool.WorkerPool(discovery=discovery) as pool:
                    async with asyncio.timeout(15):
                        pids = [await routines.pid() for _ in range(20)]
                        # The worker's own mesh lists the refusing entry too.
                        nested = await routines.pids_of_nested(4)
                    assert set(pids) == {real.pid}
                    assert set(nested) == {real.pid}
                    assert ids(pool.workers) == {real.id}
                # The dead process's entry was pruned from the file; the live one stays.
                assert listed_in_file(runtime_dir) == {real.id, refusing.id}
                assert real.proc is not None and real.proc.poll() is None
            finally:
                await discovery.withdraw(refusing)
            await stop(real)


async def test_a_namespace_whose_only_entry_refuses_connections_raises_no_workers_available() -> None:
    """Bounded, not a hang: a call waits up to the mesh's connect timeout (10 s) for a worker
    that is still connecting, and one that refuses is, for now, indistinguishable from it."""
    discovery = wool.LocalDiscovery(NAME)
    loop = asyncio.get_running_loop()
    with refusing_endpoint() as endpoint:
        refusing = entry("refusing", endpoint, os.getpid())
        await discovery.publish(refusing)
        try:
            async with wool.WorkerPool(discovery=discovery) as pool:
                started = loop.time()
                with pytest.raises(wool.NoWorkersAvailable, match=rf"no live workers in LocalDiscovery\('{NAME}'\)"):
                    async with asyncio.timeout(CONNECT_TIMEOUT + 10):
                        await routines.add(1, 2)
                elapsed = loop.time() - started
                assert pool.workers == []
        finally:
            await discovery.withdraw(refusing)
    print(f"\nNoWorkersAvailable after {elapsed:.1f} s")


async def test_an_endpoint_that_refuses_connections_is_skipped_at_once_with_a_warning(
    wool_warnings: WoolWarnings,
) -> None:
    discovery = wool.LocalDiscovery(NAME)
    with refusing_endpoint() as endpoint:
        refusing = entry("refusing", endpoint, os.getpid())
        await discovery.publish(refusing)
        try:
            async with wool.WorkerPool(discovery=discovery):
                for _ in range(2):  # neither the first call nor a later one waits it out
                    with pytest.raises(wool.NoWorkersAvailable, match=re.escape(endpoint)):
                        async with asyncio.timeout(2):
                            await routines.add(1, 2)
            assert wool_warnings.matching(re.escape(endpoint))
        finally:
            await discovery.withdraw(refusing)


# ---- clobbered registry files


def clobber(path: Path, kind: str) -> None:
    """Rewrite the registry in place, as a crashed or careless writer would."""
    raw = path.read_bytes()
    damaged = {
        "empty": b"",
        "torn": raw[: len(raw) // 2],  # a non-atomic rewrite, read half-way
        "garbage": os.urandom(64).replace(b"{", b"(") + b"\x00",
    }[kind]
    with open(path, "r+b") as f:
        f.truncate(0)
        f.write(damaged)


CLOBBERED = ["empty", "torn", "garbage"]
CORRUPT_WARNING = rf"wool registry \S*{NAME}\.json: "


@pytest.mark.parametrize("kind", CLOBBERED)
async def test_a_worker_outlives_a_clobbered_registry_and_a_later_worker_is_found(
    kind: str, runtime_dir: Path, wool_warnings: WoolWarnings
) -> None:
    try:
        async with helpers.Observer() as observer, worker() as first:
            async with wool.WorkerPool(discovery=wool.LocalDiscovery(NAME)) as pool:
                await pool.wait_for_workers(lambda ws: ids(ws) == {first.id}, timeout=10)
                held = asyncio.ensure_future(routines.wait_at(observer.address, "held"))
                await observer.wait_for("at held")
                clobber(registry_file(runtime_dir), kind)
                await wool_warnings.wait_for(CORRUPT_WARNING)  # the pool has read it
                observer.open("held")
                assert await asyncio.wait_for(held, 10) == "held"  # the running call finished
                assert first.proc is not None and first.proc.poll() is None
                async with worker() as later:  # publishes into the clobbered file
                    await pool.wait_for_workers(lambda ws: later.id in ids(ws), timeout=10)
                    async with asyncio.timeout(10):
                        while await routines.pid() != later.pid:  # round robin: soon
                            pass
                    await stop(later)
            await stop(first)
    except BaseException:
        remove_registry(runtime_dir)
        raise


@pytest.mark.parametrize("kind", CLOBBERED)
async def test_calls_keep_reaching_running_workers_when_the_registry_is_clobbered(
    kind: str, runtime_dir: Path, wool_warnings: WoolWarnings
) -> None:
    discovery = wool.LocalDiscovery(NAME)
    try:
        async with worker() as first:
            async with wool.WorkerPool(discovery=discovery) as pool:
                await pool.wait_for_workers(lambda ws: ids(ws) == {first.id}, timeout=10)
                clobber(registry_file(runtime_dir), kind)
                await wool_warnings.wait_for(CORRUPT_WARNING)  # the pool has read it
                # New calls, nested ones included, keep going to the running worker, until the
                # worker's entry is back in the registry (and then some more).
                async with asyncio.timeout(10):
                    calls = 0
                    while calls < 20 or first.id not in ids(await discovery.workers()):
                        assert await routines.pids_of_nested(1) == [first.pid]
                        calls += 1
                async with worker() as later:
                    await pool.wait_for_workers(lambda ws: ids(ws) == {first.id, later.id}, timeout=10)
                    await stop(later)
            await stop(first)
    except BaseException:
        remove_registry(runtime_dir)
        raise
