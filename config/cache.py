"""A Redis cache that degrades instead of failing when Redis is down.

The cache only speeds things up or counts (throttle windows, the delivery set-up's shared version,
dashboard figures), so an unreachable Redis must not turn requests into 500s: every call answers
as a cache miss would, the throttle fails open, and a warning is logged at most once per
WARN_EVERY seconds per process. Short socket timeouts and one immediate retry keep a dead Redis
to milliseconds per call (Django's default client backs off between three retries).
"""

from __future__ import annotations

import functools
import logging
import time

from django.core.cache.backends.redis import RedisCache, RedisCacheClient

log = logging.getLogger(__name__)

WARN_EVERY = 30.0
DEFAULT_OPTIONS = {"socket_connect_timeout": 0.25, "socket_timeout": 0.5}

_last_warning = 0.0


def _warn(operation: str, exc: Exception) -> None:
    global _last_warning
    now = time.monotonic()
    if now - _last_warning >= WARN_EVERY:
        _last_warning = now
        log.warning("Redis cache unavailable (%s: %s: %s); answering as a cache miss", operation, type(exc).__name__, exc)


def _tolerant(fallback):
    """Run the Redis call; on a connection error or timeout, warn (rate-limited) and return `fallback(args)`."""

    def wrap(method):
        @functools.wraps(method)
        def call(self, *args, **kwargs):
            try:
                return method(self, *args, **kwargs)
            except (self._lib.ConnectionError, self._lib.TimeoutError) as exc:
                _warn(method.__name__, exc)
                return fallback(*args, **kwargs)

        return call

    return wrap


def _missing_key(*args, **kwargs):
    # What Django raises for incr of a missing key: callers already handle it (set the key, start a count).
    raise ValueError("Redis unavailable: key treated as missing")


def _get_default(key, default=None):
    return default


# A windowed counter in one round trip: Django's add-then-incr costs three (SET NX, then EXISTS and INCR).
COUNT_SCRIPT = ("local n = redis.call('INCR', KEYS[1]) "
                "if n == 1 and tonumber(ARGV[1]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end return n")


class TolerantRedisCacheClient(RedisCacheClient):
    def __init__(self, servers, **options):
        super().__init__(servers, **{**DEFAULT_OPTIONS, **options})
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # One immediate retry covers a pooled connection Redis closed (say, after its restart); no backoff.
        self._client = functools.partial(self._lib.Redis, retry=Retry(NoBackoff(), 1))
        self._clients = {}
        self._count_script = None

    def get_client(self, key=None, *, write=False):
        # Django makes a new redis.Redis for every call, which fills a table of ~170 response callbacks
        # each time: ~0.25 ms of CPU, most of a cache hit's cost. A client only borrows connections from
        # its pool per command (it is thread-safe), so one per pool serves every call alike.
        pool = self._get_connection_pool(write)
        client = self._clients.get(pool)
        if client is None:
            client = self._clients[pool] = self._client(connection_pool=pool)
        return client

    def _count(self, key, timeout):
        client = self.get_client(key, write=True)
        if self._count_script is None:
            self._count_script = client.register_script(COUNT_SCRIPT)
        return int(self._count_script(keys=[key], args=[timeout], client=client))

    # While Redis is down every request counts as a window's first: rate limits fail open.
    count = _tolerant(lambda key, timeout: 1)(_count)
    get = _tolerant(_get_default)(RedisCacheClient.get)
    get_many = _tolerant(lambda keys: {})(RedisCacheClient.get_many)
    has_key = _tolerant(lambda key: False)(RedisCacheClient.has_key)
    # "Added": the throttle's first request of a window then counts 1, so rate limits fail open.
    add = _tolerant(lambda key, value, timeout: True)(RedisCacheClient.add)
    set = _tolerant(lambda key, value, timeout: None)(RedisCacheClient.set)
    set_many = _tolerant(lambda data, timeout: [])(RedisCacheClient.set_many)
    touch = _tolerant(lambda key, timeout: False)(RedisCacheClient.touch)
    delete = _tolerant(lambda key: False)(RedisCacheClient.delete)
    delete_many = _tolerant(lambda keys: None)(RedisCacheClient.delete_many)
    clear = _tolerant(lambda: False)(RedisCacheClient.clear)
    incr = _tolerant(_missing_key)(RedisCacheClient.incr)


class TolerantRedisCache(RedisCache):
    """django.core.cache.backends.redis.RedisCache, answering as a miss while Redis is unreachable."""

    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = TolerantRedisCacheClient

    def count(self, key, timeout, version=None) -> int:
        """Add 1 to the counter at `key` and return it; a missing counter starts at 1 and expires after `timeout` s."""
        key = self.make_and_validate_key(key, version=version)
        expiry = self.get_backend_timeout(timeout)  # None: the counter never expires
        return self._cache.count(key, 0 if expiry is None else max(int(expiry), 1))
