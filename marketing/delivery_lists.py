"""Delivery lists: the customers a push or e-mail campaign should message now, in batches, caps reserved once.

A list is computed in SQL, a batch at a time, never with a Python loop over customers:

1. *Who and which ad*: the placement's plan routes each customer as the decision engine does —
   the first rule whose audience holds them, else everyone else — compiled into one CASE over
   audience memberships. Only the campaign's own servable ads count; a rule that has none of
   them leaves its audience out of this campaign's list. Several ads: by priority, or "ranked by
   model" — uniform while exploring (a hash of customer and list spreads the ads evenly), after
   exploration the best ad of the customer's value segment (rates.predict) with a share ε kept
   exploring, and the fit check leaves out segments predicted under the plan's threshold.
2. *Caps*: the batch's block of customer ids is locked against decisions (caps.lock_blocks), their
   served history inside the longest cap window is aggregated per customer and level, and
   customers a cap would refuse are skipped. The rest is reserved in the same statement: on PostgreSQL
   as two arrays on the batch's row (customers, their ads), which caps, later batches and replays read
   as served ads until `compact()` (a beat task) writes them out as ServedAd rows with the batch's
   token; on SQLite as those rows at once. Decisions and lists share every cap exactly.
3. *Budget*: a batch stops at what the campaign's total and daily budgets still allow for its
   channel's cost per send or impression, and the cost accrues with the batch. Spent means, as
   for decisions, what the cost model accrued plus what ad platforms reported (ExternalSpend).

Batches are idempotent: a batch is (campaign, placement, list key, after-cursor), stored in
DeliveryBatch; fetching it again replays what it reserved.

A batch comes back as rows (Row) or as the text the API streams (CSV or NDJSON lines). On PostgreSQL
that text is written by the reserving statement itself (one value per batch, no Python per row); on
SQLite the same lines are written in Python (`_text`, the reference the SQL is tested against).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Iterator

from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import Count
from django.db.models.functions import TruncDate
from django.utils import timezone

from audiences.analytics import csv_writer, spreadsheet_safe
from audiences.models import AudienceMember, Customer, Persona, Segment

from . import caps, control, rates, setup, spend
from .models import Ad, Campaign, DeliveryBatch, DeliveryPlan, FrequencyCap, Placement, PlanRule, ServedAd

log = logging.getLogger(__name__)

MAX_BATCH = 50_000
CSV_HEADER = "customer,ad,batch,cursor\r\n"
HASH = 2654435761  # Knuth's multiplicative hash: spreads consecutive ids evenly over the ads


class ListError(ValueError):
    """A request the list cannot answer (the field and the reason are in the message)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass
class Row:
    customer: str
    ad: int
    batch: str
    cursor: int


def _salt(key: str) -> int:
    return sum(ord(ch) * 31 ** i for i, ch in enumerate(key[:32])) % 1_000_003


def _choice(ads: list[Ad], order: str, plan: DeliveryPlan | None, key: str, params: list) -> str | None:
    """SQL for the ad one customer gets out of `ads` (NULL: none), as decisions.order() would pick the first slot."""
    if not ads:
        return None
    threshold = plan.fit_threshold if plan else None
    if order == "model" and any(a.explored_at is None for a in ads):
        return _uniform(ads, key, params)  # exploring: uniform, and exempt from the fit check
    scores = {segment: rates.predict(ads, segment) for segment in [*Segment.values, ""]} if (
        order == "model" or threshold is not None) else {}

    def first(segment: str) -> list[Ad]:
        fit = [a for a in ads if threshold is None or scores[segment][a.pk] >= threshold]
        if not fit or order == "one":
            return fit[:1]
        if order == "model":
            return [min(fit, key=lambda a: (-scores[segment][a.pk], a.pk))]
        top = max(a.priority for a in fit)
        return [a for a in fit if a.priority == top]  # equal priorities share the traffic

    def pick(chosen: list[Ad]) -> str:
        if not chosen:
            return "NULL"
        if len(chosen) == 1:
            params.append(chosen[0].pk)
            return "%s"
        return _uniform(chosen, key, params)

    explore = ""
    if order == "model" and plan.epsilon > 0:  # ε of the customers keep exploring, uniformly
        params.append(int(plan.epsilon * 10_000))
        explore = f"WHEN ((c.id * {HASH} + {_salt(key) + 7}) %% 4294967296) / 65536 %% 10000 < %s THEN {_uniform(ads, key, params)} "
    if not scores:
        return f"CASE {explore}ELSE {pick(first(''))} END" if explore else pick(first(""))
    whens = []
    for segment in Segment.values:
        params.append(segment)
        whens.append(f"WHEN p.segment = %s THEN {pick(first(segment))}")
    return f"CASE {explore}{' '.join(whens)} ELSE {pick(first(''))} END"


