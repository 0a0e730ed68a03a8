"""mkdocs hook: replace `<!-- gen: NAME ARGS -->` markers with generated Markdown.

A marker that names no generator, or whose generator fails, fails the build: a reference page
that silently lost its table would be worse than no page.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _gen import GENERATORS  # noqa: E402

MARKER = re.compile(r"^<!-- gen: (\w+)(.*?) -->$", re.MULTILINE)


class GenerationError(Exception):
    pass


def expand(markdown: str, where: str) -> str:
    def one(match: re.Match[str]) -> str:
        name, args = match.group(1), match.group(2).strip()
        if name not in GENERATORS:
            raise GenerationError(f"{where}: unknown generator {name!r} (known: {', '.join(GENERATORS)})")
        try:
            return GENERATORS[name](args)
        except Exception as e:
            raise GenerationError(f"{where}: generator {name} {args!r} failed: {type(e).__name__}: {e}") from e

    return MARKER.sub(one, markdown)


# Files outside docs/ that pages show: (path in the site, path in the repository).
EXTRA_FILES = [("assets/scale.png", "benchmarks/scale.png")]


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    root = Path(config["config_file_path"]).resolve().parent
    for dest, src in EXTRA_FILES:
        files.append(File.generated(config, dest, abs_src_path=str(root / src)))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    return expand(markdown, page.file.src_path)
