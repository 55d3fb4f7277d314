"""Background job progress (and, later, the model registry).

Every long Celery task owns one Job row. The task reports progress with cheap
UPDATEs so the Jobs page can poll it; the row outlives the worker, so a crash
or retry is visible to the operator.
"""

from __future__ import annotations

import traceback
from contextlib import contextmanager

from django.conf import settings
from django.db import models, transaction
from django.db.models import F
from django.utils import timezone


class JobQuerySet(models.QuerySet):
    def unfinished(self):
        """Queued or running: what the Jobs page keeps polling for."""
        return self.filter(status__in=[Job.Status.QUEUED, Job.Status.RUNNING])


class Job(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    kind = models.CharField(max_length=40, db_index=True)
    title = models.CharField(max_length=200)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED, db_index=True)
    progress = models.FloatField(default=0.0, help_text="0 to 1")
    message = models.CharField(max_length=300, blank=True)
    error = models.TextField(blank=True)
    result = models.JSONField(default=dict, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = JobQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.title} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.SUCCEEDED, self.Status.FAILED)

    @property
    def percent(self) -> int:
        return round(100 * min(max(self.progress, 0.0), 1.0))

    @property
    def duration(self):
        if not self.started_at:
            return None
        return (self.finished_at or timezone.now()) - self.started_at

    def report(self, progress: float, message: str = "") -> None:
        """Record progress without touching other fields (the web may be reading this row)."""
        self.progress = max(0.0, min(1.0, float(progress)))
        self.message = message[:300]
        Job.objects.filter(pk=self.pk).update(progress=self.progress, message=self.message)


def enqueue(task, job: Job, *args, **kwargs) -> None:
    """Send the task once the transaction that created the job commits, so the worker finds the row."""
    transaction.on_commit(lambda: task.apply_async(args=(job.pk, *args), kwargs=kwargs))


MAX_ATTEMPTS = 3


def claim(job_id: int) -> Job | None:
    """Start one more attempt at the job; None when it must not run.

    A task redelivered after its worker died (acks_late) claims again. A job that already
    succeeded is not redone, and one that used up MAX_ATTEMPTS (say, a file that kills the
    worker every time) is marked failed instead of being redelivered forever.
    """
    now = timezone.now()
    claimed = (
        Job.objects.filter(pk=job_id, attempts__lt=MAX_ATTEMPTS)
        .exclude(status=Job.Status.SUCCEEDED)
        .update(status=Job.Status.RUNNING, started_at=now, finished_at=None, error="", attempts=F("attempts") + 1)
    )
    job = Job.objects.get(pk=job_id)
    if claimed:
        return job
    if job.status != Job.Status.SUCCEEDED:
        Job.objects.filter(pk=job_id).update(
            status=Job.Status.FAILED, finished_at=now,
            error=f"Gave up after {job.attempts} attempts: the worker stopped during each of them.",
        )
    return None


@contextmanager
def running(job_id: int):
    """Claim the job, then mark it succeeded or failed; yields the Job for `report()`, or None.

    None means the job must not run (see claim); the task returns at once. The task body
    must be idempotent: a retried attempt enters here again.
    """
    job = claim(job_id)
    if job is None:
        yield None
        return
    try:
        yield job
    except Exception as exc:
        job.status = Job.Status.FAILED
        job.error = f"{type(exc).__name__}: {exc}"
        job.result = {**job.result, "traceback": traceback.format_exc()[-4000:]}
        job.finished_at = timezone.now()
        job.save(update_fields=["status", "error", "result", "finished_at"])
        raise
    else:
        job.status = Job.Status.SUCCEEDED
        job.progress = 1.0
        job.finished_at = timezone.now()
        job.save(update_fields=["status", "progress", "message", "result", "finished_at"])
