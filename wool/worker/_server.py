"""The worker's ROUTER: decode requests, start and steer calls, send replies.

Theory of operation. One ROUTER socket serves every caller; ZeroMQ prefixes each request
with the caller's routing identity, and a call is keyed by (identity, call id). Requests are
handled synchronously in the socket driver's callback: decoding, validation and bookkeeping
never await, and a call's work runs in its own task (see `_calls` and `_generator_call`). Nothing a peer sends can
stop the loop: a malformed message is logged (rate-limited) and, when its call id is
readable, answered with `Reject`. `ROUTER_MANDATORY` turns a reply to a vanished caller into
an error we see, and that caller's calls are cancelled. A caller that vanishes while its
calls run silently (nothing to reply yet) is found by probing: every quarter of the liveness
bound the server sends each caller with calls in flight a `Pong` for call id 0, which callers
ignore; once ZeroMQ has dropped the connection (at once for a dead process, after the
heartbeat timeout for a frozen one or a vanished host) the probe fails and the calls are
cancelled: all within the liveness bound.

Calls past the worker's `max_calls` wait for a slot (`_admission`); a `ping` is answered
with how many calls are open and how many wait, which `python -m wool.workers` shows.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import zmq

from .. import _curve, _metrics, _observe
from .. import protocol as p
from .._errors import DispatchError, WorkerLost
from .._keys import Keys
from .._throttle import Throttle
from .._transport import DEFAULT_LIVENESS, DEFAULT_MAX_MESSAGE_SIZE, SocketDriver, new_socket, oversized, show_size
from . import _unpickling as unpickling
from ._admission import Admission, CallSlot
from ._calls import CoroutineCall
from ._generator_call import GeneratorCall
from ._output import OutputForwarder
from ._preauth import PreauthGuard
from ._preauth import supported as preauth_supported
from ._threads import DEFAULT_THREADS, ThreadRunner

log = logging.getLogger("wool.worker")

SETTLE_QUIET = 0.25  # after a drain: how long no call may arrive before the socket closes
ROUTINE_CACHE_SIZE = 1024
MAX_CALLERS_REMEMBERED = 4096  # callers told of a stop (those heard from last)


def caller_name(identity: bytes) -> str:
    """A caller's routing id as logged: wool callers name theirs `pid-random`."""
    text = identity.decode("latin-1")
    return text if text.isascii() and text.isprintable() else identity.hex()


