"""A real DNS server for DNS discovery tests: `dnsmasq`, serving the records a headless
Service would (A records per worker, SRV records per worker and port) from files the test
writes, on an address and port the test chooses.

What dnsmasq re-reads on SIGHUP: its `--addn-hosts` files (A/AAAA records), not its command
line. So A records change by rewriting the hosts file and sending SIGHUP (dnsmasq logs "read
FILE - N names" when done, which is what `set_hosts` waits for), and SRV records, which only
the command line can give, change by `restart`. It runs in the foreground (`-k`), answers
only for `DOMAIN` (NXDOMAIN for unknown names there, REFUSED elsewhere: it has no upstream),
writes no pid file, and logs to a pipe the test reads. `close()` stops it.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

DOMAIN = "dns.test"


def _binary() -> str | None:
    # /usr/sbin is not on every user's PATH.
    return shutil.which("dnsmasq") or shutil.which("dnsmasq", path="/usr/sbin:/sbin")


def unavailable() -> str | None:
    """Why dnsmasq cannot run here, or None if it can."""
    if _binary() is None:
        return "dnsmasq is not installed (apt-get install dnsmasq-base)"
    return None


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP on `host` just now."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((host, 0))
            port = int(udp.getsockname()[1])
            with socket.socket() as tcp:
                try:
                    tcp.bind((host, port))
                except OSError:
                    continue
                return port


class Dnsmasq:
    """One dnsmasq, listening on `address:port`; in network namespace `netns` if given. With
    `wildcard`, every name in `DOMAIN` has that address."""

    def __init__(
        self,
        directory: Path,
        address: str = "127.0.0.1",
        port: int | None = None,
        netns: str | None = None,
        wildcard: str | None = None,
    ) -> None:
        self.directory = directory
        self.wildcard = wildcard
        self.address = address
        self.port = port if port is not None else free_port(address)
        self.netns = netns
        self.hosts_file = directory / "hosts"
        self.srv: list[tuple[str, str, int]] = []
        self.log: list[str] = []
        self._changed = asyncio.Condition()
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        # dnsmasq drops root for "nobody" unless told otherwise, and must still read our files.
        self._user = pwd.getpwuid(os.geteuid()).pw_name
        directory.mkdir(parents=True, exist_ok=True)
        self.hosts_file.write_text("")

    @property
    def nameserver(self) -> str:
        """`ADDRESS:PORT`, as `DnsDiscovery(nameservers=[...])` and `dns:...@SERVER` take it."""
        return f"{self.address}:{self.port}"

    def _argv(self) -> list[str]:
        argv = [
            _binary() or "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--pid-file=",
            f"--user={self._user}",
            f"--listen-address={self.address}",
            "--bind-interfaces",
            f"--port={self.port}",
            f"--local=/{DOMAIN}/",
            f"--addn-hosts={self.hosts_file}",
            "--local-ttl=0",
            "--log-facility=-",
        ]
        if self.wildcard is not None:
            argv.append(f"--address=/{DOMAIN}/{self.wildcard}")
        argv += [f"--srv-host={name},{target},{port}" for name, target, port in self.srv]
        return ["ip", "netns", "exec", self.netns, *argv] if self.netns is not None else argv

    async def start(self, srv: Iterable[tuple[str, str, int]] | None = None) -> Dnsmasq:
        """Start serving (with these SRV records, if given); returns once it has read its
        hosts file, so it answers."""
        if srv is not None:
            self.srv = list(srv)
        reads = self._reads()
        self._proc = await asyncio.create_subprocess_exec(
            *self._argv(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        self._reader = asyncio.create_task(self._read_log(self._proc))
        await self._wait_reads(reads + 1)
        return self

    async def stop(self) -> None:
        """Stop it (SIGTERM) and wait for it to exit: from now on nothing answers."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        if self._reader is not None:
            await self._reader
            self._reader = None

    async def restart(self, srv: Iterable[tuple[str, str, int]]) -> None:
        """Serve these SRV records instead (dnsmasq reads them only at start)."""
        await self.stop()
        await self.start(srv)

    async def set_hosts(self, hosts: Mapping[str, Iterable[str]]) -> None:
        """Serve these A/AAAA records ({name: [address, ...]}) from now on; returns once
        dnsmasq has re-read them."""
        lines = [f"{address} {name}" for name, addresses in hosts.items() for address in addresses]
        tmp = self.hosts_file.with_suffix(".tmp")
        tmp.write_text("".join(line + "\n" for line in lines))
        tmp.replace(self.hosts_file)
        if self._proc is not None:
            reads = self._reads()
            self._proc.send_signal(signal.SIGHUP)
            await self._wait_reads(reads + 1)

    def _reads(self) -> int:
        rx = re.compile(rf"read {re.escape(str(self.hosts_file))} - \d+ names")
        return sum(1 for line in self.log if rx.search(line))

    async def _wait_reads(self, count: int, timeout: float = 10.0) -> None:
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: self._reads() >= count or self._proc is None)
        except TimeoutError:
            raise AssertionError(f"dnsmasq did not read its hosts file; its log: {self.log}") from None
        if self._reads() < count:
            raise AssertionError(f"dnsmasq exited; its log: {self.log}")

    async def _read_log(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        while line := await proc.stderr.readline():
            async with self._changed:
                self.log.append(line.decode(errors="replace").rstrip("\n"))
                self._changed.notify_all()
        await proc.wait()
        async with self._changed:
            if self._proc is proc:
                self._proc = None
            self._changed.notify_all()

    async def close(self) -> None:
        await self.stop()
