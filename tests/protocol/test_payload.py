"""Payload pickling: values round trip, large buffers travel as their own frames, and
exceptions come back as themselves (type, attributes, chain, traceback) or as a `RemoteError`
holding their text."""

from __future__ import annotations

import pickle
import threading
import traceback
from typing import Any

import pytest

import wool
from tests.routines import Oops
from wool import protocol as p

MiB = 1 << 20


class ZeroCopyBytes(bytearray):
    """A buffer that pickles through `PickleBuffer` (as numpy arrays do), so that protocol 5
    can carry it out of band."""

    def __reduce_ex__(self, protocol: Any) -> Any:
        if protocol >= 5:
            return type(self)._rebuild, (pickle.PickleBuffer(self),), None
        return type(self)._rebuild, (bytearray(self),)

    @classmethod
    def _rebuild(cls, data: Any) -> ZeroCopyBytes:
        return cls(data)


def _wire(frames: tuple[p.Frame, ...]) -> tuple[bytes, ...]:
    """The frames as a receiver gets them: fresh bytes, nothing shared with the sender."""
    return tuple(bytes(f) for f in frames)


@pytest.mark.parametrize(
    "value",
    [
        None,
        0,
        -(2**100),
        3.5,
        "text \u2603",
        b"\x00\xff",
        (1, "two", [3.0, {"four": 4}]),
        {"a": {1, 2}, "b": frozenset({"x"})},
        ((1, 2), {"key": "word"}),
        Oops("a value, not raised", 3),
        lambda x: x + 1,
    ],
    ids=lambda v: type(v).__name__,
)
def test_round_trip(value: object) -> None:
    frames = p.dumps(value)
    assert len(frames) == 1
    out = p.loads(_wire(frames))
    if callable(value) and not isinstance(value, type):
        assert out(41) == 42  # type: ignore[operator]
    elif isinstance(value, Oops):
        assert type(out) is Oops and out.args == value.args and out.code == 3
    else:
        assert out == value


def test_loads_keeps_object_identity_within_a_value() -> None:
    shared: list[int] = [1]
    out = p.loads(_wire(p.dumps((shared, shared))))
    assert out[0] is out[1]  # type: ignore[index]


def test_large_pickle_buffer_travels_out_of_band() -> None:
    data = ZeroCopyBytes(b"\x01" * MiB)
    frames = p.dumps({"data": data, "small": [1, 2]})
    assert len(frames) == 2
    assert len(frames[0]) < 1024  # the pickle itself stays small
    assert memoryview(frames[1]).nbytes == MiB
    out = p.loads(_wire(frames))
    assert out == {"data": data, "small": [1, 2]} and type(out["data"]) is ZeroCopyBytes  # type: ignore[index]


def test_out_of_band_frame_is_not_a_copy() -> None:
    data = ZeroCopyBytes(b"\x00" * MiB)
    frames = p.dumps(data)
    data[0] = 7  # a zero-copy frame sees writes to the original buffer
    assert bytes(memoryview(frames[1])[:1]) == b"\x07"


def test_out_of_band_threshold() -> None:
    assert len(p.dumps(ZeroCopyBytes(p.OUT_OF_BAND))) == 2
    assert len(p.dumps(ZeroCopyBytes(p.OUT_OF_BAND - 1))) == 1


def test_several_large_buffers_each_get_a_frame_in_order() -> None:
    parts = [ZeroCopyBytes(bytes([i]) * p.OUT_OF_BAND) for i in range(3)]
    frames = p.dumps([parts[0], ZeroCopyBytes(b"tiny"), parts[1], parts[2]])
    assert [bytes(memoryview(f)[:1]) for f in frames[1:]] == [b"\x00", b"\x01", b"\x02"]
    assert p.loads(_wire(frames)) == [parts[0], b"tiny", parts[1], parts[2]]


def test_small_buffers_stay_in_band() -> None:
    frames = p.dumps([ZeroCopyBytes(b"x" * 1000), bytearray(100), b"y" * 1000])
    assert len(frames) == 1
    assert p.loads(_wire(frames)) == [b"x" * 1000, bytearray(100), b"y" * 1000]


def test_large_bytearray_travels_out_of_band() -> None:
    data = bytearray(b"\x02" * MiB)
    frames = p.dumps(data)
    assert len(frames) == 2 and memoryview(frames[1]).nbytes == MiB


def test_large_bytearray_round_trips() -> None:
    data = bytearray(b"\x02" * MiB)
    out = p.loads(_wire(p.dumps(data)))
    assert type(out) is bytearray and out == data


# -- exceptions ---------------------------------------------------------------------------------


def raise_with_cause() -> None:
    try:
        raise KeyError("inner")
    except KeyError as e:
        raise Oops("outer", 42) from e


def raise_with_context() -> None:
    try:
        {}["missing"]
    except KeyError:
        raise Oops("while handling", 5)  # noqa: B904 -- an implicit __context__ is the point


def caught(fn: Any) -> BaseException:
    try:
        fn()
    except BaseException as e:
        return e
    raise AssertionError(f"{fn.__name__} did not raise")