def _uniform(ads: list[Ad], key: str, params: list) -> str:
    params.extend(a.pk for a in ads)
    whens = " ".join(f"WHEN {i} THEN %s" for i in range(len(ads)))
    return f"CASE ((c.id * {HASH} + {_salt(key)}) %% 4294967296) / 65536 %% {len(ads)} {whens} END"


def _member(audience_id: int, params: list) -> str:
    params.append(audience_id)
    return f"EXISTS (SELECT 1 FROM {AudienceMember._meta.db_table} m WHERE m.audience_id = %s AND m.customer_id = c.id)"


def targeting(campaign: Campaign, placement: Placement, key: str, now: datetime) -> tuple[str, list]:
    """SQL for each customer's ad of this campaign on this placement (NULL: not on the list), and its params."""
    found = setup.setup_for(placement.slug)
    servable = {a.pk: a for a in found.servable(now)} if found else {}
    blocked = spend.budget_blocks({a.campaign for a in servable.values()}, now)  # as route(): they pass to the next rule
    servable = {pk: a for pk, a in servable.items() if a.campaign_id not in blocked}
    mine = {pk: a for pk, a in servable.items() if a.campaign_id == campaign.pk}
    plan = found.plan if found else None
    params: list = []
    if plan is None:
        return _choice(sorted(mine.values(), key=lambda a: -a.priority), "priority", None, key, params) or "NULL", params
    whens = []
    rules = [r for r in plan.rules.all() if any(a.pk in servable for a in r.ads.all())]  # as route(): unservable rules pass
    for rule in rules:
        ads = [servable[a.pk] for a in rule.ads.all() if a.pk in servable]
        if rule.mode == PlanRule.Mode.ONE_AD:
            ads = ads[:1]
        own = [a for a in ads if a.campaign_id == campaign.pk]
        cond = _member(rule.audience_id, params)
        choice = _choice(own, "one" if rule.mode == PlanRule.Mode.ONE_AD else "model", plan, key, params)
        whens.append(f"WHEN {cond} THEN {choice or 'NULL'}")
    if plan.rest == DeliveryPlan.Rest.NOTHING:
        rest = None
    else:
        own = [a for a in plan.rest_pool(servable) if a.campaign_id == campaign.pk]
        rest = _choice(own, "model" if plan.rest == DeliveryPlan.Rest.MODEL else "priority", plan, key, params)
    sql = f"CASE {' '.join(whens)} ELSE {rest or 'NULL'} END" if whens else (rest or "NULL")
    if campaign.uplift_targeting and campaign.persuadable_id:  # only the customers its uplift model chose
        first: list = []  # its placeholder comes before the others in the text
        sql = f"CASE WHEN {_member(campaign.persuadable_id, first)} THEN {sql} END"
        params = first + params
    kept = control.sql_not_held_out(campaign)
    if kept:  # the campaign's control group (and the global one) is never on its lists
        sql = f"CASE WHEN {kept} THEN {sql} END"
    return sql, params


def _cap_filter(found: list[FrequencyCap], now: datetime, params: list) -> tuple[str, str]:
    """SQL aggregating each customer's history per cap (h.*), and the condition that no cap refuses the row's ad."""
    if not found:
        return "", "TRUE"
    aggregates, refusals = [], []
    for i, cap in enumerate(found):
        level = "TRUE" if cap.level == FrequencyCap.Level.SERVICE else f"s.{cap.level}_id = {int(getattr(cap, f'{cap.level}_id'))}"
        if cap.max_count:
            since = "TRUE" if not cap.window else "s.served_at > %s"
            if cap.window:
                params.append(now - timedelta(seconds=cap.window))
            aggregates.append(f"SUM(CASE WHEN {level} AND {since} THEN 1 ELSE 0 END) AS n{i}")
            refusal = f"COALESCE(h.n{i}, 0) >= {int(cap.max_count)}"
            refusals.append(refusal if cap.level != FrequencyCap.Level.AD else f"(t.ad = {cap.ad_id} AND {refusal})")
        if cap.min_gap_seconds:
            params.append(now - timedelta(seconds=cap.min_gap_seconds))
            aggregates.append(f"SUM(CASE WHEN {level} AND s.served_at > %s THEN 1 ELSE 0 END) AS g{i}")
            refusal = f"COALESCE(h.g{i}, 0) > 0"
            refusals.append(refusal if cap.level != FrequencyCap.Level.AD else f"(t.ad = {cap.ad_id} AND {refusal})")
    return ", ".join(aggregates), f"NOT ({' OR '.join(refusals)})"


