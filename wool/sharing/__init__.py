"""Large values shared by many calls without a copy per call: `wool.share` and `wool.Shared`."""

from ..caller import fetch_server
from ._cache import CacheStats, cache, check_share_cache, default_limit
from ._fetch import fetch_route_var, serve
from ._handle import Shared, release_scope, share, shared_bytes, shared_in, substitute

fetch_server[:] = [serve]  # this process's connections answer workers' fetches from here

__all__ = [
    "CacheStats",
    "fetch_route_var",
    "serve",
    "shared_in",
    "Shared",
    "cache",
    "check_share_cache",
    "default_limit",
    "release_scope",
    "share",
    "shared_bytes",
    "substitute",
]
