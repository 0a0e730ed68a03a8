"""The workloads, in the order they run. `startup` and `tracing` run first, alone: they start
and stop their own processes, and must not share the machine with the others' idle ones."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..config import Config
from ..results import WorkloadResult
from ..sides import Sides
from .calls import fanout, latency, throughput
from .finegrain import finegrain
from .hedge import hedge
from .memory import memory
from .payload import payload
from .scale import scale
from .share import share
from .simulation import simulation
from .spin import latency_spin
from .startup import startup
from .streams import stream, stream_readahead
from .tracing import tracing


@dataclass(frozen=True)
class Workload:
    name: str
    run: Callable[[Config, Sides], Awaitable[WorkloadResult]] | None = None
    run_alone: Callable[[Config], Awaitable[WorkloadResult]] | None = None  # before `Sides` open


WORKLOADS = [
    Workload("startup", run_alone=startup),
    Workload("tracing", run_alone=tracing),
    Workload("scale", run_alone=scale),
    Workload("simulation", run_alone=simulation),
    Workload("latency_spin", run_alone=latency_spin),
    Workload("latency", latency),
    Workload("throughput", throughput),
    Workload("fanout", fanout),
    Workload("finegrain", finegrain),
    Workload("stream", stream),
    Workload("stream_readahead", stream_readahead),
    Workload("payload", payload),
    Workload("memory", memory),
    Workload("hedge", hedge),
    Workload("share", share),
]

NAMES = [w.name for w in WORKLOADS]
