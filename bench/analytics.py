"""Analytics bench: a two-dimension question compiled by audiences.analytics vs the same question written by hand.

    .venv/bin/python bench/analytics.py [--customers 100000] [--repeat 5]

Uses the database DATABASE_URL names. If it holds no customers, it seeds the demo with
--customers first (issue 3 asks for 1M customers / 20M activities on PostgreSQL:
`manage.py seed_demo --customers 1000000` beforehand). The question: customers, plays, revenue
and distinct items by region × age band over the last 30 days, whole base. Prints `name: value`
lines: analytics_s (median seconds of `run_query`, the page's path: one statement plus shaping
the rows), analytics_handwritten_s, analytics_ratio (compiled / hand-written, same process, same
data) and the row counts; exits 1 if the two disagree on any number.
"""

from __future__ import annotations

import sys
from decimal import Decimal

import demo_db

MEASURES = ("customers", "plays", "revenue", "distinct_items")
DIMENSIONS = ("region", "age")


def main() -> None:
    args = demo_db.setup(__doc__)
    from django.db import connection
    from django.utils import timezone

    from audiences.analytics import AnalyticsQuery, run_query
    from audiences.insights import AGE_BANDS
    from audiences.models import ActivityKind, Customer

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

    def run_compiled() -> dict:
        result = run_query(query)
        assert not result.truncated
        return {row.keys: tuple(row.values[m] for m in MEASURES) for row in result.rows}

    def run_handwritten() -> dict:
        with connection.cursor() as cursor:
            cursor.execute(handwritten, params)
            return {(region, band): (n, plays, Decimal(revenue).quantize(Decimal("0.01")), items)
                    for region, band, n, plays, revenue, items in cursor.fetchall()}

    run_handwritten()  # warm caches for both
    analytics_s, compiled = demo_db.median_time(run_compiled, args.repeat)
    hand_s, hand = demo_db.median_time(run_handwritten, args.repeat)
    print(f"database: {connection.vendor}")
    print(f"customers: {Customer.objects.count()}")
    print(f"window: {query.start} to {query.end}")
    print(f"analytics_rows: {len(compiled)}")
    print(f"handwritten_rows: {len(hand)}")
    print(f"analytics_s: {analytics_s:.4f}")
    print(f"analytics_handwritten_s: {hand_s:.4f}")
    print(f"analytics_ratio: {analytics_s / hand_s:.2f}")
    if compiled != hand:
        differ = sorted(k for k in compiled.keys() | hand.keys() if compiled.get(k) != hand.get(k))[:5]
        print(f"error: the compiled query and the hand-written SQL disagree, e.g. on {differ}: "
              f"{[compiled.get(k) for k in differ]} vs {[hand.get(k) for k in differ]}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
