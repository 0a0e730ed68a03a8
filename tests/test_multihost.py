"""Several hosts, for real: network namespaces joined by a bridge (`netns`), workers started
on some of them with `python -m wool.worker`, and a caller process on another. Nothing here
runs in the root namespace but the orchestration: every address is one of the `10.77.0.0/24`
addresses `netns` creates.

What is checked: Zeroconf discovery across the link (joining, leaving, namespaces kept apart,
a wildcard-bound worker advertised at its interface address), static discovery, calls that
cross hosts, nested fan-out from a worker on one host to a peer on another, and a link pulled
mid-call giving `WorkerLost` within the liveness bound. With CURVE keys: calls and nested
fan-out across hosts (a key directory per host, each trusting the others; one directory shared
by all, with static discovery), and a caller whose key the worker does not trust refused at once.

The caller-side code is the `caller_*` coroutines below, run on a host as
`python -c "... test_multihost.caller_X(...)"`: they print one JSON object per line, and
some wait for a line on stdin (the test's cue).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import netns
import pytest
import routines
from helpers import Observer

import wool
from wool._keys import generate_directory, trust_key
from wool.caller._context import current_mesh_var

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(60)]

LIVENESS = 2.0
PORT = 7001  # fixed ports are free: every host is a namespace of its own


@pytest.fixture
async def network() -> AsyncIterator[netns.Network]:
    reason = netns.unavailable()
    if reason is not None:
        pytest.skip(reason)
    net = netns.Network()
    try:
        yield net
    finally:
        net.close()
        await asyncio.sleep(0)  # let the closed pipe transports finish closing


@pytest.fixture
def hosts(network: netns.Network) -> tuple[netns.Host, netns.Host, netns.Host]:
    """The caller's host (10.77.0.1) and two worker hosts (10.77.0.2, 10.77.0.3)."""
    return network.add_host("c"), network.add_host("a"), network.add_host("b")


def caller(host: netns.Host, scenario: str, *args: str) -> netns.Process:
    code = f"import asyncio, sys, test_multihost as t; asyncio.run(t.{scenario}(*sys.argv[1:]))"
    return host.python(code, *args)


async def next_matching(
    process: netns.Process, predicate: Callable[[dict[str, Any]], bool], seen: list[dict[str, Any]], timeout: float = 20.0
) -> dict[str, Any]:
    """The next message satisfying `predicate`; every message read is appended to `seen`."""
    async with asyncio.timeout(timeout):
        while True:
            message = await process.message()
            seen.append(message)
            if predicate(message):
                return message


# --- caller side (runs on a host) -------------------------------------------------------


def emit(**message: Any) -> None:
    print(json.dumps(message), flush=True)


async def stdin() -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


@wool.routine
async def fan_out_pids(peers: int, count: int) -> list[int]:
    """On a worker: once its own mesh has `peers` workers in rotation (learnt from its
    discovery), the pids of `count` nested calls. Waiting on the mesh itself (there is no
    public view of a worker's peers) keeps the test free of retries and sleeps."""
    mesh = current_mesh_var.get()
    assert mesh is not None
    await mesh.wait_until(lambda workers: len(workers) >= peers, 20)
    return list(await asyncio.gather(*(routines.pid() for _ in range(count))))


async def caller_watch(*namespaces: str) -> None:
    """Follow LAN namespaces ("default" through `LanDiscovery()` with no arguments) and print
    each event with its wall-clock time, until stdin closes."""

    async def follow(namespace: str) -> None:
        discovery = wool.LanDiscovery() if namespace == "default" else wool.LanDiscovery(namespace)
        async for event in discovery.watch():
            emit(ns=namespace, kind=event.kind, id=event.worker.id, endpoint=event.worker.endpoint, t=time.time())

    # A worker that joins before a watch browses is found by the watch's first query: what
    # the watch reports does not depend on when it starts.
    tasks = [asyncio.create_task(follow(ns)) for ns in namespaces]
    emit(watching=True)
    await (await stdin()).read()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def caller_calls(*endpoints: str) -> None:
    """A pool over LAN discovery (no endpoints) or the given static endpoints: which workers
    it found, which processes served plain calls, and which a worker's nested calls reached."""
    await calls_through(endpoints, None)


