"""What the campaigns cost and earned — and what they *changed*, against their control groups.

One entry point, `report(query)`, serves the ROI page, its htmx partial and its CSV. Every count
and sum is an SQL aggregate over (group, campaign, day) cells; Python only adds up those cells.

What is counted, for a range of local days (inclusive) and optional filters (campaign, channel,
ad, audience), per campaign, ad, channel or audience, and per day:

- impressions: ads served (ServedAd rows, decisions and delivery lists alike); reach: distinct
  customers served;
- clicks, streams (play events), conversions (conversion, subscribe, purchase) and revenue (the
  sum of event values): events attributed to a campaign (through the ad served). Outcomes of
  control decisions are left out — they are the baseline the campaign is measured against, not
  its doing. An event's channel is the channel of its decision's placement;
- spend: what the channels' cost models accrued (CampaignSpend) plus what external platforms
  reported for a campaign (ExternalSpend with a campaign; channel-only external spend belongs to
  no campaign and is not counted). Spend is recorded per campaign and day, so an ad, a channel,
  an audience or a filtered slice gets the share of its campaign's day that the cost models
  charge for its served ads and paid events (per send, CPM, CPC, CPA, at today's unit costs) —
  or, where they charge nothing, its share of the impressions. Spend of a day on which the
  campaign served nothing cannot be split: it is its own row ("not tied to …") when nothing is
  filtered, and left out of a filtered slice (`Report.unallocated` says how much);
- CPA = spend / conversions, ROAS = revenue / spend, ROI = (revenue − spend) / spend.

Incremental, per campaign, against its control group (marketing/control.py):

- treated: decisions in the range that served one of the campaign's ads; control: decisions
  logged "control" for it (held out, nothing served) whose withheld ad the caps would have
  allowed — a capped one would not have been served either, so it is no counterpart;
- a decision responded when an event of the campaign's goal (rates.GOAL_EVENTS) came for it
  within the campaign's attribution window (treated: an event of the campaign's ads; control:
  any event tied to the decision, since nothing was shown);
- lift = p_T − p_C, with the normal-approximation (Wald) 95 % interval
  ± 1.96 · sqrt(p_T(1 − p_T)/n_T + p_C(1 − p_C)/n_C) — sound once each arm has some ten responses
  and ten non-responses; with fewer the page says so;
- incremental conversions = lift × n_T, its interval the lift's scaled by n_T;
- incremental revenue = (v̄_T − v̄_C) × n_T, v being the value of a decision's events within its
  window, with the unequal-variance (Welch) standard error s_T²/n_T + s_C²/n_C;
- incremental ROI = (incremental revenue − spend) / spend. Spend is known, so ROI is a linear
  function of the mean difference and the delta method gives its interval exactly: the revenue
  interval's ends, minus spend, over spend. Across campaigns the incremental revenues and their
  variances add (the campaigns' decisions are disjoint).

Filters apply to both arms: a channel keeps decisions on its placements, an audience its current
members' decisions, an ad the decisions that served it against the controls it was withheld from.
Delivery lists log no decisions (they leave control customers out without one), so the lift
measures the decision engine's traffic; their sends still count in the attributed figures.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Iterator, Mapping
from urllib.parse import urlencode

from django.db.models import Case, Count, DecimalField, F, Q, QuerySet, Sum, Value, When
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from audiences.analytics import csv_writer, spreadsheet_safe
from audiences.models import Audience

from .models import Ad, Campaign, CampaignSpend, Channel, Decision, Event, ExternalSpend, ServedAd
from .rates import GOAL_EVENTS

Z95 = 1.959963984540054
GROUPS = {"campaign": "Campaign", "ad": "Ad", "channel": "Channel", "audience": "Audience"}
CONVERSIONS = ("conversion", "subscribe", "purchase")
DEFAULT_DAYS = 7
MAX_DAYS = 366
MIN_RESPONSES = 10  # per arm, responses and non-responses, before the normal approximation is trusted
# Columns a table may be sorted by; the value of each for a row (None sorts last).
SORTS = ("label", "impressions", "reach", "clicks", "ctr", "streams", "conversions", "revenue", "spend", "cpa", "roas",
         "roi", "incremental_conversions", "incremental_roi")
NOT_TIED = {"campaign": "Not tied to a campaign", "ad": "Not tied to an ad", "channel": "Not tied to a channel",
            "audience": "In no audience"}
MONEY = DecimalField(max_digits=20, decimal_places=6)


class RoiError(ValueError):
    """A request the report cannot answer; `errors` names each field and the reason."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


