"""In-process caches for mosaic metadata and asset lookups.

Both caches are keyed by the backend URI first, so a write, update or delete made through the
package can drop every entry of that mosaic at once (cogeo-mosaic never invalidates its caches).
"""

import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from cachetools import TTLCache

from lambda_handler.settings import cache_settings

T = TypeVar("T")


class MosaicCache:
    """A TTL + size bounded cache whose keys start with a mosaic URI."""

    def __init__(self, name: str):
        self.name = name
        self._lock = threading.Lock()
        self._cache: TTLCache | None = None
        self._configured_for: tuple[float, int] | None = None

    def _store(self) -> TTLCache | None:
        settings = cache_settings()
        if not settings.enabled:
            return None
        wanted = (settings.ttl, settings.maxsize)
        if self._cache is None or self._configured_for != wanted:
            self._cache = TTLCache(maxsize=settings.maxsize, ttl=settings.ttl)
            self._configured_for = wanted
        return self._cache

    def get_or_compute(self, uri: str, key: Hashable, compute: Callable[[], T]) -> T:
        """Return the cached value for (uri, key), computing and storing it when missing."""
        with self._lock:
            store = self._store()
            if store is not None:
                try:
                    return store[(uri, key)]
                except KeyError:
                    pass
        value = compute()
        with self._lock:
            store = self._store()
            if store is not None:
                store[(uri, key)] = value
        return value

    def invalidate(self, uri: str) -> None:
        """Drop every entry of one mosaic."""
        with self._lock:
            if self._cache is None:
                return
            for key in [k for k in list(self._cache.keys()) if k[0] == uri]:
                self._cache.pop(key, None)

    def clear(self) -> None:
        """Drop everything."""
        with self._lock:
            if self._cache is not None:
                self._cache.clear()

    def __len__(self) -> int:
        with self._lock:
            return 0 if self._cache is None else len(self._cache)

    def __contains__(self, item: Any) -> bool:
        with self._lock:
            return self._cache is not None and item in self._cache


metadata_cache = MosaicCache("metadata")
assets_cache = MosaicCache("assets")


def invalidate(uri: str) -> None:
    """Forget everything cached about the mosaic at `uri`."""
    metadata_cache.invalidate(uri)
    assets_cache.invalidate(uri)


def clear_all() -> None:
    """Forget everything cached (used by tests and after settings change)."""
    metadata_cache.clear()
    assets_cache.clear()
