"""Frequency caps: which ads a customer may still be served, decided and recorded atomically.

`serve()` locks the customer's CapLock row, reads what they were served, takes ads in the
order the caller ranked them while every cap at every level (ad, campaign, placement, channel,
whole service) still holds — counting the ads already taken for this decision — and records
them before the lock is released. Concurrent requests for one customer therefore queue on
that row and each sees the others' served ads: the caps are exact, never approximately so.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable, Sequence

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from . import rows
from .models import Ad, CapLock, DeliveryBatch, FrequencyCap, Placement, ServedAd


@dataclass(frozen=True)
class Exposure:
    """One past or planned served ad, with the keys of every level a cap may count at."""

    ad: int
    campaign: int
    placement: int
    channel: int
    at: datetime


@dataclass(frozen=True)
class Blocked:
    """Why an ad may not be served now: the cap and what it counted."""

    ad: int
    cap: FrequencyCap
    reason: str


def caps_for(placement: Placement, ads: Iterable[Ad]) -> list[FrequencyCap]:
    """Every cap that can bear on serving these ads on this placement (one query)."""
    ads = list(ads)
    return list(FrequencyCap.objects.filter(
        Q(level=FrequencyCap.Level.SERVICE)
        | Q(level=FrequencyCap.Level.CHANNEL, channel_id=placement.channel_id)
        | Q(level=FrequencyCap.Level.PLACEMENT, placement_id=placement.pk)
        | Q(level=FrequencyCap.Level.CAMPAIGN, campaign_id__in={a.campaign_id for a in ads})
        | Q(level=FrequencyCap.Level.AD, ad_id__in=[a.pk for a in ads])
    ))


def bearing(caps: Iterable[FrequencyCap], placement: Placement, ads: Iterable[Ad]) -> list[FrequencyCap]:
    """The caps among `caps` that bear on serving these ads here (caps_for, without a query)."""
    ads = list(ads)
    campaigns, ad_ids = {a.campaign_id for a in ads}, {a.pk for a in ads}
    return [c for c in caps if c.level == FrequencyCap.Level.SERVICE
            or (c.level == FrequencyCap.Level.CHANNEL and c.channel_id == placement.channel_id)
            or (c.level == FrequencyCap.Level.PLACEMENT and c.placement_id == placement.pk)
            or (c.level == FrequencyCap.Level.CAMPAIGN and c.campaign_id in campaigns)
            or (c.level == FrequencyCap.Level.AD and c.ad_id in ad_ids)]


def _applies(cap: FrequencyCap, exposure: Exposure) -> bool:
    level = cap.level
    if level == FrequencyCap.Level.SERVICE:
        return True
    return getattr(exposure, level) == getattr(cap, f"{level}_id")


def check(cap: FrequencyCap, candidate: Exposure, history: Sequence[Exposure], now: datetime) -> str | None:
    """None when the cap allows serving `candidate` now, else the reason in words."""
    refused = _refusal(cap, candidate, history, now)
    if refused is None:
        return None
    count, last = refused
    if count is not None:
        return f"{cap}: already {count}"
    return f"{cap}: last one {int((now - last).total_seconds())} s ago"


def allows(cap: FrequencyCap, candidate: Exposure, history: Sequence[Exposure], now: datetime) -> bool:
    """check() without the reason's words (the decision path asks this for every ad and cap)."""
    return _refusal(cap, candidate, history, now) is None


def _refusal(cap: FrequencyCap, candidate: Exposure, history: Sequence[Exposure],
             now: datetime) -> tuple[int | None, datetime | None] | None:
    """None when the cap allows `candidate`; else (the count it reached, None) or (None, the last one inside its gap)."""
    if not _applies(cap, candidate):
        return None
    counted = [e for e in history if _applies(cap, e)]
    if cap.max_count:
        since = now - timedelta(seconds=cap.window) if cap.window else None
        n = sum(1 for e in counted if since is None or e.at > since)
        if n >= cap.max_count:
            return n, None
    if cap.min_gap_seconds and counted:
        last = max(e.at for e in counted)
        if now - last < timedelta(seconds=cap.min_gap_seconds):
            return None, last
    return None