def _budget_rows(campaign: Campaign, placement: Placement, now: datetime) -> int | None:
    """How many more sends the campaign's budgets pay for (None: no limit)."""
    if spend.budget_blocks([campaign], now):
        return 0
    cost = spend.cost_of_serving(placement.channel)
    if not cost:
        return None
    # Read afresh, not through the decisions' per-second cache: a list accrues between its batches.
    totals, todays = spend.spent([campaign.pk], timezone.localdate(now))
    left = []
    if campaign.total_budget is not None:
        left.append(campaign.total_budget - totals.get(campaign.pk, Decimal(0)))
    if campaign.daily_budget is not None:
        left.append(campaign.daily_budget - todays.get(campaign.pk, Decimal(0)))
    return max(int(min(left) / cost), 0) if left else None


def check_request(campaign: Campaign, placement_slug: str | None) -> Placement:
    """The placement a list is asked for: one the campaign has ads on."""
    slugs = list(Placement.objects.filter(ads__campaign=campaign).distinct().values_list("slug", flat=True))
    if not placement_slug:
        if len(slugs) != 1:
            raise ListError("placement", f"Name the placement: the campaign has ads on {', '.join(slugs) or 'none'}.")
        placement_slug = slugs[0]
    if placement_slug not in slugs:
        raise ListError("placement", f"The campaign has no ads on {placement_slug!r} (it has {', '.join(slugs) or 'none'}).")
    return Placement.objects.select_related("channel").get(slug=placement_slug)


def check_cursor(campaign: Campaign, placement: Placement, key: str, after: int) -> None:
    """A list resumes at the start or where one of its batches ended; anything else would reserve customers twice."""
    if after and not DeliveryBatch.objects.filter(campaign=campaign, placement=placement, key=key, last=after).exists():
        raise ListError("after", f"{after} is not where a batch of list {key!r} ended; resume from a cursor the list gave.")


def batch(campaign: Campaign, placement: Placement, key: str, after: int, size: int, now: datetime | None = None,
          fmt: str = "rows") -> tuple[DeliveryBatch | None, list[Row] | str]:
    """The batch of list `key` that starts after customer id `after`: reserved now, or replayed if it was before.

    `fmt` "rows" gives a Row per customer; "csv" or "ndjson" the batch's lines as one text."""
    now = now or timezone.now()
    held = DeliveryBatch.objects.defer("pending_customers", "pending_ads")  # a replay reads them in SQL
    done = held.filter(campaign=campaign, placement=placement, key=key, after=after).first()
    out = None
    if done is None:
        try:
            done, out = _reserve(campaign, placement, key, after, size, now, fmt)
        except IntegrityError:  # a concurrent fetch of the same batch won: replay its rows
            done = held.get(campaign=campaign, placement=placement, key=key, after=after)
    if done is None:
        return None, [] if fmt == "rows" else ""
    return done, out if out is not None else _replay(done, fmt)[1]


def _name(done: DeliveryBatch) -> str:
    """The batch's name as its rows carry it."""
    return f"{done.key}:{done.after}"


def _replay(done: DeliveryBatch, fmt: str) -> tuple[int, list[Row] | str]:
    """How many rows a batch reserved, and them in `fmt`: from its arrays, or the rows they were written out as."""
    table, customers = ServedAd._meta.db_table, Customer._meta.db_table
    sql = (f"SELECT s.customer_id AS id, s.ad_id AS ad, c.external_id AS ext FROM {table} s "
           f"JOIN {customers} c ON c.id = s.customer_id WHERE s.customer_id > %s AND s.customer_id <= %s AND s.decision = %s")
    params = [done.after, done.last, done.token.hex if connection.vendor == "sqlite" else done.token]
    if connection.vendor == "postgresql":
        sql += (f" UNION ALL SELECT p.customer_id, p.ad_id, c.external_id FROM ({_pending('b.id = %s')}) p "
                f"JOIN {customers} c ON c.id = p.customer_id")
        params.append(done.pk)
    with connection.cursor() as cursor:
        select, select_params = _output(done, fmt)
        cursor.execute(f"WITH t AS ({sql}) {select}", [*params, *select_params])
        return _result(done, fmt, cursor)


