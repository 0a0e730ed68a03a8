"""Driving a ZeroMQ socket from an asyncio loop, without socket futures.

Theory of operation. A zmq socket exposes one file descriptor that becomes readable whenever
the socket's state *may* have changed; it is edge-triggered, and any operation on the socket
(a send included) can consume the edge. So a `SocketDriver` registers the descriptor with
`loop.add_reader` and, on every wake-up, *drains*: it receives every ready message with
NOBLOCK and hands each to a synchronous callback, then flushes what it could not send before.
After a send made from outside a drain it schedules one more drain (coalesced per loop
iteration), so a message whose edge the send consumed is never stranded.

Large frames are received without copying (`receive`): the payload layer makes the one copy
a value needs, when its owner unpickles it.

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
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import zmq

from . import _spin
from ._seconds import check_seconds
from ._throttle import WARN_INTERVAL

log = logging.getLogger("wool.transport")

_context: tuple[int, zmq.Context[Any]] | None = None

# Liveness: both ends of every connection send ZeroMQ heartbeats, so a peer that died, froze
# (SIGSTOP) or whose host vanished is disconnected even when no call is talking: a ping every
# quarter of the bound, and half of it without any answer closes the connection. That leaves
# the last quarter for the worker's probe of silent callers (see `worker._server`). libzmq's
# own I/O thread answers heartbeats, so a peer whose event loop is merely busy (CPU-bound user
# code) is not declared lost: by design, since busy is not dead.
DEFAULT_LIVENESS = 5.0
MIN_LIVENESS, MAX_LIVENESS = 0.2, 3600.0
# High-water marks bound each zmq queue; past them our own outboxes take over, without
# blocking the loop. Callers keep at most a window of calls open per worker (`_connection`),
# well below these, so they are only reached by a peer that ignores the protocol.
HWM = 10_000
RECONNECT_IVL_MAX_MS = 1000

# Before a peer authenticates, libzmq's decoder allocates what a frame header claims, and a
# handshake that never completes holds its connection and buffers for the handshake
# interval. So every socket refuses message parts (frames) larger than `max_message_size`
# (the peer is disconnected at the header, before any allocation), and a connection must
# complete its handshake within `HANDSHAKE_IVL_MS`: a peer that connects and never speaks,
# or speaks junk, costs a descriptor for at most that long. The default limit is twice the
# largest payload the benchmarks send (64 MiB); a pool (`max_message_size=`) or worker
# (`--max-message-size`) expecting larger values raises it. Out-of-band buffers travel as
# frames of their own, so the limit bounds the largest single buffer of a value.
DEFAULT_MAX_MESSAGE_SIZE = 128 * 1024 * 1024
MIN_MAX_MESSAGE_SIZE = 64 * 1024  # below that, ordinary envelopes and pickles would not fit
HANDSHAKE_IVL_MS = 5000

Frames = Sequence[Any]
# Received frames of at least this size stay in ZeroMQ's buffer (see `receive`); the same
# threshold (64 KiB) above which pyzmq sends without copying.
ZERO_COPY = zmq.COPY_THRESHOLD

# Frame by frame through the backend's `send`, with plain int flags: pyzmq's `send_multipart`
# type-checks every frame and computes `SNDMORE | flags` as enum values, which for a small
# three-frame message costs 19 µs against 3 µs for the sends themselves (measured on a 2-vCPU
# EPYC, pyzmq 27.3). libzmq checks the high-water mark on a message's first frame only, so once
# that is accepted, so are the rest, exactly as with `send_multipart`.
_send_frame = zmq.backend.Socket.send
_MORE = int(zmq.NOBLOCK | zmq.SNDMORE)
_LAST = int(zmq.NOBLOCK)


def context() -> zmq.Context[Any]:
    """This process's zmq context (one per process; a forked child makes its own)."""
    global _context
    if _context is None or _context[0] != os.getpid():
        _context = (os.getpid(), zmq.Context())
    return _context[1]


def check_liveness(liveness: float) -> float:
    """`liveness` as a float, or `ValueError`/`TypeError` naming what is wrong with it."""
    return check_seconds(liveness, "liveness", at_least=MIN_LIVENESS, at_most=MAX_LIVENESS)


def check_max_message_size(size: int) -> int:
    """`size` (bytes), or `ValueError`/`TypeError` naming what is wrong with it."""
    if isinstance(size, bool) or not isinstance(size, int):
        raise TypeError(f"max_message_size must be a number of bytes (int), not {type(size).__name__}")
    if size < MIN_MAX_MESSAGE_SIZE:
        raise ValueError(f"max_message_size must be at least {MIN_MAX_MESSAGE_SIZE} bytes, got {size}")
    return size


