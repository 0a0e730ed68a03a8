"""Forwarding what routines print and log to the processes that called them.

Theory of operation. With forwarding on, `sys.stdout` and `sys.stderr` become tees and a
handler on the root logger listens: what is written while a call runs (its task, or a
thread running it, sees the call's slot as `current_slot_var`) is split into lines and kept
in that call's `CallOutput`; what is written outside calls only goes where it always went.
Every `FLUSH_INTERVAL`, and before each reply that yields or ends a call (so its output
arrives first), the kept lines go to the caller as one `output` message. A call's buffer
holds at most `CALL_BUFFER` characters: a routine printing in a loop loses what does not fit,
and the next message says how much (bounded memory here and at the caller). The output of
the calls a routine makes on peers comes back here (`wool.caller.output`) and goes up with
its own, so the top-level caller sees the whole tree's. A hand-started worker also keeps
writing its output to its own stdout and stderr (`tee`); a spawned one shares its pool's
terminal, and writes there only what its caller will not print.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import IO, Any, Protocol

from .. import protocol as p
from ..caller import current_slot_var
from ..caller import output as caller_output

FLUSH_INTERVAL = 0.1  # seconds between a call's output messages
CALL_BUFFER = 64 * 1024  # characters of output one call may have waiting to be sent
MESSAGE_CHARS = 32 * 1024  # characters per `output` message (well within the envelope limit)
MAX_LINE = 4096  # a longer line is cut (the codec's limit for a text field)

_FINAL = frozenset({p.Kind.RETURN, p.Kind.RAISE, p.Kind.STOP, p.Kind.YIELD, p.Kind.REJECT})


class Replier(Protocol):
    def reply(self, identity: bytes, msg: p.Reply) -> None: ...


class CallOutput:
    """One call's output waiting to be sent."""

    __slots__ = ("identity", "call_id", "lines", "size", "dropped", "partial")

    def __init__(self, identity: bytes, call_id: int) -> None:
        self.identity, self.call_id = identity, call_id
        self.lines: list[p.OutputLine] = []
        self.size = 0
        self.dropped = 0
        self.partial: dict[p.Stream, str] = {}

    def add(self, line: p.OutputLine) -> None:
        if len(line.text) > MAX_LINE:
            self.dropped += len(line.text) - MAX_LINE
            line = p.OutputLine(line.stream, line.text[:MAX_LINE], line.origin, line.level, line.logger)
        if self.size + len(line.text) > CALL_BUFFER:
            self.dropped += len(line.text) + 1
            return
        self.lines.append(line)
        self.size += len(line.text) + 1

    def write(self, stream: p.Stream, text: str, origin: str) -> None:
        *complete, rest = (self.partial.pop(stream, "") + text).split("\n")
        for line in complete:
            self.add(p.OutputLine(stream, line, origin))
        if rest:
            if len(rest) > MAX_LINE:  # no newline in sight: send what there is
                self.add(p.OutputLine(stream, rest, origin))
            else:
                self.partial[stream] = rest

    def take(self, origin: str, final: bool) -> list[p.Output]:
        if final:
            for stream, rest in list(self.partial.items()):
                self.add(p.OutputLine(stream, rest, origin))
            self.partial.clear()
        messages: list[p.Output] = []
        chunk: list[p.OutputLine] = []
        chars = 0
        for line in self.lines:
            if chunk and (chars + len(line.text) > MESSAGE_CHARS or len(chunk) >= p.MAX_OUTPUT_LINES):
                messages.append(p.Output(self.call_id, tuple(chunk)))
                chunk, chars = [], 0
            chunk.append(line)
            chars += len(line.text)
        if chunk or self.dropped:
            messages.append(p.Output(self.call_id, tuple(chunk), self.dropped))
        self.lines, self.size, self.dropped = [], 0, 0
        return messages


