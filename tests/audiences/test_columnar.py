"""The analytics copy (audiences/columnar.py): what a sync copies, appends, seals and drops, and when the page reads it.

The numbers themselves are checked in test_analytics.py, whose hand-counted tests run against both the
database and the copy.
"""

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection
from django.urls import reverse
from django.utils import timezone as dj_timezone

from audiences import columnar
from audiences.analytics import AnalyticsQuery, run_query
from audiences.models import Activity, ActivityKind, Customer, Item
from audiences.tasks import sync_analytics_copy

pytestmark = pytest.mark.skipif("connection.vendor != 'postgresql'", reason="the analytics copy is made from PostgreSQL")

MARCH = {"start": datetime(2025, 3, 1).date(), "end": datetime(2025, 3, 31).date()}


@pytest.fixture
def copy_on(db, settings, tmp_path):
    settings.ANALYTICS_COPY = "on"
    settings.ANALYTICS_COPY_DIR = tmp_path / "copy"
    return settings


def add_plays(customer, n, *, start=0, item=None, day=5):
    Activity.objects.bulk_create([
        Activity(key=start + i, customer=customer, item=item, kind=ActivityKind.PLAY,
                 occurred_at=datetime(2025, 3, day, 12, tzinfo=timezone.utc) + timedelta(seconds=i)) for i in range(n)])


def plays(**options):
    result = run_query(AnalyticsQuery(measures=("customers", "plays"), dimensions=("region",), **{**MARCH, **options}))
    return {row.labels: row.values for row in result.rows}, result


def parquet_rows(copy, table):
    import duckdb

    files = [str(copy.folder / f) for f in copy.files[table]]
    return duckdb.connect().execute(f"SELECT count(*), count(DISTINCT id) FROM read_parquet({files})").fetchone()


def test_activities_are_appended_sealed_and_never_copied_twice(copy_on):
    ada = Customer.objects.create(external_id="ada", region="south")
    add_plays(ada, 5)
    first = columnar.sync()
    assert first.sealed == first.seen and first.rows["audiences_activity"] == 5  # a first sync is a full build

    add_plays(ada, 3, start=100)
    second = columnar.sync()
    assert second.sealed == first.seen and second.rows["audiences_activity"] == 8  # the new rows are the tail
    assert any("-tail-" in f for f in second.files["audiences_activity"])
    assert plays()[0] == {("south",): {"customers": 1, "plays": 8}}

    add_plays(ada, 2, start=200)
    third = columnar.sync()
    assert third.sealed == second.seen  # what the sync before saw is sealed now; the rest is the tail again
    assert third.rows["audiences_activity"] == 10
    assert parquet_rows(third, "audiences_activity") == (10, 10)
    assert plays()[0] == {("south",): {"customers": 1, "plays": 10}}
    # Files only older copies named are gone; the copy before this one keeps its files for readers still on it.
    names = {p.name for p in third.folder.glob("*.parquet")}
    assert names == set(sum(third.files.values(), [])) | set(sum(second.files.values(), []))
    assert not set(sum(first.files.values(), [])) - set(sum(second.files.values(), [])) & names


def test_customers_and_items_are_copied_whole_each_time(copy_on):
    ada = Customer.objects.create(external_id="ada", region="south")
    bo = Customer.objects.create(external_id="bo", region="north")
    item = Item.objects.create(external_id="i1", title="Song", artist="Ava")
    add_plays(ada, 2, item=item)
    add_plays(bo, 1, start=10, item=item)
    columnar.sync()
    Customer.objects.filter(pk=bo.pk).update(region="south")
    Item.objects.filter(pk=item.pk).update(artist="Bo")
    ada.delete()  # a deleted customer's activities drop out at once: every statement starts from the customers
    columnar.sync()
    assert plays()[0] == {("south",): {"customers": 1, "plays": 1}}
    result = run_query(AnalyticsQuery(measures=("activities",), dimensions=("artist",), **MARCH))
    assert result.copy is not None and {r.labels: r.values for r in result.rows} == {("Bo",): {"activities": 1}}


def test_a_full_rebuild_drops_activities_deleted_since(copy_on):
    ada = Customer.objects.create(external_id="ada", region="south")
    add_plays(ada, 4)
    columnar.sync()
    Activity.objects.filter(key__lt=2).delete()
    columnar.sync()
    assert plays()[0][("south",)]["plays"] == 4  # sealed rows are not read again …
    copy_on.ANALYTICS_COPY_REBUILD_HOURS = 1
    manifest = columnar.folder() / columnar.MANIFEST
    data = json.loads(manifest.read_text())
    data["built_at"] = (dj_timezone.now() - timedelta(hours=2)).isoformat()
    manifest.write_text(json.dumps(data))
    rebuilt = columnar.sync()  # … until the rebuild ANALYTICS_COPY_REBUILD_HOURS after the last one
    assert rebuilt.built_at > dj_timezone.now() - timedelta(minutes=1)
    assert plays()[0][("south",)]["plays"] == 2


