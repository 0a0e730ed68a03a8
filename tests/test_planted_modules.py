"""A module planted in the caller's working directory by another user is never imported by
a pool's template or workers: they start in Python's safe-path mode (`-P`), so the
working directory, which they inherit, is not on their `sys.path`.

The victim runs `cd /shared/project && python /private/app.py`: the app imports nothing from
its working directory, but `python -m wool.worker` (which the template and directly spawned
workers are) would put that directory first on `sys.path`. Each planted module, if imported,
runs as the victim (root here) and leaves a file saying so.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from other_user import OTHER_UID, as_other_user, needs_root, shared_tmp

pytestmark = [needs_root(), pytest.mark.multiprocess, pytest.mark.timeout(90)]

PLANTED = ("uvloop", "wool", "cloudpickle", "zmq", "msgpack")

APP = """
import asyncio, os, sys
import wool
from wool import _pool

if sys.argv[1] == "direct":
    _pool.templates_work = lambda: False  # workers as `python -m wool.worker --spawned`

@wool.routine
async def where() -> str:
    return os.getcwd()

async def main() -> None:
    async with wool.WorkerPool(size=1) as pool:
        assert (pool._template is None) == (sys.argv[1] == "direct")
        print(await where(), flush=True)

asyncio.run(main())
"""


@pytest.fixture
def project() -> Iterator[Path]:
    """A working directory another user owns and planted modules in (0777, below a sticky
    shared directory)."""
    with shared_tmp() as root:
        project = root / "project"
        as_other_user(f"mkdir {project}")
        for name in PLANTED:
            source = f"open({str(project / ('imported-' + name))!r}, 'w').write('ran as uid %d' % __import__('os').getuid())\n"
            as_other_user(f"cat > {project}/{name}.py", source.encode())
        yield project


def imported(project: Path) -> list[str]:
    return sorted(p.name for p in project.glob("imported-*"))


def test_control_python_m_imports_a_module_planted_in_the_working_directory(project: Path) -> None:
    """What the template was: `python -m wool.worker` in that directory runs the planted
    `wool.py` as this user; `-P`, as the pool starts it now, does not."""
    plain = subprocess.run([sys.executable, "-m", "wool.worker", "--help"], cwd=project, capture_output=True, timeout=60)
    assert plain.returncode != 0
    assert imported(project) == ["imported-wool"]
    assert (project / "imported-wool").read_text() == "ran as uid 0"
    (project / "imported-wool").unlink()
    safe = subprocess.run([sys.executable, "-P", "-m", "wool.worker", "--help"], cwd=project, capture_output=True, timeout=60)
    assert safe.returncode == 0, safe.stderr
    assert imported(project) == []


@pytest.mark.parametrize("spawn", ["template", "direct"])
def test_a_pool_started_in_a_shared_directory_imports_nothing_planted_there(project: Path, tmp_path: Path, spawn: str) -> None:
    app = tmp_path / "app.py"
    app.write_text(APP)
    done = subprocess.run([sys.executable, str(app), spawn], cwd=project, capture_output=True, text=True, timeout=60)
    assert imported(project) == []
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(project)  # the worker ran in that directory
    assert all((project / f"{name}.py").stat().st_uid == OTHER_UID for name in PLANTED)