async def caller_calls_with_keys(keys: str, *endpoints: str) -> None:
    """`caller_calls`, with the CURVE keys in directory `keys`."""
    await calls_through(endpoints, keys)


async def calls_through(endpoints: tuple[str, ...], keys: str | None) -> None:
    discovery: wool.Discovery = wool.StaticDiscovery(endpoints) if endpoints else wool.LanDiscovery()
    start = time.monotonic()
    # Keyless workers on other hosts can only be reached by opting in (`--insecure` on theirs).
    insecure = keys is None
    async with wool.WorkerPool(discovery=discovery, liveness=LIVENESS, keys=keys, insecure=insecure) as pool:
        workers = await pool.wait_for_workers(lambda ws: len(ws) >= 2, timeout=20)
        found = time.monotonic() - start
        pids = [await routines.pid() for _ in range(4)]
        emit(endpoints=sorted(w.endpoint for w in workers), pids=pids, sum=await routines.add(1, 2), found=found)
        emit(nested=await fan_out_pids(2, 8), fib=await routines.fib(12))


async def caller_nested(endpoint: str) -> None:
    """Calls sent to the one worker at `endpoint`, which finds its peers by LAN discovery."""
    async with wool.WorkerPool(discovery=wool.StaticDiscovery([endpoint]), liveness=LIVENESS, insecure=True) as pool:
        await pool.wait_for_workers(timeout=20)
        emit(nested=await fan_out_pids(2, 8), fib=await routines.fib(12))


async def caller_refused(worker_key: str) -> None:
    """A pool with a fresh key that trusts `worker_key`, over LAN discovery: once discovery
    lists the worker (which does not trust the fresh key), how a call fails, and how soon."""
    discovery = wool.LanDiscovery()
    watch = discovery.watch()
    try:
        await asyncio.wait_for(anext(watch), 20)  # the worker is listed (this keeps browsing)
        async with wool.WorkerPool(discovery=discovery, keys=wool.Keys.generate([worker_key]), liveness=LIVENESS):
            loop = asyncio.get_running_loop()
            start = loop.time()
            try:
                await routines.add(1, 2)
            except wool.WoolError as e:
                emit(error=type(e).__name__, message=str(e), elapsed=loop.time() - start)
            else:
                emit(error=None)
    finally:
        await watch.aclose()


class HostObserver(Observer):
    """An `Observer` listening on this host's address, so workers on other hosts reach it."""

    def __init__(self, address: str) -> None:
        super().__init__()
        self.host = address

    async def __aenter__(self) -> HostObserver:
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        self.address = f"{self.host}:{self._server.sockets[0].getsockname()[1]}"
        return self


async def caller_hold(address: str, endpoint: str) -> None:
    """Start a call on the worker at `endpoint` that runs until it is lost; on the cue "down"
    from stdin (the link was just taken down), time how long until the call fails."""
    lines = await stdin()
    async with HostObserver(address) as observer:
        async with wool.WorkerPool(discovery=wool.StaticDiscovery([endpoint]), liveness=LIVENESS, insecure=True) as pool:
            await pool.wait_for_workers(timeout=20)
            call = asyncio.create_task(routines.block(observer.address, "held"))
            await observer.wait_matching(r"running held \d+")
            emit(running=True)
            assert (await lines.readline()).strip() == b"down"
            loop = asyncio.get_running_loop()
            start = loop.time()
            try:
                await asyncio.wait_for(call, 30)
            except Exception as e:
                emit(error=type(e).__name__, message=str(e), elapsed=loop.time() - start)
            else:
                emit(error=None)


# --- tests ----------------------------------------------------------------------------


def lan_worker(host: netns.Host, *args: str) -> list[str]:
    """Options of a worker on `host` that other hosts reach: `--insecure` unless `args` give
    it keys (a worker refuses to listen beyond loopback with neither)."""
    security = [] if "--keys" in args else ["--insecure"]
    return ["--discovery", "lan", "--bind", f"tcp://{host.address}:0", *security, *args]


