"""Building personas: pick the customers whose persona changed, load their activity, store the result.

The numbers come from `ml.personas` (pure pandas); this module decides who to
rebuild, feeds it, and writes Persona rows with `bulk.upsert`.

Only the last HISTORY_HALF_LIVES half-lives of activity are loaded (older rows
weigh under 1/1000 of a fresh one, and no window reaches that far back);
last_active_at still comes from the whole history.

Who changes between two builds? Preference shares are ratios of one customer's
decayed weights, and time scales all of them by the same factor, so shares only
move when the customer's loaded activity does. Window counts move when an
activity enters a window (new, or dated after the last build) or leaves one
(turns 7, 30 or 90 days old); the load horizon is one more window. An
incremental build therefore rebuilds exactly the customers with an activity
newer than `last_activity_id`, or with an activity whose `occurred_at` lies in
(last_built_at − D, as_of − D] for D in 0, 7, 30, 90 and the horizon, and gives
the same personas as a full build. The nightly full build covers what this
can't see: deleted activities, rows that committed late under an id already
passed (their occurred_at is usually recent, so the D = 0 slide catches them
anyway) and changed persona settings.
"""

from __future__ import annotations

import io
import time
from datetime import datetime, timedelta
from typing import Callable, Iterable, Iterator

import numpy as np
import pandas as pd
from django.db import connection, transaction
from django.db.models import Max, Q
from django.utils import timezone

from ml.personas import SEGMENTS, WINDOWS_DAYS, assign_segments, compute_personas

from . import bulk
from .models import Activity, ActivityKind, Customer, Item, Persona, PersonaSettings, PersonaSnapshot, Segment

CUSTOMER_CHUNK = 20_000
SEGMENT_CHUNK = 5_000
#: Activity older than this many half-lives (weight < 1/1000 of a fresh one) is not loaded.
HISTORY_HALF_LIVES = 10
KIND_LABELS = {kind.value: kind.label for kind in ActivityKind}

Progress = Callable[[float, str], None]


def build_personas(full: bool = False, as_of: datetime | None = None, progress: Progress | None = None) -> dict:
    """Rebuild the personas that changed (all of them when `full`), then re-segment everyone.

    Without a previous build an incremental build is a full one. Safe to retry: it
    recomputes from activity and upserts, and only advances `last_activity_id` at
    the end. `progress(fraction, message)` is called as it goes.
    """
    started = time.monotonic()
    report = progress or (lambda fraction, message: None)
    settings = PersonaSettings.load()
    as_of = _aware(as_of or timezone.now())
    # Snapshot first: activity arriving during the build is picked up by the next one.
    last_activity_id = Activity.objects.aggregate(last=Max("id"))["last"] or 0
    full = full or settings.last_built_at is None

    report(0.0, "Finding the customers to rebuild")
    horizon_days = HISTORY_HALF_LIVES * settings.half_life_days
    customers = _all_customers() if full else _changed_customers(settings, as_of, horizon_days)
    rebuilt = 0
    if customers:
        catalogue = _Catalogue()
        horizon = as_of - timedelta(days=horizon_days)
        chunks = list(_chunks(customers, CUSTOMER_CHUNK))
        for number, chunk in enumerate(chunks, start=1):
            activities = _activities(chunk, catalogue, since=horizon, until=as_of)
            personas = compute_personas(
                activities,
                as_of=pd.Timestamp(as_of),
                kind_weights=settings.weights(),
                half_life_days=settings.half_life_days,
                top_n=settings.top_n,
                customers=chunk,
            )
            _fill_last_active(personas, until=as_of)
            with transaction.atomic():
                rebuilt += bulk.upsert(Persona, _persona_rows(personas, as_of), conflict="customer", update=_UPDATED).rows
            report(0.02 + 0.88 * number / len(chunks), f"Rebuilt {rebuilt:,} of {len(customers):,} personas")

    report(0.92, "Assigning value segments")
    segments = refresh_segments(settings)
    report(0.96, "Recording persona snapshots")
    snapshots = record_snapshots(set(customers) | set(segments.pop("changed_ids")), as_of)
    settings.last_built_at = as_of
    settings.last_activity_id = max(settings.last_activity_id, last_activity_id)
    settings.save(update_fields=["last_built_at", "last_activity_id"])
    report(1.0, f"Rebuilt {rebuilt:,} personas")
    return {
        "full": full,
        "as_of": as_of.isoformat(),
        "customers_rebuilt": rebuilt,
        "segments": segments["counts"],
        "segments_changed": segments["changed"],
        "snapshots": snapshots,
        "last_activity_id": settings.last_activity_id,
        "seconds": round(time.monotonic() - started, 3),
    }


