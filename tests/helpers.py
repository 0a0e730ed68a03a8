"""Test tools: an `Observer` that routines report to over loopback TCP (how a test sees what
happened inside a worker, and how it holds routines at a gate, without sleeping), and
`CliWorker`, a worker started by hand with `python -m wool.worker`."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import signal
import subprocess
import sys
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle

import wool
from wool import protocol as p
from wool.worker._endpoint import remove_socket

REPO = Path(__file__).resolve().parent.parent


class Observer:
    """A loopback server collecting events that routines `report`, and releasing routines
    waiting at a `gate` when the test says so."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self._changed = asyncio.Condition()
        self._gates: dict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self._server: asyncio.Server | None = None
        self.address = ""

    async def __aenter__(self) -> Observer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        host, port = self._server.sockets[0].getsockname()[:2]
        self.address = f"{host}:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for gate in self._gates.values():
            gate.set()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = (await reader.readline()).decode().rstrip("\n")
            kind, _, text = line.partition(" ")
            if kind == "gate":
                await self._record(f"at {text}")
                await self._gates[text].wait()
                writer.write(b"go\n")
                await writer.drain()
            elif kind == "event":
                await self._record(text)
                writer.write(b"ok\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _record(self, event: str) -> None:
        async with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    def open(self, gate: str) -> None:
        self._gates[gate].set()

    async def wait_for(self, event: str, count: int = 1, timeout: float = 20.0) -> None:
        """Wait until `event` was reported `count` times."""
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(lambda: self.events.count(event) >= count)

    async def wait_matching(self, pattern: str, timeout: float = 20.0) -> str:
        """Wait for an event matching the regex `pattern`, and return it."""
        rx = re.compile(pattern)
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(lambda: any(rx.fullmatch(e) for e in self.events))
        return next(e for e in self.events if rx.fullmatch(e))


async def read_line(stream: object, timeout: float = 30.0) -> str:
    """One line from a subprocess pipe, read on the loop (no threads)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), stream)
    try:
        return (await asyncio.wait_for(reader.readline(), timeout)).decode()
    finally:
        transport.pause_reading()


async def wait_exit(proc: subprocess.Popen[Any], timeout: float = 30.0) -> int:
    """`proc`'s exit code, waited for on the loop: a pidfd becomes readable at exit."""
    if proc.poll() is not None:
        return proc.returncode
    loop = asyncio.get_running_loop()
    exited = loop.create_future()
    pidfd = os.pidfd_open(proc.pid)
    loop.add_reader(pidfd, lambda: exited.done() or exited.set_result(None))
    try:
        async with asyncio.timeout(timeout):
            await exited
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)
    return proc.wait()


class CliWorker:
    """`python -m wool.worker ...` as a user would start it; waits for its start-up line."""

    def __init__(self, *args: str, stderr: Any = None) -> None:
        self.args = args
        self.stderr = stderr  # where its log goes: a file, or None for the test's stderr
        self.proc: subprocess.Popen[bytes] | None = None
        self.endpoint = ""
        self.id = ""
        self.line = ""  # its start-up line

    async def __aenter__(self) -> CliWorker:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests")]))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "wool.worker", *self.args], stdout=subprocess.PIPE, stderr=self.stderr, env=env, cwd=REPO
        )
        assert self.proc.stdout is not None
        line = self.line = await read_line(self.proc.stdout)
        match = re.match(r"wool worker (\w+) listening on (\S+) \(pid (\d+)\)", line)
        if match is None:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"worker did not start: {line!r}")
        self.id, self.endpoint = match.group(1), match.group(2)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def signal(self, sig: int = signal.SIGTERM) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait(self, timeout: float = 30.0) -> int:
        """Wait for exit without blocking the loop (a test's routines may still be running)."""
        assert self.proc is not None
        return await wait_exit(self.proc, timeout)

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            # A killed worker leaves its socket file: the next worker to start would remove
            # it, as this does.
            remove_socket(self.endpoint)


async def stop_and_wait_withdrawn(discovery: wool.Discovery, worker: CliWorker, timeout: float = 10.0) -> None:
    """SIGTERM `worker`, and wait until it left the registry (the discovery's own change feed
    says so). The feed is followed from before the signal: a watch started after it could
    begin after the withdrawal, and would never report it."""
    watch = discovery.watch()
    try:
        async with asyncio.timeout(timeout):
            async for event in watch:
                if event.kind == "added" and event.worker.id == worker.id:
                    worker.signal(signal.SIGTERM)
                elif event.kind == "removed" and event.worker.id == worker.id:
                    return
    finally:
        await watch.aclose()


class DelegatingDiscovery:
    """A user-defined discovery (importable from the caller's sys.path, not from PYTHONPATH)
    that delegates to a `LocalDiscovery`; subclasses change one method."""

    def __init__(self, name: str) -> None:
        self.inner = wool.LocalDiscovery(name)

    async def publish(self, worker: wool.WorkerInfo) -> None:
        await self.inner.publish(worker)

    async def withdraw(self, worker: wool.WorkerInfo) -> None:
        await self.inner.withdraw(worker)

    async def workers(self) -> list[wool.WorkerInfo]:
        return await self.inner.workers()

    def watch(self) -> AsyncIterator[wool.DiscoveryEvent]:
        return self.inner.watch()


def make_call(worker_id: str, call_id: int, fn: Callable[..., Any], *args: Any, generator: bool = False, **kwargs: Any) -> p.Call:
    """A well-formed `call` of `fn(*args, **kwargs)`, as a wool caller would build it."""
    routine = cloudpickle.dumps(fn, protocol=5)
    digest = hashlib.blake2b(routine, digest_size=16).digest()
    return p.Call(call_id, worker_id, digest, fn.__qualname__, generator, routine, p.dumps((args, kwargs)))


@contextlib.contextmanager
def logged_to(handler: logging.Handler, name: str = "wool", level: int | None = None) -> Iterator[None]:
    """`handler` hears logger `name` for the block (and, with `level`, the logger passes
    records from that level); both are put back after."""
    logger = logging.getLogger(name)
    previous = logger.level
    logger.addHandler(handler)
    if level is not None:
        logger.setLevel(level)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
