"""Imports go one way: every module of `wool` sits in a layer and imports only from its own
layer or lower ones; no module imports its way into a cycle (function-level imports count);
and a private module or name (`_x`) is used only inside the package that owns it, so each
package's `__init__` is the door the others go through. README "How it works" draws the
layers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "wool"

# Lowest first.
LAYERS: list[tuple[str, ...]] = [
    # leaves: errors, key material, and small checks everything may use
    (
        "wool._errors",
        "wool._keys",
        "wool._seconds",
        "wool._throttle",
        "wool._endpoints",
        "wool._ipc",
        "wool._handshake",
        "wool._state",
        "wool._printable",
        "wool._loopthread",
        "wool._pids",
        "wool._interrupt",
        "wool._spin",
        "wool._memory",
    ),
    ("wool.protocol",),  # the pure wire codec
    ("wool._info",),  # what discovery says about a worker, shared by both sides
    # ZeroMQ sockets driven by the loop, CURVE and ZAP; spans and metrics of both sides
    ("wool._transport", "wool._curve", "wool._tracing", "wool._metrics", "wool._metrics_server", "wool._observe"),
    ("wool.caller",),  # routines, connections, the mesh, options, context variables, fan-out
    # backends (the static one asks workers through a caller connection); shared values,
    # written to the private runtime directory
    ("wool.discovery", "wool.sharing"),
    ("wool.worker",),  # the server, call runners, the worker process and its CLI
    (
        "wool._executor",
        "wool._run",
    ),  # blocking forms: wool.run, and submission and cancellation of concurrent.futures calls over a pool's loop
    ("wool._pool", "wool._replacer"),  # WorkerPool (spawns workers and opens a mesh) and wool.Executor
    # the public door, the command-line tools and the joblib backend
    ("wool", "wool.keys", "wool.workers", "wool._watch", "wool.ping", "wool.metrics", "wool.joblib"),
]


def modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def layer_of(module: str) -> int | None:
    """The layer of the longest prefix in LAYERS naming `module`; `wool` itself names only the
    package's `__init__`, so a new top-level module must be given a layer of its own."""
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix or (prefix != "wool" and module.startswith(prefix + "."))
            if matches and (best is None or len(prefix) > best[0]):
                best = (len(prefix), index)
    return None if best is None else best[1]


def imports(module: str, path: Path, known: dict[str, Path]) -> list[tuple[str, list[str], int]]:
    """(imported wool module, names imported from it, line) for every import, at any depth."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [a.name for a in node.names]
            submodules = [f"{target}.{n}" for n in names if f"{target}.{n}" in known]
            found.extend((sub, [], node.lineno) for sub in submodules)
            rest = [n for n in names if f"{target}.{n}" not in known]
            if rest or not submodules:
                found.append((target, rest, node.lineno))
        elif isinstance(node, ast.Import):
            found.extend((a.name, [], node.lineno) for a in node.names)
    resolved = []
    for target, names, line in found:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target.startswith("wool") and target != module:
            resolved.append((target, names, line))
    return resolved


def owner(module: str) -> str:
    """The package a module is private to: `wool.discovery._spec` -> `wool.discovery`; a module
    with no private part in its name belongs to everyone (`wool`)."""
    parts = module.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_"):
            return ".".join(parts[:i])
    return "wool"


def inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_every_module_has_a_layer() -> None:
    missing = sorted(m for m in modules() if layer_of(m) is None)
    assert not missing, f"give these modules a layer in LAYERS: {missing}"


def test_imports_never_go_up() -> None:
    known = modules()
    upward = []
    for module, path in known.items():
        mine = layer_of(module)
        for target, _, line in imports(module, path, known):
            theirs = layer_of(target)
            if mine is not None and theirs is not None and theirs > mine:
                upward.append(
                    f"{path.relative_to(ROOT.parent)}:{line}: {module} (layer {mine}) imports {target} (layer {theirs})"
                )
    assert not upward, "imports that go up a layer:\n" + "\n".join(upward)


def test_no_import_cycles() -> None:
    known = modules()
    graph = {m: {t for t, _, _ in imports(m, p, known) if not m.startswith(t + ".")} for m, p in known.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_private_modules_and_names_stay_in_their_package() -> None:
    known = modules()
    leaks = []
    for module, path in known.items():
        for target, names, line in imports(module, path, known):
            where = f"{path.relative_to(ROOT.parent)}:{line}: {module}"
            if not inside(module, owner(target)):
                leaks.append(f"{where} imports {target}, private to {owner(target)}")
                continue
            package = target if known[target].name == "__init__.py" else target.rpartition(".")[0]
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private and not inside(module, package):
                leaks.append(f"{where} imports {private} from {target}")
    assert not leaks, "private modules or names used outside their package:\n" + "\n".join(leaks)


@pytest.mark.parametrize(
    ("module", "expected"),
    [("wool.caller._mesh", 4), ("wool.discovery", 5), ("wool", 9), ("wool._errors", 0), ("wool._new", None)],
)
def test_layer_lookup(module: str, expected: int | None) -> None:
    assert layer_of(module) == expected


def test_owner_and_imports_see_what_they_should(tmp_path: Path) -> None:
    """The checks above can fail: a private module imported from another package is found."""
    assert owner("wool.discovery._spec") == "wool.discovery"
    assert owner("wool.protocol") == "wool"
    source = tmp_path / "probe.py"
    source.write_text("from ..discovery._spec import SPEC_HELP\ndef f():\n    from .. import _pool\n")
    known = {"wool.worker.probe": source, "wool.discovery._spec": source, "wool._pool": source, "wool.discovery": source}
    found = imports("wool.worker.probe", source, known)
    assert ("wool.discovery._spec", ["SPEC_HELP"], 1) in found
    assert ("wool._pool", [], 3) in found
    assert not inside("wool.worker.probe", owner("wool.discovery._spec"))
