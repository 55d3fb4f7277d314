"""Fill the database with the demo music streaming service (see audiences/demo.py).

    manage.py seed_demo --customers 50000 --seed 7 [--days 180] [--activities-per-customer 20]
                        [--as-of 2025-06-01] [--reset]

The same seed, size and --as-of give identical rows. Running it again upserts the
same rows; use --reset when changing the size or the seed, so the previous run's
extra customers and activities go away.
"""

from __future__ import annotations

import time
from io import StringIO
from contextlib import nullcontext
from datetime import date, datetime, timezone

import numpy as np
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from audiences import bulk, demo
from audiences.models import REVENUE_KINDS, Activity, ActivityKind


def _as_of(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise CommandError(f"--as-of {text!r} is not a date (YYYY-MM-DD).") from None


class Command(BaseCommand):
    help = "Simulate a music streaming service: catalogue, customers and their activity, deterministic by seed."

    def add_arguments(self, parser):
        parser.add_argument("--customers", type=int, default=10_000, help="How many listeners (default 10000).")
        parser.add_argument("--seed", type=int, default=1, help="Same seed, same data (default 1).")
        parser.add_argument("--days", type=int, default=180, help="Activity covers the days before --as-of (default 180).")
        parser.add_argument("--activities-per-customer", type=float, default=20.0,
                            help="Mean activities per listener, before monthly subscription payments (default 20).")
        parser.add_argument("--as-of", type=_as_of, default=None,
                            help="Anchor date (YYYY-MM-DD, UTC midnight); activity ends just before it. Default: today.")
        parser.add_argument("--artists", type=int, default=3000, help="Catalogue size in artists (default 3000).")
        parser.add_argument("--skip-personas", action="store_true",
                            help="Do not build personas and the demo audiences afterwards.")
        parser.add_argument("--reset", action="store_true",
                            help="First delete every simulated customer and item (and their activity).")

    def handle(self, *args, **options):
        if options["customers"] < 1:
            raise CommandError("--customers must be at least 1.")
        if options["seed"] < 0:
            raise CommandError("--seed must be zero or positive.")
        if options["days"] < 1:
            raise CommandError("--days must be at least 1.")
        if options["activities_per_customer"] < 0:
            raise CommandError("--activities-per-customer cannot be negative.")
        config = demo.DemoConfig(
            seed=options["seed"],
            customers=options["customers"],
            days=options["days"],
            activities_per_customer=options["activities_per_customer"],
            as_of=options["as_of"] or datetime.now(timezone.utc).date(),
            artists=options["artists"],
        )
        verbose = options["verbosity"] >= 1
        started = time.monotonic()
        timings = {"reset": 0.0, "generate": 0.0, "write": 0.0}
        if options["reset"]:
            deleted = demo.delete_demo()
            timings["reset"] = time.monotonic() - started
            if verbose:
                self.stdout.write(
                    f"reset: deleted {deleted['customers']} customers, {deleted['items']} items, "
                    f"{deleted['activities']} activities in {timings['reset']:.1f} s"
                )

        mark = time.monotonic()
        cat = demo.catalogue(config)
        timings["generate"] += time.monotonic() - mark
        mark = time.monotonic()
        item_pks = demo.store_catalogue(cat)
        timings["write"] += time.monotonic() - mark

        customers = subscribers = 0
        kinds = np.zeros(max(ActivityKind.values) + 1, dtype=np.int64)
        revenue = 0.0
        single_pos = int(np.flatnonzero(cat.items["external_id"].to_numpy() == demo.KPOP_SINGLE_ID)[0])
        single_plays = 0
        chunks = demo.simulate(config, cat)
        # Into an empty activity table, building its indexes once at the end is several times faster.
        # (Schema changes cannot run inside a caller's transaction, e.g. a test's.)
        deferrable = not connection.in_atomic_block
        if deferrable:
            bulk.ensure_indexes(Activity)
        fresh = deferrable and not Activity.objects.exists()
        loading = bulk.indexes_built_after(Activity) if fresh else nullcontext()
        with loading:
            while True:
                mark = time.monotonic()
                chunk = next(chunks, None)
                timings["generate"] += time.monotonic() - mark
                if chunk is None:
                    break
                mark = time.monotonic()
                demo.store_chunk(chunk, item_pks)
                timings["write"] += time.monotonic() - mark
                acts = chunk.activities
                customers += len(chunk.customers)
                subscribers += int(chunk.customers["is_subscriber"].sum())
                kinds += np.bincount(acts["kind"].to_numpy(), minlength=len(kinds))
                revenue += float(acts.loc[acts["kind"].isin(REVENUE_KINDS), "value"].sum())
                single_plays += int(((acts["item_pos"] == single_pos) & (acts["kind"] == ActivityKind.PLAY)).sum())
                if verbose and config.chunks > 1:
                    self.stdout.write(
                        f"  chunk {chunk.index + 1}/{config.chunks}: {customers} customers, "
                        f"{int(kinds.sum())} activities, {time.monotonic() - started:.1f} s"
                    )
            mark = time.monotonic()
        timings["index"] = time.monotonic() - mark  # rebuilding the dropped indexes, when the table was empty

        audiences = []
        if not options["skip_personas"]:
            # Personas first: the demo audiences select on them, and their sizes are counted now.
            mark = time.monotonic()
            call_command("build_personas", "--full", verbosity=0, stdout=StringIO())
            timings["personas"] = time.monotonic() - mark
            audiences = demo.store_demo_audiences()
            lookalike = demo.store_demo_lookalike()  # trained by the worker (at once in eager mode)
            if lookalike is not None:
                audiences.append(lookalike)
        if deferrable and connection.vendor == "postgresql":
            # Fresh statistics and visibility map: plans need the first, index-only scans the second,
            # and autovacuum may be off or far behind a bulk load.
            mark = time.monotonic()
            with connection.cursor() as cursor:
                cursor.execute("VACUUM (ANALYZE) audiences_customer, audiences_persona, audiences_activity, audiences_item")
            timings["vacuum"] = time.monotonic() - mark
        if not verbose:
            return
        items = cat.items["kind"].value_counts()
        activities = int(kinds.sum())
        lines = {
            "seed": config.seed,
            "as_of": config.as_of.isoformat(),
            "days": config.days,
            "customers": customers,
            "subscribers": subscribers,
            "subscriber_share": round(subscribers / max(customers, 1), 3),
            "items": len(cat.items),
            **{f"items_{kind}": int(items.get(kind, 0)) for kind in ("track", "album", "artist", "concert", "product")},
            "activities": activities,
            **{f"activities_{label}": int(kinds[value]) for value, label in ActivityKind.choices},
            "revenue": round(revenue, 2),
            "kpop_single": f"{demo.KPOP_SINGLE_ID} ({demo.KPOP_SINGLE_TITLE} by {demo.KPOP_ARTIST}), {single_plays} plays",
            **{f"audience_{a.pk}": f"{a.name}: {a.size}" for a in audiences},
            "generate_seconds": round(timings["generate"], 1),
            "write_seconds": round(timings["write"], 1),
            "index_seconds": round(timings["index"], 1),
            "personas_seconds": round(timings.get("personas", 0.0), 1),
            "seconds": round(time.monotonic() - started, 1),
            "activities_per_s": round(activities / max(time.monotonic() - started, 1e-9)),
        }
        for name, value in lines.items():
            self.stdout.write(f"{name}: {value}")