async def test_zeroconf_discovery_across_hosts(hosts: tuple[netns.Host, netns.Host, netns.Host]) -> None:
    """A caller with `LanDiscovery()` sees workers started with `--discovery lan` on other
    hosts join and leave, never sees another namespace's worker, and gets a wildcard-bound
    worker's reachable address."""
    c, a, b = hosts
    watcher = caller(c, "caller_watch", "default", "other")
    seen: list[dict[str, Any]] = []
    await next_matching(watcher, lambda m: m.get("watching") is True, seen)

    other = await b.worker("--discovery", "lan:other", "--bind", f"tcp://{b.address}:0", "--insecure")
    await next_matching(watcher, lambda m: m.get("ns") == "other" and m["id"] == other.id, seen)

    first = await a.worker(*lan_worker(a))
    ready = time.time()
    added = await next_matching(watcher, lambda m: m.get("ns") == "default", seen)
    assert (added["kind"], added["id"], added["endpoint"]) == ("added", first.id, first.endpoint)
    join = added["t"] - ready

    wild = await b.worker("--discovery", "lan", "--bind", "tcp://0.0.0.0:0", "--insecure")
    port = wild.endpoint.rsplit(":", 1)[1]
    added = await next_matching(watcher, lambda m: m.get("ns") == "default" and m["id"] == wild.id, seen)
    assert (added["kind"], added["endpoint"]) == ("added", f"tcp://{b.address}:{port}")

    first.signal(signal.SIGTERM)
    stopped = time.time()
    removed = await next_matching(watcher, lambda m: m.get("ns") == "default" and m["kind"] == "removed", seen)
    assert removed["id"] == first.id
    leave = removed["t"] - stopped
    assert await first.wait() == 0

    assert not any(m.get("ns") == "default" and m["id"] == other.id for m in seen)
    print(
        f"\nLAN discovery across hosts: join seen {join * 1000:.0f} ms after the worker was ready, "
        f"leave seen {leave * 1000:.0f} ms after SIGTERM"
    )
    assert join < 5 and leave < 5


async def test_calls_cross_hosts_over_zeroconf(hosts: tuple[netns.Host, netns.Host, netns.Host]) -> None:
    c, a, b = hosts
    one, two = await a.worker(*lan_worker(a)), await b.worker(*lan_worker(b))
    process = caller(c, "caller_calls")
    calls = await process.message()
    assert calls["endpoints"] == sorted([one.endpoint, two.endpoint])
    assert set(calls["pids"]) == {one.pid, two.pid}
    assert calls["sum"] == 3
    print(f"\na new LAN caller had both running workers in rotation {calls['found'] * 1000:.0f} ms after it started its pool")
    nested = await process.message()
    assert set(nested["nested"]) == {one.pid, two.pid}
    assert nested["fib"] == 144
    assert await process.wait() == 0


async def test_nested_fan_out_reaches_a_peer_on_another_host(hosts: tuple[netns.Host, netns.Host, netns.Host]) -> None:
    """The caller reaches only worker `one`; `one` finds `two` on another host by Zeroconf and
    sends it half of its nested calls."""
    c, a, b = hosts
    one, two = await a.worker(*lan_worker(a)), await b.worker(*lan_worker(b))
    process = caller(c, "caller_nested", one.endpoint)
    nested = await process.message()
    assert set(nested["nested"]) == {one.pid, two.pid}
    assert nested["fib"] == 144
    assert await process.wait() == 0


async def test_static_discovery_across_hosts(hosts: tuple[netns.Host, netns.Host, netns.Host]) -> None:
    """Workers started with `--discovery static:...` find each other through the list (they
    publish nothing), and a caller with `StaticDiscovery` reaches both."""
    c, a, b = hosts
    endpoints = [f"tcp://{a.address}:{PORT}", f"tcp://{b.address}:{PORT}"]
    spec = "static:" + ",".join(endpoints)
    one = await a.worker("--discovery", spec, "--bind", endpoints[0], "--insecure")
    two = await b.worker("--discovery", spec, "--bind", endpoints[1], "--insecure")
    process = caller(c, "caller_calls", *endpoints)
    calls = await process.message()
    assert calls["endpoints"] == sorted(endpoints)
    assert set(calls["pids"]) == {one.pid, two.pid}
    nested = await process.message()
    assert set(nested["nested"]) == {one.pid, two.pid}
    assert await process.wait() == 0


