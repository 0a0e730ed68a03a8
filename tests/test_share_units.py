"""`wool.sharing`'s pure layout and its answers to workers' fetches, without processes."""

from __future__ import annotations

import pickle
import secrets
import struct

import numpy as np
import pytest

import wool
from wool import protocol as p
from wool import sharing
from wool.sharing import _layout


def test_layout_round_trip_keeps_buffers_aligned_views() -> None:
    value = {"a": np.arange(100_000.0), "b": b"x" * 10, "c": np.ones((300, 300))[:, ::2]}  # one not contiguous
    data, buffers = _layout.pickled(value)
    header, parts, total = _layout.layout(data, buffers)
    memory = bytearray(total)
    for offset, part in [(0, header), *parts]:
        chunk = memoryview(part).cast("B")
        memory[offset : offset + chunk.nbytes] = chunk
    view = memoryview(bytes(memory))
    _, views = _layout.parse(view)
    assert len(views) == 1  # the big contiguous array; the strided one went in band
    out = _layout.loads(view)
    assert np.array_equal(out["a"], value["a"]) and np.array_equal(out["c"], value["c"]) and out["b"] == value["b"]
    start = np.frombuffer(view, dtype=np.uint8)
    assert (out["a"].ctypes.data - start.ctypes.data) % _layout.ALIGN == 0  # from a page-aligned mapping: aligned
    assert not out["a"].flags.writeable and np.shares_memory(out["a"], start)


HEAD = struct.Struct("<8sII QQ")


@pytest.mark.parametrize(
    ("memory", "problem"),
    [
        (b"", "too small for a header"),
        (HEAD.pack(b"NOTWOOL!", 0, 0, 32, 0), "marker"),
        (HEAD.pack(_layout.MAGIC, 2**31, 0, 32, 0), "more than fit"),
        (HEAD.pack(_layout.MAGIC, 0, 0, 32, 10**12), "beyond its"),
        (HEAD.pack(_layout.MAGIC, 0, 0, 2**63, 1), "beyond its"),
        (HEAD.pack(_layout.MAGIC, 1, 0, 32, 0) + struct.pack("<QQ", 2**64 - 1, 2), "beyond its"),
    ],
)
def test_a_corrupt_layout_is_one_value_error(memory: bytes, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        _layout.parse(memoryview(memory))


def test_serve_answers_only_what_this_process_has() -> None:
    unknown = p.Fetch(1, secrets.token_hex(16), 0, 100)
    assert sharing.serve(unknown, 1 << 20).problem is p.ShareProblem.UNAVAILABLE
    with wool.share(np.arange(50_000.0)) as handle:
        whole = handle.path.read_bytes()
        part = sharing.serve(p.Fetch(2, handle.key, 100, 10**9), 4096)  # asks for far too much
        assert part.problem is p.ShareProblem.NONE
        assert (part.offset, part.total, bytes(part.data)) == (100, handle.size, whole[100 : 100 + 4096])
        end = sharing.serve(p.Fetch(3, handle.key, handle.size, 10), 4096)
        assert end.data == b"" and end.total == handle.size
    gone = sharing.serve(p.Fetch(4, handle.key, 0, 10), 4096)
    assert gone.problem is p.ShareProblem.RELEASED and "`with` block" in gone.detail


def test_a_released_handle_is_refused_when_pickled_by_the_process_that_released_it() -> None:
    handle = wool.share([1, 2, 3])
    copy = pickle.dumps(handle)
    handle.release()
    with pytest.raises(wool.SharedReleased, match=r"by release\(\) at .*test_share_units.py"):
        pickle.dumps(handle)
    with pytest.raises(wool.SharedReleased):
        pickle.loads(copy).get_blocking()
