"""Mix-model data: an uploaded CSV is read or every problem named (and nothing stored); the platform's own series adds up."""

import os
import uuid
from datetime import date, datetime, timedelta, timezone as tz
from decimal import Decimal
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from audiences.models import Customer
from marketing import mix_data
from marketing.mix_data import MixDataError, import_csv, platform_series, read_upload
from marketing.models import (Ad, Campaign, CampaignSpend, Channel, Decision, Event, ExternalSpend, MixDataset, Placement,
                              ServedAd)

SHARED_DATA = Path(os.environ.get("ENCORE_SHARED_DATA") or Path(__file__).resolve().parents[3] / "shared" / "data")
ROBYN = SHARED_DATA / "robyn-simulated-weekly-mmm" / "dt_simulated_weekly.csv"
MONDAY = date(2024, 1, 1)
HEADER = ["date", "tv_spend", "search_spend", "temperature", "revenue"]


def weekly_rows(weeks: int = 30) -> list[list[str]]:
    """A clean weekly file's rows (header first): spend that varies, a control, revenue."""
    rows = [list(HEADER)]
    for k in range(weeks):
        rows.append([(MONDAY + timedelta(weeks=k)).isoformat(), str(100 + 10 * (k % 4)), str(50 + k), f"{-5 + k % 9}",
                     str(1000 + 7 * k)])
    return rows


def csv_bytes(rows: list[list[str]], sep: str = ",", end: str = "\n") -> bytes:
    return end.join(sep.join(row) for row in rows).encode() + end.encode()


def row_of(rows: list[list[str]], day: date) -> int:
    """The spreadsheet row (header = 1) of a date in `rows`."""
    return next(i + 1 for i, row in enumerate(rows) if row and row[0] == day.isoformat())


def rejected(data: bytes, user=None, **options) -> MixDataError:
    """import_csv refuses the file, and no dataset is stored."""
    with pytest.raises(MixDataError) as caught:
        import_csv(data, by=user, name="Test", **options)
    assert MixDataset.objects.count() == 0
    return caught.value


def only(error: MixDataError) -> dict:
    assert error.total == len(error.errors) == 1, error.errors
    return error.errors[0]


# -- a good file --------------------------------------------------------------------------------------------


def test_a_good_weekly_file_is_read_with_its_channels_and_outcome_guessed():
    rows = weekly_rows()
    series = read_upload(csv_bytes(rows), name="Q1")
    assert series.frequency == "week" and series.periods == 30
    assert series.channels == ["tv_spend", "search_spend"] and series.controls == {}
    assert series.outcome_name == "revenue" and series.outcome_kind == "revenue"
    assert series.dates[0] == MONDAY and series.dates[-1] == MONDAY + timedelta(weeks=29)
    assert series.spend["tv_spend"][:5].tolist() == [100, 110, 120, 130, 100]
    assert series.outcome[-1] == 1000 + 7 * 29
    data = series.as_data()
    assert data["dates"][1] == "2024-01-08" and data["spend"]["search_spend"][2] == 52.0 and data["controls"] == {}


def test_controls_are_taken_only_when_listed_and_may_be_negative():
    series = read_upload(csv_bytes(weekly_rows()), controls=["Temperature"])
    assert list(series.controls) == ["temperature"] and series.controls["temperature"].min() == -5
    assert series.channels == ["tv_spend", "search_spend"]


def test_bom_crlf_semicolons_quoted_thousands_rows_out_of_order_and_trailing_blank_lines_are_tolerated():
    rows = weekly_rows()
    rows[3][1] = '"1,234.5"'
    shuffled = [rows[0], *reversed(rows[1:])]
    text = b"\xef\xbb\xbf" + csv_bytes(shuffled, end="\r\n") + b"\r\n\r\n"
    series = read_upload(text)
    assert series.dates == sorted(series.dates) and series.spend["tv_spend"][2] == 1234.5
    for sep in (";", "\t"):
        other = read_upload(csv_bytes([[c.replace('"1,234.5"', "1,234.5") for c in r] for r in rows], sep=sep))
        assert other.spend["tv_spend"][2] == 1234.5 and other.channels == series.channels