class Server:
    """Serves calls for worker incarnation `worker_id` on a bound ROUTER socket."""

    def __init__(
        self,
        worker_id: str,
        bind: str,
        *,
        liveness: float = DEFAULT_LIVENESS,
        max_calls: int | None = None,
        keys: Keys | None = None,
        tags: frozenset[str] = frozenset(),
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        threads: int = DEFAULT_THREADS,
    ) -> None:
        self.worker_id = worker_id
        self.max_message_size = max_message_size
        self.loop = asyncio.get_running_loop()  # where a call's thread asks its caller for shared values
        self._about = (tuple(sorted(tags)), max_calls or 0)  # told in every pong
        self.accepting = True
        self._probe_interval = liveness / 4
        self._admission = Admission(max_calls)
        self._calls: dict[tuple[bytes, int], CoroutineCall | GeneratorCall] = {}
        self._routines: dict[bytes, Callable[..., Any]] = {}
        # Fetches of parts of shared values sent to callers, by (caller, call id, key, offset).
        self._parts: dict[tuple[bytes, int, str, int], asyncio.Future[p.Part]] = {}
        self._threads = ThreadRunner(threads)  # where plain `def` routines run
        self._background: set[asyncio.Task[Any]] = set()
        self._warnings = Throttle(log)  # one warning per kind of bad message per interval
        self._idle = asyncio.Event()
        self._idle.set()
        self._last_refused = 0.0  # loop time the worker stopped accepting, or last refused a call
        self.served = 0  # calls ended since start, told in every pong
        # Callers heard from (most recent last, bounded), told when this worker stops taking calls.
        self._callers: dict[bytes, None] = {}
        self.stopping = "shutting down"  # why it refuses calls once it stops accepting them
        # Told of each call admitted and each call ended (see `_recycle`).
        self.on_call_started: Callable[[], None] | None = None
        self.on_call_ended: Callable[[], None] | None = None
        self.output: OutputForwarder | None = None  # forwards calls' output (see `_output`)
        sock = new_socket(zmq.ROUTER, (zmq.ROUTER_MANDATORY, 1), liveness=liveness, max_message_size=max_message_size)
        # With keys, only callers whose public key `keys` trusts complete the handshake, and
        # ZeroMQ delivers nothing from the others (see `_curve`).
        self._zap_domain = _curve.register(keys.allowed) if keys is not None else None
        # Strangers on TCP get a budget until they authenticate (see `_preauth`).
        self._guard: PreauthGuard | None = None
        if keys is not None and bind.startswith("tcp://"):
            if preauth_supported():
                self._guard = PreauthGuard(sock)
            else:
                log.warning(
                    "this kernel does not report TCP byte counts: unauthenticated peers are limited only by the max message size"
                )
        try:
            if keys is not None and self._zap_domain is not None:
                _curve.make_server(sock, keys, self._zap_domain)
            sock.bind(bind)
        except zmq.ZMQError as e:
            if self._guard is not None:
                self._guard.close()
            sock.close(linger=0)
            if self._zap_domain is not None:
                _curve.unregister(self._zap_domain)
            raise OSError(f"cannot bind a worker to {bind}: {e}") from None
        self.endpoint: str = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._driver = SocketDriver(sock, self._on_request, routed=True, on_unreachable=self._on_unreachable)
        self._prober = asyncio.get_running_loop().call_later(self._probe_interval, self._probe)

    @property
    def in_flight(self) -> int:
        """Calls open: running, suspended between generator steps, or waiting for a slot."""
        return len(self._calls)

    @property
    def queued(self) -> int:
        """Calls waiting for a slot."""
        return self._admission.queued

    @property
    def socket(self) -> zmq.Socket[Any]:
        return self._driver.socket

    # -- Host interface, used by the calls -------------------------------------------------

    def check_routine(self, msg: p.Call) -> None:
        """Raise `DispatchError` unless `msg`'s routine is one already loaded or matches its
        digest: checked before anything else of the call is unpickled."""
        if msg.digest not in self._routines and hashlib.blake2b(msg.routine, digest_size=16).digest() != msg.digest:
            raise DispatchError(f"the pickled routine {msg.name} does not match its digest")

    def load_routine(self, msg: p.Call) -> Callable[..., Any]:
        """The function behind `msg`'s routine, unpickled once per digest."""
        fn = self._routines.get(msg.digest)
        if fn is None:
            self.check_routine(msg)
            routine = unpickling.loads(f"the routine {msg.name}", (msg.routine,))
            target = getattr(routine, "__wrapped__", None) or routine
            if not callable(target):
                raise DispatchError(f"{msg.name} is not callable")
            spec = getattr(routine, "__wool_routine__", None)
            fn = self._threads.wrap(target) if getattr(spec, "threaded", False) else target
            if len(self._routines) >= ROUTINE_CACHE_SIZE:
                del self._routines[next(iter(self._routines))]
            self._routines[msg.digest] = fn
        return fn

    def reply(self, identity: bytes, msg: p.Reply) -> None:
        if self.output is not None:
            self.output.before_reply(identity, msg)
        frames = p.encode(msg)
        if size := oversized(frames, self.max_message_size):
            # Values are checked where they are pickled (`_calls`); this catches the rest (a
            # huge exception or context), which the caller would drop the connection for.
            log.warning(
                "replacing a %s reply with a part of %s: over the max message size",
                msg.kind.name.lower(),
                show_size(size),
                extra=_observe.call_fields(msg.call_id, None, self.worker_id, caller_name(identity)),
            )
            error = DispatchError(
                f"the worker's {msg.kind.name.lower()} reply was not sent: it has a part of {show_size(size)}, "
                f"more than the max message size of {show_size(self.max_message_size)}"
            )
            frames = p.encode(p.Raise(msg.call_id, *p.describe(error), p.dumps_exception(error)))
        self._driver.send([identity, *frames])

    def finished(self, key: tuple[bytes, int]) -> None:
        call = self._calls.pop(key, None)
        if self.output is not None:
            self.output.close(key)
        if call is not None:
            self.served += 1
            self._admission.ended(call, call.slot)
        if not self._calls:
            self._idle.set()
        if call is not None and self.on_call_ended is not None:
            self.on_call_ended()

    def fetch_part(self, identity: bytes, call_id: int, key: str, offset: int, length: int) -> asyncio.Future[p.Part]:
        """Ask the caller `identity` for part of a shared value (see `wool.sharing._fetch`);
        the future is cancelled with the call if the caller goes away."""
        where = (identity, call_id, key, offset)
        future: asyncio.Future[p.Part] = asyncio.get_running_loop().create_future()
        self._parts[where] = future
        future.add_done_callback(lambda _: self._parts.pop(where, None) if self._parts.get(where) is future else None)
        self.reply(identity, p.Fetch(call_id, key, offset, length))
        return future

    def background(self, aw: Awaitable[Any]) -> None:
        async def run() -> None:
            try:
                await aw
            except BaseException as e:  # a generator's finally failing while abandoned
                log.debug("background cleanup raised %r", e)

        task = asyncio.get_running_loop().create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- requests ----------------------------------------------------------------------------

    def _on_request(self, frames: list[bytes]) -> None:
        if len(frames) < 2:
            self._warn("short", "dropped a message with no envelope")
            if _metrics.WORKER is not None:
                _metrics.WORKER.malformed.inc()
            return
        identity = frames[0]
        callers = self._callers
        if identity not in callers:
            if len(callers) >= MAX_CALLERS_REMEMBERED:
                del callers[next(iter(callers))]
            callers[identity] = None
        try:
            msg = p.decode(frames[1:])
        except p.ProtocolError as e:
            self._warn("malformed", f"dropped a malformed request: {e}")
            if _metrics.WORKER is not None:
                _metrics.WORKER.malformed.inc()
            if e.call_id is not None:
                self.reply(identity, p.Reject(e.call_id, p.RejectReason.MALFORMED, str(e)))
            return
        if isinstance(msg, p.Call):
            self._start(identity, msg)
        elif isinstance(msg, p.Ping):
            queued = self._admission.queued
            calls = len(self._calls) - queued
            pong = p.Pong(msg.call_id, self.worker_id, calls, queued, *self._about, self.served, self.max_message_size)
            try:
                self.reply(identity, pong)
            except p.ProtocolError:
                # Tags too many or too long for one envelope: the pong goes without them, since
                # a keyless caller's connection is usable only once its ping is answered.
                self.reply(identity, dataclasses.replace(pong, tags=()))
        elif isinstance(msg, p.Part):
            waiting = self._parts.pop((identity, msg.call_id, msg.key, msg.offset), None)
            if waiting is None or waiting.done():
                self._warn("part", f"dropped a part of a shared value nobody waits for (call {msg.call_id})")
            else:
                waiting.set_result(msg)
        elif isinstance(msg, (p.Return, p.Yield, p.Raise, p.Stop, p.Pong, p.Reject, p.Fetch, p.Output)):
            self.reply(
                identity, p.Reject(msg.call_id, p.RejectReason.MALFORMED, f"a worker does not take {msg.kind.name.lower()}")
            )
        else:
            call = self._calls.get((identity, msg.call_id))
            if call is not None:
                call.handle(msg)
            else:
                # Also for a cancel: it may have crossed the call's last reply (which the caller
                # then already has), or that reply was lost, and the caller must not wait on.
                self.reply(identity, p.Reject(msg.call_id, p.RejectReason.UNKNOWN_CALL, f"no call {msg.call_id} is open"))

    def _start(self, identity: bytes, msg: p.Call) -> None:
        key = (identity, msg.call_id)
        if msg.worker_id != self.worker_id:
            reason, detail = p.RejectReason.WRONG_WORKER, f"this is worker {self.worker_id}, not {msg.worker_id!r}"
        elif not self.accepting:
            self._last_refused = asyncio.get_running_loop().time()
            reason, detail = p.RejectReason.SHUTTING_DOWN, f"worker {self.worker_id} is {self.stopping}"
        elif key in self._calls:
            reason, detail = p.RejectReason.BAD_STATE, f"call id {msg.call_id} is already open"
        else:
            if log.isEnabledFor(logging.DEBUG):  # on every call: skip the formatting work
                caller = caller_name(identity)
                log.debug(
                    "call %d %r from %s",
                    msg.call_id,
                    msg.name,
                    caller,
                    extra=_observe.call_fields(msg.call_id, msg.name, self.worker_id, caller),
                )
            self._idle.clear()
            slot = CallSlot(self._admission, msg.priority)
            if self.output is not None:
                self.output.open(slot, identity, msg.call_id)
            call = (GeneratorCall if msg.generator else CoroutineCall)(self, identity, msg, slot)
            self._calls[key] = call
            self._admission.admit(call, slot)
            if self.on_call_started is not None:
                self.on_call_started()
            return
        self.reply(identity, p.Reject(msg.call_id, reason, detail))

    def _on_unreachable(self, identity: bytes) -> None:
        self._callers.pop(identity, None)
        if not any(key[0] == identity for key in self._calls):
            return  # a goodbye to a caller that left: nothing to cancel
        caller = caller_name(identity)
        log.info(
            "caller %s is gone; cancelling its calls", caller, extra=_observe.call_fields(None, None, self.worker_id, caller)
        )
        for key, call in list(self._calls.items()):
            if key[0] == identity:
                call.cancel()

    def _probe(self) -> None:
        for identity in {identity for identity, _ in self._calls}:
            self.reply(identity, p.Pong(0, self.worker_id))
        self._prober = asyncio.get_running_loop().call_later(self._probe_interval, self._probe)

    def _warn(self, key: str, message: str) -> None:
        self._warnings.warn(key, "%s", message)

    # -- shutdown ----------------------------------------------------------------------------

    def fail_calls(self, why: str) -> None:
        """Cancel every open call; their callers get `WorkerLost(why)`."""
        for call in list(self._calls.values()):
            call.cancel(WorkerLost(why))

    def say_goodbye(self) -> None:
        """Tell every caller heard from that this worker takes no new calls (a `reject` of
        call id 0): each takes it out of rotation at once, rather than learn it from a call
        that reaches the socket after it closed and is lost."""
        goodbye = p.Reject(0, p.RejectReason.SHUTTING_DOWN, f"worker {self.worker_id} is {self.stopping}")
        for identity in list(self._callers):
            self.reply(identity, goodbye)

    async def drain(self, grace: float) -> None:
        """Stop accepting calls; give those in flight `grace` seconds, then cancel them and
        wait for their cancellation replies to be sent."""
        self.accepting = False
        self.say_goodbye()
        self._last_refused = asyncio.get_running_loop().time()
        for call in self._admission.take_waiting():  # they never ran: callers go elsewhere
            assert isinstance(call, (CoroutineCall, GeneratorCall))
            key = (call.identity, call.call_id)
            self.finished(key)
            self.reply(key[0], p.Reject(key[1], p.RejectReason.SHUTTING_DOWN, f"worker {self.worker_id} is {self.stopping}"))
        if self._calls:
            try:
                await asyncio.wait_for(self._idle.wait(), grace)
            except TimeoutError:
                lost = f"worker {self.worker_id} stopped while running the call (grace period of {grace:g} s over)"
                for call in list(self._calls.values()):
                    call.cancel(WorkerLost(lost))
                try:
                    await asyncio.wait_for(self._idle.wait(), grace)
                except TimeoutError:
                    log.warning("%d calls ignored cancellation", len(self._calls))
        if self._background:
            await asyncio.wait(self._background, timeout=grace)

    async def settle(self, limit: float, quiet: float = SETTLE_QUIET) -> None:
        """After `drain`: keep refusing calls (SHUTTING_DOWN, so callers send them elsewhere)
        until none has arrived for `quiet` seconds, at most `limit` seconds. A call reaching
        the socket after it closed would fail with `WorkerLost` without having run; callers
        stop choosing this worker once it refused them, or once they see it withdrawn."""
        loop = asyncio.get_running_loop()
        end = loop.time() + limit
        while (now := loop.time()) < end and (wait := self._last_refused + quiet - now) > 0:
            await asyncio.sleep(min(wait, end - now))

    def close(self) -> None:
        self._prober.cancel()
        for task in self._background:
            task.cancel()
        if self._guard is not None:
            self._guard.close()
            self._guard = None
        self._driver.close(linger=200)
        if self._zap_domain is not None:  # after the socket: never a server without its handler
            _curve.unregister(self._zap_domain)
            self._zap_domain = None
