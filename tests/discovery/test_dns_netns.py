"""DNS discovery across network namespaces, as in a cluster: each worker "pod" is a namespace
of its own with its own address, a dnsmasq answers for the headless-Service-like name
`workers.dns.test` (an A record per ready pod), and a caller in another namespace follows it
while records are added and removed, then while the server is down.

Layout (created here, deleted at teardown even on failure; names carry "dns", this pid and a
random token, so concurrent runs do not collide):

    caller namespace  C: dnsmasq on 10.199.1.1:53, the caller; forwards between its links
      veth w1 10.199.1.1/30  <->  eth0 10.199.1.2/30  namespace W1: worker a, port 7001
      veth w2 10.199.1.5/30  <->  eth0 10.199.1.6/30  namespace W2: worker b, port 7001

Every address exists only inside these namespaces. The workers find each other through the
same name (from their own namespaces, across the links), with a CURVE key directory shared by
all, as a Kubernetes Secret would be. Needs root (namespaces), `ip` and `dnsmasq`; skips
saying why otherwise.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import dnsmasq
import netns
import pytest

from wool._keys import generate_directory

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(60)]

NAME = f"workers.{dnsmasq.DOMAIN}"
PORT = 7001  # every pod has its own address, so all listen on the same port
DNS_ADDRESS = "10.199.1.1"


class Pods:
    """The caller's namespace and two worker namespaces, each joined to it by a veth pair."""

    def __init__(self) -> None:
        base = f"wool-dns-{os.getpid()}-{secrets.token_hex(2)}"
        self.caller = f"{base}-c"
        self.pods = {"w1": (f"{base}-w1", "10.199.1.1", "10.199.1.2"), "w2": (f"{base}-w2", "10.199.1.5", "10.199.1.6")}
        self.processes: list[netns.Process] = []
        self._namespaces: list[str] = []
        try:
            self._add(self.caller)
            netns.ip("netns", "exec", self.caller, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            for link, (namespace, gateway, address) in self.pods.items():
                self._add(namespace)
                netns.ip("-n", self.caller, "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", namespace)
                netns.ip("-n", self.caller, "addr", "add", f"{gateway}/30", "dev", link)
                netns.ip("-n", self.caller, "link", "set", link, "up")
                netns.ip("-n", namespace, "addr", "add", f"{address}/30", "dev", "eth0")
                netns.ip("-n", namespace, "link", "set", "eth0", "up")
                netns.ip("-n", namespace, "route", "add", "default", "via", gateway)
        except BaseException:
            self.close()
            raise

    def _add(self, name: str) -> None:
        netns.ip("netns", "add", name)
        self._namespaces.append(name)
        netns.ip("-n", name, "link", "set", "lo", "up")

    def address(self, pod: str) -> str:
        return self.pods[pod][2]

    async def worker(self, pod: str, keys: Path) -> netns.Worker:
        """`python -m wool.worker` in `pod`, finding its peers through the name."""
        namespace, _, address = self.pods[pod]
        argv = ["ip", "netns", "exec", namespace, sys.executable, "-m", "wool.worker"]
        argv += ["--bind", f"tcp://{address}:{PORT}", "--keys", str(keys), "--discovery", f"dns:{NAME}:{PORT}@{DNS_ADDRESS}"]
        worker = netns.Worker(argv)
        self.processes.append(worker)
        return await worker.start()

    def python(self, code: str, *args: str) -> netns.Process:
        process = netns.Process(["ip", "netns", "exec", self.caller, sys.executable, "-c", code, *args])
        self.processes.append(process)
        return process

    def close(self) -> None:
        """Kill what runs here, then delete the namespaces (their links go with them)."""
        errors = []
        try:
            for process in self.processes:
                process.close()
        finally:
            for name in reversed(self._namespaces):
                try:
                    netns.ip("netns", "del", name)
                except OSError as e:
                    errors.append(str(e))
            self._namespaces.clear()
        if errors:
            raise OSError("; ".join(errors))


@pytest.fixture
async def pods() -> AsyncIterator[Pods]:
    for reason in (dnsmasq.unavailable(), netns.unavailable()):
        if reason is not None:
            pytest.skip(reason)
    made = Pods()
    try:
        yield made
    finally:
        made.close()
        await asyncio.sleep(0)  # let the closed pipe transports finish closing


@pytest.fixture
async def server(pods: Pods, tmp_path: Path) -> AsyncIterator[dnsmasq.Dnsmasq]:
    """dnsmasq in the caller's namespace, on the standard port (it is that namespace's own)."""
    dns = dnsmasq.Dnsmasq(tmp_path / "dns", DNS_ADDRESS, 53, netns=pods.caller)
    try:
        yield dns
    finally:
        await dns.close()


async def ask(caller: netns.Process, *workers: netns.Worker) -> dict[str, Any]:
    """Have the caller wait for exactly `workers`, and return what it then saw."""
    caller.send(json.dumps([w.id for w in workers]))
    return await next_message(caller, lambda m: "workers" in m or "error" in m)


async def next_message(caller: netns.Process, wanted: Any, timeout: float = 25) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            message = await caller.message(timeout)
            if wanted(message):
                assert "error" not in message, message["error"]
                return message


async def test_pool_follows_pods_in_namespaces_through_dns(pods: Pods, server: dnsmasq.Dnsmasq, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    generate_directory(keys)
    await server.set_hosts({NAME: [pods.address("w1")]})
    await server.start()
    a, b = await asyncio.gather(pods.worker("w1", keys), pods.worker("w2", keys))
    code = "import asyncio, sys, dns_scenarios as s; asyncio.run(s.caller(*sys.argv[1:]))"
    caller = pods.python(code, NAME, str(PORT), DNS_ADDRESS, str(keys))
    await next_message(caller, lambda m: m.get("ready"))

    seen = await ask(caller, a)  # only a's record exists
    assert seen["pids"] == [a.pid]

    await server.set_hosts({NAME: [pods.address("w1"), pods.address("w2")]})  # b's pod is ready
    seen = await ask(caller, a, b)
    assert seen["workers"] == sorted([a.id, b.id])
    # A worker found its peer through the name too, from its own namespace, across the links.
    assert seen["peers"] == sorted([a.id, b.id])

    await server.set_hosts({NAME: [pods.address("w2")]})  # a's pod is going away: out of DNS,
    a.signal(signal.SIGTERM)  # then stopped (removal alone is a hint: README, Failure semantics)
    assert await a.wait() == 0
    seen = await ask(caller, b)
    assert seen["pids"] == [b.pid]

    await server.stop()  # the server is unreachable: b stays, with a warning
    warning = await next_message(caller, lambda m: "could not resolve" in m.get("warning", ""))
    assert "keeping the 1 endpoints resolved before" in warning["warning"]
    seen = await ask(caller, b)
    assert seen["pids"] == [b.pid]

    assert caller.proc.stdin is not None
    caller.proc.stdin.close()
    assert await caller.wait() == 0
