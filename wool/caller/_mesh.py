"""The workers this process can dispatch to, and choosing one for each call.

Both a caller's `WorkerPool` and every worker use a `Mesh`: that is what makes the mesh flat
(a routine on a worker dispatches nested routines exactly as the caller does).

Theory of operation. A `Mesh` is a `Roster` (`_roster`: the workers known, the rotation of the
usable ones, their connections, kept in step with discovery) that chooses a worker for each
call. Deciding and waiting are apart: `pick` is synchronous and decides (the load balancer
chooses among the workers in rotation that have the call's tags and room in their window);
`choose` loops on it and awaits only what stands in the way: the handshake of a worker not
yet connected (paid once; about a millisecond on loopback; bounded: a worker that does not
complete it within ¾ of the liveness bound, at least 1 s, is treated as lost, and the call,
which has sent nothing, chooses again), room in a window that is full (calls waiting for room
queue in order, and each call that ends wakes one of them: `_slots.RoomLine`), or, with nobody
in rotation, a worker still connecting or, following discovery, one to appear.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from .._errors import NoWorkersAvailable
from ._connection import Connection
from ._explain import describe_empty
from ._loadbalancer import LoadBalancer
from ._roster import DEFAULT_CONNECT_TIMEOUT, Roster
from ._slots import Slot

__all__ = ["DEFAULT_CONNECT_TIMEOUT", "Mesh"]

log = logging.getLogger("wool.mesh")


def _ready(slot: Slot | None) -> Connection | None:
    """`slot`'s connection if a call can be sent on it now: open, handshaken, not lost."""
    conn = slot.conn if slot is not None else None
    if conn is not None and conn.lost is None and conn.connected.done():
        return conn
    return None