def test_an_uploaded_file_and_a_path_read_like_bytes(tmp_path):
    data = csv_bytes(weekly_rows())
    (tmp_path / "mix.csv").write_bytes(data)
    from_path = read_upload(tmp_path / "mix.csv")
    uploaded = read_upload(SimpleUploadedFile("spring.csv", data, content_type="text/csv"))
    assert from_path.file_name == "mix.csv" and from_path.name == "mix"
    assert uploaded.file_name == "spring.csv" and uploaded.periods == read_upload(BytesIO(data)).periods == 30


def test_without_named_spend_columns_every_other_numeric_column_is_spend():
    rows = [["Week", "TV", "Radio", "notes", "Conversions"]]
    rows += [[(MONDAY + timedelta(weeks=k)).isoformat(), str(k), str(k + 1), "promo" if k % 2 else "", str(k * 3)]
             for k in range(26)]
    series = read_upload(csv_bytes(rows))
    assert series.channels == ["TV", "Radio"] and series.outcome_name == "Conversions" and series.outcome_kind == "count"


def test_monthly_and_daily_files_have_their_frequency():
    months = [["month", "tv_spend", "sales"]] + [[f"{2020 + k // 12}-{k % 12 + 1:02d}", str(k + 1), "9"] for k in range(18)]
    assert read_upload(csv_bytes(months)).frequency == "month"
    days = [["day", "tv_spend", "sales"]] + [[(MONDAY + timedelta(days=k)).strftime("%d/%m/%Y"), "1", "9"] for k in range(56)]
    series = read_upload(csv_bytes(days))
    assert series.frequency == "day" and series.dates[12] == date(2024, 1, 13)


def test_import_csv_stores_the_series_once(mark):
    dataset = import_csv(SimpleUploadedFile("q1.csv", csv_bytes(weekly_rows())), by=mark, name="Spring mix",
                         controls=["temperature"])
    assert MixDataset.objects.count() == 1
    assert (dataset.name, dataset.source, dataset.frequency, dataset.periods) == ("Spring mix", "upload", "week", 30)
    assert (dataset.start, dataset.end, dataset.file_name, dataset.created_by) == (MONDAY, date(2024, 7, 22), "q1.csv", mark)
    assert dataset.channels == ["tv_spend", "search_spend"] and dataset.controls == ["temperature"]
    assert dataset.data["outcome"][0] == 1000.0 and dataset.data["controls"]["temperature"][0] == -5.0


# -- each bad upload names its problem, and stores nothing ---------------------------------------------------


def test_a_missing_week_is_named_between_its_neighbours(db):
    rows = weekly_rows()
    gone = MONDAY + timedelta(weeks=10)
    rows = [r for r in rows if r[0] != gone.isoformat()]
    error = only(rejected(csv_bytes(rows)))
    assert error == {"row": row_of(rows, gone + timedelta(weeks=1)), "column": "date",
                     "message": "2024-03-11 is missing between 2024-03-04 and 2024-03-18."}


def test_a_duplicate_date_names_both_rows(db):
    rows = weekly_rows()
    rows[9][0] = rows[5][0]
    rows.insert(10, [(MONDAY + timedelta(weeks=8)).isoformat(), "1", "1", "1", "1"])  # row 10's week stays covered
    error = only(rejected(csv_bytes(rows)))
    assert error == {"row": 10, "column": "date", "message": "2024-01-29 appears in rows 6 and 10: one row per period."}


def test_negative_spend_is_named_by_cell(db):
    rows = weekly_rows()
    rows[4][2] = "-120"
    assert only(rejected(csv_bytes(rows))) == {"row": 5, "column": "search_spend",
                                               "message": "negative spend (-120): spend can't be below 0."}


def test_a_non_numeric_cell_is_named_with_its_value(db):
    rows = weekly_rows()
    rows[7][1] = "abc"
    rows[8][4] = '"1.234,5"'
    errors = rejected(csv_bytes(rows)).errors
    assert errors[0] == {"row": 8, "column": "tv_spend", "message": "“abc” is not a number."}
    assert errors[1]["row"] == 9 and errors[1]["column"] == "revenue" and "write decimals with a point" in errors[1]["message"]


