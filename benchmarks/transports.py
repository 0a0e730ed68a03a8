"""Keyless workers on their default transport, an `ipc://` socket in the private runtime
directory, against the same workers opted into loopback TCP (`--insecure --bind
tcp://127.0.0.1:0`): sequential latency, concurrent throughput and payload round trips (the
median of five), two workers per side, the sides alternating round by round. Prints each round, then the
medians and the ratios ipc/tcp.

    python benchmarks/transports.py [--rounds 5] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import wool  # noqa: E402

SIDES = {"ipc": [], "tcp": ["--insecure", "--bind", "tcp://127.0.0.1:0"]}


@wool.routine
async def echo(value: object) -> object:
    return value


async def workers(namespace: str, args: list[str]) -> list[subprocess.Popen[bytes]]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    command = [sys.executable, "-m", "wool.worker", "--discovery", f"local:{namespace}", *args]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, env=env) for _ in range(2)]
    for proc in procs:
        assert proc.stdout is not None
        line = await asyncio.to_thread(proc.stdout.readline)  # the start-up line
        if not line.startswith(b"wool worker"):
            raise RuntimeError(f"a worker did not start: {line!r}")
    return procs


async def measure(namespace: str, calls: int, concurrent: int, payload: int) -> dict[str, float]:
    async with wool.WorkerPool(discovery=wool.LocalDiscovery(namespace)) as pool:
        await pool.wait_for_workers(lambda ws: len(ws) == 2, timeout=30)
        for i in range(200):
            await echo(i)
        times = []
        for i in range(calls):
            start = time.perf_counter()
            await echo(i)
            times.append(time.perf_counter() - start)
        start = time.perf_counter()
        await asyncio.gather(*(echo(i) for i in range(concurrent)))
        throughput = concurrent / (time.perf_counter() - start)
        blob = os.urandom(payload)
        trips = []
        for _ in range(5):
            start = time.perf_counter()
            assert await echo(blob) == blob
            trips.append(time.perf_counter() - start)
        rate = 2 * payload / statistics.median(trips) / 1e6
    return {"latency_us": statistics.median(times) * 1e6, "calls_per_s": throughput, "payload_mb_per_s": rate}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="fewer calls and a smaller payload")
    args = parser.parse_args()
    calls, concurrent, payload = (500, 2_000, 4 << 20) if args.quick else (2_000, 20_000, 64 << 20)
    results: dict[str, list[dict[str, float]]] = {side: [] for side in SIDES}
    for round_ in range(args.rounds):
        order = list(SIDES) if round_ % 2 == 0 else list(reversed(SIDES))
        for side in order:
            namespace = f"transports-{side}-{uuid.uuid4().hex[:8]}"
            procs = await workers(namespace, SIDES[side])
            try:
                result = await measure(namespace, calls, concurrent, payload)
            finally:
                for proc in procs:
                    proc.terminate()
                for proc in procs:
                    await asyncio.to_thread(proc.wait)
                    if proc.stdout is not None:
                        proc.stdout.close()
            results[side].append(result)
            print(side, "  ".join(f"{k} {v:,.1f}" for k, v in result.items()), flush=True)
    medians = {side: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for side, rs in results.items()}
    for side, values in medians.items():
        print(f"median {side}", "  ".join(f"{k} {v:,.1f}" for k, v in values.items()))
    print("ipc/tcp", "  ".join(f"{k} {medians['ipc'][k] / medians['tcp'][k]:.2f}x" for k in medians["ipc"]))


if __name__ == "__main__":
    asyncio.run(main())
