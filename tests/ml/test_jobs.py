"""Jobs record progress, failures and retries; the Jobs page polls only while something runs."""

import pytest
from django.urls import reverse

from ml.models import Job, ModelVersion, running


def test_running_marks_success_and_full_progress(db):
    job = Job.objects.create(kind="t", title="T")
    with running(job.pk) as tracked:
        tracked.report(0.4, "40 of 100")
        assert Job.objects.get(pk=job.pk).message == "40 of 100"
        tracked.result = {"rows": 100}
    job.refresh_from_db()
    assert (job.status, job.progress, job.result, job.attempts) == ("succeeded", 1.0, {"rows": 100}, 1)
    assert job.finished_at >= job.started_at


def test_a_failure_is_recorded_with_its_error_and_reraised(db):
    job = Job.objects.create(kind="t", title="T")
    with pytest.raises(ZeroDivisionError):
        with running(job.pk):
            1 / 0
    job.refresh_from_db()
    assert job.status == "failed" and job.error == "ZeroDivisionError: division by zero"
    assert "Traceback" in job.result["traceback"]


def test_a_redelivered_job_that_already_succeeded_is_not_run_again(db):
    job = Job.objects.create(kind="t", title="T")
    with running(job.pk) as first:
        assert first is not None
    with running(job.pk) as second:
        assert second is None
    job.refresh_from_db()
    assert (job.status, job.attempts) == ("succeeded", 1)


def test_a_job_whose_worker_keeps_dying_is_given_up_after_three_attempts(db):
    from ml.models import MAX_ATTEMPTS

    job = Job.objects.create(kind="t", title="T")
    for _ in range(MAX_ATTEMPTS):  # each attempt "dies": claimed, never finished
        Job.objects.filter(pk=job.pk).update(status=Job.Status.RUNNING)
        with running(job.pk) as attempt:
            assert attempt is not None
            raise_later = attempt
        Job.objects.filter(pk=raise_later.pk).update(status=Job.Status.RUNNING, finished_at=None)
    with running(job.pk) as attempt:
        assert attempt is None
    job.refresh_from_db()
    assert job.status == "failed" and job.attempts == MAX_ATTEMPTS
    assert job.error.startswith("Gave up after 3 attempts")


def test_progress_is_clamped_between_0_and_1(db):
    job = Job.objects.create(kind="t", title="T")
    job.report(7, "")
    assert Job.objects.get(pk=job.pk).progress == 1.0
    job.report(-1, "")
    assert Job.objects.get(pk=job.pk).progress == 0.0


def test_the_jobs_table_polls_while_a_job_runs_and_stops_after(client, ann):
    job = Job.objects.create(kind="import", title="Import customers", status=Job.Status.RUNNING, progress=0.25)
    client.force_login(ann)
    partial = client.get(reverse("jobs:list"), HTTP_HX_REQUEST="true").content.decode()
    assert 'hx-trigger="every 2s"' in partial and "25%" in partial and "<html" not in partial
    Job.objects.filter(pk=job.pk).update(status=Job.Status.SUCCEEDED, progress=1.0)
    partial = client.get(reverse("jobs:list"), HTTP_HX_REQUEST="true").content.decode()
    assert "hx-trigger" not in partial and "100%" in partial


def test_the_jobs_page_filters_by_status_and_shows_errors(client, ann):
    Job.objects.create(kind="import", title="Good", status=Job.Status.SUCCEEDED)
    Job.objects.create(kind="import", title="Broken", status=Job.Status.FAILED, error="ValueError: bad file")
    client.force_login(ann)
    page = client.get(reverse("jobs:list") + "?status=failed").content.decode()
    assert "Broken" in page and "ValueError: bad file" in page and "Good" not in page


def test_jobs_whose_worker_vanished_are_reaped(db):
    from datetime import timedelta

    from django.utils import timezone

    from ml.tasks import reap_jobs

    old = timezone.now() - timedelta(hours=7)
    lost = Job.objects.create(kind="t", title="Lost", status=Job.Status.RUNNING, started_at=old)
    fresh = Job.objects.create(kind="t", title="Fresh", status=Job.Status.RUNNING, started_at=timezone.now())
    orphan = Job.objects.create(kind="t", title="Orphan")
    Job.objects.filter(pk=orphan.pk).update(created_at=old)
    assert reap_jobs() == 2
    assert Job.objects.get(pk=lost.pk).status == "failed" and "worker running this job stopped" in Job.objects.get(pk=lost.pk).error
    assert Job.objects.get(pk=fresh.pk).status == "running"
    assert "No worker picked this job up" in Job.objects.get(pk=orphan.pk).error


