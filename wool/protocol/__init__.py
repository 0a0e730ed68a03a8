"""The wool wire protocol: pure messages, codec and payload pickling (no I/O)."""

from ._codec import MAX_ENVELOPE, ProtocolError, decode, encode
from ._lifecycle import ACCEPTS, STEPS, is_final, legal_reply
from ._messages import (
    VERSION,
    Call,
    Cancel,
    Close,
    Credit,
    Frame,
    Kind,
    Message,
    NO_CONTEXT,
    Next,
    Ping,
    Pong,
    Raise,
    Reject,
    RejectReason,
    Reply,
    Request,
    Return,
    Send,
    Stop,
    Throw,
    Yield,
)
from ._payload import OUT_OF_BAND, describe, dumps, dumps_exception, loads, loads_exception

__all__ = [
    "ACCEPTS", "MAX_ENVELOPE", "NO_CONTEXT", "OUT_OF_BAND", "STEPS", "VERSION",
    "Call", "Cancel", "Close", "Credit", "Frame", "Kind", "Message", "Next", "Ping", "Pong",
    "ProtocolError", "Raise", "Reject", "RejectReason", "Reply", "Request", "Return",
    "Send", "Stop", "Throw", "Yield",
    "decode", "describe", "dumps", "dumps_exception", "encode", "is_final", "legal_reply",
    "loads", "loads_exception",
]
