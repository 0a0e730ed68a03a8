"""Which connections to close for idleness: the decision, apart from the mesh that acts on it.

A connection is idle when nothing waits on its worker (no reply pending, no call or stream
open). Rather than read a clock on every call, the mesh sweeps every half `idle_timeout`
while it has connections open, and each connection counts its requests: one that was idle
with its count unchanged at `SWEEPS` sweeps in a row has carried nothing for at least
`idle_timeout` (at most one and a half times it) and is closed. The next call to that worker
opens a new connection and pays one handshake.
"""

from __future__ import annotations

from collections.abc import Iterable

from ._connection import Connection

DEFAULT_IDLE_TIMEOUT = 30.0  # seconds without calls after which a connection is closed
SWEEPS = 3  # consecutive idle sweeps, every half timeout: idle for at least the timeout


def check_idle_timeout(idle_timeout: float | None) -> float | None:
    """`idle_timeout` as a float (None: never close), or `TypeError`/`ValueError` naming the problem."""
    if idle_timeout is None:
        return None
    if isinstance(idle_timeout, bool) or not isinstance(idle_timeout, (int, float)):
        raise TypeError(f"idle_timeout must be a number of seconds or None, not {type(idle_timeout).__name__}")
    if not 0 < idle_timeout < float("inf"):
        raise ValueError(f"idle_timeout must be a positive number of seconds (or None: never), got {idle_timeout!r}")
    return float(idle_timeout)


class IdleSweep:
    """Remembers, per connection, its request count at the last sweep and for how many sweeps
    in a row it was idle with that count."""

    def __init__(self) -> None:
        self._seen: dict[Connection, tuple[int, int]] = {}

    def sweep(self, connections: Iterable[Connection]) -> list[Connection]:
        """One sweep: the connections idle long enough to close (forgotten here)."""
        expired = []
        for conn in connections:
            if not conn.idle or not conn.connected.done():
                self._seen[conn] = (conn.requests, 0)
                continue
            seen, sweeps = self._seen.get(conn, (-1, 0))
            sweeps = sweeps + 1 if seen == conn.requests else 1
            if sweeps < SWEEPS:
                self._seen[conn] = (conn.requests, sweeps)
            else:
                self._seen.pop(conn, None)
                expired.append(conn)
        return expired

    def forget(self, conn: Connection) -> None:
        self._seen.pop(conn, None)

    def clear(self) -> None:
        self._seen.clear()
