"""The codec: every message kind survives `decode(encode(m))`, and every malformed input raises
the one `ProtocolError`, naming the problem (and the call, when its id was readable)."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wool
from wool import protocol as p

DIGEST = bytes(range(16))
ROUTINE = b"routine-pickle"
ARGS = (b"args-pickle", b"\x00" * 70_000, b"")

MESSAGES = [
    p.Call(1, "worker-a", DIGEST, "mod.add", False, ROUTINE, (b"args",)),
    p.Call(2, "worker-a", DIGEST, "mod.ticks", True, ROUTINE, ARGS),
    p.Call(3, "", b"", "", False, b"", (b"",)),
    p.Call(3, "w", DIGEST, "mod.f", False, ROUTINE, (b"a",), b"context", ("gpu", "eu"), 2.5, 0.75),
    p.Call(3, "w", DIGEST, "mod.f", True, ROUTINE, ARGS, b"context", (), None, 0),
    p.Call(4, "w", DIGEST, "mod.f", False, ROUTINE, ARGS, b"context", (), None, None, DIGEST),
    p.Call(4, "w", DIGEST, "mod.f", False, ROUTINE, ARGS, b"context", (), None, None, None, 10),
    p.Call(4, "w", DIGEST, "mod.f", False, ROUTINE, ARGS, b"context", (), None, None, DIGEST, -(2**31 - 1)),
    p.Output(5, (p.OutputLine(p.Stream.STDOUT, "hello \u2603", "3f2a pid=1 host=h"),)),
    p.Output(5, (p.OutputLine(p.Stream.LOG, "careful", "3f2a pid=1 host=h", 30, "app.reports"),), dropped=12),
    p.Output(5, ()),
    p.Next(4),
    p.Next(4, b"context"),
    p.Send(5, (b"value",)),
    p.Send(6, ARGS),
    p.Throw(7, (b"exc",)),
    p.Throw(8, ARGS),
    p.Close(9),
    p.Close(9, b"context"),
    p.Cancel(10),
    p.Ping(11),
    p.Credit(12, 64),
    p.Return(12, (b"result",)),
    p.Return(13, ARGS),
    p.Return(13, ARGS, b"context"),
    p.Yield(14, (b"item",)),
    p.Yield(15, ARGS),
    p.Raise(16, "tests.routines.Oops", "boom \u2603", "Traceback (most recent call last):\n ...", (b"exc",)),
    p.Raise(17, "KeyError", "", "", ARGS),
    p.Stop(18),
    p.Stop(18, b"context"),
    p.Yield(18, (b"item",), b"context"),
    p.Send(18, (b"value",), b"context"),
    p.Throw(18, (b"exc",), b"context"),
    p.Raise(18, "KeyError", "", "", ARGS, b"context"),
    p.Raise(18, "KeyError", "", "", ARGS, b"context", ""),
    p.Raise(18, "RuntimeError", "", "", ARGS, thrown="c"),
    p.Raise(18, "RuntimeError", "", "", ARGS, thrown="xcxcxcxc"),
    p.Pong(19, "worker-a"),
    p.Pong(20, "worker-b", calls=3, queued=2),
    p.Pong(20, "worker-c", 1, 0, ("gpu", "eu"), 8),
    p.Pong(21, "worker-d", 0, 0, (), 0, served=12345),
    p.Pong(22, "worker-e", 0, 0, (), 0, 7, max_message_size=1 << 20),
    *(p.Reject(20 + i, reason, f"detail for {reason.name}") for i, reason in enumerate(p.RejectReason)),
    p.Fetch(23, "0123456789abcdef" * 2, 0, 1 << 20),
    p.Part(24, "0123456789abcdef" * 2, 1 << 20, 3 << 20, b"\x00" * 70_000),
    p.Part(24, "0123456789abcdef" * 2, 0, 10, b"0123456789"),
    p.Part(25, "0123456789abcdef" * 2, 0, 0, b"", p.ShareProblem.RELEASED, "by release() at x.py:3 (process 7)"),
    p.Ping(0),
    p.Ping(2**64 - 1),
    p.Return(2**64 - 1, (b"largest call id",)),
]


def _id(msg: p.Message) -> str:
    extra = f"-{msg.reason.name}" if isinstance(msg, p.Reject) else ""
    return f"{type(msg).__name__}{extra}-{msg.call_id}"


def test_every_kind_is_covered() -> None:
    assert {m.kind for m in MESSAGES} == set(p.Kind)
    assert {m.reason for m in MESSAGES if isinstance(m, p.Reject)} == set(p.RejectReason)


@pytest.mark.parametrize("msg", MESSAGES, ids=_id)
def test_round_trip(msg: p.Message) -> None:
    frames = p.encode(msg)
    assert p.decode(frames) == msg
    # As received from a socket: every frame a fresh bytes object.
    assert p.decode([bytes(f) for f in frames]) == msg


def _after_envelope(msg: p.Message) -> list[bytes]:
    """The frames that follow a message's envelope: routine, context, payload."""
    payload = getattr(msg, "payload", ())
    routine = (msg.routine,) if isinstance(msg, p.Call) else ()
    context = (msg.context,) if hasattr(msg, "context") else ()
    return [bytes(f) for f in (*routine, *context, *payload)]


