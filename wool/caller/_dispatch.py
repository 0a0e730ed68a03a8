"""Sending one call to a worker and reading its outcome: shared by coroutine routines
(`_routine`) and generator streams (`_stream`).

Theory of operation. `_Placement` is what a call takes from the context it is made in (options,
tags, deadline, observation). `_dispatch` pickles the routine once per process, lets the mesh
(or `_route`) choose a connection, sends the `call` and awaits its first reply; a call that a
worker refused before running it goes to another worker. A caller cancelled while it waits
abandons the call (`_abandon`): the worker is told to cancel it and the caller waits, bounded
by the liveness period, for the worker to have unwound. `_outcome` turns a reply into the
value or the exception the caller sees, after setting the context variables the routine
changed; `_relink` puts the caller's own exception back where the worker's copy of what it
threw in stands.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import weakref
from collections.abc import Callable
from typing import Any

from .. import _observe
from .. import protocol as p
from .._errors import DispatchError, NoWorkersAvailable, SerializationError, WoolError, WorkerLost
from . import _contextvars as cv
from . import _output
from . import _route as route
from ._connection import Connection
from ._context import current_mesh, current_slot_var
from ._options import NO_OPTIONS, Options, deadline, deadline_var, options_var
from ._sources import remember_command_source

log = logging.getLogger("wool.routine")

_pickled: weakref.WeakKeyDictionary[Callable[..., Any], tuple[bytes, bytes]] = weakref.WeakKeyDictionary()

_NOT_RUN = (p.RejectReason.WRONG_WORKER, p.RejectReason.SHUTTING_DOWN)
MAX_ATTEMPTS = 3  # for calls a worker refused before running them
# Refusals by distinct workers (each is then out of rotation) do not count against
# MAX_ATTEMPTS, so that workers recycling one after another never fail a call; this bounds
# them all the same.
MAX_REFUSALS = 64


def _pickled_routine(wrapper: Callable[..., Any]) -> tuple[bytes, bytes]:
    """(digest, pickle) of a routine, computed once per process."""
    cached = _pickled.get(wrapper)
    if cached is None:
        try:
            data = p.dumps(wrapper)[0]
        except Exception as e:
            raise SerializationError(f"routine {wrapper.__qualname__} could not be pickled: {e}{p.pickling_hint(e)}") from e
        assert isinstance(data, bytes)
        remember_command_source()  # for the tracebacks of routines defined in `python -c`
        cached = _pickled[wrapper] = (hashlib.blake2b(data, digest_size=16).digest(), data)
    return cached


def _dump(what: str, name: str, value: object) -> tuple[p.Frame, ...]:
    """`what` (here and in `_load`, `_capture`) is a format string taking the routine's name:
    the error text is built only on failure, not on every call."""
    try:
        return p.dumps(value)
    except WoolError:  # wool's own, already clear (a released `wool.Shared`)
        raise
    except Exception as e:
        raise SerializationError(f"{what.format(name)} could not be pickled: {type(e).__name__}: {e}{p.pickling_hint(e)}") from e


def _load(what: str, name: str, frames: tuple[p.Frame, ...]) -> Any:
    try:
        return p.loads(frames)
    except Exception as e:
        raise SerializationError(f"{what.format(name)} could not be unpickled: {type(e).__name__}: {e}") from e


def _merge_context(name: str, reply: p.Reply) -> None:
    """Set the context variables the routine changed, as a local call would have."""
    if isinstance(reply, (p.Return, p.Yield, p.Raise, p.Stop)) and len(reply.context):
        cv.merge(cv.unpickle(f"the reply of {name}", reply.context).items())


def _outcome(name: str, reply: p.Reply, thrown: BaseException | None = None) -> Any:
    """The value of a `Return`/`Yield` reply, or raise what a `Raise`/`Reject` reports;
    either way after setting the context variables it brought back. `thrown`: the exception
    this step threw in, which the raised one may be or hold (`_relink`)."""
    _merge_context(name, reply)
    if isinstance(reply, (p.Return, p.Yield)):
        return _load("the value returned by {}", name, reply.payload)
    if isinstance(reply, p.Raise):
        exc = p.loads_exception(reply.type_name, reply.message, reply.traceback, reply.payload)
        if thrown is not None and reply.thrown is not None:
            exc = _relink(exc, reply.thrown, thrown)
        raise exc
    if isinstance(reply, p.Reject):
        raise DispatchError(f"worker rejected {name}: {reply.detail}")
    raise DispatchError(f"unexpected {reply.kind.name.lower()} reply for {name}")


def _relink(exc: BaseException, path: str, thrown: BaseException) -> BaseException:
    """`exc` with the caller's own `thrown` where the worker's copy of it is (`path`, see
    `protocol.Raise.thrown`), or `thrown` itself: as a local generator's `athrow` gives it
    back. Notes the generator added to the exception are kept."""
    if not path:
        notes = getattr(exc, "__notes__", None)
        if isinstance(notes, list) and notes != getattr(thrown, "__notes__", None):
            thrown.__notes__ = notes
        return thrown
    node = exc
    for link in path[:-1]:
        nxt = node.__cause__ if link == "c" else node.__context__
        if nxt is None:  # rebuilt without its chain (it could not be unpickled whole)
            return exc
        node = nxt
    if path[-1] == "c":
        node.__cause__ = thrown
    else:
        node.__context__ = thrown
    return exc


async def _abandon(conn: Connection, call_id: int, name: str) -> None:
    """After the caller was cancelled: cancel the remote call and wait for its last reply, so
    the remote side has unwound (its `finally` ran) when the caller's cancellation proceeds,
    and the context variables it changed are set here, as after a local cancellation.
    The wait is bounded by the liveness period: a worker that stays connected but never
    answers the cancel must not hold the caller's deadline back for ever. A further
    cancellation meanwhile does not cut it short: in a tree of calls, the parent's cancel
    reaches a routine that is already unwinding its own child (a deadline passing at every
    level at once), and the child's cleanup must still finish first."""
    conn.notify(p.Cancel(call_id))
    future = conn.reattach(call_id)
    loop = asyncio.get_running_loop()
    until = loop.time() + conn.liveness
    try:
        while not future.done() and (left := until - loop.time()) > 0:
            try:
                await asyncio.wait({future}, timeout=left)
            except asyncio.CancelledError:
                pass  # cancelled again: the caller re-raises the cancellation once this ends
    finally:
        conn.forget(call_id)
        if not future.done():
            log.log(
                logging.INFO if conn.quiet else logging.WARNING,
                "worker %r did not confirm the cancellation of call %d within %g s",
                conn.worker.id,
                call_id,
                conn.liveness,
                extra=_observe.call_fields(call_id, name, conn.worker.id, conn.routing_id.decode()),
            )
            future.cancel()
        elif not future.cancelled() and future.exception() is None:
            with contextlib.suppress(SerializationError):
                _merge_context(name, future.result())


