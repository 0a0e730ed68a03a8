"""The routing balancers, without sockets: a pinned call never moves to another worker, and
a hedged copy never goes to a worker already tried."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

import wool
from wool.caller._affinity import Affinity, key_digest, place
from wool.caller._loadbalancer import RoundRobin
from wool.caller._route import Pinned, Tried


@dataclass
class Candidate:
    worker: wool.WorkerInfo
    in_flight: int = 0


def candidates(*ids: str) -> list[Candidate]:
    return [Candidate(wool.WorkerInfo(i, f"tcp://127.0.0.1:{n + 5000}", 1, "h")) for n, i in enumerate(ids)]


def test_a_pinned_call_goes_to_its_worker_or_is_lost() -> None:
    cs = candidates("a", "b", "c")
    assert Pinned("b").choose(cs).worker.id == "b"
    with pytest.raises(wool.WorkerLost, match="worker d left the rotation before the call was sent; it did not run"):
        Pinned("d").choose(cs)


def test_retries_prefer_untried_workers_and_a_hedged_copy_insists() -> None:
    tried = Tried()
    balancer = tried.balancer(RoundRobin())
    cs = candidates("a", "b")
    first = balancer.choose(cs).worker.id
    copy = tried.elsewhere().balancer(RoundRobin()).choose(cs).worker.id
    assert {first, copy} == {"a", "b"}
    assert balancer.choose(cs).worker.id in {"a", "b"}  # all tried: any, for a retry
    with pytest.raises(wool.NoWorkersAvailable, match="no live worker other than a, b"):
        tried.elsewhere().balancer(RoundRobin()).choose(cs)


def test_a_hedged_copy_with_affinity_goes_to_the_keys_runner_up() -> None:
    cs = candidates("a", "b", "c")
    digest = key_digest("desk-7")
    tried = Tried()
    first = tried.balancer(Affinity(digest)).choose(cs).worker.id
    assert first == place(digest, ["a", "b", "c"])
    copy = tried.elsewhere().balancer(Affinity(digest)).choose(cs).worker.id
    assert copy == place(digest, [i for i in "abc" if i != first])
