"""What every `Discovery` backend must do. Add a backend by extending `backend`'s params;
every test here then runs against it (the tests that publish are skipped for static and DNS
discovery, whose publish does nothing; DNS runs against a real dnsmasq, or is skipped saying
why)."""

from __future__ import annotations

import asyncio
import os
import pickle
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import cloudpickle
import dnsmasq
import pytest

from wool.discovery import (
    Discovery,
    DiscoveryEvent,
    DnsDiscovery,
    LanDiscovery,
    LocalDiscovery,
    StaticDiscovery,
    WorkerInfo,
    _lan,
)

Factory = Callable[[str], Discovery]


@pytest.fixture(params=["local", "lan", "static", "dns"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def publishes(backend: str) -> None:
    """For the tests that publish and withdraw entries themselves."""
    if backend == "static":
        pytest.skip("static discovery lists a fixed set of endpoints: publish and withdraw do nothing")
    if backend == "dns":
        pytest.skip("DNS discovery follows records the cluster publishes: publish and withdraw do nothing")


def closed_endpoint() -> str:
    """A loopback TCP endpoint nothing listens on (the port was just free)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
async def dns_server(backend: str, tmp_path: Path) -> AsyncIterator[dnsmasq.Dnsmasq | None]:
    """For the DNS backend, a dnsmasq answering for its names; None for the others."""
    if backend != "dns":
        yield None
        return
    reason = dnsmasq.unavailable()
    if reason is not None:
        pytest.skip(reason)
    server = await dnsmasq.Dnsmasq(tmp_path, wildcard="127.0.0.1").start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def make_discovery(backend: str, dns_server: dnsmasq.Dnsmasq | None) -> AsyncIterator[Factory]:
    """Build discovery objects for namespaces; fail the test if it leaves entries behind."""
    made: list[Discovery] = []

    def make(namespace: str) -> Discovery:
        if backend == "local":
            discovery: Discovery = LocalDiscovery(namespace, poll_interval=0.01)
        elif backend == "lan":
            discovery = LanDiscovery(namespace, interfaces=["127.0.0.1"])  # never the machine's LAN
        elif backend == "static":
            discovery = StaticDiscovery([closed_endpoint()], poll_interval=0.05, timeout=0.2)
        elif backend == "dns":
            # Every name in the domain has the address 127.0.0.1 (see `dns_server`); nothing
            # listens at this port: the name resolves, and no worker is there.
            assert dns_server is not None
            port = closed_endpoint().rpartition(":")[2]
            discovery = DnsDiscovery(
                f"{namespace}.{dnsmasq.DOMAIN}",
                int(port),
                interval=0.05,
                poll_interval=0.05,
                timeout=0.2,
                nameservers=[dns_server.nameserver],
            )
        else:
            raise AssertionError(f"unknown backend {backend}")
        made.append(discovery)
        return discovery

    yield make
    for discovery in made:
        assert await discovery.workers() == [], f"test left entries in {discovery!r}"
    assert not _lan._hubs.get(asyncio.get_running_loop()), "test left Zeroconf open"


@pytest.fixture
def discovery(make_discovery: Factory) -> Discovery:
    return make_discovery(f"ns-{uuid.uuid4().hex[:12]}")


def worker(name: str, *tags: str) -> WorkerInfo:
    """An entry for this (live) process."""
    return WorkerInfo(
        id=f"{name}-{uuid.uuid4().hex[:8]}",
        endpoint=f"ipc:///tmp/{name}.sock",
        pid=os.getpid(),
        tags=frozenset(tags),
    )


async def next_event(it: AsyncIterator[DiscoveryEvent]) -> DiscoveryEvent:
    return await asyncio.wait_for(anext(it), timeout=5)


def test_satisfies_protocol(discovery: Discovery) -> None:
    assert isinstance(discovery, Discovery)


async def test_empty_namespace_has_no_workers(discovery: Discovery) -> None:
    assert await discovery.workers() == []


@pytest.mark.usefixtures("publishes")
async def test_publish_then_listed(discovery: Discovery) -> None:
    a, b = worker("a"), worker("b", "gpu")
    await discovery.publish(a)
    await discovery.publish(b)
    try:
        assert sorted(await discovery.workers(), key=lambda w: w.id) == sorted([a, b], key=lambda w: w.id)
    finally:
        await discovery.withdraw(a)
        await discovery.withdraw(b)


@pytest.mark.usefixtures("publishes")
async def test_withdraw_removes(discovery: Discovery) -> None:
    a, b = worker("a"), worker("b")
    await discovery.publish(a)
    await discovery.publish(b)
    await discovery.withdraw(a)
    try:
        assert await discovery.workers() == [b]
    finally:
        await discovery.withdraw(b)
    assert await discovery.workers() == []


@pytest.mark.usefixtures("publishes")
async def test_withdraw_absent_is_fine(discovery: Discovery) -> None:
    a, b = worker("a"), worker("b")
    await discovery.withdraw(a)  # empty namespace
    await discovery.publish(b)
    try:
        await discovery.withdraw(a)  # populated namespace, other id
        assert await discovery.workers() == [b]
    finally:
        await discovery.withdraw(b)
    await discovery.withdraw(b)  # twice


@pytest.mark.usefixtures("publishes")
async def test_republish_same_id_updates(discovery: Discovery) -> None:
    a = worker("a", "old")
    a2 = WorkerInfo(a.id, a.endpoint, a.pid, a.host, frozenset({"new", "tags"}))
    await discovery.publish(a)
    await discovery.publish(a2)
    try:
        assert await discovery.workers() == [a2]
    finally:
        await discovery.withdraw(a2)


@pytest.mark.usefixtures("publishes")
async def test_watch_follows_changes(discovery: Discovery) -> None:
    a, b = worker("a"), worker("b")
    await discovery.publish(a)
    await discovery.publish(b)
    it = discovery.watch()
    try:
        first = {await next_event(it), await next_event(it)}
        assert first == {DiscoveryEvent("added", a), DiscoveryEvent("added", b)}

        c = worker("c")
        await discovery.publish(c)
        assert await next_event(it) == DiscoveryEvent("added", c)

        c2 = WorkerInfo(c.id, c.endpoint, c.pid, c.host, frozenset({"changed"}))
        await discovery.publish(c2)
        assert await next_event(it) == DiscoveryEvent("updated", c2)

        await discovery.withdraw(a)
        assert await next_event(it) == DiscoveryEvent("removed", a)
        await discovery.withdraw(c2)
        assert await next_event(it) == DiscoveryEvent("removed", c2)
    finally:
        await it.aclose()  # type: ignore[attr-defined]
        for w in (a, b):
            await discovery.withdraw(w)


@pytest.mark.usefixtures("publishes")
async def test_watch_of_empty_namespace_sees_first_publish(discovery: Discovery) -> None:
    it = discovery.watch()
    a = worker("a")
    try:
        pending = asyncio.ensure_future(next_event(it))
        await discovery.publish(a)
        assert await pending == DiscoveryEvent("added", a)
    finally:
        await it.aclose()  # type: ignore[attr-defined]
        await discovery.withdraw(a)


async def test_watch_stops_on_cancellation(discovery: Discovery) -> None:
    it = discovery.watch()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(anext(it), timeout=0.05)  # nothing to report: cancelled mid-poll
    with pytest.raises(StopAsyncIteration):
        await anext(it)  # a cancelled watch is finished, not broken


@pytest.mark.usefixtures("publishes")
async def test_namespaces_are_separate(make_discovery: Factory) -> None:
    one = make_discovery(f"one-{uuid.uuid4().hex[:8]}")
    two = make_discovery(f"two-{uuid.uuid4().hex[:8]}")
    a, b = worker("a"), worker("b")
    await one.publish(a)
    await two.publish(b)
    try:
        assert await one.workers() == [a]
        assert await two.workers() == [b]
    finally:
        await one.withdraw(a)
        await two.withdraw(b)


@pytest.mark.usefixtures("publishes")
@pytest.mark.parametrize("dumps, loads", [(pickle.dumps, pickle.loads), (cloudpickle.dumps, cloudpickle.loads)])
async def test_pickled_copy_sees_same_workers(
    discovery: Discovery, dumps: Callable[[object], bytes], loads: Callable[[bytes], object]
) -> None:
    a = worker("a")
    await discovery.publish(a)
    try:
        copy = loads(dumps(discovery))
        assert isinstance(copy, Discovery)
        assert await copy.workers() == [a]
        await copy.withdraw(a)
        assert await discovery.workers() == []
    finally:
        await discovery.withdraw(a)
