"""`python -m wool.workers --watch`: the workers of a namespace, refreshed every second.

Theory of operation. A `Watch` keeps one connection per worker discovery lists (opened when
it appears, closed when it goes) and pings each one per refresh. From two answers in a row it
computes the worker's rate of finished calls (the pong's `served` count, whose difference over
the time between the answers is calls per second). A row's state says what the watcher knows:
`ok` (answered), `unreachable` (no answer in time, or its endpoint refuses connections),
`lost` (its connection broke, or discovery stopped listing it: such a row stays on screen for
`LOST_KEPT` seconds, so a worker that died is seen, not just missing), `untrusted` (it requires
CURVE keys this watcher does not have or trust). Deciding the rows (`Watch.rows`) is pure; the
refresh loop does the I/O.

On a terminal each refresh redraws the table in place (cursor home, clear below); otherwise
each refresh is printed after the previous one, or, with `--json`, as one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable
from typing import Any, TextIO

from . import protocol as p
from ._errors import WoolError
from ._info import Discovery, WorkerInfo
from ._keys import Keys
from ._printable import printable
from .caller import Connection

LOST_KEPT = 60.0  # seconds a lost worker stays on screen
_HOME_CLEAR = "\x1b[H\x1b[J"


class _Seen:
    """What the watch knows of one worker."""

    __slots__ = ("info", "conn", "served", "at", "rate", "answer", "lost_at", "untrusted")

    def __init__(self, info: WorkerInfo) -> None:
        self.info = info
        self.conn: Connection | None = None
        self.served: int | None = None  # its last `served` count, and when it said so
        self.at = 0.0
        self.rate: float | None = None
        self.answer: p.Pong | None = None  # its answer to the latest ping, if any
        self.lost_at: float | None = None
        self.untrusted = False


class Watch:
    def __init__(self, timeout: float, keys: Keys | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._timeout = timeout
        self._keys = keys
        self._clock = clock
        self._seen: dict[str, _Seen] = {}

    def _connect(self, seen: _Seen) -> None:
        info = seen.info
        if info.public_key is not None and (self._keys is None or not self._keys.trusts(info.public_key)):
            seen.untrusted = True
            return
        try:
            seen.conn = Connection(info, keys=self._keys if info.public_key is not None else None, quiet=True)
        except WoolError:
            seen.conn = None

    def update(self, listed: list[WorkerInfo]) -> None:
        """Follow what discovery lists now: new workers are connected to, those no longer
        listed are lost."""
        now = self._clock()
        ids = {info.id for info in listed}
        for info in listed:
            if info.id not in self._seen:
                seen = self._seen[info.id] = _Seen(info)
                self._connect(seen)
        for worker_id, seen in list(self._seen.items()):
            if worker_id not in ids and seen.lost_at is None:
                self._lose(seen, now)
            if seen.lost_at is not None and now - seen.lost_at > LOST_KEPT:
                del self._seen[worker_id]

    def _lose(self, seen: _Seen, now: float) -> None:
        seen.lost_at = now
        seen.rate = None
        if seen.conn is not None:
            seen.conn.close()
            seen.conn = None

    async def ping(self) -> None:
        """Ask every connected worker how it is, at once; `timeout` bounds the wait."""

        async def ask(seen: _Seen) -> None:
            seen.answer = None
            conn = seen.conn
            if conn is None or seen.lost_at is not None:
                return
            if conn.lost is not None:
                self._lose(seen, self._clock())
                return
            call_id = conn.new_call_id()
            try:
                reply = await asyncio.wait_for(conn.request(p.Ping(call_id), False), self._timeout)
            except TimeoutError:
                conn.forget(call_id)  # a late pong is dropped
                return
            except WoolError:
                self._lose(seen, self._clock())
                return
            if isinstance(reply, p.Pong) and reply.worker_id == seen.info.id:
                self._answered(seen, reply, self._clock())

        await asyncio.gather(*(ask(seen) for seen in self._seen.values()))

    def _answered(self, seen: _Seen, pong: p.Pong, now: float) -> None:
        seen.answer = pong
        if seen.served is not None and now > seen.at and pong.served >= seen.served:
            seen.rate = (pong.served - seen.served) / (now - seen.at)
        seen.served, seen.at = pong.served, now

    def rows(self) -> list[dict[str, Any]]:
        """One row per worker, as `python -m wool.workers --json` gives them, with `state`,
        `calls_per_s` and `served`."""
        rows = []
        for seen in sorted(self._seen.values(), key=lambda s: (s.info.host, s.info.endpoint)):
            answer = seen.answer
            state = (
                "lost"
                if seen.lost_at is not None
                else "untrusted"
                if seen.untrusted
                else "ok"
                if answer is not None
                else "unreachable"
            )
            rows.append(
                {
                    **seen.info.to_dict(),
                    "state": state,
                    "reachable": answer is not None,
                    "calls": answer.calls if answer is not None else None,
                    "queued": answer.queued if answer is not None else None,
                    "served": answer.served if answer is not None else None,
                    "calls_per_s": round(seen.rate, 1) if seen.rate is not None and answer is not None else None,
                }
            )
        return rows

    def close(self) -> None:
        for seen in self._seen.values():
            if seen.conn is not None:
                seen.conn.close()
                seen.conn = None


def format_rows(rows: list[dict[str, Any]]) -> str:
    header = ("ID", "ENDPOINT", "PID", "HOST", "STATE", "CALLS/S", "CALLS", "QUEUED", "DONE", "MAX")
    lines: list[tuple[str, ...]] = [header]

    def shown(value: Any) -> str:
        return "-" if value is None else f"{value:.1f}" if isinstance(value, float) else str(value)

    for r in rows:
        cells = (
            r["id"][:12],
            r["endpoint"],
            str(r["pid"]),
            r["host"],
            r["state"],
            shown(r["calls_per_s"]),
            shown(r["calls"]),
            shown(r["queued"]),
            shown(r["served"]),
            shown(r["max_calls"]),
        )
        lines.append(tuple(printable(cell) for cell in cells))  # ids, hosts, endpoints come from peers
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in lines)


async def watch(
    discovery: Discovery,
    spec: str,
    out: TextIO,
    *,
    interval: float = 1.0,
    timeout: float = 1.0,
    keys: Keys | None = None,
    as_json: bool = False,
) -> None:
    """Refresh every `interval` seconds until SIGINT or SIGTERM (then return normally)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    state = Watch(min(timeout, interval), keys)
    redraw = not as_json and out.isatty()
    try:
        while not stop.is_set():
            started = loop.time()
            problem = None
            try:
                state.update(await discovery.workers())
            except Exception as e:  # a registry being rewritten, a backend's hiccup: the next refresh may do
                problem = printable(f"discovery failed: {type(e).__name__}: {e}")
            await state.ping()
            rows = state.rows()
            if as_json:
                out.write(json.dumps({"time": time.time(), "workers": rows, **({"error": problem} if problem else {})}) + "\n")
            else:
                stamp = time.strftime("%H:%M:%S")
                title = f"wool workers in {spec} at {stamp}, every {interval:g} s (Ctrl-C to stop)"
                body = format_rows(rows) if rows else f"no workers in {spec}"
                if problem:
                    body += f"\n{problem}"
                out.write((_HOME_CLEAR if redraw else "") + f"{title}\n{body}\n" + ("" if redraw else "\n"))
            out.flush()
            try:
                await asyncio.wait_for(stop.wait(), max(0.0, started + interval - loop.time()))
            except TimeoutError:
                pass
    finally:
        state.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