def refresh_segments(settings: PersonaSettings | None = None) -> dict:
    """Re-rank every persona into loyal / active / casual and write only the changes.

    Segments are relative to the whole base (shares of total revenue), so they
    are recomputed for everyone after any rebuild. Returns {"counts": {segment: n},
    "changed": n}.
    """
    settings = settings or PersonaSettings.load()
    table = connection.ops.quote_name(Persona._meta.db_table)
    with connection.cursor() as cursor:
        # Ordered by customer id: the tie-break of assign_segments is the position.
        cursor.execute(
            f"SELECT customer_id, purchases_90d, CAST(spend_90d AS DOUBLE PRECISION), segment FROM {table} ORDER BY customer_id"
        )
        rows = cursor.fetchall()
    frame = pd.DataFrame(rows, columns=["customer_id", "purchases", "spend", "segment"])
    labels = assign_segments(
        frame["purchases"].to_numpy(dtype=np.float64),
        frame["spend"].to_numpy(dtype=np.float64, na_value=0.0),
        loyal_share=settings.loyal_revenue_share,
        active_share=settings.active_revenue_share,
    )
    changed = labels != frame["segment"].to_numpy(dtype=object)
    ids = frame["customer_id"].to_numpy()
    with transaction.atomic():
        for label in SEGMENTS:
            for part in _chunks(ids[changed & (labels == label)].tolist(), SEGMENT_CHUNK):
                Persona.objects.filter(customer_id__in=part).update(segment=label)
    counts = {label: int((labels == label).sum()) for label in SEGMENTS}
    return {"counts": counts, "changed": int(changed.sum()), "changed_ids": ids[changed].tolist()}


def snapshot_of(persona: Persona | None, customer: Customer) -> dict | None:
    """The persona features a model sees (ml.automodel.SNAPSHOT_COLUMNS), as JSON-ready values.

    The one definition for the snapshots models train on and for the decision engine that
    scores with them, so training and serving read the same thing. None without a persona.
    """
    if persona is None:
        return None
    return {
        "birth_year": customer.birth_year, "gender": customer.gender, "region": customer.region,
        "city_tier": customer.city_tier, "is_subscriber": customer.is_subscriber,
        "segment": persona.segment, "top_genre": persona.top_genre, "top_mood": persona.top_mood,
        "top_language": persona.top_language, "plays_7d": persona.plays_7d, "plays_30d": persona.plays_30d,
        "activities_30d": persona.activities_30d, "purchases_90d": persona.purchases_90d,
        "spend_90d": float(persona.spend_90d or 0), "genres": persona.genres or {},
        "last_active_at": persona.last_active_at.isoformat() if persona.last_active_at else None,
    }


def record_snapshots(customer_ids: Iterable[int], valid_from: datetime) -> int:
    """Snapshot the current personas of these customers, valid from `valid_from` (idempotent per time)."""
    ids = sorted(customer_ids)
    written = 0
    for part in _chunks(ids, SEGMENT_CHUNK):
        personas = Persona.objects.filter(customer_id__in=part).select_related("customer")
        with transaction.atomic():
            # A retried build writes the same snapshots again: replace rather than duplicate.
            PersonaSnapshot.objects.filter(customer_id__in=part, valid_from=valid_from).delete()
            written += len(PersonaSnapshot.objects.bulk_create(
                [PersonaSnapshot(customer_id=p.customer_id, valid_from=valid_from, features=snapshot_of(p, p.customer))
                 for p in personas], batch_size=2000))
    return written


# Everything but the key and the segment (kept on update, 'casual' for a new row
# until refresh_segments ranks it: the column has no database default).
_UPDATED = [
    "artists", "genres", "languages", "moods", "top_artist", "top_genre", "top_language", "top_mood",
    *[f"plays_{d}d" for d in WINDOWS_DAYS], *[f"activities_{d}d" for d in WINDOWS_DAYS],
    "purchases_90d", "spend_90d", "last_active_at", "as_of", "stale",
]  # fmt: skip


def _persona_rows(personas: pd.DataFrame, as_of: datetime) -> pd.DataFrame:
    rows = personas.rename(columns={"customer_id": "customer"})
    rows["as_of"] = pd.Series(pd.Timestamp(as_of), index=rows.index, dtype="datetime64[us, UTC]")
    rows["segment"] = Segment.CASUAL.value
    rows["stale"] = False
    return rows


def _all_customers() -> list[int]:
    """Everyone with activity, plus personas whose customer has none left (they are reset)."""
    with_activity = Activity.objects.values_list("customer_id", flat=True).distinct()
    with_persona = Persona.objects.values_list("customer_id", flat=True)
    return sorted(set(with_activity) | set(with_persona))


def _changed_customers(settings: PersonaSettings, as_of: datetime, horizon_days: float) -> list[int]:
    """Customers with new activity, activity entering or leaving a window since the last build, or a stale persona."""
    since = settings.last_built_at
    changed = Q(id__gt=settings.last_activity_id)
    for days in (0, *WINDOWS_DAYS, horizon_days):
        shift = timedelta(days=days)
        changed |= Q(occurred_at__gt=since - shift, occurred_at__lte=as_of - shift)
    touched = Activity.objects.filter(changed).values_list("customer_id", flat=True).distinct()
    # Re-imported events keep their ids, so an activity changed in place marks its persona stale instead.
    stale = Persona.objects.filter(stale=True).values_list("customer_id", flat=True)
    return sorted(set(touched) | set(stale))


