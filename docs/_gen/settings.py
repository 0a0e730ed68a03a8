"""Every setting with its default, read from the signatures and parsers that define them.

`SOURCES` lists the callables whose keyword defaults are settings, and `CLI` the tool whose
options mirror the pool's: repoint these when the defaults move (say, into one policy module).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
from collections.abc import Callable
from typing import Any

from . import cli
from ._table import code, table

# (heading, dotted path of a callable): its parameters with defaults, in signature order.
SOURCES = [
    ("WorkerPool", "wool.WorkerPool"),
    ("wool.map", "wool.map"),
    ("wool.readahead", "wool.readahead"),
    ("LocalDiscovery", "wool.LocalDiscovery"),
    ("LanDiscovery", "wool.LanDiscovery"),
    ("StaticDiscovery", "wool.StaticDiscovery"),
    ("DnsDiscovery", "wool.DnsDiscovery"),
]
# The tool whose options carry the same names as the pool's parameters (`max_calls` <-> `--max-calls`).
CLI = "wool.worker"


def resolve(dotted: str) -> Callable[..., Any]:
    module, _, name = dotted.rpartition(".")
    obj: Callable[..., Any] = getattr(importlib.import_module(module), name)
    return obj


def show(value: Any) -> str:
    """A default as a reader wants it: sizes in MiB as well, classes and functions by name."""
    if value is inspect.Parameter.empty:
        return "required"
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1 << 20 and value % (1 << 20) == 0:
        return f"{code(value)} ({value >> 20} MiB)"
    if isinstance(value, type) or callable(value):
        return code(getattr(value, "__qualname__", repr(value)))
    return code(repr(value))


def _parameters(target: Callable[..., Any]) -> list[inspect.Parameter]:
    sig = inspect.signature(target)
    return [
        p
        for p in sig.parameters.values()
        if p.name != "self" and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]


def cli_options(tool: str = CLI) -> dict[str, argparse.Action]:
    """The tool's options by the parameter name they mirror (`--max-calls` -> `max_calls`)."""
    parser = cli.parser_of(tool)
    return {a.option_strings[-1][2:].replace("-", "_"): a for a in parser._actions if a.option_strings}


def _cli_cell(options: dict[str, argparse.Action], name: str) -> tuple[str, str]:
    action = options.get(name)
    if action is None:
        return "", ""
    default = "" if action.default in (None, False, [], argparse.SUPPRESS) else show(action.default)
    return code(action.option_strings[-1]), default


def markdown(which: str = "") -> str:
    """One table per source: parameter, default, and the worker option mirroring it."""
    options = cli_options()
    wanted = which.split() or [heading for heading, _ in SOURCES]
    parts = []
    for heading, dotted in SOURCES:
        if heading not in wanted:
            continue
        rows = []
        for p in _parameters(resolve(dotted)):
            option, option_default = _cli_cell(options, p.name) if heading == "WorkerPool" else ("", "")
            rows.append((code(p.name), show(p.default), option, option_default))
        header = ("parameter", "default", f"`python -m {CLI}` option", "its default")
        if heading != "WorkerPool":
            header, rows = header[:2], [r[:2] for r in rows]
        parts += [f"### `{dotted}`", table(header, rows)]
    unknown = set(wanted) - {h for h, _ in SOURCES}
    if unknown:
        raise ValueError(f"unknown settings source(s) {sorted(unknown)}: known are {[h for h, _ in SOURCES]}")
    return "\n\n".join(parts)
