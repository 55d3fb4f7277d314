"""Housekeeping of background jobs."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from .models import Job

STALE_AFTER = timedelta(hours=6)


@shared_task(name="ml.reap_jobs")
def reap_jobs() -> int:
    """Mark jobs failed whose worker vanished: running (or queued) far longer than any job takes.

    The filesystem broker of the embedded run forgets a task its worker took when the worker
    is killed, so without this the job would show "running" forever.
    """
    cutoff = timezone.now() - STALE_AFTER
    lost = Job.objects.filter(status=Job.Status.RUNNING, started_at__lt=cutoff)
    never = Job.objects.filter(status=Job.Status.QUEUED, created_at__lt=cutoff)
    count = lost.update(status=Job.Status.FAILED, finished_at=timezone.now(),
                        error="The worker running this job stopped; start it again.")
    count += never.update(status=Job.Status.FAILED, finished_at=timezone.now(),
                          error="No worker picked this job up; is a Celery worker running?")
    return count
