"""The docs site's generated pages (docs/_gen) say what the code says: every CLI option, every
setting with its default, every legal reply of the protocol, every public name, every target of
the committed benchmark run. `mkdocs build --strict` (in .ci/run) checks links and rendering."""

from __future__ import annotations

import argparse
import inspect
import json
import re
import sys

import pytest
from helpers import REPO

import wool
import wool.protocol as p

sys.path.insert(0, str(REPO / "docs"))
from _gen import cli, hooks, metrics, perf, protocol, settings  # noqa: E402


@pytest.mark.parametrize("tool", list(cli.TOOLS))
def test_cli_page_lists_every_option_of_the_real_parser(tool: str) -> None:
    page = cli.markdown(tool)
    parsers = [cli.parser_of(tool)]
    for action in parsers[0]._actions:
        if isinstance(action, argparse._SubParsersAction):
            parsers += list(action.choices.values())
            assert all(f"{parsers[0].prog} {name}" in page for name in action.choices)
    for parser in parsers:
        for action in parser._actions:
            if action.help == argparse.SUPPRESS:
                assert not any(o in page for o in action.option_strings), "an internal option is shown"
                continue
            for option in action.option_strings:
                assert option in page, f"{tool}: {option} missing"
            stated = re.search(r"\(default: ([0-9]+(?:\.[0-9]+)?)(?=[ );,])", action.help or "")
            if stated:  # a default the help text states must be the parser's
                assert float(stated.group(1)) == action.default, f"{tool}: {action.option_strings} says {stated.group(0)}"
            elif isinstance(action.default, (int, float)) and not isinstance(action.default, bool):
                assert f"Default: `{action.default!r}`" in page


def test_every_tool_exposes_its_parser_with_its_prog() -> None:
    for tool in cli.TOOLS:
        assert cli.parser_of(tool).prog == f"python -m {tool}"


def test_settings_show_each_pool_default_and_its_worker_option() -> None:
    page = settings.markdown("WorkerPool")
    rows = {line.split("|")[1].strip(): line for line in page.splitlines() if line.startswith("| `")}
    for param in inspect.signature(wool.WorkerPool).parameters.values():
        if param.kind is param.VAR_POSITIONAL:
            continue
        assert f"`{param.name}`" in rows, param.name
        assert settings.show(param.default) in rows[f"`{param.name}`"]
    assert "`--liveness`" in rows["`liveness`"] and "`--max-calls`" in rows["`max_calls`"]


def test_settings_name_an_unknown_source() -> None:
    with pytest.raises(ValueError, match="unknown settings source"):
        settings.markdown("WorkerPoool")


def test_protocol_diagram_has_an_edge_for_every_legal_generator_reply() -> None:
    diagram = protocol.diagram()
    for request, replies in p.REPLIES[True].items():
        if request == p.Kind.CREDIT:
            continue
        for reply, ends in replies.items():
            target = "[*]" if ends else "suspended"
            assert f"{request.name.lower()} --> {target}: {reply.name.lower()}" in diagram
    for step in p.STEPS:
        assert f"suspended --> {step.name.lower()}: {step.name.lower()}" in diagram


def test_protocol_tables_cover_every_kind_and_state() -> None:
    kinds, accepts = protocol.kinds(), protocol.accepts()
    for kind in p.Kind:
        assert f"| `{kind.name.lower()}` | {kind.value} |" in kinds
        assert not re.search(rf"\| {kind.name.title()}\(", kinds), "a kind without a docstring of its own"
    for state in p.CallState:
        assert state.value in accepts


def test_every_public_name_has_its_generated_reference() -> None:
    page = (REPO / "docs" / "reference" / "api" / "index.md").read_text()
    generated = set(re.findall(r"^::: wool\.(\w+)$", page, re.MULTILINE))
    assert generated == set(wool.__all__)


def test_perf_tables_show_every_target_of_the_committed_run() -> None:
    path = "docs/results/quick-612c668.json"
    assert path in (REPO / "docs" / "explanation" / "performance.md").read_text()
    doc = json.loads((REPO / path).read_text())
    page = perf.markdown(f"{path} targets")
    for w in doc["workloads"].values():
        for t in w.get("targets", []):
            assert t["text"] in page
    assert page.count("holds") + page.count("**missed**") == sum(len(w.get("targets", [])) for w in doc["workloads"].values())


def test_a_marker_naming_no_generator_fails_the_build() -> None:
    with pytest.raises(hooks.GenerationError, match="unknown generator 'nope'"):
        hooks.expand("text\n<!-- gen: nope x -->\n", "page.md")
    with pytest.raises(hooks.GenerationError, match="cli 'wool.nope' failed"):
        hooks.expand("<!-- gen: cli wool.nope -->", "page.md")


def test_metrics_reference_lists_what_a_worker_serves() -> None:
    page = metrics.markdown()
    for name in ("wool_calls_total", "wool_call_duration_seconds", "wool_calls_running", "wool_worker_lost_calls_total"):
        assert f"| `{name}` |" in page
    assert page == metrics.markdown(), "building the page twice in one process gives the same page"
