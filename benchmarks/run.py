"""wool against a hand-written asyncio DEALER/ROUTER loop, measured in the same run.

    python benchmarks/run.py [--quick] [--json PATH]

Workloads (2 workers for wool; one baseline server process):
- latency: sequential `await add(1, 2)`, median and p99 microseconds per call;
- throughput: N concurrent calls, calls per second.
The baseline sends a msgpack envelope plus pickled (x, 1) args to a cached `add` and returns
the pickled result: the floor for this design. Ratios are reported, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pickle
import statistics
import subprocess
import sys
import time

import cloudpickle
import msgpack
import zmq
import zmq.asyncio

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import wool  # noqa: E402

BASELINE_SERVER = r"""
import asyncio, pickle, sys, msgpack, zmq, zmq.asyncio
async def main():
    ctx = zmq.asyncio.Context()
    sock = ctx.socket(zmq.ROUTER)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    print(port, flush=True)
    cache = {}
    while True:
        ident, env, fn, args = await sock.recv_multipart()
        call_id, digest = msgpack.unpackb(env)
        f = cache.get(digest) or cache.setdefault(digest, pickle.loads(fn))
        result = await f(*pickle.loads(args))
        await sock.send_multipart([ident, msgpack.packb(call_id), pickle.dumps(result)])
asyncio.run(main())
"""


@wool.routine
async def add(x: int, y: int) -> int:
    return x + y


async def _baseline_add(x: int, y: int) -> int:
    return x + y


class Baseline:
    def __init__(self, endpoint: str) -> None:
        self.sock = zmq.asyncio.Context.instance().socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.connect(endpoint)
        self.fn = cloudpickle.dumps(_baseline_add)
        self.ids = 0
        self.waiting: dict[int, asyncio.Future[int]] = {}

    async def call(self, x: int) -> int:
        self.ids += 1
        await self.sock.send_multipart([msgpack.packb([self.ids, b"add"]), self.fn, pickle.dumps((x, 1))])
        _, result = await self.sock.recv_multipart()
        return pickle.loads(result)

    async def many(self, n: int) -> None:
        async def reader() -> None:
            for _ in range(n):
                call_id, result = await self.sock.recv_multipart()
                self.waiting.pop(msgpack.unpackb(call_id)).set_result(pickle.loads(result))

        async def one(x: int) -> int:
            self.ids += 1
            fut = self.waiting[self.ids] = asyncio.get_running_loop().create_future()
            await self.sock.send_multipart([msgpack.packb([self.ids, b"add"]), self.fn, pickle.dumps((x, 1))])
            return await fut

        task = asyncio.ensure_future(reader())
        await asyncio.gather(*(one(i) for i in range(n)))
        await task


async def latency(call, n: int) -> dict[str, float]:
    for i in range(50):
        await call(i)
    samples = []
    for i in range(n):
        t = time.perf_counter()
        await call(i)
        samples.append((time.perf_counter() - t) * 1e6)
    samples.sort()
    return {"median_us": statistics.median(samples), "p99_us": samples[int(len(samples) * 0.99) - 1]}


async def throughput(run, n: int) -> dict[str, float]:
    t = time.perf_counter()
    await run(n)
    return {"calls_per_s": n / (time.perf_counter() - t)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args()
    n_lat, n_thr = (300, 2_000) if args.quick else (3_000, 20_000)
    server = subprocess.Popen([sys.executable, "-c", BASELINE_SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        baseline = Baseline(f"tcp://127.0.0.1:{server.stdout.readline().strip()}")
        results = {
            "latency": {"baseline": await latency(baseline.call, n_lat)},
            "throughput": {"baseline": await throughput(baseline.many, n_thr)},
        }
        baseline.sock.close()
    finally:
        server.kill()
        server.wait()
    async with wool.WorkerPool(size=2):
        results["latency"]["wool"] = await latency(lambda x: add(x, 1), n_lat)

        async def many(n: int) -> None:
            await asyncio.gather(*(add(i, 1) for i in range(n)))

        results["throughput"]["wool"] = await throughput(many, n_thr)
    print(f"{'workload':<12} {'metric':<12} {'baseline':>12} {'wool':>12} {'wool/baseline':>14}")
    for workload, sides in results.items():
        for metric, base in sides["baseline"].items():
            mine = sides["wool"][metric]
            print(f"{workload:<12} {metric:<12} {base:>12.1f} {mine:>12.1f} {mine / base:>14.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    asyncio.run(main())
