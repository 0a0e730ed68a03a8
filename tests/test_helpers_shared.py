"""The small leaf modules every layer shares: the endpoint parser, the seconds validator and
the rate-limited warning."""

from __future__ import annotations

import logging

import pytest

from wool._endpoints import Endpoint, parse_endpoint
from wool._seconds import check_optional_seconds, check_seconds
from wool._throttle import Throttle


@pytest.mark.parametrize(
    ("text", "parsed", "local_only"),
    [
        ("tcp://127.0.0.1:5555", Endpoint("tcp", "127.0.0.1", 5555), True),
        ("tcp://[::1]:7", Endpoint("tcp", "::1", 7), True),
        ("tcp://localhost:0", Endpoint("tcp", "localhost", 0), True),
        ("tcp://10.1.2.3:80", Endpoint("tcp", "10.1.2.3", 80), False),
        ("tcp://0.0.0.0:80", Endpoint("tcp", "0.0.0.0", 80), False),
        ("tcp://eth0:80", Endpoint("tcp", "eth0", 80), False),
        ("ipc:///run/w.sock", Endpoint("ipc", path="/run/w.sock"), True),
        ("inproc://x", Endpoint("inproc", path="x"), True),
    ],
)
def test_endpoints_parse(text: str, parsed: Endpoint, local_only: bool) -> None:
    assert parse_endpoint(text) == parsed
    assert parsed.local_only is local_only


@pytest.mark.parametrize(
    ("text", "error", "says"),
    [
        (5555, TypeError, "must be a str"),
        ("127.0.0.1:5555", ValueError, "not an endpoint"),
        ("udp://h:1", ValueError, "not an endpoint"),
        ("tcp://", ValueError, "not an endpoint"),
        ("tcp://host", ValueError, "not an endpoint"),
        ("tcp://:80", ValueError, "not an endpoint"),
        ("tcp://h:65536", ValueError, "no valid port"),
        ("tcp://h:-1", ValueError, "no valid port"),
        ("tcp://h:\u00b2", ValueError, "no valid port"),
        ("ipc://", ValueError, "not an endpoint"),
    ],
)
def test_bad_endpoints_are_refused_saying_why(text: object, error: type[Exception], says: str) -> None:
    with pytest.raises(error, match=says):
        parse_endpoint(text)


def test_wildcards_are_told_apart() -> None:
    assert parse_endpoint("tcp://*:1").is_wildcard and parse_endpoint("tcp://[::]:1").is_wildcard
    assert not parse_endpoint("tcp://127.0.0.1:1").is_wildcard and not parse_endpoint("ipc://x").is_wildcard


def test_seconds() -> None:
    assert check_seconds(3, "t") == 3.0 and isinstance(check_seconds(3, "t"), float)
    assert check_seconds(0, "t") == 0.0
    assert check_optional_seconds(None, "t") is None
    for value, error, says in [
        (True, TypeError, "t must be a number of seconds, not bool"),
        ("1", TypeError, "not str"),
        (-1, ValueError, "finite, non-negative"),
        (float("nan"), ValueError, "finite"),
        (float("inf"), ValueError, "finite"),
    ]:
        with pytest.raises(error, match=says):
            check_seconds(value, "t")
    with pytest.raises(ValueError, match="positive"):
        check_seconds(0, "t", positive=True)
    with pytest.raises(ValueError, match="between 0.2 and 10 seconds"):
        check_seconds(11, "t", at_least=0.2, at_most=10)
    with pytest.raises(ValueError, match="at least 1 seconds"):
        check_seconds(0.5, "t", at_least=1)
    with pytest.raises(TypeError, match="or None"):
        check_optional_seconds("1", "t")


def test_a_throttle_warns_once_per_kind_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("wool.test-throttle")
    throttle = Throttle(logger, interval=3600)
    with caplog.at_level(logging.DEBUG, logger="wool.test-throttle"):
        assert throttle.warn("a", "bad %r", "x\n") is True
        assert throttle.warn("a", "bad %r", "y") is False
        assert throttle.warn("b", "other") is True
    levels = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert levels == [
        ("WARNING", "bad 'x\\n' (further such messages suppressed for 3600 s)"),
        ("DEBUG", "bad 'y'"),
        ("WARNING", "other (1 similar messages suppressed before this one; further ones suppressed for 3600 s)"),
    ]
    throttle = Throttle(logger, interval=0)
    with caplog.at_level(logging.DEBUG, logger="wool.test-throttle"):
        assert throttle.warn("a", "again") and throttle.warn("a", "again")


def test_a_throttle_caps_all_kinds_together_and_counts_what_it_suppressed(caplog: pytest.LogCaptureFixture) -> None:
    """A fresh key per message (a fresh CURVE key per handshake) gets `total` warnings per
    interval, not one per message; the next warning says how many it held back."""
    logger = logging.getLogger("wool.test-throttle")
    now = [100.0]
    throttle = Throttle(logger, interval=10, total=1, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="wool.test-throttle"):
        assert [throttle.warn(i, "refused %d", i) for i in range(5000)].count(True) == 1
        now[0] += 9.9
        assert throttle.warn("fresh", "refused fresh") is False
        now[0] += 0.1
        assert throttle.warn("later", "refused later") is True
        assert throttle.warn("later again", "refused") is False
    assert [r.getMessage() for r in caplog.records] == [
        "refused 0 (further such messages suppressed for 10 s)",
        "refused later (5000 similar messages suppressed before this one; further ones suppressed for 10 s)",
    ]
    with pytest.raises(ValueError, match="total must be at least 1"):
        Throttle(logger, total=0)
