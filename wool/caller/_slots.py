"""What the mesh chooses among, and the line of calls waiting for room: no sockets of its own.

A `Slot` is one worker the mesh may dispatch to, with its connection while one is open; it is
what a load balancer sees (a `Candidate`). `RoomLine` holds the calls that found every
suitable worker's window full, in order: each call that ends on a worker lets the first
waiter that may use that worker go, and a change of the rotation wakes them all to look again.
Waiters are served highest priority first (`wool.options(priority=)`, read from the waiting
call's context), in order of arrival within a priority.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools

from .._info import WorkerInfo
from ._connection import Connection
from ._options import options_var


class Slot:
    """A worker this mesh may dispatch to, with its connection while one is open."""

    __slots__ = ("worker", "conn", "probation", "deadline")

    def __init__(self, worker: WorkerInfo) -> None:
        self.worker = worker
        self.conn: Connection | None = None
        # Lost once and being probed again: in rotation only once that handshake completes.
        self.probation = False
        self.deadline = 0.0  # loop time by which the open connection's handshake must complete

    def __repr__(self) -> str:
        return f"<worker {self.worker.id[:8]} {self.conn!r}>"

    @property
    def in_flight(self) -> int:
        """Calls of this process open on the worker."""
        return self.conn.calls.in_flight if self.conn is not None else 0

    @property
    def has_room(self) -> bool:
        return self.conn is None or self.conn.calls.has_room


class RoomLine:
    """Calls waiting for room in a window, in order, with the tags their worker needs."""

    def __init__(self) -> None:
        # (-priority, arrival, tags, waiter), kept sorted: the head goes first
        self._line: list[tuple[int, int, frozenset[str], asyncio.Future[Connection | None]]] = []
        self._arrivals = itertools.count()

    def __len__(self) -> int:
        return len(self._line)

    def wake_all(self) -> None:
        """Every waiter looks again (the rotation changed), in their order."""
        line, self._line = self._line, []
        for *_, waiter in line:
            if not waiter.done():
                waiter.set_result(None)

    def on_room(self, conn: Connection | None = None) -> None:
        """One call ended on `conn`: the first waiter that may use that worker may go."""
        line = self._line
        while line and line[0][3].done():  # cancelled meanwhile
            del line[0]
        for i, (_, _, tags, waiter) in enumerate(line):  # the head, unless tags rule it out
            if not waiter.done() and (conn is None or tags <= conn.worker.tags):
                del line[i]
                waiter.set_result(conn)
                return

    async def wait(self, tags: frozenset[str]) -> None:
        """Until a call ends on a worker with `tags`, or the rotation changes."""
        waiter: asyncio.Future[Connection | None] = asyncio.get_running_loop().create_future()
        entry = (-options_var.get().priority, next(self._arrivals), tags, waiter)
        if not self._line or entry[:2] > self._line[-1][:2]:
            self._line.append(entry)  # the usual case: one priority, in order of arrival
        else:
            bisect.insort(self._line, entry, key=lambda e: e[:2])
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.on_room(waiter.result())  # pass the wake-up on
            raise
