"""Decision API bench: `POST /api/v1/decisions` served by gunicorn with production settings, against a baseline.

    .venv/bin/python bench/decisions.py [--duration 20] [--rate 300] [--workers 2 --threads 8] [--profile]

Uses the PostgreSQL database DATABASE_URL names (default: postgres://postgres@127.0.0.1:5432/encore_bench_decisions,
created when missing; SQLite is refused, and so is a database whose name lacks "bench" unless --any-database:
the bench rewrites the demo campaigns' state and history). It migrates, seeds a 100k-customer demo when the
database has no customers (`seed_demo --customers 100000 --seed 7`), adds the demo campaigns (`seed_campaigns`),
and puts them in a known state: every demo campaign servable, the upsell and win-back ads past exploration
(ranked by model, ε = 0.1 still exploring), the new-release ads still exploring; the demo campaigns' served ads,
decisions, events, spend and response rates are cleared, and every customer has its cap lock row (the steady
state of a running service).

Then it starts gunicorn on a free local port with DEBUG off, a generated SECRET_KEY, ALLOWED_HOSTS=127.0.0.1,
SECURE_SSL_REDIRECT off (plain HTTP on the loopback; set only in gunicorn's environment), Redis for the
throttle counters, and DJANGO_SETTINGS_MODULE=bench.bench_settings (the product's settings and URLs plus
`POST /bench/baseline`: same authentication, scope, throttle and parsing, one indexed customer lookup).
A cheap asyncio HTTP/1.1 keep-alive client drives both endpoints with --connections concurrent connections
(closed loop, saturation) in --rounds interleaved rounds (baseline, decisions, baseline, …; each round on new
connections), then decisions at a fixed --rate on a timetable (open loop: latency is measured
from each request's scheduled send time, so queueing counts). Each phase's connections are spread evenly
over gunicorn's workers before it starts (`balance`, read back with Linux `ss`), as a least-connections
balancer would: left to the workers' accept race, 64 keep-alive connections landed as unevenly as 60 / 4. Afterwards it checks that no customer was
served past any count cap or inside any minimum gap.

Prints `name: value` lines on stdout (progress on stderr): decisions_rps, baseline_rps (over all rounds),
throughput_ratios (each round's) and throughput_ratio (their median; goal ≥ 0.5), connection_splits (connections
per worker in each phase), p50_ms, p99_ms (goal p99 ≤ 50), baseline_p50_ms and baseline_p99_ms (the baseline
request at the same fixed rate: the floor any endpoint on this server and these cores starts from), the non-2xx counts, the decision reasons, caps_exceeded; and,
measured in-process before the HTTP runs, champion_added_p99_ms (goal ≤ 5): the p99 of ordering a model-ranked
request with the campaigns' champion models minus the p99 with the interim rates (see champion_latency).
Exits 1 when a cap was exceeded or a saturated run got no successful response; slow is not wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/encore_bench_decisions"
DECISIONS_PATH = "/api/v1/decisions"
BASELINE_PATH = "/bench/baseline"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def figure(name: str, value) -> None:
    print(f"{name}: {value}", flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000, help="demo size to seed when the database is empty")
    parser.add_argument("--activities-per-customer", type=int, default=None,
                        help="passed to seed_demo (its default: 20); lower it if seeding is too slow")
    parser.add_argument("--connections", type=int, default=64, help="concurrent keep-alive connections (closed loop)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of load before each measurement")
    parser.add_argument("--duration", type=float, default=30.0,
                        help="measured seconds of each endpoint's closed-loop runs, split over --rounds")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved baseline / decisions rounds (median ratio)")
    parser.add_argument("--rate", type=float, default=300.0, help="decisions per second of the open-loop run")
    parser.add_argument("--open-duration", type=float, default=30.0, help="measured seconds of the open-loop run")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=8, help="threads per gunicorn worker")
    parser.add_argument("--worker-class", default="gthread", help="gunicorn worker class")
    parser.add_argument("--hot-customers", type=int, default=20,
                        help="a few heavy users who get --hot-share of the requests, so caps are reached under concurrency")
    parser.add_argument("--hot-share", type=float, default=0.02)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379", help="Redis server; the bench picks an empty db")
    parser.add_argument("--profile", action="store_true", help="cProfile 500 in-process decisions (stderr) before the HTTP runs")
    parser.add_argument("--any-database", action="store_true", help="allow a database whose name lacks 'bench'")
    parser.add_argument("--serving-only", action="store_true",
                        help="only the in-process figures (queries, the champion's added latency); no gunicorn")
    return parser.parse_args()


# -- database --------------------------------------------------------------------------------------------------


def check_database(url: str, any_database: bool) -> None:
    """PostgreSQL only; create the database when it is missing."""
    import dj_database_url
    import psycopg

    config = dj_database_url.parse(url)
    if not config["ENGINE"].endswith("postgresql"):
        sys.exit(f"bench/decisions.py needs PostgreSQL (DATABASE_URL={url!r}): the decision path's row locks and "
                 "concurrent writers are what it measures, and SQLite serialises every writer.")
    name = config["NAME"]
    if "bench" not in name and not any_database:
        sys.exit(f"database {name!r}: the bench rewrites the demo campaigns' state and clears their history; "
                 "use a database whose name contains 'bench', or pass --any-database.")
    server = {"host": config.get("HOST") or None, "port": config.get("PORT") or None, "user": config.get("USER") or None,
              "password": config.get("PASSWORD") or None, "dbname": "postgres"}
    with psycopg.connect(**{k: v for k, v in server.items() if v}, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            log(f"creating database {name}")
            conn.execute(f'CREATE DATABASE "{name}"')


def setup_django(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DEBUG", "true")  # this process only seeds and checks; gunicorn gets production settings
    import django

    django.setup()
    from django.core.management import call_command

    from audiences.models import Customer

    call_command("migrate", verbosity=0)
    if not Customer.objects.exists():
        extra = ["--activities-per-customer", str(args.activities_per_customer)] if args.activities_per_customer else []
        log(f"seeding a demo of {args.customers:,} customers (seed_demo --seed 7 {' '.join(extra)}) …")
        started = time.perf_counter()
        call_command("seed_demo", "--customers", str(args.customers), "--seed", "7", *extra, verbosity=0)
        figure("seed_seconds", f"{time.perf_counter() - started:.1f}")
    call_command("seed_campaigns", verbosity=0)


def prepare_demo() -> dict:
    """The demo campaigns servable, in a known exploration state, with no history; cap lock rows for everyone."""
    from django.db import connection, transaction
    from django.utils import timezone

    from audiences.models import Customer
    from marketing import demo, rates
    from marketing.models import Ad, Campaign, CampaignSpend, CapLock, Decision, Event, Placement, ResponseRate, ServedAd

    now = timezone.now()
    campaigns = Campaign.objects.filter(name__in=[c.name for c in demo.CAMPAIGNS])
    placements = Placement.objects.filter(slug__in=[p[0] for p in demo.PLACEMENTS])
    ads = Ad.objects.filter(campaign__in=campaigns)
    with transaction.atomic():
        Event.objects.filter(campaign__in=campaigns).delete()
        ServedAd.objects.filter(campaign__in=campaigns).delete()
        with connection.cursor() as cursor:  # raw: Django would load every decision to null its events' links
            cursor.execute(f"UPDATE {Event._meta.db_table} SET decision_id = NULL WHERE decision_id IN "
                           f"(SELECT id FROM {Decision._meta.db_table} WHERE placement_id = ANY(%s))",
                           [list(placements.values_list("pk", flat=True))])
            cursor.execute(f"DELETE FROM {Decision._meta.db_table} WHERE placement_id = ANY(%s)",
                           [list(placements.values_list("pk", flat=True))])
            cursor.execute(f"INSERT INTO {CapLock._meta.db_table} (customer_id) SELECT id FROM {Customer._meta.db_table} "
                           "ON CONFLICT DO NOTHING")
        CampaignSpend.objects.filter(campaign__in=campaigns).delete()
        ResponseRate.objects.filter(ad__in=ads).delete()
        # A bench-only shortcut past the lifecycle (Campaign.clean): serving, in flight, and explored or not on purpose.
        campaigns.update(starts_at=None, ends_at=None)
        campaigns.filter(name=demo.RELEASE).update(status=Campaign.Status.EXPLORING)
        campaigns.exclude(name=demo.RELEASE).update(status=Campaign.Status.LIVE)
        ads.update(status=Ad.Status.ACTIVE)
        ads.filter(campaign__name=demo.RELEASE).update(explored_at=None)
        ads.exclude(campaign__name=demo.RELEASE).update(explored_at=now)
    rates.forget()
    servable = {p.slug: Ad.objects.servable(p, now).count() for p in placements}
    return {"placements": sorted(servable), "servable": servable, "explored": ads.filter(explored_at__isnull=False).count(),
            "exploring": ads.filter(explored_at__isnull=True).count()}


# -- in-process measurements -------------------------------------------------------------------------------


def queries_per_decision(customers: list[str], placements: list[str], n: int = 200) -> tuple[float, float]:
    """Mean SQL queries and mean milliseconds of `decide` in this process (no HTTP), over n random requests (after 20 uncounted)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from audiences.models import Customer
    from marketing.decisions import decide
    from marketing.models import Placement

    rng = random.Random(1)
    by_slug = {p.slug: p for p in Placement.objects.select_related("channel").filter(slug__in=placements)}
    picks = [(Customer.objects.get(external_id=rng.choice(customers)), by_slug[rng.choice(placements)]) for _ in range(n)]
    for customer, placement in picks[:20]:  # warm-up, not counted: first imports, champion loads, set-up caches
        decide(customer, placement)
    with CaptureQueriesContext(connection) as captured:
        started = time.perf_counter()
        for customer, placement in picks:
            decide(customer, placement)
        seconds = time.perf_counter() - started
    return len(captured.captured_queries) / n, seconds * 1000 / n