@pytest.mark.parametrize("msg", [m for m in MESSAGES if hasattr(m, "context")], ids=_id)
def test_small_frames_travel_inside_the_envelope_and_large_ones_on_their_own(msg: p.Message) -> None:
    """A message whose frames are small is one frame; one carrying a large buffer keeps
    every frame its own (sent without copying), the envelope small."""
    frames = p.encode(msg)
    rest = _after_envelope(msg)
    if sum(map(len, rest)) <= p.INLINE_MAX:
        assert len(frames) == 1
        assert msgpack.unpackb(frames[0])[-1] == rest
    else:
        assert [bytes(f) for f in frames[1:]] == rest
        assert len(frames[0]) < 200


def test_a_view_travels_as_its_own_frame_however_small() -> None:
    frames = p.encode(p.Return(3, (memoryview(b"view"),)))
    assert [bytes(f) for f in frames[1:]] == [b"", b"view"]


def test_multi_frame_payload_keeps_frame_boundaries() -> None:
    payload = (b"a", b"", b"bc", memoryview(b"def"))
    msg = p.Return(3, payload)
    decoded = p.decode(p.encode(msg))
    assert isinstance(decoded, p.Return)
    assert [bytes(f) for f in decoded.payload] == [b"a", b"", b"bc", b"def"]


def env(*items: Any) -> bytes:
    return msgpack.packb(list(items), use_bin_type=True)


V = p.VERSION
K = p.Kind
CALL_FIELDS = ("w", DIGEST, "name", False, [], None, None, None)

