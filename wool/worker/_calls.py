"""Running one call on a worker: a coroutine here, a generator in `_generator_call`.

A call is built when it arrives and started when the worker admits it (see `_admission`); a
call cancelled while it waits is answered at once. Each step runs as its own asyncio task;
its outcome, whatever it is, becomes exactly one reply: a coroutine call's task sends it
itself as the routine returns (a call cancelled before its task's first step is answered by
`cancel`), a generator step's in the task's done-callback. Every task of a call sees the call's slot as
`current_slot_var`, so nested routine calls can lend it while they wait, and the caller's
options, deadline and `wool.ContextVar`s; each outcome carries back the variables the routine
changed (see `wool.caller._contextvars`). A `BaseException` that is not an `Exception` (such
as `KeyboardInterrupt` or `SystemExit`) is caught inside the task, where asyncio would otherwise
re-raise it out of the event loop and kill the worker, and reported as `RemoteBaseException`.

This module holds the coroutine call and what both kinds share: how an outcome becomes a reply
(`_raise_reply`, `_value_reply`), the call's context (`_context`, `_Carried`) and unpacking
(`_unpack`); the generator call's states are in `_generator_call`.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from .. import _observe, _tracing
from .. import protocol as p
from .._errors import DispatchError, RemoteBaseException, SerializationError
from .._transport import oversized, show_size
from ..caller import Options, Snapshot, apply_snapshot, current_slot_var, deadline_var, options_var, send_back, unpickle_snapshot
from ..sharing import fetch_route_var, shared_in, substitute
from . import _unpickling as unpickling
from ._admission import CallSlot

log = logging.getLogger("wool.worker")

# Python 3.12+: a call's task takes its first step at once, inside `start`, so that a routine
# that returns without suspending is answered in the same callback that received it, with no
# task scheduled for a later loop iteration (`asyncio.Task(eager_start=True)`). Never inside
# another eager step: calls that waited for a slot start when one ends, and a chain of eager
# starts would recurse once per waiting call. The task, `asyncio.current_task()`, the call's
# context and cancellation are the same either way.
EAGER = sys.version_info >= (3, 12)
_eager_step = False  # an eager first step is running


class Host(Protocol):
    """What a call needs from the server that runs it."""

    endpoint: str
    max_message_size: int  # the largest reply part callers accept (they share the worker's)
    loop: asyncio.AbstractEventLoop

    def check_routine(self, msg: p.Call) -> None: ...
    def load_routine(self, msg: p.Call) -> Callable[..., Any]: ...
    def fetch_part(self, identity: bytes, call_id: int, key: str, offset: int, length: int) -> Awaitable[p.Part]: ...
    def reply(self, identity: bytes, msg: p.Reply) -> None: ...
    def finished(self, key: tuple[bytes, int]) -> None: ...
    def background(self, aw: Awaitable[Any]) -> None: ...


class _PassedOn(Exception):
    """Carries the exception a generator was thrown, which it let through, out of its step's
    task (for a `BaseException` such as `CancelledError`, the task could not end with it)."""

    def __init__(self, thrown: BaseException) -> None:
        super().__init__()
        self.thrown = thrown


async def _guarded(aw: Awaitable[Any], thrown: BaseException | None = None) -> Any:
    try:
        return await aw
    except BaseException as e:
        if e is thrown and not isinstance(e, Exception):
            raise _PassedOn(e) from None
        if isinstance(e, (Exception, asyncio.CancelledError)):
            raise
        raise RemoteBaseException(*p.describe(e)) from None


def _path_to(exc: BaseException, thrown: BaseException | None) -> str | None:
    """Where `thrown` is in `exc`'s chain (see `protocol.Raise.thrown`): "" for `exc`
    itself, "c" for its `__cause__`, "x" for its `__context__`, and so on; None if absent."""
    if thrown is None:
        return None
    paths: list[tuple[BaseException, str]] = [(exc, "")]
    seen = {id(exc)}
    for node, path in paths:  # breadth first: the shortest path
        if node is thrown:
            return path
        if len(path) < p.MAX_LINKS:
            for link, nxt in (("c", node.__cause__), ("x", node.__context__)):
                if nxt is not None and id(nxt) not in seen:
                    seen.add(id(nxt))
                    paths.append((nxt, path + link))
    return None


def _arguments(msg: p.Call) -> tuple[tuple[Any, ...], dict[str, Any]]:
    value = unpickling.loads(f"the arguments of {msg.name}", msg.payload)
    if not (isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], tuple) and isinstance(value[1], dict)):
        raise TypeError(f"the arguments of {msg.name} are not an (args, kwargs) pair")
    return value[0], value[1]


def _raise_reply(call_id: int, exc: BaseException, context: p.Frame = p.NO_CONTEXT, thrown: str | None = None) -> p.Raise:
    return p.Raise(call_id, *p.describe(exc), p.dumps_exception(exc), context, thrown)


def _too_large(what: str, name: str, size: int, limit: int) -> DispatchError:
    return DispatchError(
        f"the {what} of {name} was not sent: it has a part of {show_size(size)}, more than the max message size "
        f"of {show_size(limit)}; raise it with WorkerPool(max_message_size=BYTES), and "
        "`python -m wool.worker --max-message-size BYTES` on workers started by hand (callers need it too)"
    )


def _value_reply(
    call_id: int, kind: type[p.Return] | type[p.Yield], name: str, value: object, limit: int, context: p.Frame = p.NO_CONTEXT
) -> p.Reply:
    """The reply carrying `value`, or a `Raise` if it cannot be pickled or has a part larger
    than `limit` bytes (callers drop a connection that sends them more)."""
    what = "result" if kind is p.Return else "yielded value"
    try:
        payload = p.dumps(value)
    except Exception as e:
        err = SerializationError(f"the {what} of {name} could not be pickled: {type(e).__name__}: {e}{p.pickling_hint(e)}")
        return _raise_reply(call_id, err, context)
    if size := oversized(payload, limit):
        return _raise_reply(call_id, _too_large(what, name, size, limit), context)
    return kind(call_id, payload, context)


def _context(slot: CallSlot, msg: p.Call) -> contextvars.Context:
    """A call's context: a copy of the worker's, with the call's slot, and the caller's
    options and deadline (on this process's clock)."""
    context = contextvars.copy_context()
    context.run(current_slot_var.set, slot)
    if msg.tags or msg.timeout is not None or msg.affinity is not None or msg.priority:
        context.run(options_var.set, Options(frozenset(msg.tags), msg.timeout, msg.affinity, priority=msg.priority))
    if msg.remaining is not None:
        context.run(deadline_var.set, asyncio.get_running_loop().time() + msg.remaining)
    return context


class _Carried:
    """The `wool.ContextVar`s of one call's context: set from what each request brings,
    compared with it for what each reply takes back."""

    __slots__ = ("name", "context", "baseline", "trace", "watch")

    def __init__(self, name: str, context: contextvars.Context) -> None:
        self.name = name
        self.context = context
        self.baseline: Snapshot | None = None  # None until the caller's values are in
        self.trace: dict[str, str] | None = None  # the trace context the last request brought
        self.watch: _observe.ServerWatch | None = None

    def enter(self, frame: p.Frame) -> None:
        """Inside the call's context: make its variables exactly the caller's."""
        values = unpickle_snapshot(self.name, frame)
        if values:
            self.trace = _tracing.take(values)
        self.baseline = apply_snapshot(values)

    def finish(self, reply: p.Reply | None) -> None:
        """Report the call's end with its last reply (None: abandoned between steps)."""
        watch, self.watch = self.watch, None
        if watch is not None:
            watch.finish(reply)

    def back(self) -> p.Frame:
        """What changed since `enter` (or the last `back`), for a reply. `TypeError` names
        a variable whose value cannot be pickled; `ValueError`: more than a reply carries."""
        if self.baseline is None:
            return p.NO_CONTEXT
        return send_back(self.context, self.baseline)

    def reply(self, reply: p.Reply) -> p.Reply:
        """`reply` carrying the changes; a change that cannot travel fails the call."""
        try:
            frame = self.back()
        except (TypeError, ValueError) as e:  # a value that cannot travel; more than a reply carries
            return _raise_reply(reply.call_id, e)
        if not len(frame):
            return reply
        return dataclasses.replace(reply, context=frame)  # type: ignore[arg-type]


def _unpack(host: Host, carried: _Carried, request: p.Call) -> tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]:
    """A call's routine and arguments, with the caller's variables set in its context. The
    call keeps no reference to `request` past this: its frames are ZeroMQ's buffers, which
    would otherwise stay alive beside the arguments for as long as the call runs. (Keeping a
    frameless copy instead, made with `dataclasses.replace`, cost about 7 of the worker's
    31 µs of Python per call.)"""
    host.check_routine(request)  # first: a call whose routine does not match its digest never gets its context applied
    carried.enter(request.context)
    carried.watch = _observe.watch_served(carried.trace, request.name, host)
    fn = host.load_routine(request)
    args, kwargs = _arguments(request)
    return fn, args, kwargs


