"""Analytics: hand-counted measures by every dimension, the audience and filters, one statement, the page and the CSV."""

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone as dj_timezone

from audiences import analytics, columnar
from audiences.analytics import AnalyticsError, AnalyticsQuery, check_query, run_query
from audiences.models import Activity, ActivityKind, Audience, AudienceMember, Customer, Item, Persona

MARCH = {"start": date(2025, 3, 1), "end": date(2025, 3, 31)}
YEAR = dj_timezone.now().year

# external_id: (age, gender, region, tier, subscriber, persona (segment, top genre) or None)
PEOPLE = {
    "c1": (20, "f", "south", 1, True, ("loyal", "hip-hop")),
    "c2": (30, "m", "south", 2, False, ("casual", "pop")),
    "c3": (20, "f", "north", 1, False, ("active", "hip-hop")),
    "c4": (None, "x", "north", None, False, None),  # never active
}
# item: artist
ITEMS = {"i1": "Ava", "i2": "Ava", "i3": "Bo"}
# (customer, kind, item or None, value, when (UTC))
ACTS = [
    ("c1", "play", "i1", 0, datetime(2025, 3, 2, 10)),
    ("c1", "play", "i2", 0, datetime(2025, 3, 2, 11)),
    ("c1", "play", "i1", 0, datetime(2025, 3, 10, 9)),
    ("c1", "purchase", "i3", "10.00", datetime(2025, 3, 10, 9, 5)),
    ("c1", "subscribe", None, "9.99", datetime(2025, 3, 15, 0, 0)),
    ("c1", "play", "i1", 0, datetime(2025, 2, 28, 23, 59)),  # the day before the window
    ("c1", "play", "i3", 0, datetime(2025, 4, 1, 0, 0)),  # the first instant after it
    ("c2", "play", "i3", 0, datetime(2025, 3, 5, 8)),
    ("c2", "skip", "i1", 0, datetime(2025, 3, 5, 8, 1)),
    ("c2", "purchase", "i1", "5.00", datetime(2025, 3, 20, 18)),
    ("c3", "play", "i2", 0, datetime(2025, 3, 31, 23, 59)),  # the last minute of the window
]
KIND = {label: value for value, label in ActivityKind.choices}


@pytest.fixture(params=["database", "copy"])
def engine(request, db, settings, tmp_path):
    """Who answers: the database, or DuckDB over the analytics copy (PostgreSQL only; synced before each question)."""
    if request.param == "copy" and connection.vendor != "postgresql":
        pytest.skip("the analytics copy is made from PostgreSQL")
    settings.ANALYTICS_COPY = "on" if request.param == "copy" else "off"
    settings.ANALYTICS_COPY_DIR = tmp_path / "analytics-copy"
    return request.param


def sync_copy():
    """Bring the copy up to date with what the test wrote (a no-op when the database answers)."""
    if settings.ANALYTICS_COPY == "on":
        assert columnar.sync() is not None


@pytest.fixture
def base(engine):
    now = dj_timezone.now()
    customers = {}
    for ext, (age, gender, region, tier, subscriber, persona) in PEOPLE.items():
        customers[ext] = Customer.objects.create(external_id=ext, birth_year=YEAR - age if age else None, gender=gender,
                                                 region=region, city_tier=tier, is_subscriber=subscriber)
        if persona:
            Persona.objects.create(customer=customers[ext], segment=persona[0], top_genre=persona[1], as_of=now)
    items = {ext: Item.objects.create(external_id=ext, title=ext, artist=artist) for ext, artist in ITEMS.items()}
    for n, (who, kind, item, value, when) in enumerate(ACTS):
        Activity.objects.create(key=n, customer=customers[who], item=items.get(item), kind=KIND[kind], value=Decimal(value),
                                occurred_at=when.replace(tzinfo=timezone.utc))
    sync_copy()
    return customers