@dataclass(frozen=True)
class RoiQuery:
    start: date
    end: date
    group: str = "campaign"
    campaign: int | None = None
    channel: int | None = None
    ad: int | None = None
    audience: int | None = None
    sort: str = "-spend"

    @property
    def sliced(self) -> bool:
        """Filtered below the campaign, so a campaign's spend must be split."""
        return any(v is not None for v in (self.channel, self.ad, self.audience))

    @property
    def days(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range((self.end - self.start).days + 1)]

    def bounds(self) -> tuple[datetime, datetime]:
        """The range as aware datetimes: local midnight of the first day to local midnight after the last."""
        tz = timezone.get_current_timezone()
        return (datetime.combine(self.start, time.min, tzinfo=tz),
                datetime.combine(self.end + timedelta(days=1), time.min, tzinfo=tz))

    def params(self, **changes) -> str:
        """The query string of this request (with `changes`), empty fields left out."""
        q = replace(self, **changes)
        given = {"start": q.start.isoformat(), "end": q.end.isoformat(), "group": q.group, "campaign": q.campaign,
                 "channel": q.channel, "ad": q.ad, "audience": q.audience, "sort": q.sort}
        return urlencode({k: v for k, v in given.items() if v not in (None, "")})


def check_query(params: Mapping[str, str], today: date | None = None) -> RoiQuery:
    """The request in `params` (a GET), defaults filled in: the last DEFAULT_DAYS days, by campaign, by spend."""
    today = today or timezone.localdate()
    errors: dict[str, str] = {}

    def day(name: str, default: date) -> date:
        raw = (params.get(name) or "").strip()
        if not raw:
            return default
        try:
            return date.fromisoformat(raw)
        except ValueError:
            errors[name] = f"“{raw[:20]}” is not a date (YYYY-MM-DD)."
            return default

    def pk(name: str, model) -> int | None:
        raw = (params.get(name) or "").strip()
        if not raw:
            return None
        if not raw.isdigit() or len(raw) > 18 or not model.objects.filter(pk=int(raw)).exists():
            errors[name] = f"There is no {model._meta.verbose_name} {raw[:20]!r}."
            return None
        return int(raw)

    end = day("end", today)
    start = day("start", end - timedelta(days=DEFAULT_DAYS - 1))
    if "start" not in errors and "end" not in errors:
        if end < start:
            errors["end"] = "The range must end on or after its first day."
        elif (end - start).days >= MAX_DAYS:
            errors["start"] = f"Choose at most {MAX_DAYS} days."
    group = (params.get("group") or "campaign").strip()
    if group not in GROUPS:
        errors["group"] = f"Group by one of {', '.join(GROUPS)}."
    sort = (params.get("sort") or "-spend").strip()
    if sort.lstrip("-") not in SORTS:
        sort = "-spend"  # a stale link is not worth an error
    query = RoiQuery(start=start, end=end, group=group, sort=sort, campaign=pk("campaign", Campaign),
                     channel=pk("channel", Channel), ad=pk("ad", Ad), audience=pk("audience", Audience))
    if errors:
        raise RoiError(errors)
    return query


# -- the measures ----------------------------------------------------------------------------------------