def test_an_empty_spend_cell_asks_for_a_zero(db):
    rows = weekly_rows()
    rows[12][1] = ""
    assert only(rejected(csv_bytes(rows))) == {"row": 13, "column": "tv_spend",
                                               "message": "empty: write 0 for a period with no spend."}


def test_too_few_periods_say_how_many_are_needed_and_why(db):
    error = only(rejected(csv_bytes(weekly_rows(20))))
    assert error["row"] is None and error["column"] is None
    assert error["message"] == ("Only 20 weeks of data: at least 26 are needed — seasonality, adstock (carry-over from "
                                "earlier periods) and a 20 % holdout to validate the fit need them.")


def test_without_an_outcome_column_the_columns_that_exist_are_listed(db):
    rows = [r[:4] for r in weekly_rows()]
    error = only(rejected(csv_bytes(rows)))
    assert error["row"] is None and error["message"] == (
        "No outcome column: call it revenue, sales, conversions, outcome or kpi, or choose it; "
        "the file has: date, tv_spend, search_spend, temperature.")
    assert only(rejected(csv_bytes(weekly_rows()), outcome="profit"))["message"].startswith(
        "There is no column “profit” for the outcome; the file has: date,")


def test_a_channel_that_never_spends_is_named(db):
    rows = weekly_rows()
    for row in rows[1:]:
        row[1] = "0"
    assert only(rejected(csv_bytes(rows))) == {"row": None, "column": "tv_spend", "message": (
        "tv_spend has no spend in any period: a channel that never spends cannot be measured — leave it out.")}


def test_a_bad_date_is_named_with_the_formats_accepted(db):
    rows = weekly_rows()
    rows[3][0] = "next week"
    rows[6][0] = "2024-13-01"
    errors = rejected(csv_bytes(rows)).errors
    assert errors[0] == {"row": 4, "column": "date", "message": (
        "“next week” is not a date: write YYYY-MM-DD (or YYYY-MM for months; DD/MM/YYYY and MM/DD/YYYY only where a "
        "day above 12 shows which).")}
    assert errors[1] == {"row": 7, "column": "date", "message": "“2024-13-01” is not a date (month must be in 1..12)."}


def test_slashed_dates_that_could_be_either_order_are_refused(db):
    rows = [["date", "tv_spend", "sales"]] + [[f"0{m}/0{d}/2024", "1", "2"] for m in range(1, 10) for d in range(1, 4)]
    error = rejected(csv_bytes(rows)).errors[0]
    assert error["row"] == 2 and "“01/01/2024” are ambiguous" in error["message"] and "YYYY-MM-DD" in error["message"]


def test_every_problem_is_listed_with_spreadsheet_rows_counting_blank_lines(db):
    rows = weekly_rows()
    rows[2][1] = "-1"
    rows.insert(5, [])  # a blank line: row 6
    rows[6][4] = "n/a"  # the 5th week, now on row 7
    error = rejected(csv_bytes(rows))
    assert [(e["row"], e["column"]) for e in error.errors] == [(3, "tv_spend"), (7, "revenue")]
    assert str(error) == "row 3, tv_spend: negative spend (-1): spend can't be below 0; row 7, revenue: “n/a” is not a number."


def test_a_long_list_of_problems_is_capped_but_counted(db):
    rows = weekly_rows(300)
    for row in rows[1:]:
        row[2] = "?"
    error = rejected(csv_bytes(rows))
    assert len(error.errors) == mix_data.MAX_ERRORS and error.total == 300 and str(error).endswith("… and 295 more.")


def test_a_spreadsheet_a_ragged_row_a_repeated_column_and_a_missing_channel_are_named(db):
    assert "Excel workbook" in only(rejected(b"PK\x03\x04rest-of-a-zip"))["message"]
    rows = weekly_rows()
    rows[4].append("7")
    assert only(rejected(csv_bytes(rows)))["row"] == 5
    repeated = b"\n\n" + csv_bytes([["date", "tv_spend", "tv_spend", "revenue"], ["2024-01-01", "1", "2", "3"]])
    assert only(rejected(repeated)) == {"row": 3, "column": "tv_spend",
                                        "message": "Two or more columns are named “tv_spend” (columns B, C): rename one."}
    error = only(rejected(csv_bytes(weekly_rows()), channels=["tv_spend", "radio_spend"]))
    assert error["column"] == "radio_spend" and error["message"].startswith("There is no column “radio_spend” for spend")


