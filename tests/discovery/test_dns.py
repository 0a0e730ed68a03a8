"""DnsDiscovery specifics, against a real dnsmasq on loopback: SRV and A/AAAA records resolve
to endpoints, each endpoint is asked which worker serves there, records added and removed while
a pool runs change its workers, and a server that stops answering leaves the last view in place
with a warning. Workers listen on loopback addresses (127.0.0.2, 127.0.0.3, ...: all of
127.0.0.0/8 is this machine), each its own "pod" address, and require CURVE keys, as in a
cluster. `test_dns_netns.py` does the same across network namespaces."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import dns.exception
import dnsmasq
import pytest
import routines
from helpers import REPO, CliWorker, logged_to

import wool
from wool._keys import generate_directory
from wool.discovery import DiscoveryError, DiscoveryEvent, DnsDiscovery, _dns, _dns_records, parse_discovery

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(60)]

NAME = f"workers.{dnsmasq.DOMAIN}"
SRV = f"_wool._tcp.workers.{dnsmasq.DOMAIN}"
FAST = {
    "interval": 0.05,
    "poll_interval": 0.05,
    "timeout": 2.0,
}  # a stopped server refuses at once; the timeout only bounds a slow answer


@pytest.fixture
async def dnsd(tmp_path: Path) -> AsyncIterator[dnsmasq.Dnsmasq]:
    reason = dnsmasq.unavailable()
    if reason is not None:
        pytest.skip(reason)
    server = await dnsmasq.Dnsmasq(tmp_path).start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    generate_directory(tmp_path / "keys")
    return tmp_path / "keys"


def free_port(*hosts: str) -> int:
    """A TCP port free on every one of `hosts` just now."""
    while True:
        with socket.socket() as s:
            s.bind((hosts[0], 0))
            port = int(s.getsockname()[1])
        try:
            for host in hosts[1:]:
                with socket.socket() as s:
                    s.bind((host, port))
        except OSError:
            continue
        return port


def dns_worker(server: dnsmasq.Dnsmasq, keys: Path, bind: str, spec: str = f"{NAME}") -> CliWorker:
    """A worker with keys whose peers are whatever `spec` resolves to at `server`."""
    return CliWorker("--bind", bind, "--keys", str(keys), "--discovery", f"dns:{spec}@{server.nameserver}")


class Warnings(logging.Handler):
    """The 'wool.discovery' warnings, with a wait for one matching a text."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []
        self.changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        self.changed.set()

    async def wait_for(self, text: str, timeout: float = 10) -> str:
        async with asyncio.timeout(timeout):
            while not any(text in m for m in self.messages):
                self.changed.clear()
                await self.changed.wait()
        return next(m for m in self.messages if text in m)


@pytest.fixture
def warnings() -> Iterator[Warnings]:
    handler = Warnings()
    with logged_to(handler, "wool.discovery"):
        yield handler


async def ids(pool: wool.WorkerPool, *workers: CliWorker) -> set[str]:
    """Wait until the pool's workers are exactly `workers`; their ids."""
    want = {w.id for w in workers}
    found = await pool.wait_for_workers(lambda ws: {w.id for w in ws} == want, timeout=20)
    return {w.id for w in found}


def test_spec_and_arguments() -> None:
    assert parse_discovery("dns:workers.default.svc.cluster.local:7001") == DnsDiscovery(
        "workers.default.svc.cluster.local", 7001
    )
    assert parse_discovery("dns:_wool._tcp.workers") == DnsDiscovery("_wool._tcp.workers")
    spec = parse_discovery("dns:w.test:7001@10.0.0.10,127.0.0.1:5353,[::1]:53")
    assert spec == DnsDiscovery("w.test", 7001, nameservers=["10.0.0.10", "127.0.0.1:5353", "::1"])
    assert isinstance(spec, DnsDiscovery) and spec.nameservers == (("10.0.0.10", 53), ("127.0.0.1", 5353), ("::1", 53))
    for bad, problem in [
        ("dns:", "no name"),
        ("dns::7001", "no name"),
        ("dns:w.test:http", "no valid port"),
        ("dns:w.test:0", "no valid port"),
        ("dns:w.test@", "no nameserver"),
        ("dns:w.test@dns.google", "not an IP address"),
        ("dns:w.test@10.0.0.1:99999", "no valid port"),
        ("dns:w..test", "not a DNS name"),
        ("dns:" + "x" * 64 + ".test", "not a DNS name"),
    ]:
        with pytest.raises(ValueError, match=problem):
            parse_discovery(bad)
    with pytest.raises(ValueError, match="at least one"):
        DnsDiscovery("w.test", nameservers=[])
    with pytest.raises(TypeError, match="not a str"):
        DnsDiscovery("w.test", nameservers="10.0.0.1")
    with pytest.raises(ValueError, match="positive"):
        DnsDiscovery("w.test", interval=0)
    with pytest.raises(ValueError, match="between 1 and 65535"):
        DnsDiscovery("w.test", 70000)
    copy = pickle.loads(pickle.dumps(DnsDiscovery("w.test", 1, interval=30, nameservers=["127.0.0.1:5353"])))
    assert (copy, copy.interval) == (DnsDiscovery("w.test", 1, nameservers=["127.0.0.1:5353"]), 30.0)
    assert "w.test" in repr(copy) and "127.0.0.1:5353" in repr(copy)