@dataclass
class Measures:
    """The figures of one group, day or total; the ratios follow from them."""

    impressions: int = 0
    reach: int = 0
    clicks: int = 0
    streams: int = 0
    conversions: int = 0
    revenue: float = 0.0
    spend: float = 0.0

    def add(self, cell: "Measures") -> None:
        """Add a cell's counts and sums; reach is not additive (distinct customers) and is counted on its own."""
        for name in ("impressions", "clicks", "streams", "conversions", "revenue", "spend"):
            setattr(self, name, getattr(self, name) + getattr(cell, name))

    @property
    def ctr(self) -> float | None:
        return self.clicks / self.impressions if self.impressions else None

    @property
    def cpa(self) -> float | None:
        return self.spend / self.conversions if self.conversions else None

    @property
    def roas(self) -> float | None:
        return self.revenue / self.spend if self.spend else None

    @property
    def roi(self) -> float | None:
        return (self.revenue - self.spend) / self.spend if self.spend else None

    @property
    def active(self) -> bool:
        return bool(self.impressions or self.clicks or self.streams or self.conversions or self.revenue or self.spend)


@dataclass(frozen=True)
class Interval:
    """An estimate with its standard error; the 95 % interval is estimate ± Z95 · se."""

    estimate: float
    se: float

    @property
    def low(self) -> float:
        return self.estimate - Z95 * self.se

    @property
    def high(self) -> float:
        return self.estimate + Z95 * self.se

    def scaled(self, factor: float, shift: float = 0.0) -> "Interval":
        """factor · x + shift: a linear function of the estimate (its interval maps exactly)."""
        return Interval(factor * self.estimate + shift, abs(factor) * self.se)


def difference_in_proportions(x1: int, n1: int, x0: int, n0: int) -> Interval:
    """p1 − p0 with the unpooled (Wald) standard error."""
    p1, p0 = x1 / n1, x0 / n0
    return Interval(p1 - p0, math.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0))


def _variance(total: float, squares: float, n: int) -> float:
    return max(squares - total * total / n, 0.0) / (n - 1) if n > 1 else 0.0


def difference_in_means(s1: float, ss1: float, n1: int, s0: float, ss0: float, n0: int) -> Interval:
    """Mean 1 − mean 0 from sums and sums of squares, with the unequal-variance (Welch) standard error."""
    return Interval(s1 / n1 - s0 / n0, math.sqrt(_variance(s1, ss1, n1) / n1 + _variance(s0, ss0, n0) / n0))


@dataclass(frozen=True)
class Arm:
    """Decisions of one arm, how many responded, and the sum and sum of squares of their value."""

    decisions: int = 0
    responses: int = 0
    value: float = 0.0
    value_squares: float = 0.0

    @property
    def rate(self) -> float | None:
        return self.responses / self.decisions if self.decisions else None


@dataclass(frozen=True)
class Lift:
    """A campaign against its control group (see the module docstring for the statistics)."""

    campaign_id: int
    name: str
    goal: str
    treated: Arm
    control: Arm
    spend: float

    @property
    def measured(self) -> bool:
        return self.treated.decisions > 0 and self.control.decisions > 0

    @property
    def reliable(self) -> bool:
        """Enough responses and non-responses in each arm for the normal approximation."""
        return self.measured and all(min(a.responses, a.decisions - a.responses) >= MIN_RESPONSES
                                     for a in (self.treated, self.control))

    @property
    def lift(self) -> Interval | None:
        t, c = self.treated, self.control
        return difference_in_proportions(t.responses, t.decisions, c.responses, c.decisions) if self.measured else None

    @property
    def incremental_conversions(self) -> Interval | None:
        return self.lift.scaled(self.treated.decisions) if self.measured else None

    @property
    def incremental_revenue(self) -> Interval | None:
        if not self.measured:
            return None
        t, c = self.treated, self.control
        per_decision = difference_in_means(t.value, t.value_squares, t.decisions, c.value, c.value_squares, c.decisions)
        return per_decision.scaled(t.decisions)

    @property
    def incremental_roi(self) -> Interval | None:
        revenue = self.incremental_revenue
        if revenue is None or not self.spend:
            return None
        return revenue.scaled(1 / self.spend, -1.0)


