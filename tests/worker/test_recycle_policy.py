"""The pure decisions behind recycling and priorities: what a worker does after each call
and each RSS sample, and which waiting call a freed slot starts."""

from __future__ import annotations

from wool._memory import HARD_FACTOR
from wool.worker._admission import Admission, CallSlot
from wool.worker._recycle import Action, RecyclePolicy


def test_a_worker_announces_at_90_percent_and_recycles_at_n_once() -> None:
    policy = RecyclePolicy(recycle_after=10, memory_limit=None)
    actions = [policy.call_started() for _ in range(12)]
    assert actions[:8] == [[]] * 8
    assert actions[8] == [Action.ANNOUNCE]
    assert actions[9] == [Action.RECYCLE]
    assert actions[10:] == [[], []]
    assert policy.reason == "it ran 10 calls (recycle_after=10)"


def test_a_small_n_announces_a_call_before_the_last() -> None:
    policy = RecyclePolicy(recycle_after=3, memory_limit=None)
    assert [policy.call_started() for _ in range(3)] == [[], [Action.ANNOUNCE], [Action.RECYCLE]]
    once = RecyclePolicy(recycle_after=1, memory_limit=None)
    assert once.call_started() == [Action.ANNOUNCE, Action.RECYCLE]


def test_memory_over_the_limit_recycles_and_far_over_it_while_calls_run_kills() -> None:
    policy = RecyclePolicy(recycle_after=None, memory_limit=100_000_000)
    assert policy.rss_seen(99_000_000, running=True) == []
    assert policy.rss_seen(None, running=True) == []
    assert policy.rss_seen(int(100_000_000 * HARD_FACTOR) + 1, running=True) == [Action.KILL]
    assert "exceeded 1.2 x its memory limit of 100.0 MB" in (policy.reason or "")
    idle = RecyclePolicy(recycle_after=None, memory_limit=100_000_000)
    assert idle.rss_seen(130_000_000, running=False) == [Action.RECYCLE]  # between calls: recycle
    assert idle.rss_seen(150_000_000, running=False) == []  # once
    assert idle.reason == "its RSS of 130.0 MB exceeded its memory limit of 100.0 MB"


class _Call:
    def __init__(self, name: str, started: list[str]) -> None:
        self.name, self.started = name, started

    def start(self) -> None:
        self.started.append(self.name)


def test_a_freed_slot_starts_the_highest_priority_then_the_oldest() -> None:
    started: list[str] = []
    admission = Admission(1)
    calls = {}
    for name, priority in [("running", 0), ("bulk1", 0), ("bulk2", 0), ("urgent", 10), ("low", -1), ("urgent2", 10)]:
        call, slot = _Call(name, started), CallSlot(admission, priority)
        calls[name] = (call, slot)
        admission.admit(call, slot)
    assert started == ["running"] and admission.queued == 5
    admission.ended(*calls["bulk2"])  # cancelled while it waited
    for name in ["running", "urgent", "urgent2", "bulk1"]:
        admission.ended(*calls[name])
    assert started == ["running", "urgent", "urgent2", "bulk1", "low"]
    assert admission.queued == 0
