"""The reference of each command-line tool, from the argparse parser the tool itself uses.

Each tool module exposes `build_parser()`; `TOOLS` names them. Usage lines are formatted at a
fixed width so the page is the same on every machine.
"""

from __future__ import annotations

import argparse
import importlib
import os
from collections.abc import Iterator
from contextlib import contextmanager

from ._table import code, table

# Command (as typed after `python -m`) -> module holding its build_parser().
TOOLS = {
    "wool.worker": "wool.worker.__main__",
    "wool.workers": "wool.workers",
    "wool.keys": "wool.keys",
    "wool.ping": "wool.ping",
}
WIDTH = "80"


def parser_of(tool: str) -> argparse.ArgumentParser:
    if tool not in TOOLS:
        raise ValueError(f"unknown tool {tool!r}: known are {', '.join(TOOLS)}")
    parser: argparse.ArgumentParser = importlib.import_module(TOOLS[tool]).build_parser()
    return parser


@contextmanager
def _fixed_width() -> Iterator[None]:
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        yield
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    text = action.help or ""
    if "%" in text:  # argparse's own expansion: %(default)s, %(prog)s, %%
        params = {**vars(action), "prog": parser.prog}
        params = {k: getattr(v, "__name__", v) for k, v in params.items()}
        text = text % params
    return prose(text)


def prose(text: str) -> str:
    """Plain text safe as Markdown: brackets, stars and angle brackets shown as typed."""
    text = text.replace("\\", "\\\\").replace("<", "&lt;")
    for ch in "[]*_`":
        text = text.replace(ch, "\\" + ch)
    return text


def _default(action: argparse.Action) -> str:
    d = action.default
    if d is None or d is argparse.SUPPRESS or d is False or d == [] or isinstance(action, argparse._HelpAction):
        return ""
    return code(d)


def _names(action: argparse.Action) -> str:
    if action.option_strings:
        names = ", ".join(action.option_strings)
        if action.nargs != 0:
            names += f" {action.metavar or action.dest.upper()}"
        return code(names)
    return code(action.metavar or action.dest)


def _options(parser: argparse.ArgumentParser) -> str:
    rows = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) or action.help is argparse.SUPPRESS:
            continue
        meaning = _help(parser, action)
        if action.required or not action.option_strings:
            meaning += " **Required.**"
        default = _default(action)
        if default and "default" not in meaning:  # the help says it itself (a test holds the two equal)
            meaning += f" Default: {default}."
        rows.append((f'<span class="nowrap">{_names(action)}</span>', meaning))
    return table(("option", "meaning"), rows)


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            found += [(name, helps.get(name, ""), sub) for name, sub in action.choices.items()]
    return found


def _usage(parser: argparse.ArgumentParser) -> str:
    with _fixed_width():
        usage = parser.format_usage().strip()
    return f"```text\n{usage}\n```"


def markdown(tool: str) -> str:
    """The reference section of `python -m TOOL`."""
    parser = parser_of(tool.strip())
    parts = [_usage(parser), prose(parser.description or ""), _options(parser)]
    for name, help_text, sub in _subcommands(parser):
        parts += [f"#### `{parser.prog} {name}`", prose(help_text), _usage(sub), _options(sub)]
    return "\n\n".join(p for p in parts if p)
