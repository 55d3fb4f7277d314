"""Stream a 1M-customer delivery list and compare its rate with PostgreSQL COPY of the same ids.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/encore_bench_lists .venv/bin/python bench/delivery_list.py

Prints `list_rows_per_s`, `copy_rows_per_s`, `list_ratio` (goal ≥ 0.5) and `peak_rss_mb` (flat
memory: the peak stays near the process's size before the list, printed as `rss_before_mb`); and, because
a batch keeps its reservations in two arrays that the beat task writes out as served-ad rows seconds later,
`ledger_rows_per_s` (that write-out, timed on its own after each stream) and `list_and_ledger_ratio` (COPY's
time over the stream's and the write-out's together: the whole work a list makes, wherever it runs).

The database gets `--customers` bare customers (no activities: a list reads customers, their
memberships and personas, and the served history caps count) when it has fewer, written with
one INSERT … SELECT generate_series. A push campaign with three exploring ads, caps at the
service, channel and campaign levels and a plan whose everyone-else is ranked by model is made
once. Each of `--rounds` rounds (3) removes the served rows of earlier rounds, so each counts the same
history, streams a new list (a fresh list key, so every batch really reserves caps) as the API streams
it (`delivery_lists.stream(..., fmt="csv")`: PostgreSQL writes each batch's CSV text), in-process,
without HTTP, writes the batches' reservations out as served-ad rows (`delivery_lists.compact`, the beat
task's work), then COPYs the same ids from those rows. The median round's figures are printed, and every round's
ratio as `list_ratios` (one COPY of 1M rows takes 1.5–2.5 s, and this machine's speed moves by a
third from one second to the next).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/encore_bench_lists"


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--size", type=int, default=10_000, help="customers per batch")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of list then COPY; the median round's figures are printed")
    args = parser.parse_args()

    os.environ.setdefault("DATABASE_URL", DEFAULT_DB)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DEBUG", "true")
    sys.path.insert(0, str(ROOT))
    if not os.environ["DATABASE_URL"].startswith("postgres"):
        sys.exit("bench/delivery_list.py compares with PostgreSQL COPY: set DATABASE_URL to a PostgreSQL database")
    _create_database(os.environ["DATABASE_URL"])

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from audiences.models import Customer
    from marketing.models import Ad, Campaign, Channel, DeliveryPlan, FrequencyCap, Placement

    call_command("migrate", verbosity=0)
    have = Customer.objects.count()
    if have < args.customers:
        print(f"adding {args.customers - have:,} customers …", file=sys.stderr)
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {Customer._meta.db_table} (external_id, gender, region, is_subscriber, attributes, created_at, updated_at) "
                "SELECT 'lst-' || lpad(i::text, 8, '0'), '', '', false, '{}', now(), now() FROM generate_series(%s, %s) i",
                [have + 1, args.customers])
            cursor.execute(f"VACUUM ANALYZE {Customer._meta.db_table}")
    channel, _ = Channel.objects.get_or_create(name="Bench push", defaults={"kind": "push", "cost_model": "send", "unit_cost": 0})
    placement, _ = Placement.objects.get_or_create(slug="bench-push", defaults={"name": "Bench push", "channel": channel})
    campaign, made = Campaign.objects.get_or_create(name="Bench list", defaults={"status": Campaign.Status.LIVE})
    if made:
        for i in range(3):
            Ad.objects.create(campaign=campaign, name=f"offer {i}").placements.add(placement)
        FrequencyCap.objects.create(level="service", max_count=20, window=FrequencyCap.Window.DAY)
        FrequencyCap.objects.create(level="channel", channel=channel, min_gap_seconds=60)
        FrequencyCap.objects.create(level="campaign", campaign=campaign, max_count=5, window=FrequencyCap.Window.WEEK)
        DeliveryPlan.objects.create(placement=placement, rest=DeliveryPlan.Rest.MODEL)
    before = rss_mb()
    rounds = []
    for i in range(args.rounds):
        rounds.append(_round(campaign, placement, args.size, f"bench-{int(time.time())}-{i}"))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ratios = [(rows / list_s) / (rows / copy_s) for rows, list_s, copy_s, _ in rounds]
    middle = sorted(range(len(rounds)), key=lambda i: ratios[i])[len(rounds) // 2]  # the median round
    rows, list_s, copy_s, compact_s = rounds[middle]
    print(f"rows: {rows}")
    print(f"list_s: {list_s:.2f}")
    print(f"list_rows_per_s: {rows / list_s:.0f}")
    print(f"copy_rows_per_s: {rows / copy_s:.0f}")
    print(f"list_ratios: {','.join(f'{r:.3f}' for r in ratios)}")
    print(f"list_ratio: {ratios[middle]:.3f}")
    print(f"ledger_rows_per_s: {rows / compact_s:.0f}")
    print(f"list_and_ledger_ratio: {copy_s / (list_s + compact_s):.3f}")
    print(f"rss_before_mb: {before:.0f}")
    print(f"peak_rss_mb: {peak:.0f}")
    print(f"at: {timezone.now():%Y-%m-%d %H:%M}", file=sys.stderr)


def _round(campaign, placement, size: int, key: str) -> tuple[int, float, float, float]:
    """One round on an empty ledger: stream list `key` as CSV, write its reservations out as ServedAd rows, then COPY
    the same ids; rows, and the three durations."""
    from django.db import connection

    from audiences.models import Customer
    from marketing import delivery_lists
    from marketing.models import DeliveryBatch, ServedAd
    from marketing.tasks import compact_reservations

    with connection.cursor() as cursor:  # a round's history must not cap the next one
        cursor.execute(f"TRUNCATE {ServedAd._meta.db_table}, {DeliveryBatch._meta.db_table}")
        cursor.execute(f"VACUUM ANALYZE {ServedAd._meta.db_table}")
    started = time.perf_counter()
    rows = -1  # the header
    for chunk in delivery_lists.stream(campaign, placement, key, size=size, fmt="csv"):
        rows += chunk.count("\n")
    list_s = time.perf_counter() - started

    started = time.perf_counter()  # the beat task's work: the batches' arrays become ServedAd rows
    written = compact_reservations()
    compact_s = time.perf_counter() - started

    started = time.perf_counter()
    copied = 0
    with connection.cursor() as cursor:
        sql = (f"COPY (SELECT c.external_id FROM {ServedAd._meta.db_table} s JOIN {Customer._meta.db_table} c ON c.id = s.customer_id "
               f"WHERE s.campaign_id = %s ORDER BY s.customer_id) TO STDOUT")
        with cursor.cursor.copy(sql, [campaign.pk]) as copy:
            for block in copy:
                copied += bytes(block).count(b"\n")
    copy_s = time.perf_counter() - started
    served = ServedAd.objects.filter(campaign=campaign).count()
    if rows != served or copied != rows or written != rows:
        sys.exit(f"wrong: {rows} rows streamed, {written} written out, {served} reserved, {copied} copied")
    return rows, list_s, copy_s, compact_s


def _create_database(url: str) -> None:
    """Create the bench database if it does not exist (connecting to the server's `postgres` database)."""
    import psycopg
    from urllib.parse import urlparse

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    admin = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


if __name__ == "__main__":
    main()