def test_importing_wool_does_not_load_dnspython() -> None:
    code = "import sys, wool; wool.DnsDiscovery('w.test', 1); print(sorted(m for m in sys.modules if m.split('.')[0] == 'dns'))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, cwd=REPO)
    assert (done.returncode, done.stdout) == (0, "[]\n"), done.stderr


def test_a_pool_with_keys_lends_them_to_its_dns_discovery(keys: Path) -> None:
    pool = wool.WorkerPool(discovery=DnsDiscovery("w.test", 7001), keys=keys)
    assert isinstance(pool.discovery, DnsDiscovery) and pool.discovery.keys == wool.Keys.load(keys)


async def test_resolves_srv_and_address_records(dnsd: dnsmasq.Dnsmasq) -> None:
    await dnsd.set_hosts({NAME: ["127.0.0.2", "127.0.0.3", "::1"], f"a.{NAME}": ["127.0.0.4"], f"b.{NAME}": ["127.0.0.5"]})
    await dnsd.restart([(SRV, f"a.{NAME}", 7001), (SRV, f"b.{NAME}", 7002), (SRV, f"gone.{NAME}", 7003)])
    server = [dnsd.nameserver]
    assert await DnsDiscovery(NAME, 7001, nameservers=server).resolve() == [
        "tcp://127.0.0.2:7001",
        "tcp://127.0.0.3:7001",
        "tcp://[::1]:7001",
    ]
    # A target without addresses (gone.) contributes nothing.
    assert await DnsDiscovery(SRV, nameservers=server).resolve() == ["tcp://127.0.0.4:7001", "tcp://127.0.0.5:7002"]
    # A name that does not exist, or has no records of the type asked: no workers, no error.
    assert await DnsDiscovery(f"nobody.{dnsmasq.DOMAIN}", 7001, nameservers=server).resolve() == []
    assert await DnsDiscovery(NAME, nameservers=server).resolve() == []  # no SRV records there
    assert await DnsDiscovery(f"nobody.{dnsmasq.DOMAIN}", nameservers=server).workers() == []


async def test_an_unreachable_server_is_an_error_for_workers() -> None:
    port = dnsmasq.free_port()  # nothing answers there
    discovery = DnsDiscovery(NAME, 7001, nameservers=[f"127.0.0.1:{port}"], timeout=0.2)
    with pytest.raises(DiscoveryError, match=rf"could not resolve '{NAME}' at 127.0.0.1:{port}"):
        await discovery.workers()


async def test_pool_follows_address_records_added_and_removed(dnsd: dnsmasq.Dnsmasq, keys: Path) -> None:
    """Records added bring workers in. A record removed is a hint, as every discovery's
    removal is (README, Failure semantics): the pool keeps a worker it is connected to until
    that worker stops, as Kubernetes stops a pod once it is out of DNS; and a worker that
    comes up later at that address is not used, its address being no longer listed."""
    port = free_port("127.0.0.2", "127.0.0.3", "127.0.0.4")
    spec = f"{NAME}:{port}"
    async with (
        dns_worker(dnsd, keys, f"tcp://127.0.0.2:{port}", spec) as a,
        dns_worker(dnsd, keys, f"tcp://127.0.0.3:{port}", spec) as b,
    ):
        await dnsd.set_hosts({NAME: ["127.0.0.2"]})
        discovery = DnsDiscovery(NAME, port, nameservers=[dnsd.nameserver], **FAST)
        async with wool.WorkerPool(discovery=discovery, keys=keys) as pool:
            assert await ids(pool, a) == {a.id}
            assert await routines.pid() == a.pid

            await dnsd.set_hosts({NAME: ["127.0.0.2", "127.0.0.3"]})  # a pod became ready
            assert await ids(pool, a, b) == {a.id, b.id}
            # Each worker finds its peers through the same name.
            assert await routines.peer_ids(2) == sorted([a.id, b.id])

            await dnsd.set_hosts({NAME: ["127.0.0.3"]})  # a's pod is going away: out of DNS,
            a.signal(signal.SIGTERM)  # then stopped
            assert await a.wait() == 0
            assert await ids(pool, b) == {b.id}
            assert set(await asyncio.gather(*(routines.pid() for _ in range(8)))) == {b.pid}

            async with (
                dns_worker(dnsd, keys, f"tcp://127.0.0.2:{port}", spec) as stray,  # at a's old address
                dns_worker(dnsd, keys, f"tcp://127.0.0.4:{port}", spec) as c,
            ):
                await dnsd.set_hosts({NAME: ["127.0.0.3", "127.0.0.4"]})
                assert await ids(pool, b, c) == {b.id, c.id}
                assert pool.discovery is not None  # the pool's copy, with its keys
                assert {w.id for w in await pool.discovery.workers()} == {b.id, c.id}
                assert stray.id not in {w.id for w in pool.workers}


