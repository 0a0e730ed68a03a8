"""Peers that never authenticate, against a worker with CURVE keys listening on TCP: ten that
each send a frame header claiming 4 GiB (and then data) are dropped without the worker
allocating it; 32 that each send a whole 128 MiB - 1 byte frame instead of their handshake
(which the max message size allows) are cut within the worker's pre-authentication budget
while trusted calls go on; 1,200 idle connections, more than the usual 1,024-descriptor limit
the worker was started with, are cut down to the 64 the worker lets handshake at once and do
not stop a trusted caller from connecting and calling; nor does the short handshake interval
stop one while a routine blocks the worker's loop."""

from __future__ import annotations

import asyncio
import resource
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import routines
from helpers import CliWorker, Observer

import wool
from wool._keys import generate_directory
from wool._transport import HANDSHAKE_IVL_MS
from wool.worker._preauth import MAX_HANDSHAKES

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(60)]

MB = 1_000_000
# ZMTP 3.0 greeting of a CURVE client: signature, version 3.0, mechanism, as-server = 0.
GREETING = b"\xff" + bytes(8) + b"\x7f" + bytes([3, 0]) + b"CURVE".ljust(20, b"\x00") + b"\x00" + bytes(31)
# A long command frame (flags 0x06) whose 8-byte size claims 4 GiB.
CLAIM = bytes([0x06]) + (4 << 30).to_bytes(8, "big")
SENT_AFTER_CLAIM = 16 * (1 << 20)  # what each peer really sends of it: 160 MiB for ten
FRAME = (128 << 20) - 1  # the largest frame the default max message size lets through
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


def keyed_worker(key_dir: Path, stderr: Any = None) -> CliWorker:
    return CliWorker("--discovery", f"local:{NAME}", "--keys", str(key_dir), "--bind", "tcp://127.0.0.1:0", stderr=stderr)


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
async def test_1200_idle_unauthenticated_connections_are_cut_to_64_and_a_trusted_caller_gets_in(
    key_dir: Path, small_fd_limit: None, tmp_path: Path
) -> None:
    """Connections that never complete their handshake: the worker keeps the newest
    `MAX_HANDSHAKES` and cuts the others (it says so: they do not wait for the handshake
    interval), so they cost it neither descriptors nor memory, and a trusted caller still
    gets in."""
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log_file:
        await _idle_connections_are_cut(key_dir, log_file)
    assert f"more than {MAX_HANDSHAKES} connections were in their handshake" in log_path.read_text()


async def _idle_connections_are_cut(key_dir: Path, log_file: Any) -> None:
    async with keyed_worker(key_dir, stderr=log_file) as worker:
        resource.setrlimit(resource.RLIMIT_NOFILE, resource.getrlimit(resource.RLIMIT_NOFILE)[1:] * 2)  # this test's own
        peers: list[Peer] = []
        refused = 0  # cut before our connect completed
        closed: list[asyncio.Future[bool]] = []
        try:
            async with asyncio.timeout(30):
                for _ in range(12):
                    for peer in await asyncio.gather(
                        *(Peer.connect(port_of(worker)) for _ in range(100)), return_exceptions=True
                    ):
                        if isinstance(peer, ConnectionError):
                            refused += 1
                        elif isinstance(peer, Peer):
                            peers.append(peer)
                        else:
                            raise peer
                closed = [asyncio.ensure_future(peer.closed.wait()) for peer in peers]
                while refused + sum(peer.closed.is_set() for peer in peers) < 1200 - MAX_HANDSHAKES:
                    await asyncio.wait([c for c in closed if not c.done()], return_when=asyncio.FIRST_COMPLETED)
            still_open = sum(not peer.closed.is_set() for peer in peers)
            assert still_open <= MAX_HANDSHAKES
            assert await trusted_call(key_dir, worker) == worker.pid
        finally:
            for c in closed:
                c.cancel()
            await asyncio.gather(*(peer.close() for peer in peers))
        await stop(worker)
    print(f"\n1,200 idle unauthenticated connections: {still_open} left open, a trusted call completed")


async def send_a_whole_frame(port: int) -> Peer:
    """Greet as a CURVE client, then send a whole frame of 128 MiB - 1 bytes (the largest the
    default max message size lets through) in place of HELLO, or what the worker takes of it
    before it hangs up."""
    peer = await Peer.connect(port)
    await peer.send(GREETING + bytes([0x06]) + FRAME.to_bytes(8, "big"))
    chunk = bytes(1 << 20)
    for _ in range(FRAME // len(chunk) + 1):
        if peer.closed.is_set():
            break
        await peer.send(chunk)
    return peer


async def test_32_peers_sending_128_mib_frames_before_authenticating_stay_within_the_budget(key_dir: Path) -> None:
    """Before the budget, 32 such peers held 4.4 GB of a worker for the handshake interval and
    trusted calls took seconds. Now each is cut once it sent more than a handshake needs: the
    worker's peak RSS (the kernel's high-water mark, from /proc) grows by less than the 64 MB
    budget, and trusted calls complete throughout."""
    async with keyed_worker(key_dir) as worker:
        async with wool.WorkerPool(discovery=wool.LocalDiscovery(NAME), keys=key_dir) as pool:
            await pool.wait_for_workers(timeout=20)
            assert await routines.pid() == worker.pid  # connected and warmed up
            before = vm_kb(worker.pid, "VmRSS")
            Path(f"/proc/{worker.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS, from now on
            peers: list[Peer] = []
            try:
                async with asyncio.timeout(45):
                    attack = asyncio.gather(*(send_a_whole_frame(port_of(worker)) for _ in range(32)))
                    served = 0
                    while not attack.done():
                        assert await routines.pid() == worker.pid
                        served += 1
                    peers = await attack
                    for peer in peers:
                        await peer.closed.wait()  # the worker hung up on every one of them
                growth = (vm_kb(worker.pid, "VmHWM") - before) * 1024
                assert growth < 64 * MB, f"the worker's peak RSS grew by {growth / MB:.0f} MB"
                assert served > 0
            finally:
                await asyncio.gather(*(peer.close() for peer in peers))
        await stop(worker)
    print(
        f"\n32 peers sending 128 MiB frames before authenticating: worker peak RSS {growth / MB:+.1f} MB, {served} calls served"
    )


def vm_kb(pid: int, field: str) -> int:
    """A `/proc/PID/status` figure in kB (VmRSS now, VmHWM the peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for pid {pid}")


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


async def test_a_trusted_callers_first_message_may_be_far_larger_than_the_pre_authentication_budget(key_dir: Path) -> None:
    """The budget ends with the handshake: a new trusted connection whose very first call
    carries 8 MiB (128 times what an unauthenticated peer may send) is not cut."""
    payload = bytes(range(256)) * (8 * (1 << 20) // 256)
    async with keyed_worker(key_dir) as worker:
        async with wool.WorkerPool(discovery=wool.LocalDiscovery(NAME), keys=key_dir) as pool:
            await pool.wait_for_workers(timeout=20)
            async with asyncio.timeout(30):
                assert await routines.echo(payload) == payload
        await stop(worker)