# (frames, message pattern, call id expected on the error)
CORRUPT = [
    pytest.param([], "empty message", None, id="empty-message"),
    pytest.param([b"\x90" * (p.MAX_ENVELOPE + 1)], "exceeds", None, id="oversize-envelope"),
    # The call id of an oversize envelope is still read, so the call it names can be failed.
    pytest.param([env(V, K.PING, 1) + b"\x00" * p.MAX_ENVELOPE], "exceeds", 1, id="oversize-valid-prefix"),
    pytest.param([b""], "not msgpack", None, id="empty-envelope"),
    pytest.param([b"\xc1"], "not msgpack", None, id="reserved-msgpack-byte"),
    pytest.param([b"\x93\x01\x07"], "not msgpack", None, id="truncated-msgpack"),
    pytest.param([env(V, K.PING, 1) + b"\x01"], "not msgpack", 1, id="trailing-bytes"),
    pytest.param([b"hello, world"], "not msgpack", None, id="text"),
    pytest.param([msgpack.packb({1: 2})], "not msgpack", None, id="map-with-int-keys"),
    pytest.param([msgpack.packb({"v": 1, "k": 7, "id": 1})], "not an array", None, id="map"),
    pytest.param([msgpack.packb(7)], "not an array", None, id="int"),
    pytest.param([msgpack.packb("ping")], "not an array", None, id="str"),
    pytest.param([msgpack.packb(b"\x93\x01\x07\x01")], "not an array", None, id="bin"),
    pytest.param([env()], "not an array", None, id="empty-array"),
    pytest.param([env(V, K.PING)], "not an array", None, id="two-item-array"),
    pytest.param([env(V, K.PING, True)], "call id", None, id="bool-call-id"),
    pytest.param([env(V, K.PING, -1)], "call id", None, id="negative-call-id"),
    pytest.param([env(V, K.PING, -(2**63))], "call id", None, id="most-negative-call-id"),
    pytest.param([env(V, K.PING, 1.0)], "call id", None, id="float-call-id"),
    pytest.param([env(V, K.PING, 1e30)], "call id", None, id="huge-float-call-id"),
    pytest.param([env(V, K.PING, "1")], "call id", None, id="str-call-id"),
    pytest.param([env(V, K.PING, None)], "call id", None, id="nil-call-id"),
    pytest.param([env(V, K.PING, [1])], "call id", None, id="array-call-id"),
    pytest.param([env(99, K.PING, 5)], r"version 99\b", 5, id="future-version"),
    pytest.param([env(V - 1, K.CALL, 5)], rf"version {V - 1} \(this peer speaks {V}\)", 5, id="previous-version"),
    pytest.param([env(0, K.PING, 5)], r"version 0\b", 5, id="version-zero"),
    pytest.param([env("1", K.PING, 5)], "version '1'", 5, id="str-version"),
    pytest.param([env(None, K.PING, 5)], "version None", 5, id="nil-version"),
    pytest.param(
        [env(True, K.PING, 5)],
        "version",
        5,
        id="bool-version",
    ),
    pytest.param(
        [env(1.0, K.PING, 5)],
        "version",
        5,
        id="float-version",
    ),
    pytest.param([env(V, 0, 6)], "unknown message kind 0", 6, id="kind-zero"),
    pytest.param([env(V, 10, 6)], "unknown message kind 10", 6, id="kind-between-ranges"),
    pytest.param([env(V, K.CREDIT, 6, 0)], "malformed credit", 6, id="credit-of-zero"),
    pytest.param([env(V, K.CREDIT, 6)], "malformed credit", 6, id="credit-missing-count"),
    pytest.param([env(V, K.CREDIT, 6, "5")], "malformed credit", 6, id="credit-text-count"),
    pytest.param([env(V, 99, 6)], "unknown message kind 99", 6, id="kind-99"),
    pytest.param([env(V, -1, 6)], "unknown message kind -1", 6, id="negative-kind"),
    pytest.param([env(V, "ping", 6)], "unknown message kind 'ping'", 6, id="str-kind"),
    pytest.param([env(V, [7], 6)], "unknown message kind", 6, id="array-kind"),
    pytest.param([env(V, {"k": 7}, 6)], "unknown message kind", 6, id="map-kind"),
    pytest.param([env(V, None, 6)], "unknown message kind None", 6, id="nil-kind"),
    pytest.param(
        [env(V, 16.0, 6), b"x"],
        "kind",
        6,
        id="float-kind",
    ),
    pytest.param(
        [env(V, True, 6, *CALL_FIELDS), b"r", b"a"],
        "kind",
        6,
        id="bool-kind",
    ),
    # wrong field types, per kind
    pytest.param(
        [env(V, K.CALL, 7, 1, DIGEST, "n", False, [], None, None, None), b"r", b"c", b"a"],
        "malformed call",
        7,
        id="call-int-worker",
    ),
    pytest.param(
        [env(V, K.CALL, 7, b"w", DIGEST, "n", False, [], None, None, None), b"r", b"c", b"a"],
        "malformed call",
        7,
        id="call-bin-worker",
    ),
    pytest.param(
        [env(V, K.CALL, 7, "w", "digest", "n", False, [], None, None, None), b"r", b"c", b"a"],
        "malformed call",
        7,
        id="call-str-digest",
    ),
    pytest.param(
        [env(V, K.CALL, 7, "w", DIGEST, None, False, [], None, None, None), b"r", b"c", b"a"],
        "malformed call",
        7,
        id="call-nil-name",
    ),
    pytest.param(
        [env(V, K.CALL, 7, "w", DIGEST, "n", 0, [], None, None, None), b"r", b"c", b"a"],
        "malformed call",
        7,
        id="call-int-generator",
    ),
    pytest.param(
        [env(V, K.CALL, 7, "w", DIGEST, "n", "yes", [], None, None, None), b"r", b"c", b"a"],
        "malformed call",
        7,
        id="call-str-generator",
    ),
    pytest.param(
        [env(V, K.CALL, 7, "w", DIGEST, "n", False, "gpu", None, None, None), b"r", b"c", b"a"],
        "malformed call",
        7,
        id="call-str-tags",
    ),
    pytest.param(
        [env(V, K.CALL, 7, "w", DIGEST, "n", False, [1], None, None, None), b"r", b"c", b"a"],
        "malformed call",
        7,
        id="call-int-tag",
    ),
    pytest.param(
        [env(V, K.CALL, 7, "w", DIGEST, "n", False, ["t"] * 65, None, None, None), b"r", b"c", b"a"],
        "malformed call",
        7,
        id="call-too-many-tags",
    ),
    pytest.param(
        [env(V, K.CALL, 7, "w", DIGEST, "n", False, [], None, None, "key"), b"r", b"c", b"a"],
        "malformed call",
        7,
        id="call-str-affinity",
    ),
    pytest.param(
        [env(V, K.CALL, 7, "w", DIGEST, "n", False, [], None, None, b"k" * 65), b"r", b"c", b"a"],
        "malformed call",
        7,
        id="call-long-affinity",
    ),
    pytest.param(
        [env(V, K.CALL, 7, "w", DIGEST, "n", False, [], -1.0, None, None), b"r", b"c", b"a"],
        "malformed call",
        7,
        id="call-negative-timeout",
    ),
    pytest.param(
        [env(V, K.CALL, 7, "w", DIGEST, "n", False, [], "1", None, None), b"r", b"c", b"a"],
        "malformed call",
        7,
        id="call-str-timeout",
    ),
    pytest.param(
        [env(V, K.CALL, 7, "w", DIGEST, "n", False, [], None, float("inf"), None), b"r", b"c", b"a"],
        "malformed call",
        7,
        id="call-infinite-remaining",
    ),
    pytest.param(
        [env(V, K.CALL, 7, "w", DIGEST, "n", False, [], None, float("nan"), None), b"r", b"c", b"a"],
        "malformed call",
        7,
        id="call-nan-remaining",
    ),
    pytest.param(
        [env(V, K.CALL, 7, "w", DIGEST, "n", False, [], None, True, None), b"r", b"c", b"a"],
        "malformed call",
        7,
        id="call-bool-remaining",
    ),
    pytest.param([env(V, K.RAISE, 7, "T", "m", 3), b"e"], "malformed raise", 7, id="raise-int-traceback"),
    pytest.param([env(V, K.RAISE, 7, b"T", "m", "tb"), b"e"], "malformed raise", 7, id="raise-bin-type"),
    pytest.param([env(V, K.PONG, 7, 42, 0, 0, [], 0, 0)], "malformed pong", 7, id="pong-int-worker"),
    pytest.param([env(V, K.PONG, 7, None, 0, 0, [], 0, 0)], "malformed pong", 7, id="pong-nil-worker"),
    pytest.param([env(V, K.PONG, 7, "w", 0, 0, ["a", 2], 0, 0)], "malformed pong", 7, id="pong-int-tag"),
    pytest.param([env(V, K.PONG, 7, "w", 0, 0, [], -1, 0)], "malformed pong", 7, id="pong-negative-max-calls"),
    pytest.param([env(V, K.REJECT, 7, 99, "d")], "malformed reject", 7, id="reject-unknown-reason"),
    pytest.param([env(V, K.REJECT, 7, 0, "d")], "malformed reject", 7, id="reject-reason-zero"),
    pytest.param([env(V, K.REJECT, 7, True, "d")], "malformed reject", 7, id="reject-bool-reason"),
    pytest.param([env(V, K.REJECT, 7, 1.0, "d")], "malformed reject", 7, id="reject-float-reason"),
    pytest.param([env(V, K.REJECT, 7, "MALFORMED", "d")], "malformed reject", 7, id="reject-str-reason"),
    pytest.param([env(V, K.REJECT, 7, 3, b"d")], "malformed reject", 7, id="reject-bin-detail"),
    # wrong field counts
    pytest.param([env(V, K.CALL, 8, "w", DIGEST, "n", False), b"r", b"c", b"a"], "malformed call", 8, id="call-missing-field"),
    pytest.param(
        [env(V, K.CALL, 8, *CALL_FIELDS, 0, 0), b"r", b"c", b"a"], "malformed call", 8, id="call-extra-field"
    ),  # one more than its optional priority
    pytest.param([env(V, K.NEXT, 8, 0), b""], "malformed next", 8, id="next-extra-field"),
    pytest.param([env(V, K.CANCEL, 8, "why")], "malformed cancel", 8, id="cancel-extra-field"),
    pytest.param([env(V, K.RAISE, 8, "T", "m"), b"e"], "malformed raise", 8, id="raise-missing-field"),
    pytest.param([env(V, K.RAISE, 8, "T", "m", "tb", "", ""), b"e"], "malformed raise", 8, id="raise-extra-field"),
    pytest.param([env(V, K.RAISE, 8, "T", "m", "tb", None), b"e"], "malformed raise", 8, id="raise-nil-thrown"),
    pytest.param([env(V, K.RAISE, 8, "T", "m", "tb", 0), b"e"], "malformed raise", 8, id="raise-int-thrown"),
    pytest.param([env(V, K.RAISE, 8, "T", "m", "tb", "cy"), b"e"], "malformed raise", 8, id="raise-thrown-bad-link"),
    pytest.param([env(V, K.RAISE, 8, "T", "m", "tb", "c" * 9), b"e"], "malformed raise", 8, id="raise-thrown-too-deep"),
    pytest.param([env(V, K.RAISE, 8, "T", "m", "tb", b"c"), b"e"], "malformed raise", 8, id="raise-bin-thrown"),
    pytest.param([env(V, K.PONG, 8)], "malformed pong", 8, id="pong-missing-field"),
    pytest.param([env(V, K.PONG, 8, "w", 0, 0, [], 0)], "malformed pong", 8, id="pong-old-fields"),
    pytest.param([env(V, K.PONG, 8, "w", 0, 0, [], 0, 0, 0)], "malformed pong", 8, id="pong-zero-message-size"),
    pytest.param([env(V, K.PONG, 8, "w", 0, 0, [], 0, 0, "1")], "malformed pong", 8, id="pong-text-message-size"),
    pytest.param([env(V, K.PONG, 8, "w", 0, 0, [], 0, 0, 1, 1)], "malformed pong", 8, id="pong-extra-field"),
    pytest.param([env(V, K.PONG, 8, "w", -1, 0, [], 0, 0)], "malformed pong", 8, id="pong-negative-count"),
    pytest.param([env(V, K.PONG, 8, "w", 0, 0, [], 0, -5)], "malformed pong", 8, id="pong-negative-served"),
    pytest.param([env(V, K.PONG, 8, "w", 0, "1", [], 0, 0)], "malformed pong", 8, id="pong-text-count"),
    pytest.param([env(V, K.REJECT, 8, 3)], "malformed reject", 8, id="reject-missing-field"),
    # payload frames on a kind that takes none
    *(
        pytest.param(
            [env(V, kind, 9), b"x"], f"{kind.name.lower()} carries no payload, got 1", 9, id=f"{kind.name.lower()}-with-payload"
        )
        for kind in (K.CANCEL, K.PING)
    ),
    pytest.param(
        [env(V, K.PONG, 9, "w", 0, 0, [], 0, 0), b"x", b"y"], "pong carries no payload, got 2", 9, id="pong-with-payload"
    ),
    pytest.param([env(V, K.REJECT, 9, 1, "d"), b""], "reject carries no payload, got 1", 9, id="reject-with-payload"),
    # a step or end that carries more than its context frame, or not even that
    *(
        pytest.param(
            [env(V, kind, 9), b"c", b"x"],
            f"{kind.name.lower()} needs 1 frames after its envelope, got 2",
            9,
            id=f"{kind.name.lower()}-with-payload",
        )
        for kind in (K.NEXT, K.CLOSE, K.STOP)
    ),
    *(
        pytest.param(
            [env(V, kind, 9)],
            f"{kind.name.lower()} envelope lacks its frames",
            9,
            id=f"{kind.name.lower()}-no-context",
        )
        for kind in (K.NEXT, K.CLOSE, K.STOP)
    ),
    # missing payload frames
    pytest.param([env(V, K.CALL, 10, *CALL_FIELDS)], "call envelope lacks its frames", 10, id="call-no-frames"),
    pytest.param(
        [env(V, K.CALL, 10, *CALL_FIELDS), b"r", b"c"],
        "call needs at least 3 frames after its envelope, got 2",
        10,
        id="call-no-args",
    ),
    *(
        pytest.param(
            [env(V, kind, 10), b"c"],
            f"{kind.name.lower()} needs at least 2 frames after its envelope, got 1",
            10,
            id=f"{kind.name.lower()}-no-payload",
        )
        for kind in (K.SEND, K.THROW, K.RETURN, K.YIELD)
    ),
    pytest.param([env(V, K.RAISE, 10, "T", "m", "tb")], "raise envelope lacks its frames", 10, id="raise-no-frames"),
    # frames inside the envelope: fewer than the kind needs, or not an array of bins
    pytest.param([env(V, K.RAISE, 10, "T", "m", "tb", [b"c"])], "raise needs at least 2", 10, id="raise-no-payload-inline"),
    pytest.param([env(V, K.CALL, 10, *CALL_FIELDS, [b"r", b"c"])], "call needs at least 3", 10, id="call-no-args-inline"),
    pytest.param([env(V, K.RETURN, 10, [b"c", "text"])], "return envelope lacks its frames", 10, id="return-inline-text"),
    pytest.param([env(V, K.RETURN, 10, b"c")], "return envelope lacks its frames", 10, id="return-inline-not-array"),
    pytest.param([env(V, K.RETURN, 10, [b"c", b"v"], [b"c", b"v"])], "malformed return", 10, id="return-inline-twice"),
    pytest.param([env(V, K.NEXT, 10, [b"c", b"x"])], "next needs 1 frames", 10, id="next-inline-with-payload"),
    # fetching a shared value: keys are 32 hex digits, lengths positive, a part has one frame
    pytest.param([env(V, K.FETCH, 10, "k" * 32, 0, 5)], "malformed fetch", 10, id="fetch-key-not-hex"),
    pytest.param([env(V, K.FETCH, 10, "0" * 31, 0, 5)], "malformed fetch", 10, id="fetch-key-short"),
    pytest.param([env(V, K.FETCH, 10, "0" * 32, -1, 5)], "malformed fetch", 10, id="fetch-negative-offset"),
    pytest.param([env(V, K.FETCH, 10, "0" * 32, 0, 0)], "malformed fetch", 10, id="fetch-zero-length"),
    pytest.param([env(V, K.FETCH, 10, "0" * 32, 0)], "malformed fetch", 10, id="fetch-no-length"),
    pytest.param([env(V, K.FETCH, 10, "0" * 32, 0, 5), b"x"], "fetch carries no payload", 10, id="fetch-with-frame"),
    pytest.param([env(V, K.PART, 10, "0" * 32, 0, 5, 0, "", [b"a", b"b"])], "part needs 1 frames", 10, id="part-two-frames"),
    pytest.param([env(V, K.PART, 10, "0" * 32, 0, 5, 9, "", [b"a"])], "malformed part", 10, id="part-unknown-problem"),
    pytest.param([env(V, K.PART, 10, "0" * 32, 0, 5, True, "", [b"a"])], "malformed part", 10, id="part-bool-problem"),
    pytest.param([env(V, K.PART, 10, "0" * 32, 0, 5, 0, "")], "part envelope lacks its frames", 10, id="part-no-data"),
]