class Mesh(Roster):
    """The workers of one discovery namespace (or a fixed set), connected on demand, and the
    choice of one for each call."""

    @property
    def _may_appear(self) -> bool:
        """Whether to wait for a suitable worker to appear: discovery is followed, in a
        namespace other processes' workers may join, and no worker in it is unusable for a
        reason a call should hear at once (it refused this process's key, its keys do not
        fit, it refuses connections); or its pool is starting a replacement, or replaces
        every worker that leaves (a recycling worker may say goodbye before its pool has
        heard that it asks for one)."""
        if (self.expecting > 0 or self.replacing) and not self.closed:
            return True
        if self._watcher is None or not self.open_namespace or self._refused or self._ignored:
            return False
        return not any(c.refused and not c.connected.done() for c in self._connections.values())

    def pick(self, tags: frozenset[str], bounded: bool, balancer: LoadBalancer) -> Slot | None:
        """The worker a call goes to now, chosen by `balancer` among the workers in rotation
        that have every one of `tags` and room in their window (any, if not `bounded`); None
        if there is none. Synchronous: it decides, `choose` waits."""
        rotation = self._rotation
        if rotation and not tags:  # the common case, without building lists
            slot = balancer.choose(rotation)
            if slot.has_room or not bounded:
                return slot
        return self._pick_among_roomy(tags, bounded, balancer)

    def _pick_among_roomy(self, tags: frozenset[str], bounded: bool, balancer: LoadBalancer) -> Slot | None:
        """`pick`, asking the balancer only about workers with room (if `bounded`): once per
        pick, since a balancer may remember what it chose (a hedge's `Tried`)."""
        candidates = [s for s in self._rotation if tags <= s.worker.tags] if tags else self._rotation
        if bounded:
            candidates = [s for s in candidates if s.has_room]
        return balancer.choose(candidates) if candidates else None

    async def choose(
        self, bounded: bool = True, tags: frozenset[str] = frozenset(), balancer: LoadBalancer | None = None
    ) -> Connection:
        """A live worker's connection, chosen by the load balancer (or `balancer`) among the
        workers in rotation that have every one of `tags` and room in their window (any, if
        not `bounded`), connecting to it first if need be. If all are full, wait for room; if
        none is in rotation, wait up to `connect_timeout` for one to connect, or, following
        discovery, for one to appear (a pool started together with its workers). Then raise
        `NoWorkersAvailable`."""
        balancer = balancer or self.balancer
        slot = self.pick(tags, bounded, balancer)
        return _ready(slot) or await self.wait(slot, bounded, tags, balancer)

    async def wait(self, slot: Slot | None, bounded: bool, tags: frozenset[str], balancer: LoadBalancer) -> Connection:
        """`choose`, after `pick` chose `slot` (None: no worker in rotation, or none with room)
        and it was not ready: connect to it, or wait for room or for a worker, choosing
        again as things change."""
        if slot is not None and (conn := await self._handshake(slot, bounded)) is not None:
            return conn
        deadline = asyncio.get_running_loop().time() + self.connect_timeout
        waiting = False  # for a worker to appear (logged once)
        while True:
            if self.closed:
                raise NoWorkersAvailable("the pool is closed")
            slot = self._pick_among_roomy(tags, bounded, balancer)
            if slot is not None:
                if (conn := await self._handshake(slot, bounded)) is not None:
                    return conn
                # It failed (and left the rotation) or filled up meanwhile: choose again.
            elif any(tags <= s.worker.tags for s in self._rotation):  # all of them are full
                await self._room.wait(tags)
            else:
                waiting = await self._wait_for_worker(tags, deadline, waiting)

    async def _wait_for_worker(self, tags: frozenset[str], deadline: float, waiting: bool) -> bool:
        """With no worker in rotation that has `tags`: wait, until `deadline`, for one to
        connect, or (following discovery) to appear; returns whether the wait was logged.
        Raises `NoWorkersAvailable` when there is nothing to wait for, or no time left."""
        connecting = [
            c.connected for c in self._connections.values() if not c.connected.done() and not c.refused and tags <= c.worker.tags
        ]
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0 or not (connecting or self._may_appear):
            waited = f" (waited {self.connect_timeout:g} s)" if remaining <= 0 else ""
            raise NoWorkersAvailable(self._describe_empty(tags) + waited)
        if not connecting and not waiting:
            waiting = True
            log.info(
                "no worker%s in %r yet: a call waits up to %g s for one to appear",
                f" with the tags {', '.join(sorted(tags))}" if tags else "",
                self.discovery,
                remaining,
            )
        # Set when one connects, refuses, fails, or discovery brings a new one.
        changed = asyncio.ensure_future(self._changed.wait())
        waiters: list[asyncio.Future[Any]] = [*connecting, changed]
        try:
            await asyncio.wait(waiters, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
        finally:
            changed.cancel()
        return waiting

    async def _handshake(self, slot: Slot, bounded: bool) -> Connection | None:
        """`slot`'s connection once usable, opened and waited for if need be; None if it
        failed (refused, lost, closed, or no handshake within `handshake_timeout`: then the
        worker is treated as lost), or if `bounded` and the calls that waited with this one
        filled its window. Nothing has been sent on it, so the caller may choose again."""
        conn = slot.conn if slot.conn is not None else self._connect(slot)
        loop = asyncio.get_running_loop()
        while conn is not None and not conn.connected.done() and not conn.refused:
            remaining = slot.deadline - loop.time()
            if remaining <= 0:
                conn.fail(
                    f"worker {conn.worker.id} (pid {conn.worker.pid}) at {conn.worker.endpoint} "
                    f"did not complete its handshake within {self.handshake_timeout:g} s"
                )
                return None
            # Woken by its handshake, or by any change of the rotation (a refusal included).
            changed = asyncio.ensure_future(self._changed.wait())
            both: list[asyncio.Future[Any]] = [conn.connected, changed]
            try:
                await asyncio.wait(both, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            finally:
                changed.cancel()
        if conn is None or conn.lost is not None or not conn.connected.done() or slot.conn is not conn:
            return None
        return conn if conn.has_room or not bounded else None

    def _describe_empty(self, tags: frozenset[str] = frozenset()) -> str:
        return describe_empty(
            repr(self.discovery) if self.discovery is not None else "",
            tags,
            [s.worker for s in self._rotation],
            len(self._lost),
            [c.worker for c in self._connections.values() if c.refused and not c.connected.done()],
            self._refused.values(),
            self._ignored,
        )