def ask(*dimensions, measures=tuple(analytics.MEASURES), **options):
    sync_copy()
    result = run_query(AnalyticsQuery(measures=measures, dimensions=dimensions, **{**MARCH, **options}))
    assert (result.copy is not None) == (settings.ANALYTICS_COPY == "on")  # the copy answered, not the fallback
    return {row.labels: row.values for row in result.rows}, result


def totals(result):
    return {t["measure"].key: t["value"] for t in result.totals()}


# --- the numbers --------------------------------------------------------------------------

def test_the_whole_base_in_one_row_counts_every_measure(base):
    rows, result = ask()
    assert rows == {(): {
        "customers": 4, "active_customers": 3, "activities": 9, "plays": 5, "purchases": 2,
        "revenue": Decimal("24.99"), "distinct_items": 3, "revenue_per_customer": Decimal("6.25"), "plays_per_active": 1.67,
    }}
    assert totals(result)["distinct_items"] == 3  # no dimension: the one row is the total


def test_by_region_customers_include_the_inactive_and_distinct_items_do_not_add_up(base):
    rows, result = ask("region")
    assert rows[("south",)] == {"customers": 2, "active_customers": 2, "activities": 8, "plays": 4, "purchases": 2,
                                "revenue": Decimal("24.99"), "distinct_items": 3, "revenue_per_customer": Decimal("12.50"),
                                "plays_per_active": 2.0}
    assert rows[("north",)] == {"customers": 2, "active_customers": 1, "activities": 1, "plays": 1, "purchases": 0,
                                "revenue": Decimal("0.00"), "distinct_items": 1, "revenue_per_customer": Decimal("0.00"),
                                "plays_per_active": 1.0}
    sums = totals(result)
    assert (sums["customers"], sums["active_customers"], sums["plays"], sums["revenue"]) == (4, 3, 5, Decimal("24.99"))
    assert sums["distinct_items"] is None and sums["revenue_per_customer"] == Decimal("6.25")
    assert "an item is in several groups" in result.totals()[6]["why_not"]


def test_a_money_total_too_wide_for_its_card_is_shown_to_the_unit(base):
    _, result = ask()
    shown = {t["measure"].key: t["shown"] for t in result.totals()}
    assert (shown["revenue"], shown["revenue_per_customer"], shown["plays"]) == ("24.99", "6.25", "5")
    result.sums["revenue"] = Decimal("135436.57")
    shown = {t["measure"].key: t["shown"] for t in result.totals()}
    assert (shown["revenue"], shown["revenue_per_customer"], shown["plays_per_active"]) == ("135,437", "33,859", "1.67")


def test_region_by_age_band(base):
    rows, _ = ask("region", "age", measures=("customers", "plays", "revenue"))
    assert rows == {
        ("south", "18–24"): {"customers": 1, "plays": 3, "revenue": Decimal("19.99")},
        ("south", "25–34"): {"customers": 1, "plays": 1, "revenue": Decimal("5.00")},
        ("north", "18–24"): {"customers": 1, "plays": 1, "revenue": Decimal("0.00")},
        ("north", "unknown"): {"customers": 1, "plays": 0, "revenue": Decimal("0.00")},
    }


@pytest.mark.parametrize("dimension, expected", [
    ("gender", {("Female",): 2, ("Male",): 1, ("Other",): 1}),
    ("city_tier", {("tier 1",): 2, ("tier 2",): 1, ("unknown",): 1}),
    ("segment", {("Loyal",): 1, ("Casual",): 1, ("Active",): 1, ("unknown",): 1}),
    ("top_genre", {("hip-hop",): 2, ("pop",): 1, ("unknown",): 1}),
    ("subscriber", {("subscriber",): 1, ("not a subscriber",): 3}),
])
def test_customer_dimensions_count_every_customer(base, dimension, expected):
    rows, _ = ask(dimension, measures=("customers",))
    assert {k: v["customers"] for k, v in rows.items()} == expected


