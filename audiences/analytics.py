"""Analytics: measures by up to two dimensions, for an audience or the whole base, in one SQL statement.

A request (`AnalyticsQuery`) names measures, zero to two dimensions, the scope (an audience's last
materialised membership, or the whole base), a window of activity dates and filters. The page keeps
it in GET parameters (`check_query` turns them into the request, with errors naming the parameter);
`compile_query` turns it into ONE ORM queryset, `run_query` evaluates it once.

How the numbers are counted
---------------------------
- **Scope**: the whole base, or the customers in an audience's last snapshot (`AudienceMember`,
  one subquery), narrowed by the customer filters (region, gender, city tier, value segment,
  subscriber).
- **Counted activities**: activities of customers in scope with `start <= date < end + 1 day`
  (dates in the site's time zone; by default the last 30 days up to today) and, when kinds are
  picked, of those kinds only. Every activity measure counts counted activities only.
- **customers**: when every dimension is a customer attribute (age band, gender, region, city
  tier, value segment, top genre, subscriber) or none is picked, every customer in scope in the
  group, active in the window or not. When an activity dimension is picked (activity kind, item
  artist, day / week / month), a customer without counted activity belongs to no group of it, so
  customers are the customers with counted activity *in that group* (then the same as active
  customers); someone who played and bought counts once under "play" and once under "purchase".
- **active customers**: customers with at least one counted activity (in the group).
- **activities**, **plays**, **purchases**: counted activities; of kind play; of kind purchase
  (a subscription payment is revenue, not a purchase).
- **revenue**: sum of `value` of counted purchase and subscribe activities (`REVENUE_KINDS`).
- **distinct items**: distinct catalogue items among the counted activities (those without an
  item, such as searches, count none).
- **revenue per customer** = revenue / customers; **plays per active customer** = plays / active
  customers, per group (computed from the group's sums, so they stay exact).

Totals (the page's KPI cards) come from the same statement, as `SUM(aggregate) OVER ()` over every
group (window functions run before LIMIT, so they count the groups the page does not show), where
summing is exact: always for activities, plays, purchases and revenue; for customers and active
customers while no activity dimension splits a customer over groups; for distinct items only when
no dimension is picked (then the one row is the total). Elsewhere the card says why.

The statement is `customer LEFT JOIN activity ON (customer matches AND activity in the window)`
grouped by the dimensions (a FilteredRelation: the window sits in the join condition, so inactive
customers still count as customers). The page asks for the largest MAX_ROWS groups (by the first
measure); the CSV export streams every group.

Cost: the statement reads every counted activity once. With 1M customers and 4.9M activities in a
30-day window (PostgreSQL 15, 2 vCPUs, default settings) it takes about 10 s, as the same SQL written
by hand does (bench/analytics.py): the join, and the sort that DISTINCT counts need, dominate. So on
a large base the very same statement runs in DuckDB over the analytics copy (columnar.py): 1.1 s.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from functools import cached_property
from typing import Any
from urllib.parse import urlencode

from django.db.models import Count, DateField, F, FilteredRelation, Func, IntegerField, Q, QuerySet, Sum, Value
from django.db.models.functions import Trunc
from django.utils import timezone

from . import columnar
from .insights import AGE_BANDS, _age_band
from .models import REVENUE_KINDS, ActivityKind, Audience, Customer, Gender, Segment

MAX_ROWS = 1000
DEFAULT_DAYS = 30
CHART_CATEGORIES = 15  # bars of the first dimension shown (fixed-order and time dimensions show all)
CHART_SERIES = 8  # categories of the second dimension drawn as series (the palette's size)
CENT = Decimal("0.01")
WINDOW = "counted"  # the FilteredRelation alias of the counted activities ("window" is reserved in SQL)


class AnalyticsError(ValueError):
    """A request that cannot be answered; `errors` maps each parameter to what is wrong with it."""

    def __init__(self, errors: Mapping[str, str]):
        self.errors = dict(errors)
        super().__init__("; ".join(f"{param}: {reason}" for param, reason in self.errors.items()))


# --- dimensions -------------------------------------------------------------------------------

KIND_LABELS = dict(ActivityKind.choices)
KIND_VALUES = {label: value for value, label in ActivityKind.choices}
GENDER_LABELS = {**dict(Gender.choices), "": "unknown"}
SEGMENT_LABELS = dict(Segment.choices)


def _label_time(unit: str) -> Callable[[Any], str]:
    formats = {"day": "%a %d %b", "week": "week of %d %b", "month": "%b %Y"}
    return lambda value: value.strftime(formats[unit])


@dataclass(frozen=True)
class Dimension:
    key: str
    label: str
    expression: Callable[[], Any]  # over Customer, activity fields through WINDOW
    on_activity: bool = False  # groups activities, not customers (see "customers" above)
    order: tuple = ()  # fixed order of the categories; empty: by the first measure
    time_unit: str = ""  # day / week / month: a time axis (line chart, gaps filled)
    show: Callable[[Any], str] = str

    def label_of(self, value: Any) -> str:
        if value is None or value == "" and self.key != "gender":
            return "no item" if self.key == "artist" else "unknown"
        return self.show(value)

    def csv_value(self, value: Any) -> str:
        if value is None:
            return ""
        return value.isoformat() if isinstance(value, date) else self.label_of(value)


def _time(unit: str) -> Dimension:
    titles = {"day": "Day", "week": "Week", "month": "Month"}
    return Dimension(unit, titles[unit], lambda: Trunc(f"{WINDOW}__occurred_at", unit, output_field=DateField()),
                     on_activity=True, time_unit=unit, show=_label_time(unit))


DIMENSIONS: dict[str, Dimension] = {d.key: d for d in [
    Dimension("age", "Age band", _age_band, order=tuple(label for _, _, label in AGE_BANDS) + ("unknown",)),
    Dimension("gender", "Gender", lambda: F("gender"), order=tuple(Gender.values), show=lambda v: GENDER_LABELS.get(v, v)),
    Dimension("region", "Region", lambda: F("region")),
    Dimension("city_tier", "City tier", lambda: F("city_tier"), order=(1, 2, 3, 4, 5, 6, 7, 8, 9), show=lambda v: f"tier {v}"),
    Dimension("segment", "Value segment", lambda: F("persona__segment"), order=tuple(Segment.values),
              show=lambda v: SEGMENT_LABELS.get(v, v)),
    Dimension("top_genre", "Top genre", lambda: F("persona__top_genre")),
    Dimension("subscriber", "Subscriber", lambda: F("is_subscriber"), order=(True, False),
              show=lambda v: "subscriber" if v else "not a subscriber"),
    Dimension("kind", "Activity kind", lambda: F(f"{WINDOW}__kind"), on_activity=True, order=tuple(ActivityKind.values),
              show=lambda v: KIND_LABELS.get(v, str(v))),
    Dimension("artist", "Item artist", lambda: F(f"{WINDOW}__item__artist"), on_activity=True),
    _time("day"),
    _time("week"),
    _time("month"),
]}


# --- measures ---------------------------------------------------------------------------------

def _w(name: str) -> str:
    return f"{WINDOW}__{name}"


@dataclass(frozen=True)
class Measure:
    key: str
    label: str
    aggregate: Callable[[], Any] | None = None  # an ORM aggregate; None for a ratio of two others
    ratio: tuple[str, str] = ()  # (numerator, denominator) measure keys
    money: bool = False
    distinct: str = ""  # "" additive; "customer": a customer can fall in several groups; "item": always overlaps
    icon: str = "bar-chart"  # Bootstrap icon of its KPI card

    def format(self, value, *, card: bool = False) -> str:
        """The value as text; on a KPI card (about ten characters) money of 10,000 or more is shown to the unit."""
        if value is None:
            return "—"
        if card and self.money and abs(value) >= 10_000:
            return f"{value:,.0f}"
        if self.money or self.ratio:
            return f"{value:,.2f}"
        return f"{value:,}"

    @property
    def needs(self) -> tuple[str, ...]:
        """The aggregates the statement computes for this measure."""
        return self.ratio or (self.key,)


MEASURES: dict[str, Measure] = {m.key: m for m in [
    Measure("customers", "Customers", lambda: Count("id", distinct=True), distinct="customer", icon="people"),
    Measure("active_customers", "Active customers", lambda: Count(_w("customer"), distinct=True), distinct="customer",
            icon="lightning"),
    # Activities are counted by `kind` (never null) rather than `id`, so an index on the time holding
    # customer, kind, item and value could answer without reading the table.
    Measure("activities", "Activities", lambda: Count(_w("kind")), icon="activity"),
    Measure("plays", "Plays", lambda: Count(_w("kind"), filter=Q(**{_w("kind"): ActivityKind.PLAY})), icon="play-circle"),
    Measure("purchases", "Purchases", lambda: Count(_w("kind"), filter=Q(**{_w("kind"): ActivityKind.PURCHASE})),
            icon="bag"),
    Measure("revenue", "Revenue", lambda: Sum(_w("value"), filter=Q(**{_w("kind__in"): REVENUE_KINDS}), default=Decimal(0)),
            money=True, icon="cash-coin"),
    Measure("distinct_items", "Distinct items", lambda: Count(_w("item"), distinct=True), distinct="item", icon="collection"),
    Measure("revenue_per_customer", "Revenue per customer", ratio=("revenue", "customers"), money=True, icon="person-check"),
    Measure("plays_per_active", "Plays per active customer", ratio=("plays", "active_customers"), icon="repeat"),
]}
DEFAULT_MEASURES = ("customers", "active_customers", "plays", "revenue")


# --- the request ------------------------------------------------------------------------------

@dataclass(frozen=True)
class AnalyticsQuery:
    """What to count, by what, for whom, when: everything the page's GET parameters say."""

    measures: tuple[str, ...] = DEFAULT_MEASURES
    dimensions: tuple[str, ...] = ("region",)
    audience_id: int | None = None  # None: the whole base
    start: date | None = None  # None: DEFAULT_DAYS days up to `end`
    end: date | None = None  # None: today (inclusive)
    region: str = ""
    gender: str = ""
    city_tier: int | None = None
    segment: str = ""
    subscriber: bool | None = None
    kinds: tuple[int, ...] = ()  # empty: every kind
    sort: str = ""  # table order: a dimension or measure key, "-" first for descending

    def __post_init__(self):
        today = timezone.localdate()
        end = self.end or today
        object.__setattr__(self, "end", end)
        object.__setattr__(self, "start", self.start or end - timedelta(days=DEFAULT_DAYS - 1))

    @property
    def window(self) -> tuple[datetime, datetime]:
        """[first instant, first instant after) of the activity dates, in the site's time zone."""
        tz = timezone.get_current_timezone()
        return (datetime.combine(self.start, time.min, tzinfo=tz),
                datetime.combine(self.end + timedelta(days=1), time.min, tzinfo=tz))

    @property
    def by_activity(self) -> bool:
        return any(DIMENSIONS[d].on_activity for d in self.dimensions)

    def params(self, **changes) -> str:
        """The query string that asks for this request (with `changes` applied), for links and the CSV."""
        q = replace(self, **changes) if changes else self
        pairs = [("measure", m) for m in q.measures]
        pairs += [(f"dim{i + 1}", d) for i, d in enumerate(q.dimensions)]
        pairs += [("audience", q.audience_id or ""), ("start", q.start.isoformat()), ("end", q.end.isoformat())]
        pairs += [(name, value) for name, value in [
            ("region", q.region), ("gender", q.gender), ("city_tier", q.city_tier or ""), ("segment", q.segment),
            ("subscriber", {True: "yes", False: "no"}.get(q.subscriber, "")), ("sort", q.sort)] if value]
        pairs += [("kind", KIND_LABELS[k]) for k in q.kinds]
        return urlencode([(k, v) for k, v in pairs if v != ""])