@dataclass(frozen=True)
class Incremental:
    """The measured campaigns together: incremental revenues and their variances add."""

    campaigns: int
    conversions: Interval
    revenue: Interval
    spend: float

    @property
    def roi(self) -> Interval | None:
        return self.revenue.scaled(1 / self.spend, -1.0) if self.spend else None

    @classmethod
    def of(cls, lifts: list[Lift]) -> "Incremental | None":
        measured = [lift for lift in lifts if lift.measured]
        if not measured:
            return None

        def total(intervals: list[Interval]) -> Interval:
            return Interval(sum(i.estimate for i in intervals), math.sqrt(sum(i.se ** 2 for i in intervals)))

        return cls(campaigns=len(measured), conversions=total([m.incremental_conversions for m in measured]),
                   revenue=total([m.incremental_revenue for m in measured]), spend=sum(m.spend for m in measured))


@dataclass
class Row:
    key: int | None
    label: str
    measures: Measures
    lift: Lift | None = None

    def value(self, name: str):
        """The value a column sorts by (the estimate of an interval)."""
        if name == "label":
            return self.label.lower()
        if name in ("incremental_conversions", "incremental_roi"):
            found = getattr(self.lift, name) if self.lift else None
            return found.estimate if found else None
        return getattr(self.measures, name)


@dataclass
class Report:
    query: RoiQuery
    rows: list[Row]
    total: Measures
    days: list[tuple[date, Measures]]
    lifts: list[Lift]
    incremental: Incremental | None
    unallocated: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.total.active and not any(lift.treated.decisions or lift.control.decisions for lift in self.lifts)


# -- the SQL ----------------------------------------------------------------------------------------------

# What the cost model charges for a served ad, and for an event, at today's unit costs.
SERVED_COST = Case(
    When(channel__cost_model=Channel.CostModel.SEND, then=F("channel__unit_cost")),
    When(channel__cost_model=Channel.CostModel.CPM, then=F("channel__unit_cost") * Value(Decimal("0.001"))),
    default=Value(Decimal(0)), output_field=MONEY)
EVENT_COST = Case(
    When(type="click", decision__placement__channel__cost_model=Channel.CostModel.CPC,
         then=F("decision__placement__channel__unit_cost")),
    When(type="conversion", decision__placement__channel__cost_model=Channel.CostModel.CPA,
         then=F("decision__placement__channel__unit_cost")),
    default=Value(Decimal(0)), output_field=MONEY)
SERVED_KEYS = {"campaign": "campaign_id", "ad": "ad_id", "channel": "channel_id",
               "audience": "customer__audience_memberships__audience_id"}
EVENT_KEYS = {"campaign": "campaign_id", "ad": "ad_id", "channel": "decision__placement__channel_id",
              "audience": "customer__audience_memberships__audience_id"}


def served(query: RoiQuery, *, sliced: bool = True) -> QuerySet:
    """Ads served in the range, by the query's filters (the campaign filter alone unless `sliced`)."""
    start, end = query.bounds()
    found = ServedAd.objects.filter(served_at__gte=start, served_at__lt=end)
    if query.campaign is not None:
        found = found.filter(campaign_id=query.campaign)
    if sliced:
        if query.ad is not None:
            found = found.filter(ad_id=query.ad)
        if query.channel is not None:
            found = found.filter(channel_id=query.channel)
        if query.audience is not None:
            found = found.filter(customer__audience_memberships__audience_id=query.audience)
    return found


def events(query: RoiQuery, *, sliced: bool = True) -> QuerySet:
    """Events in the range attributed to a campaign, without control decisions' outcomes, by the query's filters."""
    start, end = query.bounds()
    found = (Event.objects.filter(occurred_at__gte=start, occurred_at__lt=end, campaign__isnull=False)
             .exclude(decision__reason=Decision.Reason.CONTROL))
    if query.campaign is not None:
        found = found.filter(campaign_id=query.campaign)
    if sliced:
        if query.ad is not None:
            found = found.filter(ad_id=query.ad)
        if query.channel is not None:
            found = found.filter(decision__placement__channel_id=query.channel)
        if query.audience is not None:
            found = found.filter(customer__audience_memberships__audience_id=query.audience)
    return found


