"""A worker's limit of concurrent calls, and the calls waiting for a slot.

Theory of operation. With a limit, a call that arrives while every slot is taken waits, in
arrival order, without being started (its arguments are not even unpickled); each call that
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

    __slots__ = ("_admission", "_lent", "held", "ended")

    def __init__(self, admission: Admission) -> None:
        self._admission = admission
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
        self._waiting: dict[Admitted, CallSlot] = {}  # insertion-ordered: a FIFO

    @property
    def queued(self) -> int:
        return len(self._waiting)

    def admit(self, call: Admitted, slot: CallSlot) -> None:
        if self.limit is None or (self.running < self.limit and not self._waiting):
            self._start(call, slot)
        else:
            self._waiting[call] = slot

    def ended(self, call: Admitted, slot: CallSlot) -> None:
        """`call` finished, or was cancelled while it waited."""
        slot.ended = True
        if self._waiting.pop(call, None) is None and slot.held:
            slot.held = False
            self.free_one()

    def take_waiting(self) -> list[Admitted]:
        """Remove and return every waiting call (a stopping worker refuses them)."""
        waiting, self._waiting = list(self._waiting), {}
        return waiting

    def free_one(self) -> None:
        self.running -= 1
        while self._waiting and (self.limit is None or self.running < self.limit):
            call = next(iter(self._waiting))
            self._start(call, self._waiting.pop(call))

    def _start(self, call: Admitted, slot: CallSlot) -> None:
        slot.held = True
        self.running += 1
        call.start()
