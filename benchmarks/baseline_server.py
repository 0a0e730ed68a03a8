"""The server processes of the hand-written baselines, the floor for wool's design.

    python -m benchmarks.baseline_server loop|raw

It binds a ROUTER to a random loopback port, prints the port, and serves until its stdin
closes (so it never outlives the benchmark, even one that was killed).

- `loop`: the minimal asyncio loop: await a request `[envelope, function, args]`, unpickle the
  function once per name, await it, await sending `[envelope, result]`. One call at a time.
- `raw`: no pickling at all. `[b"echo", *frames]` sends the frames back as they came
  (zero-copy both ways); `[b"push", n]` sends `n` items `[envelope, pickled item]` unasked,
  then `[b""]`: the fastest stream this transport allows.

Like wool's workers, it runs on uvloop when that is installed (unless WOOL_UVLOOP=0).
High-water marks are unlimited so a ROUTER never silently drops a reply the benchmark is
waiting for; wool bounds its queues instead, which is part of what it is measured doing.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import sys
from collections.abc import Callable
from typing import Any

import msgpack
import zmq
import zmq.asyncio


async def serve_loop(sock: zmq.asyncio.Socket) -> None:
    cache: dict[bytes, Callable[..., Any]] = {}
    while True:
        ident, env, fn, args = await sock.recv_multipart()
        call_id, name = msgpack.unpackb(env)
        f = cache.get(name)
        if f is None:
            f = cache[name] = pickle.loads(fn)
        result = await f(*pickle.loads(args))
        await sock.send_multipart([ident, msgpack.packb(call_id), pickle.dumps(result)])


async def serve_raw(sock: zmq.asyncio.Socket) -> None:
    while True:
        ident, kind, *rest = await sock.recv_multipart(copy=False)
        if kind.bytes == b"echo":
            await sock.send_multipart([ident, *rest], copy=False)
        elif kind.bytes == b"push":
            for i in range(msgpack.unpackb(rest[0].bytes)):
                await sock.send_multipart([ident, msgpack.packb(i), pickle.dumps(i)])
            await sock.send_multipart([ident, b""])


def _exit_when_stdin_closes() -> None:
    if not os.read(0, 4096):
        os._exit(0)


async def main(mode: str) -> None:
    sock = zmq.asyncio.Context.instance().socket(zmq.ROUTER)
    sock.linger = 0
    sock.sndhwm = sock.rcvhwm = 0
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    asyncio.get_running_loop().add_reader(0, _exit_when_stdin_closes)
    print(port, flush=True)
    await (serve_loop if mode == "loop" else serve_raw)(sock)


def _run(mode: str) -> None:
    # The same event loop as wool's workers, which run on uvloop when it is installed
    # (unless WOOL_UVLOOP=0): the floor must not be held to a slower loop than wool is.
    if os.environ.get("WOOL_UVLOOP", "1") != "0":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            uvloop.run(main(mode))
            return
    asyncio.run(main(mode))


if __name__ == "__main__":
    if sys.argv[1:] not in (["loop"], ["raw"]):
        sys.exit("usage: python -m benchmarks.baseline_server loop|raw")
    _run(sys.argv[1])
