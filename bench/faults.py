"""Fault drills: a Celery worker killed mid-job, PostgreSQL restarted under load, Redis gone while serving.

    .venv/bin/python bench/faults.py worker-kill        [--rows 400000]
    .venv/bin/python bench/faults.py postgres-restart   [--seconds 60 --rate 100]
    .venv/bin/python bench/faults.py redis-down         [--down 15]

Each drill runs on the PostgreSQL database encore_bench_faults (a copy of encore_bench_load when that
exists, else seeded like it), prints `name: value` findings and `result: PASS` or `result: FAIL`, and
exits 1 on FAIL. postgres-restart and redis-down restart a shared service for a few seconds: other
users of it see the same short outage. Redis dbs 4 (broker) and 5 (cache) are flushed and used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import decisions as harness  # noqa: E402
from bench import load as mixed  # noqa: E402

DATABASE_URL = "postgres://postgres@127.0.0.1:5432/encore_bench_faults"
TEMPLATE = "encore_bench_load"
REDIS = "redis://127.0.0.1:6379"
BROKER_DB, CACHE_DB = 4, 5
figure, log = harness.figure, harness.log


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    drills = parser.add_subparsers(dest="drill", required=True)
    kill = drills.add_parser("worker-kill", help="kill -9 a worker during a customers import and a lookalike training")
    kill.add_argument("--rows", type=int, default=400_000, help="customers in the imported CSV")
    kill.add_argument("--visibility-timeout", type=int, default=60,
                      help="CELERY_VISIBILITY_TIMEOUT for the drill's workers (seconds; production default 6 h)")
    pg = drills.add_parser("postgres-restart", help="restart PostgreSQL in the middle of a mixed load")
    pg.add_argument("--seconds", type=float, default=60.0)
    pg.add_argument("--rate", type=float, default=100.0, help="requests per second (below saturation, so the outage shows)")
    pg.add_argument("--restart-at", type=float, default=25.0, help="seconds into the load")
    rd = drills.add_parser("redis-down", help="stop Redis while gunicorn serves decisions")
    rd.add_argument("--down", type=float, default=15.0, help="seconds Redis stays down")
    rd.add_argument("--burst", type=int, default=60, help="concurrent decisions for one customer (caps must hold)")
    for sub in (kill, pg, rd):
        mixed.add_service_arguments(sub)
        sub.set_defaults(cache_db=CACHE_DB, broker_db=BROKER_DB, redis=REDIS)
    return parser.parse_args()


def verdict(checks: dict[str, bool]) -> None:
    for name, ok in checks.items():
        figure(f"check_{name}", "ok" if ok else "FAILED")
    passed = all(checks.values())
    figure("result", "PASS" if passed else "FAIL")
    if not passed:
        sys.exit(1)


# -- database -------------------------------------------------------------------------------------------------


def faults_database(args: argparse.Namespace) -> str:
    """encore_bench_faults: copied from encore_bench_load when that exists (seconds), else created and seeded."""
    import psycopg

    os.environ.setdefault("CELERY_BROKER_URL", f"{REDIS}/{BROKER_DB}")  # never the repository's var/ broker

    os.environ["DATABASE_URL"] = DATABASE_URL
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = 'encore_bench_faults'").fetchone()
        has_template = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [TEMPLATE]).fetchone()
        if not exists and has_template:
            log(f"copying {TEMPLATE} to encore_bench_faults")
            conn.execute(f'CREATE DATABASE encore_bench_faults TEMPLATE "{TEMPLATE}"')
    harness.check_database(DATABASE_URL, any_database=False)
    harness.setup_django(args)
    return DATABASE_URL


def postgres_cluster() -> str:
    return sorted(os.listdir("/etc/postgresql"))[0]


def restart_postgres() -> float:
    """Restart the local cluster; returns how long it took."""
    started = time.monotonic()
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", postgres_cluster(), "main", "restart"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - started


# -- worker-kill ----------------------------------------------------------------------------------------------


def wait_for(condition, timeout: float, every: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return False


def pool_children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


def job_state(job_id: int) -> tuple[str, float, int]:
    from ml.models import Job

    job = Job.objects.get(pk=job_id)
    return job.status, job.progress, job.attempts


def drill_import(args: argparse.Namespace, env: dict, folder: str) -> dict[str, bool]:
    """A customers CSV import; kill -9 the pool child running it once its job shows progress."""
    from django.core.files import File

    from audiences import actions
    from audiences.models import Customer, DataImport, ImportKind

    prefix = f"faultimp-{uuid.uuid4().hex[:6]}-"
    path = Path(folder) / "customers.csv"
    with path.open("w") as out:
        out.write("customer_id,birth_year,gender,region,city_tier,signup_date,is_subscriber\n")
        for i in range(args.rows):
            out.write(f"{prefix}{i},{1960 + i % 45},{'fmx'[i % 3]},south,{1 + i % 3},2024-0{1 + i % 9}-1{i % 10},{i % 2}\n")
    with path.open("rb") as handle:
        data_import = actions.receive_upload(File(handle, name="fault-customers.csv"), ImportKind.CUSTOMERS, by=None)
    worker = mixed.start_worker(env, folder, name="import", beat=False, queues="default")
    try:
        job = actions.queue_import(data_import, data_import.mapping, by=None)
        figure("import_rows", args.rows)
        figure("import_job", job.pk)
        progressed = wait_for(lambda: job_state(job.pk)[1] > 0, timeout=120, every=0.05)
        status, progress, attempts = job_state(job.pk)
        figure("import_progress_at_kill", f"{progress:.2f}")
        children = pool_children(worker.pid)
        figure("import_killed", f"pool child {children} (kill -9), the worker's main process stays")
        for child in children:
            os.kill(child, signal.SIGKILL)
        killed_at = time.monotonic()
        done = wait_for(lambda: job_state(job.pk)[0] in ("succeeded", "failed"), timeout=args.visibility_timeout + 240)
        figure("import_seconds_to_done_after_kill", f"{time.monotonic() - killed_at:.1f}")
    finally:
        mixed.stop_worker(worker)
    status, progress, attempts = job_state(job.pk)
    data_import.refresh_from_db()
    customers = Customer.objects.filter(external_id__startswith=prefix)
    stored = customers.count()
    distinct = customers.values("external_id").distinct().count()
    figure("import_job_status", status)
    figure("import_attempts", attempts)
    figure("import_status", data_import.status)
    figure("import_customers_stored", stored)
    figure("import_customers_distinct", distinct)
    figure("import_rows_created_reported", data_import.rows_created)
    customers.delete()
    DataImport.objects.filter(pk=data_import.pk).delete()
    return {"import_progressed_before_kill": progressed, "import_job_succeeded": done and status == "succeeded",
            "import_redelivered": attempts >= 2, "import_each_customer_once": stored == distinct == args.rows,
            "import_marked_done": data_import.status == DataImport.Status.DONE,
            "import_new_rows_counted_once": data_import.rows_created == args.rows}


def drill_lookalike(args: argparse.Namespace, env: dict, folder: str) -> dict[str, bool]:
    """A lookalike training; kill -9 the whole worker (main and pool) mid-way, start another; redelivery after
    the visibility timeout."""
    from django.db.models import Count

    from audiences import actions
    from audiences.models import AudienceMember, Lookalike, LookalikeScore
    from ml.models import Job
    from ml.tasks import reap_jobs

    lookalike = Lookalike.objects.select_related("audience").order_by("pk").first()
    if lookalike is None:
        figure("lookalike", "none in the demo")
        return {"lookalike_exists": False}
    Job.objects.filter(pk=lookalike.job_id).exclude(status__in=["succeeded", "failed"]).update(status="failed")
    worker = mixed.start_worker(env, folder, name="ml", beat=False, queues="ml")
    job = actions.queue_lookalike_training(lookalike, by=None)
    figure("lookalike_job", job.pk)
    progressed = wait_for(lambda: job_state(job.pk)[1] >= 0.1, timeout=300, every=0.1)
    figure("lookalike_progress_at_kill", f"{job_state(job.pk)[1]:.2f}")
    os.killpg(worker.pid, signal.SIGKILL)  # main process and pool child at once: nobody can requeue the message
    worker.wait()
    killed_at = time.monotonic()
    figure("lookalike_killed", "worker main process and pool (kill -9 of its process group)")
    reaped = reap_jobs()  # the reaper's beat task, run now: a job killed seconds ago is not stale
    figure("lookalike_reaped_right_after_kill", reaped)
    worker = mixed.start_worker(env, folder, name="ml2", beat=False, queues="ml")
    try:
        done = wait_for(lambda: job_state(job.pk)[0] in ("succeeded", "failed"), timeout=args.visibility_timeout + 400)
        figure("lookalike_seconds_to_done_after_kill", f"{time.monotonic() - killed_at:.1f}")
    finally:
        mixed.stop_worker(worker)
    status, progress, attempts = job_state(job.pk)
    twice = (LookalikeScore.objects.filter(lookalike=lookalike).values("customer_id").annotate(n=Count("id"))
             .filter(n__gt=1).count())
    members = AudienceMember.objects.filter(audience=lookalike.audience)
    members_twice = members.values("customer_id").annotate(n=Count("id")).filter(n__gt=1).count()
    figure("lookalike_job_status", status)
    figure("lookalike_attempts", attempts)
    figure("lookalike_scores", LookalikeScore.objects.filter(lookalike=lookalike).count())
    figure("lookalike_scores_twice", twice)
    figure("lookalike_members", members.count())
    figure("lookalike_members_twice", members_twice)
    result = Job.objects.get(pk=job.pk).result
    return {"lookalike_progressed_before_kill": progressed, "lookalike_job_succeeded": done and status == "succeeded",
            "lookalike_redelivered": attempts >= 2, "lookalike_not_reaped": reaped == 0,
            "lookalike_scores_once": twice == 0 and LookalikeScore.objects.filter(lookalike=lookalike).count() == result.get("kept"),
            "lookalike_members_once": members_twice == 0}


def worker_kill(args: argparse.Namespace) -> None:
    os.environ["CELERY_BROKER_URL"] = f"{REDIS}/{BROKER_DB}"  # this process queues the jobs: before Django starts
    database_url = faults_database(args)
    folder = tempfile.mkdtemp(prefix="encore-bench-faults-")
    media = Path(folder) / "media"
    media.mkdir()
    from django.conf import settings

    settings.MEDIA_ROOT = str(media)  # this process writes the upload, the worker reads it
    broker = f"{REDIS}/{BROKER_DB}"
    mixed.flush_redis(broker)
    env = mixed.production_env(database_url, f"{REDIS}/{CACHE_DB}", broker)
    env.update({"MEDIA_ROOT": str(media), "CELERY_VISIBILITY_TIMEOUT": str(args.visibility_timeout)})
    figure("visibility_timeout_s", args.visibility_timeout)
    try:
        checks = drill_import(args, env, folder)
        checks |= drill_lookalike(args, env, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    verdict(checks)


# -- postgres-restart -----------------------------------------------------------------------------------------


def postgres_restart(args: argparse.Namespace) -> None:
    database_url = faults_database(args)
    from django.db import connection
    from django.db.models import Count
    from django.utils import timezone

    from marketing.models import Decision, Event, ServedAd

    state = harness.prepare_demo()
    customers = list(__import__("audiences.models", fromlist=["Customer"]).Customer.objects
                     .values_list("external_id", flat=True))
    client, token = mixed.issue_client("bench-fault-pg")
    since = timezone.now()
    connection.close()  # this process holds no connection through the restart
    services = mixed.start_services(args, database_url)
    window: dict[str, float] = {}

    async def drive() -> mixed.Load:
        loop = asyncio.get_running_loop()
        load_task = asyncio.create_task(mixed.run_load(services.gunicorn.port, token, customers, state["placements"],
                                                       args, args.seconds, args.rate, retries=8, retry_pause=2.0))
        await asyncio.sleep(args.restart_at)
        window["start"] = loop.time()
        window["restart_s"] = await asyncio.to_thread(restart_postgres)
        window["up"] = loop.time()
        return await load_task

    try:
        figure("rate", f"{args.rate:g}")
        figure("seconds", f"{args.seconds:g}")
        load = asyncio.run(drive())
        # Recovery: the same gunicorn answers after the outage (no restart in between).
        status, _ = harness.post_once(services.gunicorn.port, harness.DECISIONS_PATH, token,
                                      {"customer": customers[0], "placement": state["placements"][0]})
    finally:
        mixed.stop_services(services)
    counts = mixed.print_load(load, args.seconds)
    outage_end = window["up"] + 5.0
    during = load.status_counts(since=window["start"], until=outage_end)
    after = load.status_counts(since=outage_end)
    statuses_during = sorted({r.status for r in load.records if window["start"] <= r.done < outage_end and r.status >= 500})
    figure("postgres_restart_seconds", f"{window['restart_s']:.1f}")
    figure("outage_window_s", f"{outage_end - window['start']:.1f}")
    figure("outage_5xx", during["5xx"])
    figure("outage_5xx_codes", ",".join(map(str, statuses_during)) or "-")
    figure("outage_failed_connections", during["failed"])
    figure("outside_outage_5xx", counts["5xx"] - during["5xx"])
    figure("after_outage_2xx", after["2xx"])
    figure("after_outage_errors", after["5xx"] + after["failed"] + after["4xx"])
    figure("retried_requests", sum(1 for r in load.records if r.attempt > 0))
    figure("decision_after_restart_status", status)
    stored, twice = mixed.stored_events(f"client:{client.pk}")
    missing_ack = len(load.acknowledged - stored)
    never_stored = len(load.posted - stored)
    figure("events_posted", len(load.posted))
    figure("events_acknowledged", len(load.acknowledged))
    figure("events_stored", len(stored & load.posted))
    figure("events_acknowledged_missing", missing_ack)
    figure("events_posted_not_stored", never_stored)
    figure("events_stored_twice", twice)
    decisions = Decision.objects.filter(created_at__gte=since)
    impressions_twice = (Event.objects.filter(source=f"client:{client.pk}", type="impression")
                         .values("decision_id", "ad_id").annotate(n=Count("id")).filter(n__gt=1).count())
    served_twice = (ServedAd.objects.filter(served_at__gte=since).values("decision", "ad_id").annotate(n=Count("id"))
                    .filter(n__gt=1).count())
    figure("decisions_answered", len(load.decisions))
    figure("decisions_stored", decisions.count())
    figure("decision_ids_answered_twice", len(load.decisions) - len(set(load.decisions)))
    figure("impressions_counted_twice", impressions_twice)
    figure("served_ads_counted_twice", served_twice)
    over, _ = harness.caps_exceeded(since)
    figure("caps_exceeded", over)
    try:
        client.delete()
    except Exception as exc:
        log(f"warning: could not delete the bench client: {exc}")
    verdict({"every_acknowledged_event_stored": missing_ack == 0, "every_posted_event_stored_after_retries": never_stored == 0,
             "no_event_twice": twice == 0, "no_decision_twice": impressions_twice == 0 and served_twice == 0
             and len(load.decisions) == len(set(load.decisions)), "recovered_without_restarting_gunicorn": status == 201
             and after["2xx"] > 0 and after["5xx"] == 0, "no_5xx_outside_outage": counts["5xx"] == during["5xx"],
             "outage_errors_are_503_not_500": all(s == 503 for s in statuses_during), "caps_held": over == 0})


# -- redis-down -----------------------------------------------------------------------------------------------


REDIS_START = ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379", "--save", "",
               "--appendonly", "no", "--dir", "/var/lib/redis", "--logfile", "/var/log/redis/ci.log"]


def redis_up() -> bool:
    return subprocess.run(["redis-cli", "ping"], capture_output=True, text=True).stdout.strip() == "PONG"


def alike_customers() -> tuple[str, str]:
    """Two customers the plans treat alike: in no campaign's control group and in the same audiences.

    The drill compares what the caps let each be served, so only Redis may differ between them
    (a customer held out of a campaign is served none of its ads).
    """
    from audiences.models import AudienceMember, Customer
    from marketing import control
    from marketing.models import Campaign

    campaigns = set(Campaign.objects.all())
    seen: dict[frozenset, str] = {}
    for pk, external_id in Customer.objects.order_by("-pk").values_list("pk", "external_id")[:500]:
        if control.campaigns_holding_out(pk, campaigns):
            continue
        audiences = frozenset(AudienceMember.objects.filter(customer_id=pk).values_list("audience_id", flat=True))
        if audiences in seen:
            return seen[audiences], external_id
        seen[audiences] = external_id
    raise RuntimeError("no two customers in the same audiences and outside every control group among the last 500")


async def burst(port: int, token: str, customer: str, placements: list[str], n: int) -> list[tuple[int, int]]:
    """n concurrent decisions for one customer, spread over the placements: (status, ads served) each."""

    async def one(i: int) -> tuple[int, int]:
        conn = harness.Connection(port, token)
        body = json.dumps({"customer": customer, "placement": placements[i % len(placements)]}).encode()
        status, content = await conn.request(harness.DECISIONS_PATH, body)
        conn.close()
        return status, len(json.loads(content)["ads"]) if status == 201 else 0

    return await asyncio.gather(*(one(i) for i in range(n)))


def redis_down(args: argparse.Namespace) -> None:
    database_url = faults_database(args)
    from django.utils import timezone

    from audiences.models import Customer
    from marketing.models import ServedAd

    state = harness.prepare_demo()
    customers = list(Customer.objects.values_list("external_id", flat=True))
    client, token = mixed.issue_client("bench-fault-redis")
    since = timezone.now()
    services = mixed.start_services(args, database_url, worker=False)
    port = services.gunicorn.port
    placements = state["placements"]
    control, subject = alike_customers()
    try:
        up = asyncio.run(burst(port, token, control, placements, args.burst))
        log("stopping Redis")
        subprocess.run(["redis-cli", "shutdown", "nosave"], capture_output=True)
        stopped = time.monotonic()
        wait_for(lambda: not redis_up(), timeout=5)
        try:
            down_started = time.monotonic()
            down = asyncio.run(burst(port, token, subject, placements, args.burst))
            burst_seconds = time.monotonic() - down_started
            args.timeout = 5.0
            load = asyncio.run(mixed.run_load(port, token, customers, placements, args, max(args.down - 5, 3), 40.0))
        finally:
            subprocess.run(REDIS_START, capture_output=True)
            wait_for(redis_up, timeout=10)
            figure("redis_down_seconds", f"{time.monotonic() - stopped:.1f}")
        after = asyncio.run(burst(port, token, customers[-3], placements, 10))
    finally:
        mixed.stop_services(services)
    figure("burst_requests", args.burst)
    figure("burst_seconds_redis_down", f"{burst_seconds:.2f}")
    served = {who: ServedAd.objects.filter(served_at__gte=since, customer__external_id=who).count()
              for who in (control, subject)}
    figure("served_redis_up", served[control])
    figure("served_redis_down", served[subject])
    figure("burst_statuses_redis_up", ",".join(sorted({str(s) for s, _ in up})))
    figure("burst_statuses_redis_down", ",".join(sorted({str(s) for s, _ in down})))
    counts = load.status_counts()
    figure("load_while_down_2xx", counts["2xx"])
    figure("load_while_down_5xx", counts["5xx"])
    figure("load_while_down_other", counts["4xx"] + counts["failed"] + counts["timeout"])
    figure("load_while_down_events_acknowledged", len(load.acknowledged))
    figure("after_redis_back_statuses", ",".join(sorted({str(s) for s, _ in after})))
    over, _ = harness.caps_exceeded(since)
    figure("caps_exceeded", over)
    try:
        client.delete()
    except Exception as exc:
        log(f"warning: could not delete the bench client: {exc}")
    verdict({"decisions_answered_while_redis_down": all(s == 201 for s, _ in down) and counts["2xx"] > 0,
             "no_5xx_while_redis_down": counts["5xx"] == 0 and all(s < 500 for s, _ in down),
             "caps_exact_while_redis_down": over == 0 and served[subject] == served[control] > 0,
             "redis_back": all(s == 201 for s, _ in after)})


def main() -> None:
    args = parse_args()
    {"worker-kill": worker_kill, "postgres-restart": postgres_restart, "redis-down": redis_down}[args.drill](args)


if __name__ == "__main__":
    main()
