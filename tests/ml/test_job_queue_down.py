"""A job whose broker cannot be reached fails with that reason; the request that queued it still answers."""

from celery import Celery
from django.urls import reverse

from ml.models import Job, send_on_commit


def unreachable_broker(monkeypatch) -> Celery:
    # Celery prefers CELERY_BROKER_URL from the environment (CI sets it) over the broker named here.
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    app = Celery("down", broker="redis://127.0.0.1:1/0", set_as_current=False)  # nothing listens on port 1
    app.conf.broker_url = "redis://127.0.0.1:1/0"
    app.conf.broker_connection_retry = False
    app.conf.broker_connection_timeout = 0.5
    app.conf.task_publish_retry = False
    return app


def test_a_job_that_cannot_be_sent_fails_and_says_why(db, django_capture_on_commit_callbacks, monkeypatch):
    job = Job.objects.create(kind="recommendations", title="Recommendations")
    broker = unreachable_broker(monkeypatch)
    with django_capture_on_commit_callbacks(execute=True):
        send_on_commit(job, lambda: broker.send_task("audiences.build_recommendations", args=[job.pk]))
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert "could not be reached" in job.message
    assert "Error" in job.error and job.finished_at is not None


def test_a_job_that_was_sent_stays_queued(db, django_capture_on_commit_callbacks):
    job = Job.objects.create(kind="recommendations", title="Recommendations")
    sent = []
    with django_capture_on_commit_callbacks(execute=True):
        send_on_commit(job, lambda: sent.append(job.pk))
    job.refresh_from_db()
    assert sent == [job.pk] and job.status == Job.Status.QUEUED and job.message == ""


def test_the_models_page_button_still_answers_when_the_broker_is_down(client, mark, settings, django_capture_on_commit_callbacks, monkeypatch):
    from celery import current_app

    broker = unreachable_broker(monkeypatch)
    monkeypatch.setattr(current_app, "send_task", broker.send_task)  # the product's app, pointed at a dead broker
    client.force_login(mark)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("models:build_recommendations"))
    assert response.status_code == 302
    job = Job.objects.get(kind="recommendations")
    assert job.status == Job.Status.FAILED
