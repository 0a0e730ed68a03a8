"""What a mesh costs by its size: `WorkerPool(size=N)` for growing N, idle after every worker
served a call. Runs alone, before the other workloads' processes exist.

For each N: time from entering the pool to every worker ready (entry returns once each one
serves and the pool has connected to it), then one call per worker, a settling second, and an
idle window over which the workers' CPU time is summed (one core = 100 %); descriptors and RSS
per worker at the end. Also the handshake a call pays when its worker is not connected (the
connection was closed for idleness): the median of calls made just after closing it, against
calls on an open connection, on a pool of one worker.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import psutil

import wool

from .. import routines
from ..config import Config
from ..results import Metric, Target, WorkloadResult, per_size
from ..rss import cpu_seconds


async def _size(n: int, idle_window: float) -> dict[str, float]:
    t0 = time.perf_counter()
    async with wool.WorkerPool(size=n) as pool:
        ready = time.perf_counter() - t0
        await asyncio.gather(*(routines.add(i, 1) for i in range(n)))  # round robin: one each
        procs = [psutil.Process(w.pid) for w in pool.processes if w.pid is not None]
        await asyncio.sleep(1.0)  # let start-up stragglers (registry reads, connections) settle
        before = [cpu_seconds(p.pid) for p in procs]
        await asyncio.sleep(idle_window)
        after = [cpu_seconds(p.pid) for p in procs]
        fds = [p.num_fds() for p in procs]
        rss = [p.memory_info().rss for p in procs]
    return {
        f"ready_s_n{n}": ready,
        f"idle_cpu_pct_n{n}": 100 * sum(b - a for a, b in zip(before, after, strict=True)) / idle_window,
        f"fds_per_worker_n{n}": statistics.mean(fds),
        f"rss_mb_per_worker_n{n}": statistics.mean(rss) / 1e6,
    }


async def _handshake(calls: int) -> dict[str, float]:
    async with wool.WorkerPool(size=1) as pool:
        mesh = pool._mesh
        assert mesh is not None
        await routines.add(1, 1)
        warm, cold = [], []
        for _ in range(calls):
            t = time.perf_counter()
            await routines.add(1, 1)
            warm.append(time.perf_counter() - t)
            for conn in mesh.connections:
                mesh._close(conn)  # as the idle sweep does
            t = time.perf_counter()
            await routines.add(1, 1)
            cold.append(time.perf_counter() - t)
    return {"warm_call_us": statistics.median(warm) * 1e6, "first_call_us": statistics.median(cold) * 1e6}


async def scale(cfg: Config) -> WorkloadResult:
    metrics = per_size(
        cfg.scale_sizes,
        ("ready_s", "s", False),
        ("idle_cpu_pct", "% of a core", False),
        ("fds_per_worker", "fds", False),
        ("rss_mb_per_worker", "MB", False),
    )
    metrics += [Metric("warm_call_us", "us", False, ratio=False), Metric("first_call_us", "us", False, ratio=False)]
    samples: dict[str, list[float]] = {}
    for _ in range(cfg.scale_reps):
        for n in cfg.scale_sizes:
            for metric, value in (await _size(n, cfg.scale_idle_window)).items():
                samples.setdefault(metric, []).append(value)
        for metric, value in (await _handshake(cfg.scale_handshake_calls)).items():
            samples.setdefault(metric, []).append(value)
    return WorkloadResult(
        "scale",
        f"WorkerPool(size=N) for N in {', '.join(map(str, cfg.scale_sizes))}: ready time, then idle after one call "
        "per worker; and the first call's handshake",
        metrics=metrics,
        params={"sizes": list(cfg.scale_sizes), "idle_window_s": cfg.scale_idle_window, "reps": cfg.scale_reps},
        samples={"wool": samples},
        # Issue 16's bounds, for the size it names (when the run includes it).
        targets=[Target("ready_s_n32", "<=", 1.0), Target("idle_cpu_pct_n32", "<=", 3.0)] if 32 in cfg.scale_sizes else [],
        notes=[
            "idle CPU: all workers' threads' time on a CPU over the window (/proc/PID/task/*/schedstat), one core = 100 %",
            "fds, RSS: mean per worker at the end of the window",
            "first_call_us: a call right after its worker's connection was closed (it reconnects); warm_call_us: on an open one",
        ],
    )
