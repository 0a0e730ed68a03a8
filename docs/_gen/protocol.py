"""The wire protocol's reference, from `wool.protocol`'s own tables: message kinds, the
replies legal for each request (and which end the call), and what a worker accepts in each
state of a generator call."""

from __future__ import annotations

import wool.protocol as p

from ._table import code, table


def _doc(kind: p.Kind) -> str:
    cls = getattr(p, kind.name.title(), None)
    doc = (cls.__doc__ or "") if cls is not None else ""
    return " ".join(doc.split())


def kinds() -> str:
    rows = []
    for kind in p.Kind:
        direction = "caller → worker" if kind < p.Kind.RETURN else "worker → caller"
        rows.append((code(kind.name.lower()), kind.value, direction, _doc(kind)))
    return table(("kind", "code", "direction", "meaning"), rows)


def _replies(generator: bool) -> str:
    rows = []
    for request, replies in p.REPLIES[generator].items():
        final = sorted(r.name.lower() for r, ends in replies.items() if ends)
        more = sorted(r.name.lower() for r, ends in replies.items() if not ends)
        rows.append((code(request.name.lower()), ", ".join(map(code, final)), ", ".join(map(code, more))))
    return table(("request", "replies that end the call", "replies after which it goes on"), rows)


def diagram() -> str:
    """The caller's view of a generator call, as a state diagram: after each request, the
    replies that end the call lead out, and the others (a yield) lead back to suspended, from
    which the caller sends the next step."""
    table_ = p.REPLIES[True]
    lines = ["```mermaid", "stateDiagram-v2", "    direction LR"]
    lines.append("    [*] --> call: call")
    lines.append('    state "suspended at a yield" as suspended')
    for request, replies in table_.items():
        name = request.name.lower()
        if request == p.Kind.CREDIT:
            continue  # read-ahead: shown in the table below, not a step
        for reply, ends in sorted(replies.items()):
            target = "[*]" if ends else "suspended"
            lines.append(f"    {name} --> {target}: {reply.name.lower()}")
    for step in sorted(p.STEPS):
        lines.append(f"    suspended --> {step.name.lower()}: {step.name.lower()}")
    lines.append("```")
    return "\n".join(lines)


def accepts() -> str:
    rows = []
    for state, allowed in p.ACCEPTS.items():
        rows.append((code(state.name), state.value, ", ".join(code(k.name.lower()) for k in sorted(allowed))))
    return table(("state", "meaning", "requests accepted (others: reject)"), rows)


def markdown(part: str = "") -> str:
    parts = {
        "kinds": kinds,
        "diagram": diagram,
        "coroutine": lambda: _replies(False),
        "generator": lambda: _replies(True),
        "accepts": accepts,
        "version": lambda: (
            f"The protocol version is {code(p.VERSION)}: a peer speaking another version is refused with a message naming both."
        ),
    }
    name = part.strip()
    if name not in parts:
        raise ValueError(f"unknown protocol part {name!r}: known are {', '.join(parts)}")
    return parts[name]()
