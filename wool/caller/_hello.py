"""A keyless `ipc://` connection until its worker has proved to be a process of this user's:
the path check before each connect attempt, the attempts themselves, the hello and its
answer, and the requests held back meanwhile (the why is in `_identity`).

ZeroMQ's own reconnection is put off on such a connection: it would connect again, later, to
whatever is at the path by then, and hand it every message queued meanwhile. Not turned off
(`RECONNECT_IVL` -1): libzmq then discards, with the broken connection, the replies that
arrived before it broke and that the caller has not read yet (a worker's last results before
it exits). An hour, without back-off cap (`RECONNECT_IVL_MAX` 0, else the cap applies), is far
beyond such a connection's life: a lost connection is closed at once. So a connect attempt
that finds nobody listening (ZeroMQ reports the socket closed) is retried from here instead,
after the path is checked again, with ZeroMQ's usual back-off.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import zmq

from .. import protocol as p
from .._errors import AuthenticationError
from .._info import WorkerInfo
from .._ipc import ipc_connect_problem
from .._transport import RECONNECT_IVL_MAX_MS, receive_with_peer
from ._identity import Mismatch, hello_mismatch, peer_mismatch

RETRY_FIRST = 0.1  # seconds before the first retry (ZeroMQ's own default interval)
# The socket options of such a connection: ZeroMQ reconnects only after an hour (see above).
OPTIONS = ((zmq.RECONNECT_IVL, 3_600_000), (zmq.RECONNECT_IVL_MAX, 0))


def needs_hello(endpoint: str, keyless: bool, insecure: bool) -> bool:
    """Whether a connection to `endpoint` must check who listens there (see `_identity`)."""
    return keyless and not insecure and endpoint.startswith("ipc://")


class Hello:
    """The checks of one keyless `ipc://` connection to `worker`, and what waits on them."""

    def __init__(self, worker: WorkerInfo) -> None:
        self.worker = worker
        self.uid = os.getuid()
        self.call_id: int | None = None  # of the hello ping, once sent
        self.held: list[list[p.Frame]] = []  # requests made before the hello was answered
        self.retry: asyncio.TimerHandle | None = None
        self._peer: str | None = None  # ZeroMQ's Peer-Address of the first message
        self._delay = RETRY_FIRST

    def connect_problem(self) -> AuthenticationError | None:
        """Why not to connect to the worker's path now, checked without following links."""
        problem = ipc_connect_problem(self.worker.endpoint)
        if problem is None:
            return None
        return AuthenticationError(
            f"not connecting to worker {self.worker.id!r} at {self.worker.endpoint!r}: {problem}; another user could "
            "have put their own socket there"
        )

    def receive(self, sock: zmq.Socket[Any]) -> list[Any]:
        """Receive a message, noting who sent it."""
        frames, self._peer = receive_with_peer(sock)
        return frames

    def check(self, frames: list[Any]) -> Mismatch | None:
        """None if `frames`, the connection's first message, come from a process of this
        user's and are the pong to the hello from the incarnation discovery listed. Who sent
        them is checked before a byte of them is decoded."""
        mismatch = peer_mismatch(self.worker, self._peer, self.uid)
        if mismatch is not None:
            return mismatch
        try:
            msg = p.decode(frames)
        except p.ProtocolError as e:
            return Mismatch(
                f"worker {self.worker.id!r} at {self.worker.endpoint!r} answered its hello with a malformed reply: {e}", True
            )
        return hello_mismatch(self.worker, msg, self.call_id)

    def next_delay(self) -> float:
        delay, self._delay = self._delay, min(2 * self._delay, RECONNECT_IVL_MAX_MS / 1000)
        return delay

    def cancel(self) -> None:
        if self.retry is not None:
            self.retry.cancel()
            self.retry = None