def test_by_activity_kind_customers_are_those_who_did_it(base):
    rows, result = ask("kind", measures=("customers", "active_customers", "activities", "revenue"))
    assert rows == {
        ("play",): {"customers": 3, "active_customers": 3, "activities": 5, "revenue": Decimal("0.00")},
        ("skip",): {"customers": 1, "active_customers": 1, "activities": 1, "revenue": Decimal("0.00")},
        ("purchase",): {"customers": 2, "active_customers": 2, "activities": 2, "revenue": Decimal("15.00")},
        ("subscribe",): {"customers": 1, "active_customers": 1, "activities": 1, "revenue": Decimal("9.99")},
    }
    sums = totals(result)
    assert sums["customers"] is None and (sums["activities"], sums["revenue"]) == (9, Decimal("24.99"))
    assert [r.labels[0] for r in result.sorted_rows()] == ["play", "skip", "purchase", "subscribe"]


def test_by_item_artist(base):
    rows, _ = ask("artist", measures=("customers", "activities", "distinct_items"))
    assert rows == {
        ("Ava",): {"customers": 3, "activities": 6, "distinct_items": 2},
        ("Bo",): {"customers": 2, "activities": 2, "distinct_items": 1},
        ("no item",): {"customers": 1, "activities": 1, "distinct_items": 0},
    }


def test_by_day_week_and_month_of_activity(base):
    rows, _ = ask("day", measures=("activities",))
    assert {k[0]: v["activities"] for k, v in rows.items()} == {
        "Sun 02 Mar": 2, "Wed 05 Mar": 2, "Mon 10 Mar": 2, "Sat 15 Mar": 1, "Thu 20 Mar": 1, "Mon 31 Mar": 1}
    rows, result = ask("week", measures=("activities", "customers"))
    assert [(r.keys[0], r.values["activities"], r.values["customers"]) for r in result.sorted_rows()] == [
        (date(2025, 2, 24), 2, 1), (date(2025, 3, 3), 2, 1), (date(2025, 3, 10), 3, 1), (date(2025, 3, 17), 1, 1),
        (date(2025, 3, 31), 1, 1)]
    rows, _ = ask("month", measures=("activities", "customers"))
    assert rows == {("Mar 2025",): {"activities": 9, "customers": 3}}


def test_a_time_dimension_with_a_customer_dimension(base):
    rows, _ = ask("month", "region", measures=("customers", "plays"))
    assert rows == {("Mar 2025", "south"): {"customers": 2, "plays": 4}, ("Mar 2025", "north"): {"customers": 1, "plays": 1}}


def test_an_audience_counts_only_its_snapshot(base):
    audience = Audience.objects.create(name="Hip-hop fans", kind=Audience.Kind.LIST)
    AudienceMember.objects.bulk_create([AudienceMember(audience=audience, customer=base[c]) for c in ("c1", "c3")])
    rows, _ = ask(measures=("customers", "plays", "revenue"), audience_id=audience.pk)
    assert rows == {(): {"customers": 2, "plays": 4, "revenue": Decimal("19.99")}}
    empty = Audience.objects.create(name="Nobody yet")
    assert ask("region", audience_id=empty.pk)[0] == {}


@pytest.mark.parametrize("options, expected", [
    ({"region": "south"}, {"customers": 2, "plays": 4}),
    ({"subscriber": True}, {"customers": 1, "plays": 3}),
    ({"subscriber": False}, {"customers": 3, "plays": 2}),
    ({"gender": "f"}, {"customers": 2, "plays": 4}),
    ({"city_tier": 2}, {"customers": 1, "plays": 1}),
    ({"segment": "loyal"}, {"customers": 1, "plays": 3}),
    ({"region": "north", "gender": "x"}, {"customers": 1, "plays": 0}),
])
def test_customer_filters(base, options, expected):
    assert ask(measures=("customers", "plays"), **options)[0] == {(): expected}


def test_the_kind_filter_restricts_every_activity_measure(base):
    rows, _ = ask(measures=("customers", "active_customers", "activities", "revenue"), kinds=(KIND["purchase"],))
    assert rows == {(): {"customers": 4, "active_customers": 2, "activities": 2, "revenue": Decimal("15.00")}}


