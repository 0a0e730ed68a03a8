"""How workers are published and found: the `Discovery` interface and its backends."""

from __future__ import annotations

from ._dns import DnsDiscovery
from ._interface import Discovery, DiscoveryError, DiscoveryEvent, WorkerInfo
from ._lan import LanDiscovery
from ._local import LocalDiscovery
from ._paths import runtime_dir
from ._spec import parse_discovery
from ._static import StaticDiscovery

__all__ = [
    "Discovery",
    "DiscoveryError",
    "DiscoveryEvent",
    "DnsDiscovery",
    "LanDiscovery",
    "LocalDiscovery",
    "StaticDiscovery",
    "WorkerInfo",
    "parse_discovery",
    "runtime_dir",
]
