"""Choosing workers: round-robin by default, or any object with a `choose` method."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
import routines
from helpers import Observer

import wool


@dataclass
class Fake:
    worker: wool.WorkerInfo
    in_flight: int = 0


def fakes(n: int) -> list[Fake]:
    return [Fake(wool.WorkerInfo(f"w{i}", f"tcp://127.0.0.1:{5000 + i}", 1000 + i)) for i in range(n)]


def test_round_robin_visits_each_candidate_in_turn() -> None:
    rr = wool.RoundRobin()
    candidates = fakes(3)
    assert [rr.choose(candidates).worker.id for _ in range(7)] == ["w0", "w1", "w2", "w0", "w1", "w2", "w0"]


def test_round_robin_copes_with_a_shrinking_set() -> None:
    rr = wool.RoundRobin()
    assert rr.choose(fakes(3)).worker.id == "w0"
    assert rr.choose(fakes(3)).worker.id == "w1"
    assert rr.choose(fakes(1)).worker.id == "w0"


def test_least_outstanding_picks_the_least_busy_and_rotates_ties() -> None:
    lo = wool.LeastOutstanding()
    candidates = fakes(3)
    candidates[0].in_flight, candidates[1].in_flight, candidates[2].in_flight = 5, 1, 1
    assert [lo.choose(candidates).worker.id for _ in range(4)] == ["w1", "w1", "w2", "w1"]
    candidates[1].in_flight = 9
    assert lo.choose(candidates).worker.id == "w2"


@pytest.mark.multiprocess
async def test_least_outstanding_avoids_a_worker_busy_with_a_long_call() -> None:
    async with Observer() as obs, wool.WorkerPool(size=2, loadbalancer=wool.LeastOutstanding()) as pool:
        long = asyncio.create_task(routines.block(obs.address, "long"))
        busy = int((await obs.wait_matching(r"running long \d+")).rsplit(" ", 1)[1])
        (idle,) = {w.pid for w in pool.processes} - {busy}
        assert {await routines.pid() for _ in range(6)} == {idle}
        long.cancel()
        await asyncio.gather(long, return_exceptions=True)


class Busiest:
    """Always the candidate listed last (so a test can tell it was used)."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def choose(self, candidates: Sequence[wool.Candidate]) -> wool.Candidate:
        self.seen.append(len(candidates))
        return candidates[-1]


@pytest.mark.multiprocess
async def test_a_custom_load_balancer_decides() -> None:
    balancer = Busiest()
    async with wool.WorkerPool(size=2, loadbalancer=balancer) as pool:
        pids = {await routines.pid() for _ in range(4)}
        assert pids == {pool.workers[-1].pid}
        assert balancer.seen == [2, 2, 2, 2]


def test_a_load_balancer_without_choose_is_refused() -> None:
    with pytest.raises(TypeError, match="choose"):
        wool.WorkerPool(size=1, loadbalancer=object())  # type: ignore[arg-type]
