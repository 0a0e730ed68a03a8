"""The messages of the wool wire protocol, as frozen dataclasses.

A message is one ZeroMQ multipart message: a msgpack envelope, then payload frames. Payload
frames stay opaque bytes here (see `_payload`): decoding a message never unpickles anything,
so a bad pickle fails the call that owns it, not the loop that received it.
"""

from __future__ import annotations

import dataclasses
import enum

# 3: a call's envelope ends with its affinity key's digest, and a pong with the worker's max
# message size. 4: small frames travel inside the envelope (see `_codec`). A peer of another
# version is refused with a message naming both, rather than failing on a field it does not know.
# 5: a worker fetches a shared value (`wool.share`) from the caller of the call that needs it,
# in parts (`fetch`, `part`); a call's envelope may end with its priority
# (`wool.options(priority=N)`); the kind `output` carries what a routine printed or logged
# to its caller.
VERSION = 5
MAX_PRIORITY = 2**31 - 1  # priorities are ints within ±this

Frame = bytes | memoryview

# Every message that runs user code, or reports on it, carries one context frame: the
# `wool.ContextVar` values that travel with it, pickled (see `wool.caller._contextvars`). It is
# empty when no variable was set (going out) or changed (coming back): the common case.
NO_CONTEXT = b""


class Kind(enum.IntEnum):
    # caller -> worker
    CALL = 1
    NEXT = 2
    SEND = 3
    THROW = 4
    CLOSE = 5
    CANCEL = 6
    PING = 7
    CREDIT = 8
    PART = 9
    # worker -> caller
    RETURN = 16
    YIELD = 17
    RAISE = 18
    STOP = 19
    PONG = 20
    REJECT = 21
    FETCH = 22
    OUTPUT = 23


@dataclasses.dataclass(frozen=True, slots=True)
class Call:
    """Start a routine. `worker_id` names the incarnation it is meant for; `digest`
    identifies the pickled routine so a worker unpickles each routine once. `tags` and
    `timeout` are the caller's `wool.options` (in force for the routine's own nested calls);
    `remaining` is the seconds left before the call's deadline, if it has one; `affinity`
    the digest of the caller's affinity key, if any (its nested calls inherit it)."""

    call_id: int
    worker_id: str
    digest: bytes
    name: str
    generator: bool
    routine: Frame
    payload: tuple[Frame, ...]
    context: Frame = NO_CONTEXT
    tags: tuple[str, ...] = ()
    timeout: float | None = None
    remaining: float | None = None
    affinity: bytes | None = None
    priority: int = 0  # higher first where calls queue (see `wool.options`)
    kind = Kind.CALL


@dataclasses.dataclass(frozen=True, slots=True)
class Next:
    """Advance a generator call one step (`anext`)."""

    call_id: int
    context: Frame = NO_CONTEXT
    kind = Kind.NEXT


@dataclasses.dataclass(frozen=True, slots=True)
class Send:
    """Advance a generator call with a value (`asend`)."""

    call_id: int
    payload: tuple[Frame, ...]
    context: Frame = NO_CONTEXT
    kind = Kind.SEND


@dataclasses.dataclass(frozen=True, slots=True)
class Throw:
    """Raise an exception at a generator's `yield` (`athrow`)."""

    call_id: int
    payload: tuple[Frame, ...]
    context: Frame = NO_CONTEXT
    kind = Kind.THROW


@dataclasses.dataclass(frozen=True, slots=True)
class Close:
    """Close a generator (`aclose`): its `finally` runs remotely."""

    call_id: int
    context: Frame = NO_CONTEXT
    kind = Kind.CLOSE


@dataclasses.dataclass(frozen=True, slots=True)
class Cancel:
    """Cancel whatever the call is running; the worker answers with the call's last reply."""

    call_id: int
    kind = Kind.CANCEL


@dataclasses.dataclass(frozen=True, slots=True)
class Ping:
    """Ask a worker which incarnation it is and how busy it is (answered by a pong), outside
    any call: discovery of static endpoints, liveness probes, `python -m wool.workers`."""

    call_id: int
    kind = Kind.PING


@dataclasses.dataclass(frozen=True, slots=True)
class Credit:
    """Let a generator run `count` more items ahead: the worker sends them as `yield`s
    without being asked (a read-ahead stream; its caller only iterates)."""

    call_id: int
    count: int
    kind = Kind.CREDIT


@dataclasses.dataclass(frozen=True, slots=True)
class Return:
    """A coroutine call's result."""

    call_id: int
    payload: tuple[Frame, ...]
    context: Frame = NO_CONTEXT
    kind = Kind.RETURN


@dataclasses.dataclass(frozen=True, slots=True)
class Yield:
    """One value yielded by a generator call."""

    call_id: int
    payload: tuple[Frame, ...]
    context: Frame = NO_CONTEXT
    kind = Kind.YIELD


