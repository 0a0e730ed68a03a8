"""How a caller answers a worker's `fetch` of part of a shared value (`wool.share`).

The answering itself lives in `wool.sharing`, which sits above this package and installs it
here when imported; a process that never imported it has shared nothing."""

from __future__ import annotations

from collections.abc import Callable

from .. import protocol as p

fetch_server: list[Callable[[p.Fetch, int], p.Part]] = []


def answer_fetch(msg: p.Fetch, limit: int) -> p.Part:
    """The `part` answering `msg`, with at most `limit` bytes of data."""
    if not fetch_server:
        return p.Part(msg.call_id, msg.key, msg.offset, 0, b"", p.ShareProblem.UNAVAILABLE, "this process shares nothing")
    return fetch_server[0](msg, limit)