def choose(ranked: Sequence[Ad], placement: Placement, caps: Sequence[FrequencyCap], history: Sequence[Exposure],
           now: datetime, slots: int) -> tuple[list[Ad], list[Blocked], list[Ad]]:
    """Take ads in rank order while all caps hold, up to `slots`.

    Also returns why the others were left, and which ads the caps allow on their own (before this
    decision takes any): the set an exploring decision draws its first slot from uniformly.
    """
    taken: list[Ad] = []
    blocked: list[Blocked] = []
    eligible: list[Ad] = []
    planned = list(history)
    for ad in ranked:
        candidate = Exposure(ad.pk, ad.campaign_id, placement.pk, placement.channel_id, now)
        if all(allows(cap, candidate, history, now) for cap in caps):
            eligible.append(ad)
        if len(taken) == slots:
            continue
        refused = next((cap for cap in caps if not allows(cap, candidate, planned, now)), None)
        if refused is not None:  # only a blocked ad's reason is put in words
            blocked.append(Blocked(ad.pk, refused, check(refused, candidate, planned, now)))
            continue
        taken.append(ad)
        planned.append(candidate)
    return taken, blocked, eligible


def history(customer_id: int, caps: Sequence[FrequencyCap], now: datetime) -> list[Exposure]:
    """What the customer was served that any of these caps can count (only as far back as they look)."""
    if not caps:
        return []
    sql, params = _history_query(customer_id, caps, now)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return _exposures(cursor.fetchall())


def _history_query(customer_id: int, caps: Sequence[FrequencyCap], now: datetime) -> tuple[str, list]:
    windows = [cap.window for cap in caps if cap.max_count and cap.window] + [cap.min_gap_seconds for cap in caps if cap.min_gap_seconds]
    lifetime = [cap for cap in caps if cap.max_count and not cap.window]
    # Plain SQL: on the decision path the ORM's query building cost more than the query.
    sql = (f"SELECT ad_id, campaign_id, placement_id, channel_id, served_at FROM {ServedAd._meta.db_table} "
           "WHERE customer_id = %s")
    params: list = [customer_id]
    if not any(cap.level == FrequencyCap.Level.SERVICE for cap in lifetime):
        # Only as far back as the longest window, plus all-time rows at the levels a lifetime cap counts.
        wanted = ["served_at > %s"] if windows else []
        params += [now - timedelta(seconds=max(windows))] if windows else []
        for cap in lifetime:
            wanted.append(f"{cap.level}_id = %s")
            params.append(getattr(cap, f"{cap.level}_id"))
        sql += f" AND ({' OR '.join(wanted)})"
    if connection.vendor == "postgresql":  # and what list batches reserved that is not written out yet
        pending, pending_params = pending_for(customer_id)
        sql, params = f"{sql} UNION ALL {pending}", params + pending_params
    return sql, params


def pending_for(customer_id: int) -> tuple[str, list]:
    """SQL for the customer's served ads still held in list batches' arrays (PostgreSQL), as history rows.

    Every one is returned, whatever the caps' windows: there are few, and the caps count only theirs.
    """
    sql = (f"SELECT b.pending_ads[i.at], b.campaign_id, b.placement_id, b.channel_id, b.created_at "
           f"FROM {DeliveryBatch._meta.db_table} b "
           f"CROSS JOIN LATERAL (SELECT array_position(b.pending_customers, %s::bigint) AS at) i "
           f"WHERE b.pending_customers IS NOT NULL AND b.last >= %s AND b.after < %s AND i.at IS NOT NULL")
    return sql, [customer_id, customer_id, customer_id]


def _exposures(rows: list[tuple]) -> list[Exposure]:
    if connection.vendor == "sqlite":  # SQLite hands back naive UTC datetimes (or text) outside the ORM
        convert = connection.ops.convert_datetimefield_value
        rows = [(*row[:4], convert(row[4], None, connection)) for row in rows]
    return [Exposure(*row) for row in rows]


@dataclass
class Served:
    ads: list[ServedAd]
    blocked: list[Blocked]
    eligible: list[Ad]
    decision: uuid.UUID


# Delivery lists reserve caps for thousands of customers at once. Instead of locking each one's
# CapLock row (a write per customer), a batch takes an exclusive advisory lock on each block of
# 65,536 customer ids it covers, and every decision takes the shared lock of its customer's block
# before its CapLock row (_lock_customer): a decision and a batch for the same customer never overlap, decisions
# among themselves still queue only per customer, and batches lock blocks in ascending order so
# they cannot deadlock. (SQLite has one writer at a time: nothing to do.)
LIST_LOCK_NAMESPACE = 0x456E63  # "Enc"
LIST_LOCK_SHIFT = 16


def block_of(customer_id: int) -> int:
    return customer_id >> LIST_LOCK_SHIFT


