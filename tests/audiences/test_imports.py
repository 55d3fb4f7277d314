"""Imports keep every good row, report every bad cell precisely, and never duplicate on re-import."""

from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
from django.core.files import File
from django.urls import reverse

from audiences import imports
from audiences.models import Activity, ActivityKind, Customer, DataImport, Item

CUSTOMERS_CSV = """customer_id,birth_year,gender,region,signup_date,premium,plan
c1,1990,f,south,2024-01-05,yes,family
c2,19x0,m,north,2024-02-30,no,solo
c3,2001,q,east,,1,
c4,1985,M,west,2023-12-01,no,
,1970,f,south,2024-01-01,no,
"""


def load(kind: str, text: str, tmp_path: Path, name: str = "data.csv", mapping=None) -> DataImport:
    path = tmp_path / name
    if isinstance(text, pd.DataFrame):
        text.to_parquet(path)
    else:
        path.write_text(text)
    fmt = imports.file_format(name)
    columns, _ = imports.inspect_file(path, fmt)
    data_import = DataImport(kind=kind, original_name=name, file_format=fmt, columns=columns,
                             mapping=mapping or imports.guess_mapping(kind, columns))
    with open(path, "rb") as fh:
        data_import.file.save(name, File(fh), save=True)
    return imports.run_import(data_import)


def errors_of(data_import):
    return {(e["row"], e["column"], e["reason"]) for e in data_import.errors}


def test_bad_rows_are_reported_by_row_column_and_reason_and_good_rows_kept(db, tmp_path):
    result = load("customers", CUSTOMERS_CSV, tmp_path)
    assert errors_of(result) == {
        (3, "birth_year", "not a number"),
        (3, "signup_date", "not a date (YYYY-MM-DD)"),
        (4, "gender", "not a gender (f, m, x or empty)"),
        (6, "customer_id", "required: the cell is empty"),
    }
    assert (result.rows_total, result.rows_ok, result.rows_failed, result.rows_created) == (5, 2, 3, 2)
    c1 = Customer.objects.get(external_id="c1")
    assert (c1.birth_year, c1.gender, c1.region, c1.is_subscriber) == (1990, "f", "south", True)
    assert c1.signup_date.isoformat() == "2024-01-05"
    assert c1.attributes == {"plan": "family"}
    assert Customer.objects.get(external_id="c4").gender == "m"
    assert sorted(Customer.objects.values_list("external_id", flat=True)) == ["c1", "c4"]


def test_the_error_report_lists_every_rejected_cell(db, tmp_path):
    result = load("customers", CUSTOMERS_CSV, tmp_path)
    report = pd.read_csv(result.error_report.path)
    assert list(report.columns) == ["row", "column", "value", "reason"]
    assert len(report) == 4 and set(report["row"]) == {3, 4, 6}


def test_reimporting_updates_by_external_id_and_never_duplicates(db, tmp_path):
    load("customers", CUSTOMERS_CSV, tmp_path)
    changed = CUSTOMERS_CSV.replace("c1,1990,f,south", "c1,1991,f,east")
    second = load("customers", changed, tmp_path, name="again.csv")
    assert Customer.objects.count() == 2
    assert second.rows_created == 0 and second.rows_ok == 2
    c1 = Customer.objects.get(external_id="c1")
    assert (c1.birth_year, c1.region) == (1991, "east")


def test_a_repeated_id_in_one_file_keeps_the_last_row(db, tmp_path):
    load("customers", "id,region\nc1,north\nc1,south\n", tmp_path)
    assert list(Customer.objects.values_list("region", flat=True)) == ["south"]


def test_semicolon_separated_files_and_custom_mappings_work(db, tmp_path):
    text = "Kunde;Jahr\nk1;1999\nk2;2000\n"
    result = load("customers", text, tmp_path, mapping={"external_id": "Kunde", "birth_year": "Jahr"})
    assert result.rows_ok == 2
    assert Customer.objects.get(external_id="k2").birth_year == 2000


def test_items_parse_lists_prices_and_kinds(db, tmp_path):
    text = ("item_id,kind,title,artist,genres,language,moods,release_date,price\n"
            "t1,track,Dynamite,BTS,k-pop|pop,ko,happy;upbeat,2020-08-21,\n"
            "p1,product,Tour shirt,BTS,,,,,-5\n"
            "x1,spaceship,Nope,,,,,,\n")
    result = load("items", text, tmp_path)
    assert errors_of(result) == {(3, "price", "below the minimum of 0"),
                                 (4, "kind", "not an item kind (track, album, artist, playlist, concert, product)")}
    track = Item.objects.get(external_id="t1")
    assert (track.genres, track.moods, track.language, track.price) == (["k-pop", "pop"], ["happy", "upbeat"], "ko", None)