def profile_decisions(customers: list[str], placements: list[str], n: int = 500) -> None:
    import cProfile
    import io
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    queries_per_decision(customers, placements, n)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(45)
    log(out.getvalue())


def champion_latency(customers: list[str], n: int = 2000) -> dict:
    """Added latency of scoring with a champion: `decisions.order` on model-ranked requests, interim rates vs champions.

    The champions are real models: for each demo campaign whose ads a plan ranks, its ads are scored on
    3,000 demo listeners by the simulator's hidden truth (clicks drawn from it), and `ml.automodel.train`
    picks the best candidate, registered and promoted as the campaign's champion. The same requests are
    then ordered without champions (the interim per-segment rates) and with them, in this process.
    """
    from django.utils import timezone

    from audiences.models import Customer
    from marketing import decisions, learning, rates, simulator
    from marketing.models import Ad, Campaign, Placement
    from ml import automodel, registry, serving
    from ml.models import ModelVersion

    import pandas as pd
    import pickle

    now = timezone.now()
    ranked = rates.ranked_ads()
    campaigns = Campaign.objects.filter(ads__pk__in=ranked, ads__explored_at__isnull=False).distinct()
    keys = [learning.model_key(c.pk) for c in campaigns]
    ModelVersion.objects.filter(key__in=keys).delete()
    serving.forget()
    rng = random.Random(3)
    placements = list(Placement.objects.select_related("channel").all())
    picks = []
    for external_id in rng.sample(customers, min(len(customers), 6 * n)):
        customer = Customer.objects.select_related("persona").get(external_id=external_id)
        placement = rng.choice(placements)
        route = decisions.route(customer, placement, now)
        if route.order == "model" and len(route.ads) > 1 and all(a.explored_at for a in route.ads):
            picks.append((customer, route))
        if len(picks) == n:
            break

    versions = Counter()

    def timed() -> list[float]:
        out = []
        versions.clear()
        for i, (customer, route) in enumerate(picks):
            started = time.perf_counter()
            policy = decisions.order(route, customer, random.Random(i), now)
            out.append(time.perf_counter() - started)
            versions["champion" if policy.model_version.startswith("campaign:") else "interim"] += 1
        return out

    timed()  # warm caches (rates, set-up)
    interim = timed()
    trained = {}
    learners = list(Customer.objects.select_related("persona").filter(persona__isnull=False).order_by("?")[:3000])
    for campaign in campaigns:
        ads = list(Ad.objects.filter(campaign=campaign, pk__in=ranked).select_related("promoted_item"))
        rows = []
        for i, customer in enumerate(learners):
            ad = ads[i % len(ads)]
            snapshot = learning.snapshot_now(customer)
            clicked = rng.random() < simulator.truth(ad.name, campaign.goal, simulator.Profile.of(customer)).click
            rows.append({"decision_id": str(i), "created_at": now, "served": True, "responded": float(clicked),
                         **automodel.features(snapshot, learning.ad_features(ad), now)})
        frame = pd.DataFrame(rows)
        frame["created_at"] = pd.to_datetime([now.timestamp() - 3000 + i for i in range(len(frame))], unit="s", utc=True)
        result = automodel.train(frame, min_responses=5)
        version = registry.register_candidate(learning.model_key(campaign.pk), result.kind, pickle.dumps(result.scorer),
                                              suffix=".pkl", metrics=result.metrics, campaign_id=campaign.pk)
        registry.promote(version, by="bench")
        trained[campaign.name] = f"{result.kind} auc={result.metrics['auc']:.3f}"
    serving.forget()
    timed()  # load the champions once per process, as a worker does on its first request
    champion = timed()
    return {"requests": len(picks), "models": trained, "by_champion": versions["champion"] / max(len(picks), 1),
            "interim_p50": percentile(interim, 0.5) * 1000, "interim_p99": percentile(interim, 0.99) * 1000,
            "champion_p50": percentile(champion, 0.5) * 1000, "champion_p99": percentile(champion, 0.99) * 1000}