def test_values_are_copied_exactly(copy_on):
    ada = Customer.objects.create(external_id="a,\"da\"", region="", gender="", birth_year=None, city_tier=None)
    Activity.objects.create(key=1, customer=ada, kind=ActivityKind.PURCHASE, value=Decimal("1234567890.99"),
                            occurred_at=datetime(2025, 3, 31, 23, 59, 59, 999999, tzinfo=timezone.utc))
    columnar.sync()
    result = run_query(AnalyticsQuery(measures=("customers", "revenue"), dimensions=("region", "gender"), **MARCH))
    assert result.copy is not None
    # An empty string stays empty (not NULL: "unknown" is labelled the same, but the keys differ), money stays exact,
    # and the last microsecond of the window is in it.
    assert [(r.keys, r.values) for r in result.rows] == [(("", ""), {"customers": 1, "revenue": Decimal("1234567890.99")})]


def test_the_database_answers_when_the_copy_is_off_stale_missing_or_broken(copy_on):
    ada = Customer.objects.create(external_id="ada", region="south")
    add_plays(ada, 2)
    assert plays()[1].copy is None  # no copy yet
    columnar.sync()
    add_plays(ada, 1, start=10)  # not in the copy
    assert plays()[1].copy is not None and plays()[0][("south",)]["plays"] == 2

    copy_on.ANALYTICS_COPY_MAX_AGE = 1
    manifest = columnar.folder() / columnar.MANIFEST
    data = json.loads(manifest.read_text())
    data["synced_at"] = (dj_timezone.now() - timedelta(minutes=2)).isoformat()
    manifest.write_text(json.dumps(data))
    rows, result = plays()
    assert result.copy is None and rows[("south",)]["plays"] == 3  # too old: the database, with everything

    columnar.sync()
    for path in columnar.folder().glob("*.parquet"):  # files gone under a reader: DuckDB fails, the database answers
        path.unlink()
    rows, result = plays()
    assert result.copy is None and rows[("south",)]["plays"] == 3

    columnar.sync()
    copy_on.ANALYTICS_COPY = "off"
    assert plays()[1].copy is None


def test_auto_makes_a_copy_only_for_a_large_activity_table(copy_on):
    ada = Customer.objects.create(external_id="ada", region="south")
    add_plays(ada, 3)
    columnar.sync()
    assert columnar.current() is not None
    copy_on.ANALYTICS_COPY = "auto"
    copy_on.ANALYTICS_COPY_MIN_ROWS = 1_000_000
    assert columnar.sync() is None and columnar.current() is None  # small: no copy, and an old one is removed
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE audiences_activity")  # auto goes by the planner's row estimate
    copy_on.ANALYTICS_COPY_MIN_ROWS = 3
    assert columnar.sync() is not None


def test_the_beat_task_and_the_command_sync(copy_on, capsys):
    ada = Customer.objects.create(external_id="ada", region="south")
    add_plays(ada, 2)
    out = sync_analytics_copy()
    assert out["rows"]["audiences_activity"] == 2 and out["rows"]["audiences_customer"] == 1
    call_command("sync_analytics", "--full")
    assert "Analytics copy synced" in capsys.readouterr().out and columnar.current().sealed == columnar.current().seen
    call_command("sync_analytics", "--remove")
    assert columnar.current() is None
    copy_on.ANALYTICS_COPY = "off"
    call_command("sync_analytics")
    assert "No analytics copy" in capsys.readouterr().out


def test_the_page_says_the_copy_answered_and_how_old_it_is(copy_on, client_for, ann):
    ada = Customer.objects.create(external_id="ada", region="south")
    add_plays(ada, 2)
    url = f"{reverse('audiences:analytics')}?measure=plays&dim1=region&start=2025-03-01&end=2025-03-31"
    page = client_for(ann).get(url).content.decode()
    assert "analytics-source" not in page
    columnar.sync()
    copy_on.ANALYTICS_COPY_MINUTES = 7
    page = client_for(ann).get(url).content.decode()
    assert "Counted from the analytics copy of" in page and "not in yet" in page and "up to date every 7 minutes" in page


def test_a_full_build_writes_sealed_activities_a_chunk_of_ids_at_a_time(copy_on, monkeypatch):
    monkeypatch.setattr(columnar, "CHUNK_IDS", 2)
    ada = Customer.objects.create(external_id="ada", region="south")
    add_plays(ada, 5)
    low = Activity.objects.order_by("pk").first().pk - 1  # other tests' rows came before: ids start above 1
    copy = columnar.sync()
    sealed = [f for f in copy.files["audiences_activity"] if "-tail-" not in f]
    assert len(sealed) == 3 and copy.sealed == low + 5  # ids low+1 … low+5, two at a time
    assert parquet_rows(copy, "audiences_activity") == (5, 5)
    assert plays()[0] == {("south",): {"customers": 1, "plays": 5}}