def oversized(frames: Frames, limit: int) -> int:
    """The size of the first of `frames` larger than `limit` bytes, else 0. A plain loop: it
    runs on every call (about 0.2 µs for a small one)."""
    for frame in frames:
        size = frame.nbytes if type(frame) is memoryview else len(frame)
        if size > limit:
            return size
    return 0


def show_size(size: int) -> str:
    return f"{size} bytes ({size / (1 << 20):.1f} MiB)"


def new_socket(
    kind: int,
    *options: tuple[int, int],
    liveness: float = DEFAULT_LIVENESS,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
) -> zmq.Socket[Any]:
    """A socket of `kind` with the options every wool socket shares, then `options`. A peer
    that stops answering is disconnected within three quarters of `liveness` seconds; one
    that sends a frame larger than `max_message_size` bytes, or does not complete its
    handshake within `HANDSHAKE_IVL_MS`, at once (see above)."""
    sock: zmq.Socket[Any] = context().socket(kind)
    interval_ms = max(1, int(liveness * 250))
    for opt, value in (
        (zmq.LINGER, 0),
        (zmq.SNDHWM, HWM),
        (zmq.RCVHWM, HWM),
        (zmq.MAXMSGSIZE, max_message_size),
        (zmq.HANDSHAKE_IVL, HANDSHAKE_IVL_MS),
        (zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS),
        (zmq.HEARTBEAT_IVL, interval_ms),
        (zmq.HEARTBEAT_TIMEOUT, 2 * interval_ms),
        (zmq.HEARTBEAT_TTL, 2 * interval_ms),
        *options,
    ):
        sock.setsockopt(opt, value)
    return sock


def receive(sock: zmq.Socket[Any]) -> list[Any]:
    """One multipart message, without blocking (`zmq.Again` if none is ready). Frames under
    `ZERO_COPY` bytes come as `bytes`; larger ones as writable memoryviews of ZeroMQ's own
    buffer, which they keep alive. A copying receive would copy every large frame here, and
    rebuilding a `bytearray` from it would copy it again; this way a large payload is copied
    at most once, by whatever turns it into a value (not at all for a value that can be a
    view of it, such as a numpy array), and never for a message that is dropped."""
    frames: list[Any] = []
    while True:
        # Frame by frame rather than recv_multipart(copy=False), which asks the socket for
        # RCVMORE once more per frame: that made small messages slower to receive than with
        # copying, this is as fast. Later parts are there: ZeroMQ delivers messages whole.
        frame = sock.recv(zmq.NOBLOCK, copy=False)
        frames.append(frame.bytes if len(frame) < ZERO_COPY else frame.buffer)
        if not frame.more:
            return frames


def receive_with_peer(sock: zmq.Socket[Any]) -> tuple[list[Any], str | None]:
    """`receive`, and the `Peer-Address` ZeroMQ attached to the message: for an `ipc://`
    connection on Linux, `host:uid:gid:pid` of the process at the other end, as the kernel
    reports it (`SO_PEERCRED`), which no peer can forge."""
    first = sock.recv(zmq.NOBLOCK, copy=False)
    try:
        value = first.get("Peer-Address")
    except zmq.ZMQError:
        value = None
    peer = value if isinstance(value, str) else None
    frames: list[Any] = [first.bytes if len(first) < ZERO_COPY else first.buffer]
    if first.more:
        frames.extend(receive(sock))
    return frames, peer


Receiver = Callable[[zmq.Socket[Any]], list[Any]]