# -- gunicorn -------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_redis_db(base: str) -> int:
    import redis

    for db in range(15, 0, -1):
        if redis.Redis.from_url(f"{base}/{db}").dbsize() == 0:
            return db
    sys.exit(f"no empty Redis database on {base}")


@dataclass
class Server:
    process: subprocess.Popen
    port: int
    config: str


def start_gunicorn(args: argparse.Namespace, database_url: str, redis_url: str) -> Server:
    port = free_port()
    env = dict(os.environ)
    env.update({
        "DJANGO_SETTINGS_MODULE": "bench.bench_settings", "DEBUG": "false", "SECRET_KEY": secrets.token_urlsafe(64),
        "ALLOWED_HOSTS": "127.0.0.1", "SECURE_SSL_REDIRECT": "false",  # plain HTTP on the loopback, no TLS proxy in front
        "DATABASE_URL": database_url, "REDIS_URL": redis_url, "LOG_LEVEL": "WARNING",
    })
    command = [sys.executable, "-m", "gunicorn", "config.wsgi:application", "--bind", f"127.0.0.1:{port}",
               "--workers", str(args.workers), "--worker-class", args.worker_class, "--threads", str(args.threads),
               "--keep-alive", "5", "--backlog", "2048", "--log-level", "warning", "--chdir", str(ROOT),
               "--preload"]  # as docker/gunicorn.conf.py: workers fork from a warmed master
    config = f"{args.workers} workers x {args.threads} threads ({args.worker_class})"
    log(f"starting gunicorn: {config} on 127.0.0.1:{port}")
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=sys.stderr, stderr=sys.stderr, start_new_session=True)
    server = Server(process, port, config)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                if response.status == 200:
                    return server
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.3)
    stop_gunicorn(server)
    raise RuntimeError("gunicorn did not answer /healthz within 60 s")