def _parse_date(params, name: str, errors: dict) -> date | None:
    text = (params.get(name) or "").strip()
    if not text:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        errors[name] = f"'{text}' is not a date (YYYY-MM-DD)"
        return None
    if not 1900 <= day.year <= 2200:  # and the window's end + 1 day must stay a date
        errors[name] = f"{text} is out of range (years 1900 to 2200)"
        return None
    return day


def check_query(params: Mapping) -> AnalyticsQuery:
    """GET parameters to a request; AnalyticsError names every parameter that is wrong and why.

    measure (repeated), dim1, dim2, audience (id; empty: the whole base), start, end (YYYY-MM-DD,
    inclusive), region, gender (f/m/x), city_tier, segment, subscriber (yes/no), kind (repeated
    activity kinds), sort. Without parameters: the defaults of AnalyticsQuery.
    """
    errors: dict[str, str] = {}
    getlist = params.getlist if hasattr(params, "getlist") else (lambda k: [params[k]] if k in params else [])
    values = {}

    measures = tuple(dict.fromkeys(m.strip() for m in getlist("measure") if m.strip()))
    unknown = [m for m in measures if m not in MEASURES]
    if unknown:
        errors["measure"] = f"'{unknown[0]}' is not a measure; pick from {', '.join(MEASURES)}"
    elif measures:
        values["measures"] = measures
    elif "measure" in params or "dim1" in params:  # the form was sent with every measure unticked
        errors["measure"] = "pick at least one measure"

    dims = []
    for name in ("dim1", "dim2"):
        key = (params.get(name) or "").strip()
        if not key:
            continue
        if key not in DIMENSIONS:
            errors[name] = f"'{key}' is not a dimension; pick from {', '.join(DIMENSIONS)}"
        elif key in dims:
            errors[name] = f"'{key}' is already the first dimension"
        else:
            dims.append(key)
    if len(dims) == 2 and DIMENSIONS[dims[1]].time_unit and DIMENSIONS[dims[0]].time_unit:
        errors["dim2"] = "one time dimension at a time (day, week or month)"
    if "dim1" in params or "dim2" in params:
        values["dimensions"] = tuple(dims)  # both empty: no dimension, the totals in one row

    text = (params.get("audience") or "").strip()
    if text:
        try:
            values["audience_id"] = int(text)
        except ValueError:
            errors["audience"] = f"'{text}' is not an audience id"
        else:
            if not Audience.objects.filter(pk=values["audience_id"]).exists():
                errors["audience"] = f"there is no audience {text}"

    start, end = _parse_date(params, "start", errors), _parse_date(params, "end", errors)
    if start and end and end < start:
        errors["end"] = f"{end.isoformat()} is before the start {start.isoformat()}"
    elif start and not end and start > timezone.localdate():
        errors["start"] = f"{start.isoformat()} is after today"
    values.update(start=start, end=end)

    values["region"] = (params.get("region") or "").strip()
    gender = (params.get("gender") or "").strip()
    if gender and gender not in Gender.values:
        errors["gender"] = f"'{gender}' is not one of f, m, x"
    values["gender"] = gender
    tier = (params.get("city_tier") or "").strip()
    if tier:
        if tier.isdigit() and 1 <= int(tier) <= 9:
            values["city_tier"] = int(tier)
        else:
            errors["city_tier"] = f"'{tier}' is not a city tier (1–9)"
    segment = (params.get("segment") or "").strip()
    if segment and segment not in Segment.values:
        errors["segment"] = f"'{segment}' is not one of {', '.join(Segment.values)}"
    values["segment"] = segment
    subscriber = (params.get("subscriber") or "").strip()
    if subscriber and subscriber not in ("yes", "no"):
        errors["subscriber"] = f"'{subscriber}' is not yes or no"
    values["subscriber"] = {"yes": True, "no": False}.get(subscriber)
    kinds = [k.strip() for k in getlist("kind") if k.strip()]
    bad = [k for k in kinds if k not in KIND_VALUES]
    if bad:
        errors["kind"] = f"'{bad[0]}' is not an activity kind; pick from {', '.join(KIND_VALUES)}"
    values["kinds"] = tuple(sorted({KIND_VALUES[k] for k in kinds if k in KIND_VALUES}))

    sort = (params.get("sort") or "").strip()
    if sort:
        columns = set(values.get("dimensions", AnalyticsQuery.dimensions)) | set(values.get("measures", DEFAULT_MEASURES))
        if sort.lstrip("-") in columns:
            values["sort"] = sort
        elif sort.lstrip("-") not in MEASURES and sort.lstrip("-") not in DIMENSIONS:
            errors["sort"] = f"'{sort}' is not a column of the table"
        # else: the column was just taken off the table; its order goes with it

    if errors:
        raise AnalyticsError(errors)
    return AnalyticsQuery(**values)


