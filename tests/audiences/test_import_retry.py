"""An import whose worker died part-way, retried, creates each row once and reports every new row once."""

import pytest

from audiences import imports
from audiences.models import Customer, DataImport
from tests.audiences.test_imports import load

ROWS = 10
CSV = "customer_id,birth_year,region\n" + "".join(f"c{i},{1980 + i},south\n" for i in range(ROWS))


@pytest.fixture
def small_chunks(monkeypatch):
    read = imports.read_chunks
    monkeypatch.setattr(imports, "read_chunks", lambda path, fmt, chunk_rows=4: read(path, fmt, chunk_rows=min(chunk_rows, 4)))


def test_a_retried_import_creates_each_customer_once_and_counts_every_new_one(db, tmp_path, small_chunks, monkeypatch):
    load_chunk = imports.load_chunk
    calls = []

    def dies_on_the_third_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise SystemExit("the worker was killed")  # the first two chunks are committed
        return load_chunk(*args, **kwargs)

    monkeypatch.setattr(imports, "load_chunk", dies_on_the_third_chunk)
    with pytest.raises(SystemExit):
        load("customers", CSV, tmp_path)
    assert Customer.objects.count() == 8
    data_import = DataImport.objects.get()

    monkeypatch.setattr(imports, "load_chunk", load_chunk)
    retried = imports.run_import(data_import)  # the redelivered task runs the same import again

    assert Customer.objects.count() == ROWS
    assert Customer.objects.values("external_id").distinct().count() == ROWS
    assert (retried.rows_total, retried.rows_ok, retried.rows_created) == (ROWS, ROWS, ROWS)
    assert DataImport.objects.get().rows_created == ROWS


def test_an_import_done_in_one_go_counts_its_new_rows(db, tmp_path, small_chunks):
    assert load("customers", CSV, tmp_path).rows_created == ROWS
    assert load("customers", CSV, tmp_path, name="again.csv").rows_created == 0