def _pending(where: str) -> str:
    """SQL for the served ads list batches still hold in arrays (PostgreSQL), a row each, in ServedAd's columns
    (customer_id, ad_id, campaign_id, placement_id, channel_id, served_at); `where` filters the batch `b` and row `u`."""
    return (f"SELECT u.customer_id, u.ad_id, b.campaign_id, b.placement_id, b.channel_id, b.created_at AS served_at "
            f"FROM {DeliveryBatch._meta.db_table} b "
            f"CROSS JOIN LATERAL unnest(b.pending_customers, b.pending_ads) AS u(customer_id, ad_id) "
            f"WHERE b.pending_customers IS NOT NULL AND {where}")


def _served_between(after: int, last: int, since: datetime | None) -> tuple[str, list]:
    """SQL for the served ads of customers after `after` up to `last` (since `since`, if given), as ServedAd columns:
    the ledger's rows and, on PostgreSQL, what list batches hold in their arrays (every one of those, whatever `since`)."""
    sql = (f"SELECT customer_id, ad_id, campaign_id, placement_id, channel_id, served_at FROM {ServedAd._meta.db_table} "
           f"WHERE customer_id > %s AND customer_id <= %s{' AND served_at > %s' if since else ''}")
    params: list = [after, last, *([since] if since else [])]
    if connection.vendor == "postgresql":
        sql += " UNION ALL " + _pending("b.last > %s AND b.after < %s AND u.customer_id > %s AND u.customer_id <= %s")
        params += [after, last, after, last]
    return sql, params


def served_per_ad_and_day(campaign_id: int, ad_ids: list[int]) -> list[tuple[int, date, int]]:
    """(ad, local day, how many) the ledger counts served of these ads of the campaign, in one statement: its rows
    and, on PostgreSQL, what the campaign's list batches still hold in arrays (as `compact` will write them out).

    One statement, so a batch written out meanwhile is counted once, whichever side of it the snapshot falls."""
    if not ad_ids:
        return []
    if connection.vendor != "postgresql":
        return list(ServedAd.objects.filter(ad_id__in=ad_ids).values("ad_id", day=TruncDate("served_at"))
                    .annotate(n=Count("id")).values_list("ad_id", "day", "n"))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT s.ad_id, (s.served_at AT TIME ZONE %s)::date, COUNT(*) FROM ("
            f"SELECT ad_id, served_at FROM {ServedAd._meta.db_table} WHERE ad_id = ANY(%s) UNION ALL "
            f"SELECT ad_id, served_at FROM ({_pending('b.campaign_id = %s AND u.ad_id = ANY(%s)')}) p) s GROUP BY 1, 2",
            [timezone.get_current_timezone_name(), list(ad_ids), campaign_id, list(ad_ids)])
        return cursor.fetchall()


