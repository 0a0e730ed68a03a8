"""The idle-close decision (`wool.caller._idle`), with stand-in connections: no sockets, no clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from wool.caller._connection import Connection
from wool.caller._idle import SWEEPS, IdleSweep, check_idle_timeout


@dataclass(eq=False)
class Stand:
    idle: bool = True
    requests: int = 0
    done: bool = True
    connected: Any = field(init=False)

    def __post_init__(self) -> None:
        stand = self

        class Connected:
            def done(self) -> bool:
                return stand.done

        self.connected = Connected()


def sweep(tracker: IdleSweep, *conns: Stand) -> list[Stand]:
    return cast("list[Stand]", tracker.sweep(cast("list[Connection]", list(conns))))


def test_a_connection_idle_for_as_many_sweeps_is_closed_once() -> None:
    tracker, conn = IdleSweep(), Stand()
    assert [sweep(tracker, conn) for _ in range(SWEEPS - 1)] == [[]] * (SWEEPS - 1)
    assert sweep(tracker, conn) == [conn]


def test_a_request_between_sweeps_starts_the_count_again() -> None:
    tracker, conn = IdleSweep(), Stand()
    sweep(tracker, conn)
    sweep(tracker, conn)
    conn.requests += 1  # a call came and went since the last sweep
    assert [sweep(tracker, conn) for _ in range(SWEEPS - 1)] == [[]] * (SWEEPS - 1)
    assert sweep(tracker, conn) == [conn]


def test_a_connection_with_something_open_or_still_connecting_is_never_closed() -> None:
    tracker, busy, connecting = IdleSweep(), Stand(idle=False), Stand(done=False)
    assert all(sweep(tracker, busy, connecting) == [] for _ in range(10 * SWEEPS))
    busy.idle = True  # its stream ended: counted from now
    assert [sweep(tracker, busy) for _ in range(SWEEPS)][-1] == [busy]


@pytest.mark.parametrize(("value", "expected"), [(None, None), (30, 30.0), (0.5, 0.5)])
def test_good_idle_timeouts(value: float | None, expected: float | None) -> None:
    assert check_idle_timeout(value) == expected


@pytest.mark.parametrize(
    ("value", "error"), [(0, ValueError), (-1, ValueError), (float("nan"), ValueError), (True, TypeError), ("1", TypeError)]
)
def test_bad_idle_timeouts(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="idle_timeout"):
        check_idle_timeout(value)