def round_trip(exc: BaseException) -> BaseException:
    return p.loads_exception(*p.describe(exc), _wire(p.dumps_exception(exc)))


def test_exception_keeps_type_message_and_attributes() -> None:
    out = round_trip(caught(raise_with_cause))
    assert type(out) is Oops
    assert out.args == ("outer", 42)
    assert out.code == 42  # type: ignore[attr-defined]


def test_exception_keeps_its_cause() -> None:
    out = round_trip(caught(raise_with_cause))
    assert type(out.__cause__) is KeyError and out.__cause__.args == ("inner",)
    assert out.__suppress_context__
    text = "".join(traceback.format_exception(out))
    assert "direct cause of the following exception" in text


def test_exception_keeps_its_context() -> None:
    out = round_trip(caught(raise_with_context))
    assert out.__cause__ is None
    assert type(out.__context__) is KeyError and out.__context__.args == ("missing",)
    text = "".join(traceback.format_exception(out))
    assert "During handling of the above exception, another exception occurred" in text


def test_exception_keeps_its_traceback() -> None:
    out = round_trip(caught(raise_with_cause))
    assert out.__traceback__ is not None
    text = "".join(traceback.format_exception(out))
    assert "in raise_with_cause" in text
    assert "tests.routines.Oops: ('outer', 42)" in text
    # The cause's own traceback came along too.
    assert out.__cause__ is not None and out.__cause__.__traceback__ is not None


def test_builtin_exception_state_set_by_init_survives_in_a_chain() -> None:
    """`SyntaxError` and `UnicodeError` keep their message's parts in fields `__init__` sets;
    `StopIteration` its value. Rebuilt without their args they read `None` or empty."""

    def chained() -> None:
        try:
            compile("x = (", "<cell>", "exec")
        except SyntaxError as e:
            raise Oops("bad rule", 3) from e

    out = round_trip(caught(chained))
    cause = out.__cause__
    assert type(cause) is SyntaxError
    assert (cause.msg, cause.filename, cause.lineno, cause.text) == ("'(' was never closed", "<cell>", 1, "x = (\n")
    assert cause.__traceback__ is not None
    decoded = round_trip(caught(lambda: b"\xff".decode("utf-8")))
    assert isinstance(decoded, UnicodeDecodeError)
    assert (decoded.encoding, decoded.start, decoded.reason) == ("utf-8", 0, "invalid start byte")
    stop = round_trip(StopIteration(5))
    assert isinstance(stop, StopIteration) and stop.value == 5
    noted = caught(lambda: b"\xff".decode("utf-8"))
    noted.add_note("while reading the feed")
    noted.extra = "kept"  # type: ignore[attr-defined]
    out = round_trip(noted)
    assert out.__notes__ == ["while reading the feed"] and out.extra == "kept"  # type: ignore[attr-defined]


def test_describe_names_type_message_and_traceback() -> None:
    name, message, tb = p.describe(caught(raise_with_cause))
    assert name == "tests.routines.Oops"
    assert message == "('outer', 42)"
    assert "in raise_with_cause" in tb
    assert p.describe(KeyError("k"))[:2] == ("KeyError", "'k'")


class HoldsLock(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()


def raise_holds_lock() -> None:
    raise HoldsLock("cannot travel")


def test_unpicklable_exception_comes_back_as_remote_error() -> None:
    exc = caught(raise_holds_lock)
    with pytest.raises(TypeError):
        pickle.dumps(exc)
    out = round_trip(exc)
    assert type(out) is wool.RemoteError
    assert out.type_name.endswith("HoldsLock")  # type: ignore[attr-defined]
    assert out.message == "cannot travel"  # type: ignore[attr-defined]
    assert "in raise_holds_lock" in out.remote_traceback  # type: ignore[attr-defined]
    assert "HoldsLock: cannot travel" in str(out)


@pytest.mark.parametrize(
    "frames",
    [
        pytest.param((b"not a pickle",), id="garbage"),
        pytest.param((b"",), id="empty"),
        pytest.param(p.dumps(Oops("x", 1))[0][:-3:], id="truncated"),
        pytest.param((pickle.dumps(42),), id="not-an-exception"),
        pytest.param((b"cno_such_module\nKaput\n.",), id="unimportable-class"),
    ],
)
def test_unloadable_exception_frames_become_remote_error(frames: Any) -> None:
    if isinstance(frames, bytes):
        frames = (frames,)
    out = p.loads_exception("remote.Kaput", "it broke", "Traceback ...\nremote.Kaput: it broke\n", frames)
    assert type(out) is wool.RemoteError
    assert (out.type_name, out.message) == ("remote.Kaput", "it broke")  # type: ignore[attr-defined]
    assert "remote.Kaput: it broke" in out.remote_traceback  # type: ignore[attr-defined]
    assert str(out).startswith("remote.Kaput: it broke")


def test_remote_error_itself_round_trips() -> None:
    err = wool.RemoteError("T", "m", "tb")
    out = round_trip(err)
    assert type(out) is wool.RemoteError
    assert (out.type_name, out.message, out.remote_traceback) == ("T", "m", "tb")  # type: ignore[attr-defined]