@pytest.mark.parametrize(("frames", "pattern", "call_id"), CORRUPT)
def test_corrupt_input_raises_protocol_error(frames: list[bytes], pattern: str, call_id: int | None) -> None:
    with pytest.raises(p.ProtocolError, match=pattern) as info:
        p.decode(frames)
    assert info.value.call_id == call_id


def test_protocol_error_is_a_plain_wool_error() -> None:
    """One error type for all of it: not a msgpack or pickle error leaking through, and a
    `WoolError`, so that a user catching wool's errors catches it too."""
    with pytest.raises(p.ProtocolError) as info:
        p.decode([b"\xc1"])
    assert type(info.value) is p.ProtocolError
    assert isinstance(info.value, wool.WoolError)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_a_raise_carries_its_path_to_the_thrown_exception_only_when_it_has_one() -> None:
    """Without one, a `raise` has the shape it always had (three fields): peers that do not
    know the field still read every other `raise`."""
    plain = msgpack.unpackb(p.encode(p.Raise(3, "T", "m", "tb", (b"e",)))[0])
    linked = msgpack.unpackb(p.encode(p.Raise(3, "T", "m", "tb", (b"e",), thrown="xc"))[0])
    assert plain[3:] == ["T", "m", "tb", [b"", b"e"]] and linked[3:] == ["T", "m", "tb", "xc", [b"", b"e"]]
    with pytest.raises(p.ProtocolError, match="path to the thrown exception 'z' is malformed"):
        p.encode(p.Raise(3, "T", "m", "tb", (b"e",), thrown="z"))