@pytest.fixture
def catalogue(db):
    Customer.objects.create(external_id="c1")
    Customer.objects.create(external_id="c2")
    Item.objects.create(external_id="t1", title="Song", artist="A", genres=["pop"])


ACTIVITIES_CSV = """event_id,user_id,track_id,action,timestamp,revenue
e1,c1,t1,play,2024-05-01T10:00:00Z,
e2,c1,t1,favourite,2024-05-01T10:03:00+02:00,
e3,c9,t1,play,2024-05-01T11:00:00Z,
e4,c2,t9,play,2024-05-01T11:00:00Z,
e5,c2,,purchase,2024-05-02 09:30,9.99
e6,c2,t1,dance,2024-05-02T09:30:00Z,
e7,c2,t1,play,yesterday-ish,
"""


def test_activities_resolve_customers_and_items_and_report_unknown_ones(catalogue, tmp_path):
    result = load("activities", ACTIVITIES_CSV, tmp_path)
    assert errors_of(result) == {
        (4, "user_id", "unknown customer: import it first"),
        (5, "track_id", "unknown item: import the catalogue first"),
        (7, "action", "not an activity kind (play, complete, skip, favourite, share, search, purchase, subscribe)"),
        (8, "timestamp", "not a time (ISO 8601, e.g. 2024-05-01T13:45:00Z)"),
    }
    assert result.rows_ok == 3 and Activity.objects.count() == 3
    fav = Activity.objects.get(kind=ActivityKind.FAVOURITE)
    assert fav.occurred_at == datetime(2024, 5, 1, 8, 3, tzinfo=timezone.utc)  # +02:00 converted to UTC
    purchase = Activity.objects.get(kind=ActivityKind.PURCHASE)
    assert purchase.item_id is None and purchase.value == Decimal("9.99")


def test_activities_are_idempotent_by_event_id_and_by_natural_key(catalogue, tmp_path):
    load("activities", ACTIVITIES_CSV, tmp_path)
    again = load("activities", ACTIVITIES_CSV.replace("9.99", "19.99"), tmp_path, name="again.csv")
    assert Activity.objects.count() == 3 and again.rows_created == 0
    assert Activity.objects.get(kind=ActivityKind.PURCHASE).value == Decimal("19.99")
    no_ids = "user_id,track_id,action,timestamp\nc1,t1,play,2024-06-01T00:00:00Z\nc1,t1,skip,2024-06-01T00:00:00Z\n"
    load("activities", no_ids, tmp_path, name="a.csv")
    load("activities", no_ids, tmp_path, name="b.csv")
    assert Activity.objects.count() == 5


def test_parquet_files_import_like_csv(db, tmp_path):
    frame = pd.DataFrame({"customer_id": ["p1", "p2"], "birth_year": [1980, None], "premium": [True, False]})
    result = load("customers", frame, tmp_path, name="people.parquet")
    assert result.rows_ok == 2
    assert Customer.objects.get(external_id="p1").is_subscriber is True
    assert Customer.objects.get(external_id="p2").birth_year is None


@pytest.mark.parametrize("content,name,reason", [
    ("", "empty.csv", "file is empty"),
    ("id,region\n", "header.csv", "needs a header row and at least one data row"),
    ("a,a\n1,2\n", "dup.csv", "repeats a column name"),
    ("a,b\n1,2\n", "data.xlsx", "neither CSV"),
])
def test_unreadable_files_are_rejected_with_a_reason(db, tmp_path, mark, client, content, name, reason):
    client.force_login(mark)
    path = tmp_path / name
    path.write_text(content)
    with open(path, "rb") as fh:
        response = client.post(reverse("imports:new"), {"kind": "customers", "file": fh})
    assert response.status_code == 400
    assert reason in response.content.decode()
    assert DataImport.objects.count() == 0


