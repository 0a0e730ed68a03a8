"""LanDiscovery specifics: the service record (round trip, malformed records, what endpoint is
advertised and who may use it), specs and arguments, and real workers found and lost over
Zeroconf. Everything here is pinned to the loopback interface: these tests never multicast on
the machine's network (tests/test_multihost.py covers real links, in namespaces)."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import pickle
import signal
import time
import uuid
from collections.abc import AsyncIterator

import cloudpickle
import psutil
import pytest
import routines
from helpers import CliWorker
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

import wool
from wool.discovery import DiscoveryError, DiscoveryEvent, LanDiscovery, WorkerInfo, _lan, parse_discovery
from wool.discovery import _lan_record as record

LOOPBACK = ["127.0.0.1"]
SCOPE = record.local_scope()
HERE = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("10.1.0.0/16")]


def info(endpoint: str = "tcp://10.1.2.3:5000", **fields: object) -> WorkerInfo:
    values: dict[str, object] = {"id": uuid.uuid4().hex, "endpoint": endpoint, "pid": 4321, "host": "box"}
    values.update(fields)
    return WorkerInfo(**values)  # type: ignore[arg-type]


def as_txt(properties: dict[str, str]) -> dict[bytes, bytes | None]:
    return {k.encode(): v.encode() for k, v in properties.items()}


def namespace() -> str:
    return f"lan-{uuid.uuid4().hex[:10]}"


# --- the record -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "worker",
    [
        info(),
        info(tags=frozenset({"gpu", "a,b", "ünï"}), max_calls=3, version=7),
        info("ipc:///tmp/wool-x/w.sock", host=""),
        info("tcp://127.0.0.1:6000"),
        info(public_key=wool.Keys.generate().public),
        info(max_message_size=1 << 20),
    ],
)
def test_record_round_trip(worker: WorkerInfo) -> None:
    txt = record.encode(worker, "team", worker.endpoint, SCOPE)
    assert record.decode(as_txt(txt), [], SCOPE, HERE) == ("team", worker)


def test_txt_record_stays_small() -> None:
    txt = record.encode(info(tags=frozenset({"gpu"}), max_calls=8), "default", "tcp://10.1.2.3:5000", SCOPE)
    assert sum(len(k) + len(v) + 2 for k, v in txt.items()) < 200


def test_txt_record_with_a_public_key_fits() -> None:
    key = wool.Keys.generate().public
    txt = record.encode(info(public_key=key), "default", "tcp://10.1.2.3:5000", SCOPE)
    assert txt["key"] == key


def test_oversized_field_is_refused() -> None:
    with pytest.raises(DiscoveryError, match="'tags' is too long"):
        record.encode(info(tags=frozenset(f"tag{i}" for i in range(60))), "ns", "tcp://10.1.2.3:5000", SCOPE)


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"txtvers": "2"}, "unsupported TXT format"),
        ({"pid": "x"}, "invalid literal"),
        ({"pid": "-1"}, "'pid' must be a positive integer"),
        ({"tags": "[1]"}, "'tags' must be a list of strings"),
        ({"tags": "{"}, "Expecting"),
        ({"ep": "nowhere"}, "not an endpoint"),
        ({"max": "0"}, "'max_calls' must be a positive integer"),
        ({"id": None}, "no 'id'"),
        ({"key": "not-a-key"}, "'public_key' must be a z85 CURVE key"),
        ({"mms": "0"}, "'max_message_size' must be a positive integer"),
        ({"mms": "x"}, "invalid literal"),
    ],
)
def test_malformed_record_raises_value_error(change: dict[str, str | None], problem: str) -> None:
    txt: dict[bytes, bytes | None] = as_txt(record.encode(info(), "ns", "tcp://10.1.2.3:5000", SCOPE))
    for key, value in change.items():
        if value is None:
            del txt[key.encode()]
        else:
            txt[key.encode()] = value.encode()
    with pytest.raises(ValueError, match=problem):
        record.decode(txt, [], SCOPE, HERE)


def test_non_utf8_record_raises_value_error() -> None:
    txt = as_txt(record.encode(info(), "ns", "tcp://10.1.2.3:5000", SCOPE))
    txt[b"host"] = b"\xff\xfe"
    with pytest.raises(ValueError):
        record.decode(txt, [], SCOPE, HERE)


def test_wildcard_endpoint_is_advertised_at_interface_addresses() -> None:
    worker = info("tcp://0.0.0.0:5000")
    endpoint, addresses, port = record.advertise(worker, ["127.0.0.1", "10.1.2.3", "10.9.0.1"])
    assert (endpoint, addresses, port) == ("tcp://10.1.2.3:5000", ["10.1.2.3", "10.9.0.1", "127.0.0.1"], 5000)
    assert record.advertise(worker, ["127.0.0.1"])[0] == "tcp://127.0.0.1:5000"
    assert record.advertise(info("tcp://10.1.2.3:5000"), None)[:2] == ("tcp://10.1.2.3:5000", ["10.1.2.3"])


def test_reader_picks_the_workers_address_on_its_own_network() -> None:
    worker = info("tcp://0.0.0.0:5000")
    txt = as_txt(record.encode(worker, "ns", "tcp://10.9.0.1:5000", SCOPE))
    addresses = ["10.9.0.1", "10.1.2.3"]
    _, seen = record.decode(txt, addresses, SCOPE, HERE) or ("", worker)
    assert seen.endpoint == "tcp://10.1.2.3:5000"  # 10.9/16 is not one of this reader's networks
    _, seen = record.decode(txt, addresses, SCOPE, [ipaddress.ip_network("10.9.0.0/16")]) or ("", worker)
    assert seen.endpoint == "tcp://10.9.0.1:5000"


@pytest.mark.parametrize("endpoint", ["tcp://127.0.0.1:5000", "tcp://localhost:5000", "ipc:///tmp/w.sock"])
def test_endpoint_only_reachable_here_is_ignored_elsewhere(endpoint: str) -> None:
    txt = as_txt(record.encode(info(endpoint), "ns", endpoint, SCOPE))
    assert record.decode(txt, [], SCOPE, HERE) is not None
    assert record.decode(txt, [], "another-machine/1", HERE) is None
    del txt[b"scope"]
    assert record.decode(txt, [], SCOPE, HERE) is None


def test_instance_names_are_unique_per_worker_and_namespace() -> None:
    names = {record.instance_name(w, ns) for w in ("a", "b") for ns in ("x", "y")}
    assert len(names) == 4
    assert all(len(n.split(".")[0].encode()) <= 63 for n in names | {record.instance_name("w" * 200, "x")})


# --- the object -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("lan", LanDiscovery()),
        ("lan:team", LanDiscovery("team")),
        ("lan@127.0.0.1", LanDiscovery(interfaces=LOOPBACK)),
        ("lan:team@127.0.0.1,10.0.0.1", LanDiscovery("team", ["10.0.0.1", "127.0.0.1"])),
    ],
)
def test_spec(spec: str, expected: LanDiscovery) -> None:
    assert parse_discovery(spec) == expected


@pytest.mark.parametrize(
    "spec, problem",
    [
        ("lan:", "namespace ''"),
        ("lan@", "no interface address"),
        ("lan:x@eth0", "must be IP addresses"),
        ("lan:a b", "namespace 'a b'"),
    ],
)
def test_bad_spec(spec: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_discovery(spec)


def test_arguments_are_checked() -> None:
    with pytest.raises(TypeError):
        LanDiscovery(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not a str"):
        LanDiscovery("x", "127.0.0.1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must not be empty"):
        LanDiscovery("x", [])


async def test_pickles_without_zeroconf() -> None:
    discovery = LanDiscovery(namespace(), LOOPBACK)
    worker = info("ipc:///tmp/x.sock", pid=os.getpid())
    await discovery.publish(worker)
    try:
        for dumps, loads in ((pickle.dumps, pickle.loads), (cloudpickle.dumps, cloudpickle.loads)):
            blob = dumps(discovery)
            assert b"zeroconf" not in blob.lower() and len(blob) < 200
            assert loads(blob) == discovery
    finally:
        await discovery.withdraw(worker)


def mdns_sockets() -> list[object]:
    return [c for c in psutil.Process().net_connections(kind="udp") if c.laddr and c.laddr.port == 5353]


async def test_zeroconf_closes_when_nothing_is_published_or_watched() -> None:
    discovery = LanDiscovery(namespace(), LOOPBACK)
    worker = info("ipc:///tmp/x.sock", pid=os.getpid())
    await discovery.publish(worker)
    watch = discovery.watch()
    assert await asyncio.wait_for(anext(watch), 5) == DiscoveryEvent("added", worker)
    await discovery.withdraw(worker)
    assert mdns_sockets(), "still watching: Zeroconf stays open"
    await watch.aclose()
    assert mdns_sockets() == []
    assert not _lan._hubs.get(asyncio.get_running_loop())


async def test_foreign_and_malformed_records_are_ignored(caplog: pytest.LogCaptureFixture) -> None:
    """Another program's record of our service type, with a TXT record we cannot read, is
    skipped with a warning; the valid worker published after it is still found."""
    ns = namespace()
    discovery = LanDiscovery(ns, LOOPBACK)
    good = info("ipc:///tmp/good.sock", pid=os.getpid())
    bad_name = f"garbage-{uuid.uuid4().hex[:8]}.{record.SERVICE_TYPE}"
    bad = AsyncServiceInfo(
        record.SERVICE_TYPE,
        bad_name,
        port=9,
        properties={"txtvers": "1", "ns": ns, "id": "x", "pid": "many"},
        server=record.server_name(bad_name),
        parsed_addresses=["127.0.0.1"],
    )
    async with AsyncZeroconf(interfaces=LOOPBACK) as other:
        await other.async_register_service(bad, cooperating_responders=True)
        watch = discovery.watch()
        try:
            await discovery.publish(good)
            assert await asyncio.wait_for(anext(watch), 5) == DiscoveryEvent("added", good)
            assert await discovery.workers() == [good]
            warnings = [r.getMessage() for r in caplog.records if r.name == "wool.discovery"]
            assert [w for w in warnings if bad_name in w] == [
                f"ignoring Zeroconf service {bad_name!r}: no 'ep' in the TXT record"
            ]
        finally:
            await discovery.withdraw(good)
            await watch.aclose()


# --- real workers -----------------------------------------------------------------------


async def next_event(watch: AsyncIterator[DiscoveryEvent], timeout: float = 10) -> DiscoveryEvent:
    return await asyncio.wait_for(anext(watch), timeout)


@pytest.mark.multiprocess
@pytest.mark.timeout(60)
async def test_cli_worker_is_found_used_and_withdrawn() -> None:
    ns = namespace()
    discovery = LanDiscovery(ns, LOOPBACK)
    watch = discovery.watch()
    try:
        pending = asyncio.ensure_future(next_event(watch))
        # Keyless on a LAN: any announcement could pose as a peer, so both sides opt in.
        async with CliWorker("--discovery", f"lan:{ns}@127.0.0.1", "--insecure", "--tag", "gpu", "--max-calls", "3") as worker:
            ready = time.monotonic()
            added = await pending
            joined = time.monotonic() - ready
            assert added.kind == "added"
            assert (added.worker.id, added.worker.endpoint, added.worker.pid) == (worker.id, worker.endpoint, worker.pid)
            assert (added.worker.tags, added.worker.max_calls) == ({"gpu"}, 3)
            async with wool.WorkerPool(discovery=LanDiscovery(ns, LOOPBACK), insecure=True) as pool:
                assert [w.id for w in await pool.wait_for_workers(timeout=10)] == [worker.id]
                assert await routines.add(2, 3) == 5
            worker.signal(signal.SIGTERM)
            stopped = time.monotonic()
            assert await next_event(watch) == DiscoveryEvent("removed", added.worker)
            left = time.monotonic() - stopped
            assert await worker.wait() == 0
    finally:
        await watch.aclose()  # type: ignore[attr-defined]
    print(f"\nLAN on loopback: join seen {joined * 1000:.0f} ms after ready, leave {left * 1000:.0f} ms after SIGTERM")


@pytest.mark.multiprocess
@pytest.mark.timeout(60)
async def test_pool_spawns_workers_into_a_lan_namespace() -> None:
    ns = namespace()
    async with wool.WorkerPool(size=2, discovery=LanDiscovery(ns, LOOPBACK), insecure=True) as pool:
        pids = {w.pid for w in pool.processes}
        assert {await routines.pid() for _ in range(4)} == pids
        assert {w.pid for w in await LanDiscovery(ns, LOOPBACK).workers()} == pids
    assert mdns_sockets() == []
    assert await LanDiscovery(ns, LOOPBACK).workers() == []  # both withdrew on the way out