class CoroutineCall:
    """A coroutine routine running on this worker."""

    def __init__(self, host: Host, identity: bytes, msg: p.Call, slot: CallSlot) -> None:
        self._host = host
        self._identity = self.identity = identity
        self._request: p.Call | None = msg  # until its task unpacks it (`_unpack`)
        self.call_id, self._name = msg.call_id, msg.name
        self.slot = slot
        self._reason: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
        self._running = False  # its task's first step has begun: the task answers

    def start(self) -> None:
        assert self._request is not None
        context = _context(self.slot, self._request)
        carried = _Carried(self._name, context)
        loop = asyncio.get_running_loop()
        global _eager_step
        if EAGER and not _eager_step:
            _eager_step = True
            try:
                self._task = asyncio.Task(self._run(carried), loop=loop, context=context, eager_start=True)  # type: ignore[call-arg,unused-ignore]
            finally:
                _eager_step = False
        else:
            self._task = loop.create_task(self._run(carried), context=context)

    async def _run(self, carried: _Carried) -> None:
        # The reply leaves from inside the task, as the routine returns: a done-callback
        # would cost the reply one more loop iteration on every call.
        self._running = True
        call_id, request, self._request = self.call_id, self._request, None
        assert request is not None
        try:
            fn, args, kwargs = _unpack(self._host, carried, request)
            del request
            fetch_route_var.set((self._host, self._identity, call_id))  # how to fetch `wool.Shared` values
            if shared_in(args, kwargs):  # top-level `wool.Shared` arguments arrive as their values
                args, kwargs = await substitute(args, kwargs)
            result = await fn(*args, **kwargs)
        except asyncio.CancelledError:
            reply: p.Reply = _raise_reply(call_id, self._reason or asyncio.CancelledError())
        except Exception as e:
            reply = _raise_reply(call_id, e)
        except BaseException as e:  # caught here, asyncio would re-raise it out of the loop
            reply = _raise_reply(call_id, RemoteBaseException(*p.describe(e)))
        else:
            reply = _value_reply(call_id, p.Return, self._name, result, self._host.max_message_size)
        reply = carried.reply(reply)
        if carried.watch is not None:
            carried.finish(reply)
        self._host.finished((self._identity, call_id))
        self._host.reply(self._identity, reply)

    def handle(self, msg: p.Request) -> None:
        if isinstance(msg, p.Cancel):
            self.cancel()
        else:
            self._host.reply(self._identity, p.Reject(msg.call_id, p.RejectReason.BAD_STATE, "a coroutine call takes no steps"))

    def cancel(self, reason: BaseException | None = None) -> None:
        """Cancel the call; if it ends cancelled, the caller is told `reason` (by default
        `CancelledError`: the caller asked for it)."""
        self._reason = reason
        if self._task is not None:
            self._task.cancel()
        if not self._running:  # waiting for a slot, or for its task's first step: it never ran
            self._host.finished((self._identity, self.call_id))
            self._host.reply(self._identity, _raise_reply(self.call_id, reason or asyncio.CancelledError()))