def test_the_date_range_is_inclusive_of_whole_days(base):
    rows, _ = ask(measures=("active_customers", "activities", "revenue"), start=date(2025, 3, 10), end=date(2025, 3, 15))
    assert rows == {(): {"active_customers": 1, "activities": 3, "revenue": Decimal("19.99")}}
    rows, _ = ask(measures=("activities",), start=date(2025, 2, 28), end=date(2025, 4, 1))
    assert rows == {(): {"activities": 11}}


def test_the_default_window_is_the_last_30_days(db):
    customer = Customer.objects.create(external_id="z")
    now = dj_timezone.now()
    for n, days in enumerate([0, 29, 31, 40]):
        Activity.objects.create(key=n, customer=customer, kind=ActivityKind.PLAY, occurred_at=now - timedelta(days=days))
    query = check_query({})
    assert (query.start, query.end) == (dj_timezone.localdate() - timedelta(days=29), dj_timezone.localdate())
    assert run_query(AnalyticsQuery(measures=("plays",), dimensions=())).rows[0].values == {"plays": 2}


def test_the_results_are_one_sql_statement(base, engine):
    audience = Audience.objects.create(name="Some", kind=Audience.Kind.LIST)
    sync_copy()
    query = AnalyticsQuery(measures=tuple(analytics.MEASURES), dimensions=("artist", "segment"), audience_id=audience.pk,
                           region="south", kinds=(1, 7), **MARCH)
    with CaptureQueriesContext(connection) as captured:
        result = run_query(query)
    # The database runs the statement, or DuckDB runs the same statement over the copy and the database none.
    assert len(captured.captured_queries) == (0 if engine == "copy" else 1)
    assert (result.copy is not None) == (engine == "copy")


def test_only_the_largest_groups_come_back_and_the_totals_still_count_them_all(base, monkeypatch):
    monkeypatch.setattr(analytics, "MAX_ROWS", 2)
    rows, result = ask("day", measures=("activities", "revenue", "customers"))
    assert result.truncated and result.groups == 6
    # three days have 2 activities; ties go to the earlier group
    assert rows == {("Sun 02 Mar",): {"activities": 2, "revenue": Decimal("0.00"), "customers": 1},
                    ("Wed 05 Mar",): {"activities": 2, "revenue": Decimal("0.00"), "customers": 1}}
    assert totals(result) == {"activities": 9, "revenue": Decimal("24.99"), "customers": None}
    rows, result = ask("region", measures=("plays_per_active",))  # ratios: totals of both parts
    assert totals(result) == {"plays_per_active": 1.67}


# --- parameters ---------------------------------------------------------------------------

def test_parameters_become_a_query(base):
    from django.http import QueryDict

    audience = Audience.objects.create(name="A")
    params = QueryDict(f"measure=plays&measure=revenue&dim1=region&dim2=week&audience={audience.pk}&start=2025-03-01"
                       "&end=2025-03-31&region=south&gender=f&city_tier=1&segment=loyal&subscriber=no&kind=play&kind=skip"
                       "&sort=-plays")
    query = check_query(params)
    assert query == AnalyticsQuery(measures=("plays", "revenue"), dimensions=("region", "week"), audience_id=audience.pk,
                                   region="south", gender="f", city_tier=1, segment="loyal", subscriber=False,
                                   kinds=(1, 3), sort="-plays", **MARCH)
    assert check_query(QueryDict(query.params())) == query
    assert check_query(QueryDict("measure=plays&dim1=&dim2=region")).dimensions == ("region",)
    assert check_query(QueryDict("measure=plays&dim1=&dim2=")).dimensions == ()
    assert check_query(QueryDict("measure=plays&dim1=region&sort=-revenue")).sort == ""  # a column just taken off


