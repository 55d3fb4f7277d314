"""Per-client API rate limits: a fixed one-minute window counted atomically in the cache (Redis in production)."""

from __future__ import annotations

import time

from django.conf import settings
from django.core.cache import cache
from rest_framework.throttling import BaseThrottle

from .models import ApiClient


class ClientRateThrottle(BaseThrottle):
    """Each API client (or signed-in user) gets its own requests per minute; over it, 429 with Retry-After.

    A counter per client and minute costs one atomic increment per request (one round trip to
    Redis: TolerantRedisCache.count), where DRF's own throttles keep a list of timestamps per
    client that grows with the rate.
    """

    def allow_request(self, request, view) -> bool:
        if isinstance(request.auth, ApiClient):
            who, limit = f"client:{request.auth.pk}", request.auth.requests_per_minute or settings.API_CLIENT_RATE_PER_MINUTE
        elif request.user and request.user.is_authenticated:
            who, limit = f"user:{request.user.pk}", settings.API_CLIENT_RATE_PER_MINUTE
        else:
            return True  # anonymous requests are refused by the permissions anyway
        window = int(time.time() // 60)
        key = f"throttle:{who}:{window}"
        counter = getattr(cache, "count", None)  # Redis; other caches add, then increment
        if counter is not None:
            count = counter(key, 70)
        elif cache.add(key, 1, timeout=70):
            count = 1
        else:
            try:
                count = cache.incr(key)
            except ValueError:  # expired between add and incr
                cache.add(key, 1, timeout=70)
                count = 1
        self.wait_seconds = 60 - time.time() % 60
        return count <= limit

    def wait(self) -> float:
        return getattr(self, "wait_seconds", 60.0)