def test_a_jobs_result_reads_as_text_not_as_python(client, ann):
    job = Job.objects.create(kind="personas", title="Personas", status=Job.Status.SUCCEEDED, result={
        "segments": {"loyal": 34, "casual": 2}, "r2_holdout": 0.87654, "rows": 12345, "promoted": True,
        "ads": [1, 2, 3], "traceback": "Traceback (most recent call last)", "as_of": "2026-12-03T17:25:28.476626+00:00",
        "note": "2026-12-03 is not a time"})
    client.force_login(ann)
    html = client.get(reverse("jobs:detail", kwargs={"pk": job.pk})).content.decode()
    assert "<dt class=\"col-sm-3\">Segments</dt><dd class=\"col-sm-9\">loyal 34 · casual 2</dd>" in html
    assert ">R2 holdout</dt><dd class=\"col-sm-9\">0.877<" in html and ">12,345<" in html and ">yes<" in html
    assert ">1, 2, 3<" in html and "most recent call" not in html and "{&#x27;" not in html
    assert ">As of</dt><dd class=\"col-sm-9\">Dec 3, 2026, 17:25<" in html and ">2026-12-03 is not a time<" in html


def test_a_model_a_job_registered_reads_as_the_model_and_links_to_it(client, ann):
    version = ModelVersion.objects.create(key="campaign:3", kind=ModelVersion.Kind.XGBOOST, version=2, artefact="x.json")
    job = Job.objects.create(kind="campaign_model", title="Campaign model", status=Job.Status.SUCCEEDED, result={
        "version": version.pk, "number": 2, "kind": "xgboost",
        "tagger": {"key": "audio:tagger", "version": 1, "id": version.pk + 1000}, "hit_model": None, "auc": 0.71})
    client.force_login(ann)
    html = client.get(reverse("jobs:detail", kwargs={"pk": job.pk})).content.decode()
    link = reverse("models:detail", args=[version.pk])
    assert f'>Version</dt><dd class="col-sm-9"><a href="{link}">campaign:3 v2 (XGBoost)</a></dd>' in html
    assert f">Tagger</dt><dd class=\"col-sm-9\">model #{version.pk + 1000}, no longer stored</dd>" in html
    assert '>Hit model</dt><dd class="col-sm-9">—</dd>' in html and '>AUC</dt><dd class="col-sm-9">0.710<' in html
    assert ">Number<" not in html and ">Model<" not in html and ">Kind<" not in html  # the version's line says v2, XGBoost
    assert "Campaign model · created" in html and "campaign_model" not in html  # the header names the kind in words


def test_a_models_kind_reads_as_its_label_when_the_version_is_gone(client, ann):
    job = Job.objects.create(kind="campaign_model", title="Campaign model", status=Job.Status.SUCCEEDED,
                             result={"version": 999_999, "number": 2, "kind": "xgboost"})
    client.force_login(ann)
    html = client.get(reverse("jobs:detail", kwargs={"pk": job.pk})).content.decode()
    assert "model #999999, no longer stored" in html and ">Number</dt><dd class=\"col-sm-9\">2<" in html
    assert '>Model</dt><dd class="col-sm-9">XGBoost</dd>' in html and ">Kind<" not in html  # the label, not "xgboost"


def test_a_job_done_without_reporting_progress_shows_a_full_bar_and_its_kind_in_words(client, ann):
    job = Job.objects.create(kind="stream_forecast", title="Forecasts", status=Job.Status.SUCCEEDED)  # progress 0
    unknown = Job.objects.create(kind="mix_fit_v2", title="Other", status=Job.Status.RUNNING, progress=0.4)
    assert job.percent == 100 and unknown.percent == 40
    assert job.kind_label == "Stream forecasts" and unknown.kind_label == "Mix fit v2"
    client.force_login(ann)
    html = client.get(reverse("jobs:detail", kwargs={"pk": job.pk})).content.decode()
    assert 'aria-valuenow="100"' in html and "bg-success" in html and "Stream forecasts · created" in html


def test_the_list_names_a_job_s_kind_only_where_its_title_does_not(client, ann):
    Job.objects.create(kind="stream_forecast", title="Forecasts for May")
    Job.objects.create(kind="stream_forecast", title="Stream forecasts")  # queued, nothing reported yet
    Job.objects.create(kind="stream_forecast", title="Stream forecasts", status=Job.Status.RUNNING, message="Fitting 3 of 9")
    client.force_login(ann)
    html = client.get(reverse("jobs:list")).content.decode()
    assert html.count('<div class="small text-muted">Stream forecasts</div>') == 1  # under "Forecasts for May" only
    assert "Waiting for a worker" in html and "Fitting 3 of 9" in html
