"""`@wool.routine`: an `async def` or async generator that runs on a worker.

Theory of operation. The decorator returns a genuine `async def` (or async generator
function) with the decorated function's name, docstring and signature, so `inspect`, `help()`
and frameworks that check `iscoroutinefunction` see what they expect; it also makes methods,
static methods and class methods work by the ordinary descriptor rules. Awaiting the
coroutine (or iterating the generator) is what dispatches: calling alone sends nothing.

What travels is the wrapper itself, pickled once per process and cached by digest on both
sides. cloudpickle pickles a wrapper defined in an importable module by reference and one
defined in `__main__` or a closure by value; either way the worker unwraps it (`__wrapped__`)
and runs the original function there, where nested routine calls dispatch to its peers.

A generator's proxy is itself a local async generator, so Python enforces the local rules
(no `asend` of a value before the first step, no concurrent steps, `aclose` of an unstarted
generator sends nothing); each of its steps is one request and one reply.

Each call (and each generator step) carries the caller's `wool.ContextVar`s and brings back
the ones the routine changed, which are set in the caller's context before the result or
exception is seen (see `_contextvars`). `wool.options` and the routine's own tags decide
which workers may run it; a deadline bounds the wait and travels with the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import inspect
import logging
import weakref
from collections.abc import AsyncGenerator, Callable, Coroutine, Iterable
from typing import Any, ParamSpec, TypeVar, overload

from .. import _observe
from .. import protocol as p
from .._errors import DispatchError, NoWorkersAvailable, SerializationError, WorkerLost
from . import _contextvars as cv
from . import _retry
from . import _route as route
from ._connection import Connection
from ._context import current_mesh, waiting_on_peer
from ._options import NO_OPTIONS, Options, check_tags, deadline, deadline_var, options_var
from ._readahead import Inbox, register_proxy, requested_window

P = ParamSpec("P")
R = TypeVar("R")
Y = TypeVar("Y")
S = TypeVar("S")

log = logging.getLogger("wool.routine")

_pickled: weakref.WeakKeyDictionary[Callable[..., Any], tuple[bytes, bytes]] = weakref.WeakKeyDictionary()

_NOT_RUN = (p.RejectReason.WRONG_WORKER, p.RejectReason.SHUTTING_DOWN)
_UNBOUNDED = contextlib.nullcontext()
MAX_ATTEMPTS = 3  # for calls a worker refused before running them


F = TypeVar("F", bound=Callable[..., Any])


@overload
def routine(fn: Callable[P, AsyncGenerator[Y, S]], /) -> Callable[P, AsyncGenerator[Y, S]]: ...
@overload
def routine(fn: Callable[P, Coroutine[Any, Any, R]], /) -> Callable[P, Coroutine[Any, Any, R]]: ...
@overload
def routine(*, tags: str | Iterable[str] = (), idempotent: bool = False) -> Callable[[F], F]: ...
def routine(fn: Any = None, /, *, tags: str | Iterable[str] = (), idempotent: bool = False) -> Any:
    """Make `fn` (an `async def` or async generator function) run on a worker of the current
    `WorkerPool`. Raises `TypeError` at decoration time for anything else.

    `@wool.routine(tags={"gpu"})`: run only on workers that have every one of `tags` (a
    single string is one tag); `wool.NoWorkersAvailable` names them when none is live.

    `@wool.routine(idempotent=True)`: running a call twice is harmless, so a call whose
    worker is lost is sent again (see `_retry`), and `wool.options(hedge_after=...)` may
    send a second copy. A generator is sent again only if its worker is lost before its
    first item arrived, and is never hedged."""
    required = check_tags(tags, "routine tags")
    if not isinstance(idempotent, bool):
        raise TypeError(f"idempotent must be True or False, not {idempotent!r}")
    spec = RoutineSpec(required, idempotent)
    if fn is None:
        return lambda f: _decorate(f, spec)
    return _decorate(fn, spec)


@dataclasses.dataclass(frozen=True, slots=True)
class RoutineSpec:
    """How a routine was declared; its wrapper carries it as `__wool_routine__`."""

    tags: frozenset[str] = frozenset()
    idempotent: bool = False
    generator: bool = False


def _decorate(fn: Any, spec: RoutineSpec) -> Any:
    if isinstance(fn, staticmethod):
        return staticmethod(_decorate(fn.__func__, spec))
    if isinstance(fn, classmethod):
        return classmethod(_decorate(fn.__func__, spec))
    if inspect.isasyncgenfunction(fn):
        wrapper = _generator_routine(fn, spec)
        wrapper.__wool_routine__ = dataclasses.replace(spec, generator=True)  # type: ignore[attr-defined]
        return wrapper
    if inspect.iscoroutinefunction(fn):
        wrapper = _coroutine_routine(fn, spec)
        wrapper.__wool_routine__ = spec  # type: ignore[attr-defined]
        return wrapper
    raise TypeError(f"@wool.routine needs an `async def` or async generator function, not {fn!r}")


def _coroutine_routine(fn: Callable[..., Any], spec: RoutineSpec) -> Callable[..., Any]:
    tags = spec.tags
    if spec.idempotent:

        @functools.wraps(fn)
        async def idempotent(*args: Any, **kwargs: Any) -> Any:
            return await _call(idempotent, tags, args, kwargs, idempotent=True)

        return idempotent

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        return await _call(wrapper, tags, args, kwargs)

    return wrapper


def _generator_routine(fn: Callable[..., Any], spec: RoutineSpec) -> Callable[..., Any]:
    tags, retry = spec.tags, spec.idempotent

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


def _pickled_routine(wrapper: Callable[..., Any]) -> tuple[bytes, bytes]:
    """(digest, pickle) of a routine, computed once per process."""
    cached = _pickled.get(wrapper)
    if cached is None:
        try:
            data = p.dumps(wrapper)[0]
        except Exception as e:
            raise SerializationError(f"routine {wrapper.__qualname__} could not be pickled: {e}") from e
        assert isinstance(data, bytes)
        cached = _pickled[wrapper] = (hashlib.blake2b(data, digest_size=16).digest(), data)
    return cached


def _dump(what: str, name: str, value: object) -> tuple[p.Frame, ...]:
    """`what` (here and in `_load`, `_capture`) is a format string taking the routine's name:
    the error text is built only on failure, not on every call."""
    try:
        return p.dumps(value)
    except Exception as e:
        raise SerializationError(f"{what.format(name)} could not be pickled: {type(e).__name__}: {e}") from e


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
            log.warning(
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
    for _ in range(MAX_ATTEMPTS):
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
        )
        future = conn.request(msg, generator)
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
            continue
        return conn, call_id, reply
    raise WorkerLost(f"{name} was refused by {MAX_ATTEMPTS} workers in turn; it did not run")


def _capture(what: str, name: str, watch: _observe.CallWatch | None) -> bytes:
    try:
        return cv.capture() if watch is None else cv.capture(watch.carry())
    except TypeError as e:
        raise TypeError(f"{what.format(name)}: {e}") from None


async def _call(
    wrapper: Callable[..., Any], tags: frozenset[str], args: tuple[Any, ...], kwargs: dict[str, Any], idempotent: bool = False
) -> Any:
    """One call's placement, pickling and CLIENT span. An idempotent routine's attempts and
    hedged copies (see `_retry`) share all three: one deadline, one pickling, one span, the
    parent of each attempt's SERVER span."""
    name = wrapper.__qualname__
    place = _Placement.now(name, tags)
    try:
        if not idempotent and place.options.hedge_after is not None:
            raise TypeError(
                f"{name} is not idempotent: wool.options(hedge_after=...) would run it twice; "
                "declare it @wool.routine(idempotent=True) if running it twice is harmless"
            )
        payload = _dump("the arguments of {}", name, (args, kwargs))
        if idempotent:
            result = await _retry.idempotent(name, lambda: _send(wrapper, place, payload), place.options.hedge_after)
        else:
            result = await _send(wrapper, place, payload)
    except BaseException as e:
        if place.watch is not None:
            place.end_watch(e)
        raise
    if place.watch is not None:
        place.end_watch(None)
    return result


async def _send(wrapper: Callable[..., Any], place: _Placement, payload: tuple[p.Frame, ...]) -> Any:
    name = wrapper.__qualname__
    with waiting_on_peer() as nested:
        if place.deadline is None:
            _, _, reply = await _dispatch(wrapper, place, payload, False, nested)
        else:
            async with asyncio.timeout_at(place.deadline):
                _, _, reply = await _dispatch(wrapper, place, payload, False, nested)
    return _outcome(name, reply)


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
        self._args = (args, kwargs)
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