class _Tee:
    """Stands for `sys.stdout` or `sys.stderr`: keeps what calls write, passes the rest on."""

    def __init__(self, original: IO[str], stream: p.Stream, forwarder: OutputForwarder, tee: bool) -> None:
        self._original, self._stream, self._forwarder, self._tee = original, stream, forwarder, tee

    def write(self, text: str) -> int:
        if not self._forwarder.write(self._stream, text):
            return self._original.write(text)
        if self._tee:
            try:
                self._original.write(text)
            except (OSError, ValueError):  # the worker's own stream is gone: its caller has it
                pass
        return len(text)

    def flush(self) -> None:
        self._original.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._original, name)


class _Handler(logging.Handler):
    def __init__(self, forwarder: OutputForwarder) -> None:
        super().__init__()
        self._forwarder = forwarder

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "wool" or record.name.startswith("wool."):
            return  # wool's own records stay in the worker's log
        try:
            text = record.getMessage()
        except Exception:
            text = f"{record.msg!r} (its arguments did not format)"
        self._forwarder.log(record.levelno, record.name, text)


class OutputForwarder:
    """Keeps the output of the running calls of one worker and sends it to their callers."""

    def __init__(self, host: Replier, origin: str, *, tee: bool) -> None:
        self._host = host
        self.origin = origin
        self._tee = tee
        self._lock = threading.Lock()  # writes may come from threads running plain functions
        self._by_slot: dict[int, CallOutput] = {}
        self._by_key: dict[tuple[bytes, int], tuple[object, CallOutput]] = {}
        self._saved: tuple[Any, Any] | None = None
        self._handler = _Handler(self)

    def install(self) -> None:
        self._saved = (sys.stdout, sys.stderr)
        sys.stdout = _Tee(sys.stdout, p.Stream.STDOUT, self, self._tee)
        sys.stderr = _Tee(sys.stderr, p.Stream.STDERR, self, self._tee)
        logging.getLogger().addHandler(self._handler)
        caller_output.set_forwarder(self.nested)

    def uninstall(self) -> None:
        caller_output.set_forwarder(None)
        logging.getLogger().removeHandler(self._handler)
        if self._saved is not None:
            sys.stdout, sys.stderr = self._saved
            self._saved = None

    # -- calls -----------------------------------------------------------------------------

    def open(self, slot: object, identity: bytes, call_id: int) -> None:
        out = CallOutput(identity, call_id)
        with self._lock:
            self._by_slot[id(slot)] = out
            self._by_key[(identity, call_id)] = (slot, out)

    def close(self, key: tuple[bytes, int]) -> None:
        """The call ended (its last reply went out, after its output)."""
        with self._lock:
            entry = self._by_key.pop(key, None)
            if entry is not None:
                self._by_slot.pop(id(entry[0]), None)
        if entry is not None:
            self._send(entry[1], final=True)  # a call's end precedes its last reply
            caller_output.forget_slot(entry[0])

    def before_reply(self, identity: bytes, msg: p.Reply) -> None:
        if msg.kind in _FINAL:
            entry = self._by_key.get((identity, msg.call_id))
            if entry is not None:
                self._send(entry[1], final=True)

    def flush_all(self) -> None:
        for _, out in list(self._by_key.values()):
            if out.lines or out.dropped:
                self._send(out, final=False)

    def _send(self, out: CallOutput, final: bool) -> None:
        with self._lock:
            messages = out.take(self.origin, final)
        for msg in messages:
            self._host.reply(out.identity, msg)

    # -- what is written -------------------------------------------------------------------

    def _current(self) -> CallOutput | None:
        slot = current_slot_var.get()
        return self._by_slot.get(id(slot)) if slot is not None else None

    def write(self, stream: p.Stream, text: str) -> bool:
        """Keep `text` if a call wrote it; whether it did."""
        out = self._current()
        if out is None:
            return False
        with self._lock:
            out.write(stream, text, self.origin)
        return True

    def log(self, level: int, logger: str, text: str) -> None:
        out = self._current()
        if out is not None:
            with self._lock:
                out.add(p.OutputLine(p.Stream.LOG, text, self.origin, min(max(level, 0), 100), logger))

    def nested(self, slot: object, msg: p.Output) -> None:
        """Output of a call made by the routine holding `slot`: it goes up with its own."""
        out = self._by_slot.get(id(slot))
        if out is None:
            return
        with self._lock:
            for line in msg.lines:
                out.add(line)
            out.dropped += msg.dropped
