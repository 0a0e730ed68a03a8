"""A worker's limit of concurrent calls, and the calls waiting for a slot.

Theory of operation. With a limit, a call that arrives while every slot is taken waits,
highest priority first and in arrival order within a priority (`wool.options(priority=)`),
without being started (its arguments are not even unpickled); each call that
ends starts the next. A running call holds its slot until it ends, except while it awaits a
nested routine call: then it lends the slot (see `wool.caller._context.waiting_on_peer`), because a
fan-out whose parents kept their slots while their children queued for one could deadlock.
On return it reclaims the slot at once rather than queue again (a parent must be able to
finish), so the running count can exceed the limit for as long as such parents resume.

Waiting calls cost a few hundred bytes each and are bounded by the callers: each keeps at
most `max_calls` calls open on a worker that publishes a limit.
"""

from __future__ import annotations

from typing import Protocol


class Admitted(Protocol):
    def start(self) -> None: ...


class CallSlot:
    """One call's claim on a slot: held while it runs, lent while it awaits peers."""

    __slots__ = ("_admission", "_lent", "held", "ended", "priority")

    def __init__(self, admission: Admission, priority: int = 0) -> None:
        self._admission = admission
        self.priority = priority
        self._lent = 0
        self.held = False
        self.ended = False

    def lend(self) -> None:
        self._lent += 1
        if self._lent == 1 and self.held:
            self.held = False
            self._admission.free_one()

    def reclaim(self) -> None:
        self._lent -= 1
        if self._lent == 0 and not self.held and not self.ended:
            self.held = True
            self._admission.running += 1


class Admission:
    """Starts calls while fewer than `limit` run (always, with no limit); queues the rest."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.running = 0
        # priority -> the calls waiting at it, insertion-ordered: a FIFO per priority
        self._waiting: dict[int, dict[Admitted, CallSlot]] = {}
        self.queued = 0

    def admit(self, call: Admitted, slot: CallSlot) -> None:
        if self.limit is None or (self.running < self.limit and not self.queued):
            self._start(call, slot)
        else:
            self._waiting.setdefault(slot.priority, {})[call] = slot
            self.queued += 1

    def ended(self, call: Admitted, slot: CallSlot) -> None:
        """`call` finished, or was cancelled while it waited."""
        slot.ended = True
        line = self._waiting.get(slot.priority)
        if line is not None and line.pop(call, None) is not None:
            self.queued -= 1
            if not line:
                del self._waiting[slot.priority]
        elif slot.held:
            slot.held = False
            self.free_one()

    def take_waiting(self) -> list[Admitted]:
        """Remove and return every waiting call (a stopping worker refuses them)."""
        waiting = [call for priority in sorted(self._waiting, reverse=True) for call in self._waiting[priority]]
        self._waiting, self.queued = {}, 0
        return waiting

    def free_one(self) -> None:
        self.running -= 1
        while self.queued and (self.limit is None or self.running < self.limit):
            priority = max(self._waiting)
            line = self._waiting[priority]
            call = next(iter(line))
            slot = line.pop(call)
            self.queued -= 1
            if not line:
                del self._waiting[priority]
            self._start(call, slot)

    def _start(self, call: Admitted, slot: CallSlot) -> None:
        slot.held = True
        self.running += 1
        call.start()