def test_a_pong_tells_its_message_size_limit_only_when_it_has_one() -> None:
    """Without one, a `pong` has the shape it always had (six fields), which every peer reads;
    a pong of that shape decodes with no limit."""
    plain = msgpack.unpackb(p.encode(p.Pong(3, "w"))[0])
    told = msgpack.unpackb(p.encode(p.Pong(3, "w", max_message_size=4096))[0])
    assert len(plain) == 3 + 6 and told[3:] == [*plain[3:], 4096]
    decoded = p.decode([env(V, K.PONG, 3, "w", 0, 0, [], 0, 0)])
    assert isinstance(decoded, p.Pong) and decoded.max_message_size is None


def test_an_envelope_too_large_to_encode_raises_protocol_error() -> None:
    """Tags are clipped to 64 of 256 characters, but in 4-byte UTF-8 that is still over
    the envelope limit: encoding refuses it with the one error, naming the call."""
    tags = tuple(chr(0x1F600 + i) + "\U0001f600" * 255 for i in range(64))
    with pytest.raises(p.ProtocolError, match="call envelope of .* bytes exceeds") as info:
        p.encode(p.Call(7, "w", b"d" * 16, "f", False, b"r", (b"a",), tags=tags))
    assert info.value.call_id == 7


def test_maximal_envelope_size_is_accepted() -> None:
    """The limit is inclusive: an envelope of exactly MAX_ENVELOPE bytes is decoded."""
    size = p.MAX_ENVELOPE
    while len(head := env(V, K.REJECT, 1, 3, "d" * size)) > p.MAX_ENVELOPE:
        size -= 1
    assert len(head) == p.MAX_ENVELOPE
    with pytest.raises(p.ProtocolError, match="exceeds"):
        p.decode([env(V, K.REJECT, 1, 3, "d" * (size + 1))])
    msg = p.decode([head])
    assert isinstance(msg, p.Reject) and msg.reason is p.RejectReason.MALFORMED