Cells = dict[tuple, list]  # (group key, campaign, day) → [Measures, what the cost model charged]


def cells(query: RoiQuery, group: str, *, sliced: bool = True) -> Cells:
    """The measures (reach aside) per group, campaign and day: two grouped queries."""
    out: Cells = defaultdict(lambda: [Measures(), 0.0])
    rows = (served(query, sliced=sliced).order_by()
            .values(g=F(SERVED_KEYS[group]), c=F("campaign_id"), d=TruncDate("served_at"))
            .annotate(n=Count("id"), paid=Sum(SERVED_COST)))
    for r in rows:
        cell = out[(r["g"], r["c"], r["d"])]
        cell[0].impressions += r["n"]
        cell[1] += float(r["paid"] or 0)
    rows = (events(query, sliced=sliced).order_by()
            .values(g=F(EVENT_KEYS[group]), c=F("campaign_id"), d=TruncDate("occurred_at"))
            .annotate(clicks=Count("id", filter=Q(type=Event.Type.CLICK)),
                      streams=Count("id", filter=Q(type=Event.Type.PLAY)),
                      conversions=Count("id", filter=Q(type__in=CONVERSIONS)),
                      revenue=Sum("value"), paid=Sum(EVENT_COST)))
    for r in rows:
        cell = out[(r["g"], r["c"], r["d"])]
        cell[0].add(Measures(clicks=r["clicks"], streams=r["streams"], conversions=r["conversions"],
                             revenue=float(r["revenue"] or 0)))
        cell[1] += float(r["paid"] or 0)
    return out


def spend_per_campaign_day(query: RoiQuery) -> dict[tuple[int, date], float]:
    """Cost-model spend plus campaign-level external spend, per campaign and day."""
    spent: dict[tuple[int, date], float] = defaultdict(float)
    for model in (CampaignSpend, ExternalSpend):
        found = model.objects.filter(day__gte=query.start, day__lte=query.end, campaign__isnull=False)
        if query.campaign is not None:
            found = found.filter(campaign_id=query.campaign)
        for c, d, amount in found.order_by().values("campaign_id", "day").annotate(a=Sum("amount")).values_list(
                "campaign_id", "day", "a"):
            spent[(c, d)] += float(amount or 0)
    return spent


def allocate(found: Cells, base: Cells, spent: dict, *, exact: bool) -> float:
    """Give each cell its spend (see the module docstring); returns the spend of days no served ad or paid event can split.

    exact: the cells are whole campaigns (grouped by campaign, nothing sliced), so a campaign's
    day goes to it whole, also on a day it served nothing.
    """
    paid, shown = defaultdict(float), defaultdict(int)
    for (_, c, d), (m, p) in base.items():
        paid[(c, d)] += p
        shown[(c, d)] += m.impressions
    unsplit = sum(amount for key, amount in spent.items() if paid[key] <= 0 and shown[key] <= 0)
    if exact:
        for (c, d), amount in spent.items():
            found[(c, c, d)][0].spend += amount
        return unsplit
    for (_, c, d), (m, p) in found.items():
        amount = spent.get((c, d), 0.0)
        if paid[(c, d)] > 0:
            m.spend += amount * p / paid[(c, d)]
        elif shown[(c, d)] > 0:
            m.spend += amount * m.impressions / shown[(c, d)]
    return unsplit


def reach(query: RoiQuery, group: str) -> tuple[dict, int]:
    """Distinct customers served per group, and in all."""
    found = served(query)
    per = dict(found.order_by().values(g=F(SERVED_KEYS[group])).annotate(r=Count("customer_id", distinct=True))
               .values_list("g", "r"))
    return per, found.aggregate(r=Count("customer_id", distinct=True))["r"] or 0


