"""Large values shared by many calls without a copy per call: `wool.share` and `wool.Shared`."""

from ._cache import CacheStats, cache, check_share_cache, default_limit
from ._handle import Shared, release_scope, share, shared_bytes, substitute

__all__ = [
    "CacheStats",
    "Shared",
    "cache",
    "check_share_cache",
    "default_limit",
    "release_scope",
    "share",
    "shared_bytes",
    "substitute",
]
