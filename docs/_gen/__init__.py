"""Pages generated from the code at build time, so the docs cannot drift from it.

`hooks.py` (an mkdocs hook) replaces each marker `<!-- gen: NAME ARGS -->` in a page with what
`GENERATORS[NAME](ARGS)` returns. Each generator is a pure function of wool's code (or of a
results file) returning Markdown; the tests call them too.
"""

from __future__ import annotations

from collections.abc import Callable

from . import cli, metrics, perf, protocol, settings

GENERATORS: dict[str, Callable[[str], str]] = {
    "cli": cli.markdown,
    "settings": settings.markdown,
    "protocol": protocol.markdown,
    "perf": perf.markdown,
    "metrics": metrics.markdown,
}