# --- the statement ----------------------------------------------------------------------------

class OverAllGroups(Func):
    """`SUM(aggregate) OVER ()` in a grouped statement: the aggregate summed over every group.

    Window functions run after GROUP BY and before LIMIT, so the page's totals stay exact when only
    the largest groups come back, at no second statement. (Django refuses an aggregate of an
    aggregate, hence a Func that is neither an aggregate nor a GROUP BY column.)
    """

    template = "SUM(%(expressions)s) OVER ()"
    contains_aggregate = False
    contains_over_clause = True

    def get_group_by_cols(self):
        return []


class GroupCount(OverAllGroups):
    """`COUNT(*) OVER ()`: how many groups the statement has before LIMIT."""

    template = "COUNT(*) OVER ()"

    def __init__(self):
        super().__init__(output_field=IntegerField())


def _needed(query: AnalyticsQuery) -> list[str]:
    """The aggregates the statement computes: the picked measures' (a ratio's two parts)."""
    return list(dict.fromkeys(key for m in query.measures for key in MEASURES[m].needs))


def summable(query: AnalyticsQuery, key: str) -> bool:
    """Whether the groups' values of this aggregate add up to the total (no customer or item counted twice)."""
    distinct = MEASURES[key].distinct
    return not distinct or not query.dimensions or (distinct == "customer" and not query.by_activity)