def compact(batches: int = 100) -> int:
    """Write the reservations list batches hold in arrays out as ServedAd rows, a batch per transaction, oldest first.

    Returns how many rows it wrote (up to `batches` batches). Each batch's rows and the emptying of its arrays commit
    together, and every exact reader takes the two in one statement, so a served ad is never counted twice or not at
    all. A customer or an ad deleted since the batch is left out (their served ads went with them). Compactors running
    at once share the work (a batch another one holds is skipped); a batch that fails is logged and left for the next
    run, and the others go on."""
    if connection.vendor != "postgresql":
        return 0
    table = DeliveryBatch._meta.db_table
    written = 0
    ids = list(DeliveryBatch.objects.filter(pending_customers__isnull=False).order_by("pk").values_list("pk", flat=True)[:batches])
    for pk in ids:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                # Not _pending(): the rows must come from the batch as locked (its latest version), not the snapshot.
                cursor.execute(
                    f"WITH b AS (SELECT id, token, campaign_id, placement_id, channel_id, created_at, pending_customers, "
                    f"pending_ads FROM {table} WHERE id = %s AND pending_customers IS NOT NULL FOR UPDATE SKIP LOCKED), "
                    f"ins AS (INSERT INTO {ServedAd._meta.db_table} (decision, customer_id, ad_id, campaign_id, placement_id, "
                    f"channel_id, served_at) SELECT b.token, u.customer_id, u.ad_id, b.campaign_id, b.placement_id, "
                    f"b.channel_id, b.created_at FROM b "
                    f"CROSS JOIN LATERAL unnest(b.pending_customers, b.pending_ads) AS u(customer_id, ad_id) "
                    f"WHERE EXISTS (SELECT 1 FROM {Customer._meta.db_table} c WHERE c.id = u.customer_id) "
                    f"AND EXISTS (SELECT 1 FROM {Ad._meta.db_table} a WHERE a.id = u.ad_id) RETURNING 1), "
                    f"done AS (UPDATE {table} t SET pending_customers = NULL, pending_ads = NULL FROM b WHERE t.id = b.id) "
                    f"SELECT COUNT(*) FROM ins", [pk])
                written += cursor.fetchone()[0]
        except DatabaseError:
            log.exception("Delivery batch %s was not written out as served ads; the next run tries again", pk)
    return written


def _text_in_sql(fmt: str) -> bool:
    """Whether the statement itself writes the batch's text (PostgreSQL); else it returns rows."""
    return fmt != "rows" and connection.vendor == "postgresql"


def _output(done: DeliveryBatch, fmt: str) -> tuple[str, list]:
    """The SELECT that turns a batch's rows `t` (id, ad, ext) into the result, and its params.

    Rows for "rows" and on SQLite; on PostgreSQL the count and the batch's text in `fmt`, one line per row, written as
    `_text` writes them: CSV with the customer made spreadsheet-safe and quoted only when it must be, or JSON."""
    if not _text_in_sql(fmt):
        return "SELECT t.ext, t.ad FROM t ORDER BY t.id", []
    name = _name(done)
    if fmt == "csv":
        safe = "CASE WHEN left(t.ext, 1) IN ('=', '+', '-', '@', chr(9), chr(13)) THEN '''' || t.ext ELSE t.ext END"
        quoted = f"""CASE WHEN t.ext ~ ('[",' || chr(13) || chr(10) || ']') THEN '"' || replace({safe}, '"', '""') || '"' ELSE {safe} END"""
        line, suffix = f"{quoted} || ',' || t.ad", "," + csv_writer().writerow([name, done.last])
    else:
        line, suffix = """'{"customer": ' || to_json(t.ext) || ', "ad": ' || t.ad""", f', "batch": {json.dumps(name)}, "cursor": {done.last}}}\n'
    return f"SELECT COUNT(*), string_agg({line} || %s, '' ORDER BY t.id) FROM t", [suffix]


def _result(done: DeliveryBatch, fmt: str, cursor) -> tuple[int, list[Row] | str]:
    """How many rows the batch has, and them in `fmt`, from the cursor that ran `_output`'s SELECT."""
    if not _text_in_sql(fmt):
        found = cursor.fetchall()
        return len(found), ([Row(ext, ad, _name(done), done.last) for ext, ad in found] if fmt == "rows"
                            else _text(done, found, fmt))
    count, text = cursor.fetchone()
    return count, text or ""


def _text(done: DeliveryBatch, found: list[tuple[str, int]], fmt: str) -> str:
    """(external id, ad) pairs as the batch's CSV or NDJSON lines."""
    name = _name(done)
    if fmt == "csv":
        writer = csv_writer()
        return "".join(writer.writerow([spreadsheet_safe(ext), ad, name, done.last]) for ext, ad in found)
    return "".join(json.dumps({"customer": ext, "ad": ad, "batch": name, "cursor": done.last}) + "\n" for ext, ad in found)


