"""The exceptions wool raises. Third-party errors (zmq, msgpack, zeroconf) are mapped to these
at the boundary, so a user only ever needs to catch `WoolError` and its subclasses."""

from __future__ import annotations


class WoolError(Exception):
    """Base class of every error wool raises itself."""


class NoPoolError(WoolError):
    """A routine was called outside any `WorkerPool`."""


class NoWorkersAvailable(WoolError):
    """The pool has no live worker to dispatch to."""


class WorkerLost(WoolError):
    """The worker running a call died or became unreachable.

    The call failed and was not retried: it may or may not have run (at most once)."""


class AuthenticationError(WoolError):
    """A CURVE handshake failed: the worker refused this process's public key (it is not in
    the worker's allow-list), or the peer at the endpoint does not hold the key discovery
    published for it, or does not use CURVE. Nothing was sent to, or received from, it."""


class DispatchError(WoolError):
    """A call could not be dispatched or answered: its arguments or result could not be
    serialized, or the peer rejected the request."""


class RemoteBaseException(WoolError):
    """A routine raised a `BaseException` that is not an `Exception` (such as
    `KeyboardInterrupt` or `SystemExit`). It is reported instead of re-raised, so that it
    neither killed the worker nor kills the caller."""

    def __init__(self, type_name: str, message: str, remote_traceback: str = "") -> None:
        super().__init__(f"routine raised {type_name}: {message}" if message else f"routine raised {type_name}")
        self.type_name = type_name
        self.message = message
        self.remote_traceback = remote_traceback

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.type_name, self.message, self.remote_traceback))


class RemoteError(WoolError):
    """A routine raised an exception that could not be carried back as itself (it failed to
    pickle or unpickle); its type name, message and remote traceback are kept as text."""

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
    """A worker process the pool spawned failed to start."""


class SerializationError(WoolError, TypeError):
    """A value could not be pickled or unpickled: an argument (raised at the call site before
    anything is sent), a result, a yielded value or a sent value. Also a `TypeError`, as
    pickling failures are in plain Python."""


class SharedReleased(WoolError):
    """A `wool.Shared` handle was used after it was released (`release()`, the end of its
    `with` block, or the close of the pool it was made in); the message names where."""


class SharedLost(WoolError):
    """The process that made a `wool.Shared` handle (its owner) died, taking the value with
    it; share it again from a live process."""
