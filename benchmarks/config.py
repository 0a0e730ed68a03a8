"""Sizes and repetitions. `FULL` follows the issue that asked for this suite; `QUICK` keeps
every workload but shrinks it so the whole run takes well under a minute (a smoke test)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class Config:
    mode: str
    workers: int = 2
    latency_calls: int = 2_000
    latency_reps: int = 5
    throughput_calls: int = 20_000
    throughput_reps: int = 5
    fanout_width: int = 200
    fanout_calls: int = 10  # fan-outs timed per repetition
    fanout_reps: int = 5
    stream_items: int = 100_000
    stream_reps: int = 3
    readahead_window: int = 64
    payload_mb: int = 64
    payload_reps: int = 3
    startup_reps: int = 3
    memory_stream_items: int = 1_000_000
    memory_calls: int = 1_000_000
    memory_batch: int = 1_000  # calls in flight at a time
    scale_sizes: tuple[int, ...] = (4, 16, 32, 64)
    scale_idle_window: float = 10.0
    scale_reps: int = 3
    scale_handshake_calls: int = 200
    finegrain_tasks: int = 2_000
    finegrain_ms: float = 1.0
    finegrain_reps: int = 5
    simulation_sizes: tuple[int, ...] = (10, 100, 1000)
    simulation_window: float = 5.0
    simulation_churn: float = 100.0  # registry changes a second (joins and leaves)
    simulation_reps: int = 1
    hedge_calls: int = 5_000
    hedge_reps: int = 3
    share_mb: int = 100
    share_calls: int = 1_000
    share_value_calls: int = 20
    share_reps: int = 1

    def with_reps(self, reps: int) -> Config:
        reps_fields: dict[str, Any] = {name: reps for name in self.__dataclass_fields__ if name.endswith("_reps")}
        return replace(self, **reps_fields)


FULL = Config(mode="full")

QUICK = Config(
    mode="quick",
    latency_calls=300,
    latency_reps=3,
    throughput_calls=2_000,
    throughput_reps=3,
    fanout_calls=3,
    fanout_reps=2,
    stream_items=5_000,
    stream_reps=1,
    payload_mb=8,
    payload_reps=2,
    startup_reps=1,
    memory_stream_items=5_000,
    memory_calls=20_000,
    scale_sizes=(4, 16),
    scale_idle_window=2.0,
    scale_reps=1,
    scale_handshake_calls=20,
    finegrain_tasks=500,
    finegrain_reps=2,
    simulation_sizes=(10, 100),
    simulation_window=1.0,
    hedge_calls=500,
    hedge_reps=1,
    share_mb=16,
    share_calls=50,
    share_value_calls=5,
)
