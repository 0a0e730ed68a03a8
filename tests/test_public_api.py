"""`wool.__all__` is exactly the API the docs list (docs/reference/api/index.md), and every name
in it exists: adding or removing a public name means saying so in both places."""

from __future__ import annotations

import re

from helpers import REPO

import wool


def documented() -> list[str]:
    text = (REPO / "docs" / "reference" / "api" / "index.md").read_text()
    section = text.split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| what")]
    return [name for row in rows for name in re.findall(r"`([A-Za-z_]\w*)`", row.split("|")[2])]


def test_all_is_exactly_the_documented_api() -> None:
    names = documented()
    assert len(names) == len(set(names)), "a name is listed twice in docs/reference/api/index.md"
    assert sorted(wool.__all__) == sorted(names)


def test_every_public_name_exists_and_says_what_it_is() -> None:
    for name in wool.__all__:
        value = getattr(wool, name)
        assert value.__doc__, f"wool.{name} has no docstring"
        assert not name.startswith("_")
