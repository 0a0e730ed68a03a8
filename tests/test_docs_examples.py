"""Every Python example in the docs and the README runs as written (`tests/docs_examples.py`),
and prints what the page shows it printing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import docs_examples
import helpers
import pytest

PAGES = sorted(p for p in (helpers.REPO / "docs").rglob("*.md") if "_gen" not in p.parts) + [helpers.REPO / "README.md"]
WITH_EXAMPLES = [p for p in PAGES if docs_examples.parse(p.read_text(), p).blocks]


def run_page(path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(helpers.REPO), os.environ.get("PYTHONPATH")]))}
    script = helpers.REPO / "tests" / "docs_examples.py"
    return subprocess.run(
        [sys.executable, str(script), str(path)], capture_output=True, text=True, timeout=120, cwd=helpers.REPO, env=env
    )


@pytest.mark.multiprocess
@pytest.mark.parametrize("page", WITH_EXAMPLES, ids=lambda p: str(p.relative_to(helpers.REPO)))
def test_page_examples_run(page: Path) -> None:
    done = run_page(page)
    assert done.returncode == 0, done.stderr


def test_there_are_examples_to_run() -> None:
    runnable = [b for p in WITH_EXAMPLES for b in docs_examples.parse(p.read_text(), p).blocks if not b.compile_only]
    assert len(runnable) >= 5


def test_output_blocks_are_checked_and_markers_read() -> None:
    page = docs_examples.parse(
        "<!-- example: pool size=2 -->\n"
        "```python\nprint(1 + 1)\n```\n\n```output\n2\n```\n"
        "<!-- example: compile needs a cluster -->\n```python\nawait far_away()\n```\n"
    )
    assert page.pool_size == 2
    first, second = page.blocks
    assert first.output == "2\n" and first.compile_only is None
    assert second.compile_only == "needs a cluster" and second.output is None


def test_a_wrong_output_fails_naming_the_block(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("Intro.\n\n```python\nprint('actual')\n```\n\n```output\nexpected\n```\n")
    done = run_page(page)
    assert done.returncode == 1
    assert f"{page}:3: printed" in done.stderr


def test_a_failing_block_fails_naming_it(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("```python\nx = 1\n```\n\n```python\nawait missing()\n```\n")
    done = run_page(page)
    assert done.returncode == 1
    assert f"{page}:5: raised NameError" in done.stderr


def test_a_compile_marker_needs_a_reason() -> None:
    with pytest.raises(docs_examples.ExampleError, match="must say why"):
        docs_examples.parse("<!-- example: compile -->\n```python\npass\n```\n")


def test_ellipsis_matches_any_text() -> None:
    assert docs_examples.matches("started ... workers\ndone", "started 4 workers\ndone\n")
    assert not docs_examples.matches("started ... workers\ndone", "started 4 workers\n")