def customers_in_scope(query: AnalyticsQuery) -> QuerySet:
    """The customers the request is about: the audience's snapshot (or everyone) and the customer filters."""
    customers = Customer.objects.all()
    if query.audience_id is not None:
        customers = customers.in_snapshot(Audience(pk=query.audience_id))
    filters = {"region": query.region, "gender": query.gender, "city_tier": query.city_tier,
               "persona__segment": query.segment, "is_subscriber": query.subscriber}
    return customers.filter(**{k: v for k, v in filters.items() if v not in ("", None)})


def compile_query(query: AnalyticsQuery, *, limit: int | None = MAX_ROWS) -> QuerySet:
    """ONE queryset: a row per group with `d1`, `d2` (the dimensions' values) and `m_<measure>` aggregates.

    Ordered by the first measure (largest groups first) and cut at `limit` rows, each row also
    carrying `groups` (how many there are in all) and `t_<measure>` (the total over every group,
    where summing is exact); limit=None returns every group ordered by the dimensions (the CSV).
    """
    first, after = query.window
    window = Q(**{"activities__occurred_at__gte": first, "activities__occurred_at__lt": after})
    if query.kinds:
        window &= Q(activities__kind__in=query.kinds)
    rows = customers_in_scope(query).annotate(**{WINDOW: FilteredRelation("activities", condition=window)})
    if query.by_activity:
        # Groups of activities: a customer without counted activity is in none of them.
        rows = rows.filter(**{f"{WINDOW}__kind__isnull": False})
    names = [f"d{i + 1}" for i in range(len(query.dimensions))]
    groups = {n: DIMENSIONS[d].expression() for n, d in zip(names, query.dimensions)}
    # No dimension: one group of everything (a constant is left out of GROUP BY).
    aggregates = {f"m_{key}": MEASURES[key].aggregate() for key in _needed(query)}
    rows = rows.annotate(**(groups or {"d0": Value(0)})).values(*(names or ["d0"])).annotate(**aggregates)
    if limit is None:
        return rows.order_by(*names)
    totals = {f"t_{key}": OverAllGroups(MEASURES[key].aggregate()) for key in _needed(query) if summable(query, key)}
    rows = rows.annotate(groups=GroupCount(), **totals)
    key = MEASURES[query.measures[0]].needs[0]
    return rows.order_by(F(f"m_{key}").desc(nulls_last=True), *names)[:limit]


