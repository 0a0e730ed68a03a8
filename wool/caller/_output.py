"""What routines print and log, written out in the process that called them.

Theory of operation. A worker that forwards output (see `wool.worker._output`) sends its
calls' lines as `output` messages on the call's connection. `receive` takes them aside from
the replies: when the call was made by a routine running on this process (a nested call on a
worker that forwards), they go up into that routine's own output (`route`, `set_forwarder`),
so the top-level caller gets the output of the whole tree; otherwise they are written here:
stdout and stderr lines to this process's `sys.stdout`/`sys.stderr`, log records re-emitted
on the `wool.remote` logger with their level, each prefixed with its worker, like
`(worker 3f2a pid=4122 host=h1)`.

Identical lines within `MERGE_WINDOW` seconds (a hundred workers each printing the same
warning) are written once, then once more with the count of repeats. The merger remembers at
most `MERGE_MEMORY` distinct lines; output beyond what workers forward was dropped there and
is reported here by its size.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from .. import protocol as p

remote_log = logging.getLogger("wool.remote")

MERGE_WINDOW = 1.0  # seconds within which identical lines are merged
MERGE_MEMORY = 1024  # distinct lines the merger remembers (its memory bound)

Forwarder = Callable[[Any, p.Output], None]

_routes: dict[tuple[int, int], Any] = {}  # (id(connection), call id) -> the routine's slot
_by_slot: dict[int, list[tuple[int, int]]] = {}
_forwarder: Forwarder | None = None
enabled = True  # WorkerPool(forward_output=False) turns it off in its process


def set_forwarder(forwarder: Forwarder | None) -> None:
    """On a worker that forwards: where the output of nested calls goes (its calls' own)."""
    global _forwarder
    _forwarder = forwarder


def route(conn: object, call_id: int, slot: object) -> None:
    """The call `call_id` on `conn` was made by the routine holding `slot`."""
    if _forwarder is None or slot is None:
        return
    key = (id(conn), call_id)
    _routes[key] = slot
    _by_slot.setdefault(id(slot), []).append(key)


def forget_slot(slot: object) -> None:
    """The routine holding `slot` ended: its nested calls' output has nowhere to go up."""
    for key in _by_slot.pop(id(slot), ()):
        _routes.pop(key, None)


def receive(conn: object, msg: p.Output) -> None:
    slot = _routes.get((id(conn), msg.call_id))
    if slot is not None and _forwarder is not None:
        _forwarder(slot, msg)
    elif enabled:
        _writer().write(msg)


class Writer:
    """Writes lines out, merging identical ones (pure but for `emit` and the clock)."""

    def __init__(self, emit: Callable[[p.OutputLine, str], None], clock: Callable[[], float]) -> None:
        self._emit = emit
        self._clock = clock
        # (stream, level, logger, text) -> [first seen, repeats since, last origin]
        self._recent: OrderedDict[tuple[int, int, str, str], list[Any]] = OrderedDict()

    def write(self, msg: p.Output) -> None:
        now = self._clock()
        self.expire(now)
        for line in msg.lines:
            key = (int(line.stream), line.level, line.logger, line.text)
            seen = self._recent.get(key)
            if seen is not None:
                seen[1] += 1
                continue
            self._recent[key] = [now, 0, line.origin]
            if len(self._recent) > MERGE_MEMORY:
                self._settle(*self._recent.popitem(last=False))
            self._emit(line, f"(worker {line.origin})")
        if msg.dropped:
            note = f"[{msg.dropped} bytes of output dropped: the routine wrote faster than its worker forwards]"
            origin = msg.lines[-1].origin if msg.lines else "?"
            self._emit(p.OutputLine(p.Stream.STDERR, note, origin), f"(worker {origin})")

    def expire(self, now: float) -> None:
        """Report the repeats of lines first seen more than `MERGE_WINDOW` ago."""
        while self._recent:
            key, seen = next(iter(self._recent.items()))
            if now - seen[0] < MERGE_WINDOW:
                return
            del self._recent[key]
            self._settle(key, seen)

    def _settle(self, key: tuple[int, int, str, str], seen: list[Any]) -> None:
        if seen[1]:
            stream, level, logger, text = key
            line = p.OutputLine(p.Stream(stream), f"{text} [repeated {seen[1]}x across workers]", seen[2], level, logger)
            self._emit(line, "(workers)")

    @property
    def pending(self) -> int:
        return len(self._recent)


def _safe(text: str) -> str:
    """`text` with control characters escaped (tabs kept): a line can neither forge another
    nor send the terminal escape sequences."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == "\t" else repr(c)[1:-1] for c in text)


def emit(line: p.OutputLine, prefix: str) -> None:
    """Write `line` out in this process."""
    prefix, text = _safe(prefix), _safe(line.text)
    if line.stream is p.Stream.LOG:
        logger = _safe(line.logger)
        remote_log.log(line.level or logging.INFO, "%s %s: %s", prefix, logger, text, extra={"remote_logger": logger})
        return
    stream = sys.stdout if line.stream is p.Stream.STDOUT else sys.stderr
    try:
        stream.write(f"{prefix} {text}\n")
        stream.flush()
    except (OSError, ValueError):  # a closed or broken stream: nowhere to write
        pass


_writers: dict[int, tuple[Writer, asyncio.TimerHandle | None]] = {}


def _writer() -> Writer:
    """This loop's writer; a timer reports merged repeats while lines are pending."""
    loop = asyncio.get_running_loop()
    entry = _writers.get(id(loop))
    if entry is None:
        entry = _writers[id(loop)] = (Writer(emit, loop.time), None)
    writer, timer = entry
    if timer is None:

        def tick() -> None:
            writer.expire(loop.time())
            _writers[id(loop)] = (writer, loop.call_later(MERGE_WINDOW / 2, tick) if writer.pending else None)

        _writers[id(loop)] = (writer, loop.call_later(MERGE_WINDOW / 2, tick))
    return writer