async def test_watch_follows_srv_records_and_sees_a_restart(dnsd: dnsmasq.Dnsmasq, keys: Path) -> None:
    ports = free_port("127.0.0.1"), free_port("127.0.0.1")
    async with (
        dns_worker(dnsd, keys, f"tcp://127.0.0.1:{ports[0]}", SRV) as a,
        dns_worker(dnsd, keys, f"tcp://127.0.0.1:{ports[1]}", SRV) as b,
    ):
        await dnsd.set_hosts({f"a.{NAME}": ["127.0.0.1"]})
        await dnsd.restart([(SRV, f"a.{NAME}", ports[0]), (SRV, f"a.{NAME}", ports[1])])
        watch = DnsDiscovery(SRV, nameservers=[dnsd.nameserver], keys=keys, **FAST).watch()
        try:
            added = {await anext(watch), await anext(watch)}
            assert {(e.kind, e.worker.id, e.worker.endpoint) for e in added} == {
                ("added", a.id, a.endpoint),
                ("added", b.id, b.endpoint),
            }
            assert {e.worker.public_key for e in added} == {wool.Keys.load(keys).public}
            old_b = next(e.worker for e in added if e.worker.id == b.id)

            b.signal(signal.SIGTERM)  # a restart at the same endpoint: removed, then added
            assert await b.wait() == 0
            assert await asyncio.wait_for(anext(watch), 10) == DiscoveryEvent("removed", old_b)
            async with dns_worker(dnsd, keys, b.endpoint, SRV) as b2:
                again = await asyncio.wait_for(anext(watch), 10)
                assert (again.kind, again.worker.id, again.worker.endpoint) == ("added", b2.id, b.endpoint)

                await dnsd.restart([(SRV, f"a.{NAME}", ports[1])])  # a's record is gone
                gone = await asyncio.wait_for(anext(watch), 10)
                assert (gone.kind, gone.worker.id) == ("removed", a.id)
        finally:
            await watch.aclose()  # type: ignore[attr-defined]


async def test_server_unreachable_keeps_the_last_view_with_a_warning(
    dnsd: dnsmasq.Dnsmasq, keys: Path, warnings: Warnings
) -> None:
    port = free_port("127.0.0.2", "127.0.0.3")
    spec = f"{NAME}:{port}"
    async with (
        dns_worker(dnsd, keys, f"tcp://127.0.0.2:{port}", spec) as a,
        dns_worker(dnsd, keys, f"tcp://127.0.0.3:{port}", spec) as b,
    ):
        await dnsd.set_hosts({NAME: ["127.0.0.2"]})
        discovery = DnsDiscovery(NAME, port, nameservers=[dnsd.nameserver], **FAST)
        async with wool.WorkerPool(discovery=discovery, keys=keys) as pool:
            assert await ids(pool, a) == {a.id}
            # The pool's rotation starts from `discovery.workers()` on entry, before its watch
            # has resolved the name once: wait for the watch too, or stopping the server now
            # could make its first resolution fail ("no workers found yet").
            mesh = pool._mesh
            assert mesh is not None
            async with asyncio.timeout(20):
                while a.id not in mesh._listed:
                    await asyncio.sleep(0.01)
            await dnsd.stop()
            warning = await warnings.wait_for("could not resolve")
            assert f"at {dnsd.nameserver}" in warning and "keeping the 1 endpoints resolved before" in warning
            assert {w.id for w in pool.workers} == {a.id}  # still in rotation, still served
            assert await routines.pid() == a.pid
            assert sum("could not resolve" in m for m in warnings.messages) == 1  # rate-limited

            await dnsd.set_hosts({NAME: ["127.0.0.2", "127.0.0.3"]})
            await dnsd.start()  # back, with a record added meanwhile
            assert await ids(pool, a, b) == {a.id, b.id}
            await warnings.wait_for("works again")