def lock_blocks(first_id: int, last_id: int) -> None:
    """A delivery-list batch's side: every block from the first customer's to the last's, exclusively, in order."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, b::int) FROM (SELECT generate_series(%s, %s) AS b ORDER BY b) t",
                           [LIST_LOCK_NAMESPACE, block_of(first_id), block_of(last_id)])


def _lock_customer(customer_id: int, caps: Sequence[FrequencyCap] = (), now: datetime | None = None,
                   ride: rows.Ride | None = None) -> list[Exposure] | None:
    """The shared list-lock of the customer's block, then their CapLock row (made on their first decision).

    On PostgreSQL the customer's history for `caps` comes back in the same round trip, read by a
    second statement: in READ COMMITTED each statement takes its snapshot when it starts, after
    the locks are held, so it sees everything the lock's previous holder committed (one statement
    could not: its snapshot would predate the wait). Returns None where the caller must read it.
    With a `ride`, the transaction's BEGIN goes in the same message.
    """
    if connection.vendor != "postgresql":  # SQLite has one writer at a time: the row only records the customer
        if not CapLock.objects.filter(customer_id=customer_id).exists():
            CapLock.objects.bulk_create([CapLock(customer_id=customer_id)], ignore_conflicts=True)
        return None
    table = CapLock._meta.db_table
    # The block lock is taken first (the select list is evaluated in order), then the row lock.
    lock = (f"SELECT pg_advisory_xact_lock_shared(%s, %s), "
            f"(SELECT customer_id FROM {table} WHERE customer_id = %s FOR UPDATE)")
    params = [LIST_LOCK_NAMESPACE, block_of(customer_id), customer_id]
    then = _history_query(customer_id, caps, now) if caps else None
    if connection.settings_dict["OPTIONS"].get("server_side_binding"):
        then = None  # a server-side binding cursor sends one statement at a time: the caller reads the history
    begin = ride.begin() if ride else ""
    with connection.cursor() as cursor:
        # Two statements in one round trip (the client-side binding cursor sends them as one simple query).
        if then:
            cursor.execute(f"{begin}{lock}; {then[0]}", params + then[1])
        else:
            cursor.execute(f"{begin}{lock}", params)
        if begin:
            cursor.nextset()  # past BEGIN's empty result
        if cursor.fetchone()[1] is None:  # the customer's first decision: make the row, racing requests make it once
            cursor.execute(f"INSERT INTO {table} (customer_id) VALUES (%s) ON CONFLICT DO NOTHING", [customer_id])
            cursor.execute(f"SELECT customer_id FROM {table} WHERE customer_id = %s FOR UPDATE", [customer_id])
            return None  # the history read with the block lock alone may predate the row lock's holder: read it again
        if then is None:
            return [] if not caps else None
        cursor.nextset()
        return _exposures(cursor.fetchall())


def serve(customer_id: int, placement: Placement, ranked: Sequence[Ad], *, slots: int | None = None,
          now: datetime | None = None, decision: uuid.UUID | None = None,
          known_caps: Sequence[FrequencyCap] | None = None, record: bool = True, ride: rows.Ride | None = None) -> Served:
    """Serve the best-ranked ads the caps allow and record them, exactly, however many requests race.

    `known_caps`: the caps of the placement's set-up (setup.py), instead of a query. `record=False`
    returns the served ads unsaved, for a caller that writes them later in the same transaction
    (decisions.record, while the customer's lock is still held). Without a `ride` (rows.riding: the
    caller's transaction, begun with the lock, ended with its writes) it runs in an atomic block —
    the caller's, if there is one; its own savepoint would cost two round trips.
    """
    if ride is not None:
        if record:
            raise ValueError("a ride's writes are its caller's: serve(record=False) and write them with the COMMIT")
        return _serve(customer_id, placement, ranked, slots, now, decision, known_caps, record, ride)
    with transaction.atomic(savepoint=False):
        return _serve(customer_id, placement, ranked, slots, now, decision, known_caps, record, None)


def _serve(customer_id: int, placement: Placement, ranked: Sequence[Ad], slots: int | None, now: datetime | None,
           decision: uuid.UUID | None, known_caps: Sequence[FrequencyCap] | None, record: bool,
           ride: rows.Ride | None) -> Served:
    now = now or timezone.now()
    caps = caps_for(placement, ranked) if known_caps is None else bearing(known_caps, placement, ranked)
    seen = _lock_customer(customer_id, caps, now, ride)
    if seen is None:
        seen = history(customer_id, caps, now)
    taken, blocked, eligible = choose(ranked, placement, caps, seen, now, slots or placement.slots)
    decision = decision or uuid.uuid4()
    served = [ServedAd(decision=decision, customer_id=customer_id, ad=ad, campaign_id=ad.campaign_id, placement=placement,
                       channel_id=placement.channel_id, served_at=now) for ad in taken]
    if record:
        served = ServedAd.objects.bulk_create(served)
    return Served(served, blocked, eligible, decision)