# -- the real (simulated) Robyn file -------------------------------------------------------------------------


@pytest.mark.skipif(not ROBYN.is_file(), reason="the Robyn sample is not in ../shared/data")
def test_the_robyn_weekly_file_reads_with_its_spend_columns():
    channels = ["tv_S", "ooh_S", "print_S", "search_S", "facebook_S"]
    series = read_upload(ROBYN, channels=channels, controls=["competitor_sales_B", "newsletter"])
    assert series.channels == channels and series.outcome_name == "revenue" and series.outcome_kind == "revenue"
    assert series.frequency == "week" and series.periods == 208
    assert (series.dates[0], series.dates[-1]) == (date(2015, 11, 23), date(2019, 11, 11))
    assert series.outcome[0] == pytest.approx(2754371.66666667) and series.spend["tv_S"][0] == pytest.approx(22358.3466666667)
    assert read_upload(ROBYN).channels == channels  # the _S columns, guessed


# -- the platform's own series ------------------------------------------------------------------------------

WEEK1 = date(2026, 3, 2)  # a Monday
D1, D2, D3 = WEEK1 + timedelta(days=1), WEEK1 + timedelta(days=9), WEEK1 + timedelta(days=22)  # weeks 1, 2 and 4


def at(day: date, hour: int = 12) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=tz.utc)


@pytest.fixture
def platform(db):
    """Banner (CPM 8), Push (0.05 a send), Search (0.50 a click), free E-mail, a paid-social channel; one campaign."""
    banner = Channel.objects.create(name="Banner", kind="banner", cost_model="cpm", unit_cost=Decimal("8"))
    push = Channel.objects.create(name="Push", kind="push", cost_model="send", unit_cost=Decimal("0.05"))
    search = Channel.objects.create(name="Search", kind="paid", cost_model="cpc", unit_cost=Decimal("0.5"))
    email = Channel.objects.create(name="E-mail", kind="email", cost_model="send", unit_cost=Decimal("0"))
    social = Channel.objects.create(name="Paid social", kind="paid")
    campaign = Campaign.objects.create(name="Upsell")
    ad = Ad.objects.create(campaign=campaign, name="Student")
    places = {c: Placement.objects.create(slug=c.name.lower().replace(" ", "-"), name=c.name, channel=c)
              for c in (banner, push, search, email)}
    customer = Customer.objects.create(external_id="c1")

    def serve(channel, day, n=1) -> Decision:
        decision = Decision.objects.create(customer=customer, placement=places[channel], reason="model", propensity=1.0,
                                           created_at=at(day), chosen=[ad.pk], eligible=[ad.pk])
        ServedAd.objects.bulk_create([ServedAd(decision=decision.pk, customer=customer, ad=ad, campaign=campaign,
                                               placement=places[channel], channel=channel, served_at=at(day))
                                      for _ in range(n)])
        return decision

    def event(kind, day, decision=None, value="0", hour=13):
        Event.objects.create(source="test", key=uuid.uuid4().hex, type=kind, customer=customer, decision=decision,
                             ad=ad if decision else None, campaign=campaign if decision else None, value=Decimal(value),
                             occurred_at=at(day, hour))

    # D1: banner 10 impressions (0.08), push 2 sends (0.10), search 1 impression + 2 clicks (1.00), e-mail 4 sends (free).
    serve(banner, D1, 10)
    serve(push, D1, 2)
    searched = serve(search, D1)
    serve(email, D1, 4)
    event("click", D1, searched)
    event("click", D1, searched)
    event("conversion", D1, searched, "20")
    event("purchase", D1, None, "30")  # organic: no decision, still the outcome
    CampaignSpend.objects.create(campaign=campaign, day=D1, amount=Decimal("2.36"))  # split 0.08 : 0.10 : 1.00
    ExternalSpend.objects.create(source="ads", day=D1, channel=push, campaign=campaign, scope="x", amount=Decimal("3"))
    # D2: the campaign served nothing — its cost-model and campaign-only external spend have no channel.
    CampaignSpend.objects.create(campaign=campaign, day=D2, amount=Decimal("5"))
    ExternalSpend.objects.create(source="ads", day=D2, campaign=campaign, scope="y", amount=Decimal("7"))
    event("subscribe", D2, hour=23)
    # D3: banner only, so campaign-only external spend goes to the banner; a channel-level report for paid social.
    serve(banner, D3, 5)
    ExternalSpend.objects.create(source="ads", day=D3, campaign=campaign, scope="z", amount=Decimal("10"))
    ExternalSpend.objects.create(source="ads", day=D3, channel=social, scope="w", amount=Decimal("40"))
    event("conversion", D3, None, "15")
    return {"banner": banner, "push": push, "search": search, "social": social}