def labels(group: str, keys) -> dict:
    keys = [k for k in keys if k is not None]
    if group == "campaign":
        return dict(Campaign.objects.filter(pk__in=keys).values_list("pk", "name"))
    if group == "ad":
        return {pk: f"{campaign} · {name}" for pk, name, campaign in
                Ad.objects.filter(pk__in=keys).values_list("pk", "name", "campaign__name")}
    if group == "channel":
        return dict(Channel.objects.filter(pk__in=keys).values_list("pk", "name"))
    return dict(Audience.objects.filter(pk__in=keys).values_list("pk", "name"))


def arm(decisions: QuerySet, outcomes: Q, goal: str, window: timedelta) -> Arm:
    """How many of these decisions responded to the goal within the window, and the value each brought (one query).

    A join of decisions to their events, grouped per decision, then summed: correlated subqueries
    would let SQLite pick the (campaign, time) index of events and scan it for every decision.
    """
    within = outcomes & Q(events__occurred_at__gte=F("created_at"), events__occurred_at__lte=F("created_at") + window)
    per_decision = decisions.order_by().annotate(
        hits=Count("events", filter=within & Q(events__type__in=GOAL_EVENTS[goal])),
        worth=Coalesce(Sum("events__value", filter=within), Value(Decimal(0)), output_field=MONEY))
    found = per_decision.aggregate(n=Count("pk"), x=Count("pk", filter=Q(hits__gt=0)), s=Sum("worth"),
                                   ss=Sum(F("worth") * F("worth"), output_field=MONEY))
    return Arm(decisions=found["n"], responses=found["x"], value=float(found["s"] or 0),
               value_squares=float(found["ss"] or 0))


def lift(query: RoiQuery, campaign: Campaign, spend: float) -> Lift:
    """The campaign's treated decisions against its control decisions in the range (two queries)."""
    start, end = query.bounds()
    window = timedelta(minutes=campaign.attribution_minutes)
    shown = ServedAd.objects.filter(campaign_id=campaign.pk, served_at__gte=start, served_at__lt=end)
    held = Decision.objects.filter(reason=Decision.Reason.CONTROL, context__control__campaign=campaign.pk,
                                   context__control__capped=False, created_at__gte=start, created_at__lt=end)
    if query.ad is not None:
        shown, held = shown.filter(ad_id=query.ad), held.filter(context__control__ad=query.ad)
    if query.channel is not None:
        shown, held = shown.filter(channel_id=query.channel), held.filter(placement__channel_id=query.channel)
    treated = Decision.objects.filter(pk__in=shown.values("decision"), created_at__gte=start, created_at__lt=end)
    if query.audience is not None:
        treated = treated.filter(customer__audience_memberships__audience_id=query.audience)
        held = held.filter(customer__audience_memberships__audience_id=query.audience)
    return Lift(campaign_id=campaign.pk, name=campaign.name, goal=campaign.goal, spend=spend,
                treated=arm(treated, Q(events__campaign_id=campaign.pk), campaign.goal, window),
                control=arm(held, Q(), campaign.goal, window))


# -- the report -------------------------------------------------------------------------------------------


