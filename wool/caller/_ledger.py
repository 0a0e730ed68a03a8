"""The bookkeeping of the calls on one connection: pure, no sockets.

Theory of operation. A `CallLedger` is what a `Connection` knows about its calls, kept apart
from the sockets so that every rule can be tested on its own. It hands out call ids; keeps,
for every request awaiting its reply, the future of that reply and the request's row of the
lifecycle table (`protocol.REPLIES`: which replies may answer it, and which of those end the
call), taken once as the request is registered so that matching a reply is one lookup; counts
the calls open on the worker against the window (from the `call` until its last reply,
between a generator's steps too); and holds the sinks of read-ahead streams, which take every
reply of their call in order.

`match` files one decoded reply: to its stream's sink, else to the future of the request it
answers (an illegal reply fails that future and ends the call); a final reply frees the
call's slot in the window, and each freed slot calls `on_room` once. A reply for no known call
is dropped (call id 0 is the worker probing whether this process is still there). `fail_all`
(the worker is lost) and `close` fail or cancel everything, and after them a caller that
reattaches to its call learns at once that no reply will come.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

from .. import protocol as p
from .._errors import DispatchError, WoolError, WorkerLost

Sink = Callable[[p.Reply | BaseException], None]
_STREAM = p.REPLIES[True][p.Kind.CREDIT]  # what a read-ahead stream may be sent: yields, then its end
# Module globals: read once per call on the hot path, without the attribute lookups.
_REPLIES, _NO_REPLIES, _CALL = p.REPLIES, p.NO_REPLIES, p.Kind.CALL


class CallLedger:
    """The calls of one connection to one worker (`worker_id` names it in errors)."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, worker_id: str, window: int, on_room: Callable[[], None] | None = None
    ) -> None:
        self._loop = loop
        self._worker = worker_id
        self.window = window
        self._on_room = on_room
        self.ids = itertools.count(1)  # call ids (0 is the worker's probe)
        # By call id: the reply's future, what may answer the request (reply -> final), and
        # the request's kind (for the error naming an illegal reply).
        self._pending: dict[int, tuple[asyncio.Future[p.Reply], dict[p.Kind, bool], p.Kind]] = {}
        self._open: set[int] = set()  # calls open on the worker
        self._sinks: dict[int, Sink] = {}  # read-ahead streams
        self.lost: WoolError | None = None  # set by `fail_all` or `close`: nothing more comes

    def __len__(self) -> int:
        """Requests waiting for their reply."""
        return len(self._pending)

    @property
    def in_flight(self) -> int:
        """Calls open on the worker."""
        return len(self._open)

    @property
    def has_room(self) -> bool:
        return len(self._open) < self.window

    @property
    def idle(self) -> bool:
        """Nothing is waiting on the worker: no reply pending, no call or stream open."""
        return not self._pending and not self._open and not self._sinks

    def register(self, call_id: int, request: p.Kind, generator: bool) -> asyncio.Future[p.Reply]:
        """The future of the reply to a request just sent; a `call` opens its call."""
        future: asyncio.Future[p.Reply] = self._loop.create_future()
        self._pending[call_id] = (future, _REPLIES[generator].get(request, _NO_REPLIES), request)
        if request is _CALL:
            self._open.add(call_id)
        return future

    def reattach(self, call_id: int) -> asyncio.Future[p.Reply]:
        """A fresh future for the reply still pending on `call_id` (after the caller's own
        future was cancelled); failed at once if none is pending or the ledger is over."""
        future: asyncio.Future[p.Reply] = self._loop.create_future()
        entry = self._pending.get(call_id)
        if entry is None or self.lost is not None:
            future.set_exception(self.lost or WorkerLost("no reply pending"))
        else:
            self._pending[call_id] = (future, entry[1], entry[2])
        return future

    def forget(self, call_id: int) -> None:
        """Stop waiting for `call_id`'s reply; the call no longer counts as open."""
        self._pending.pop(call_id, None)
        self.release(call_id)

    def subscribe(self, call_id: int, sink: Sink) -> None:
        """Hand every later reply of `call_id` to `sink` (a read-ahead stream)."""
        self._sinks[call_id] = sink

    def release(self, call_id: int) -> None:
        """`call_id` is no longer open on the worker (it ended, or was abandoned)."""
        self._sinks.pop(call_id, None)
        if call_id in self._open:
            self._open.discard(call_id)
            if self._on_room is not None:  # one slot: one waiting call may go
                self._on_room()

    def match(self, msg: p.Message) -> bool:
        """File one decoded message from the worker (a request kind is never legal). False
        if it belongs to no call this ledger knows (call id 0, the worker's probe, is known:
        it is dropped)."""
        call_id = msg.call_id
        sink = self._sinks.get(call_id)
        if sink is not None:
            final = _STREAM.get(msg.kind)
            if final is None:
                self.release(call_id)
                sink(DispatchError(f"worker {self._worker!r} sent {msg.kind.name.lower()} into a stream"))
            else:
                if final:
                    self.release(call_id)
                sink(msg)  # type: ignore[arg-type]
            return True
        entry = self._pending.pop(call_id, None)
        if entry is None:
            return call_id == 0
        future, answers, request = entry
        final = answers.get(msg.kind)
        if final is not False:  # it ends the call, or is illegal (which ends it too)
            self.release(call_id)
        if future.done():
            return True
        if final is None:
            future.set_exception(
                DispatchError(f"worker {self._worker!r} answered {request.name.lower()} with {msg.kind.name.lower()}")
            )
        else:
            future.set_result(msg)  # type: ignore[arg-type]
        return True

    def malformed(self, call_id: int, problem: str) -> None:
        """A reply for `call_id` could not be decoded (`problem`): its call fails."""
        sink = self._sinks.get(call_id)
        if sink is not None:
            self.release(call_id)
            sink(DispatchError(f"worker {self._worker!r} sent a malformed reply: {problem}"))
        entry = self._pending.pop(call_id, None)
        if entry is not None:
            self.release(call_id)
            if not entry[0].done():
                entry[0].set_exception(DispatchError(f"worker {self._worker!r} sent a malformed reply: {problem}"))

    def fail_all(self, error: WoolError) -> None:
        """The worker is lost: every pending reply and stream fails with `error` (each with
        its own copy), and so does any later `reattach`."""
        self.lost = error
        pending, self._pending = self._pending, {}
        self._open.clear()
        self._fail_sinks(error)
        for future, _, _ in pending.values():
            if not future.done():
                future.set_exception(type(error)(str(error)))

    def cancel_all(self, error: WoolError) -> list[int]:
        """Cancel every pending reply locally and fail every stream with `error`; returns the
        calls to cancel on the worker (those pending or open)."""
        ids = [*self._pending, *(i for i in self._open if i not in self._pending)]
        for future, _, _ in self._pending.values():
            future.cancel()
        self._pending.clear()
        self._open.clear()
        self._fail_sinks(error)
        return ids

    def close(self, error: WoolError) -> list[int]:
        """`cancel_all`, and the ledger is over: a later `reattach` fails with `error`."""
        if self.lost is None:
            self.lost = error
        return self.cancel_all(error)

    def _fail_sinks(self, error: WoolError) -> None:
        sinks, self._sinks = self._sinks, {}
        for sink in sinks.values():
            sink(type(error)(str(error)))
