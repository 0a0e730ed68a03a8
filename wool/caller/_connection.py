"""The caller's side of one worker: a DEALER socket that multiplexes calls by call id.

Theory of operation. A `Connection` owns one DEALER connected to one worker incarnation and a
monitor socket that reports the ZMTP handshake and disconnections; it encodes requests, checks
their size, decodes replies and follows the monitor's events. The bookkeeping of its calls is
its `CallLedger` (`_ledger`, pure): every request that expects a reply registers a future
under its call id there, and each decoded reply is matched to it (`_on_reply`). A generator
call keeps its id for all its steps, with at most one step pending at a time.

Identity (`_identity`, `_hello`): with keys, the CURVE handshake proves who the worker is.
Without keys over `ipc://`, the connection checks the socket's path before each connect
attempt (it makes them itself), pings the worker after the ZeroMQ handshake (its hello), and
is usable only once a process of this user's answered it as the incarnation discovery listed:
until then nothing but the hello is sent (requests wait), and nothing received is unpickled.

Liveness: the handshake (and the hello, where there is one) marks the connection usable; a
disconnection (the worker's process died, or ZeroMQ heartbeats timed out) fails every
pending future with `WorkerLost`, after first delivering any reply that had already arrived. A call is never re-sent, and the
worker's incarnation id in each call stops a restarted worker on the same endpoint from
running one that was queued while it was down. That check is what lets the DEALER keep the
default IMMEDIATE=0: with IMMEDIATE=1, ZeroMQ discards the replies a worker sent just before
it exited (such as the results of calls it finished during a graceful stop) together with
the broken connection.

Backpressure: a connection keeps at most `window` calls open on its worker (the worker's
published `max_calls`, else `WINDOW`); the mesh sends further calls to workers with room or
holds them until a call ends. The caller's DEALER has a routing id naming its process, so a
worker's DEBUG log of a call can be matched with the caller's.

Security: with `keys`, the DEALER is a CURVE client that pins the worker's published public
key, so only the holder of the matching secret key can complete the handshake, and ZeroMQ
delivers no reply before it has. A failed handshake (the worker refused this process's key,
or the peer is not the worker discovery described) fails the connection at once with
`AuthenticationError`, rather than leaving ZeroMQ to retry it for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import secrets
from collections.abc import Callable
from typing import Any

import zmq
from zmq.utils.monitor import parse_monitor_message

from .. import _curve, _handshake, _observe
from .. import protocol as p
from .._errors import AuthenticationError, DispatchError, WoolError, WorkerLost
from .._info import WorkerInfo
from .._keys import Keys
from .._throttle import Throttle
from .._transport import (
    DEFAULT_LIVENESS,
    DEFAULT_MAX_MESSAGE_SIZE,
    HANDSHAKE_IVL_MS,
    SocketDriver,
    new_socket,
    oversized,
    show_size,
)
from . import _output
from ._fetches import answer_fetch
from ._hello import OPTIONS as HELLO_OPTIONS
from ._hello import Hello, needs_hello
from ._ledger import CallLedger, Sink

log = logging.getLogger("wool.connection")

_HANDSHAKE_FAILED = zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
_MONITORED = (
    zmq.EVENT_CONNECTED
    | zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_DISCONNECTED
    | zmq.EVENT_CONNECT_RETRIED
    | zmq.EVENT_CLOSED
    | _HANDSHAKE_FAILED
)
WINDOW = 10_000  # calls open on one worker at most, for workers that publish no max_calls


def _routing_id() -> bytes:
    # Unique per connection (random), readable in a worker's log (pid first).
    return f"{os.getpid()}-{secrets.token_hex(4)}".encode()


class Connection:
    """One DEALER to one worker; all of this process's calls to it share the socket."""

    def __init__(
        self,
        worker: WorkerInfo,
        on_connected: Callable[[Connection], None] | None = None,
        on_lost: Callable[[Connection], None] | None = None,
        on_room: Callable[[Connection], None] | None = None,
        *,
        liveness: float = DEFAULT_LIVENESS,
        on_refused: Callable[[Connection], None] | None = None,
        keys: Keys | None = None,
        quiet: bool = False,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        insecure: bool = False,
    ) -> None:
        if keys is not None and worker.public_key is None:
            raise AuthenticationError(
                f"worker {worker.id!r} at {worker.endpoint!r} publishes no CURVE key to authenticate it with"
            )
        self.worker = worker
        self._on_refused = on_refused
        self._on_connected = on_connected
        self._on_lost = on_lost
        # Requests sent so far: the mesh closes a connection that stayed idle, with this
        # unchanged, for its idle timeout (counting is cheaper than reading a clock per call).
        self.requests = 0
        # Looked up once: on Python 3.11, asyncio.get_running_loop() makes a getpid() system call.
        self._loop = asyncio.get_running_loop()
        window = min(worker.max_calls or WINDOW, WINDOW)
        room = functools.partial(on_room, self) if on_room is not None else None
        self.calls = CallLedger(self._loop, worker.id, window, room)
        self._ids = self.calls.ids
        self._register = self.calls.register
        self._match = self.calls.match
        self.connected: asyncio.Future[None] = self._loop.create_future()
        # Why the connection is over: `WorkerLost`, or `AuthenticationError` for a handshake
        # that failed.
        self.lost: WoolError | None = None
        # A Ctrl-C is stopping this process's pool: a cancel the worker does not confirm is
        # expected (a routine may block its loop), and the pool says so itself.
        self.quiet = False
        # Its endpoint refused a connection: nobody listens there (a stale or wrong entry).
        # ZeroMQ keeps retrying, and a handshake still puts it in rotation.
        self.refused = False
        # The worker said it takes no new calls (it is stopping or recycling): out of
        # rotation, while the calls in flight on it finish.
        self.draining = False
        # Its CURVE handshake failed because the worker refused this process's key.
        self.denied = False
        self._quiet = quiet  # no warning when the endpoint refuses connections
        self.liveness = liveness
        self._warnings = Throttle(log)  # of malformed replies: at most one per interval
        # What this process accepts from the worker, and what the worker accepts from it
        # (its published limit; else ours, which the workers a pool spawns share).
        self.max_message_size = max_message_size
        self.send_limit = worker.max_message_size or max_message_size
        self._tcp_connected_at: float | None = None  # when the handshake began
        # A worker that does not complete its handshake within the liveness period (at most
        # the usual bound) is reported as not answering, as one that stops answering
        # heartbeats is.
        handshake_ms = max(1, min(HANDSHAKE_IVL_MS, int(liveness * 1000)))
        # Without keys (nor the opt-in to endpoints others may hold), an ipc:// peer must be a
        # process of this user's (see `_identity`): checked until its hello is answered.
        hello = Hello(worker) if needs_hello(worker.endpoint, keys is None, insecure) else None
        self._hello = hello
        # Requests made before the hello was answered, sent once it was (None: send at once).
        self._held = hello.held if hello is not None else None
        self.routing_id = _routing_id()
        self._public_key = keys.public if keys is not None else None
        sock: zmq.Socket[Any] | None = None
        try:
            # A process out of descriptors, or past ZeroMQ's sockets per context, fails here.
            sock = new_socket(
                zmq.DEALER,
                (zmq.HANDSHAKE_IVL, handshake_ms),
                *(HELLO_OPTIONS if hello is not None else ()),
                liveness=liveness,
                max_message_size=max_message_size,
            )
            sock.setsockopt(zmq.ROUTING_ID, self.routing_id)
            if keys is not None and worker.public_key is not None:
                _curve.make_client(sock, keys, worker.public_key)
            monitor = sock.get_monitor_socket(_MONITORED)
        except zmq.ZMQError as e:
            if sock is not None:
                sock.close(linger=0)
            raise WorkerLost(f"cannot open a socket to worker {worker.id!r} at {worker.endpoint!r}: {e}") from None
        self._monitor = SocketDriver(monitor, self._on_event)
        self._driver = SocketDriver(sock, self._on_reply)
        if hello is not None:
            self._driver.redirect(self._on_hello, hello.receive)
        failure = self._connect()
        if failure is not None:
            self.close()
            raise failure

    def _connect(self) -> WoolError | None:
        """Connect the DEALER (checking the path first, without keys over ipc://); the error
        that stops it, if any."""
        worker = self.worker
        if self._hello is not None and (problem := self._hello.connect_problem()) is not None:
            return problem
        try:
            self._driver.socket.connect(worker.endpoint)
        except zmq.ZMQError as e:
            return WorkerLost(f"cannot connect to worker {worker.id!r} at {worker.endpoint!r}: {e}")
        return None

    def _reconnect(self) -> None:
        """Try a refused keyless ipc:// endpoint again, checking its path first."""
        if self._hello is not None:
            self._hello.retry = None
        if self.lost is not None or self._driver.closed:
            return
        with contextlib.suppress(zmq.ZMQError):
            self._driver.socket.disconnect(self.worker.endpoint)
        failure = self._connect()
        if failure is not None:
            self._declare_lost(str(failure), type(failure))

    def __repr__(self) -> str:
        state = "lost" if self.lost else "connected" if self.connected.done() else "connecting"
        return f"<Connection {self.worker.id[:8]!r} {self.worker.endpoint!r} {state} pending={len(self.calls)}>"

    @property
    def in_flight(self) -> int:
        """Calls of this process open on the worker."""
        return self.calls.in_flight

    @property
    def has_room(self) -> bool:
        return self.calls.has_room

    @property
    def idle(self) -> bool:
        """Nothing is waiting on the worker: no reply pending, no call or stream open."""
        return self.calls.idle

    def new_call_id(self) -> int:
        return next(self._ids)

    def request(self, msg: p.Request, generator: bool) -> asyncio.Future[p.Reply]:
        """Send `msg` and return the future of its reply. Raises `WorkerLost` if the worker
        is already known to be gone, `AuthenticationError` if its handshake failed,
        `DispatchError` if a part of it is larger than the worker accepts (nothing is
        sent), `ProtocolError` if `msg` cannot be encoded (not registered either way, so it
        takes no slot in the window)."""
        if self.lost is not None:
            raise type(self.lost)(str(self.lost))
        frames = p.encode(msg)
        if size := oversized(frames, self.send_limit):
            # The worker would drop the whole connection, failing every call on it.
            raise DispatchError(self._too_large(msg, size))
        self.requests += 1
        future = self._register(msg.call_id, msg.kind, generator)
        if self._held is None:
            self._driver.send(frames)
        else:
            self._held.append(frames)
        return future

    def _too_large(self, msg: p.Request, size: int) -> str:
        what = f"the call of {msg.name}" if isinstance(msg, p.Call) else f"the {msg.kind.name.lower()} step"
        return (
            f"{what} was not sent: it has a part of {show_size(size)}, more than the {show_size(self.send_limit)} "
            f"worker {self.worker.id!r} accepts (its max message size); raise the limit with "
            "WorkerPool(max_message_size=BYTES), and `python -m wool.worker --max-message-size BYTES` on workers started by hand"
        )

    def reattach(self, call_id: int) -> asyncio.Future[p.Reply]:
        """A fresh future for the reply still pending on `call_id` (after the caller's own
        future was cancelled): how a cancelled caller waits for the worker to finish."""
        return self.calls.reattach(call_id)

    def forget(self, call_id: int) -> None:
        """Stop waiting for `call_id`'s reply; the call no longer counts as open."""
        self.calls.forget(call_id)

    def subscribe(self, call_id: int, sink: Sink) -> None:
        """Hand every later reply of `call_id` to `sink` (a read-ahead stream), and the
        `WorkerLost` if the worker goes away."""
        self.calls.subscribe(call_id, sink)

    def release(self, call_id: int) -> None:
        """`call_id` is no longer open on the worker (it ended, or was abandoned)."""
        self.calls.release(call_id)

    def notify(self, msg: p.Request) -> None:
        """Send a request that has no reply of its own (`Cancel`)."""
        if self.lost is None:
            if self._held is None:
                self._driver.send(p.encode(msg))
            else:
                self._held.append(p.encode(msg))

    def close(self) -> None:
        """Close the sockets. Pending calls are cancelled on the worker (sent with a short
        linger so the cancels leave) and locally."""
        if self._driver.closed:
            return
        if self._hello is not None:
            self._hello.cancel()
        if self.lost is None:
            self.lost = WorkerLost(f"connection to worker {self.worker.id!r} was closed")
        cancelled = self.calls.close(self.lost)
        if self._held is not None:
            cancelled = []  # held back until the hello was answered: none of them was sent
        for call_id in cancelled:
            self._driver.send(p.encode(p.Cancel(call_id)))
        self._driver.socket.disable_monitor()
        self._monitor.close()
        self._driver.close(linger=200 if cancelled else 0)
        if not self.connected.done():
            self.connected.set_exception(WorkerLost(f"connection to worker {self.worker.id!r} closed"))
            self.connected.exception()  # retrieved: nobody may be waiting

    def fail(self, reason: str) -> None:
        """Declare the worker lost for `reason` (the mesh gave up on its handshake): what is
        pending fails with `WorkerLost`, as on a disconnection."""
        self._declare_lost(reason)

    def _on_hello(self, frames: list[Any]) -> None:
        """The first message on a keyless ipc:// connection: the worker's answer to the
        hello, checked (see `_identity`) before the connection is usable."""
        if self.lost is not None or self._hello is None:
            return
        mismatch = self._hello.check(frames)
        if mismatch is not None:
            self._declare_lost(mismatch.reason, AuthenticationError if mismatch.refused else WorkerLost)
            return
        self._driver.redirect(self._on_reply)
        held, self._held, self._hello = self._held or [], None, None
        for frames in held:
            self._driver.send(frames)
        self._usable()

    def _usable(self) -> None:
        if not self.connected.done() and self.lost is None:
            # Synchronously, so that the worker is in rotation before anyone waiting on
            # `connected` runs (they would otherwise find neither a ready nor a connecting
            # worker).
            if self._on_connected is not None:
                self._on_connected(self)
            self.connected.set_result(None)

    def _on_reply(self, frames: list[bytes]) -> None:
        try:
            msg = p.decode(frames)
        except p.ProtocolError as e:
            if e.call_id is not None:
                self.calls.malformed(e.call_id, str(e))
            self._warn_malformed(e)
            return
        if type(msg) is p.Fetch:  # a worker asks for part of a value shared with it (`wool.share`)
            self._driver.send(p.encode(answer_fetch(msg, self.send_limit)))
            return
        if type(msg) is p.Output:  # aside: no reply, whatever state its call is in
            _output.receive(self, msg)
            return
        if type(msg) is p.Reject and msg.call_id == 0:  # no call's: the worker's goodbye
            if msg.reason is p.RejectReason.SHUTTING_DOWN and not self.draining:
                self.draining = True
                log.debug("worker %r takes no new calls: %r", self.worker.id, msg.detail)
                if self._on_refused is not None:
                    self._on_refused(self)  # the mesh looks at it again
            return
        if not self._match(msg):
            log.debug(
                "reply for unknown call %d from worker %r",
                msg.call_id,
                self.worker.id,
                extra=_observe.call_fields(msg.call_id, None, self.worker.id, self.routing_id.decode()),
            )

    def _warn_malformed(self, e: p.ProtocolError) -> None:
        self._warnings.warn("malformed", "malformed reply from worker %r: %s", self.worker.id, e)

    def _on_event(self, frames: list[bytes]) -> None:
        message = parse_monitor_message(frames)
        event = message["event"]
        if event == zmq.EVENT_CONNECTED:
            self._tcp_connected_at = self._loop.time()
        elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            hello = self._hello
            if hello is None:
                self._usable()  # keys proved who it is, or nothing can (insecure)
            elif hello.call_id is None and self.lost is None:
                hello.call_id = self.new_call_id()
                self._driver.send(p.encode(p.Ping(hello.call_id)))
        elif event == zmq.EVENT_CONNECT_RETRIED:
            self._refusing()
        elif event == zmq.EVENT_CLOSED:
            # A connection that makes its own attempts: this one failed (nobody listens).
            hello = self._hello
            if hello is not None and hello.call_id is None and self.lost is None and hello.retry is None:
                self._refusing()
                hello.retry = self._loop.call_later(hello.next_delay(), self._reconnect)
        elif event == zmq.EVENT_DISCONNECTED:
            reason = f"worker {self.worker.id!r} (pid {self.worker.pid}) at {self.worker.endpoint!r} was lost"
            if self.send_limit > self.max_message_size:
                reason += (
                    f" (if it sent a reply part larger than this process's max message size of {show_size(self.max_message_size)}, "
                    "this process dropped the connection: raise it with WorkerPool(max_message_size=BYTES))"
                )
            self._declare_lost(reason)
        elif event & _HANDSHAKE_FAILED:
            self.denied = event == zmq.EVENT_HANDSHAKE_FAILED_AUTH
            started = self._tcp_connected_at
            failure = _handshake.explain(
                event,
                int(message["value"]),
                f"worker {self.worker.id!r} (pid {self.worker.pid}) at {self.worker.endpoint!r}",
                elapsed=None if started is None else self._loop.time() - started,
                interval=int(self._driver.socket.getsockopt(zmq.HANDSHAKE_IVL)) / 1000,
                own_key=self._public_key,
                worker_key=self.worker.public_key,
            )
            log.debug("%s", failure.reason)
            self._declare_lost(failure.reason, AuthenticationError if failure.refused else WorkerLost)

    def _refusing(self) -> None:
        if not self.connected.done() and not self.refused:
            self.refused = True
            (log.debug if self._quiet else log.warning)(
                "worker %r (pid %d) at %r refuses connections; skipping it until it accepts one",
                self.worker.id,
                self.worker.pid,
                self.worker.endpoint,
            )
            if self._on_refused is not None:
                self._on_refused(self)

    def _declare_lost(self, reason: str, error: type[WoolError] = WorkerLost) -> None:
        if self.lost is not None:
            return
        if self.connected.done():
            self._driver.drain()  # replies that arrived before the disconnection still count
        self.lost = error(reason)
        log.info(
            "%s with %d calls in flight",
            reason,
            len(self.calls),
            extra=_observe.call_fields(None, None, self.worker.id, self.routing_id.decode()),
        )
        self.calls.fail_all(self.lost)
        if not self.connected.done():
            self.connected.set_exception(error(reason))
            self.connected.exception()
        if self._on_lost is not None:
            self._on_lost(self)
