"""The soak run: hours of traffic in minutes, for leaks, duplicates and drift.

`python benchmarks/soak.py [--soak-seconds 600] [--json PATH]`. Four workers with
`recycle_after` and `memory_limit` set serve mixed traffic (plain calls, nested calls,
generators, read-ahead streams, `wool.map`, broadcasts, retried idempotent calls) and a
routine that leaks; one worker is SIGKILLed every `--kill-every` seconds, and the pool
replaces it. The report: calls made and failed (only `WorkerLost` of calls on a killed
worker is allowed by the at-most-once rules), calls that ran twice (must be 0), the RSS and
open descriptors of the caller and the workers over time with their slope per hour, and
p50/p99 latency of plain calls per minute.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import re
import signal
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import wool  # noqa: E402
from benchmarks import soak_routines as sr  # noqa: E402

CONCURRENCY = 16  # traffic loops running at once
SAMPLE_EVERY = 5.0  # seconds between RSS and descriptor samples


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value), per hour."""
    if len(points) < 2:
        return 0.0
    xs, ys = [x for x, _ in points], [y for _, y in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return 0.0 if den == 0 else sum((x - mx) * (y - my) for x, y in points) / den * 3600


class Soak:
    def __init__(self, seconds: float, kill_every: float, ledger: str) -> None:
        self.seconds, self.kill_every, self.ledger = seconds, kill_every, ledger
        self.made = 0
        self.failed: collections.Counter[str] = collections.Counter()
        self.unexpected: list[str] = []
        self.latency: dict[int, list[float]] = collections.defaultdict(list)
        self.per_minute: dict[int, dict[str, float]] = {}
        self.samples: list[dict[str, Any]] = []
        self.killed = 0
        self.killed_pids: set[int] = set()
        self.tokens = 0
        self.start = 0.0
        self.trace_memory = False
        self._baseline: Any = None

    def token(self) -> str:
        self.tokens += 1
        return f"t{self.tokens}"

    async def one(self, kind: str, pool: wool.WorkerPool) -> None:
        t = time.monotonic()
        self.made += 1
        try:
            if kind == "plain":
                await sr.work(self.ledger, self.token())
                self.record_latency(int((t - self.start) // 60), time.monotonic() - t)
            elif kind == "nested":
                await sr.parent(self.ledger, self.token())
            elif kind == "leak":
                await sr.leak(self.ledger, self.token(), 1)
            elif kind == "generator":
                assert [i async for i in sr.ticks(20)] == list(range(20))
            elif kind == "readahead":
                assert [i async for i in wool.readahead(sr.ticks(200), window=32)] == list(range(200))
            elif kind == "map":
                assert [x async for x in wool.map(sr.square, range(50), concurrency=8)] == [x * x for x in range(50)]
            elif kind == "broadcast":
                for value in (await pool.broadcast(sr.hello)).values():
                    if isinstance(value, BaseException) and not isinstance(value, wool.WorkerLost):
                        raise value
            elif kind == "retry":
                assert await sr.lookup(21) == 42
        except wool.WorkerLost as e:
            self.failed[kind] += 1
            pids = {int(pid) for pid in re.findall(r"pid (\d+)", str(e))}
            if not pids & self.killed_pids:  # at most once allows it only of a killed worker
                self.unexpected.append(f"{kind}: {e}")
        except Exception as e:
            self.failed[kind] += 1
            self.unexpected.append(f"{kind}: {type(e).__name__}: {e}")

    def record_latency(self, minute: int, seconds: float) -> None:
        """Keep this minute's latencies; summarize the minutes before (so that the caller's
        RSS measures wool, not an ever-growing list of samples)."""
        for done in [m for m in self.latency if m < minute]:
            xs = sorted(self.latency.pop(done))
            self.per_minute[done] = {
                "calls": len(xs),
                "p50_ms": statistics.median(xs) * 1000,
                "p99_ms": xs[int(0.99 * (len(xs) - 1))] * 1000,
            }
        self.latency[minute].append(seconds)

    async def traffic(self, pool: wool.WorkerPool, until: float) -> None:
        kinds = ["plain"] * 10 + ["nested"] * 3 + ["leak", "generator", "readahead", "map", "broadcast", "retry"]
        rng = random.Random()
        while time.monotonic() < until:
            await self.one(rng.choice(kinds), pool)

    async def killer(self, pool: wool.WorkerPool, until: float) -> None:
        while time.monotonic() + self.kill_every < until:
            await asyncio.sleep(self.kill_every)
            alive = [w for w in pool.processes if w.info is not None and w.pid is not None and w.returncode is None]
            if alive:
                pid = random.choice(alive).pid or 0
                self.killed_pids.add(pid)
                os.kill(pid, signal.SIGKILL)
                self.killed += 1

    async def sampler(self, pool: wool.WorkerPool, until: float) -> None:
        me = psutil.Process()
        while time.monotonic() < until:
            workers = []
            for w in pool.processes:
                try:
                    proc = psutil.Process(w.pid or 0)
                    workers.append((proc.memory_info().rss, proc.num_fds()))
                except (psutil.Error, ValueError):
                    pass
            self.samples.append(
                {
                    "t": round(time.monotonic() - self.start, 1),
                    "caller_rss_mb": me.memory_info().rss / 1e6,
                    "caller_fds": me.num_fds(),
                    "workers": len(workers),
                    "worker_rss_mb_mean": statistics.fmean(r for r, _ in workers) / 1e6 if workers else 0.0,
                    "worker_rss_mb_max": max((r for r, _ in workers), default=0) / 1e6,
                    "worker_fds_mean": statistics.fmean(f for _, f in workers) if workers else 0.0,
                }
            )
            if self.trace_memory and self._baseline is None and time.monotonic() - self.start > 20:
                self._baseline = tracemalloc.take_snapshot()  # after the warm-up
            await asyncio.sleep(SAMPLE_EVERY)

    async def run(self) -> dict[str, Any]:
        if self.trace_memory:
            tracemalloc.start(10)
        async with wool.WorkerPool(size=4, recycle_after=2_000, memory_limit="250MB") as pool:
            self.start = time.monotonic()
            until = self.start + self.seconds
            await asyncio.gather(
                self.sampler(pool, until), self.killer(pool, until), *(self.traffic(pool, until) for _ in range(CONCURRENCY))
            )
            replaced = 0 if pool._replacer is None else pool._replacer.recycled
            growth = []
            if self._baseline is not None:
                stats = tracemalloc.take_snapshot().compare_to(self._baseline, "traceback")
                growth = [
                    f"{s.size_diff / 1e3:+.0f} kB, {s.count_diff:+d} blocks:\n  " + "\n  ".join(s.traceback.format()[-6:])
                    for s in stats[:8]
                ]
        runs = collections.Counter(Path(self.ledger).read_text().split())
        return {**self.report(runs, replaced), "memory_growth": growth}

    def report(self, runs: collections.Counter[str], replaced: int) -> dict[str, Any]:
        def series(key: str) -> list[tuple[float, float]]:
            return [(s["t"], s[key]) for s in self.samples]

        self.record_latency(10**9, 0.0)  # summarize every minute
        per_minute = dict(sorted(self.per_minute.items()))
        return {
            "seconds": self.seconds,
            "calls_made": self.made,
            "calls_failed": dict(self.failed),
            "unexpected_failures": self.unexpected[:20],
            "unexpected_count": len(self.unexpected),
            "duplicated": sum(1 for n in runs.values() if n > 1),
            "executions_logged": sum(runs.values()),
            "workers_killed": self.killed,
            "workers_replaced": replaced,
            "caller_rss_mb_per_hour": slope_per_hour(series("caller_rss_mb")),
            "worker_rss_mb_per_hour": slope_per_hour(series("worker_rss_mb_mean")),
            "caller_fds_per_hour": slope_per_hour(series("caller_fds")),
            "worker_fds_per_hour": slope_per_hour(series("worker_fds_mean")),
            "latency_per_minute": per_minute,
            "samples": self.samples,
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/soak.py", description=__doc__)
    parser.add_argument("--soak-seconds", type=float, default=600.0, help="how long the traffic runs (default: 600)")
    parser.add_argument("--kill-every", type=float, default=30.0, help="SIGKILL a worker this often (default: 30 s)")
    parser.add_argument("--json", type=Path, help="also write the full results here")
    parser.add_argument("--trace-memory", action="store_true", help="print where the caller's memory grew (tracemalloc: slower)")
    args = parser.parse_args(argv)
    if args.soak_seconds <= 0 or args.kill_every <= 0:
        parser.error("--soak-seconds and --kill-every must be positive")
    with tempfile.TemporaryDirectory(prefix="wool-soak-") as tmp:
        soak = Soak(args.soak_seconds, args.kill_every, str(Path(tmp) / "ledger"))
        soak.trace_memory = args.trace_memory
        result = asyncio.run(soak.run())
    for line in result.pop("memory_growth", []):
        print(line)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    shown = {k: v for k, v in result.items() if k != "samples"}
    print(json.dumps(shown, indent=2))
    s = result["samples"]
    if s:
        print(
            f"caller RSS {s[0]['caller_rss_mb']:.1f} -> {s[-1]['caller_rss_mb']:.1f} MB, "
            f"worker RSS (mean) {s[0]['worker_rss_mb_mean']:.1f} -> {s[-1]['worker_rss_mb_mean']:.1f} MB, "
            f"caller fds {s[0]['caller_fds']} -> {s[-1]['caller_fds']}"
        )
    return 1 if result["duplicated"] or result["unexpected_count"] else 0


if __name__ == "__main__":
    sys.exit(main())
