"""Mixed load: decisions and the events that follow them, against gunicorn + PostgreSQL + Redis + a Celery worker.

    .venv/bin/python bench/load.py [--seconds 300] [--rate 300] [--connections 128] [--timeout 10]

Each simulated session asks for a decision (`POST /api/v1/decisions`); when ads are served it posts their
impressions (`POST /api/v1/events`, one batch, client event ids), and a share of sessions later posts a click
(sometimes with a conversion) referring to the decision. Sessions start on a fixed timetable sized so that
all requests together come to --rate per second (open loop; latency from each request's scheduled time, so
queueing counts). A request that cannot leave within --timeout of its scheduled time, or is not answered by
then, is abandoned and counted as a timeout (what a client with a deadline does), not retried; one still
waiting for a free connection when less than half its --timeout is left is not sent at all (`shed_before_sending`).

The services are the production configuration (see bench/decisions.py, whose set-up this reuses): gunicorn
with DEBUG off, Redis for the cache and throttle (db --cache-db) and as the Celery broker (db --broker-db),
and a real Celery worker with its embedded beat, so the periodic work (rates, online models) runs too.
Database: DATABASE_URL, default postgres://postgres@127.0.0.1:5432/encore_bench_load (a name with "bench").

Prints `name: value` lines; exits 1 when a 5xx was answered, an acknowledged event is missing or stored
twice, or a cap was exceeded (slow is not wrong).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone as dt_timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import decisions as harness  # noqa: E402  (the set-up, gunicorn and HTTP client of the decision bench)

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/encore_bench_load"
EVENTS_PATH = "/api/v1/events"
SEND_BUDGET = 0.5  # a request still waiting for a connection with less than this share of --timeout left is not sent
figure, log, percentile = harness.figure, harness.log, harness.percentile


def add_service_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--customers", type=int, default=100_000, help="demo size to seed when the database is empty")
    parser.add_argument("--activities-per-customer", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=8, help="threads per gunicorn worker")
    parser.add_argument("--worker-class", default="gthread")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379", help="Redis server (no db)")
    parser.add_argument("--cache-db", type=int, default=2, help="Redis db of the cache and throttle (flushed)")
    parser.add_argument("--broker-db", type=int, default=3, help="Redis db of the Celery broker (flushed)")
    parser.add_argument("--connections", type=int, default=128, help="client keep-alive connections")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds after its scheduled time a request is abandoned")
    parser.add_argument("--click-share", type=float, default=0.1, help="sessions that post a click")
    parser.add_argument("--conversion-share", type=float, default=0.3, help="clicks followed by a conversion")
    parser.add_argument("--hot-customers", type=int, default=20)
    parser.add_argument("--hot-share", type=float, default=0.02)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=300.0, help="how long sessions keep starting")
    parser.add_argument("--rate", type=float, default=300.0, help="requests per second, decisions and events together")
    add_service_arguments(parser)
    return parser.parse_args()


# -- services ---------------------------------------------------------------------------------------------------


@dataclass
class Services:
    gunicorn: harness.Server | None = None
    worker: subprocess.Popen | None = None
    folder: str = ""
    env: dict = field(default_factory=dict)
    cache_url: str = ""
    broker_url: str = ""


def flush_redis(url: str) -> None:
    import redis

    redis.Redis.from_url(url).flushdb()


def production_env(database_url: str, cache_url: str, broker_url: str) -> dict:
    """What gunicorn and the worker run with: production settings on the loopback."""
    env = dict(os.environ)
    env.update({
        "DJANGO_SETTINGS_MODULE": "config.settings", "DEBUG": "false", "SECRET_KEY": secrets.token_urlsafe(64),
        "ALLOWED_HOSTS": "127.0.0.1", "SECURE_SSL_REDIRECT": "false", "DATABASE_URL": database_url,
        "REDIS_URL": cache_url, "CELERY_BROKER_URL": broker_url, "LOG_LEVEL": "WARNING",
    })
    return env


def start_worker(env: dict, folder: str, *, name: str = "bench", beat: bool = True, queues: str = "default,ml",
                 concurrency: int = 1, extra_env: dict | None = None) -> subprocess.Popen:
    """A Celery worker (prefork) in its own session; with its embedded beat when `beat`."""
    command = [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", queues, "-c", str(concurrency),
               "-n", f"{name}-{secrets.token_hex(3)}@%h", "--loglevel", "WARNING", "--without-gossip", "--without-mingle"]
    if beat:
        command += ["-B", "-s", str(Path(folder) / "beat-schedule")]
    log(f"starting celery worker ({queues}, concurrency {concurrency}{', beat' if beat else ''})")
    return subprocess.Popen(command, cwd=ROOT, env={**env, **(extra_env or {})}, stdout=sys.stderr, stderr=sys.stderr,
                            start_new_session=True)


def stop_worker(process: subprocess.Popen | None, timeout: float = 30) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)  # warm shutdown: the running task finishes
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # its own session: only this worker's processes
        process.wait()


def start_services(args: argparse.Namespace, database_url: str, *, worker: bool = True) -> Services:
    services = Services(folder=tempfile.mkdtemp(prefix="encore-bench-load-"))
    services.cache_url = f"{args.redis}/{args.cache_db}"
    services.broker_url = f"{args.redis}/{args.broker_db}"
    flush_redis(services.cache_url)
    flush_redis(services.broker_url)
    services.env = production_env(database_url, services.cache_url, services.broker_url)
    os.environ["CELERY_BROKER_URL"] = services.broker_url  # start_gunicorn passes the environment on
    services.gunicorn = harness.start_gunicorn(args, database_url, services.cache_url)
    if worker:
        services.worker = start_worker(services.env, services.folder)
    return services


def stop_services(services: Services) -> None:
    if services.gunicorn is not None:
        harness.stop_gunicorn(services.gunicorn)
    log("stopping celery worker")
    stop_worker(services.worker)


def prepare(args: argparse.Namespace) -> tuple[str, dict, list[str]]:
    """Database checked, migrated, seeded and in the decision bench's known state; the customers' external ids."""
    database_url = os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    os.environ["DATABASE_URL"] = database_url
    # Seeding queues jobs (lookalike, mix model): onto the bench's own broker db, never the repository's var/ one.
    os.environ.setdefault("CELERY_BROKER_URL", f"{args.redis}/{args.broker_db}")
    harness.check_database(database_url, any_database=False)
    harness.setup_django(args)
    from audiences.models import Customer

    state = harness.prepare_demo()
    return database_url, state, list(Customer.objects.values_list("external_id", flat=True))


def issue_client(name: str):
    from accounts.models import ApiClient

    client, token = ApiClient.issue(f"{name}-{secrets.token_hex(4)}", ["decisions", "events:write"])
    client.requests_per_minute = 100_000_000  # the throttle counts but never limits the bench
    client.save(update_fields=["requests_per_minute"])
    return client, token


# -- sessions ---------------------------------------------------------------------------------------------------


@dataclass
class Record:
    kind: str  # "decision" or "events"
    due: float  # scheduled send time (loop clock)
    done: float
    status: int  # 0: connection failed; -1: sent, not answered in time; -2: shed by the client before sending
    attempt: int = 0


@dataclass
class Load:
    records: list[Record] = field(default_factory=list)
    posted: set[str] = field(default_factory=set)  # event ids sent at least once
    acknowledged: set[str] = field(default_factory=set)  # event ids in a batch answered 200
    decisions: list[str] = field(default_factory=list)  # decision ids answered 201
    sessions: int = 0
    unsent: int = 0  # event batches still waiting for a slot when the timetable ended
    started: float = 0.0
    ended: float = 0.0

    def status_counts(self, kind: str | None = None, since: float = float("-inf"), until: float = float("inf")) -> Counter:
        out = Counter()
        for r in self.records:
            if (kind is None or r.kind == kind) and since <= r.done < until:
                out[{-2: "shed", -1: "timeout", 0: "failed"}.get(r.status) or f"{r.status // 100}xx"] += 1
        return out


class Client:
    """The pool of keep-alive connections; every request carries its deadline (scheduled time + timeout)."""

    def __init__(self, port: int, token: str, connections: int, timeout: float, load: Load):
        self.pool: asyncio.Queue[harness.Connection] = asyncio.Queue()
        for _ in range(connections):
            self.pool.put_nowait(harness.Connection(port, token))
        self.timeout = timeout
        self.load = load

    async def send(self, kind: str, path: str, body: bytes, due: float, attempt: int = 0) -> tuple[int, bytes]:
        loop = asyncio.get_running_loop()
        deadline = due + self.timeout
        try:
            conn = await asyncio.wait_for(self.pool.get(), timeout=max(deadline - loop.time(), 0.001))
        except asyncio.TimeoutError:
            self.load.records.append(Record(kind, due, loop.time(), -2, attempt))
            return -1, b""
        if deadline - loop.time() < self.timeout * SEND_BUDGET:
            # Too late to be answered in time: a client with a deadline gives up here rather than make the
            # server do work nobody waits for (that work is what turns overload into collapse).
            self.pool.put_nowait(conn)
            self.load.records.append(Record(kind, due, loop.time(), -2, attempt))
            return -1, b""
        try:
            status, content = await asyncio.wait_for(conn.request(path, body), timeout=max(deadline - loop.time(), 0.001))
        except asyncio.TimeoutError:
            conn.close()  # the answer may still come: this connection can't be reused
            status, content = -1, b""
        finally:
            self.pool.put_nowait(conn)
        self.load.records.append(Record(kind, due, loop.time(), status, attempt))
        return status, content


def _event(event_id: str, kind: str, customer: str, decision: str, ad: int, value: float = 0.0) -> dict:
    return {"id": event_id, "type": kind, "customer": customer, "decision": decision, "ad": ad, "value": value,
            "occurred_at": datetime.now(dt_timezone.utc).isoformat()}


async def post_events(client: Client, events: list[dict], due: float, retries: int, retry_pause: float) -> None:
    """Post one batch; with retries, a failed attempt is sent again with the same event ids (they are idempotent)."""
    loop = asyncio.get_running_loop()
    body = json.dumps({"events": events}).encode()
    client.load.posted.update(e["id"] for e in events)
    for attempt in range(retries + 1):
        status, content = await client.send("events", EVENTS_PATH, body, due, attempt)
        if status == 200:
            client.load.acknowledged.update(e["id"] for e in events)
            return
        if 400 <= status < 500 or attempt == retries:
            return
        await asyncio.sleep(retry_pause)
        due = loop.time()


async def session(client: Client, requests: harness.Requests, rng: random.Random, run: str, n: int, due: float,
                  ready: asyncio.Queue, click_share: float, conversion_share: float) -> None:
    """A decision; its impressions, and sometimes a click after a pause, join `ready` to take the next free slots."""
    body = requests.body()
    customer = json.loads(body)["customer"]
    status, content = await client.send("decision", harness.DECISIONS_PATH, body, due)
    if status != 201:
        return
    answer = json.loads(content)
    decision, ads = answer["decision"], [a["ad"] for a in answer["ads"]]
    client.load.decisions.append(decision)
    if not ads:
        return
    ready.put_nowait([_event(f"{run}-{n}-imp-{slot}", "impression", customer, decision, ad) for slot, ad in enumerate(ads)])
    if rng.random() < click_share:
        await asyncio.sleep(rng.uniform(0.2, 1.0))  # the customer reads, then clicks
        events = [_event(f"{run}-{n}-click", "click", customer, decision, ads[0])]
        if rng.random() < conversion_share:
            events.append(_event(f"{run}-{n}-conv", "conversion", customer, decision, ads[0], round(rng.uniform(1, 30), 2)))
        ready.put_nowait(events)


async def run_load(port: int, token: str, customers: list[str], placements: list[str], args: argparse.Namespace,
                   seconds: float, rate: float, *, retries: int = 0, retry_pause: float = 1.0, run: str | None = None) -> Load:
    """`rate` requests a second on a fixed timetable for `seconds`, then waits for the last answers.

    Each slot of the timetable posts a waiting event batch (impressions of an answered decision, a click)
    if there is one, else starts a new session with a decision: the offered rate is exact whatever the
    mix, and every request's latency counts from its slot.
    """
    loop = asyncio.get_running_loop()
    load = Load()
    client = Client(port, token, args.connections, args.timeout, load)
    requests = harness.Requests(customers, placements, args.hot_customers, args.hot_share)
    ready: asyncio.Queue[list[dict]] = asyncio.Queue()
    rng = random.Random(11)
    run = run or uuid.uuid4().hex[:10]
    start = loop.time() + 0.2
    load.started = start
    tasks = set()
    for i in range(int(rate * seconds)):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if not ready.empty():
            work = post_events(client, ready.get_nowait(), due, retries, retry_pause)
        else:
            work = session(client, requests, rng, run, load.sessions, due, ready, args.click_share, args.conversion_share)
            load.sessions += 1
        task = asyncio.create_task(work)
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    load.unsent = ready.qsize()
    load.ended = loop.time()
    while not client.pool.empty():
        client.pool.get_nowait().close()
    return load


# -- checks -----------------------------------------------------------------------------------------------------


def stored_events(source: str) -> tuple[set[str], int]:
    """(event ids stored for this client, ids stored more than once)."""
    from django.db.models import Count

    from marketing.models import Event

    rows = Event.objects.filter(source=source)
    keys = set(rows.values_list("key", flat=True))
    twice = rows.values("key").annotate(n=Count("id")).filter(n__gt=1).count()
    return keys, twice


def print_load(load: Load, seconds: float) -> dict:
    """The figures of one run; returns the counts the caller judges."""
    elapsed = max(load.ended - load.started, seconds)
    counts = load.status_counts()
    answered = [r.done - r.due for r in load.records if r.status > 0]
    every = [r.done - r.due for r in load.records]  # timeouts at their abandon time: percentiles are lower bounds
    ok = counts["2xx"]
    figure("sent", len(load.records))
    figure("sessions", load.sessions)
    figure("event_batches_unsent", load.unsent)
    figure("offered_rps", f"{len(load.records) / seconds:.1f}")
    figure("rps", f"{ok / elapsed:.1f}")
    if every:
        figure("p50_ms", f"{percentile(every, 0.5) * 1000:.1f}")
        figure("p99_ms", f"{percentile(every, 0.99) * 1000:.1f}")
    if answered:
        figure("answered_p50_ms", f"{percentile(answered, 0.5) * 1000:.1f}")
        figure("answered_p99_ms", f"{percentile(answered, 0.99) * 1000:.1f}")
    figure("errors_5xx", counts["5xx"])
    figure("errors_other", counts["4xx"] + counts["failed"])
    figure("timeouts", counts["timeout"] + counts["shed"])
    figure("timeouts_after_sending", counts["timeout"])
    figure("shed_before_sending", counts["shed"])
    for kind in ("decision", "events"):
        c = load.status_counts(kind)
        figure(f"{kind}_sent", sum(c.values()))
        figure(f"{kind}_rps", f"{c['2xx'] / elapsed:.1f}")
        figure(f"{kind}_2xx", c["2xx"])
        figure(f"{kind}_4xx", c["4xx"])
        figure(f"{kind}_5xx", c["5xx"])
        figure(f"{kind}_failed", c["failed"])
        figure(f"{kind}_timeouts", c["timeout"] + c["shed"])
        lat = [r.done - r.due for r in load.records if r.kind == kind and r.status > 0]
        if lat:
            figure(f"{kind}_answered_p50_ms", f"{percentile(lat, 0.5) * 1000:.1f}")
            figure(f"{kind}_answered_p99_ms", f"{percentile(lat, 0.99) * 1000:.1f}")
    return counts


def main() -> None:
    args = parse_args()
    database_url, state, customers = prepare(args)
    from django.db import connection
    from django.utils import timezone

    from marketing.models import Decision

    figure("database", f"{connection.vendor} {connection.settings_dict['NAME']}")
    figure("customers", len(customers))
    figure("rate", f"{args.rate:g}")
    figure("seconds", f"{args.seconds:g}")
    client, token = issue_client("bench-load")
    since = timezone.now()
    services = None
    try:
        services = start_services(args, database_url)
        figure("gunicorn", services.gunicorn.config)
        figure("celery", "1 worker, concurrency 1, embedded beat, broker " + services.broker_url)
        log(f"load: {args.rate:g} requests/s for {args.seconds:g} s")
        load = asyncio.run(run_load(services.gunicorn.port, token, customers, state["placements"], args, args.seconds,
                                    args.rate))
        worker_alive = services.worker.poll() is None
    finally:
        if services is not None:
            stop_services(services)
        import redis

        store = redis.Redis.from_url(f"{args.redis}/{args.cache_db}")
        for key in store.scan_iter(match=f"*throttle:client:{client.pk}:*"):
            store.delete(key)

    counts = print_load(load, args.seconds)
    stored, twice = stored_events(f"client:{client.pk}")
    missing = len(load.acknowledged - stored)
    figure("events_posted", len(load.posted))
    figure("events_acknowledged", len(load.acknowledged))
    figure("events_stored", len(stored & load.posted))
    figure("events_missing", missing)
    figure("events_stored_twice", twice)
    decisions_stored = Decision.objects.filter(created_at__gte=since).count()
    figure("decisions_answered", len(load.decisions))
    figure("decisions_stored", decisions_stored)
    over, at_cap = harness.caps_exceeded(since)
    figure("customers_at_service_cap", at_cap)
    figure("caps_exceeded", over)
    figure("celery_worker_alive", int(worker_alive))
    try:
        client.delete()
    except Exception as exc:  # the run's figures stand; a leftover bench client is harmless
        log(f"warning: could not delete the bench client {client.pk}: {exc}")
    if counts["5xx"] or missing or twice or over:
        sys.exit(1)


if __name__ == "__main__":
    main()
