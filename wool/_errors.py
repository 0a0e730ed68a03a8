"""The exceptions wool raises. Third-party errors (zmq, msgpack, zeroconf) are mapped to these
at the boundary, so a user only ever needs to catch `WoolError` and its subclasses."""

from __future__ import annotations


class WoolError(Exception):
    """Base class of every error wool raises itself.

    ZeroMQ, msgpack and zeroconf errors are mapped to subclasses of this at the boundary,
    so catching `WoolError` catches every failure of wool's own (an exception a routine
    raised comes back as itself instead).

    Example:
        ```python
        try:
            await price(trade)
        except KeyError:
            ...                            # the routine raised it, on its worker
        except wool.WoolError:
            ...                            # wool could not run the call
        ```
    """


class NoPoolError(WoolError):
    """A routine was called outside any `WorkerPool`.

    Raised at the call when no pool is current in the caller's context and none is open on
    the caller's event loop (a pool belongs to the loop it was opened on: a call from
    `asyncio.run(...)` inside a `with wool.WorkerPool()` block raises it, naming
    `pool.run(...)`). The message says how to open one.
    """


class NoWorkersAvailable(WoolError):
    """The pool has no live worker to dispatch to.

    Raised when the pool has no live worker, or none with the tags the call needs, and
    none appeared within the pool's `connect_timeout`. The message names what was missing
    (a tag no worker has, workers that refused this process's key).
    """


class WorkerLost(WoolError):
    """The worker running a call died or became unreachable.

    The call failed and was not retried: it may or may not have run (at most once). Raised
    promptly, never after a hang: a dead worker's connection fails at once, a silent one
    after the pool's `liveness` bound. Retrying is the caller's decision; a routine declared
    `@wool.routine(idempotent=True)` may be retried by wool (see retries and hedging).
    """


class AuthenticationError(WoolError):
    """A CURVE handshake failed: the worker refused this process's public key (it is not in
    the worker's allow-list), or the peer at the endpoint does not hold the key discovery
    published for it, or does not use CURVE. Nothing was sent to, or received from, it.

    Pools report it inside `NoWorkersAvailable` when no worker accepts their key.
    """


class DispatchError(WoolError):
    """A call could not be dispatched or answered: a part of it is larger than the worker's
    maximum message size (raised at the call site; nothing was sent), the worker rejected
    the request (malformed, or not legal in the call's state), or the worker's reply does
    not fit the call.
    """


class RemoteBaseException(WoolError):
    """A routine raised a `BaseException` that is not an `Exception` (such as
    `KeyboardInterrupt` or `SystemExit`). It is reported instead of re-raised, so that it
    neither killed the worker nor kills the caller; the worker keeps serving.

    Args:
        type_name: The qualified name of the exception's type.
        message: Its message (`str(exception)`).
        remote_traceback: The traceback on the worker, as text.

    Attributes:
        type_name: The qualified name of the exception's type.
        message: Its message.
        remote_traceback: The traceback on the worker, as text.
    """

    def __init__(self, type_name: str, message: str, remote_traceback: str = "") -> None:
        super().__init__(f"routine raised {type_name}: {message}" if message else f"routine raised {type_name}")
        self.type_name = type_name
        self.message = message
        self.remote_traceback = remote_traceback

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.type_name, self.message, self.remote_traceback))


class RemoteError(WoolError):
    """A routine raised an exception that could not be carried back as itself (it failed to
    pickle or unpickle); its type name, message and remote traceback are kept as text, and
    `str()` shows all three.

    Args:
        type_name: The qualified name of the exception's type.
        message: Its message (`str(exception)`).
        remote_traceback: The traceback on the worker, as text.

    Attributes:
        type_name: The qualified name of the exception's type.
        message: Its message.
        remote_traceback: The traceback on the worker, as text.
    """

    def __init__(self, type_name: str, message: str, remote_traceback: str = "") -> None:
        super().__init__(f"{type_name}: {message}" if message else type_name)
        self.type_name = type_name
        self.message = message
        self.remote_traceback = remote_traceback

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.type_name, self.message, self.remote_traceback))

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text}\n\nRemote traceback:\n{self.remote_traceback}" if self.remote_traceback else text


class WorkerStartError(WoolError):
    """A worker process the pool spawned failed to start.

    Raised by entering the pool (`async with`, `with`, `start()`): when a worker's lifespan
    raised, that exception is the `__cause__`; otherwise the message says what failed. The
    workers that did start are stopped.
    """


class SerializationError(WoolError, TypeError):
    """A value could not be pickled or unpickled: an argument (raised at the call site before
    anything is sent), a result, a yielded value or a sent value, or the context variables a
    call carries. Also a `TypeError`, as pickling failures are in plain Python.

    When a worker cannot unpickle a call because it cannot import a module, the message
    names the module and the fix (`PYTHONPATH`, or start the worker from the project
    directory), and the worker's own error is the `__cause__`.
    """


class SharedReleased(WoolError):
    """A `wool.Shared` handle was used after it was released (`release()`, the end of its
    `with` block, or the close of the pool it was made in); the message names where."""


class SharedLost(WoolError):
    """The process that made a `wool.Shared` handle (its owner) died, taking the value with
    it; share it again from a live process."""
