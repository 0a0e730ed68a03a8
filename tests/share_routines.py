"""Routines the `wool.share` tests dispatch (importable, so workers import them by reference)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

import wool
from wool import sharing

_kept: list[Any] = []


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise LookupError(field)


@wool.routine
async def total(a: np.ndarray) -> float:
    return float(a.sum())


@wool.routine
async def inspect_view(a: np.ndarray) -> dict[str, Any]:
    """What the routine got: whether it is read-only, whether it shares memory with what the
    previous call on this worker got, and how much private memory this worker holds."""
    before = _status("RssAnon")
    summed = float(a.sum())
    same = bool(_kept) and bool(np.shares_memory(a, _kept[-1]))
    _kept.append(a)
    return {
        "pid": os.getpid(),
        "writeable": a.flags.writeable,
        "shares_previous": same,
        "sum": summed,
        "anon_before": before,
        "anon_after": _status("RssAnon"),
    }


@wool.routine
async def total_in_box(box: dict[str, wool.Shared[np.ndarray]]) -> float:
    return float((await box["array"].get()).sum())


@wool.routine
async def running_totals(a: np.ndarray, parts: int) -> AsyncIterator[float]:
    for chunk in np.array_split(a, parts):
        yield float(chunk.sum())


@wool.routine
async def total_in_thread(box: dict[str, wool.Shared[np.ndarray]]) -> float:
    """Read the value the way a plain `def` routine does, from a thread of the worker."""
    return await asyncio.to_thread(lambda: float(box["array"].get_blocking().sum()))


@wool.routine
async def outer(a: np.ndarray) -> bool:
    _kept.append(a)
    return await inner(a)


@wool.routine
async def inner(a: np.ndarray) -> bool:
    return any(a is k for k in _kept)


@wool.routine
async def share_range(n: int) -> wool.Shared[np.ndarray]:
    return wool.share(np.arange(n, dtype=np.float64))


@wool.routine
async def where() -> int:
    return os.getpid()


@wool.routine
async def cache_stats() -> dict[str, int]:
    s = sharing.cache.stats
    return {
        "loads": s.loads,
        "fetches": s.fetches,
        "parts": s.parts,
        "evictions": s.evictions,
        "bytes": s.bytes,
        "values": s.values,
        "pid": os.getpid(),
    }
