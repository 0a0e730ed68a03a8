"""Running one async generator call on a worker, step by step.

Theory of operation. A generator call holds one `protocol.CallState`, which its transitions
set, and accepts a request only if the lifecycle table (`protocol.ACCEPTS`) lists it for that
state; anything else is rejected (BAD_STATE), and a cancel is accepted in every state.

- WAITING: built, waiting for a slot. `start` runs the first step (RUNNING); a cancel
  answers the call at once, since it never ran.
- RUNNING / SUSPENDED: pull-based, a step (next, send, throw, close) runs only when the
  caller asks for it, each in its own task whose done-callback sends its one reply; the
  generator is SUSPENDED at its `yield` in between.
- READ_AHEAD: a `credit` (see `wool.readahead`) lets the generator run ahead, sending each
  item unasked while credit lasts, then wait for more; it only iterates, and a `close` makes
  it CLOSING: the item in progress is stopped (its consumer is gone), then the generator is
  closed at its `yield`, and the reply (`stop`, or the `raise` of its `finally`) comes once
  its `finally` ran.
- DONE: a final reply was sent, or the call was abandoned (cancel): a step still running is
  stopped and answers the cancel, and the generator is closed in the background.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine
from typing import Any

from .. import protocol as p
from .._errors import SerializationError
from .._transport import oversized
from ..sharing import fetch_route_var, shared_in, substitute
from . import _unpickling as unpickling
from ._admission import CallSlot
from ._calls import Host, _Carried, _context, _guarded, _PassedOn, _path_to, _raise_reply, _too_large, _unpack, _value_reply

_S = p.CallState


class _Exhausted(Exception):
    pass


_PAUSED = object()  # a read-ahead run that used up its credit: no reply, the call waits for more
_AHEAD_YIELD_EVERY = 64  # items a read-ahead run produces before letting other work run


class GeneratorCall:
    """An async generator routine, advanced one step per request."""

    def __init__(self, host: Host, identity: bytes, msg: p.Call, slot: CallSlot) -> None:
        self._host = host
        self._identity = self.identity = identity
        self._request: p.Call | None = msg  # until its first step unpacks it (`_unpack`)
        self.call_id, self._name = msg.call_id, msg.name
        self.slot = slot
        self.state = _S.WAITING
        self._agen: AsyncGenerator[Any, Any] | None = None
        self._credit = 0  # items it may still send unasked (read-ahead)
        self._closing: p.Close | None = None  # a read-ahead stream's close, until it starts
        self._reason: BaseException | None = None
        self._step_task: asyncio.Task[Any] | None = None
        self._thrown: BaseException | None = None  # thrown in by the running step (`throw`)
        # One context for all steps, as for a generator iterated by one local task; each
        # step first takes the caller's variables as they are at that step.
        self._context = _context(slot, msg)
        self._carried = _Carried(msg.name, self._context)

    def start(self) -> None:
        self.state = _S.RUNNING
        self._step(self._start())

    async def _start(self) -> Any:
        request, self._request = self._request, None
        assert request is not None
        fn, args, kwargs = _unpack(self._host, self._carried, request)
        del request
        fetch_route_var.set((self._host, self._identity, self.call_id))  # how to fetch `wool.Shared` values
        if shared_in(args, kwargs):  # top-level `wool.Shared` arguments arrive as their values
            args, kwargs = await substitute(args, kwargs)
        agen = fn(*args, **kwargs)
        if not isinstance(agen, AsyncGenerator):
            raise TypeError(f"{self._name} did not return an async generator")
        self._agen = agen
        return await self._advance(agen.asend(None))

    @staticmethod
    async def _advance(aw: Awaitable[Any], thrown: BaseException | None = None) -> Any:
        try:
            return await _guarded(aw, thrown)
        except StopAsyncIteration:
            raise _Exhausted from None

    def _step(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro, context=self._context)
        task.add_done_callback(self._step_done)
        self._step_task = task

    def handle(self, msg: p.Request) -> None:
        state, kind = self.state, msg.kind
        if kind not in p.ACCEPTS[state]:
            if (state is _S.READ_AHEAD or state is _S.CLOSING) and kind in p.STEPS:
                detail = f"{kind.name.lower()} on a read-ahead stream, which only iterates"
            else:
                detail = f"{kind.name.lower()} while the generator is {state.value}"
            self._host.reply(self._identity, p.Reject(msg.call_id, p.RejectReason.BAD_STATE, detail))
            return
        if isinstance(msg, p.Cancel):
            self.cancel()
        elif isinstance(msg, p.Credit):
            self._grant(msg.count)
        elif state is _S.READ_AHEAD:
            assert isinstance(msg, p.Close)
            self._close_ahead(msg)
        else:
            self._pull(msg)

    def _pull(self, msg: p.Request) -> None:
        """Run the step `msg` asks for (the call is suspended: `ACCEPTS` said so)."""
        agen = self._agen
        assert agen is not None and self.state is _S.SUSPENDED
        self.state = _S.RUNNING
        if self._carried.watch is not None:
            self._carried.watch.step(msg.kind.name.lower())
        if isinstance(msg, p.Next):
            self._step(self._advance_with(msg.context, lambda: agen.asend(None)))
        elif isinstance(msg, p.Send):
            what = f"the value sent to {self._name}"
            self._step(self._advance_with(msg.context, lambda: agen.asend(unpickling.loads(what, msg.payload))))
        elif isinstance(msg, p.Throw):
            self._step(self._throw(msg, agen))
        elif isinstance(msg, p.Close):
            self._step(self._close(msg.context, agen))

    def _grant(self, count: int) -> None:
        """Credit: run ahead of the caller by up to `count` more items. Once the stream is
        closing or done, credit still on its way is ignored."""
        state = self.state
        if state is _S.CLOSING or state is _S.DONE:
            return
        self._credit += count
        self.state = _S.READ_AHEAD
        if self._step_task is None:  # suspended, or waiting for credit: run now
            self._pump()
        # else: a step runs; when it yields, `_step_done` runs ahead from there

    def _close_ahead(self, msg: p.Close) -> None:
        """Close a read-ahead stream: stop the item in progress, if any (its consumer is gone),
        then close the generator at its `yield`. The reply (`stop`, or the `raise` of its
        `finally`) comes once the `finally` ran: the caller's `aclose` waits for it."""
        self.state = _S.CLOSING
        self._credit = 0
        self._closing = msg
        if self._step_task is not None:
            self._step_task.cancel()  # `_step_done` starts the close
        else:
            self._start_close()

    def _start_close(self) -> None:
        msg, self._closing = self._closing, None
        assert msg is not None and self._agen is not None
        self._step(self._close(msg.context, self._agen))

    def _pump(self) -> None:
        if self._credit > 0 and self._agen is not None and self.state is _S.READ_AHEAD:
            self._step(self._run_ahead(self._agen))

    async def _run_ahead(self, agen: AsyncGenerator[Any, Any]) -> Any:
        """Produce items while credit lasts, each sent as a `yield` unasked, in one task."""
        call_id, produced = self.call_id, 0
        while self._credit > 0:
            self._credit -= 1
            value = await self._advance(agen.asend(None))
            try:
                payload = p.dumps(value)
            except Exception as e:
                raise SerializationError(
                    f"the yielded value of {self._name} could not be pickled: {type(e).__name__}: {e}"
                ) from None
            if size := oversized(payload, self._host.max_message_size):
                raise _too_large("yielded value", self._name, size, self._host.max_message_size)
            self._host.reply(self._identity, p.Yield(call_id, payload, self._carried.back()))
            produced += 1
            if produced % _AHEAD_YIELD_EVERY == 0:
                await asyncio.sleep(0)
        return _PAUSED

    async def _advance_with(self, context: p.Frame, make: Callable[[], Awaitable[Any]]) -> Any:
        # Unpickling inside the step makes a bad payload fail this step only.
        self._carried.enter(context)
        return await self._advance(make())

    async def _throw(self, msg: p.Throw, agen: AsyncGenerator[Any, Any]) -> Any:
        self._carried.enter(msg.context)
        exc = unpickling.loads(f"the exception thrown into {self._name}", msg.payload)
        if not isinstance(exc, BaseException):
            raise TypeError(f"athrow() needs an exception, got {type(exc).__name__}")
        self._thrown = exc  # the reply says whether what the step raises is, or holds, it
        return await self._advance(agen.athrow(exc), exc)

    async def _close(self, context: p.Frame, agen: AsyncGenerator[Any, Any]) -> Any:
        self._carried.enter(context)
        await _guarded(agen.aclose())
        raise _Exhausted

    def cancel(self, reason: BaseException | None = None) -> None:
        """Abandon the call: stop the running step (reporting `reason`, by default
        `CancelledError`, if it ends cancelled) and close the generator."""
        was, self.state = self.state, _S.DONE
        self._reason = reason
        if self._step_task is not None:
            self._step_task.cancel()  # `_step_done` answers and finishes
        elif was is _S.WAITING:  # still waiting for a slot: it never ran
            self._finish()
            self._host.reply(self._identity, _raise_reply(self.call_id, reason or asyncio.CancelledError()))
        elif was is not _S.DONE:
            self._finish()

    def _finish(self, reply: p.Reply | None = None) -> None:
        self.state = _S.DONE
        if self._carried.watch is not None:
            self._carried.finish(reply)
        self._host.finished((self._identity, self.call_id))
        agen, self._agen = self._agen, None
        if agen is not None:
            self._host.background(agen.aclose())  # runs its finally; a no-op once exhausted

    def _step_done(self, task: asyncio.Task[Any]) -> None:
        self._step_task = None
        call_id, thrown, self._thrown = self.call_id, self._thrown, None
        state = self.state
        if task.cancelled():
            if state is _S.CLOSING:
                self._start_close()  # the item in progress was stopped to close the stream
                return
            reply: p.Reply = _raise_reply(call_id, self._reason or asyncio.CancelledError())
        elif isinstance(exc := task.exception(), _Exhausted):
            reply = p.Stop(call_id)
        elif isinstance(exc, _PassedOn):
            reply = _raise_reply(call_id, exc.thrown, thrown="")
        elif exc is not None:
            reply = _raise_reply(call_id, exc, thrown=_path_to(exc, thrown))
        elif state is _S.CLOSING:
            self._start_close()  # the item in progress ended before it could be stopped: dropped
            return
        elif task.result() is _PAUSED:
            if state is _S.DONE:
                self._finish()
            else:
                self._pump()  # credit that arrived as the run ended
            return
        else:
            reply = _value_reply(call_id, p.Yield, self._name, task.result(), self._host.max_message_size)
        reply = self._carried.reply(reply)
        if state is _S.DONE or p.is_final(True, reply.kind):
            self._finish(reply)
        elif state is _S.RUNNING:
            self.state = _S.SUSPENDED
        self._host.reply(self._identity, reply)
        if self.state is _S.READ_AHEAD and reply.kind is p.Kind.YIELD:
            self._pump()
