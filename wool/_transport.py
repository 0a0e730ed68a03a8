"""Driving a ZeroMQ socket from an asyncio loop, without socket futures.

Theory of operation. A zmq socket exposes one file descriptor that becomes readable whenever
the socket's state *may* have changed; it is edge-triggered, and any operation on the socket
(a send included) can consume the edge. So a `SocketDriver` registers the descriptor with
`loop.add_reader` and, on every wake-up, *drains*: it receives every ready message with
NOBLOCK and hands each to a synchronous callback, then flushes what it could not send before.
After a send made from outside a drain it schedules one more drain (coalesced per loop
iteration), so a message whose edge the send consumed is never stranded.

Nothing here awaits a socket operation. Callers wait on futures they own, so deadlines and
cancellation never touch zmq (pyzmq's socket futures have a history of hangs and lost messages
around cancellation). Sends never block: a message the socket refuses (high-water mark, or a
DEALER not yet connected) waits in an outbox, per destination on a ROUTER, so one stuck peer
does not hold up the others.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import zmq

log = logging.getLogger("wool.transport")

_context: tuple[int, zmq.Context[Any]] | None = None

# Both ends of every connection: ZeroMQ heartbeats notice a dead or frozen peer within
# HEARTBEAT_TIMEOUT_MS even when no call is talking; high-water marks bound each queue (our
# own outboxes take over past them, without blocking the loop).
HEARTBEAT_IVL_MS = 1000
HEARTBEAT_TIMEOUT_MS = 3000
HWM = 10_000

Frames = Sequence[Any]


def context() -> zmq.Context[Any]:
    """This process's zmq context (one per process; a forked child makes its own)."""
    global _context
    if _context is None or _context[0] != os.getpid():
        _context = (os.getpid(), zmq.Context())
    return _context[1]


def new_socket(kind: int, *options: tuple[int, int]) -> zmq.Socket[Any]:
    """A socket of `kind` with the options every wool socket shares, then `options`."""
    sock: zmq.Socket[Any] = context().socket(kind)
    for opt, value in (
        (zmq.LINGER, 0),
        (zmq.SNDHWM, HWM),
        (zmq.RCVHWM, HWM),
        (zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS),
        (zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS),
        (zmq.HEARTBEAT_TTL, HEARTBEAT_TIMEOUT_MS),
        *options,
    ):
        sock.setsockopt(opt, value)
    return sock


class SocketDriver:
    """Owns one zmq socket: delivers received messages to `on_message` and sends without
    blocking. On a ROUTER, pass `routed=True`: the first frame of each outgoing message is
    the destination, and `on_unreachable(identity)` hears of destinations that are gone."""

    RETRY_DELAY = 0.005  # first back-off for an outbox the socket keeps refusing
    MAX_BATCH = 1000  # messages per wake-up before yielding to other callbacks

    def __init__(
        self,
        sock: zmq.Socket[Any],
        on_message: Callable[[list[bytes]], None],
        *,
        routed: bool = False,
        on_unreachable: Callable[[bytes], None] | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._sock = sock
        self._on_message = on_message
        self._routed = routed
        self._on_unreachable = on_unreachable
        self._outbox: dict[bytes | None, deque[Frames]] = {}
        self._scheduled = False
        self._retry: asyncio.TimerHandle | None = None
        self._delay = self.RETRY_DELAY
        self.closed = False
        self._fd: int = sock.getsockopt(zmq.FD)  # type: ignore[assignment]
        self._loop.add_reader(self._fd, self._drain)
        self._schedule()

    @property
    def socket(self) -> zmq.Socket[Any]:
        return self._sock

    def send(self, frames: Frames) -> None:
        """Send now if the socket takes it, else queue it behind earlier messages to the
        same destination."""
        if self.closed:
            return
        key = frames[0] if self._routed else None
        queue = self._outbox.get(key)
        if queue is not None:
            queue.append(frames)
        elif not self._try_send(frames):
            self._outbox[key] = deque([frames])
            self._arm_retry()
        self._schedule()

    def close(self, linger: int = 0) -> None:
        if self.closed:
            return
        self.closed = True
        if self._retry is not None:
            self._retry.cancel()
        self._loop.remove_reader(self._fd)
        self._outbox.clear()
        self._sock.close(linger=linger)

    def _try_send(self, frames: Frames) -> bool:
        """True when the message left (or can never leave: it is dropped and reported)."""
        try:
            self._sock.send_multipart(frames, zmq.NOBLOCK, copy=False)
            return True
        except zmq.Again:
            return False
        except zmq.ZMQError as e:
            if e.errno == errno.EHOSTUNREACH and self._routed:
                if self._on_unreachable is not None:
                    self._on_unreachable(bytes(frames[0]))
            else:
                log.warning("dropping a message the socket refused: %s", e)
            return True

    def _flush(self) -> None:
        for key in list(self._outbox):
            queue = self._outbox[key]
            while queue and self._try_send(queue[0]):
                queue.popleft()
            if not queue:
                del self._outbox[key]
        if self._outbox:
            self._arm_retry()
        else:
            self._delay = self.RETRY_DELAY

    def _arm_retry(self) -> None:
        # A DEALER signals writability on its descriptor, a ROUTER per destination does not:
        # retry on a short back-off timer as well.
        if self._retry is None and not self.closed:
            self._retry = self._loop.call_later(self._delay, self._retry_now)
            self._delay = min(self._delay * 2, 0.1)

    def _retry_now(self) -> None:
        self._retry = None
        if not self.closed:
            self._flush()

    def _schedule(self) -> None:
        if not self._scheduled and not self.closed:
            self._scheduled = True
            self._loop.call_soon(self._drain)

    def drain(self) -> None:
        """Deliver every message already received (used before declaring a peer lost)."""
        self._drain()

    def _drain(self) -> None:
        self._scheduled = False
        sock = self._sock
        for _ in range(self.MAX_BATCH):
            if self.closed:
                return
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            except zmq.ZMQError as e:
                log.debug("receive failed: %s", e)
                break
            try:
                self._on_message(frames)
            except Exception:
                log.exception("unhandled error while handling a message")
        else:
            self._schedule()  # more may be ready: continue after other callbacks ran
        if self.closed:
            return
        if self._outbox:
            self._flush()
        if sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:  # type: ignore[operator,arg-type]
            self._schedule()
