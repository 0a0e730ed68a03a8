"""How workers are published and found: the `Discovery` interface and its backends."""

from __future__ import annotations

from ._interface import Discovery, DiscoveryError, DiscoveryEvent, WorkerInfo
from ._local import LocalDiscovery
from ._paths import runtime_dir
from ._spec import parse_discovery

__all__ = [
    "Discovery",
    "DiscoveryError",
    "DiscoveryEvent",
    "LocalDiscovery",
    "WorkerInfo",
    "parse_discovery",
    "runtime_dir",
]
