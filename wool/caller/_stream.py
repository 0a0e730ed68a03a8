"""The caller's end of a remote async generator: its proxy, and the stream of its steps.

Theory of operation. A generator routine's proxy (`generator_routine`) is itself a local
async generator, so Python enforces the local rules (no `asend` of a value before the first
step, no concurrent steps, `aclose` of an unstarted generator sends nothing). Its `_Stream`
dispatches the `call` (`_dispatch`) and then sends each step (`next`, `send`, `throw`,
`close`) on the same connection and call id, one at a time, each answered by one reply. A
stream opened by `wool.readahead` takes its items from an `Inbox` instead (`_readahead`).
A final reply, or the proxy ending early (the caller raised or stopped iterating), releases
the call's slot in the connection's window; ending early also cancels the remote generator,
which closes it there.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncGenerator, Callable
from typing import Any

from .. import _observe
from .. import protocol as p
from .._errors import WorkerLost
from . import _retry
from ._connection import Connection
from ._context import rehandle, waiting_on_peer
from ._dispatch import _abandon, _capture, _dispatch, _dump, _merge_context, _outcome, _Placement
from ._readahead import Inbox, register_proxy, requested_window

log = logging.getLogger("wool.routine")

_UNBOUNDED = contextlib.nullcontext()


def generator_routine(fn: Callable[..., Any], tags: frozenset[str], retry: bool) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        place = _Placement.now(wrapper.__qualname__, tags)
        if place.options.hedge_after is not None:
            error = TypeError(
                f"{wrapper.__qualname__} is an async generator: wool.options(hedge_after=...) applies to "
                "idempotent coroutine routines only (a stream's items cannot be taken from two copies)"
            )
            place.end_watch(error)
            raise error
        stream = _Stream(wrapper, place, args, kwargs, requested_window(), retry)
        try:
            done, value = await stream.start()
            while not done:
                try:
                    sent = yield value
                except GeneratorExit:
                    await stream.close()
                    raise
                except BaseException as exc:
                    done, value = await stream.step(p.Kind.THROW, exc)
                else:
                    done, value = await stream.step(p.Kind.SEND if sent is not None else p.Kind.NEXT, sent)
        except BaseException as e:
            stream.end_watch(None if isinstance(e, GeneratorExit) else e)
            raise
        else:
            stream.end_watch(None)
        finally:
            stream.abandon()

    register_proxy(wrapper)  # how `wool.readahead` recognises the generators it returns
    return wrapper


class _Stream:
    """The caller's end of one remote generator: sends its steps, one at a time."""

    def __init__(
        self,
        wrapper: Callable[..., Any],
        place: _Placement,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        window: int | None = None,
        idempotent: bool = False,
    ) -> None:
        self._idempotent = idempotent  # sent again if its worker is lost before the first item
        self._wrapper = wrapper
        self._place = place
        self._name = wrapper.__qualname__
        self._args = rehandle(args, kwargs)  # values that came as `wool.Shared` go on as handles
        self._conn: Connection | None = None
        self._call_id = 0
        self._open = False
        self._window = window  # read ahead up to this many items (see `_readahead`)
        self._inbox: Inbox | None = None

    def _settle(self, reply: p.Reply, thrown: BaseException | None = None) -> tuple[bool, Any]:
        if p.is_final(True, reply.kind):
            self._ended()
        if isinstance(reply, p.Stop):
            _merge_context(self._name, reply)
            return True, None
        return False, _outcome(self._name, reply, thrown)

    def _bounded(self) -> Any:
        """The stream's deadline (if any) around a wait for a step."""
        return _UNBOUNDED if self._place.deadline is None else asyncio.timeout_at(self._place.deadline)

    async def start(self) -> tuple[bool, Any]:
        payload = _dump("the arguments of {}", self._name, self._args)
        with waiting_on_peer() as nested:
            async with self._bounded():
                if self._idempotent:
                    dispatch = functools.partial(_dispatch, self._wrapper, self._place, payload, True, nested)
                    conn, self._call_id, reply = await _retry.idempotent(self._name, dispatch, None)
                else:
                    conn, self._call_id, reply = await _dispatch(self._wrapper, self._place, payload, True, nested)
        self._conn = conn
        self._open = True
        result = self._settle(reply)
        if self._window is not None and self._open:
            self._inbox = Inbox(self._conn, self._call_id, self._window)
        return result

    def _ended(self) -> None:
        self._open = False
        if self._conn is not None:
            self._conn.release(self._call_id)

    async def step(self, kind: p.Kind, value: Any) -> tuple[bool, Any]:
        conn, call_id = self._conn, self._call_id
        assert conn is not None and self._open
        if self._inbox is not None:
            return await self._step_ahead(kind, self._inbox)
        msg: p.Request
        if self._place.watch is not None:
            self._place.watch.step(kind.name.lower())
        context = _capture("the next step of {} was not sent", self._name, self._place.watch)
        if kind is p.Kind.NEXT:
            msg = p.Next(call_id, context)
        elif kind is p.Kind.SEND:
            msg = p.Send(call_id, _dump("the value sent to {}", self._name, value), context)
        elif kind is p.Kind.THROW:
            msg = p.Throw(call_id, p.dumps_exception(value), context)
        else:
            msg = p.Close(call_id, context)
        try:
            future = conn.request(msg, True)
        except WorkerLost:
            self._ended()
            raise
        async with self._bounded():  # outside: a deadline's cancellation is abandoned as any
            try:
                with waiting_on_peer():
                    reply = await future
            except asyncio.CancelledError:
                self._ended()
                await _abandon(conn, call_id, self._name)
                raise
            except BaseException:
                self._ended()
                conn.notify(p.Cancel(call_id))  # a bad reply, or lost: drop the remote generator
                raise
        return self._settle(reply, value if kind is p.Kind.THROW else None)

    async def _step_ahead(self, kind: p.Kind, inbox: Inbox) -> tuple[bool, Any]:
        if kind is not p.Kind.NEXT:
            self.abandon()
            what = "asend()" if kind is p.Kind.SEND else "athrow()"
            raise TypeError(f"a read-ahead stream only iterates: {what} cannot reach its generator, which already ran ahead")
        async with self._bounded():
            try:
                reply = await inbox.next()
            except BaseException:
                self.abandon()
                raise
        return self._settle(reply)

    async def close(self) -> None:
        """Close the remote generator (its `finally` runs there). If its worker is already
        gone, or the pool closed, there is nothing left to close."""
        if self._open and self._conn is not None and self._conn.lost is not None:
            self._ended()
        if self._open and self._inbox is not None:
            await self._close_ahead(self._inbox)
        elif self._open:
            await self.step(p.Kind.CLOSE, None)

    def end_watch(self, exc: BaseException | None) -> None:
        self._place.end_watch(exc)

    async def _close_ahead(self, inbox: Inbox) -> None:
        """Close a read-ahead stream, waiting (up to the liveness period) for the remote
        `finally` to run; the generator may be running ahead, so the worker stops that first."""
        conn = self._conn
        assert conn is not None
        if not inbox.close(_capture("the close of {} was not sent", self._name, self._place.watch)):
            # It ended while running ahead, before the consumer got there: a local generator
            # closed at this point would not have reached that end, nor its error.
            with contextlib.suppress(Exception):
                _merge_context(self._name, await inbox.last())
            self._ended()
            return
        try:
            async with asyncio.timeout(conn.liveness):
                reply = await inbox.last()
        except TimeoutError:
            log.warning(
                "worker %s did not confirm the close of %s within %g s",
                conn.worker.id,
                self._name,
                conn.liveness,
                extra=_observe.call_fields(self._call_id, self._name, conn.worker.id, conn.routing_id.decode()),
            )
            self.abandon()
            return
        except WorkerLost:
            self._ended()  # gone: nothing left to close
            return
        except BaseException:
            self.abandon()
            raise
        if isinstance(reply, p.Reject):  # a worker that cannot close it: it is cancelled instead
            log.debug(
                "worker %s refused to close %s (%s): cancelling it",
                conn.worker.id,
                self._name,
                reply.detail,
                extra=_observe.call_fields(self._call_id, self._name, conn.worker.id, conn.routing_id.decode()),
            )
            self._ended()
            conn.notify(p.Cancel(self._call_id))
            return
        self._settle(reply)

    def abandon(self) -> None:
        """The proxy ended while the remote generator is still open (the caller's side
        raised): cancel it, which closes it remotely."""
        if self._open and self._conn is not None:
            self._ended()
            self._conn.notify(p.Cancel(self._call_id))
