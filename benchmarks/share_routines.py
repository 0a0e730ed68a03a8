"""Routines of the `share` workload (numpy: imported only when that workload runs)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

import wool

_resident: dict[int, Any] = {}


def _anon_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


@wool.routine
async def total(a: Any) -> float:
    return float(np.sum(a))


@wool.routine
async def make_resident(n: int) -> int:
    """Give this worker an array of `n` float64 of its own (the floor: no argument to move)."""
    _resident[n] = np.random.default_rng(0).random(n)  # the caller's array, made here
    return os.getpid()


@wool.routine
async def total_resident(n: int, note: bytes) -> float:
    return float(np.sum(_resident[n]))


@wool.routine
async def anon_growth(a: Any) -> tuple[int, int]:
    """(pid, growth of this worker's private memory while it summed `a`)."""
    before = _anon_bytes()
    float(np.sum(a))
    return os.getpid(), _anon_bytes() - before
