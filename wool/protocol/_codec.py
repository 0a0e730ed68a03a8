"""Frames <-> messages. Pure: no sockets, no event loop, no unpickling.

Envelope: a msgpack array `[VERSION, kind, call_id, *fields]`, whose fields are fixed per kind
(`_FIELDS`), for some kinds followed by optional ones (`_OPTIONAL`); the routine, context and
payload frames follow it in the same multipart message. When those are all small (`INLINE_MAX`
bytes in all) they travel inside the envelope instead, as one last field (an array of bins),
and the message is one frame: each frame costs a send and a receive on both sides, which for a
small call was a tenth of its CPU. Anything malformed raises `ProtocolError`, whose `call_id` is
set when the envelope was readable enough to name the call (so the peer can be told which call
failed).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

import msgpack

from .._errors import WoolError
from ._messages import (
    MAX_PRIORITY,
    VERSION,
    Call,
    Cancel,
    Close,
    Credit,
    Fetch,
    Frame,
    Kind,
    Message,
    Next,
    Output,
    OutputLine,
    Part,
    Ping,
    Pong,
    Raise,
    Reject,
    RejectReason,
    Return,
    Send,
    ShareProblem,
    Stop,
    Stream,
    Throw,
    Yield,
)

MAX_ENVELOPE = 64 * 1024
# Frames after the envelope, in bytes, below which they travel inside it. Well under
# MAX_ENVELOPE even beside the longest texts a `raise` carries (see MAX_TEXT below).
INLINE_MAX = 8 * 1024
_MAX_CALL_ID = 2**64 - 1
# Text fields are clipped so that any message `encode` builds, `decode` accepts (in UTF-8,
# 4 * (256 + 4096 + 8192) bytes at most, well under MAX_ENVELOPE).
MAX_NAME = 256
MAX_TEXT = 4096
MAX_TRACEBACK = 8192
MAX_TAGS = 64
MAX_OUTPUT_LINES = 256  # lines of one `output` message (see `wool.worker._output`)
MAX_LINKS = 8  # links of a `raise`'s path to the exception thrown in (see `Raise.thrown`)


class ProtocolError(WoolError):
    """A message that is not a valid wool message, or one too large to encode; `call_id`
    names its call when readable. A `WoolError` (`_errors` is the one module below the
    protocol), so a call that fails to encode raises an error users already catch."""

    def __init__(self, message: str, call_id: int | None = None) -> None:
        super().__init__(message)
        self.call_id = call_id


_packer = msgpack.Packer(use_bin_type=True)


def _envelope(msg: Message, *fields: Any) -> bytes:
    data: bytes = _packer.pack([VERSION, int(msg.kind), msg.call_id, *fields])
    return data


def _framed(msg: Message, fields: tuple[Any, ...], rest: list[Frame]) -> list[Frame]:
    """The envelope, then `rest`: inside the envelope when all of it is small `bytes` (large
    buffers stay frames of their own, sent without copying)."""
    size = 0
    for frame in rest:
        if type(frame) is not bytes:
            break
        size += len(frame)
    else:
        if size <= INLINE_MAX:
            head = _envelope(msg, *fields, rest)
            if len(head) <= MAX_ENVELOPE:
                return [head]
    return [_envelope(msg, *fields), *rest]


def _clip(text: str, limit: int, keep_tail: bool = False) -> str:
    if len(text) <= limit:
        return text
    return "..." + text[-(limit - 3) :] if keep_tail else text[: limit - 3] + "..."


def encode(msg: Message) -> list[Frame]:
    """The frames of `msg`, envelope first. Over-long text fields (names, messages,
    tracebacks, details) are clipped; any other oversize envelope raises `ProtocolError`."""
    if isinstance(msg, Call):
        options: tuple[Any, ...] = ([_clip(t, MAX_NAME) for t in msg.tags[:MAX_TAGS]], msg.timeout, msg.remaining, msg.affinity)
        if msg.priority:  # only then: a call of the default priority has the shape it always had
            if not _priority(msg.priority):
                raise ProtocolError(f"call priority {msg.priority!r} is not an int within ±{MAX_PRIORITY}", msg.call_id)
            options += (msg.priority,)
        call = (_clip(msg.worker_id, MAX_NAME), msg.digest, _clip(msg.name, MAX_NAME), msg.generator, *options)
        frames: list[Frame] = _framed(msg, call, [msg.routine, msg.context, *msg.payload])
    elif isinstance(msg, Raise):
        fields: tuple[str, ...] = (
            _clip(msg.type_name, MAX_NAME),
            _clip(msg.message, MAX_TEXT),
            _clip(msg.traceback, MAX_TRACEBACK, True),
        )
        if msg.thrown is not None:  # only then: a `raise` without it has the shape it always had
            if not _path(msg.thrown):
                raise ProtocolError(
                    f"raise path to the thrown exception {_clip(repr(msg.thrown), 100)} is malformed", msg.call_id
                )
            fields += (msg.thrown,)
        frames = _framed(msg, fields, [msg.context, *msg.payload])
    elif isinstance(msg, (Send, Throw, Return, Yield)):
        frames = _framed(msg, (), [msg.context, *msg.payload])
    elif isinstance(msg, (Next, Close, Stop)):
        frames = _framed(msg, (), [msg.context])
    elif isinstance(msg, Pong):
        tags = [_clip(t, MAX_NAME) for t in msg.tags[:MAX_TAGS]]
        about: tuple[Any, ...] = (_clip(msg.worker_id, MAX_NAME), msg.calls, msg.queued, tags, msg.max_calls, msg.served)
        if msg.max_message_size is not None:  # only then: a pong without it has the shape it always had
            about += (msg.max_message_size,)
        frames = [_envelope(msg, *about)]
    elif isinstance(msg, Reject):
        frames = [_envelope(msg, int(msg.reason), _clip(msg.detail, MAX_TEXT))]
    elif isinstance(msg, Output):
        lines = [
            [int(ln.stream), _clip(ln.text, MAX_TEXT), _clip(ln.origin, MAX_NAME), ln.level, _clip(ln.logger, MAX_NAME)]
            for ln in msg.lines[:MAX_OUTPUT_LINES]
        ]
        frames = [_envelope(msg, lines, msg.dropped)]
    elif isinstance(msg, Credit):
        frames = [_envelope(msg, msg.count)]
    elif isinstance(msg, Fetch):
        frames = [_envelope(msg, msg.key, msg.offset, msg.length)]
    elif isinstance(msg, Part):
        share = (msg.key, msg.offset, msg.total, int(msg.problem), _clip(msg.detail, MAX_TEXT))
        frames = _framed(msg, share, [msg.data])
    else:
        frames = [_envelope(msg)]
    if len(frames[0]) > MAX_ENVELOPE:
        raise ProtocolError(f"{msg.kind.name.lower()} envelope of {len(frames[0])} bytes exceeds {MAX_ENVELOPE}", msg.call_id)
    return frames


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _readable_call_id(head: Frame) -> int | None:
    """The call id at the start of an envelope too large to decode whole, if readable: so
    the call it belongs to can still be failed instead of left waiting."""
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(bytes(head[:32]))
    try:
        if unpacker.read_array_header() < 3:
            return None
        unpacker.unpack()
        unpacker.unpack()
        call_id = unpacker.unpack()
    except Exception:
        return None
    return call_id if _is_int(call_id) and 0 <= call_id <= _MAX_CALL_ID else None


class _Text(str):
    """Literal text in `_excerpt`'s work list, as opposed to a value to render."""

    __slots__ = ()


