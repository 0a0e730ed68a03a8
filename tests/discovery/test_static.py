"""StaticDiscovery specifics: endpoints are checked, each one is asked which worker serves
there, a restarted worker is reported as removed then added, an unreachable endpoint is simply
absent, and pools and workers use the list."""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import socket
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import routines
from helpers import CliWorker

import wool
from wool.discovery import DiscoveryEvent, StaticDiscovery, parse_discovery

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(60)]

FAST = {"poll_interval": 0.05, "timeout": 0.5}


def closed_endpoint() -> str:
    """A loopback endpoint nothing listens on (the port was just free)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def nobody_endpoint() -> str:
    """A private endpoint (in the runtime directory) nothing listens on."""
    return f"ipc://{os.environ['WOOL_RUNTIME_DIR']}/nobody-{uuid.uuid4().hex[:8]}.sock"


def cli_worker(*args: str) -> CliWorker:
    """A worker (listening on its private ipc:// socket) whose own static list names no one
    else: it finds no peers, and publishes nothing anywhere."""
    return CliWorker("--discovery", f"static:{nobody_endpoint()}", *args)


async def next_event(watch: AsyncIterator[DiscoveryEvent], timeout: float = 10) -> DiscoveryEvent:
    return await asyncio.wait_for(anext(watch), timeout)


@pytest.mark.parametrize(
    "endpoint, problem",
    [
        ("tcp://0.0.0.0:5555", "wildcard"),
        ("tcp://*:5555", "wildcard"),
        ("tcp://host", "not an endpoint"),
        ("tcp://host:0", "no valid port"),
        ("tcp://host:http", "no valid port"),
        ("udp://host:5555", "not an endpoint"),
        ("ipc://", "not an endpoint"),
    ],
)
def test_endpoint_one_cannot_connect_to_is_refused(endpoint: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        StaticDiscovery([endpoint])


def test_spec_and_arguments() -> None:
    assert parse_discovery("static:tcp://10.0.0.1:7001,ipc:///tmp/w.sock") == StaticDiscovery(
        ["tcp://10.0.0.1:7001", "ipc:///tmp/w.sock"]
    )
    assert StaticDiscovery(["tcp://h:1", "tcp://h:1"]).endpoints == ("tcp://h:1",)
    with pytest.raises(ValueError, match="no endpoints"):
        parse_discovery("static:")
    with pytest.raises(TypeError, match="not a str"):
        StaticDiscovery("tcp://h:1")
    with pytest.raises(ValueError, match="positive"):
        StaticDiscovery([], poll_interval=0)
    copy = pickle.loads(pickle.dumps(StaticDiscovery(["tcp://h:1"], timeout=3)))
    assert (copy, copy.timeout) == (StaticDiscovery(["tcp://h:1"]), 3.0)


async def test_publish_and_withdraw_do_nothing() -> None:
    discovery = StaticDiscovery([closed_endpoint()], **FAST)
    worker = wool.WorkerInfo("w", "tcp://127.0.0.1:9", 1)
    await discovery.publish(worker)
    assert await discovery.workers() == []
    await discovery.withdraw(worker)


async def test_workers_names_each_incarnation_and_skips_unreachable_endpoints() -> None:
    async with cli_worker() as a, cli_worker() as b:
        discovery = StaticDiscovery([a.endpoint, closed_endpoint(), b.endpoint], **FAST)
        found = await discovery.workers()
        assert sorted((w.id, w.endpoint) for w in found) == sorted([(a.id, a.endpoint), (b.id, b.endpoint)])
        assert {(w.host, w.version) for w in found} == {("", wool.protocol.VERSION)}  # ipc: no host


async def test_watch_reports_a_restart_as_removed_then_added() -> None:
    async with cli_worker() as first:
        discovery = StaticDiscovery([first.endpoint], **FAST)
        watch = discovery.watch()
        try:
            added = await next_event(watch)
            assert (added.kind, added.worker.id) == ("added", first.id)
            first.signal(signal.SIGTERM)
            stopped = time.monotonic()
            assert await first.wait() == 0
            assert await next_event(watch) == DiscoveryEvent("removed", added.worker)
            lost = time.monotonic() - stopped
            async with cli_worker("--bind", first.endpoint) as second:
                ready = time.monotonic()
                again = await next_event(watch)
                found = time.monotonic() - ready
                assert (again.kind, again.worker.id, again.worker.endpoint) == ("added", second.id, first.endpoint)
        finally:
            await watch.aclose()  # type: ignore[attr-defined]
    print(f"\nstatic (poll 0.05 s): stop seen {lost * 1000:.0f} ms after SIGTERM, restart {found * 1000:.0f} ms after ready")


async def test_watch_waits_for_an_endpoint_that_comes_up_later() -> None:
    endpoint = nobody_endpoint()
    watch = StaticDiscovery([endpoint], **FAST).watch()
    try:
        pending = asyncio.ensure_future(next_event(watch))
        async with cli_worker("--bind", endpoint) as worker:
            added = await pending
            assert (added.kind, added.worker.id) == ("added", worker.id)
    finally:
        await watch.aclose()  # type: ignore[attr-defined]


async def test_pool_over_static_endpoints() -> None:
    async with cli_worker() as a, cli_worker() as b:
        async with wool.WorkerPool(discovery=StaticDiscovery([a.endpoint, b.endpoint])) as pool:
            await pool.wait_for_workers(lambda ws: len(ws) == 2, timeout=10)
            assert {await routines.pid() for _ in range(4)} == {a.pid, b.pid}


async def test_worker_started_with_a_static_list_sends_nested_calls_to_its_peers() -> None:
    async with cli_worker() as peer:
        async with CliWorker("--discovery", f"static:{peer.endpoint}") as worker:
            async with wool.WorkerPool(discovery=StaticDiscovery([worker.endpoint])) as pool:
                await pool.wait_for_workers(timeout=10)
                assert [w.id for w in pool.workers] == [worker.id]
                # The worker's mesh is itself plus what its list names: nested calls reach both.
                assert set(await routines.pids_of_nested(8)) <= {worker.pid, peer.pid}
                async with asyncio.timeout(10):
                    while peer.pid not in await routines.pids_of_nested(8):
                        pass
