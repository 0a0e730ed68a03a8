"""What a hostile caller's context frames cost a worker's other callers: the latency of
`add(1, 2)` from a pool, before and after another caller sent the worker calls whose context
frames carry fresh keys.

    python benchmarks/hostile_context.py [--calls 2000] [--frames 100] [--keys 1024]

Spawns `WorkerPool(size=1)`; measures `--calls` sequential calls (median and p99); then a raw
DEALER sends `--frames` calls of `add` whose context frame holds `--keys` keys never seen
before (1,024, the most a frame may carry, by default), plus one frame of 100,000 keys (which
the worker refuses); then the same calls are measured again. A worker that kept a
process-wide variable per key ever seen (before context frames were bounded) walked all of
them on every later call.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import os
import pickle
import statistics
import sys
import time

import cloudpickle
import zmq
import zmq.asyncio

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import wool  # noqa: E402
from benchmarks import routines  # noqa: E402
from wool import protocol as p  # noqa: E402
from wool._transport import context  # noqa: E402


async def latencies(calls: int) -> list[float]:
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        await routines.add(1, 2)
        times.append(time.perf_counter() - started)
    return times


def summary(times: list[float]) -> str:
    times = sorted(times)
    return f"median {statistics.median(times) * 1e6:.0f} µs, p99 {times[int(len(times) * 0.99)] * 1e6:.0f} µs"


async def hostile(worker: wool.WorkerInfo, frames: int, keys: int) -> dict[str, int]:
    """Send the calls with fresh keys and wait for every reply: how many of each kind."""
    routine = cloudpickle.dumps(routines.add, protocol=5)
    call = p.Call(0, worker.id, hashlib.blake2b(routine, digest_size=16).digest(), "add", False, routine, p.dumps(((1, 2), {})))
    sock = zmq.asyncio.Context.shadow(context()).socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(worker.endpoint)
    outcomes: dict[str, int] = {}
    try:
        sizes = [keys] * frames + [100_000]
        for i, count in enumerate(sizes, 1):
            frame = pickle.dumps({(f"hostile.{i}", f"k{j}"): j for j in range(count)}, protocol=5)
            await sock.send_multipart(p.encode(dataclasses.replace(call, call_id=i, context=frame)))
        for _ in sizes:
            if not await sock.poll(60_000):
                raise TimeoutError("the worker did not answer the hostile calls within 60 s")
            msg = p.decode(await sock.recv_multipart())
            kind = msg.kind.name.lower()
            outcomes[kind] = outcomes.get(kind, 0) + 1
    finally:
        sock.close(linger=0)
    return outcomes


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--keys", type=int, default=1024)
    args = parser.parse_args()
    async with wool.WorkerPool(size=1) as pool:
        (worker,) = pool.workers
        await latencies(200)  # warm up: connection, routine cache
        before = await latencies(args.calls)
        print(f"before: {summary(before)}")
        started = time.perf_counter()
        replies = await hostile(worker, args.frames, args.keys)
        took = time.perf_counter() - started
        print(f"hostile: {args.frames} frames of {args.keys} fresh keys and one of 100,000: replies {replies}, {took:.2f} s")
        after = await latencies(args.calls)
        print(f"after:  {summary(after)}")
        print(f"after/before median: {statistics.median(after) / statistics.median(before):.2f}")


if __name__ == "__main__":
    asyncio.run(main())
