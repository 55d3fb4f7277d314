"""The Redis cache answers as a miss, quickly, when Redis cannot be reached; the API throttle then fails open."""

import time
from types import SimpleNamespace

import pytest
from django.test import override_settings

from accounts.throttling import ClientRateThrottle
from config.cache import TolerantRedisCache

DEAD_REDIS = "redis://127.0.0.1:1/2"  # nothing listens on port 1
LIVE_REDIS = "redis://127.0.0.1:6379/7"


@pytest.fixture
def dead():
    return TolerantRedisCache(DEAD_REDIS, {})


def test_reads_of_a_dead_redis_are_misses(dead):
    assert dead.get("k") is None
    assert dead.get("k", 42) == 42
    assert dead.get_many(["a", "b"]) == {}
    assert dead.has_key("k") is False
    assert "k" not in dead


def test_writes_to_a_dead_redis_are_dropped_without_raising(dead):
    dead.set("k", 1)
    dead.set_many({"a": 1})
    assert dead.delete("k") is False
    dead.delete_many(["a"])
    assert dead.touch("k") is False
    dead.clear()


def test_add_succeeds_and_incr_reports_a_missing_key(dead):
    assert dead.add("k", 1) is True
    with pytest.raises(ValueError):
        dead.incr("k")


def test_a_dead_redis_costs_milliseconds(dead):
    started = time.perf_counter()
    for _ in range(20):
        dead.get("k")
    assert (time.perf_counter() - started) / 20 < 0.05


def test_a_dead_redis_is_logged_once_not_per_call(dead, caplog, monkeypatch):
    monkeypatch.setattr("config.cache._last_warning", 0.0)
    with caplog.at_level("WARNING", logger="config.cache"):
        for _ in range(10):
            dead.get("k")
    assert len([r for r in caplog.records if "Redis cache unavailable" in r.message]) == 1


@override_settings(CACHES={"default": {"BACKEND": "config.cache.TolerantRedisCache", "LOCATION": DEAD_REDIS}})
def test_the_api_throttle_lets_requests_through_while_redis_is_down():
    request = SimpleNamespace(auth=None, user=SimpleNamespace(is_authenticated=True, pk=1))
    throttle = ClientRateThrottle()
    assert all(throttle.allow_request(request, view=None) for _ in range(5))


def test_a_live_redis_works_as_usual():
    live = TolerantRedisCache(LIVE_REDIS, {})
    try:
        live.get("probe")
    except Exception:  # pragma: no cover - the tolerant cache never raises, but be explicit
        pytest.skip("no Redis")
    if not live.add("test-cache:probe", 1, timeout=5) and live.get("test-cache:probe") is None:
        pytest.skip("no Redis on 127.0.0.1:6379")
    live.set("test-cache:n", 1, timeout=5)
    assert live.incr("test-cache:n") == 2
    assert live.get("test-cache:n") == 2
    live.delete_many(["test-cache:probe", "test-cache:n"])


def test_one_redis_client_serves_every_call_and_survives_a_dropped_connection():
    live = TolerantRedisCache(LIVE_REDIS, {})
    if not live.add("test-cache:reuse", 1, timeout=5) and live.get("test-cache:reuse") is None:
        pytest.skip("no Redis on 127.0.0.1:6379")
    client = live._cache.get_client(write=True)
    assert live._cache.get_client() is client  # not a new redis.Redis per call
    client.client_kill_filter(_id=client.client_id())  # Redis drops the pooled connection (as after its restart)
    assert live.get("test-cache:reuse") == 1  # the client's one retry reconnects
    live.delete("test-cache:reuse")


def test_a_counter_counts_in_one_round_trip_and_expires_with_its_window():
    live = TolerantRedisCache(LIVE_REDIS, {})
    if not live.add("test-cache:live", 1, timeout=5) and live.get("test-cache:live") is None:
        pytest.skip("no Redis on 127.0.0.1:6379")
    live.delete("test-cache:count")
    client = live._cache.get_client(write=True)
    before = client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
    assert [live.count("test-cache:count", 70) for _ in range(3)] == [1, 2, 3]
    assert live.get("test-cache:count") == 3  # the cache reads the counter as usual
    assert 60 < client.ttl(live.make_key("test-cache:count")) <= 70  # the expiry is set once, by the first count
    calls = client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0) - before
    assert calls >= 2  # the script ran server-side (EVAL loads it the first time, EVALSHA after)
    live.delete("test-cache:count")
    assert live.count("test-cache:count", None) == 1 and client.ttl(live.make_key("test-cache:count")) == -1  # no expiry
    live.delete_many(["test-cache:count", "test-cache:live"])


def test_a_counter_on_a_dead_redis_counts_one(dead):
    assert dead.count("anything", 70) == 1


def test_the_api_throttle_refuses_the_request_over_the_client_limit_on_redis(monkeypatch):
    live = TolerantRedisCache(LIVE_REDIS, {})
    if not live.add("test-cache:live", 1, timeout=5) and live.get("test-cache:live") is None:
        pytest.skip("no Redis on 127.0.0.1:6379")
    import accounts.throttling
    from accounts.models import ApiClient

    monkeypatch.setattr(accounts.throttling, "cache", live)
    request = SimpleNamespace(auth=ApiClient(pk=time.time_ns() % 2**62, requests_per_minute=3), user=None)
    throttle = ClientRateThrottle()
    window = int(time.time() // 60)
    allowed = [throttle.allow_request(request, view=None) for _ in range(5)]
    if int(time.time() // 60) != window:
        pytest.skip("the minute turned during the requests")
    assert allowed == [True, True, True, False, False]
    assert 0 < throttle.wait() <= 60