# --- evaluated results ------------------------------------------------------------------------

@dataclass
class Row:
    keys: tuple  # the dimensions' values as the database gave them
    labels: tuple[str, ...]
    values: dict[str, float | int | Decimal | None]  # per picked measure
    raw: dict[str, Any]  # the statement's aggregates (ratio parts included)


@dataclass
class AnalyticsResult:
    query: AnalyticsQuery
    rows: list[Row]
    groups: int = 0  # groups in all; more than len(rows) when only the largest MAX_ROWS came back
    sums: dict[str, Any] = field(default_factory=dict)  # totals over every group, of the summable aggregates
    copy: columnar.Copy | None = None  # the analytics copy that answered (None: the database did)
    dimensions: list[Dimension] = field(init=False)
    measures: list[Measure] = field(init=False)

    def __post_init__(self):
        self.dimensions = [DIMENSIONS[d] for d in self.query.dimensions]
        self.measures = [MEASURES[m] for m in self.query.measures]

    @property
    def truncated(self) -> bool:
        return self.groups > len(self.rows)

    @cached_property
    def audience(self) -> Audience | None:
        """The audience asked about (for its name and when its membership was counted); None: the whole base."""
        if self.query.audience_id is None:
            return None
        return Audience.objects.only("name", "size", "size_at").filter(pk=self.query.audience_id).first()

    @property
    def filters(self) -> list[str]:
        """The customer and kind filters in words."""
        q = self.query
        words = [f"region {q.region}" if q.region else "", f"city tier {q.city_tier}" if q.city_tier else "",
                 GENDER_LABELS.get(q.gender, q.gender).lower() if q.gender else "",
                 f"{SEGMENT_LABELS[q.segment].lower()} segment" if q.segment else "",
                 {True: "subscribers", False: "not subscribers"}.get(q.subscriber, ""),
                 "only " + ", ".join(KIND_LABELS[k] for k in q.kinds) if q.kinds else ""]
        return [w for w in words if w]

    @property
    def any_activity(self) -> bool:
        """False when the measures show that nobody did anything counted in the window."""
        keys = [k for k in self.rows[0].raw if k != "customers"] if self.rows else []
        return not keys or any(r.raw[k] for r in self.rows for k in keys)

    def totals(self) -> list[dict]:
        """Per measure: its total over every group, or None (with why) where groups overlap."""
        result = []
        for m in self.measures:
            value = None
            if all(k in self.sums for k in m.needs):
                value = _ratio(self.sums[m.ratio[0]], self.sums[m.ratio[1]]) if m.ratio else self.sums[m.key]
            why = ""
            if value is None:
                what = "an item" if any(MEASURES[k].distinct == "item" for k in m.needs) else "a customer"
                why = f"{what} is in several groups; pick no dimension for the total"
            result.append({"measure": m, "value": value, "shown": m.format(value, card=True), "why_not": why})
        return result

    def sorted_rows(self) -> list[Row]:
        """The table's order: `sort` if given, else each dimension's own order (time, age bands ...), or its
        categories largest first (by the first measure summed over the category)."""
        weights = [self.category_weights(i) for i in range(len(self.dimensions))]
        ordered = sorted(self.rows, key=lambda r: tuple(_category_key(d, k, w)
                                                        for d, k, w in zip(self.dimensions, r.keys, weights)))
        key = self.query.sort.lstrip("-")
        if not key:
            return ordered
        if key in self.query.dimensions:
            i = self.query.dimensions.index(key)
            by = lambda r: _category_key(self.dimensions[i], r.keys[i])  # noqa: E731
        else:
            by = lambda r: _number(r.values.get(key))  # noqa: E731
        # Stable: ties keep the natural order, also when descending.
        return sorted(ordered, key=by, reverse=self.query.sort.startswith("-"))

    def headers(self) -> list[dict]:
        """Table headers whose links sort by that column (again: the other way), keeping the request."""
        sort = self.query.sort
        headers = []
        columns = [(d.key, d.label, False) for d in self.dimensions] + [(m.key, m.label, True) for m in self.measures]
        for key, label, numeric in columns:
            active = sort.lstrip("-") == key
            desc = active and sort.startswith("-")
            next_sort = (key if desc else "-" + key) if active else ("-" + key if numeric else key)
            headers.append({"label": label, "key": key, "numeric": numeric, "active": active, "desc": desc,
                            "url": "?" + self.query.params(sort=next_sort)})
        return headers

    def table(self) -> list[dict]:
        """The rows in the table's order, with their cells formatted."""
        return [{"labels": r.labels, "cells": [m.format(r.values[m.key]) for m in self.measures]}
                for r in self.sorted_rows()]

    def category_weights(self, i: int) -> dict:
        """The first measure summed per category of dimension i (to rank free categories, largest first)."""
        key = self.measures[0].key
        weights: dict = {}
        for r in self.rows:
            weights[r.keys[i]] = weights.get(r.keys[i], 0) + _number(r.values.get(key) or 0)
        return weights


