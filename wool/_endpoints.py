"""The one parser of ZeroMQ endpoints wool uses: `tcp://HOST:PORT`, `ipc://PATH`, `inproc://NAME`.

A leaf module (it imports nothing from wool), so every layer may use it: workers binding,
discovery checking what it publishes or was given, pools deciding what is private.
"""

from __future__ import annotations

import dataclasses
import ipaddress

_SCHEMES = ("tcp", "ipc", "inproc")
_WILDCARDS = frozenset({"*", "0.0.0.0", "::"})


@dataclasses.dataclass(frozen=True, slots=True)
class Endpoint:
    """A parsed endpoint. For tcp: `host` (an IPv6 address without its brackets) and `port`
    (0: any free port, for binding); for ipc and inproc: `path`."""

    scheme: str
    host: str = ""
    port: int = 0
    path: str = ""

    @property
    def address(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        """The host as an IP address, None for a name (or not tcp)."""
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None

    @property
    def is_wildcard(self) -> bool:
        """A tcp endpoint on every interface: fine to bind, not to connect to."""
        return self.scheme == "tcp" and self.host in _WILDCARDS

    @property
    def local_only(self) -> bool:
        """Whether only this machine's network namespace can reach it: ipc, inproc, or tcp
        on a loopback address or `localhost`."""
        if self.scheme != "tcp":
            return True
        address = self.address
        return self.host == "localhost" or (address is not None and address.is_loopback)


def parse_endpoint(text: object) -> Endpoint:
    """`text` parsed, or `TypeError`/`ValueError` saying what is wrong with it."""
    if not isinstance(text, str):
        raise TypeError(f"an endpoint must be a str, not {type(text).__name__}")
    scheme, sep, rest = text.partition("://")
    if not sep or scheme not in _SCHEMES or not rest:
        raise ValueError(f"{text!r} is not an endpoint: expected tcp://HOST:PORT or ipc://PATH")
    if scheme != "tcp":
        return Endpoint(scheme, path=rest)
    host, sep, port = rest.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{text!r} is not an endpoint: expected tcp://HOST:PORT or ipc://PATH")
    if not (port.isascii() and port.isdigit()) or not 0 <= int(port) < 65536:
        raise ValueError(f"{text!r} has no valid port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return Endpoint(scheme, host, int(port))