_EXCERPT_DEPTH = 3  # levels of nesting an excerpt shows; deeper ones are "[...]" / "{...}"


def _excerpt(value: object, limit: int = 100) -> str:
    """At most `limit` characters rendering a decoded value, escaped as `repr` escapes.

    Never `repr` on peer data: `repr` of nested lists recurses once per level (a 1,000-deep
    envelope raised `RecursionError`, not `ProtocolError`) and renders all 64 KiB of an
    envelope to keep 100 characters. Here containers are walked with an explicit work list,
    at most `_EXCERPT_DEPTH` levels and `limit` items each, and scalars are clipped before
    they are rendered: the work is bounded by `limit`, whatever the value."""
    out: list[str] = []
    size = 0
    work: list[tuple[object, int]] = [(value, 0)]
    while work and size <= limit:
        item, depth = work.pop()
        if isinstance(item, _Text):
            text = str(item)
        elif isinstance(item, (list, dict)):
            is_list = isinstance(item, list)
            opening, closing = ("[", "]") if is_list else ("{", "}")
            if depth >= _EXCERPT_DEPTH:
                text = opening + ("..." if item else "") + closing
            else:
                parts: list[tuple[object, int]] = [(_Text(opening), depth)]
                pairs = item[:limit] if isinstance(item, list) else list(item.items())[:limit]
                for i, entry in enumerate(pairs):
                    if i:
                        parts.append((_Text(", "), depth))
                    if is_list:
                        parts.append((entry, depth + 1))
                    else:
                        key, val = entry
                        parts += [(key, depth + 1), (_Text(": "), depth), (val, depth + 1)]
                if len(item) > limit:
                    parts.append((_Text(", ..."), depth))
                parts.append((_Text(closing), depth))
                work += reversed(parts)
                continue
        elif isinstance(item, (str, bytes)):
            text = repr(item[: limit + 1])
        else:  # None, bool, int (64-bit at most), float, msgpack's ExtType and Timestamp
            text = _clip(repr(item), limit + 1)
        out.append(text)
        size += len(text)
    return _clip("".join(out) + ("..." if work else ""), limit)


