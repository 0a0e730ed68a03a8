"""Choosing a worker for each call: a pluggable policy, decided synchronously."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

from .._info import WorkerInfo


class Candidate(Protocol):
    """What a load balancer sees of each live worker: one of the `candidates` passed to
    `LoadBalancer.choose`."""

    @property
    def worker(self) -> WorkerInfo:
        """The worker: its id, endpoint, tags and limits."""
        ...

    @property
    def in_flight(self) -> int:
        """Calls this process has waiting on the worker."""
        ...


C = TypeVar("C", bound=Candidate)


class LoadBalancer(Protocol):
    """Picks one of the live workers for a call: what `WorkerPool(loadbalancer=...)` takes.

    Any object with a `choose` method of this signature will do (a `typing.Protocol`).
    It is called synchronously on the caller's event loop, once per call, so it must not
    block; it may keep state (as `RoundRobin` does), since a pool uses one balancer.

    Example:
        ```python
        class Newest:
            def choose(self, candidates):
                return candidates[-1]      # the worker that joined last

        async with wool.WorkerPool(size=4, loadbalancer=Newest()):
            ...
        ```
    """

    def choose(self, candidates: Sequence[C]) -> C:
        """Pick the worker for one call.

        Args:
            candidates: The live workers the call may go to (those with every tag it
                needs); never empty.

        Returns:
            One of `candidates`.
        """
        ...


class RoundRobin:
    """Each live worker in turn (the default `loadbalancer` of a `WorkerPool`)."""

    def __init__(self) -> None:
        self._next = 0

    def choose(self, candidates: Sequence[C]) -> C:
        """The candidate after the one chosen last time (see `LoadBalancer.choose`)."""
        index = self._next % len(candidates)
        self._next = index + 1
        return candidates[index]


class LeastOutstanding:
    """The live worker with the fewest calls of this process open on it; ties go round
    robin. Better than `RoundRobin` when call durations vary: a worker stuck on long calls
    stops receiving new ones.

    Example:
        ```python
        async with wool.WorkerPool(size=4, loadbalancer=wool.LeastOutstanding()):
            ...
        ```
    """

    def __init__(self) -> None:
        self._next = 0

    def choose(self, candidates: Sequence[C]) -> C:
        """The candidate with the lowest `in_flight` (see `LoadBalancer.choose`)."""
        n = len(candidates)
        start = self._next % n
        self._next = start + 1
        best = candidates[start]
        for i in range(1, n):
            candidate = candidates[(start + i) % n]
            if candidate.in_flight < best.in_flight:
                best = candidate
        return best
