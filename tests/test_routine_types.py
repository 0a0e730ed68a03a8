"""Type checkers see what callers get: a plain `def` routine is a coroutine function returning
the function's result, with its parameters, in both decorator forms; `wool.run` returns what
its awaitable does."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import REPO

pytestmark = pytest.mark.timeout(180)

SNIPPET = textwrap.dedent(
    """\
    from collections.abc import AsyncGenerator, Callable, Coroutine
    from typing import Any, assert_type

    import wool


    @wool.routine
    def plain(x: int) -> str:
        return str(x)


    @wool.routine(tags="gpu")
    def tagged(x: int, *, scale: float = 1.0) -> float:
        return x * scale


    @wool.routine
    async def coro(x: int) -> int:
        return x


    @wool.routine(idempotent=True)
    async def numbers(n: int) -> AsyncGenerator[int, None]:
        yield n


    async def main() -> None:
        as_coroutine_function: Callable[[int], Coroutine[Any, Any, str]] = plain
        assert_type(await as_coroutine_function(1), str)
        assert_type(await plain(1), str)
        assert_type(await tagged(2, scale=0.5), float)
        assert_type(await coro(3), int)
        async for n in numbers(3):
            assert_type(n, int)


    def in_a_plain_routine() -> None:
        assert_type(wool.run(coro(1)), int)
    """
)


def test_plain_def_routines_type_as_coroutine_functions(tmp_path: Path) -> None:
    pytest.importorskip("mypy", reason="mypy comes with the check extra: pip install -e '.[check]'")
    (tmp_path / "snippet.py").write_text(SNIPPET)
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent", "--no-incremental", "snippet.py"],
        cwd=tmp_path,
        env={"MYPYPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert run.returncode == 0, run.stdout + run.stderr