def _number(value) -> float:
    return float("-inf") if value is None else float(value)


def _ratio(numerator, denominator):
    if not denominator:
        return None
    if isinstance(numerator, Decimal):
        return (numerator / Decimal(denominator)).quantize(CENT)
    return round(numerator / denominator, 2)


def _category_key(dim: Dimension, value, weights: dict | None = None) -> tuple:
    """Categories in their own order (fixed, or time), unknowns last; free ones largest first by `weights`."""
    if value is None or (value == "" and dim.key != "gender"):
        return (2, 0, "")
    if dim.order:
        return (0, dim.order.index(value) if value in dim.order else len(dim.order), "")
    if dim.time_unit:
        return (0, 0, value.isoformat())
    return (0, -weights.get(value, 0) if weights else 0, str(value))


def _shape(query: AnalyticsQuery, record: dict) -> Row:
    dims = [DIMENSIONS[d] for d in query.dimensions]
    keys = tuple(record[f"d{i + 1}"] for i in range(len(dims)))
    raw = {name[2:]: value for name, value in record.items() if name.startswith("m_")}
    values = {}
    for name, value in raw.items():
        if isinstance(value, Decimal):  # SQLite sums decimals as floats
            raw[name] = value.quantize(CENT)
    for key in query.measures:
        m = MEASURES[key]
        values[key] = _ratio(raw[m.ratio[0]], raw[m.ratio[1]]) if m.ratio else raw[key]
    return Row(keys, tuple(d.label_of(k) for d, k in zip(dims, keys)), values, raw)


