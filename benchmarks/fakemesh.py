"""A simulated mesh: many lightweight fake workers in one process, and a caller to measure.

    python -m benchmarks.fakemesh host NAMESPACE N     # N fake workers, listed in NAMESPACE
    python -m benchmarks.fakemesh caller NAMESPACE N   # a WorkerPool over them

A fake worker is a ROUTER socket that answers like a real worker, with the real codec: a
`call` is decoded, its arguments unpickled and summed (the benchmark routine is `add`), and
the sum returned; a `ping` gets a `pong`; anything else a `reject`. All N share one ZeroMQ
context and one poll loop, so a thousand of them fit in one process. The host lists them in a
`LocalDiscovery` registry with one write, prints `ready`, then obeys lines on stdin:
`churn RATE SECONDS` withdraws and re-adds fake workers, RATE changes a second (each a real
registry update, as a joining or leaving worker makes), then prints `churned COUNT`; end of
stdin removes the registry and exits.

The caller enters `WorkerPool(discovery=LocalDiscovery(NAMESPACE))`, waits until N workers are
in rotation, makes one call, prints one JSON line (`listed_s`, `first_call_us`), and idles
until its stdin closes, so that the benchmark can measure it from outside.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
import uuid

import zmq

import wool
from wool import protocol as p
from wool.discovery import _local

from . import routines


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _answer(frames: list[bytes], worker_id: str) -> list[bytes]:
    try:
        msg = p.decode(frames)
    except p.ProtocolError as e:
        return p.encode(p.Reject(e.call_id or 0, p.RejectReason.MALFORMED, str(e)))
    if isinstance(msg, p.Ping):
        return p.encode(p.Pong(msg.call_id, worker_id))
    if isinstance(msg, p.Call):
        args, kwargs = p.loads(msg.payload)  # type: ignore[misc]
        return p.encode(p.Return(msg.call_id, p.dumps(sum(args))))
    return p.encode(p.Reject(msg.call_id, p.RejectReason.UNKNOWN_CALL, "a fake worker runs calls only"))


def host(namespace: str, n: int) -> None:
    _raise_fd_limit()
    ctx = zmq.Context()
    ctx.set(zmq.MAX_SOCKETS, n + 64)
    discovery = wool.LocalDiscovery(namespace)
    path = discovery._path()
    sockets: dict[zmq.Socket[bytes], wool.WorkerInfo] = {}
    for _ in range(n):
        sock: zmq.Socket[bytes] = ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        port = sock.bind_to_random_port("tcp://127.0.0.1")
        sockets[sock] = wool.WorkerInfo(uuid.uuid4().hex, f"tcp://127.0.0.1:{port}", os.getpid())
    infos = list(sockets.values())
    with _local._locked(path.with_suffix(".lock")):
        _local._write(path, {info.id: info for info in infos})
    poller = zmq.Poller()
    for sock in sockets:
        poller.register(sock, zmq.POLLIN)
    poller.register(sys.stdin.fileno(), zmq.POLLIN)
    print("ready", flush=True)
    churn: tuple[float, float, int] | None = None  # (interval, end, done)
    next_change = 0.0
    try:
        while True:
            timeout = None if churn is None else max(0.0, next_change - time.monotonic()) * 1000
            for sock, _ in poller.poll(timeout):
                if sock == sys.stdin.fileno():
                    line = sys.stdin.readline()
                    if not line:
                        return
                    _, rate, seconds = line.split()
                    churn = (1 / float(rate), time.monotonic() + float(seconds), 0)
                    next_change = time.monotonic()
                    continue
                assert isinstance(sock, zmq.Socket)
                while True:
                    try:
                        frames = sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    try:
                        sock.send_multipart([frames[0], *_answer(frames[1:], sockets[sock].id)], zmq.NOBLOCK)
                    except zmq.ZMQError:
                        pass  # the caller is gone
            if churn is not None and time.monotonic() >= next_change:
                interval, end, done = churn
                victim = infos[done // 2 % len(infos)]
                if done % 2 == 0:
                    discovery._modify(drop=victim.id)  # it leaves...
                else:
                    discovery._modify(put=victim)  # ...and joins again
                done += 1
                next_change += interval
                churn = (interval, end, done)
                if time.monotonic() >= end:
                    if done % 2:
                        discovery._modify(put=victim)
                    print(f"churned {done}", flush=True)
                    churn = None
    finally:
        path.unlink(missing_ok=True)
        path.with_suffix(".lock").unlink(missing_ok=True)
        for sock in sockets:
            sock.close(0)
        ctx.term()


async def caller(namespace: str, n: int) -> None:
    _raise_fd_limit()
    t0 = time.perf_counter()
    async with wool.WorkerPool(discovery=wool.LocalDiscovery(namespace)) as pool:
        await pool.wait_for_workers(lambda ws: len(ws) >= n, timeout=120)
        t1 = time.perf_counter()
        assert await routines.add(1, 2) == 3
        t2 = time.perf_counter()
        print(json.dumps({"listed_s": t1 - t0, "first_call_us": (t2 - t1) * 1e6}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    role, namespace, count = sys.argv[1:4]
    if role == "host":
        host(namespace, int(count))
    else:
        asyncio.run(caller(namespace, int(count)))
