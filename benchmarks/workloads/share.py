"""`wool.share`: many calls reading one large array by handle, against the same calls on an
array each worker already holds (the floor: the same work, a 1 KB argument), against the array
passed by value (the way before `wool.share`; fewer calls, reported per call), and the cost of
one `share` against one `a.copy()` in the caller. Also the bytes a call carrying a handle sends
and how much private memory a worker gains reading the array (it maps shared pages)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ..config import Config
from ..results import Metric, Target, WorkloadResult, interleave
from ..sides import Sides

MiB = 1 << 20


async def share(cfg: Config, sides: Sides) -> WorkloadResult:
    title = (
        f"{cfg.share_calls:,} calls on {cfg.workers} workers each summing a {cfg.share_mb} MiB float64 array: by handle, "
        f"resident (the array already in each worker, a 1 KB argument), by value ({cfg.share_value_calls} calls)"
    )
    try:
        import numpy as np

        import wool
        from wool import protocol as p

        from .. import share_routines as r
    except ImportError:
        return WorkloadResult("share", title, skipped="numpy is not installed")
    n = cfg.share_mb * MiB // 8
    a = np.random.default_rng(0).random(n)
    expected = float(np.sum(a))
    note = bytes(1024)
    await sides.pool.broadcast(r.make_resident, n)

    async def calls(count: int, call: Any) -> float:
        t = time.perf_counter()
        results = await asyncio.gather(*(call() for _ in range(count)))
        if any(abs(x - results[0]) > 1e-6 * abs(results[0]) for x in results):
            raise AssertionError("calls summed different arrays")
        return (time.perf_counter() - t) / count * 1e3

    async def by_handle() -> dict[str, float]:
        t = time.perf_counter()
        handle = wool.share(a)
        made = (time.perf_counter() - t) * 1e3
        try:
            if abs(await r.total(handle) - expected) > 1e-6 * abs(expected):
                raise AssertionError("the shared array's sum is wrong")
            per_call = await calls(cfg.share_calls, lambda: r.total(handle))
            sent = sum(len(f) for f in p.dumps(((handle,), {})))
        finally:
            handle.release()
        return {"ms_per_call": per_call, "share_or_copy_ms": made, "bytes_per_call": float(sent)}

    async def resident() -> dict[str, float]:
        per_call = await calls(cfg.share_calls, lambda: r.total_resident(n, note))
        t = time.perf_counter()
        a.copy()
        return {"ms_per_call": per_call, "share_or_copy_ms": (time.perf_counter() - t) * 1e3, "bytes_per_call": 1024.0}

    async def by_value() -> dict[str, float]:
        return {"ms_per_call": await calls(cfg.share_value_calls, lambda: r.total(a)), "bytes_per_call": float(a.nbytes)}

    samples = await interleave(cfg.share_reps, {"wool": by_handle, "resident": resident, "value": by_value})
    with wool.share(a) as handle:  # each worker's private memory while it reads the array the first time
        growth = await asyncio.gather(*(r.anon_growth(handle) for _ in range(cfg.workers * 4)))
    samples["wool"]["worker_anon_growth_mb"] = [max(g for _, g in growth) / MiB]
    return WorkloadResult(
        "share",
        title,
        metrics=[
            Metric("ms_per_call", "ms", False),
            Metric("share_or_copy_ms", "ms", False),
            Metric("bytes_per_call", "B", False),
            Metric("worker_anon_growth_mb", "MiB", False, ratio=False),
        ],
        params={"mb": cfg.share_mb, "calls": cfg.share_calls, "value_calls": cfg.share_value_calls, "reps": cfg.share_reps},
        samples=samples,
        targets=[
            Target("ms_per_call", "<=", 1.5, "resident"),
            Target("share_or_copy_ms", "<=", 1.2, "resident"),
            Target("bytes_per_call", "<=", 1024),
            Target("worker_anon_growth_mb", "<=", 5),
        ],
        notes=[
            "wool: the array passed as a wool.Shared handle (share_or_copy_ms: one wool.share(a));"
            " resident: each worker sums an array of its own, called with a 1 KB argument (share_or_copy_ms: one a.copy());"
            " value: the array itself as the argument, pickled and sent with every call",
            "calls are issued all at once; ms_per_call = wall time / calls",
            "worker_anon_growth_mb: the largest growth of a worker's RssAnon while summing the shared array"
            " for the first time (shared pages count as RssShmem/RssFile, not as private memory)",
        ],
    )