def report(query: RoiQuery) -> Report:
    """Every measure per group, per day and in all, and the lift of each campaign in the slice."""
    base = cells(query, "campaign", sliced=False)
    spent = spend_per_campaign_day(query)
    exact_campaigns = not query.sliced
    per_campaign = cells(query, "campaign") if query.sliced else base
    unallocated = allocate(per_campaign, base, spent, exact=exact_campaigns)
    if query.group == "campaign":
        grouped = per_campaign
    else:
        grouped = cells(query, query.group)
        allocate(grouped, base, spent, exact=False)

    total = Measures()
    daily = {d: Measures() for d in query.days}
    campaign_spend: dict[int, float] = defaultdict(float)
    for (_, c, d), (m, _) in per_campaign.items():
        total.add(m)
        if d in daily:
            daily[d].add(m)
        campaign_spend[c] += m.spend
    by_group: dict = defaultdict(Measures)
    for (g, _, _), (m, _) in grouped.items():
        by_group[g].add(m)
    if query.group != "campaign" and unallocated and not query.sliced:
        by_group[None].spend += unallocated  # spent on days the campaign served nothing: no ad, channel or audience to take it
    reached, total.reach = reach(query, query.group)
    for g, r in reached.items():
        by_group[g].reach = r

    lifts = []
    if campaign_spend:
        for campaign in Campaign.objects.filter(pk__in=list(campaign_spend)).order_by("name"):
            lifts.append(lift(query, campaign, campaign_spend[campaign.pk]))
    by_campaign = {x.campaign_id: x for x in lifts}
    names = labels(query.group, by_group)
    rows = [Row(key=g, label=names.get(g, NOT_TIED[query.group] if g is None else f"{query.group} {g}"), measures=m,
                lift=by_campaign.get(g) if query.group == "campaign" else None)
            for g, m in by_group.items() if m.active or m.reach]
    _sort(rows, query.sort)
    notes = []
    if unallocated and query.sliced:  # (unsliced, a campaign row has it whole, another grouping its "not tied" row)
        notes.append(f"{unallocated:,.2f} of spend fell on days its campaign served nothing and cannot be split by "
                     "channel, ad or audience; it is left out of this slice.")
    if query.group == "audience":
        notes.append("A listener in several audiences counts in each: audience rows overlap and need not add up to the total.")
    return Report(query=query, rows=rows, total=total, days=sorted(daily.items()), lifts=lifts,
                  incremental=Incremental.of(lifts), unallocated=unallocated, notes=notes)


def _sort(rows: list[Row], sort: str) -> None:
    name, descending = sort.lstrip("-"), sort.startswith("-")
    known = [r for r in rows if r.value(name) is not None]
    unknown = [r for r in rows if r.value(name) is None]
    known.sort(key=lambda r: (r.value(name), r.label), reverse=descending)
    rows[:] = known + sorted(unknown, key=lambda r: r.label)


# -- CSV ---------------------------------------------------------------------------------------------------

CSV_HEADER = ["group", "id", "name", "impressions", "reach", "clicks", "ctr", "streams", "conversions", "revenue",
              "spend", "cpa", "roas", "roi", "treated_decisions", "treated_rate", "control_decisions", "control_rate",
              "lift", "lift_low", "lift_high", "incremental_conversions", "incremental_conversions_low",
              "incremental_conversions_high", "incremental_revenue", "incremental_roi", "incremental_roi_low",
              "incremental_roi_high"]


def _n(value, digits: int = 4):
    return "" if value is None else round(value, digits)


def csv_rows(result: Report) -> Iterator[list]:
    """The header, then one row per group: numbers stay numbers, names are the only text."""
    yield CSV_HEADER
    for row in result.rows:
        m, x = row.measures, row.lift
        lift = x.lift if x else None
        conversions = x.incremental_conversions if x else None
        roi = x.incremental_roi if x else None
        revenue = x.incremental_revenue if x else None
        yield [result.query.group, "" if row.key is None else row.key, row.label, m.impressions, m.reach, m.clicks,
               _n(m.ctr, 6), m.streams, m.conversions, _n(m.revenue, 2), _n(m.spend, 2), _n(m.cpa, 2), _n(m.roas),
               _n(m.roi), x.treated.decisions if x else "", _n(x.treated.rate, 6) if x else "",
               x.control.decisions if x else "", _n(x.control.rate, 6) if x else "",
               _n(lift and lift.estimate, 6), _n(lift and lift.low, 6), _n(lift and lift.high, 6),
               _n(conversions and conversions.estimate, 1), _n(conversions and conversions.low, 1),
               _n(conversions and conversions.high, 1), _n(revenue and revenue.estimate, 2),
               _n(roi and roi.estimate), _n(roi and roi.low), _n(roi and roi.high)]


def csv_lines(result: Report) -> Iterator[str]:
    """csv_rows as CSV text, line by line (for a streaming response), spreadsheet-safe."""
    writer = csv_writer()
    for row in csv_rows(result):
        yield writer.writerow([spreadsheet_safe(v) for v in row])
