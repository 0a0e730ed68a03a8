"""A keyless `ipc://` connection makes its own connect attempts and holds requests back until
the worker answered its hello (`wool.caller._hello`), against a stand-in worker in this
process: a ZeroMQ ROUTER of this user's."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest
import zmq
import zmq.asyncio

import wool
from wool import protocol as p
from wool.caller import Connection
from wool.discovery import WorkerInfo

pytestmark = pytest.mark.timeout(30)

ID = "c" * 32


async def serve(router: zmq.asyncio.Socket, seen: list[str], worker_id: str) -> None:
    while True:
        identity, *frames = await router.recv_multipart()
        msg = p.decode(frames)
        seen.append(msg.kind.name.lower())
        if isinstance(msg, p.Ping):
            await router.send_multipart([identity, *p.encode(p.Pong(msg.call_id, worker_id))])


async def test_a_refused_endpoint_is_tried_again_and_requests_wait_for_the_hello(runtime_dir: Path) -> None:
    path = runtime_dir / "later.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # the file stays: connecting to it is refused
    refused = asyncio.Event()
    conn = Connection(WorkerInfo(ID, f"ipc://{path}", os.getpid(), "", frozenset()), on_refused=lambda _: refused.set())
    ctx = zmq.asyncio.Context()
    router = ctx.socket(zmq.ROUTER)
    router.linger = 0
    seen: list[str] = []
    server: asyncio.Task[None] | None = None
    try:
        await asyncio.wait_for(refused.wait(), 10)
        early = conn.request(p.Ping(conn.new_call_id()), False)  # held until the hello is answered
        path.unlink()
        router.bind(f"ipc://{path}")
        server = asyncio.ensure_future(serve(router, seen, ID))
        await asyncio.wait_for(asyncio.shield(conn.connected), 10)
        reply = await asyncio.wait_for(early, 10)
        assert isinstance(reply, p.Pong) and reply.worker_id == ID
        assert seen == ["ping", "ping"]  # the hello, then the request that waited for it
    finally:
        if server is not None:
            server.cancel()
            await asyncio.gather(server, return_exceptions=True)
        conn.close()
        router.close(linger=0)
        ctx.term()


async def test_another_incarnation_answering_the_hello_is_lost_before_any_call(runtime_dir: Path) -> None:
    path = runtime_dir / "restarted.sock"
    ctx = zmq.asyncio.Context()
    router = ctx.socket(zmq.ROUTER)
    router.linger = 0
    router.bind(f"ipc://{path}")
    seen: list[str] = []
    server = asyncio.ensure_future(serve(router, seen, "d" * 32))
    conn = Connection(WorkerInfo(ID, f"ipc://{path}", os.getpid(), "", frozenset()))
    try:
        held = conn.request(p.Ping(conn.new_call_id()), False)
        with pytest.raises(wool.WorkerLost, match="answered in its place"):
            await asyncio.wait_for(asyncio.shield(conn.connected), 10)
        with pytest.raises(wool.WorkerLost, match="answered in its place"):
            await asyncio.wait_for(held, 10)
        assert seen == ["ping"]  # only the hello went out
    finally:
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)
        conn.close()
        router.close(linger=0)
        ctx.term()