@pytest.mark.parametrize(
    "msg",
    [
        pytest.param(p.Raise(1, "ValueError", "x" * 40_000, "Traceback ...\nValueError: " + "x" * 40_000, (b"e",)), id="raise"),
        pytest.param(p.Reject(2, p.RejectReason.MALFORMED, "d" * (p.MAX_ENVELOPE + 1)), id="reject"),
    ],
)
def test_encode_never_builds_what_decode_refuses(msg: p.Message) -> None:
    try:
        frames = p.encode(msg)
    except p.ProtocolError:
        return  # refusing to encode it is fine too
    decoded = p.decode(frames)
    assert decoded.call_id == msg.call_id and decoded.kind is msg.kind


# -- nesting: a hostile peer's 1,000-deep envelope is one ProtocolError, described briefly ------

LIST, MAP = b"\x91", b"\x81\xa1k"  # a 1-item array; a 1-entry map whose key is "k"


def nested(depth: int, level: bytes = LIST, leaf: bytes = b"\x00") -> bytes:
    """The msgpack bytes of one value nested `depth` levels deep."""
    return level * depth + leaf


def deep_envelopes(depth: int, level: bytes) -> list[tuple[str, bytes, int | None]]:
    """(where, envelope, call id the error must name) with the deep value in each position."""
    deep = nested(depth, level)
    head = env(V, K.CALL, 7)[1:]  # the three first items, without their array header
    fields = b"".join(msgpack.packb(f, use_bin_type=True) for f in CALL_FIELDS)
    # Before the call id, a value msgpack refuses (1,024 levels or more) leaves it unread.
    readable = 7 if depth < 1_024 else None
    return [
        ("whole", deep, None),
        ("version", b"\x93" + deep + env(K.PING, 7)[1:], readable),
        ("kind", b"\x93" + msgpack.packb(V) + deep + b"\x07", readable),
        ("call id", b"\x93" + msgpack.packb(V) + msgpack.packb(int(K.PING)) + deep, None),
        ("first field", b"\x9c" + head + deep + fields[1:] + b"\x91\xc4\x00", 7),
        ("tags", b"\x9b" + head + fields.replace(b"\x90", b"\x91" + deep, 1) + b"\x91\xc4\x00", 7),
        ("inline frames", b"\x9c" + head + fields + b"\x91" + deep, 7),
        ("extra field", b"\x95" + env(V, K.PING, 7)[1:] + deep + b"\xc0", 7),
    ]