async def test_link_down_mid_call_gives_worker_lost(hosts: tuple[netns.Host, netns.Host, netns.Host]) -> None:
    c, a, _ = hosts
    worker = await a.worker(*lan_worker(a))
    process = caller(c, "caller_hold", c.address, worker.endpoint)
    assert (await process.message())["running"] is True
    a.link_down()
    process.send("down")
    outcome = await process.message(timeout=30)
    assert outcome["error"] == "WorkerLost", outcome
    assert worker.id in outcome["message"]
    print(f"\nlink down mid-call: WorkerLost after {outcome['elapsed'] * 1000:.0f} ms (liveness {LIVENESS:g} s)")
    assert outcome["elapsed"] < LIVENESS + 1  # the bound is 3/4 of the liveness period
    assert await process.wait() == 0


# --- CURVE ------------------------------------------------------------------------------


def key_directories(root: Path, *names: str) -> dict[str, Path]:
    """A key directory per name, each trusting all the others' public keys (as operators set
    them up with `python -m wool.keys trust`)."""
    dirs = {name: root / name for name in names}
    publics = {name: generate_directory(path).public for name, path in dirs.items()}
    for name, path in dirs.items():
        for other, public in publics.items():
            if other != name:
                trust_key(path, public, other)
    return dirs


async def test_curve_calls_cross_hosts_with_a_key_directory_per_host(
    hosts: tuple[netns.Host, netns.Host, netns.Host], tmp_path: Path
) -> None:
    c, a, b = hosts
    keys = key_directories(tmp_path, "a", "b", "c")
    one = await a.worker(*lan_worker(a, "--keys", str(keys["a"])))
    two = await b.worker(*lan_worker(b, "--keys", str(keys["b"])))
    process = caller(c, "caller_calls_with_keys", str(keys["c"]))
    calls = await process.message()
    assert calls["endpoints"] == sorted([one.endpoint, two.endpoint])
    assert set(calls["pids"]) == {one.pid, two.pid}
    assert calls["sum"] == 3
    nested = await process.message()
    assert set(nested["nested"]) == {one.pid, two.pid}  # the workers trust each other too
    assert nested["fib"] == 144
    assert await process.wait() == 0


async def test_curve_static_discovery_across_hosts_with_one_shared_key_directory(
    hosts: tuple[netns.Host, netns.Host, netns.Host], tmp_path: Path
) -> None:
    c, a, b = hosts
    shared = tmp_path / "keys"
    generate_directory(shared)
    endpoints = [f"tcp://{a.address}:{PORT}", f"tcp://{b.address}:{PORT}"]
    spec = "static:" + ",".join(endpoints)
    one = await a.worker("--discovery", spec, "--bind", endpoints[0], "--keys", str(shared))
    two = await b.worker("--discovery", spec, "--bind", endpoints[1], "--keys", str(shared))
    process = caller(c, "caller_calls_with_keys", str(shared), *endpoints)
    calls = await process.message()
    assert calls["endpoints"] == sorted(endpoints)
    assert set(calls["pids"]) == {one.pid, two.pid}
    nested = await process.message()
    assert set(nested["nested"]) == {one.pid, two.pid}
    assert await process.wait() == 0


async def test_curve_worker_refuses_an_unknown_key_across_hosts(
    hosts: tuple[netns.Host, netns.Host, netns.Host], tmp_path: Path
) -> None:
    c, a, _ = hosts
    keys = tmp_path / "keys"
    public = generate_directory(keys).public
    worker = await a.worker(*lan_worker(a, "--keys", str(keys)))
    process = caller(c, "caller_refused", public)
    outcome = await process.message()
    assert outcome["error"] == "NoWorkersAvailable", outcome
    assert worker.id in outcome["message"] and "authentication failed" in outcome["message"]
    print(f"\nunknown key refused across hosts after {outcome['elapsed'] * 1000:.0f} ms")
    assert outcome["elapsed"] < 5  # not the 10 s a pool waits for a handshake
    assert await process.wait() == 0
