"""What every `Discovery` backend must do. Add a backend by extending `make_discovery`'s
params; every test here then runs against it."""

from __future__ import annotations

import asyncio
import os
import pickle
import uuid
from collections.abc import AsyncIterator, Callable

import cloudpickle
import pytest

from wool.discovery import Discovery, DiscoveryEvent, LocalDiscovery, WorkerInfo

Factory = Callable[[str], Discovery]


@pytest.fixture(params=["local"])
async def make_discovery(request: pytest.FixtureRequest) -> AsyncIterator[Factory]:
    """Build discovery objects for namespaces; fail the test if it leaves entries behind."""
    made: list[Discovery] = []

    def make(namespace: str) -> Discovery:
        if request.param == "local":
            discovery: Discovery = LocalDiscovery(namespace, poll_interval=0.01)
        else:
            raise AssertionError(f"unknown backend {request.param}")
        made.append(discovery)
        return discovery

    yield make
    for discovery in made:
        assert await discovery.workers() == [], f"test left entries in {discovery!r}"


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


async def test_publish_then_listed(discovery: Discovery) -> None:
    a, b = worker("a"), worker("b", "gpu")
    await discovery.publish(a)
    await discovery.publish(b)
    try:
        assert sorted(await discovery.workers(), key=lambda w: w.id) == sorted([a, b], key=lambda w: w.id)
    finally:
        await discovery.withdraw(a)
        await discovery.withdraw(b)


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


async def test_republish_same_id_updates(discovery: Discovery) -> None:
    a = worker("a", "old")
    a2 = WorkerInfo(a.id, a.endpoint, a.pid, a.host, frozenset({"new", "tags"}))
    await discovery.publish(a)
    await discovery.publish(a2)
    try:
        assert await discovery.workers() == [a2]
    finally:
        await discovery.withdraw(a2)


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


@pytest.mark.parametrize("dumps, loads", [(pickle.dumps, pickle.loads), (cloudpickle.dumps, cloudpickle.loads)])
async def test_pickled_copy_sees_same_workers(discovery: Discovery, dumps: Callable[[object], bytes], loads: Callable[[bytes], object]) -> None:
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
