"""Discovery named on a command line (`--discovery SPEC`), shared by the worker CLI and
`python -m wool.workers`."""

from __future__ import annotations

import argparse

from .._info import Discovery
from .._keys import Keys
from ._dns import DnsDiscovery
from ._lan import LanDiscovery
from ._local import LocalDiscovery
from ._static import StaticDiscovery

SPEC_HELP = (
    "local:NAME (a registry file for namespace NAME on this machine; pools join it with "
    "wool.LocalDiscovery(NAME)), lan[:NAMESPACE][@ADDRESS,...] (Zeroconf on the local network, "
    "optionally only on the interfaces with these addresses; other machines see a worker only "
    "if it binds an address they reach; wool.LanDiscovery(NAMESPACE)), or "
    "static:ENDPOINT,... (the workers listening at these endpoints; wool.StaticDiscovery([...])), or "
    "dns:NAME[:PORT][@SERVER[:PORT],...] (the workers at the addresses NAME resolves to: its SRV "
    "records, or its A/AAAA records at PORT; re-resolved every 5 s; asks SERVER instead of the "
    "system's resolver; wool.DnsDiscovery(NAME, PORT))"
)


def parse_discovery(spec: str, keys: Keys | None = None) -> Discovery:
    """`local:NAME` -> LocalDiscovery(NAME); `lan`, `lan:NAMESPACE`, `lan@ADDR,...` or
    `lan:NAMESPACE@ADDR,...` -> LanDiscovery; `static:EP,EP...` -> StaticDiscovery([EP, ...])
    and `dns:NAME[:PORT][@SERVER,...]` -> DnsDiscovery(NAME, PORT, nameservers=[SERVER, ...]),
    which reach their workers with `keys`. Raises `ValueError` naming the problem."""
    scheme, _, rest = spec.partition(":")
    if scheme == "local":
        return LocalDiscovery(rest)
    if scheme == "lan" or spec.startswith("lan@"):
        body = spec[len("lan") :]  # "", ":NAMESPACE", "@ADDRS" or ":NAMESPACE@ADDRS"
        namespace, at, addresses = body.removeprefix(":").partition("@")
        interfaces = [a for a in addresses.split(",") if a]
        if at and not interfaces:
            raise ValueError(f"no interface address after '@' in {spec!r}")
        return LanDiscovery(namespace if body.startswith(":") else "default", interfaces or None)
    if scheme == "static":
        endpoints = [e for e in rest.split(",") if e]
        if not endpoints:
            raise ValueError(f"no endpoints in {spec!r}: expected static:tcp://HOST:PORT,...")
        return StaticDiscovery(endpoints, keys=keys)
    if scheme == "dns":
        return _parse_dns(spec, rest, keys)
    raise ValueError(
        f"unknown discovery {spec!r}: expected local:NAME, lan[:NAMESPACE][@ADDRESS,...], static:ENDPOINT,... "
        "or dns:NAME[:PORT][@SERVER,...]"
    )


def _parse_dns(spec: str, rest: str, keys: Keys | None) -> DnsDiscovery:
    target, at, servers = rest.partition("@")
    name, colon, port = target.partition(":")
    if not name:
        raise ValueError(f"no name in {spec!r}: expected dns:NAME[:PORT][@SERVER[:PORT],...]")
    if colon and (not port.isdigit() or not 0 < int(port) < 65536):
        raise ValueError(f"{spec!r} has no valid port after the name")
    nameservers = [s for s in servers.split(",") if s]
    if at and not nameservers:
        raise ValueError(f"no nameserver after '@' in {spec!r}")
    return DnsDiscovery(name, int(port) if colon else None, nameservers=nameservers or None, keys=keys)


def discovery_from_args(parser: argparse.ArgumentParser, spec: str, keys_dir: str | None) -> tuple[Discovery, Keys | None]:
    """The `--discovery SPEC` and `--keys DIR` of a command line, or `parser.error` (exit 2)
    naming what is wrong with them."""
    try:
        keys = Keys.load(keys_dir) if keys_dir is not None else None
    except (OSError, ValueError) as e:
        parser.error(f"--keys: {e}")
    try:
        return parse_discovery(spec, keys), keys
    except (ValueError, TypeError) as e:
        parser.error(str(e))
