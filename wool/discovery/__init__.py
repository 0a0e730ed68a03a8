"""How workers are published and found: the `Discovery` interface and its backends."""

from __future__ import annotations

from .._info import Discovery, DiscoveryError, DiscoveryEvent, WorkerInfo
from ._dns import DnsDiscovery
from ._lan import LanDiscovery
from ._local import LocalDiscovery, prune_registry
from ._paths import private_dir, runtime_dir
from ._spec import SPEC_HELP, discovery_from_args, parse_discovery
from ._static import StaticDiscovery
from ._trust import keyless_refusal

__all__ = [
    "Discovery",
    "DiscoveryError",
    "DiscoveryEvent",
    "DnsDiscovery",
    "LanDiscovery",
    "LocalDiscovery",
    "SPEC_HELP",
    "StaticDiscovery",
    "WorkerInfo",
    "discovery_from_args",
    "keyless_refusal",
    "parse_discovery",
    "private_dir",
    "prune_registry",
    "runtime_dir",
]