def stop_gunicorn(server: Server) -> None:
    if server.process.poll() is not None:
        return
    log("stopping gunicorn")
    server.process.send_signal(signal.SIGTERM)  # the master stops its workers gracefully
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.process.pid, signal.SIGKILL)  # its own session: only gunicorn's processes
        server.process.wait()


def post_once(port: int, path: str, token: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(), method="POST",
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, {"body": error.read()[:300].decode(errors="replace")}


# -- load -----------------------------------------------------------------------------------------------------


class Connection:
    """One HTTP/1.1 keep-alive connection; reopened when the server closes it or it fails."""

    def __init__(self, port: int, token: str):
        self.port = port
        self.head = (f"Host: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
                     "Content-Type: application/json\r\nAccept: application/json\r\n").encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> int:
        """The response's status code, or 0 when the connection failed."""
        return (await self.request(path, body))[0]

    async def request(self, path: str, body: bytes) -> tuple[int, bytes]:
        """The response's status code and body, or (0, b"") when the connection failed."""
        try:
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            self.writer.write(b"POST " + path.encode() + b" HTTP/1.1\r\n" + self.head
                              + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            head = await self.reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length, close = 0, False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection" and value.strip().lower() == b"close":
                    close = True
                elif name == b"transfer-encoding":
                    raise ValueError("chunked responses are not expected here")
            content = await self.reader.readexactly(length)
            if close:
                self.close()
            return status, content
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            self.close()
            return 0, b""

    async def connect(self) -> None:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    @property
    def local_port(self) -> int | None:
        return self.writer.get_extra_info("sockname")[1] if self.writer is not None else None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def worker_pids(master: int) -> list[int]:
    """gunicorn's workers: the master's child processes (Linux /proc; [] elsewhere)."""
    try:
        return sorted(int(pid) for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split())
    except OSError:
        return []


def connection_owners(port: int) -> dict[int, int] | None:
    """Client port → the pid of the worker that accepted it, for connections to `port` (`ss`; None without it)."""
    try:
        out = subprocess.run(["ss", "-tnpH", "state", "established", f"( sport = :{port} )"],
                             capture_output=True, text=True, timeout=5, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    owners = {}
    for line in out.splitlines():
        found = re.search(r"pid=(\d+)", line)
        fields = line.split()
        if found and len(fields) >= 4:
            owners[int(fields[3].rsplit(":", 1)[1])] = int(found.group(1))
    return owners


async def balance(conns: list[Connection], port: int, workers: list[int], tries: int = 40) -> str:
    """Open the connections and spread them evenly over the workers, as a least-connections balancer would.

    gunicorn's workers race to accept each new connection, so a burst of 64 can land 60 / 4 — and a
    closed loop over keep-alive connections then measures one worker's GIL, not the endpoint. Connections
    on a worker over its share are closed and reopened until every worker holds its share (best effort:
    `tries` rounds). Returns the split, e.g. "32/32".
    """
    split = ""
    for _ in range(tries):
        for conn in conns:
            await conn.connect()
        owners: dict[int, int] | None = {}
        for _ in range(50):  # until every connection has been accepted by a worker
            await asyncio.sleep(0.02)
            owners = connection_owners(port)
            if owners is None or all(conn.local_port in owners for conn in conns):
                break
        if owners is None or not workers:
            return "unknown"
        held: dict[int, list[Connection]] = {pid: [] for pid in workers}
        for conn in conns:
            held.setdefault(owners.get(conn.local_port, 0), []).append(conn)
        split = "/".join(str(len(held[pid])) for pid in workers)
        share = math.ceil(len(conns) / len(workers))
        excess = [conn for pid, mine in held.items() for conn in (mine[share:] if pid in workers else mine)]
        if not excess:
            return split
        for conn in excess:
            conn.close()
    return split


@dataclass
class Result:
    statuses: Counter = field(default_factory=Counter)  # "2xx", "4xx", "5xx", "failed"
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    unfinished: int = 0  # open loop: not answered within the grace after the timetable ended
    split: str = ""  # the connections per gunicorn worker (see balance)

    def record(self, status: int, latency: float) -> None:
        self.statuses["failed" if status == 0 else f"{status // 100}xx"] += 1
        self.latencies.append(latency)

    @property
    def ok(self) -> int:
        return self.statuses["2xx"]

    def add(self, other: "Result") -> None:
        self.statuses.update(other.statuses)
        self.latencies += other.latencies
        self.seconds += other.seconds
        self.unfinished += other.unfinished

    @property
    def errors(self) -> int:
        return sum(n for kind, n in self.statuses.items() if kind != "2xx")


class Requests:
    """Decision request bodies for random demo customers and placements (a few heavy users get a share)."""

    def __init__(self, customers: list[str], placements: list[str], hot: int, hot_share: float, seed: int = 7):
        self.rng = random.Random(seed)
        self.customers = customers
        self.hot = self.rng.sample(customers, min(hot, len(customers)))
        self.hot_share = hot_share if self.hot else 0.0
        self.placements = placements

    def body(self) -> bytes:
        pool = self.hot if self.rng.random() < self.hot_share else self.customers
        return json.dumps({"customer": self.rng.choice(pool), "placement": self.rng.choice(self.placements)}).encode()


async def closed_loop(port: int, token: str, path: str, requests: Requests, connections: int, warmup: float,
                      duration: float, workers: list[int]) -> Result:
    """Each connection sends its next request as soon as the last is answered; counts what completes in the window."""
    loop = asyncio.get_running_loop()
    result = Result(seconds=duration)
    conns = [Connection(port, token) for _ in range(connections)]
    result.split = await balance(conns, port, workers)
    begin = loop.time() + warmup
    end = begin + duration

    async def client(conn: Connection) -> None:
        while (sent := loop.time()) < end:
            status = await conn.post(path, requests.body())
            done = loop.time()
            if begin <= done <= end:
                result.record(status, done - sent)
        conn.close()

    await asyncio.gather(*(client(conn) for conn in conns))
    return result


async def open_loop(port: int, token: str, path: str, requests: Requests, rate: float, warmup: float, duration: float,
                    connections: int, workers: list[int], grace: float = 10.0) -> Result:
    """Requests on a fixed timetable whatever the responses; latency from the scheduled send time (queueing included)."""
    loop = asyncio.get_running_loop()
    result = Result(seconds=duration)
    queue: asyncio.Queue[float | None] = asyncio.Queue()
    total = int(rate * (warmup + duration))

    async def timetable() -> None:
        for i in range(total):
            due = start + i / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            queue.put_nowait(due)
        for _ in range(connections):
            queue.put_nowait(None)

    async def client(conn: Connection) -> None:
        while (due := await queue.get()) is not None:
            left = deadline - loop.time()
            try:  # past the deadline the server is hopelessly behind: stop waiting, count it unfinished
                status = await asyncio.wait_for(conn.post(path, requests.body()), timeout=left) if left > 0 else None
            except asyncio.TimeoutError:
                conn.close()
                status = None
            if status is None:
                result.unfinished += 1
            if due >= begin:  # an unfinished request counts with its wait so far: the percentiles are then lower bounds
                result.record(status or 0, loop.time() - due)
        conn.close()

    conns = [Connection(port, token) for _ in range(connections)]
    result.split = await balance(conns, port, workers)
    start = loop.time() + 0.2  # the timetable starts once the connections are open and spread
    begin = start + warmup
    deadline = start + warmup + duration + grace
    await asyncio.gather(timetable(), *(client(conn) for conn in conns))
    return result


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def print_closed(name: str, result: Result) -> None:
    figure(f"{name}_rps", f"{result.ok / result.seconds:.1f}")
    figure(f"{name}_2xx", result.statuses["2xx"])
    figure(f"{name}_4xx", result.statuses["4xx"])
    figure(f"{name}_5xx", result.statuses["5xx"])
    figure(f"{name}_failed", result.statuses["failed"])
    figure(f"{name}_errors", result.errors)
    if result.latencies:
        figure(f"{name}_closed_p50_ms", f"{percentile(result.latencies, 0.5) * 1000:.1f}")


# -- correctness ----------------------------------------------------------------------------------------------


def caps_exceeded(since) -> tuple[int, int]:
    """(customer × cap pairs over a count cap or inside a minimum gap, customers at the service cap) since `since`.

    The history was cleared before the run and the run is shorter than every window (the shortest is an
    hour) and every gap, so whatever was served since `since` lies in one window: over max_count is over the cap.
    """
    from django.db.models import Count

    from marketing.models import FrequencyCap, ServedAd

    served = ServedAd.objects.filter(served_at__gte=since)
    over = at_service_cap = 0
    for cap in FrequencyCap.objects.all():
        scoped = served if cap.level == FrequencyCap.Level.SERVICE else served.filter(
            **{f"{cap.level}_id": getattr(cap, f"{cap.level}_id")})
        per_customer = scoped.values("customer_id").annotate(n=Count("id"))
        if cap.max_count:
            over += per_customer.filter(n__gt=cap.max_count).count()
            if cap.level == FrequencyCap.Level.SERVICE:
                at_service_cap += per_customer.filter(n=cap.max_count).count()
        if cap.min_gap_seconds:
            over += per_customer.filter(n__gt=1).count()
    return over, at_service_cap


# -- main -----------------------------------------------------------------------------------------------------


def main() -> None:
    args = parse_args()
    database_url = os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    os.environ["DATABASE_URL"] = database_url
    check_database(database_url, args.any_database)
    setup_django(args)

    from django.db import connection
    from django.db.models import Count
    from django.utils import timezone

    from accounts.models import ApiClient
    from audiences.models import Customer
    from marketing.models import Decision

    state = prepare_demo()
    customers = list(Customer.objects.values_list("external_id", flat=True))
    figure("database", f"{connection.vendor} {connection.settings_dict['NAME']}")
    figure("customers", len(customers))
    figure("placements", ",".join(state["placements"]))
    figure("servable_ads", ",".join(f"{slug}={n}" for slug, n in sorted(state["servable"].items())))
    figure("ads_explored", state["explored"])
    figure("ads_exploring", state["exploring"])
    if len(customers) < 100_000:
        log(f"warning: {len(customers):,} customers; the issue asks for at least 100k")
    since = timezone.now()

    if args.profile:
        profile_decisions(customers, state["placements"])
    queries, ms = queries_per_decision(customers, state["placements"])
    figure("queries_per_decision", f"{queries:.1f}")
    figure("inprocess_decision_ms", f"{ms:.2f}")
    served = champion_latency(customers)
    for name, model in served["models"].items():
        log(f"champion of {name}: {model}")
    figure("model_ranked_requests", served["requests"])
    figure("share_scored_by_champion", f"{served['by_champion']:.2f}")
    figure("order_p50_ms_interim", f"{served['interim_p50']:.2f}")
    figure("order_p99_ms_interim", f"{served['interim_p99']:.2f}")
    figure("order_p50_ms_champion", f"{served['champion_p50']:.2f}")
    figure("order_p99_ms_champion", f"{served['champion_p99']:.2f}")
    figure("champion_added_p99_ms", f"{served['champion_p99'] - served['interim_p99']:.2f}")
    if args.serving_only:
        return

    client, token = ApiClient.issue(f"bench-decisions-{secrets.token_hex(4)}", ["decisions"])
    client.requests_per_minute = 100_000_000  # the per-client throttle still counts, but never limits the bench
    client.save(update_fields=["requests_per_minute"])
    redis_url = f"{args.redis_url}/{free_redis_db(args.redis_url)}"
    server = None
    failed = False
    try:
        server = start_gunicorn(args, database_url, redis_url)
        figure("gunicorn", server.config)
        figure("redis", redis_url)
        requests = Requests(customers, state["placements"], args.hot_customers, args.hot_share)
        status, body = post_once(server.port, DECISIONS_PATH, token, {"customer": customers[0], "placement": "home-banner"})
        log(f"a decision: {status} {json.dumps(body)[:300]}")
        if status != 201:
            raise RuntimeError(f"POST {DECISIONS_PATH} answered {status}, not 201: {body}")
        status, body = post_once(server.port, BASELINE_PATH, token, {"customer": customers[0], "placement": "home-banner"})
        if status != 200:
            raise RuntimeError(f"POST {BASELINE_PATH} answered {status}, not 200: {body}")

        figure("connections", args.connections)
        figure("duration_s", args.duration)
        figure("rounds", args.rounds)
        # Interleaved rounds, each on new connections: how the server's workers happen to share the connections
        # (and what else the machine runs) varies from one run to the next; the median of the rounds' ratios
        # is steadier than one long run of each.
        baseline, decisions, ratios, splits = Result(), Result(), [], []
        each = args.duration / args.rounds
        for n in range(1, args.rounds + 1):
            log(f"round {n}/{args.rounds}, closed loop: baseline, then decisions, {args.connections} connections, "
                f"{args.warmup:g} s warm-up + {each:g} s each")
            base = asyncio.run(closed_loop(server.port, token, BASELINE_PATH, requests, args.connections, args.warmup, each,
                                           worker_pids(server.process.pid)))
            decided = asyncio.run(closed_loop(server.port, token, DECISIONS_PATH, requests, args.connections, args.warmup, each,
                                              worker_pids(server.process.pid)))
            baseline.add(base)
            decisions.add(decided)
            splits += [base.split, decided.split]
            if base.ok:
                ratios.append(decided.ok / base.ok)
                log(f"round {n}: baseline {base.ok / each:.1f}/s ({base.split}), decisions {decided.ok / each:.1f}/s "
                    f"({decided.split}), ratio {ratios[-1]:.2f}")
        print_closed("baseline", baseline)
        print_closed("decisions", decisions)
        figure("connection_splits", ",".join(splits))  # connections per worker in each phase (see balance)
        if ratios:
            figure("throughput_ratios", ",".join(f"{r:.2f}" for r in ratios))
            figure("throughput_ratio", f"{statistics.median(ratios):.2f}")

        log(f"open loop: decisions at {args.rate:g}/s, {args.warmup:g} s warm-up + {args.open_duration:g} s")
        steady = asyncio.run(open_loop(server.port, token, DECISIONS_PATH, requests, args.rate, args.warmup,
                                       args.open_duration, args.connections, worker_pids(server.process.pid)))
        figure("open_loop_connection_split", steady.split)
        figure("open_loop_rate", f"{args.rate:g}")
        figure("open_loop_requests", len(steady.latencies))
        figure("open_loop_errors", steady.errors)
        figure("open_loop_unfinished", steady.unfinished)
        if steady.latencies:
            figure("p50_ms", f"{percentile(steady.latencies, 0.5) * 1000:.1f}")
            figure("p99_ms", f"{percentile(steady.latencies, 0.99) * 1000:.1f}")
            figure("max_ms", f"{max(steady.latencies) * 1000:.1f}")
        # The floor for the same rate: the baseline request, as open loop, on the same server and cores.
        log(f"open loop: baseline at {args.rate:g}/s, {args.warmup:g} s warm-up + {args.open_duration:g} s")
        floor = asyncio.run(open_loop(server.port, token, BASELINE_PATH, requests, args.rate, args.warmup,
                                      args.open_duration, args.connections, worker_pids(server.process.pid)))
        figure("baseline_open_loop_unfinished", floor.unfinished)
        if floor.latencies:
            figure("baseline_p50_ms", f"{percentile(floor.latencies, 0.5) * 1000:.1f}")
            figure("baseline_p99_ms", f"{percentile(floor.latencies, 0.99) * 1000:.1f}")
        failed = not (baseline.ok and decisions.ok)  # an open loop the server cannot keep up with is slow, not wrong
    finally:
        if server is not None:
            stop_gunicorn(server)
        import redis

        store = redis.Redis.from_url(redis_url)
        for key in store.scan_iter(match=f"*throttle:client:{client.pk}:*"):
            store.delete(key)
        client.delete()

    reasons = dict(Decision.objects.filter(created_at__gte=since).values_list("reason").annotate(n=Count("id")))
    for reason in sorted(reasons):
        figure(f"reason_{reason}", reasons[reason])
    over, at_cap = caps_exceeded(since)
    figure("customers_at_service_cap", at_cap)
    figure("caps_exceeded", over)
    if over:
        log("error: customers were served past a cap")
    if over or failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
