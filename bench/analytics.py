"""Analytics bench: a two-dimension question compiled by audiences.analytics vs the same question written by hand.

    .venv/bin/python bench/analytics.py [--customers 100000] [--repeat 5]

Uses the database DATABASE_URL names. If it holds no customers, it seeds the demo with
--customers first (issue 3 asks for 1M customers / 20M activities on PostgreSQL:
`manage.py seed_demo --customers 1000000` beforehand). The question: customers, plays, revenue
and distinct items by region × age band over the last 30 days, whole base.

On PostgreSQL the page reads the analytics copy (audiences/columnar.py: Parquet files, DuckDB) when
it has a fresh one, so the bench first brings a copy up to date in a temporary folder (a full build,
timed; then, on a database whose name contains "bench", an incremental sync after 10,000 new
activities, timed, after which those activities are removed again and the copy rebuilt). Prints `name: value` lines:
- analytics_s: median seconds of `run_query`, the page's path (one statement plus shaping the rows);
- analytics_handwritten_s: the hand-written SQL on the same engine; analytics_ratio: the two's ratio;
- analytics_database_s, analytics_database_handwritten_s: the same two asked of the database itself
  (what the page does without a copy, and on SQLite);
- copy_full_sync_s, copy_sync_s (incremental), copy_mb, and the row counts.
Exits 1 if any two answers disagree on any number.
"""

from __future__ import annotations

import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import demo_db

MEASURES = ("customers", "plays", "revenue", "distinct_items")
DIMENSIONS = ("region", "age")


def main() -> None:
    args = demo_db.setup(__doc__)
    sys.exit(measure(args.repeat))


def measure(repeat: int) -> int:
    """Print the figures (Django set up, the demo in the database); 1 when two answers differ, else 0."""
    from django.conf import settings
    from django.db import connection
    from django.test.utils import override_settings
    from django.utils import timezone

    from audiences import columnar
    from audiences.analytics import AnalyticsQuery, run_query
    from audiences.insights import AGE_BANDS
    from audiences.models import Activity, ActivityKind, Customer

    query = AnalyticsQuery(measures=MEASURES, dimensions=DIMENSIONS)  # the last 30 days, whole base
    first, after = query.window
    year = timezone.now().year  # as insights._age_band counts ages
    # The same question as a person would write it in SQL.
    bands, band_params = [], []
    for low, high, label in AGE_BANDS:
        if low is not None and high is not None:
            bands.append("WHEN c.birth_year BETWEEN %s AND %s THEN %s")
            band_params += [year - high, year - low, label]
        elif low is None:
            bands.append("WHEN c.birth_year >= %s THEN %s")
            band_params += [year - high, label]
        else:
            bands.append("WHEN c.birth_year <= %s THEN %s")
            band_params += [year - low, label]
    handwritten = f"""
        SELECT c.region, CASE {' '.join(bands)} ELSE 'unknown' END AS band,
               count(DISTINCT c.id),
               count(a.kind) FILTER (WHERE a.kind = %s),
               coalesce(sum(a.value) FILTER (WHERE a.kind IN (%s, %s)), 0),
               count(DISTINCT a.item_id)
        FROM audiences_customer c
        LEFT JOIN audiences_activity a ON a.customer_id = c.id AND a.occurred_at >= %s AND a.occurred_at < %s
        GROUP BY 1, 2
    """
    params = band_params + [ActivityKind.PLAY, ActivityKind.PURCHASE, ActivityKind.SUBSCRIBE, first, after]

    def shaped(rows) -> dict:
        return {(region, band): (n, plays, Decimal(revenue).quantize(Decimal("0.01")), items)
                for region, band, n, plays, revenue, items in rows}

    def run_compiled(copy_expected: bool):
        def run() -> dict:
            result = run_query(query)
            assert not result.truncated
            assert (result.copy is not None) == copy_expected, "the copy did not answer" if copy_expected else "the copy answered"
            return {row.keys: tuple(row.values[m] for m in MEASURES) for row in result.rows}
        return run

    def run_handwritten() -> dict:
        with connection.cursor() as cursor:
            cursor.execute(handwritten, params)
            return shaped(cursor.fetchall())

    answers = {}
    print(f"database: {connection.vendor}")
    print(f"customers: {Customer.objects.count()}")
    print(f"window: {query.start} to {query.end}")
    with override_settings(ANALYTICS_COPY="off"):
        run_handwritten()  # warm caches for both
        database_s, answers["database"] = demo_db.median_time(run_compiled(False), repeat)
        database_hand_s, answers["database, by hand"] = demo_db.median_time(run_handwritten, repeat)
    print(f"analytics_database_s: {database_s:.4f}")
    print(f"analytics_database_handwritten_s: {database_hand_s:.4f}")
    analytics_s, hand_s = database_s, database_hand_s
    if connection.vendor == "postgresql":
        with tempfile.TemporaryDirectory(prefix="encore-analytics-copy-") as folder, \
                override_settings(ANALYTICS_COPY="on", ANALYTICS_COPY_DIR=Path(folder)):
            started = time.perf_counter()
            copy = columnar.sync(full=True)
            print(f"copy_full_sync_s: {time.perf_counter() - started:.2f}")
            if "bench" in connection.settings_dict["NAME"]:  # it writes (and then removes) activities: bench databases only
                customer = Customer.objects.order_by("pk").first()
                key = (Activity.objects.order_by("-key").values_list("key", flat=True).first() or 0) + 1
                Activity.objects.bulk_create([Activity(key=key + i, customer=customer, kind=ActivityKind.PLAY,
                                                       occurred_at=timezone.now()) for i in range(10_000)], batch_size=5000)
                try:
                    started = time.perf_counter()
                    columnar.sync()
                    print(f"copy_sync_s: {time.perf_counter() - started:.2f} (10,000 new activities)")
                finally:
                    Activity.objects.filter(key__gte=key, customer=customer).delete()
                copy = columnar.sync(full=True)
            print(f"copy_mb: {sum((Path(folder) / f).stat().st_size for f in sum(copy.files.values(), [])) / 2**20:.0f}")
            print(f"copy_rows: {', '.join(f'{t}={n}' for t, n in copy.rows.items())}")
            run_compiled(True)()  # warm: the files in the page cache
            analytics_s, answers["copy"] = demo_db.median_time(run_compiled(True), repeat)
            hand_s, answers["copy, by hand"] = demo_db.median_time(
                lambda: shaped(columnar.run(copy, handwritten, params)[1]), repeat)
        print(f"threads: {settings.ANALYTICS_COPY_THREADS or 'one per core'}")
    print(f"analytics_rows: {len(answers['database'])}")
    print(f"analytics_s: {analytics_s:.4f}")
    print(f"analytics_handwritten_s: {hand_s:.4f}")
    print(f"analytics_ratio: {analytics_s / hand_s:.2f}")
    reference = answers["database"]
    for name, found in answers.items():
        if found != reference:
            differ = sorted(k for k in found.keys() | reference.keys() if found.get(k) != reference.get(k))[:5]
            print(f"error: {name} and the database disagree, e.g. on {differ}: "
                  f"{[found.get(k) for k in differ]} vs {[reference.get(k) for k in differ]}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    main()