@pytest.mark.parametrize("depth", [1_000, 1_023, 1_024, 5_000, 100_000])
@pytest.mark.parametrize("level", [LIST, MAP], ids=["arrays", "maps"])
def test_a_deeply_nested_envelope_is_one_protocol_error_naming_its_call(depth: int, level: bytes) -> None:
    """msgpack builds up to 1,023 levels and refuses deeper ones; either way the error is the
    one `ProtocolError`, its text short (the deep value is never `repr`ed whole), naming the
    call when the call id comes before the deep part. 100,000 levels do not fit an envelope
    (it is refused by size, its call id read all the same)."""
    for where, head, call_id in deep_envelopes(depth, level):
        with pytest.raises(p.ProtocolError) as info:
            p.decode([head])
        assert type(info.value) is p.ProtocolError, where
        assert len(str(info.value)) <= 300, (where, str(info.value)[:400])
        assert info.value.call_id == call_id, (where, str(info.value))
        if len(head) <= p.MAX_ENVELOPE and depth > 1_024:
            assert "nested too deeply" in str(info.value), where


def test_malformed_fields_are_described_escaped_and_clipped() -> None:
    """What an error quotes of the peer's data is escaped (no terminal escape sequence gets
    through) and bounded, however long or wide the data."""
    fields = ["\x1b[2J\x1b]0;owned\x07" * 1000, [b"\x00" * 50] * 500, {"k" * 9000: [[[["deep"]]]]}]
    with pytest.raises(p.ProtocolError) as info:
        p.decode([env(V, K.CALL, 9, *fields), b"r", b"c", b"a"])
    text = str(info.value)
    assert info.value.call_id == 9 and text.startswith("malformed call envelope fields [")
    assert len(text) <= 300 and "\x1b" not in text and "\x07" not in text and "\\x1b[2J" in text


# Levels of nesting, each an array or a map (keys are strings, as `strict_map_key` wants),
# around a leaf, from shallow to past msgpack's own limit of 1,024.
_levels = st.lists(st.sampled_from([LIST, MAP, b"\x92\xc0", b"\x82\xa1a\xc0\xa1b"]), min_size=1, max_size=1_100)


@st.composite
def _deep(draw: st.DrawFn) -> list[bytes]:
    """A real message's envelope with one of its items replaced by a deeply nested value."""
    msg = draw(st.sampled_from(MESSAGES))
    frames = [bytes(f) for f in p.encode(msg)]
    items = msgpack.unpackb(frames[0])
    deep = b"".join(draw(_levels)) + msgpack.packb(draw(_scalars), use_bin_type=True)
    where = draw(st.integers(0, len(items)))
    packed = [msgpack.packb(item, use_bin_type=True) for item in items]
    if where == len(items):
        packed.append(deep)
    else:
        packed[where] = deep
    # An array header for the items: fixarray up to 15 (envelopes have at most 13), else array16.
    header = bytes([0x90 + len(packed)]) if len(packed) < 16 else b"\xdc" + len(packed).to_bytes(2, "big")
    return [header + b"".join(packed), *frames[1:]]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(_deep())
def test_decode_of_deeply_nested_envelopes_raises_protocol_error(frames: list[bytes]) -> None:
    with pytest.raises(p.ProtocolError) as info:
        p.decode(frames)
    assert len(str(info.value)) <= 300
    assert info.value.call_id is None or type(info.value.call_id) is int


# -- property: decode parses or raises ProtocolError, nothing else ----------------------------