class SocketDriver:
    """Owns one zmq socket: delivers received messages to `on_message` (as `receive` gives
    them) and sends without blocking. On a ROUTER, pass `routed=True`: the first frame of
    each outgoing message is the destination, and `on_unreachable(identity)` hears of
    destinations that are gone."""

    RETRY_DELAY = 0.005  # first back-off for an outbox the socket keeps refusing
    MAX_BATCH = 1000  # messages per wake-up before yielding to other callbacks

    def __init__(
        self,
        sock: zmq.Socket[Any],
        on_message: Callable[[list[Any]], None],
        *,
        routed: bool = False,
        on_unreachable: Callable[[bytes], None] | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._sock = sock
        self._on_message = on_message
        self._receive: Receiver = receive
        self._routed = routed
        self._on_unreachable = on_unreachable
        self._outbox: dict[bytes | None, deque[Frames]] = {}
        self._scheduled = False
        self._retry: asyncio.TimerHandle | None = None
        self._delay = self.RETRY_DELAY
        self.closed = False
        self._last_unhandled = -WARN_INTERVAL  # when an unhandled error was last logged in full
        self._fd: int = sock.getsockopt(zmq.FD)  # type: ignore[assignment]
        self._loop.add_reader(self._fd, self._drain)
        self._spinner = _spin.spinner(self._loop)  # None unless the loop spins (see `_spin`)
        self._schedule()

    @property
    def socket(self) -> zmq.Socket[Any]:
        return self._sock

    def redirect(self, on_message: Callable[[list[Any]], None], receiver: Receiver = receive) -> None:
        """Deliver later messages to `on_message`, received with `receiver` (a connection
        that checks who its first message came from, then hands over to its usual path)."""
        self._on_message = on_message
        self._receive = receiver

    def send(self, frames: Frames) -> None:
        """Send now if the socket takes it, else queue it behind earlier messages to the
        same destination. Sends made while a drain is already scheduled (after an earlier
        send in this loop iteration) are corked: they leave together when that drain runs,
        at the start of the next iteration. Sent one at a time between stretches of Python
        work, each message wakes ZeroMQ's I/O thread on its own (a system call, and a
        thread switch on a busy machine); a lone message still leaves at once."""
        if self.closed:
            return
        key = frames[0] if self._routed else None
        queue = self._outbox.get(key)
        if queue is not None:
            queue.append(frames)
        elif self._scheduled:
            self._outbox[key] = deque([frames])
        elif not self._try_send(frames):
            self._outbox[key] = deque([frames])
            self._arm_retry()
        self._schedule()
        if self._spinner is not None:
            self._spinner.kick(self)

    def poll(self) -> None:
        """Drain now if a message is ready (asked by a spinning loop: see `_spin`)."""
        if not self.closed and self._sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:  # type: ignore[operator,arg-type]
            self._drain()

    def close(self, linger: int = 0) -> None:
        if self.closed:
            return
        if self._outbox:
            self._flush()  # corked messages (a last burst of cancels, say) get their chance
        self.closed = True
        if self._retry is not None:
            self._retry.cancel()
        self._loop.remove_reader(self._fd)
        self._outbox.clear()
        self._sock.close(linger=linger)

    def _try_send(self, frames: Frames) -> bool:
        """True when the message left (or can never leave: it is dropped and reported)."""
        sock = self._sock
        try:
            for frame in frames[:-1]:
                _send_frame(sock, frame, _MORE, False)
            _send_frame(sock, frames[-1], _LAST, False)
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

    def _unhandled(self) -> None:
        """A bug met while handling a message (bad input is handled, never raised here): its
        traceback once per interval, the rest at DEBUG, so that a peer repeating the message
        that meets it cannot flood the log."""
        now = time.monotonic()
        if now - self._last_unhandled < WARN_INTERVAL:
            log.debug("unhandled error while handling a message", exc_info=True)
            return
        self._last_unhandled = now
        log.exception("unhandled error while handling a message (further ones logged at DEBUG for %.0f s)", WARN_INTERVAL)

    def _schedule(self) -> None:
        if not self._scheduled and not self.closed:
            self._scheduled = True
            self._loop.call_soon(self._drain, True)

    def drain(self) -> None:
        """Deliver every message already received (used before declaring a peer lost)."""
        self._drain()

    def _drain(self, scheduled: bool = False) -> None:
        self._scheduled = False
        if self._outbox:
            self._flush()  # first: a corked burst leaves before anything else is handled
        sock = self._sock
        # A receive that finds nothing has processed every command pending on the socket, so
        # its descriptor is re-armed: only then may the EVENTS check below (2 µs) be skipped.
        # Asking EVENTS re-arms it just the same and costs less than a receive that fails
        # (pyzmq raises, 4.6 µs): so ask first after the first message, which is often the
        # only one, and before it in a drain scheduled after a send rather than woken by the
        # descriptor, which mostly finds nothing (once per call on each side).
        exhausted = False
        first = 0 if scheduled else 1
        for n in range(self.MAX_BATCH):
            if self.closed:
                return
            if first <= n <= 1 and not sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:  # type: ignore[operator,arg-type]
                exhausted = True
                break
            try:
                frames = self._receive(sock)
            except zmq.Again:
                exhausted = True
                break
            except zmq.ZMQError as e:
                log.debug("receive failed: %s", e)
                break
            try:
                self._on_message(frames)
            except Exception:
                self._unhandled()
            if n == 0 and self._spinner is not None:
                self._spinner.kick(self)
        else:
            self._schedule()  # more may be ready: continue after other callbacks ran
        if self.closed:
            return
        if not exhausted and sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:  # type: ignore[operator,arg-type]
            self._schedule()
