"""tox's inline plugin: find the Pythons pyenv installed, without `pyenv global`.

pyenv's shims answer only for the versions selected (`pyenv global`, `.python-version`), so
tox, which looks for `python3.12` on PATH, skipped the other supported versions although they
were installed. This offers every `$(pyenv root)/versions/*/bin/python3.N` to tox's discovery
first (as `tox --discover` would); without pyenv it changes nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tox.plugin import impl


def pyenv_pythons() -> list[str]:
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    found = sorted((root / "versions").glob("*/bin/python3.[0-9]*"))
    return [str(p) for p in found if p.name.count(".") == 1 and not p.name.endswith("-config") and os.access(p, os.X_OK)]


@impl
def tox_add_core_config(core_conf: Any, state: Any) -> None:
    options = state.conf.options
    options.discover = [*(getattr(options, "discover", None) or []), *pyenv_pythons()]
