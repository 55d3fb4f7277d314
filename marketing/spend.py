"""Spend and budgets: cost accrues per served ad or per event through the channel's cost model; a campaign
stops serving once its total or today's budget is spent, and is paced evenly across the day.

Pacing: by a moment of the day a campaign may have spent its daily budget times the share of the
day gone, plus one hour's worth, so it neither stalls at midnight nor spends the day by breakfast.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from decimal import Decimal
from typing import Iterable

from django.conf import settings
from django.db.models import F, Q, Sum
from django.utils import timezone

from config.held import refreshed

from .models import Campaign, CampaignSpend, Channel, ExternalSpend

def cost_of_serving(channel: Channel) -> Decimal:
    """A send costs its unit; an impression a thousandth of the CPM; clicks and conversions are paid when they come."""
    if channel.cost_model == Channel.CostModel.SEND:
        return channel.unit_cost
    if channel.cost_model == Channel.CostModel.CPM:
        return channel.unit_cost / 1000
    return Decimal(0)


def cost_of_event(channel: Channel, event_type: str) -> Decimal:
    if channel.cost_model == Channel.CostModel.CPC and event_type == "click":
        return channel.unit_cost
    if channel.cost_model == Channel.CostModel.CPA and event_type == "conversion":
        return channel.unit_cost
    return Decimal(0)


def shard_of(customer_id: int | None) -> int:
    """The spend row of the day a customer's costs go to (CampaignSpend.shard)."""
    return (customer_id or 0) % settings.SPEND_SHARDS


def accrue(campaign_id: int, amount: Decimal, now: datetime, shard: int = 0) -> None:
    """Add to the campaign's spend of the day (in row `shard`), atomically (concurrent decisions add, never overwrite)."""
    if not amount:
        return
    day = timezone.localdate(now)
    today = CampaignSpend.objects.filter(campaign_id=campaign_id, day=day, shard=shard)
    if today.update(amount=F("amount") + amount):  # the row exists but for its first serve of the day: one statement
        return
    CampaignSpend.objects.bulk_create([CampaignSpend(campaign_id=campaign_id, day=day, shard=shard)], ignore_conflicts=True)
    today.update(amount=F("amount") + amount)


def accrual_upsert(costs: dict[int, Decimal], now: datetime, shard: int = 0) -> tuple[str, list]:
    """PostgreSQL: one statement adding each campaign's cost to its row of the day (`shard`), making the row
    on the day's first serve (for a data-modifying CTE, decisions.record).

    Rows are taken in campaign order, so two decisions that both pay two campaigns lock their rows in
    the same order and cannot deadlock.
    """
    table = CampaignSpend._meta.db_table
    day = timezone.localdate(now)
    rows = ", ".join(["(%s, %s, %s, %s::numeric)"] * len(costs))
    statement = (f"INSERT INTO {table} (campaign_id, day, shard, amount) VALUES {rows} "
                 "ON CONFLICT (campaign_id, day, shard) DO UPDATE SET amount = "
                 f"{table}.amount + EXCLUDED.amount")
    return statement, [x for campaign_id in sorted(costs) for x in (campaign_id, day, shard, costs[campaign_id])]


def spent(ids: Iterable[int], today) -> tuple[dict[int, Decimal], dict[int, Decimal]]:
    """Total and today's spend per campaign as the database has it now: accrued by the cost model (every
    shard) plus what ad platforms reported (ExternalSpend). Campaigns that spent nothing are left out."""
    ids = list(ids)
    accrued = (CampaignSpend.objects.filter(campaign_id__in=ids).values("campaign_id")
               .annotate(total=Sum("amount"), today=Sum("amount", filter=Q(day=today))).values_list("campaign_id", "total", "today"))
    external = (ExternalSpend.objects.filter(campaign_id__in=ids).values("campaign_id")  # reported by ad platforms
                .annotate(total=Sum("amount"), today=Sum("amount", filter=Q(day=today))).values_list("campaign_id", "total", "today"))
    totals: dict[int, Decimal] = {}
    todays: dict[int, Decimal] = {}
    for campaign_id, total, spent_today in [*accrued, *external]:
        totals[campaign_id] = totals.get(campaign_id, Decimal(0)) + (total or 0)
        todays[campaign_id] = todays.get(campaign_id, Decimal(0)) + (spent_today or 0)
    return totals, todays