# Values msgpack can represent (ints limited to its int64/uint64 range), nested two levels deep
# (deeper recursive strategies cost hypothesis much more time and find nothing new here).
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.binary(max_size=20),
)
_values = st.one_of(
    _scalars,
    st.lists(_scalars, max_size=4),
    st.dictionaries(st.text(max_size=4), _scalars, max_size=3),
    st.lists(st.lists(_scalars, max_size=3), max_size=3),
)
# Values biased towards the ones the codec looks for, so that deep branches are reached.
_versions = st.one_of(st.just(p.VERSION), st.sampled_from([0, 2, True, 1.0, -1, "1"]), _values)
_kinds = st.one_of(st.sampled_from(list(p.Kind)).map(int), st.integers(-3, 30), _values)
_call_ids = st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([-1, True, 1.5, None]), _values)
_fields = st.lists(
    st.one_of(
        st.text(max_size=10), st.binary(max_size=16), st.booleans(), st.sampled_from(list(p.RejectReason)).map(int), _values
    ),
    max_size=5,
)
_payload = st.lists(st.binary(max_size=30), max_size=4)


@st.composite
def _structured(draw: st.DrawFn) -> list[bytes]:
    """A msgpack envelope built from random values, mostly shaped like a real one."""
    shape = draw(st.integers(0, 9))
    if shape == 0:  # any msgpack value at all
        return [msgpack.packb(draw(_values), use_bin_type=True), *draw(_payload)]
    items = [draw(_versions), draw(_kinds), draw(_call_ids), *draw(_fields)]
    if shape == 1:
        items = items[: draw(st.integers(0, len(items)))]
    return [msgpack.packb(items, use_bin_type=True), *draw(_payload)]


@st.composite
def _mangled(draw: st.DrawFn) -> list[bytes]:
    """A valid message, its envelope truncated or with one byte replaced, and some of its
    payload frames dropped."""
    msg = draw(st.sampled_from(MESSAGES))
    frames = [bytes(f) for f in p.encode(msg)]
    head = bytearray(frames[0])
    if draw(st.booleans()):
        head = head[: draw(st.integers(0, len(head)))]
    else:
        head[draw(st.integers(0, len(head) - 1))] = draw(st.integers(0, 255))
    return [bytes(head), *frames[1 : 1 + draw(st.integers(0, len(frames)))]]


def _check_decode(frames: list[bytes]) -> None:
    try:
        msg = p.decode(frames)
    except p.ProtocolError as e:
        assert str(e)
        assert e.call_id is None or (type(e.call_id) is int and 0 <= e.call_id < 2**64)
        return
    # Whatever decoded is a real message, and encodes back to itself.
    assert isinstance(
        msg,
        (
            p.Call,
            p.Next,
            p.Send,
            p.Throw,
            p.Close,
            p.Cancel,
            p.Ping,
            p.Credit,
            p.Return,
            p.Yield,
            p.Raise,
            p.Stop,
            p.Pong,
            p.Reject,
            p.Fetch,
            p.Part,
            p.Output,
        ),
    )
    assert p.decode(p.encode(msg)) == msg


@settings(max_examples=2500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.lists(st.binary(max_size=64), max_size=4), _mangled()))
def test_decode_of_random_bytes_parses_or_raises_protocol_error(frames: list[bytes]) -> None:
    _check_decode(frames)


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_structured())
def test_decode_of_random_msgpack_parses_or_raises_protocol_error(frames: list[bytes]) -> None:
    _check_decode(frames)


@pytest.mark.parametrize(
    "lines",
    [
        [[9, "text", "origin", 0, ""]],  # no such stream
        [[1, "text", "origin", 101, ""]],  # a level out of range
        [[1, b"bytes", "origin", 0, ""]],
        [[1, "text", "origin", 0]],  # a field short
        [[1, "x", "o", 0, ""]] * (p.MAX_OUTPUT_LINES + 1),
        "not a list",
    ],
)
def test_malformed_output_is_refused(lines: object) -> None:
    head = msgpack.packb([p.VERSION, int(p.Kind.OUTPUT), 7, lines, 0])
    with pytest.raises(p.ProtocolError, match="malformed output envelope") as caught:
        p.decode([head])
    assert caught.value.call_id == 7


def test_a_priority_out_of_range_is_refused_both_ways() -> None:
    with pytest.raises(p.ProtocolError, match="priority"):
        p.encode(p.Call(1, "w", DIGEST, "f", False, ROUTINE, ARGS, priority=2**40))
    good = p.encode(p.Call(1, "w", DIGEST, "f", False, ROUTINE, (b"a",), priority=5))
    assert len(good) == 1
    fields = msgpack.unpackb(good[0])
    assert fields[-2] == 5
    fields[-2] = 2**40  # the priority, before the inline frames
    with pytest.raises(p.ProtocolError, match="malformed call envelope"):
        p.decode([msgpack.packb(fields)])
