"""How a shared value lies in its memory: pure, no I/O.

A value is pickled once, with pickle protocol 5: large contiguous buffers (numpy arrays,
`PickleBuffer` exporters) are left out of the pickle and laid after it, each aligned to
`ALIGN` bytes, so that a process mapping the memory read-only can hand them to `pickle.loads`
as views and get arrays that are views of the mapping, without a copy.

    magic (8) | count (4) | reserved (4) | pickle offset, length (8, 8) | count x (offset, length)
    ... pickle ... | ... buffer 0 ... | ... buffer 1 ... |

`parse` trusts nothing about what it reads: every length and offset is checked against the
memory's size before any view is cut, and a bad layout is one `ValueError` naming it.
"""

from __future__ import annotations

import pickle
import struct
from collections.abc import Sequence

import cloudpickle

MAGIC = b"WOOLSHR\x01"
ALIGN = 64  # a cache line, and more than any numpy dtype needs
OUT_OF_BAND = 64 * 1024  # smaller buffers stay in the pickle: cheaper than a view each
MAX_BUFFERS = 1 << 20
_HEAD = struct.Struct("<8sII QQ")
_SPAN = struct.Struct("<QQ")


def _aligned(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def pickled(value: object) -> tuple[bytes, list[memoryview]]:
    """`value`'s pickle and its large buffers (raw, contiguous views of the value's own
    memory: nothing is copied yet). Raises whatever pickling raises."""
    buffers: list[memoryview] = []

    def out_of_band(buf: pickle.PickleBuffer) -> bool:
        try:
            raw = buf.raw()
        except BufferError:  # not contiguous: pickled in band
            return True
        if raw.nbytes < OUT_OF_BAND:
            return True
        buffers.append(raw)
        return False

    return cloudpickle.dumps(value, protocol=5, buffer_callback=out_of_band), buffers


def layout(data: bytes, buffers: Sequence[memoryview]) -> tuple[bytes, list[tuple[int, memoryview | bytes]], int]:
    """(header, [(offset, part)], total size) for writing `data` and `buffers` out."""
    head_size = _HEAD.size + _SPAN.size * len(buffers)
    offset = _aligned(head_size)
    parts: list[tuple[int, memoryview | bytes]] = [(offset, data)]
    spans = []
    end = offset + len(data)
    for buf in buffers:
        start = _aligned(end)
        parts.append((start, buf))
        spans.append((start, buf.nbytes))
        end = start + buf.nbytes
    header = _HEAD.pack(MAGIC, len(buffers), 0, offset, len(data)) + b"".join(_SPAN.pack(*s) for s in spans)
    return header, parts, max(end, 1)


def parse(memory: memoryview) -> tuple[memoryview, list[memoryview]]:
    """The pickle and buffer views inside `memory` (laid out by `layout`). Raises
    `ValueError` naming what is wrong with a layout that does not fit."""
    size = memory.nbytes
    if size < _HEAD.size:
        raise ValueError(f"shared memory of {size} bytes is too small for a header")
    magic, count, _, offset, length = _HEAD.unpack_from(memory, 0)
    if magic != MAGIC:
        raise ValueError(f"shared memory does not start with wool's marker (found {bytes(magic)!r})")
    if count > MAX_BUFFERS or _HEAD.size + _SPAN.size * count > size:
        raise ValueError(f"shared memory claims {count} buffers, more than fit in its {size} bytes")
    spans = [(offset, length)]
    spans += [_SPAN.unpack_from(memory, _HEAD.size + _SPAN.size * i) for i in range(count)]
    for start, n in spans:
        if start > size or n > size - start:
            raise ValueError(f"shared memory claims a part of {n} bytes at {start}, beyond its {size} bytes")
    views = [memory[start : start + n] for start, n in spans]
    return views[0], views[1:]


def loads(memory: memoryview) -> object:
    """The value laid out in `memory`; its large buffers are views of `memory`."""
    data, buffers = parse(memory)
    return pickle.loads(data, buffers=buffers)
