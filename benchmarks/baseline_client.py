"""The caller's end of the hand-written baselines (servers in `baseline_server`).

- `DirectClient`: one call at a time, send then await the reply on the socket itself: the
  floor for sequential latency (no reader task, no futures).
- `LoopClient`: many calls in flight on one DEALER, matched to replies by call id by one
  reader task that awaits each message: the floor for concurrent calls.
- `RawClient`: raw bytes echo and the unasked push stream.

The envelope is msgpack `[call id, function name]`, the function and the arguments are
pickled frames, and the server caches the function by name: wool's wire format, minus
everything wool does besides.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import pickle
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cloudpickle
import msgpack
import zmq
import zmq.asyncio

_ROOT = str(Path(__file__).resolve().parent.parent)


class ServerProcess:
    """A `baseline_server` process: spawned, its port read, and stopped for sure."""

    def __init__(self, mode: str) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")])))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.baseline_server", mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self._port: int | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def endpoint(self) -> str:
        """Waits for the server to print its port (blocking: it is only done at start-up)."""
        if self._port is None:
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline()
            if not line.strip():
                self.stop()
                raise RuntimeError(f"baseline server exited before serving (code {self.proc.returncode})")
            self._port = int(line)
        return f"tcp://127.0.0.1:{self._port}"

    def stop(self) -> None:
        """Close its stdin (it exits on end-of-file), kill it if it does not."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def start_servers(mode: str, count: int) -> list[ServerProcess]:
    """Start `count` servers at once, then wait until each serves."""
    servers: list[ServerProcess] = []
    try:
        for _ in range(count):
            servers.append(ServerProcess(mode))
        for server in servers:
            server.endpoint()
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers


def _dealer(endpoint: str) -> zmq.asyncio.Socket:
    sock = zmq.asyncio.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    sock.sndhwm = sock.rcvhwm = 0
    sock.connect(endpoint)
    return sock


_pickled: dict[Callable[..., Any], tuple[bytes, bytes]] = {}


def _request(call_id: int, fn: Callable[..., Any], args: tuple[Any, ...]) -> list[bytes]:
    named = _pickled.get(fn)
    if named is None:
        named = _pickled[fn] = (f"{fn.__module__}.{fn.__qualname__}".encode(), cloudpickle.dumps(fn))
    return [msgpack.packb([call_id, named[0]]), named[1], pickle.dumps(args)]


class DirectClient:
    """Sequential calls to one loop server."""

    def __init__(self, endpoint: str) -> None:
        self._sock = _dealer(endpoint)
        self._ids = itertools.count(1)

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        await self._sock.send_multipart(_request(next(self._ids), fn, args))
        _, result = await self._sock.recv_multipart()
        return pickle.loads(result)

    def close(self) -> None:
        self._sock.close(linger=0)


class LoopClient:
    """Concurrent calls to one loop server, multiplexed by call id."""

    def __init__(self, endpoint: str) -> None:
        self._sock = _dealer(endpoint)
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        while True:
            env, result = await self._sock.recv_multipart()
            future = self._waiting.pop(msgpack.unpackb(env), None)
            if future is not None and not future.done():
                future.set_result(pickle.loads(result))

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        call_id = next(self._ids)
        future = self._waiting[call_id] = asyncio.get_running_loop().create_future()
        await self._sock.send_multipart(_request(call_id, fn, args))
        return await future

    async def gather(self, calls: Sequence[tuple[Callable[..., Any], tuple[Any, ...]]]) -> list[Any]:
        return await asyncio.gather(*(self.call(fn, *args) for fn, args in calls))

    def close(self) -> None:
        self._reader.cancel()  # its pending receive dies with the socket
        for future in self._waiting.values():
            future.cancel()
        self._sock.close(linger=0)


_peers: dict[str, LoopClient] = {}


async def peer_client(endpoint: str) -> LoopClient:
    """A loop server's own client to a peer server, made once (used by `functions.fanout`)."""
    client = _peers.get(endpoint)
    if client is None:
        client = _peers[endpoint] = LoopClient(endpoint)
    return client


class RawClient:
    """Raw bytes through a DEALER/ROUTER pair: no envelope, no pickling, no copies."""

    def __init__(self, endpoint: str) -> None:
        self._sock = _dealer(endpoint)

    async def echo(self, data: bytes) -> memoryview:
        """The floor: zero-copy both ways, the reply handed back as a view of the frame."""
        await self._sock.send_multipart([b"echo", data], copy=False)
        frame = await self._sock.recv(copy=False)
        return frame.buffer

    async def push(self, n: int) -> int:
        """Ask for `n` items, receive them as they come unasked; returns their sum."""
        await self._sock.send_multipart([b"push", msgpack.packb(n)])
        total = 0
        while True:
            frames = await self._sock.recv_multipart()
            if len(frames) == 1:
                return total
            total += pickle.loads(frames[1])

    def close(self) -> None:
        self._sock.close(linger=0)
