"""Frames <-> messages. Pure: no sockets, no event loop, no unpickling.

Envelope: a msgpack array `[VERSION, kind, call_id, *fields]`, whose fields are fixed per kind
(`_FIELDS`); payload frames follow it in the same multipart message. Anything malformed raises
`ProtocolError`, whose `call_id` is set when the envelope was readable enough to name the call
(so the peer can be told which call failed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable

import msgpack

from ._messages import (
    VERSION,
    Call,
    Cancel,
    Close,
    Frame,
    Kind,
    Message,
    Next,
    Ping,
    Pong,
    Raise,
    Reject,
    RejectReason,
    Return,
    Send,
    Stop,
    Throw,
    Yield,
)

MAX_ENVELOPE = 64 * 1024
_MAX_CALL_ID = 2**64 - 1


class ProtocolError(Exception):
    """A message that is not a valid wool message; `call_id` names its call when readable."""

    def __init__(self, message: str, call_id: int | None = None) -> None:
        super().__init__(message)
        self.call_id = call_id


_packer = msgpack.Packer(use_bin_type=True)


def _envelope(msg: Message, *fields: Any) -> bytes:
    data: bytes = _packer.pack([VERSION, int(msg.kind), msg.call_id, *fields])
    return data


def encode(msg: Message) -> list[Frame]:
    """The frames of `msg`, envelope first."""
    if isinstance(msg, Call):
        return [_envelope(msg, msg.worker_id, msg.digest, msg.name, msg.generator), msg.routine, *msg.payload]
    if isinstance(msg, Raise):
        return [_envelope(msg, msg.type_name, msg.message, msg.traceback), *msg.payload]
    if isinstance(msg, (Send, Throw, Return, Yield)):
        return [_envelope(msg), *msg.payload]
    if isinstance(msg, Pong):
        return [_envelope(msg, msg.worker_id)]
    if isinstance(msg, Reject):
        return [_envelope(msg, int(msg.reason), msg.detail)]
    return [_envelope(msg)]


def _str(v: object) -> bool:
    return isinstance(v, str)


def _bin(v: object) -> bool:
    return isinstance(v, bytes)


def _bool(v: object) -> bool:
    return isinstance(v, bool)


def _reason(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v in RejectReason._value2member_map_


# kind -> (field checks, payload frames: None = none allowed, int = at least that many)
_FIELDS: dict[Kind, tuple[tuple[Callable[[object], bool], ...], int | None]] = {
    Kind.CALL: ((_str, _bin, _str, _bool), 2),
    Kind.NEXT: ((), None),
    Kind.SEND: ((), 1),
    Kind.THROW: ((), 1),
    Kind.CLOSE: ((), None),
    Kind.CANCEL: ((), None),
    Kind.PING: ((), None),
    Kind.RETURN: ((), 1),
    Kind.YIELD: ((), 1),
    Kind.RAISE: ((_str, _str, _str), 1),
    Kind.STOP: ((), None),
    Kind.PONG: ((_str,), None),
    Kind.REJECT: ((_reason, _str), None),
}


def decode(frames: Sequence[Frame]) -> Message:
    """Parse one multipart message; raise `ProtocolError` naming what is wrong."""
    if not frames:
        raise ProtocolError("empty message")
    head = frames[0]
    if len(head) > MAX_ENVELOPE:
        raise ProtocolError(f"envelope of {len(head)} bytes exceeds {MAX_ENVELOPE}")
    try:
        env = msgpack.unpackb(head, use_list=True, raw=False, strict_map_key=True)
    except Exception as e:  # msgpack raises several ValueError subclasses
        raise ProtocolError(f"envelope is not msgpack: {e}") from None
    if not isinstance(env, list) or len(env) < 3:
        raise ProtocolError("envelope is not an array of [version, kind, call_id, ...]")
    version, kind_code, call_id = env[0], env[1], env[2]
    if not isinstance(call_id, int) or isinstance(call_id, bool) or not 0 <= call_id <= _MAX_CALL_ID:
        raise ProtocolError(f"call id must be an unsigned 64-bit integer, not {call_id!r}")
    if version != VERSION:
        raise ProtocolError(f"unsupported protocol version {version!r} (this peer speaks {VERSION})", call_id)
    try:
        kind = Kind(kind_code)
    except (ValueError, TypeError):
        raise ProtocolError(f"unknown message kind {kind_code!r}", call_id) from None
    checks, min_payload = _FIELDS[kind]
    fields = env[3:]
    if len(fields) != len(checks) or not all(check(f) for check, f in zip(checks, fields)):
        raise ProtocolError(f"malformed {kind.name.lower()} envelope fields {fields!r}", call_id)
    rest = tuple(frames[1:])
    if min_payload is None and rest:
        raise ProtocolError(f"{kind.name.lower()} carries no payload, got {len(rest)} frames", call_id)
    if min_payload is not None and len(rest) < min_payload:
        raise ProtocolError(f"{kind.name.lower()} needs at least {min_payload} payload frames, got {len(rest)}", call_id)
    return _BUILD[kind](call_id, fields, rest)


_BUILD: dict[Kind, Callable[[int, list[Any], tuple[Frame, ...]], Message]] = {
    Kind.CALL: lambda i, f, p: Call(i, f[0], f[1], f[2], f[3], p[0], p[1:]),
    Kind.NEXT: lambda i, f, p: Next(i),
    Kind.SEND: lambda i, f, p: Send(i, p),
    Kind.THROW: lambda i, f, p: Throw(i, p),
    Kind.CLOSE: lambda i, f, p: Close(i),
    Kind.CANCEL: lambda i, f, p: Cancel(i),
    Kind.PING: lambda i, f, p: Ping(i),
    Kind.RETURN: lambda i, f, p: Return(i, p),
    Kind.YIELD: lambda i, f, p: Yield(i, p),
    Kind.RAISE: lambda i, f, p: Raise(i, f[0], f[1], f[2], p),
    Kind.STOP: lambda i, f, p: Stop(i),
    Kind.PONG: lambda i, f, p: Pong(i, f[0]),
    Kind.REJECT: lambda i, f, p: Reject(i, RejectReason(f[0]), f[1]),
}
