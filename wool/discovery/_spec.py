"""Discovery named on a command line (`--discovery SPEC`), shared by the worker CLI and
`python -m wool.workers`."""

from __future__ import annotations

from ._interface import Discovery
from ._local import LocalDiscovery

SPEC_HELP = "local:NAME (a registry file for namespace NAME on this machine; pools join it with wool.LocalDiscovery(NAME))"


def parse_discovery(spec: str) -> Discovery:
    """`local:NAME` -> LocalDiscovery(NAME); raise `ValueError` naming the problem."""
    scheme, _, rest = spec.partition(":")
    if scheme == "local":
        return LocalDiscovery(rest)
    raise ValueError(f"unknown discovery {spec!r}: expected local:NAME")
