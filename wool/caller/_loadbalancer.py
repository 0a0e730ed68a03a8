"""Choosing a worker for each call: a pluggable policy, decided synchronously."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

from .._info import WorkerInfo


class Candidate(Protocol):
    """What a load balancer sees of each live worker."""

    @property
    def worker(self) -> WorkerInfo: ...

    @property
    def in_flight(self) -> int:
        """Calls this process has waiting on the worker."""
        ...


C = TypeVar("C", bound=Candidate)


class LoadBalancer(Protocol):
    """Picks one of the live workers for a call. `candidates` is never empty."""

    def choose(self, candidates: Sequence[C]) -> C: ...


class RoundRobin:
    """Each live worker in turn (the default)."""

    def __init__(self) -> None:
        self._next = 0

    def choose(self, candidates: Sequence[C]) -> C:
        index = self._next % len(candidates)
        self._next = index + 1
        return candidates[index]


class LeastOutstanding:
    """The live worker with the fewest calls of this process open on it; ties go round
    robin. Better than `RoundRobin` when call durations vary: a worker stuck on long calls
    stops receiving new ones."""

    def __init__(self) -> None:
        self._next = 0

    def choose(self, candidates: Sequence[C]) -> C:
        n = len(candidates)
        start = self._next % n
        self._next = start + 1
        best = candidates[start]
        for i in range(1, n):
            candidate = candidates[(start + i) % n]
            if candidate.in_flight < best.in_flight:
                best = candidate
        return best