def spent_overall(today) -> tuple[Decimal, Decimal]:
    """Every campaign's spend together, in all and today: accrued plus reported for a campaign (as `spent`)."""
    total, todays = Decimal(0), Decimal(0)
    for model in (CampaignSpend, ExternalSpend):
        found = model.objects.filter(campaign__isnull=False).aggregate(total=Sum("amount"), today=Sum("amount", filter=Q(day=today)))
        total, todays = total + (found["total"] or 0), todays + (found["today"] or 0)
    return total, todays


def spent_per_day(campaign_id: int, first) -> dict:
    """A campaign's spend per day from `first` on: accrued plus reported."""
    days: dict = {}
    for model in (CampaignSpend, ExternalSpend):
        for day, amount in (model.objects.filter(campaign_id=campaign_id, day__gte=first).values("day")
                            .annotate(s=Sum("amount")).values_list("day", "s")):
            days[day] = days.get(day, Decimal(0)) + (amount or 0)
    return days


_spent: dict[tuple, tuple[float, dict, dict]] = {}


def _spend_of(ids: list[int], today) -> tuple[dict, dict]:
    """Total and today's spend per campaign, re-read at most every BUDGET_CHECK_SECONDS in a process.

    Every decision of a budgeted campaign asks; one aggregate a second per process instead of one
    per request, so a spent budget stops delivery at most that late (a second's traffic, against
    pacing that allows an hour's).
    """
    ttl = settings.BUDGET_CHECK_SECONDS
    key = (tuple(sorted(ids)), today)
    held = _spent.get(key)
    if ttl and held:
        if held[0] > time.monotonic():
            return held[1], held[2]
        return refreshed(_rereading, (held[1], held[2]), lambda: _read_spend(key, ttl))  # one thread re-reads
    return _read_spend(key, ttl)


_rereading = threading.Lock()


def _read_spend(key: tuple, ttl: int) -> tuple[dict, dict]:
    totals, todays = spent(list(key[0]), key[1])
    if ttl:
        if len(_spent) > 1000:
            _spent.clear()
        _spent[key] = (time.monotonic() + ttl, totals, todays)
    return totals, todays


def budget_blocks(campaigns: Iterable[Campaign], now: datetime) -> dict[int, str]:
    """Campaigns that may not serve now, with the reason (one query, whatever the number of campaigns)."""
    campaigns = [c for c in campaigns if c.total_budget is not None or c.daily_budget is not None]
    if not campaigns:
        return {}
    totals, todays = _spend_of([c.pk for c in campaigns], timezone.localdate(now))
    local = timezone.localtime(now)
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    # Seconds of the day gone plus an hour of slack, multiplied before dividing so whole budgets stay exact.
    paced_seconds = min(int((local - start).total_seconds()) + 3600, 86400)
    blocked = {}
    for c in campaigns:
        total, spent_today = totals.get(c.pk) or Decimal(0), todays.get(c.pk) or Decimal(0)
        if c.total_budget is not None and total >= c.total_budget:
            blocked[c.pk] = f"total budget spent ({total:.2f} of {c.total_budget:.2f})"
        elif c.daily_budget is not None and spent_today >= c.daily_budget:
            blocked[c.pk] = f"today's budget spent ({spent_today:.2f} of {c.daily_budget:.2f})"
        elif c.daily_budget is not None and spent_today >= (allowed := c.daily_budget * paced_seconds / Decimal(86400)):
            blocked[c.pk] = f"paced: {spent_today:.2f} spent, {allowed:.2f} allowed by now"
    return blocked
