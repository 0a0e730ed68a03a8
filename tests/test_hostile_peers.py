"""Peers that never authenticate, against a worker with CURVE keys listening on TCP: ten that
each send a frame header claiming 4 GiB (and then data) are dropped without the worker
allocating it, and 1,200 idle connections, more than the usual 1,024-descriptor limit the
worker was started with, do not stop a trusted caller from connecting and calling; nor does
the short handshake interval stop one while a routine blocks the worker's loop."""

from __future__ import annotations

import asyncio
import resource
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import routines
from helpers import CliWorker, Observer

import wool
from wool._keys import generate_directory
from wool._transport import HANDSHAKE_IVL_MS

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(60)]

MB = 1_000_000
# ZMTP 3.0 greeting of a CURVE client: signature, version 3.0, mechanism, as-server = 0.
GREETING = b"\xff" + bytes(8) + b"\x7f" + bytes([3, 0]) + b"CURVE".ljust(20, b"\x00") + b"\x00" + bytes(31)
# A long command frame (flags 0x06) whose 8-byte size claims 4 GiB.
CLAIM = bytes([0x06]) + (4 << 30).to_bytes(8, "big")
SENT_AFTER_CLAIM = 16 * (1 << 20)  # what each peer really sends of it: 160 MiB for ten
NAME = "hostile"


@pytest.fixture
def key_dir(tmp_path: Path) -> Path:
    generate_directory(tmp_path / "keys")
    return tmp_path / "keys"


@pytest.fixture
def small_fd_limit() -> Iterator[None]:
    """Processes started inside get the common default soft limit of 1,024 descriptors (the
    hard limit stays), as a worker started from an ordinary shell would."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def keyed_worker(key_dir: Path) -> CliWorker:
    return CliWorker("--discovery", f"local:{NAME}", "--keys", str(key_dir), "--bind", "tcp://127.0.0.1:0")


def port_of(worker: CliWorker) -> int:
    return int(worker.endpoint.rsplit(":", 1)[1])


async def trusted_call(key_dir: Path, worker: CliWorker) -> int:
    """A new trusted pool (a new connection, new descriptors on the worker) calls it."""
    async with wool.WorkerPool(discovery=wool.LocalDiscovery(NAME), keys=key_dir) as pool:
        await pool.wait_for_workers(timeout=20)
        return await routines.pid()


async def stop(worker: CliWorker) -> None:
    worker.signal()
    assert await worker.wait() == 0


class Peer:
    """One unauthenticated TCP connection to the worker, and a task that notices when the
    worker hangs up on it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.accepted = asyncio.Event()  # the worker's greeting began: it holds a descriptor for us
        self.closed = asyncio.Event()
        self._task = asyncio.ensure_future(self._follow())

    @classmethod
    async def connect(cls, port: int) -> Peer:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def _follow(self) -> None:
        try:
            while await self.reader.read(1 << 16):
                self.accepted.set()
        except ConnectionError:
            pass
        finally:
            self.closed.set()

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        try:
            await self.writer.drain()
        except ConnectionError:
            pass  # the worker hung up while we were sending

    async def close(self) -> None:
        self.writer.close()
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def claim_4_gib(port: int) -> Peer:
    """Greet as a CURVE client, claim a 4 GiB frame, and send 16 MiB of it (or what the
    worker takes before it hangs up)."""
    peer = await Peer.connect(port)
    await peer.send(GREETING + CLAIM)
    chunk = bytes(1 << 20)
    for _ in range(SENT_AFTER_CLAIM // len(chunk)):
        if peer.closed.is_set():
            break
        await peer.send(chunk)
    return peer


async def test_peers_claiming_4_gib_frames_cost_a_keyed_worker_less_than_50_mb(key_dir: Path) -> None:
    async with keyed_worker(key_dir) as worker:
        process = psutil.Process(worker.pid)
        assert await trusted_call(key_dir, worker) == worker.pid  # warmed up: its pool, its ZAP handler
        before = process.memory_info().rss
        peers: list[Peer] = []
        try:
            async with asyncio.timeout(30):
                peers = await asyncio.gather(*(claim_4_gib(port_of(worker)) for _ in range(10)))
                growth = process.memory_info().rss - before  # while they are connected, or just dropped
                assert growth < 50 * MB, f"the worker's RSS grew by {growth / MB:.0f} MB"
                for peer in peers:
                    await peer.closed.wait()  # the worker hung up on every one of them
        finally:
            await asyncio.gather(*(peer.close() for peer in peers))
        assert await trusted_call(key_dir, worker) == worker.pid
        await stop(worker)
    print(f"\n10 peers claiming 4 GiB (each sending up to 16 MiB): worker RSS {growth / MB:+.1f} MB")


@pytest.mark.timeout(90)
async def test_a_trusted_call_completes_with_1200_idle_unauthenticated_connections_open(
    key_dir: Path, small_fd_limit: None
) -> None:
    async with keyed_worker(key_dir) as worker:
        resource.setrlimit(resource.RLIMIT_NOFILE, resource.getrlimit(resource.RLIMIT_NOFILE)[1:] * 2)  # this test's own
        peers: list[Peer] = []
        try:
            async with asyncio.timeout(30):
                for _ in range(12):
                    peers += await asyncio.gather(*(Peer.connect(port_of(worker)) for _ in range(100)))
                for peer in peers:
                    await peer.accepted.wait()  # each one accepted: the worker holds 1,200 descriptors for them
            assert await trusted_call(key_dir, worker) == worker.pid
            still_open = sum(not peer.closed.is_set() for peer in peers)
            assert still_open > 1024, f"only {still_open} idle connections were still open when the call completed"
        finally:
            await asyncio.gather(*(peer.close() for peer in peers))
        await stop(worker)
    print(f"\ntrusted call completed with {still_open} idle unauthenticated connections open")


async def test_a_new_trusted_caller_gets_in_while_the_workers_loop_is_blocked_past_the_handshake_interval(
    key_dir: Path,
) -> None:
    """The short handshake interval must not turn CPU-bound routines into refusals: the ZAP
    handler answers on its own thread, so a caller connecting while a routine blocks the
    worker's loop for longer than the interval completes its handshake, and its call runs
    once the loop is free."""
    async with Observer() as observer, keyed_worker(key_dir) as worker:
        async with wool.WorkerPool(discovery=wool.LocalDiscovery(NAME), keys=key_dir) as pool:
            await pool.wait_for_workers(timeout=20)
            hogging = asyncio.ensure_future(routines.hog(observer.address, HANDSHAKE_IVL_MS / 1000 + 2))
            await observer.wait_for("hogging")
            assert await trusted_call(key_dir, worker) == worker.pid
            await hogging
        await stop(worker)
