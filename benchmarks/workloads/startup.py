"""Start-up and shut-down: from creating two workers to the first result, and back to no
process. Runs before the other workloads' processes exist, with nothing else open."""

from __future__ import annotations

import asyncio
import time

import wool

from .. import functions, routines
from ..baseline_client import DirectClient, start_servers
from ..config import Config
from ..results import Metric, WorkloadResult, interleave
from ..sides import process_pool


async def _wool(workers: int) -> dict[str, float]:
    t0 = time.perf_counter()
    async with wool.WorkerPool(size=workers):
        await routines.add(1, 2)
        t1 = time.perf_counter()
    return {"first_result_ms": (t1 - t0) * 1e3, "exit_ms": (time.perf_counter() - t1) * 1e3}


async def _loop(workers: int) -> dict[str, float]:
    t0 = time.perf_counter()
    servers = start_servers("loop", workers)
    clients: list[DirectClient] = []
    try:
        clients = [DirectClient(s.endpoint()) for s in servers]
        await clients[0].call(functions.add, 1, 2)
        t1 = time.perf_counter()
    finally:
        for client in clients:
            client.close()
        for server in servers:
            server.stop()
    return {"first_result_ms": (t1 - t0) * 1e3, "exit_ms": (time.perf_counter() - t1) * 1e3}


async def _ppe(workers: int) -> dict[str, float]:
    t0 = time.perf_counter()
    executor = process_pool(workers)
    try:
        await asyncio.get_running_loop().run_in_executor(executor, functions.add_sync, 1, 2)
        t1 = time.perf_counter()
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
    return {"first_result_ms": (t1 - t0) * 1e3, "exit_ms": (time.perf_counter() - t1) * 1e3}


async def startup(cfg: Config) -> WorkloadResult:
    n = cfg.workers
    return WorkloadResult(
        "startup",
        f"{n} workers: from entering the pool to the first result, and from there to all stopped",
        metrics=[Metric("first_result_ms", "ms", False), Metric("exit_ms", "ms", False)],
        params={"workers": n, "reps": cfg.startup_reps},
        samples=await interleave(cfg.startup_reps, {"wool": lambda: _wool(n), "loop": lambda: _loop(n), "ppe": lambda: _ppe(n)}),
        notes=[
            "wool: async with WorkerPool(size=2), await add(1, 2), exit",
            "loop: spawn 2 servers, connect, one call; exit closes their stdin and waits",
            "ppe: ProcessPoolExecutor(2, spawn), one run_in_executor; exit is shutdown(wait=True)",
        ],
    )