class _Placement:
    """What a call takes from the context it is made in: the options in force, the tags a
    worker needs, the deadline, and what observes it (its span and metrics) when tracing or
    metrics are on."""

    __slots__ = ("options", "tags", "deadline", "watch")

    def __init__(self, options: Options, tags: frozenset[str], deadline: float | None, watch: _observe.CallWatch | None) -> None:
        self.options, self.tags, self.deadline, self.watch = options, tags, deadline, watch

    @classmethod
    def now(cls, name: str, routine_tags: frozenset[str]) -> _Placement:
        options = options_var.get()
        if options is NO_OPTIONS and deadline_var.get() is None:
            return cls(options, routine_tags, None, _observe.watch_call(name))
        loop = asyncio.get_running_loop()
        when = deadline(loop, options.timeout)
        if when is not None and when <= loop.time():
            raise TimeoutError(f"{name} was not called: its deadline had passed")
        return cls(options, routine_tags | options.tags, when, _observe.watch_call(name))

    def end_watch(self, exc: BaseException | None) -> None:
        """The call ended (once): failed with `exc`, or not."""
        watch, self.watch = self.watch, None
        if watch is not None:
            watch.end(exc)

    def remaining(self) -> float | None:
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - asyncio.get_running_loop().time())


async def _dispatch(
    wrapper: Callable[..., Any], place: _Placement, payload: tuple[p.Frame, ...], generator: bool, nested: bool
) -> tuple[Connection, int, p.Reply]:
    """Send a call to a worker and wait for its first reply. A call a worker refused before
    running it (it is another incarnation, or shutting down) goes to another worker.
    Top-level calls respect each worker's window of open calls; nested calls (made by a
    routine on a worker) do not, so that a deep fan-out cannot wait on itself."""
    name = wrapper.__qualname__
    mesh = current_mesh(name)
    digest, routine_pickle = _pickled_routine(wrapper)
    context = _capture("{} was not called", name, place.watch)
    options = place.options
    refused_by: set[str] = set()
    attempts = 0
    while attempts < MAX_ATTEMPTS and len(refused_by) < MAX_REFUSALS:
        try:
            if options.affinity is None and route.route_var.get() is None:
                conn = await mesh.choose(not nested, place.tags)
            else:
                conn = await route.choose(mesh, not nested, place.tags, options.affinity)
        except NoWorkersAvailable as e:
            raise NoWorkersAvailable(f"{name} was not called: {e}") from None
        if place.watch is not None:
            place.watch.peer(conn.worker)
        call_id = conn.new_call_id()
        msg = p.Call(
            call_id,
            conn.worker.id,
            digest,
            name,
            generator,
            routine_pickle,
            payload,
            context,
            tuple(options.tags),
            options.timeout,
            place.remaining(),
            options.affinity,
            options.priority,
        )
        future = conn.request(msg, generator)
        if nested:
            _output.route(conn, call_id, current_slot_var.get())
        del msg  # while the call runs, its frames (the arguments) are held by nothing here
        if log.isEnabledFor(logging.DEBUG):
            caller = conn.routing_id.decode()
            log.debug(
                "call %d %s sent to worker %r by %s",
                call_id,
                name,
                conn.worker.id,
                caller,
                extra=_observe.call_fields(call_id, name, conn.worker.id, caller),
            )
        try:
            reply = await future
            if place.watch is not None:
                place.watch.replied()
        except asyncio.CancelledError:
            await _abandon(conn, call_id, name)
            raise
        except DispatchError:
            conn.notify(p.Cancel(call_id))  # a bad reply: whatever the worker holds, drop it
            raise
        if isinstance(reply, p.Reject) and reply.reason in _NOT_RUN:
            # Out of rotation, but its other calls may still finish (it is draining).
            mesh.retire(conn.worker.id)
            if conn.worker.id in refused_by or reply.reason is not p.RejectReason.SHUTTING_DOWN:
                attempts += 1
            refused_by.add(conn.worker.id)
            continue
        return conn, call_id, reply
    raise WorkerLost(f"{name} was refused by {len(refused_by)} workers in turn; it did not run")


def _capture(what: str, name: str, watch: _observe.CallWatch | None) -> bytes:
    try:
        return cv.capture() if watch is None else cv.capture(watch.carry())
    except (TypeError, ValueError) as e:  # a value that cannot travel; more than a call carries
        raise type(e)(f"{what.format(name)}: {e}") from None
