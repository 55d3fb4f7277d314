"""A real Celery worker process picks up an import job and runs it end to end."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from audiences import actions
from audiences.models import Customer, DataImport
from ml.models import Job
from tests.conftest import wait_for

pytestmark = pytest.mark.worker


def test_a_worker_process_runs_an_import_and_reports_progress(celery_worker_process, mark):
    rows = "\n".join(f"w{i},{1950 + i % 50},{'fm'[i % 2]},region-{i % 5}" for i in range(2500))
    upload = SimpleUploadedFile("people.csv", f"customer_id,birth_year,gender,region\n{rows}\nbad,19x9,f,x\n".encode())
    data_import = actions.receive_upload(upload, "customers", by=mark)
    job = actions.queue_import(data_import, data_import.mapping, by=mark)

    def finished():
        job.refresh_from_db()
        return job.is_finished

    wait_for(finished, timeout=90)
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.progress == 1.0 and job.attempts == 1
    data_import.refresh_from_db()
    assert data_import.status == DataImport.Status.DONE
    assert (data_import.rows_total, data_import.rows_ok, data_import.rows_failed) == (2501, 2500, 1)
    assert data_import.errors[0] == {"row": 2502, "column": "birth_year", "value": "19x9", "reason": "not a number"}
    assert Customer.objects.filter(external_id__startswith="w").count() == 2500
    assert Customer.objects.get(external_id="w7").region == "region-2"
