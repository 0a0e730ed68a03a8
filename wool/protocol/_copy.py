"""The one copy a large received `bytes` or `bytearray` costs, made into huge pages.

A frame received without copying is the transport's memory; a `bytes` value must own its
own, so unpickling copies it once. Copying 64 MiB into freshly mapped memory is mostly page
faults: 41 ms in 4 KiB pages, 11 ms when the kernel may back the destination with 2 MiB
pages (measured on the benchmark machine, whose transparent huge pages are "madvise", the
common default). So a large destination is allocated untouched, advised `MADV_HUGEPAGE`, then
filled. Where that is unavailable (not Linux, not CPython) the copy is plain; where the
kernel refuses the advice (THP disabled) it is an ordinary copy.
"""

from __future__ import annotations

import ctypes
import mmap
from typing import Any

HUGE = 4 * 1024 * 1024  # below this, page faults cost little next to the rest of a call


class _Native:
    """The C functions used: CPython's constructors, which given NULL data return an
    uninitialised object for the caller to fill before anyone else sees it, and madvise."""

    def __init__(self) -> None:
        self.advice: int = mmap.MADV_HUGEPAGE  # AttributeError where the platform lacks it
        api = ctypes.pythonapi
        self.new_bytes, self.new_bytearray = api.PyBytes_FromStringAndSize, api.PyByteArray_FromStringAndSize
        for new in self.new_bytes, self.new_bytearray:
            new.restype, new.argtypes = ctypes.py_object, (ctypes.c_void_p, ctypes.c_ssize_t)
        self.bytes_address = api.PyBytes_AsString
        self.bytes_address.restype, self.bytes_address.argtypes = ctypes.c_void_p, (ctypes.py_object,)
        self.madvise = ctypes.CDLL(None, use_errno=True).madvise
        self.madvise.restype = ctypes.c_int
        self.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)

    def advise(self, address: int, size: int) -> None:
        """Ask for huge pages for the whole pages in [address, address + size). Only advice:
        a refusal leaves ordinary pages."""
        page = mmap.PAGESIZE
        start, end = -(-address // page) * page, (address + size) // page * page
        if end > start:
            self.madvise(start, end - start, self.advice)


try:
    _native: _Native | None = _Native()
except (AttributeError, OSError):
    _native = None


def to_bytes(buffer: Any) -> bytes:
    """A `bytes` copy of `buffer` (`buffer` itself when it is one)."""
    if type(buffer) is bytes:
        return buffer
    view = memoryview(buffer).cast("B")
    size = view.nbytes
    if _native is None or size < HUGE:
        return bytes(view)
    out: bytes = _native.new_bytes(None, size)  # large: never one of CPython's shared bytes
    address = _native.bytes_address(out)
    _native.advise(address, size)
    memoryview((ctypes.c_char * size).from_address(address)).cast("B")[:] = view
    return out


def to_bytearray(buffer: Any) -> bytearray:
    """A `bytearray` copy of `buffer`."""
    view = memoryview(buffer).cast("B")
    size = view.nbytes
    if _native is None or size < HUGE:
        return bytearray(view)
    out: bytearray = _native.new_bytearray(None, size)
    _native.advise(ctypes.addressof(ctypes.c_char.from_buffer(out)), size)
    memoryview(out)[:] = view
    return out