@transaction.atomic
def _reserve(campaign: Campaign, placement: Placement, key: str, after: int, size: int, now: datetime,
             fmt: str) -> tuple[DeliveryBatch | None, list[Row] | str | None]:
    ad_sql, ad_params = targeting(campaign, placement, key, now)
    customers = Customer._meta.db_table
    persona = Persona._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT MAX(id), COUNT(*) FROM (SELECT c.id FROM {customers} c LEFT JOIN {persona} p ON p.customer_id = c.id "
            f"WHERE c.id > %s AND ({ad_sql}) IS NOT NULL ORDER BY c.id LIMIT %s) t", [after, *ad_params, size])
        last, count = cursor.fetchone()
    affordable = _budget_rows(campaign, placement, now)
    if not count or affordable == 0:
        return None, None
    done = DeliveryBatch.objects.create(campaign=campaign, placement=placement, channel_id=placement.channel_id, key=key,
                                        after=after, last=last, size=size, targeted=count, created_at=now)
    held = setup.setup_for(placement.slug)
    found = caps.bearing(held.caps, placement, [a for a in held.ads if a.campaign_id == campaign.pk]) if held else []
    cap_params: list = []
    aggregates, allowed = _cap_filter(found, now, cap_params)
    windows = [c.window for c in found if c.max_count] + [c.min_gap_seconds for c in found if c.min_gap_seconds]
    if found:
        served, served_params = _served_between(after, last, None if 0 in windows else now - timedelta(seconds=max(windows)))
        history = f"LEFT JOIN (SELECT s.customer_id, {aggregates} FROM ({served}) s GROUP BY s.customer_id) h ON h.customer_id = t.id"
        history_params = [*cap_params, *served_params]
    else:
        history, history_params = "", []
    targets = (f"SELECT c.id, c.external_id AS ext, ({ad_sql}) AS ad FROM {customers} c "
               f"LEFT JOIN {persona} p ON p.customer_id = c.id WHERE c.id > %s AND c.id <= %s")
    limit = "" if affordable is None else f"LIMIT {int(affordable)}"
    chosen = f"SELECT t.id, t.ad, t.ext FROM ({targets}) t {history} WHERE t.ad IS NOT NULL AND {allowed} ORDER BY t.id {limit}"
    chosen_params = [*ad_params, after, last, *history_params]
    with connection.cursor() as cursor:
        if found:  # no decision for these customers may pass a cap while the batch decides (see caps.lock_blocks)
            caps.lock_blocks(after + 1, last)
        if connection.vendor == "postgresql":
            # One statement chooses, reserves (the batch's arrays: see DeliveryBatch.pending_customers) and
            # returns the batch in `fmt`. The two aggregates read the same rows in the same order: the arrays pair up.
            keep = (f"UPDATE {DeliveryBatch._meta.db_table} SET (pending_customers, pending_ads, rows) = "
                    f"(SELECT array_agg(t.id), array_agg(t.ad), COUNT(*) FROM t) WHERE id = %s")
            select, params = _output(done, fmt)
            cursor.execute(f"WITH t AS MATERIALIZED ({chosen}), kept AS ({keep}) {select}", [*chosen_params, done.pk, *params])
            reserved, out = _result(done, fmt, cursor)  # the statement stored the count too
        else:  # SQLite: the rows at once, then the rows it wrote (its rowcount is unreliable for INSERT … SELECT)
            insert = (f"INSERT INTO {ServedAd._meta.db_table} (decision, customer_id, ad_id, campaign_id, placement_id, "
                      f"channel_id, served_at) SELECT %s, t.id, t.ad, {int(campaign.pk)}, {int(placement.pk)}, "
                      f"{int(placement.channel_id)}, %s FROM t")
            cursor.execute(f"WITH t AS ({chosen}) {insert}", [*chosen_params, done.token.hex, now])
            reserved, out = _replay(done, fmt)
            DeliveryBatch.objects.filter(pk=done.pk).update(rows=reserved)
    done.rows = reserved
    spend.accrue(campaign.pk, spend.cost_of_serving(placement.channel) * reserved, now)
    return done, out


def stream(campaign: Campaign, placement: Placement, key: str, after: int = 0, size: int = 10_000,
           batches: int | None = None, now: datetime | None = None, fmt: str = "rows") -> Iterator[Row] | Iterator[str]:
    """Every row of the list from `after` on, a batch at a time (each batch in its own transaction).

    "rows" yields a Row per customer; "csv" the header, then each batch's lines as one text; "ndjson" each batch's lines."""
    if fmt == "csv":
        yield CSV_HEADER
    n = 0
    while batches is None or n < batches:
        done, out = batch(campaign, placement, key, after, size, now, fmt)
        if done is None:
            return
        if fmt == "rows":
            yield from out
        elif out:
            yield out
        after, n = done.last, n + 1