def test_platform_weekly_spend_goes_to_its_channels_and_every_week_is_filled(platform, django_assert_max_num_queries):
    with django_assert_max_num_queries(6):  # grouped aggregates: no query per served ad or day
        series = platform_series(start=WEEK1 - timedelta(days=2), end=WEEK1 + timedelta(weeks=26, days=3),
                                 frequency="week", outcome="conversions")
    assert series.frequency == "week" and series.periods == 26  # trimmed to whole weeks, Monday to Sunday
    assert series.dates[0] == WEEK1 and series.dates[-1] == WEEK1 + timedelta(weeks=25)
    assert series.channels == ["Banner", "Paid social", "Push", "Search", "unassigned", "external"]  # free e-mail left out
    expected = {"Banner": [0.16, 0, 0, 10], "Paid social": [0, 0, 0, 40], "Push": [3.2, 0, 0, 0], "Search": [2.0, 0, 0, 0],
                "unassigned": [0, 5, 0, 0], "external": [0, 7, 0, 0]}
    for channel, weeks in expected.items():
        assert series.spend[channel][:4] == pytest.approx(weeks), channel
        assert not series.spend[channel][4:].any()
    assert series.outcome[:4].tolist() == [2, 1, 0, 1] and not series.outcome[4:].any()
    assert series.channel_ids == {"Banner": platform["banner"].pk, "Paid social": platform["social"].pk,
                                  "Push": platform["push"].pk, "Search": platform["search"].pk}


def test_platform_daily_revenue_sums_event_values_per_day(platform):
    series = platform_series(start=WEEK1, end=WEEK1 + timedelta(days=59), frequency="day", outcome="revenue")
    assert series.periods == 60 and series.outcome_kind == "revenue"
    revenue = dict(zip(series.dates, series.outcome))
    assert revenue[D1] == 50 and revenue[D3] == 15 and sum(series.outcome) == 65
    assert series.spend["Search"][(D1 - WEEK1).days] == pytest.approx(2.0)
    clicks = platform_series(start=WEEK1, end=WEEK1 + timedelta(days=59), frequency="day", outcome="clicks")
    assert clicks.outcome_kind == "count" and clicks.outcome.sum() == 2


def test_a_platform_series_is_stored_with_its_channel_map(platform, alice):
    series = platform_series(start=WEEK1, end=WEEK1 + timedelta(weeks=26), frequency="week", outcome="conversions")
    dataset = mix_data.store_dataset(series, name="Platform Q1", source=MixDataset.Source.PLATFORM, by=alice)
    assert dataset.channel_map == series.channel_ids and dataset.periods == 26 and dataset.source == "platform"
    assert np.allclose(dataset.data["spend"]["Banner"][:4], [0.16, 0, 0, 10])


def test_a_platform_range_too_short_or_without_outcomes_is_refused(platform):
    error = only(pytest.raises(MixDataError, platform_series, start=WEEK1, end=WEEK1 + timedelta(weeks=10),
                               frequency="week").value)
    assert error["message"].startswith("Only 10 weeks of data: at least 26")
    later = WEEK1 + timedelta(weeks=30)
    messages = [e["message"] for e in pytest.raises(MixDataError, platform_series, start=later,
                                                    end=later + timedelta(weeks=30)).value.errors]
    assert messages == ["No spend columns: a mix model needs at least one channel's spend.",
                        "conversions is 0 in every period: there is nothing to explain."]
