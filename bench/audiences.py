"""Audience count bench: a 4-condition rule with a behaviour window, compiled by the ORM vs written by hand.

    .venv/bin/python bench/audiences.py [--customers 100000] [--repeat 5]

Uses the database DATABASE_URL names. If it holds no customers, it seeds the demo with
--customers first (issue 3 asks for 1M customers / 20M activities on PostgreSQL:
`manage.py seed_demo --customers 1000000` beforehand). Prints `name: value` lines:
count_s (median seconds of the compiled rule's COUNT), handwritten_s, count_ratio
(compiled / hand-written, same process, same data) and the member count of each; then, unless
--count-only, bench/analytics.py's figures (analytics_s, analytics_ratio, …) on the same database.
"""

from __future__ import annotations

import sys
from datetime import timedelta

import analytics
import demo_db

RULE = {"all": [
    {"field": "age", "op": "between", "value": [18, 34]},
    {"field": "region", "op": "eq", "value": "south"},
    {"pref": "genres", "key": "hip-hop", "op": "gte", "value": 0.2},
    {"did": "play", "in_last_days": 7, "at_least": 2},
]}


def main() -> None:
    args = demo_db.setup(__doc__, count_only=True)
    from django.db import connection
    from django.utils import timezone

    from audiences.models import Customer
    from audiences.rules import compile_rule, validate

    now = timezone.now()
    validate(RULE)
    compiled = Customer.objects.filter(compile_rule(RULE, now=now))
    year = now.year
    since = now - timedelta(days=7)
    # The same question as a person would write it in SQL.
    genres = "p.genres -> 'hip-hop'" if connection.vendor == "postgresql" else "json_extract(p.genres, '$.\"hip-hop\"')"
    handwritten = f"""
        SELECT count(*) FROM audiences_customer c
        JOIN audiences_persona p ON p.customer_id = c.id
        WHERE c.birth_year BETWEEN %s AND %s AND c.region = %s
          AND ({genres})::float >= 0.2
          AND c.id IN (SELECT a.customer_id FROM audiences_activity a
                       WHERE a.kind = 1 AND a.occurred_at >= %s GROUP BY a.customer_id HAVING count(*) >= 2)
    """
    if connection.vendor != "postgresql":
        handwritten = handwritten.replace("::float", "")
    params = [year - 34, year - 18, "south", since]

    def run_handwritten() -> int:
        with connection.cursor() as cursor:
            cursor.execute(handwritten, params)
            return cursor.fetchone()[0]

    run_handwritten()  # warm caches for both
    count_s, count = demo_db.median_time(compiled.count, args.repeat)
    hand_s, hand = demo_db.median_time(run_handwritten, args.repeat)
    print(f"database: {connection.vendor}")
    print(f"customers: {Customer.objects.count()}")
    print(f"count_members: {count}")
    print(f"handwritten_members: {hand}")
    print(f"count_s: {count_s:.4f}")
    print(f"handwritten_s: {hand_s:.4f}")
    print(f"count_ratio: {count_s / hand_s:.2f}")
    if count != hand:
        print("error: the compiled rule and the hand-written SQL disagree", file=sys.stderr)
        sys.exit(1)
    if not args.count_only:  # the two-dimension analytics question too (bench/analytics.py alone prints only it)
        sys.exit(analytics.measure(args.repeat))


if __name__ == "__main__":
    main()