def _unpack_problem(e: Exception) -> str:
    """What msgpack found wrong, in words (its `StackError` has none)."""
    if isinstance(e, msgpack.StackError):
        return "nested too deeply"
    if isinstance(e, RecursionError):  # msgpack's pure-Python fallback recurses
        return "nested too deeply"
    return _clip(str(e) or type(e).__name__, 200)


def _str(v: object) -> bool:
    return isinstance(v, str)


def _bin(v: object) -> bool:
    return isinstance(v, bytes)


def _bool(v: object) -> bool:
    return isinstance(v, bool)


def _count(v: object) -> bool:
    return _is_int(v) and 0 <= v <= _MAX_CALL_ID  # type: ignore[operator]


def _positive(v: object) -> bool:
    return _is_int(v) and 1 <= v <= _MAX_CALL_ID  # type: ignore[operator]


def _tags(v: object) -> bool:
    return isinstance(v, list) and len(v) <= MAX_TAGS and all(isinstance(t, str) for t in v)


def _seconds(v: object) -> bool:
    """None, or a finite, non-negative number of seconds."""
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < float("inf"))


def _digest(v: object) -> bool:
    """None, or a short digest (an affinity key's)."""
    return v is None or (isinstance(v, bytes) and 0 < len(v) <= 64)


def _priority(v: object) -> bool:
    return _is_int(v) and -MAX_PRIORITY <= v <= MAX_PRIORITY  # type: ignore[operator]


def _output_lines(v: object) -> bool:
    return (
        type(v) is list
        and len(v) <= MAX_OUTPUT_LINES
        and all(
            type(ln) is list
            and len(ln) == 5
            and ln[0] in Stream._value2member_map_
            and _str(ln[1])
            and _str(ln[2])
            and _is_int(ln[3])
            and 0 <= ln[3] <= 100
            and _str(ln[4])
            for ln in v
        )
    )


def _path(v: object) -> bool:
    return isinstance(v, str) and len(v) <= MAX_LINKS and not v.strip("cx")


def _key(v: object) -> bool:
    """A shared value's key: 32 lowercase hex digits."""
    return isinstance(v, str) and len(v) == 32 and all(c in "0123456789abcdef" for c in v)


def _problem(v: object) -> bool:
    return _is_int(v) and v in ShareProblem._value2member_map_


def _reason(v: object) -> bool:
    return _is_int(v) and v in RejectReason._value2member_map_


# kind -> (field checks, frames after the envelope: at least, at most (None: no limit)).
# The first frame after a call's routine, or after the envelope of a step or an outcome, is
# its context frame.
_FIELDS: dict[Kind, tuple[tuple[Callable[[object], bool], ...], int, int | None]] = {
    Kind.CALL: ((_str, _bin, _str, _bool, _tags, _seconds, _seconds, _digest), 3, None),
    Kind.NEXT: ((), 1, 1),
    Kind.SEND: ((), 2, None),
    Kind.THROW: ((), 2, None),
    Kind.CLOSE: ((), 1, 1),
    Kind.CANCEL: ((), 0, 0),
    Kind.PING: ((), 0, 0),
    Kind.CREDIT: ((_positive,), 0, 0),
    Kind.RETURN: ((), 2, None),
    Kind.YIELD: ((), 2, None),
    Kind.RAISE: ((_str, _str, _str), 2, None),
    Kind.STOP: ((), 1, 1),
    Kind.PONG: ((_str, _count, _count, _tags, _count, _count), 0, 0),
    Kind.REJECT: ((_reason, _str), 0, 0),
    Kind.FETCH: ((_key, _count, _positive), 0, 0),
    Kind.PART: ((_key, _count, _count, _problem, _str), 1, 1),
    Kind.OUTPUT: ((_output_lines, _count), 0, 0),
}


# Fields a kind may carry after its fixed ones (all of them optional, in order).
_OPTIONAL: dict[Kind, tuple[Callable[[object], bool], ...]] = {
    Kind.RAISE: (_path,),
    Kind.PONG: (_positive,),
    Kind.CALL: (_priority,),
}

_KINDS: dict[int, Kind] = {kind.value: kind for kind in Kind}  # a lookup: Kind(code) costs 0.5 µs


