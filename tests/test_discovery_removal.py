"""Discovery is a hint for removal too: a worker whose authenticated connection is up stays
in rotation when discovery stops listing it (a spoofed Zeroconf goodbye, a clobbered
registry), until its connection fails or it refuses calls; a worker that is not connected
is dropped at once. (Graceful stops still drain: see tests/test_at_most_once.py and the
stop tests of tests/worker/test_cli.py.)"""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import routines
from helpers import CliWorker
from zeroconf import DNSOutgoing, DNSPointer, const
from zeroconf.asyncio import AsyncZeroconf

import wool
from wool._keys import generate_directory
from wool.caller._mesh import Mesh
from wool.discovery import DiscoveryEvent, LanDiscovery, WorkerInfo
from wool.discovery import _lan_record as record

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(60)]

LOOPBACK = ["127.0.0.1"]


class Feed:
    """A discovery whose changes the test makes; `tell` returns once the mesh handled one
    (it asked for the next event)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[DiscoveryEvent] = asyncio.Queue()

    async def publish(self, worker: WorkerInfo) -> None: ...

    async def withdraw(self, worker: WorkerInfo) -> None: ...

    async def workers(self) -> list[WorkerInfo]:
        return []

    async def watch(self) -> AsyncIterator[DiscoveryEvent]:
        while True:
            event = await self.queue.get()
            yield event
            self.queue.task_done()

    async def tell(self, kind: str, worker: WorkerInfo) -> None:
        await self.queue.put(DiscoveryEvent(kind, worker))  # type: ignore[arg-type]
        await asyncio.wait_for(self.queue.join(), 10)


@pytest.fixture
def key_dir(tmp_path: Path) -> Path:
    generate_directory(tmp_path / "keys")
    return tmp_path / "keys"


async def registered(name: str) -> WorkerInfo:
    (info,) = await wool.LocalDiscovery(name).workers()
    return info


async def test_a_connected_worker_stays_until_its_connection_fails_and_an_unconnected_one_goes() -> None:
    feed = Feed()
    mesh = Mesh(feed, liveness=1.0)  # type: ignore[arg-type]
    mesh.start_watching()
    try:
        async with CliWorker("--discovery", "local:removal") as cli:
            info = await registered("removal")
            await feed.tell("added", info)
            await mesh.wait_until(bool, 10)
            assert (await mesh.choose()).worker.id == cli.id  # connections are made on demand
            await feed.tell("removed", info)
            assert [w.id for w in mesh.workers] == [cli.id]  # still in rotation
            assert (await mesh.choose()).worker.id == cli.id
            cli.signal(signal.SIGKILL)
            await mesh.wait_until(lambda workers: not workers, 10)  # its connection failed: now it goes
            await cli.wait()
            await wool.LocalDiscovery("removal").withdraw(info)  # a killed worker cannot
        # A listed worker nobody answers for (its connection never came up) goes at once.
        ghost = WorkerInfo(uuid.uuid4().hex, "tcp://127.0.0.1:9", 1)
        await feed.tell("added", ghost)
        assert [w.id for w in mesh.workers] == [ghost.id]  # in rotation on discovery's word, never connected
        await feed.tell("removed", ghost)
        assert mesh.workers == []
        with pytest.raises(wool.NoWorkersAvailable) as empty:
            await mesh.choose()
        assert ghost.id not in str(empty.value)
    finally:
        await mesh.close()


async def test_a_clobbered_registry_entry_does_not_take_a_connected_worker_out() -> None:
    discovery = wool.LocalDiscovery("clobbered")
    async with CliWorker("--discovery", "local:clobbered") as cli:
        async with wool.WorkerPool(discovery=discovery) as pool:
            await pool.wait_for_workers(timeout=10)
            assert await routines.pid() == cli.pid  # connected (connections are made on demand)
            watch = discovery.watch()
            try:
                assert (await anext(watch)).kind == "added"
                await discovery.withdraw(await registered("clobbered"))  # another writer drops it
                assert (await asyncio.wait_for(anext(watch), 10)).kind == "removed"
                assert [await routines.pid() for _ in range(12)] == [cli.pid] * 12
                assert [w.id for w in pool.workers] == [cli.id]
            finally:
                await watch.aclose()  # type: ignore[attr-defined]
        cli.signal()
        assert await cli.wait() == 0


def goodbye(name: str) -> DNSOutgoing:
    """A goodbye for service `name`, as its owner would send when it withdraws: its PTR
    record with TTL 0. Anyone on the link can send it."""
    out = DNSOutgoing(const._FLAGS_QR_RESPONSE | const._FLAGS_AA)
    out.add_answer_at_time(DNSPointer(record.SERVICE_TYPE, const._TYPE_PTR, const._CLASS_IN, 0, name), 0)
    return out


async def test_spoofed_zeroconf_goodbyes_do_not_take_a_healthy_keyed_worker_out(key_dir: Path) -> None:
    ns = f"lan-{uuid.uuid4().hex[:10]}"
    spec = f"lan:{ns}@127.0.0.1"
    async with CliWorker("--discovery", spec, "--keys", str(key_dir), "--bind", "tcp://127.0.0.1:0") as cli:
        watch = LanDiscovery(ns, LOOPBACK).watch()
        try:
            async with wool.WorkerPool(discovery=LanDiscovery(ns, LOOPBACK), keys=key_dir) as pool:
                await pool.wait_for_workers(timeout=15)
                assert await routines.pid() == cli.pid  # connected (connections are made on demand)
                added = await asyncio.wait_for(anext(watch), 15)
                assert (added.kind, added.worker.id) == ("added", cli.id)
                name = record.instance_name(cli.id, ns)
                async with AsyncZeroconf(interfaces=LOOPBACK) as attacker:
                    await attacker.zeroconf.async_wait_for_start()
                    attacker.zeroconf.async_send(goodbye(name))
                    removed = await asyncio.wait_for(anext(watch), 15)
                assert (removed.kind, removed.worker.id) == ("removed", cli.id)  # the spoof worked on discovery
                assert [await routines.pid() for _ in range(12)] == [cli.pid] * 12
                assert [w.id for w in pool.workers] == [cli.id]
        finally:
            await watch.aclose()  # type: ignore[attr-defined]
        cli.signal()
        assert await cli.wait() == 0
