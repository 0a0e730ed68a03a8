"""Errors read like Python's own: remote frames of routines defined in a script or in
`python -c` name the caller's file and show its source line, and a pool's processes leave no
`ResourceWarning` behind."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(90)]

PROGRAM = textwrap.dedent(
    """\
    import asyncio
    import wool

    @wool.routine
    async def remote_async(x):
        raise ValueError(f"async {x}")

    @wool.routine
    def remote_plain(x):
        return [1][x]

    async def main():
        async with wool.WorkerPool(size=1):
            try:
                await remote_async(1)
            except ValueError:
                import traceback
                traceback.print_exc()
            await remote_plain(5)

    asyncio.run(main())
    """
)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONWARNINGS="error::ResourceWarning")
    return subprocess.run(
        [sys.executable, "-W", "error::ResourceWarning", *args], capture_output=True, text=True, timeout=60, env=env
    )


def _frames(stderr: str, filename: str) -> list[tuple[str, str]]:
    """(frame line, the source line under it) for each frame in `filename`."""
    lines = stderr.splitlines()
    return [
        (line.strip(), lines[i + 1].strip()) for i, line in enumerate(lines[:-1]) if line.strip().startswith(f'File "{filename}"')
    ]


def _assert_remote_frames_show_source(stderr: str, filename: str) -> None:
    frames = _frames(stderr, filename)
    assert (f'File "{filename}", line 6, in remote_async', 'raise ValueError(f"async {x}")') in frames, stderr
    assert (f'File "{filename}", line 10, in remote_plain', "return [1][x]") in frames, stderr
    assert stderr.rstrip().endswith("IndexError: list index out of range")
    assert "<dynamic-code>" not in stderr


def test_remote_frames_of_a_script_show_its_file_and_source(tmp_path: Path) -> None:
    script = tmp_path / "report.py"
    script.write_text(PROGRAM)
    run = _run(str(script))
    assert run.returncode == 1
    _assert_remote_frames_show_source(run.stderr, str(script))


def test_remote_frames_of_python_c_show_the_command_source() -> None:
    run = _run("-c", PROGRAM)
    assert run.returncode == 1
    _assert_remote_frames_show_source(run.stderr, "<string>")


def test_remote_frames_of_a_notebook_cell_show_the_cell_source(tmp_path: Path) -> None:
    """As IPython runs a cell: compiled under a file name that does not exist, whose source it
    puts in `linecache`; its tracebacks read `linecache`."""
    cell = "/tmp/ipykernel_0/0000000000.py"  # never created: the source is only in linecache
    script = tmp_path / "kernel.py"
    script.write_text(
        textwrap.dedent(
            f"""\
            import linecache, traceback
            source = {PROGRAM.replace("asyncio.run(main())", "").replace("await remote_plain(5)", "pass")!r}
            linecache.cache[{cell!r}] = (len(source), None, source.splitlines(True), {cell!r})
            exec(compile(source, {cell!r}, "exec"))
            import asyncio
            asyncio.run(main())
            """
        )
    )
    run = _run(str(script))
    assert run.returncode == 0, run.stderr
    assert (f'File "{cell}", line 6, in remote_async', 'raise ValueError(f"async {x}")') in _frames(run.stderr, cell), run.stderr


def test_a_pool_leaves_no_resource_warning(tmp_path: Path) -> None:
    script = tmp_path / "clean.py"
    script.write_text(PROGRAM.replace("await remote_plain(5)", "print(await remote_plain(0))"))
    run = _run(str(script))
    assert run.returncode == 0, run.stderr
    assert run.stdout == "1\n"
    assert "ResourceWarning" not in run.stderr
    assert "Exception ignored" not in run.stderr