def test_failure_warnings_are_rate_limited(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    now = [1000.0]
    monkeypatch.setattr(_dns.time, "monotonic", lambda: now[0])
    outage = _dns._Outage(DnsDiscovery("w.test", 1))
    error = DiscoveryError("could not resolve 'w.test': 'timed out'")
    with caplog.at_level(logging.WARNING, logger="wool.discovery"):
        for _ in range(5):
            outage.failed(error, 3)
            now[0] += 1
        now[0] += _dns.WARN_EVERY
        outage.failed(error, 3)
        outage.recovered()
        outage.recovered()
        outage.failed(error, 0)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 4, messages
    assert "keeping the 3 endpoints" in messages[0] and "failing for 0 s" in messages[0]
    assert "failing for 65 s" in messages[1]
    assert "works again after 65 s" in messages[2]
    assert "no workers found yet" in messages[3]  # a new outage warns at once


async def test_resolver_error_text_is_escaped(monkeypatch: pytest.MonkeyPatch) -> None:
    async def hostile(*args: object) -> set[str]:
        raise dns.exception.DNSException("answered\n\x1b[31mFAKE LOG LINE")

    monkeypatch.setattr(_dns_records, "_addresses", hostile)
    with pytest.raises(DiscoveryError) as raised:
        await DnsDiscovery(NAME, 7001, nameservers=["127.0.0.1"]).resolve()
    assert "\n" not in str(raised.value) and "\x1b" not in str(raised.value)
    assert "\\x1b[31mFAKE LOG LINE" in str(raised.value)


async def test_workers_cli_lists_the_workers_a_name_resolves_to(dnsd: dnsmasq.Dnsmasq, keys: Path) -> None:
    port = free_port("127.0.0.2")
    async with dns_worker(dnsd, keys, f"tcp://127.0.0.2:{port}", f"{NAME}:{port}") as a:
        await dnsd.set_hosts({NAME: ["127.0.0.2"]})
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "wool.workers", "--discovery", f"dns:{NAME}:{port}@{dnsd.nameserver}",
            "--keys", str(keys), "--json",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=dict(os.environ, PYTHONPATH=str(REPO)),
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    (row,) = json.loads(out)
    assert (row["id"], row["endpoint"], row["reachable"]) == (a.id, f"tcp://127.0.0.2:{port}", True)


@pytest.mark.timeout(120)
async def test_a_keyed_pool_serves_through_a_600_endpoint_answer_with_few_warnings(
    dnsd: dnsmasq.Dnsmasq, tmp_path: Path, warnings: Warnings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name listing 600 endpoints, 598 of them dead, asked by a pool that trusts nine keys:
    the answer is cut to what a watch probes (one warning, however often it is resolved
    again), the probes stay within ZeroMQ's sockets, the refusals are one warning, and every
    call is served by the two live workers."""
    worker_keys = generate_directory(tmp_path / "worker")
    pool_keys = wool.Keys.generate([worker_keys.public, *(wool.Keys.generate().public for _ in range(8))])
    (tmp_path / "worker" / "trusted" / "pool.pub").write_text(pool_keys.public + "\n")
    port = free_port("127.0.0.2", "127.0.0.3")
    spec = f"{NAME}:{port}"
    dead = [f"127.1.{i // 250}.{i % 250 + 1}" for i in range(598)]  # nothing listens there
    resolutions = 0
    resolved = asyncio.Event()
    real = _dns_records.resolve_endpoints

    async def counted(*args: object) -> set[str]:
        nonlocal resolutions
        found = await real(*args)  # type: ignore[arg-type]
        resolutions += 1
        resolved.set()
        return found

    monkeypatch.setattr(_dns_records, "resolve_endpoints", counted)
    async with (
        dns_worker(dnsd, tmp_path / "worker", f"tcp://127.0.0.2:{port}", spec) as a,
        dns_worker(dnsd, tmp_path / "worker", f"tcp://127.0.0.3:{port}", spec) as b,
    ):
        await dnsd.set_hosts({NAME: ["127.0.0.2", "127.0.0.3", *dead]})
        discovery = DnsDiscovery(NAME, port, nameservers=[dnsd.nameserver], interval=0.2, poll_interval=0.5, timeout=2.0)
        async with wool.WorkerPool(discovery=discovery, keys=pool_keys) as pool:
            assert await ids(pool, a, b) == {a.id, b.id}
            pids = await asyncio.gather(*(routines.pid() for _ in range(20)))
            assert set(pids) == {a.pid, b.pid}
            seen = resolutions
            async with asyncio.timeout(30):
                while resolutions < seen + 5:  # resolved (and cut) five times more
                    resolved.clear()
                    await resolved.wait()
            assert set(await asyncio.gather(*(routines.pid() for _ in range(20)))) == {a.pid, b.pid}
    cut = [m for m in warnings.messages if "lists 600 endpoints" in m]
    assert len(cut) == 1 and "using the first 512" in cut[0], warnings.messages
    assert len(warnings.messages) <= 4, warnings.messages
    print(f"\n600 endpoints listed: {len(warnings.messages)} warnings: {warnings.messages}")
