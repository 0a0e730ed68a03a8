"""`Mesh.pick`: the synchronous choice of a worker for one call, among the workers in rotation
that have the call's tags and (for a bounded call) room in their window. No sockets: the
rotation is made of stand-in slots."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import pytest

from wool import WorkerLost
from wool._info import WorkerInfo
from wool.caller import LeastOutstanding, Mesh, RoundRobin
from wool.caller._loadbalancer import Candidate
from wool.caller._route import Pinned

C = TypeVar("C", bound=Candidate)


class FakeSlot:
    def __init__(self, name: str, tags: frozenset[str] = frozenset(), room: bool = True, in_flight: int = 0) -> None:
        self.worker = WorkerInfo(name, f"ipc:///nowhere/{name}", 1, tags=tags)
        self.has_room = room
        self.in_flight = in_flight

    def __repr__(self) -> str:
        return self.worker.id


class Recording:
    """A balancer that records what it was offered, choosing the first."""

    def __init__(self) -> None:
        self.offered: list[list[str]] = []

    def choose(self, candidates: Sequence[C]) -> C:
        self.offered.append([c.worker.id for c in candidates])
        return candidates[0]


async def mesh_of(*slots: FakeSlot) -> Mesh:
    mesh = Mesh()
    mesh._rotation = list(slots)  # type: ignore[arg-type]
    return mesh


async def test_an_empty_rotation_picks_nothing() -> None:
    mesh = await mesh_of()
    assert mesh.pick(frozenset(), True, RoundRobin()) is None
    assert mesh.pick(frozenset(), False, RoundRobin()) is None


async def test_round_robin_over_the_rotation() -> None:
    a, b, c = FakeSlot("a"), FakeSlot("b"), FakeSlot("c")
    mesh = await mesh_of(a, b, c)
    balancer = RoundRobin()
    assert [mesh.pick(frozenset(), True, balancer) for _ in range(4)] == [a, b, c, a]


async def test_a_full_worker_is_skipped_by_a_bounded_call_only() -> None:
    a, b = FakeSlot("a", room=False), FakeSlot("b")
    mesh = await mesh_of(a, b)
    balancer = Recording()
    assert mesh.pick(frozenset(), True, balancer) is b
    assert balancer.offered == [["a", "b"], ["b"]]  # the common case first, then only those with room
    assert mesh.pick(frozenset(), False, Recording()) is a


async def test_all_full_picks_nothing_for_a_bounded_call() -> None:
    mesh = await mesh_of(FakeSlot("a", room=False), FakeSlot("b", room=False))
    assert mesh.pick(frozenset(), True, RoundRobin()) is None
    assert mesh.pick(frozenset(), False, RoundRobin()) is not None


async def test_tags_narrow_the_candidates() -> None:
    a, g1, g2 = FakeSlot("a"), FakeSlot("g1", frozenset({"gpu"})), FakeSlot("g2", frozenset({"gpu", "big"}))
    mesh = await mesh_of(a, g1, g2)
    balancer = Recording()
    assert mesh.pick(frozenset({"gpu"}), True, balancer) is g1
    assert mesh.pick(frozenset({"gpu", "big"}), True, balancer) is g2
    assert balancer.offered == [["g1", "g2"], ["g2"]]  # asked once each, never about `a`
    assert mesh.pick(frozenset({"tpu"}), False, balancer) is None


async def test_tags_and_room_together() -> None:
    g1, g2 = FakeSlot("g1", frozenset({"gpu"}), room=False), FakeSlot("g2", frozenset({"gpu"}))
    mesh = await mesh_of(FakeSlot("a"), g1, g2)
    assert mesh.pick(frozenset({"gpu"}), True, RoundRobin()) is g2
    mesh._rotation = [FakeSlot("a"), g1]  # type: ignore[list-item]
    assert mesh.pick(frozenset({"gpu"}), True, RoundRobin()) is None


async def test_least_outstanding_sees_in_flight() -> None:
    busy, idle = FakeSlot("busy", in_flight=5), FakeSlot("idle", in_flight=0)
    mesh = await mesh_of(busy, idle)
    assert mesh.pick(frozenset(), True, LeastOutstanding()) is idle


async def test_a_pinned_worker_that_left_the_rotation_fails_the_pick() -> None:
    mesh = await mesh_of(FakeSlot("a"))
    assert mesh.pick(frozenset(), False, Pinned("a")) is not None
    with pytest.raises(WorkerLost, match="left the rotation"):
        mesh.pick(frozenset(), False, Pinned("b"))
