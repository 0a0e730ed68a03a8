"""Where the exception thrown into a generator is in the one its step raised (worker side),
and putting the caller's own object back there (caller side): pure, no sockets."""

from __future__ import annotations

import asyncio

from wool import protocol as p
from wool.caller._dispatch import _relink
from wool.caller._readahead import Inbox
from wool.worker._calls import _path_to


def _chain() -> tuple[BaseException, BaseException]:
    thrown = ValueError("thrown")
    try:
        try:
            raise thrown
        except ValueError:
            try:
                raise OSError("middle")
            except OSError as middle:
                raise LookupError("outer") from middle
    except LookupError as outer:
        return outer, thrown
    raise AssertionError


def test_the_path_is_the_shortest_through_causes_and_contexts() -> None:
    outer, thrown = _chain()
    assert _path_to(thrown, thrown) == ""
    assert _path_to(outer, thrown) == "cx"  # the context of its cause
    assert _path_to(outer, KeyError()) is None
    assert _path_to(outer, None) is None
    wrapped = RuntimeError("w")
    wrapped.__cause__ = wrapped.__context__ = thrown
    assert _path_to(wrapped, thrown) == "c"


def test_a_cycle_or_a_chain_too_deep_ends_the_search() -> None:
    a, b = KeyError("a"), KeyError("b")
    a.__context__, b.__context__ = b, a
    assert _path_to(a, ValueError()) is None
    thrown = ValueError()
    deep: BaseException = thrown
    for i in range(p.MAX_LINKS + 1):
        nxt = KeyError(i)
        nxt.__context__ = deep
        deep = nxt
    assert _path_to(deep, thrown) is None  # beyond what a `raise` may carry


def test_relinking_puts_the_callers_object_where_the_copy_was() -> None:
    outer, _ = _chain()
    mine = ValueError("mine")
    assert _relink(outer, "cx", mine) is outer and outer.__cause__.__context__ is mine  # type: ignore[union-attr]
    copy = ValueError("copy")
    copy.add_note("from the worker")
    assert _relink(copy, "", mine) is mine and mine.__notes__ == ["from the worker"]
    bare = RuntimeError("rebuilt without its chain")
    assert _relink(bare, "cx", mine) is bare and bare.__cause__ is None


class _Conn:
    def __init__(self) -> None:
        self.sent: list[p.Request] = []

    def subscribe(self, call_id: int, sink: object) -> None:
        pass

    def notify(self, msg: p.Request) -> None:
        self.sent.append(msg)


async def test_closing_a_read_ahead_stream_that_already_ended_sends_nothing() -> None:
    conn = _Conn()
    inbox = Inbox(conn, 5, 4)  # type: ignore[arg-type]
    inbox._deliver(p.Yield(5, (b"",)))
    inbox._deliver(p.Raise(5, "KeyError", "ahead", "", (b"",)))
    assert inbox.close(p.NO_CONTEXT) is False
    assert [type(m) for m in conn.sent] == [p.Credit]  # the initial credit only
    assert isinstance(await asyncio.wait_for(inbox.last(), 1), p.Raise)
    open_inbox = Inbox(conn, 6, 4)  # type: ignore[arg-type]
    open_inbox._deliver(p.Yield(6, (b"",)))
    assert open_inbox.close(p.NO_CONTEXT) is True and conn.sent[-1] == p.Close(6)