class _Catalogue:
    """Items' taste attributes by id, read once each and only when some activity needs them.

    An hourly build touching a few hundred customers then reads a few thousand
    items, not the whole catalogue; a full build ends up reading each item once.
    """

    FIELDS = ["artist", "genres", "language", "moods"]

    def __init__(self) -> None:
        # Row -1 stands for "no item" (activity without one, or with a deleted one).
        self.frame = pd.DataFrame({"artist": [""], "genres": [[]], "language": [""], "moods": [[]]}, index=[-1])

    def attributes(self, item_ids: pd.Series) -> pd.DataFrame:
        """One row of attributes per entry of `item_ids` (NaN for no item), on its index."""
        ids = item_ids.fillna(-1).astype(np.int64)
        wanted = np.setdiff1d(ids.unique(), self.frame.index.to_numpy())
        loaded = []
        for part in _chunks(wanted.tolist(), SEGMENT_CHUNK):
            loaded.extend(Item.objects.filter(id__in=part).order_by().values_list("id", *self.FIELDS))
        if loaded:
            found = pd.DataFrame(loaded, columns=["id", *self.FIELDS]).set_index("id")
            self.frame = pd.concat([self.frame, found])
        position = self.frame.index.get_indexer(ids)
        position[position < 0] = 0  # deleted items: no attributes
        attributes = self.frame.iloc[position]
        attributes.index = item_ids.index
        return attributes


def _activities(customers: list[int], catalogue: _Catalogue, *, since: datetime, until: datetime) -> pd.DataFrame:
    """The customers' activity in (since, until] with their items' attributes."""
    frame = _read_activities(customers, since, until)
    frame["kind"] = frame["kind"].map(KIND_LABELS).astype("category")
    return pd.concat([frame, catalogue.attributes(frame["item_id"])], axis=1)


_COLUMNS = ["customer_id", "item_id", "kind", "quantity", "value", "occurred_at"]


def _read_activities(customers: Iterable[int], since: datetime, until: datetime) -> pd.DataFrame:
    """Raw rows as a DataFrame: COPY … TO STDOUT on PostgreSQL, one fetchall on SQLite."""
    table = connection.ops.quote_name(Activity._meta.db_table)
    ids = ",".join(str(int(c)) for c in customers)  # integers, so inlining them is safe
    where = f"customer_id IN ({ids}) AND occurred_at > %s AND occurred_at <= %s"
    if connection.vendor == "postgresql":
        sql = f"COPY (SELECT customer_id, item_id, kind, quantity, value, occurred_at FROM {table} WHERE {where}) TO STDOUT WITH (FORMAT csv)"
        buffer = io.BytesIO()
        with connection.cursor() as cursor:
            with cursor.cursor.copy(sql, (since, until)) as copy:
                for block in copy:
                    buffer.write(block)
        buffer.seek(0)
        frame = pd.read_csv(
            buffer, names=_COLUMNS, header=None,
            dtype={"customer_id": "int64", "item_id": "float64", "kind": "int64", "quantity": "float64", "value": "float64", "occurred_at": "str"},
        )  # fmt: skip
    else:
        adapt = connection.ops.adapt_datetimefield_value
        # CAST keeps sqlite3 from parsing every timestamp into a Python datetime.
        sql = f"SELECT customer_id, item_id, kind, quantity, CAST(value AS REAL), CAST(occurred_at AS TEXT) FROM {table} WHERE {where}"
        with connection.cursor() as cursor:
            cursor.execute(sql, [adapt(since), adapt(until)])
            frame = pd.DataFrame(cursor.fetchall(), columns=_COLUMNS)
        frame = frame.astype({"customer_id": "int64", "item_id": "float64", "kind": "int64", "quantity": "float64", "value": "float64"})
    frame["occurred_at"] = pd.to_datetime(frame["occurred_at"], utc=True, format="ISO8601")
    return frame


def _fill_last_active(personas: pd.DataFrame, *, until: datetime) -> None:
    """last_active_at for customers whose activity all lies beyond the load horizon."""
    missing = personas.loc[personas["last_active_at"].isna(), "customer_id"].tolist()
    found: dict[int, datetime] = {}
    for part in _chunks(missing, SEGMENT_CHUNK):
        rows = (
            Activity.objects.filter(customer_id__in=part, occurred_at__lte=until)
            .values("customer_id")
            .annotate(last=Max("occurred_at"))
            .values_list("customer_id", "last")
        )
        found.update(rows)
    if found:
        filled = pd.to_datetime(personas["customer_id"].map(found), utc=True)
        personas["last_active_at"] = personas["last_active_at"].fillna(filled)


def _aware(moment) -> datetime:
    stamp = pd.Timestamp(moment)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.to_pydatetime()


def _chunks(values: list, size: int) -> Iterator[list]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