def test_the_upload_page_guesses_the_mapping_and_runs_the_import(db, tmp_path, mark, client, django_capture_on_commit_callbacks):
    client.force_login(mark)
    path = tmp_path / "customers.csv"
    path.write_text(CUSTOMERS_CSV)
    with open(path, "rb") as fh:
        response = client.post(reverse("imports:new"), {"kind": "customers", "file": fh})
    data_import = DataImport.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("imports:detail", args=[data_import.pk])
    assert data_import.mapping["external_id"] == "customer_id" and data_import.mapping["is_subscriber"] == "premium"
    page = client.get(response["Location"]).content.decode()
    assert "Preview" in page and "family" in page

    missing = client.post(response["Location"], {"birth_year": "birth_year"})
    assert missing.status_code == 400 and "Required: choose the column" in missing.content.decode()

    with django_capture_on_commit_callbacks(execute=True):  # the task runs eagerly once the job row commits
        ok = client.post(response["Location"], {**data_import.mapping, "keep_extra": "on"})
    assert ok.status_code == 302, ok.content.decode()[-3000:]
    data_import.refresh_from_db()
    assert data_import.status == DataImport.Status.DONE and data_import.job.status == "succeeded"
    assert data_import.rows_ok == 2 and data_import.rows_failed == 3
    detail = client.get(ok["Location"]).content.decode()
    assert "not a gender" in detail and "Download all errors" in detail
    assert client.get(reverse("imports:errors", args=[data_import.pk])).status_code == 200


def test_analysts_cannot_start_an_import(db, tmp_path, ann, client):
    data_import = DataImport.objects.create(kind="customers", original_name="x.csv", file_format="csv",
                                            columns=["id"], mapping={"external_id": "id"})
    client.force_login(ann)
    assert client.post(reverse("imports:detail", args=[data_import.pk]), {"external_id": "id"}).status_code == 403
    data_import.refresh_from_db()
    assert data_import.status == DataImport.Status.MAPPING


def test_hostile_cells_are_rejected_one_by_one_and_the_rest_kept(db, tmp_path):
    text = ("item_id,title,genres,price\n"
            "ok,Fine,pop,1.5\n"
            "nul,Bad\x00title,pop,1\n"
            "inf,Forever,pop,inf\n"
            "big,Pricey,pop,1e9\n"
            f"long,Long genre,{'x' * 101},1\n"
            'deep,Deep,"' + "[" * 5000 + '",1\n')
    result = load("items", text, tmp_path)
    assert errors_of(result) == {
        (3, "title", "contains a NUL character"),
        (4, "price", "not a finite number"),
        (4, "price", "above the maximum of 1e+08"),
        (5, "price", "above the maximum of 1e+08"),
        (6, "genres", "an entry is longer than 100 characters"),
        (7, "genres", "not a list (use a|b|c or a JSON array)"),
    }
    assert list(Item.objects.values_list("external_id", flat=True)) == ["ok"]


def test_row_numbers_count_blank_lines(db, tmp_path):
    result = load("customers", "customer_id,birth_year\n\nc10,1990\n\n\nc11,abc\n", tmp_path)
    assert errors_of(result) == {(6, "birth_year", "not a number")}  # line 6 of the file
    assert result.rows_ok == 1


def test_the_error_report_defuses_spreadsheet_formulas(db, tmp_path):
    result = load("customers", "customer_id,birth_year\nc1,=1+1\nc2,-2+3\nc3,@SUM(A1)\n", tmp_path)
    report = result.error_report.open("rb").read().decode()
    assert "'=1+1" in report and "'-2+3" in report and "'@SUM(A1)" in report
    assert "\n3,birth_year,=1+1" not in report


def test_a_double_submitted_mapping_queues_the_file_once(db, tmp_path, mark):
    from audiences import actions
    from ml.models import Job

    data_import = DataImport.objects.create(kind="customers", original_name="x.csv", file_format="csv",
                                            columns=["id"], mapping={"external_id": "id"})
    actions.queue_import(data_import, {"external_id": "id"}, by=mark)
    with pytest.raises(actions.ImportRejected, match="already been sent"):
        actions.queue_import(DataImport.objects.get(pk=data_import.pk), {"external_id": "id"}, by=mark)
    assert Job.objects.filter(kind="import").count() == 1


def test_persona_settings_refuse_nonsense(client, mark):
    client.force_login(mark)
    response = client.post(reverse("customers:persona_settings"),
                           {"half_life_days": 30, "loyal_revenue_share": 0.7, "active_revenue_share": 0.4, "top_n": 0})
    page = response.content.decode()
    assert response.status_code == 400
    assert "Keep between 1 and 100 preferences" in page and "Loyal + active must stay under 1 (now 1.10)" in page


def test_an_upload_over_the_limit_is_stopped_with_a_reason(db, tmp_path, mark, client, settings):
    settings.IMPORT_MAX_UPLOAD_MB = 1
    client.force_login(mark)
    path = tmp_path / "big.csv"
    path.write_text("customer_id\n" + "c\n" * 700_000)  # 1.4 MB
    with open(path, "rb") as fh:
        response = client.post(reverse("imports:new"), {"kind": "customers", "file": fh})
    assert response.status_code == 400
    assert "larger than the 1 MB limit" in response.content.decode()
    assert DataImport.objects.count() == 0
