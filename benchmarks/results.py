"""What a workload reports: per-repetition samples for each side, their medians, the ratios
wool/baseline, and the targets those ratios are held to.

Ratios are always wool's value over the baseline's, as the issue states them: for a time or a
memory size lower is better, for a rate higher is better (each `Metric` says which).
"""

from __future__ import annotations

import operator
import statistics
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

WOOL = "wool"
BASELINES = {
    "loop": "hand-written asyncio DEALER/ROUTER loop (msgpack envelope + pickled args, cached function)",
    "ppe": "concurrent.futures.ProcessPoolExecutor(max_workers=2, spawn) via loop.run_in_executor",
    "raw": "raw bytes through a DEALER/ROUTER pair, zero-copy echo",
    "push": "raw zmq push stream: the server sends every item unasked",
    "untraced": "wool with tracing off (no tracer provider), against which `tracing` measures wool traced",
    "unhedged": "wool itself without wool.options(hedge_after=...) (hedge workload only)",
    "resident": "each worker sums an array it already holds, called with a 1 KB argument (share workload only)",
    "value": "wool with the array itself as the argument, sent with every call (share workload only)",
    "def": "wool with the routine a plain `def`, run in a worker thread (finegrain only)",
    "zmq": "floor: 40-byte echo, blocking pyzmq DEALER/ROUTER over ipc, no event loop (latency only)",
    "spin": "floor: the same, the caller spinning on NOBLOCK receives (latency only)",
    "pipe": "floor: the same echo through an os.pipe pair, blocking reads and writes (latency only)",
}

_OPS: dict[str, Callable[[float, float], bool]] = {"<=": operator.le, "<": operator.lt, ">=": operator.ge}


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str
    higher_is_better: bool
    ratio: bool = True  # False where a ratio means nothing (growth near zero)


def per_size(sizes: Iterable[int], *measures: tuple[str, str, bool]) -> list[Metric]:
    """One absolute metric per (name, unit, higher is better) and size N, named `NAME_nN`:
    what a workload measures at each size of a mesh (no baseline to divide by)."""
    return [Metric(f"{name}_n{n}", unit, higher, ratio=False) for n in sizes for name, unit, higher in measures]


@dataclass(frozen=True)
class Target:
    """`wool's metric / baseline's metric OP limit`, or with no baseline `wool's metric OP
    limit` (an absolute bound, in the metric's unit)."""

    metric: str
    op: str
    limit: float
    baseline: str | None = None

    def text(self, unit: str) -> str:
        if self.baseline is None:
            return f"{self.metric} {self.op} {self.limit:g} {unit}"
        return f"{self.metric} {self.op} {self.limit:.2f} x {self.baseline}"


@dataclass
class WorkloadResult:
    name: str
    description: str
    metrics: list[Metric] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None
    error: str | None = None
    seconds: float = 0.0

    @property
    def sides(self) -> list[str]:
        return list(self.samples)

    def metric(self, name: str) -> Metric:
        return next(m for m in self.metrics if m.name == name)

    def value(self, side: str, metric: str) -> float | None:
        values = self.samples.get(side, {}).get(metric)
        return statistics.median(values) if values else None

    def ratio(self, baseline: str, metric: str) -> float | None:
        mine, theirs = self.value(WOOL, metric), self.value(baseline, metric)
        if mine is None or not theirs or not self.metric(metric).ratio:
            return None
        return mine / theirs

    def check(self, target: Target) -> tuple[float | None, bool | None]:
        """(the compared number, whether the target holds); None when it was not measured."""
        value = self.value(WOOL, target.metric) if target.baseline is None else self.ratio(target.baseline, target.metric)
        return value, (None if value is None else _OPS[target.op](value, target.limit))

    def to_json(self) -> dict[str, Any]:
        status = "error" if self.error else "skipped" if self.skipped else "ok"
        out: dict[str, Any] = {"description": self.description, "status": status, "seconds": round(self.seconds, 2)}
        if self.error or self.skipped:
            out["reason"] = self.error or self.skipped
        out["params"] = self.params
        out["metrics"] = {m.name: {"unit": m.unit, "better": "higher" if m.higher_is_better else "lower"} for m in self.metrics}
        out["results"] = {side: {m.name: self.value(side, m.name) for m in self.metrics} for side in self.sides}
        out["ratios"] = {
            side: {m.name: self.ratio(side, m.name) for m in self.metrics if m.ratio} for side in self.sides if side != WOOL
        }
        out["targets"] = []
        for t in self.targets:
            value, holds = self.check(t)
            out["targets"].append(
                {
                    "text": t.text(self.metric(t.metric).unit),
                    "metric": t.metric,
                    "baseline": t.baseline,
                    "op": t.op,
                    "limit": t.limit,
                    "value": value,
                    "holds": holds,
                }
            )
        out["samples"] = self.samples
        if self.detail:
            out["detail"] = self.detail
        if self.notes:
            out["notes"] = self.notes
        return out


Measure = Callable[[], Awaitable[Mapping[str, float | None]]]


async def interleave(reps: int, sides: Mapping[str, Measure]) -> dict[str, dict[str, list[float]]]:
    """Run each side's measurement `reps` times, alternating sides within each repetition and
    rotating which goes first, so that a busy machine's slow spell spreads over all sides
    instead of landing on one. A measurement may report None for a metric it lacks."""
    samples: dict[str, dict[str, list[float]]] = {name: defaultdict(list) for name in sides}
    names = list(sides)
    for rep in range(reps):
        k = rep % len(names)
        for name in names[k:] + names[:k]:
            for metric, value in (await sides[name]()).items():
                if value is not None:
                    samples[name][metric].append(value)
    return {name: dict(metrics) for name, metrics in samples.items()}


Step = Callable[[int], Awaitable[None]]


async def alternate(blocks: int, steps: Mapping[str, Step]) -> None:
    """Call every side's `step(block)` once per block, alternating sides and rotating which
    goes first. Used inside one repetition where a side's measurement is long (a 100,000-item
    stream takes about a minute): in blocks a fraction of a second long, every side sees the
    same spells of load from the rest of the machine, instead of one side a quiet minute and
    the other a busy one."""
    names = list(steps)
    for block in range(blocks):
        k = block % len(names)
        for name in names[k:] + names[:k]:
            await steps[name](block)


async def repeat(
    reps: int, measure: Callable[[], Awaitable[Mapping[str, Mapping[str, float]]]]
) -> dict[str, dict[str, list[float]]]:
    """`reps` repetitions of a measurement that covers every side at once (see `alternate`)."""
    samples: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for _ in range(reps):
        for name, metrics in (await measure()).items():
            for metric, value in metrics.items():
                samples[name][metric].append(value)
    return {name: dict(metrics) for name, metrics in samples.items()}


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    rank = max(1, -(-len(sorted_values) * q // 100))
    return sorted_values[int(rank) - 1]
