"""A private LAN on this machine for multi-host tests: network namespaces ("hosts") joined
by veth pairs to a bridge that lives in a namespace of its own ("switch").

Nothing touches the root namespace: each veth is created with one end already in a host (its
`eth0`) and the other in the switch (a bridge port), addresses are `10.77.0.N/24` and exist
only inside these namespaces, and every name carries a random token so that concurrent runs do
not collide. `Network.close()` ends the processes started in it and deletes the namespaces,
which takes their links with them. Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN) and `ip`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from helpers import wait_exit

REPO = Path(__file__).resolve().parent.parent
SUBNET = "10.77.0"


def ip(*args: str) -> None:
    """Run `ip ARGS`; raise `OSError` with its message if it fails."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        raise OSError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def unavailable() -> str | None:
    """Why namespaces cannot be used here, or None if they can."""
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    probe = f"wool-probe-{secrets.token_hex(3)}"
    try:
        ip("netns", "add", probe)
    except OSError as e:
        return f"the kernel refused a network namespace: {e}"
    try:
        ip("-n", probe, "link", "add", "br0", "type", "bridge")
    except OSError as e:
        return f"the kernel refused a bridge: {e}"
    finally:
        ip("netns", "del", probe)
    return None


class Process:
    """A process in a namespace, spoken to by lines on its stdin and stdout."""

    def __init__(self, argv: list[str]) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests")]), PYTHONUNBUFFERED="1")
        # `ip netns exec` execs the command, so this pid is the Python process's own.
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=REPO)
        self._reader: asyncio.StreamReader | None = None
        self._transport: asyncio.ReadTransport | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def line(self, timeout: float = 30.0) -> str:
        """The next line it prints; `TimeoutError` if none comes in time, `EOFError` at exit."""
        if self._reader is None:
            assert self.proc.stdout is not None
            self._reader = asyncio.StreamReader()
            loop = asyncio.get_running_loop()
            protocol = asyncio.StreamReaderProtocol(self._reader)
            self._transport, _ = await loop.connect_read_pipe(lambda: protocol, self.proc.stdout)
        line = await asyncio.wait_for(self._reader.readline(), timeout)
        if not line:
            raise EOFError(f"process {self.pid} exited ({self.proc.poll()})")
        return line.decode().rstrip("\n")

    async def message(self, timeout: float = 30.0) -> dict[str, Any]:
        """The next JSON line it prints (other lines are skipped)."""
        async with asyncio.timeout(timeout):
            while True:
                line = await self.line(timeout)
                if line.startswith("{"):
                    return dict(json.loads(line))

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    async def wait(self, timeout: float = 30.0) -> int:
        """Its exit code, waited for on the loop."""
        return await wait_exit(self.proc, timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if self._transport is not None:
            self._transport.close()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None and not pipe.closed:
                pipe.close()


class Worker(Process):
    """`python -m wool.worker ARGS` on a host; `start()` waits for its start-up line."""

    def __init__(self, argv: list[str]) -> None:
        super().__init__(argv)
        self.id = ""
        self.endpoint = ""

    async def start(self, timeout: float = 30.0) -> Worker:
        line = await self.line(timeout)
        match = re.match(r"wool worker (\w+) listening on (\S+) \(pid (\d+)\)", line)
        if match is None:
            raise AssertionError(f"worker did not start: {line!r}")
        self.id, self.endpoint = match.group(1), match.group(2)
        return self


class Host:
    """One namespace on the network, with address `SUBNET.n`."""

    def __init__(self, network: Network, netns: str, address: str, port: str) -> None:
        self.network = network
        self.netns = netns
        self.address = address
        self.port = port  # its bridge port in the switch: what `link_down` takes down

    def command(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *argv]

    async def worker(self, *args: str) -> Worker:
        """A worker started on this host, serving."""
        worker = Worker(self.command(sys.executable, "-m", "wool.worker", *args))
        self.network.processes.append(worker)
        return await worker.start()

    def python(self, code: str, *args: str) -> Process:
        """`python -c CODE ARGS` on this host."""
        process = Process(self.command(sys.executable, "-c", code, *args))
        self.network.processes.append(process)
        return process

    def link_down(self) -> None:
        """Unplug this host: its bridge port goes down, as a cable pulled at the switch."""
        ip("-n", self.network.switch, "link", "set", self.port, "down")


class Network:
    """A bridge in a switch namespace, and the hosts plugged into it."""

    def __init__(self) -> None:
        self.token = secrets.token_hex(3)
        self.switch = f"wool-{self.token}-sw"
        self.hosts: list[Host] = []
        self.processes: list[Process] = []
        self._namespaces: list[str] = []
        try:
            self._add_namespace(self.switch)
            ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
            ip("-n", self.switch, "link", "set", "br0", "up")
        except OSError:
            self.close()
            raise

    def _add_namespace(self, name: str) -> None:
        ip("netns", "add", name)
        self._namespaces.append(name)
        ip("-n", name, "link", "set", "lo", "up")

    def add_host(self, label: str) -> Host:
        """A new namespace plugged into the bridge, with the next free address."""
        n = len(self.hosts) + 1
        netns, port, address = f"wool-{self.token}-{label}", f"p{n}", f"{SUBNET}.{n}"
        self._add_namespace(netns)
        ip("-n", self.switch, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", netns)
        ip("-n", self.switch, "link", "set", port, "master", "br0")
        ip("-n", self.switch, "link", "set", port, "up")
        ip("-n", netns, "addr", "add", f"{address}/24", "dev", "eth0")
        ip("-n", netns, "link", "set", "eth0", "up")
        host = Host(self, netns, address, port)
        self.hosts.append(host)
        return host

    def close(self) -> None:
        """Kill every process started here, then delete every namespace (and so every link)."""
        errors = []
        for process in self.processes:
            process.close()
        for name in reversed(self._namespaces):
            try:
                ip("netns", "del", name)
            except OSError as e:
                errors.append(str(e))
        self._namespaces.clear()
        if errors:
            raise OSError("; ".join(errors))
