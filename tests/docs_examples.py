"""Run the Python examples of a Markdown page as a reader would, top to bottom.

    python tests/docs_examples.py docs/tutorial/fan-out.md

Every ```python block of a page runs in one namespace, in order, so a later block uses what an
earlier one defined: the namespace of a fresh `__main__` module, as if the blocks were pasted
one after the other into a script. A block with a top-level `await` runs on one event loop kept for the
whole page (its context too, so a `wool.ContextVar` set in one block is seen by the next), as
in a notebook or `python -m asyncio`. A block followed by an ```output block must print
exactly that (`...` stands for any text). Markers, on the line just above a fence:

    <!-- example: compile REASON -->   compiled, not run (REASON says why it cannot run alone)
    <!-- example: pool size=N -->      anywhere in the page: its blocks run inside WorkerPool(size=N)
    <!-- example: pool size=N tags=a,b -->   ... whose workers carry these tags

Each page runs in its own process (the test suite starts one per page), so what a page sets
up (logging, metrics, a tracer provider) never leaks into another.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import dataclasses
import inspect
import io
import re
import sys
import traceback
import types
from pathlib import Path
from typing import Any

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,})(?P<info>[^`]*)$")
MARKER = re.compile(r"^\s*<!-- example: (?P<what>\w+)(?P<args>.*?) -->\s*$")
BLOCK_TIMEOUT = 60.0


@dataclasses.dataclass
class Block:
    line: int  # 1-based line of the opening fence
    source: str
    compile_only: str | None = None  # the reason, when the block is only compiled
    output: str | None = None  # what it must print, when an output block follows


@dataclasses.dataclass
class Page:
    path: Path
    blocks: list[Block]
    pool_size: int | None = None
    pool_tags: tuple[str, ...] = ()


class ExampleError(Exception):
    pass


def _fences(lines: list[str]) -> list[tuple[int, int, str, str]]:
    """(start, end, info, body) of every fenced block; start and end are 0-based line indexes."""
    found = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = m.group("indent"), m.group("fence"), m.group("info").strip()
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            j += 1
        if j == len(lines):
            raise ExampleError(f"line {i + 1}: a fence that never closes")
        body = [line[len(indent) :] if line.startswith(indent) else line.lstrip() for line in lines[i + 1 : j]]
        found.append((i, j, info, "\n".join(body) + "\n"))
        i = j + 1
    return found


def parse(text: str, path: Path = Path("<page>")) -> Page:
    lines = text.splitlines()
    page = Page(path, [])
    for line in lines:
        m = MARKER.match(line)
        if m and m.group("what") == "pool":
            size = re.fullmatch(r"\s*size=(\d+)(?:\s+tags=([\w,]+))?\s*", m.group("args"))
            if not size:
                raise ExampleError(f"{path}: pool marker needs size=N (and maybe tags=a,b), got {line.strip()!r}")
            page.pool_size = int(size.group(1))
            page.pool_tags = tuple(size.group(2).split(",")) if size.group(2) else ()
    fences = _fences(lines)
    for k, (start, end, info, body) in enumerate(fences):
        lang = info.split()[0] if info else ""
        if lang not in ("python", "py"):
            continue
        block = Block(start + 1, body)
        above = lines[start - 1] if start > 0 else ""
        m = MARKER.match(above)
        if m and m.group("what") == "compile":
            block.compile_only = m.group("args").strip() or None
            if not block.compile_only:
                raise ExampleError(f"{path}:{start}: a compile marker must say why the block cannot run")
        elif m and m.group("what") != "pool":
            raise ExampleError(f"{path}:{start}: unknown example marker {above.strip()!r}")
        if k + 1 < len(fences):
            nstart, _, ninfo, nbody = fences[k + 1]
            if ninfo.split()[:1] == ["output"] and all(not lines[n].strip() for n in range(end + 1, nstart)):
                block.output = nbody
        page.blocks.append(block)
    return page


def matches(expected: str, actual: str) -> bool:
    """Whether `actual` is what `expected` shows, line by line, trailing blanks ignored;
    `...` in `expected` stands for any text (also several lines)."""
    want = "\n".join(line.rstrip() for line in expected.strip("\n").splitlines())
    got = "\n".join(line.rstrip() for line in actual.strip("\n").splitlines())
    pattern = ".*?".join(re.escape(part) for part in want.split("..."))
    return re.fullmatch(pattern, got, re.DOTALL) is not None


def _compile(block: Block, where: str) -> Any:
    try:
        return compile(block.source, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
    except SyntaxError as e:
        raise ExampleError(f"{where}: does not compile: {e}") from e


async def _bounded(awaitable: Any) -> Any:
    async with asyncio.timeout(BLOCK_TIMEOUT):
        return await awaitable


def run(page: Page) -> None:
    """Run the page's blocks; raise ExampleError naming the block that failed."""
    codes = [(_compile(b, f"{page.path}:{b.line}"), b) for b in page.blocks]
    # The blocks run as a script's body: in a fresh `__main__` module, as `python page.py` would.
    script = types.ModuleType("__main__")
    script.__file__ = str(page.path)
    sys.modules["__main__"] = script
    namespace = script.__dict__
    with asyncio.Runner() as runner:
        pool = None
        if page.pool_size is not None:
            import wool

            pool = wool.WorkerPool(*page.pool_tags, size=page.pool_size)
            runner.run(_bounded(pool.__aenter__()))
        try:
            for code, block in codes:
                if block.compile_only:
                    continue
                where = f"{page.path}:{block.line}"
                out = io.StringIO()
                try:
                    with contextlib.redirect_stdout(out):
                        if code.co_flags & inspect.CO_COROUTINE:
                            runner.run(_bounded(eval(code, namespace)))
                        else:
                            exec(code, namespace)
                except BaseException as e:
                    text = "".join(traceback.format_exception(e))
                    raise ExampleError(f"{where}: raised {type(e).__name__}: {e}\n{text}") from e
                if block.output is not None and not matches(block.output, out.getvalue()):
                    raise ExampleError(f"{where}: printed\n{out.getvalue()}\ninstead of\n{block.output}")
        finally:
            if pool is not None:
                runner.run(_bounded(pool.__aexit__(None, None, None)))


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python tests/docs_examples.py PAGE.md", file=sys.stderr)
        return 2
    path = Path(argv[0])
    try:
        run(parse(path.read_text(), path))
    except ExampleError as e:
        print(e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
