"""A large bytes argument returned unchanged: throughput of one round trip and the peak RSS
it costs on each end. The target's baseline is the raw bytes echo: the transport itself."""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .. import functions, routines
from ..config import Config
from ..results import Metric, Target, WorkloadResult, interleave
from ..rss import MB, peak_rss_mb, reset_peak, rss_mb
from ..sides import Sides


async def payload(cfg: Config, sides: Sides) -> WorkloadResult:
    size = cfg.payload_mb * MB
    # Every page written, so that RSS counts it (a zeroed buffer could stay unmapped).
    data = bytes(range(256)) * (size // 256)
    me = os.getpid()
    peaks_reset = True

    def timed(echo: Callable[[bytes], Awaitable[Any]], far: Callable[[], list[int]]) -> Callable[[], Awaitable[dict[str, float]]]:
        async def measure() -> dict[str, float]:
            nonlocal peaks_reset
            pids = far()
            gc.collect()
            before = {pid: rss_mb(pid) for pid in (me, *pids)}
            peaks_reset &= reset_peak(before)
            t = time.perf_counter()
            result = await echo(data)
            elapsed = time.perf_counter() - t
            if len(result) != len(data):
                raise AssertionError("the payload came back with another size")
            del result
            peaks = {pid: peak_rss_mb(pid) for pid in before}
            worker = max(pids, key=peaks.__getitem__)
            return {
                "mb_per_s": cfg.payload_mb / elapsed,
                "caller_peak_mb": peaks[me],
                "worker_peak_mb": peaks[worker],
                "caller_extra_mb": max(0.0, peaks[me] - before[me]),
                "worker_extra_mb": max(0.0, peaks[worker] - before[worker]),
            }

        return measure

    echoes: dict[str, Callable[[bytes], Awaitable[Any]]] = {
        "wool": routines.echo,
        "loop": lambda d: sides.direct_call(functions.echo, d),
        "ppe": lambda d: sides.ppe_call(functions.echo_sync, d),
        "raw": sides.raw.echo,
    }
    far: dict[str, Callable[[], list[int]]] = {
        "wool": lambda: sides.wool_pids,
        "loop": lambda: sides.loop_pids,
        "ppe": lambda: sides.ppe_pids,
        "raw": lambda: [sides.raw_server.pid],
    }
    small = data[: 1 << 20]
    for side, echo in echoes.items():  # warm up, and check that each returns the bytes unchanged
        if await echo(small) != small:
            raise AssertionError(f"{side} changed the payload")
    result = WorkloadResult(
        "payload",
        f"a {cfg.payload_mb} MB bytes argument returned unchanged (MB/s = size / round-trip time)",
        metrics=[
            Metric("mb_per_s", "MB/s", True),
            Metric("caller_peak_mb", "MB", False),
            Metric("worker_peak_mb", "MB", False),
            Metric("caller_extra_mb", "MB", False, ratio=False),
            Metric("worker_extra_mb", "MB", False, ratio=False),
        ],
        params={"mb": cfg.payload_mb, "reps": cfg.payload_reps},
        samples=await interleave(cfg.payload_reps, {side: timed(echoes[side], far[side]) for side in echoes}),
        targets=[Target("mb_per_s", ">=", 1 / 1.5, "raw")],
        notes=[
            "peak RSS: VmHWM, reset before each round trip; the caller's includes the payload it holds",
            "worker_peak_mb: the highest of the side's server processes",
            "*_extra_mb: peak minus the RSS just before the round trip: roughly the payload copies held at "
            "once, times its size (less when the allocator reuses pages already resident)",
            "raw: zero-copy send and receive; the reply stays a view of the received frame",
        ],
    )
    if not peaks_reset:
        result.notes.append("could not reset VmHWM: peaks are since each process started")
    return result
