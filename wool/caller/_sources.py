"""The source of a program run with `python -c`, for tracebacks.

A routine defined in `python -c CODE` runs on a worker in frames whose file is "<string>",
which the caller's tracebacks show without a source line: Python keeps the command nowhere
`linecache` looks. It is in `sys.orig_argv`, so the caller registers it there once, and has
uncaught exceptions printed by `traceback` (which reads `linecache`) rather than by the
interpreter's own printer (which reads files only). Frames of scripts and notebook cells
need nothing: their files, or IPython's cell cache, are there."""

from __future__ import annotations

import linecache
import sys
import traceback
from types import TracebackType

_COMMAND_FILE = "<string>"


def remember_command_source() -> None:
    """Put the `python -c` command in `linecache` (once; nothing for other programs)."""
    if sys.argv[:1] != ["-c"] or _COMMAND_FILE in linecache.cache:
        return
    argv = getattr(sys, "orig_argv", [])
    try:
        command = argv[argv.index("-c") + 1]
    except (ValueError, IndexError):
        return
    lines = [line + "\n" for line in command.splitlines()]
    linecache.cache[_COMMAND_FILE] = (len(command), None, lines, _COMMAND_FILE)
    if sys.excepthook is sys.__excepthook__:
        sys.excepthook = _print_uncaught


def _print_uncaught(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    traceback.print_exception(kind, value, tb)
