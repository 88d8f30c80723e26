"""One pool of Redis connections per process for Django's cache (the rate limits' counters).

Django makes a cache object per request (its caches are local to the async context, and each
request is a context of its own), and each ``RedisCache`` object opens its own pool: every join
connected to Redis afresh (a TCP handshake and the client's hello) for the three or four
commands its rate limits send. ``SharedConnectionPool`` is the cache's ``pool_class``
(``settings.CACHES``): every cache object of the process asking for the same server gets the
same pool, whose connections stay open and are shared by the threads (redis-py's pools are
thread-safe).
"""

from __future__ import annotations

import threading
from typing import Any, Self

import redis

_pools: dict[tuple[str, tuple[tuple[str, Any], ...]], Any] = {}
_lock = threading.Lock()


class SharedConnectionPool(redis.ConnectionPool):
    """``redis.ConnectionPool`` whose ``from_url`` returns this process's pool for the URL."""

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> Self:
        key = (url, tuple(sorted(kwargs.items())))
        with _lock:
            pool = _pools.get(key)
            if pool is None:
                pool = _pools[key] = super().from_url(url, **kwargs)
            assert isinstance(pool, cls)
            return pool
