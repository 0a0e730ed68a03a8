"""A value pickle refuses gets a sentence saying what to do, for the common cases: locks,
sockets, open files, generators, database connections."""

from __future__ import annotations

import pickle
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import pytest

from wool import protocol as p


def _refusal(value: object) -> Exception:
    with pytest.raises(Exception) as info:
        p.dumps(value)
    return info.value


def _generator() -> Iterator[int]:
    yield 1


@pytest.mark.parametrize(
    ("make", "advice"),
    [
        (threading.Lock, "A lock only works within one process: create it inside the routine, or once per worker in a lifespan"),
        (threading.RLock, "create it inside the routine"),
        (socket.socket, "pass its address and connect inside the routine"),
        (lambda: open(__file__, "rb"), "pass its path (or its contents) and open it inside the routine"),
        (_generator, "pass the values themselves"),
        (lambda: sqlite3.connect(":memory:"), "A database connection"),
    ],
    ids=["lock", "rlock", "socket", "file", "generator", "sqlite"],
)
def test_common_unpicklable_values_get_advice(make: Callable[[], object], advice: str) -> None:
    value = make()
    try:
        hint = p.pickling_hint(_refusal(value))
    finally:
        close = getattr(value, "close", None)
        if close is not None:
            close()
    assert advice in hint
    assert "wool.state()" in hint or "inside the routine" in hint or "values themselves" in hint


def test_a_file_open_for_writing_gets_advice(tmp_path: Path) -> None:
    with open(tmp_path / "out.txt", "w") as out:
        assert "open it inside the routine" in p.pickling_hint(_refusal(out))


def test_other_refusals_get_no_made_up_advice() -> None:
    assert p.pickling_hint(pickle.PicklingError("Can't pickle <function <lambda>>")) == ""
    assert p.pickling_hint(TypeError("cannot pickle 'weird.Thing' object")) == ""


async def test_a_lock_argument_is_refused_at_the_call_site_with_advice() -> None:
    import routines

    import wool

    async with wool.WorkerPool(size=1):
        with closing(socket.socket()) as sock:
            with pytest.raises(wool.SerializationError, match=r"connect inside the routine"):
                await routines.echo(sock)
        with pytest.raises(
            wool.SerializationError, match=r"cannot pickle '_thread.lock' object. A lock only works within one process"
        ):
            await routines.echo(threading.Lock())