def decode(frames: Sequence[Frame]) -> Message:
    """Parse one multipart message; raise `ProtocolError` naming what is wrong."""
    if not frames:
        raise ProtocolError("empty message")
    head = frames[0]
    if len(head) > MAX_ENVELOPE:
        raise ProtocolError(f"envelope of {len(head)} bytes exceeds {MAX_ENVELOPE}", _readable_call_id(head))
    try:
        env = msgpack.unpackb(head, use_list=True, raw=False, strict_map_key=True)
    except Exception as e:  # msgpack raises several ValueError subclasses
        raise ProtocolError(f"envelope is not msgpack: {_unpack_problem(e)}", _readable_call_id(head)) from None
    if not isinstance(env, list) or len(env) < 3:
        raise ProtocolError("envelope is not an array of [version, kind, call_id, ...]")
    version, kind_code, call_id = env[0], env[1], env[2]
    # msgpack gives exact ints (or bools, which these `type` checks reject): `type(v) is int`
    # tells the same as `_is_int`, without two calls per field on every message.
    if type(call_id) is not int or not 0 <= call_id <= _MAX_CALL_ID:
        raise ProtocolError(f"call id must be an unsigned 64-bit integer, not {_excerpt(call_id)}")
    if type(version) is not int or version != VERSION:
        raise ProtocolError(f"unsupported protocol version {_excerpt(version)} (this peer speaks {VERSION})", call_id)
    kind = _KINDS.get(kind_code) if type(kind_code) is int else None
    if kind is None:
        raise ProtocolError(f"unknown message kind {_excerpt(kind_code)}", call_id)
    checks, least, most = _FIELDS[kind]
    fields = env[3:]
    if least and len(frames) == 1:  # its frames inside the envelope, as the last field
        inline = fields.pop() if fields else None
        if type(inline) is not list or not all(type(f) is bytes for f in inline):
            raise ProtocolError(f"{kind.name.lower()} envelope lacks its frames (an array of bins last)", call_id)
        rest: tuple[Frame, ...] = tuple(inline)
    else:
        rest = tuple(frames[1:])
    if len(fields) != len(checks):
        extra = _OPTIONAL.get(kind, ())
        if len(checks) < len(fields) <= len(checks) + len(extra):
            checks += extra[: len(fields) - len(checks)]
    if len(fields) != len(checks) or not all(map(operator.call, checks, fields)):
        raise ProtocolError(f"malformed {kind.name.lower()} envelope fields {_excerpt(fields, 200)}", call_id)
    if most == 0 and rest:
        raise ProtocolError(f"{kind.name.lower()} carries no payload, got {len(rest)} frames", call_id)
    if len(rest) < least or (most is not None and len(rest) > most):
        wanted = f"{least} frames" if least == most else f"at least {least} frames"
        raise ProtocolError(f"{kind.name.lower()} needs {wanted} after its envelope, got {len(rest)}", call_id)
    return _BUILD[kind](call_id, fields, rest)


_BUILD: dict[Kind, Callable[[int, list[Any], tuple[Frame, ...]], Message]] = {
    Kind.CALL: lambda i, f, p: Call(
        i, f[0], f[1], f[2], f[3], p[0], p[2:], p[1], tuple(f[4]), f[5], f[6], f[7], f[8] if len(f) > 8 else 0
    ),
    Kind.NEXT: lambda i, f, p: Next(i, p[0]),
    Kind.SEND: lambda i, f, p: Send(i, p[1:], p[0]),
    Kind.THROW: lambda i, f, p: Throw(i, p[1:], p[0]),
    Kind.CLOSE: lambda i, f, p: Close(i, p[0]),
    Kind.CANCEL: lambda i, f, p: Cancel(i),
    Kind.PING: lambda i, f, p: Ping(i),
    Kind.CREDIT: lambda i, f, p: Credit(i, f[0]),
    Kind.RETURN: lambda i, f, p: Return(i, p[1:], p[0]),
    Kind.YIELD: lambda i, f, p: Yield(i, p[1:], p[0]),
    Kind.RAISE: lambda i, f, p: Raise(i, f[0], f[1], f[2], p[1:], p[0], f[3] if len(f) > 3 else None),
    Kind.STOP: lambda i, f, p: Stop(i, p[0]),
    Kind.PONG: lambda i, f, p: Pong(i, f[0], f[1], f[2], tuple(f[3]), f[4], f[5], f[6] if len(f) > 6 else None),
    Kind.REJECT: lambda i, f, p: Reject(i, RejectReason(f[0]), f[1]),
    Kind.FETCH: lambda i, f, p: Fetch(i, f[0], f[1], f[2]),
    Kind.PART: lambda i, f, p: Part(i, f[0], f[1], f[2], p[0], ShareProblem(f[3]), f[4]),
    Kind.OUTPUT: lambda i, f, p: Output(i, tuple(OutputLine(Stream(a), b, c, d, e) for a, b, c, d, e in f[0]), f[1]),
}