def evaluate(qs: QuerySet) -> tuple[list[dict], columnar.Copy | None]:
    """The statement's rows: by DuckDB over the analytics copy when there is a fresh one, else by the database."""
    found = columnar.records(qs)
    return found if found is not None else (list(qs), None)


def run_query(query: AnalyticsQuery) -> AnalyticsResult:
    """Evaluate the request: one SQL statement, the largest MAX_ROWS groups and the totals over all of them."""
    records, copy = evaluate(compile_query(query, limit=MAX_ROWS))
    if not records:
        return AnalyticsResult(query, [], copy=copy)
    sums = {}
    for name, value in records[0].items():
        if name.startswith("t_"):  # PostgreSQL sums counts as numeric
            key = name[2:]
            sums[key] = Decimal(value or 0).quantize(CENT) if MEASURES[key].money else int(value or 0)
    return AnalyticsResult(query, [_shape(query, r) for r in records], groups=records[0]["groups"], sums=sums, copy=copy)


# --- chart and CSV ----------------------------------------------------------------------------

def _periods(query: AnalyticsQuery, unit: str) -> list[date]:
    """Every day / week (Monday) / month (1st) of the window, so a line shows the quiet days as zero."""
    start, end = query.start, query.end
    if unit == "week":
        start -= timedelta(days=start.weekday())
    elif unit == "month":
        start = start.replace(day=1)
    periods = []
    while start <= end:
        periods.append(start)
        if unit == "day":
            start += timedelta(days=1)
        elif unit == "week":
            start += timedelta(weeks=1)
        else:
            start = (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    return periods


def _top(categories: Iterable, dim: Dimension, weight: dict, n: int) -> list:
    categories = list(dict.fromkeys(categories))
    if dim.order or dim.time_unit:
        return sorted(categories, key=lambda c: _category_key(dim, c))
    return sorted(categories, key=lambda c: _category_key(dim, c, weight))[:n]


def chart(result: AnalyticsResult) -> dict | None:
    """A Chart.js config of the first measure: bars for one dimension, grouped bars for two, a line over time."""
    if not result.dimensions or not result.rows:
        return None
    measure = result.measures[0]
    first = result.dimensions[0]
    weight = result.category_weights(0)
    if first.time_unit and result.query.start and (result.query.end - result.query.start).days < 3 * 366:
        labels_at = _periods(result.query, first.time_unit)
    else:
        labels_at = _top((r.keys[0] for r in result.rows), first, weight, CHART_CATEGORIES)
    if len(result.dimensions) == 1:
        by_key = {r.keys[0]: r.values[measure.key] for r in result.rows}
        datasets = [{"label": measure.label, "data": [_plain(by_key.get(k)) for k in labels_at]}]
    else:
        second = result.dimensions[1]
        cells = {r.keys: r.values[measure.key] for r in result.rows}
        series = _top((r.keys[1] for r in result.rows), second, result.category_weights(1), CHART_SERIES)[:CHART_SERIES]
        datasets = [{"label": second.label_of(s), "data": [_plain(cells.get((k, s))) for k in labels_at]} for s in series]
    line = bool(first.time_unit)
    return {
        "type": "line" if line else "bar",
        "data": {"labels": [first.label_of(k) for k in labels_at], "datasets": datasets},
        "options": {"scales": {"y": {"beginAtZero": True, "title": {"display": True, "text": measure.label}}},
                    "plugins": {"legend": {"display": len(datasets) > 1, "position": "bottom"}}},
    }


def _plain(value) -> float | int:
    """JSON for the chart: missing groups are zero."""
    if value is None:
        return 0
    return float(value) if isinstance(value, Decimal) else value


def csv_rows(query: AnalyticsQuery) -> Iterator[list]:
    """The header, then every group (not only the largest MAX_ROWS), streamed from one statement."""
    dims = [DIMENSIONS[d] for d in query.dimensions]
    yield [d.label for d in dims] + [MEASURES[m].label for m in query.measures]
    qs = compile_query(query, limit=None)
    found = columnar.records(qs)
    for record in found[0] if found is not None else qs.iterator(chunk_size=2000):
        row = _shape(query, record)
        yield [d.csv_value(k) for d, k in zip(dims, row.keys)] + ["" if v is None else v for v in row.values.values()]


def spreadsheet_safe(value):
    """Text a spreadsheet would run as a formula (=, +, -, @, tab or carriage return first) gets a leading apostrophe."""
    return "'" + value if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


class _Line:
    def write(self, text: str) -> str:
        return text


def csv_writer():
    """A csv writer whose writerow returns the line instead of writing it (for streaming responses)."""
    return csv.writer(_Line())


def csv_lines(query: AnalyticsQuery) -> Iterator[str]:
    """csv_rows as CSV text, line by line (for a streaming response), spreadsheet-safe."""
    writer = csv_writer()
    for row in csv_rows(query):
        yield writer.writerow([spreadsheet_safe(v) for v in row])


# --- the page's form --------------------------------------------------------------------------

def form_choices() -> dict:
    """What the form offers: measures, dimensions, audiences, and the regions and tiers the base has."""
    places = Customer.objects.order_by().values_list("region", "city_tier").distinct()
    regions = sorted({r for r, _ in places if r})
    return {
        "measures": list(MEASURES.values()),
        "dimensions": list(DIMENSIONS.values()),
        "audiences": list(Audience.objects.order_by("name").values("pk", "name", "size")),
        "regions": regions[:200],
        "tiers": sorted({t for _, t in places if t is not None}),
        "genders": [(v, label) for v, label in Gender.choices if v],
        "segments": Segment.choices,
        "kinds": [label for _, label in ActivityKind.choices],
    }


PARAMETERS = {"measure": "Measures", "dim1": "Group by", "dim2": "Then by", "audience": "Customers",
              "start": "Activity from", "end": "Activity to", "region": "Region", "gender": "Gender",
              "city_tier": "City tier", "segment": "Value segment", "subscriber": "Subscription",
              "kind": "Activity kinds", "sort": "Table order"}


def form_state(params: Mapping, query: AnalyticsQuery | None = None, errors: Mapping | None = None) -> dict:
    """The values the form shows: the request's (normalised) when it is valid, else what was sent;
    `field_errors` pairs every parameter with its error ("" when fine), so stale messages can be cleared."""
    errors = errors or {}
    field_errors = [(name, errors.get(name, "")) for name in PARAMETERS if name != "sort"]  # sort has no field
    error_list = [(name, label, errors[name]) for name, label in PARAMETERS.items() if name in errors]
    if query is not None:
        return {"field_errors": field_errors, "error_list": error_list,
            "measures": list(query.measures), "dim1": (query.dimensions + ("", ""))[0],
            "dim2": (query.dimensions + ("", ""))[1], "audience": str(query.audience_id or ""),
            "start": query.start.isoformat(), "end": query.end.isoformat(), "region": query.region,
            "gender": query.gender, "city_tier": str(query.city_tier or ""), "segment": query.segment,
            "subscriber": {True: "yes", False: "no"}.get(query.subscriber, ""),
            "kinds": [KIND_LABELS[k] for k in query.kinds], "sort": query.sort,
        }
    getlist = params.getlist if hasattr(params, "getlist") else (lambda k: [params[k]] if k in params else [])
    state = {name: (params.get(name) or "").strip() for name in (
        "dim1", "dim2", "audience", "start", "end", "region", "gender", "city_tier", "segment", "subscriber", "sort")}
    return {**state, "measures": getlist("measure"), "kinds": getlist("kind"), "field_errors": field_errors,
            "error_list": error_list}