@dataclasses.dataclass(frozen=True, slots=True)
class Raise:
    """The call raised. The exception's type name, message and formatted traceback travel as
    text too, so the caller can report it even when the pickled exception cannot be rebuilt.

    `thrown`, on the reply to a `throw`, says where the exception thrown in is in the one
    raised: "" when it is that very exception, else a path of links from it, "c" for a
    `__cause__` and "x" for a `__context__` ("cx": the context of its cause). The caller
    still holds the object it threw, and puts it back there: locally, `athrow` gives back the
    very object thrown, and `contextlib` relies on it. None: it is not in the chain."""

    call_id: int
    type_name: str
    message: str
    traceback: str
    payload: tuple[Frame, ...]
    context: Frame = NO_CONTEXT
    thrown: str | None = None
    kind = Kind.RAISE


@dataclasses.dataclass(frozen=True, slots=True)
class Stop:
    """A generator call is exhausted (`StopAsyncIteration`), or closed."""

    call_id: int
    context: Frame = NO_CONTEXT
    kind = Kind.STOP


@dataclasses.dataclass(frozen=True, slots=True)
class Pong:
    """The answer to a `ping`: which worker incarnation this is, how many calls it has
    open (running, or suspended between generator steps) and how many wait for a slot, its
    tags and its limit of concurrent calls (0: none), so that a caller that found it without
    discovery (a static list of endpoints) can place calls on it, and how many calls it has
    finished since it started (`python -m wool.workers --watch` shows the rate), and the
    largest message part it accepts (None: not told, as by older workers: a trailing field),
    so that such a caller keeps its calls within it. With call id 0 it is the worker's probe
    of a caller (ignored by callers)."""

    call_id: int
    worker_id: str
    calls: int = 0
    queued: int = 0
    tags: tuple[str, ...] = ()
    max_calls: int = 0
    served: int = 0
    max_message_size: int | None = None
    kind = Kind.PONG


class RejectReason(enum.IntEnum):
    WRONG_WORKER = 1  # the request was meant for another incarnation: it did not run
    UNKNOWN_CALL = 2  # no such call id (finished, never started, or a duplicate step)
    MALFORMED = 3  # the request could not be decoded
    BAD_STATE = 4  # the request is not legal in the call's current state
    SHUTTING_DOWN = 5  # the worker is stopping and accepts no new calls: it did not run


@dataclasses.dataclass(frozen=True, slots=True)
class Reject:
    """The worker refused a request; `reason` says whether it ran (it never did)."""

    call_id: int
    reason: RejectReason
    detail: str
    kind = Kind.REJECT


class ShareProblem(enum.IntEnum):
    NONE = 0  # the part follows
    RELEASED = 1  # the value was released (the detail says where)
    LOST = 2  # its owner died
    UNAVAILABLE = 3  # this process cannot read it (it never had it)


@dataclasses.dataclass(frozen=True, slots=True)
class Fetch:
    """Worker -> caller, during call `call_id`: send bytes `offset` to `offset + length` of
    the shared value `key` (its laid-out form, see `wool.sharing`). `length` is at most the
    worker's max message size, so every answer fits in one message part."""

    call_id: int
    key: str
    offset: int
    length: int
    kind = Kind.FETCH


@dataclasses.dataclass(frozen=True, slots=True)
class Part:
    """Caller -> worker: the answer to a `fetch` of `key` at `offset`: `data` (empty at the
    end, or when `problem` says why there is nothing) out of `total` bytes."""

    call_id: int
    key: str
    offset: int
    total: int
    data: Frame
    problem: ShareProblem = ShareProblem.NONE
    detail: str = ""
    kind = Kind.PART


class Stream(enum.IntEnum):
    STDOUT = 1
    STDERR = 2
    LOG = 3  # a logging record: its level and logger name travel with it


@dataclasses.dataclass(frozen=True, slots=True)
class OutputLine:
    """One line a routine wrote or logged, on the worker `origin` (`3f2a pid=4122 host=h1`)."""

    stream: Stream
    text: str
    origin: str
    level: int = 0  # a log record's level
    logger: str = ""  # a log record's logger name


@dataclasses.dataclass(frozen=True, slots=True)
class Output:
    """What call `call_id` printed or logged since the last `output`, for the caller to write
    out (it ends the call in nothing); `dropped`: bytes dropped because more came than the
    worker forwards (see `wool.worker._output`)."""

    call_id: int
    lines: tuple[OutputLine, ...]
    dropped: int = 0
    kind = Kind.OUTPUT


Request = Call | Next | Send | Throw | Close | Cancel | Ping | Credit | Part
Reply = Return | Yield | Raise | Stop | Pong | Reject | Fetch | Output
Message = Request | Reply