@pytest.mark.parametrize("params, name, reason", [
    ("measure=likes", "measure", "'likes' is not a measure"),
    ("dim1=region", "measure", "pick at least one measure"),
    ("measure=plays&dim1=colour", "dim1", "'colour' is not a dimension"),
    ("measure=plays&dim1=region&dim2=region", "dim2", "'region' is already the first dimension"),
    ("measure=plays&dim1=day&dim2=month", "dim2", "one time dimension at a time"),
    ("audience=abc", "audience", "'abc' is not an audience id"),
    ("audience=999999", "audience", "there is no audience 999999"),
    ("start=2025-02-30", "start", "'2025-02-30' is not a date (YYYY-MM-DD)"),
    ("start=2025-03-10&end=2025-03-01", "end", "2025-03-01 is before the start 2025-03-10"),
    ("gender=q", "gender", "'q' is not one of f, m, x"),
    ("city_tier=0", "city_tier", "'0' is not a city tier (1–9)"),
    ("segment=gold", "segment", "'gold' is not one of loyal, active, casual"),
    ("subscriber=maybe", "subscriber", "'maybe' is not yes or no"),
    ("kind=dance", "kind", "'dance' is not an activity kind"),
    ("sort=-likes", "sort", "'-likes' is not a column of the table"),
])
def test_bad_parameters_are_named(db, params, name, reason):
    from django.http import QueryDict

    with pytest.raises(AnalyticsError) as caught:
        check_query(QueryDict(params))
    assert caught.value.errors[name].startswith(reason)


# --- chart and CSV ------------------------------------------------------------------------

def test_charts_are_bars_grouped_bars_or_a_line_over_time(base):
    one = analytics.chart(ask("age", measures=("customers",))[1])
    assert one["type"] == "bar" and one["data"] == {"labels": ["18–24", "25–34", "unknown"],
                                                   "datasets": [{"label": "Customers", "data": [2, 1, 1]}]}
    two = analytics.chart(ask("region", "subscriber", measures=("plays",))[1])
    assert two["type"] == "bar" and two["data"]["labels"] == ["south", "north"]
    assert two["data"]["datasets"] == [{"label": "subscriber", "data": [3, 0]}, {"label": "not a subscriber", "data": [1, 1]}]
    line = analytics.chart(ask("day", "region", measures=("plays",))[1])
    assert line["type"] == "line" and len(line["data"]["labels"]) == 31  # every day of March, quiet ones at zero
    south = next(d for d in line["data"]["datasets"] if d["label"] == "south")
    assert south["data"][1] == 2 and south["data"][0] == 0 and sum(south["data"]) == 4
    assert analytics.chart(ask(measures=("plays",))[1]) is None


def test_csv_has_every_group_with_plain_values(base):
    query = AnalyticsQuery(measures=("customers", "revenue", "plays_per_active"), dimensions=("region", "week"), **MARCH)
    assert list(analytics.csv_rows(query)) == [
        ["Region", "Week", "Customers", "Revenue", "Plays per active customer"],
        ["north", "2025-03-31", 1, Decimal("0.00"), 1.0],
        ["south", "2025-02-24", 1, Decimal("0.00"), 2.0],
        ["south", "2025-03-03", 1, Decimal("0.00"), 1.0],
        ["south", "2025-03-10", 1, Decimal("19.99"), 1.0],
        ["south", "2025-03-17", 1, Decimal("5.00"), 0.0],
    ]


# --- the pages ----------------------------------------------------------------------------

URL = reverse("audiences:analytics")
CSV = reverse("audiences:analytics_csv")
MARCH_PARAMS = "start=2025-03-01&end=2025-03-31"


def test_an_analyst_reads_the_numbers_of_the_page(client_for, ann, base):
    response = client_for(ann).get(f"{URL}?measure=customers&measure=revenue_per_customer&dim1=region&{MARCH_PARAMS}")
    page = response.content.decode()
    assert response.status_code == 200
    assert '<div class="value">6.25</div>' in page  # the KPI: 24.99 over 4 customers
    assert '<td class="text-end">12.50</td>' in page  # south: 24.99 over 2
    assert 'data-chart="analytics-chart"' in page and "Export CSV" in page
    assert f"{CSV}?measure=customers&amp;measure=revenue_per_customer&amp;dim1=region&amp;start=2025-03-01" in page


def test_the_page_opens_with_defaults_and_an_empty_base_says_what_to_do(client_for, mark):
    page = client_for(mark).get(URL).content.decode()
    assert "No customers yet" in page and 'value="customers" id="measure-customers" checked' in page


def test_htmx_gets_the_results_partial_and_errors_for_each_field(client_for, ann, base):
    client = client_for(ann)
    response = client.get(f"{URL}?measure=plays&dim1=kind&dim2=&region=&{MARCH_PARAMS}", HTTP_HX_REQUEST="true")
    partial = response.content.decode()
    assert "<html" not in partial and "<form" not in partial and ">play<" in partial
    assert response["HX-Push-Url"] == f"?measure=plays&dim1=kind&{MARCH_PARAMS}"  # without the empty fields
    bad = client.get(f"{URL}?measure=plays&dim1=colour", HTTP_HX_REQUEST="true")
    assert bad.status_code == 200  # htmx would not swap a 400
    assert 'id="error-dim1" class="invalid-feedback d-block" hx-swap-oob="true">&#x27;colour&#x27; is not a dimension' in bad.content.decode()


def test_bad_parameters_give_400_naming_them(client_for, ann, base):
    response = client_for(ann).get(f"{URL}?measure=plays&dim1=region&dim2=region&end=2025-13-01")
    page = response.content.decode()
    assert response.status_code == 400
    assert "Then by (<code>dim2</code>): &#x27;region&#x27; is already the first dimension" in page
    assert "Activity to (<code>end</code>): &#x27;2025-13-01&#x27; is not a date" in page
    csv = client_for(ann).get(f"{CSV}?measure=likes")
    assert csv.status_code == 400 and "measure: 'likes' is not a measure" in csv.content.decode()


def test_the_csv_export_streams_the_same_question(client_for, ann, base):
    response = client_for(ann).get(f"{CSV}?measure=customers&measure=revenue&dim1=kind&{MARCH_PARAMS}")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert 'filename="analytics-2025-03-01-to-2025-03-31.csv"' in response["Content-Disposition"]
    assert b"".join(response.streaming_content).decode().splitlines() == [
        "Activity kind,Customers,Revenue", "play,3,0.00", "skip,1,0.00", "purchase,2,15.00", "subscribe,1,9.99"]


def test_csv_cells_are_never_spreadsheet_formulas(client_for, ann, base):
    Item.objects.filter(artist="Bo").update(artist="=HYPERLINK(1)")
    sync_copy()
    response = client_for(ann).get(f"{CSV}?measure=activities&dim1=artist&{MARCH_PARAMS}")
    assert "'=HYPERLINK(1),2" in b"".join(response.streaming_content).decode()


def test_the_table_sorts_by_a_column(client_for, ann, base):
    page = client_for(ann).get(f"{URL}?measure=activities&dim1=kind&sort=-activities&{MARCH_PARAMS}").content.decode()
    cells = [kind for kind in ("play", "purchase", "skip", "subscribe") if f"<td>{kind}</td>" in page]
    assert sorted(cells, key=lambda kind: page.index(f"<td>{kind}</td>")) == ["play", "purchase", "skip", "subscribe"]
    assert 'aria-sort="descending"' in page


def test_anonymous_is_sent_to_login_and_post_is_refused(client, mark, nora):
    assert client.get(URL)["Location"].startswith(reverse("login"))
    assert client.get(CSV)["Location"].startswith(reverse("login"))
    client.force_login(mark)
    assert client.post(URL).status_code == 405 and client.post(CSV).status_code == 405
    client.force_login(nora)
    assert client.get(URL).status_code == 403


def test_dates_beyond_the_calendar_are_refused_by_name(client, ann):
    client.force_login(ann)
    response = client.get(reverse("audiences:analytics"), {"end": "9999-12-31"})
    assert response.status_code == 400 and "out of range" in response.content.decode()
