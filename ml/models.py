"""Background job progress and the model registry.

Every long Celery task owns one Job row. The task reports progress with cheap
UPDATEs so the Jobs page can poll it; the row outlives the worker, so a crash
or retry is visible to the operator.
"""

from __future__ import annotations

import logging
import traceback
from contextlib import contextmanager

from django.conf import settings
from django.db import models, transaction
from django.db.models import F, Q
from django.utils import timezone

logger = logging.getLogger(__name__)


# Job.kind values, as the Jobs pages name them; a kind missing here reads as its words ("mix_model" → "Mix model").
KIND_LABELS = {
    "campaign_model": "Campaign model", "uplift_model": "Uplift model", "mix_model": "Marketing-mix model",
    "lookalike": "Lookalike", "personas": "Personas", "audiences": "Audience refresh", "import": "Import",
    "recommendations": "Recommendations", "audio": "Audio analysis", "audio_training": "Audio model training",
    "stream_forecast": "Stream forecasts",
}


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
        if self.status == self.Status.SUCCEEDED:  # a job done outside `running()` (seed_demo's) reports no progress
            return 100
        return round(100 * min(max(self.progress, 0.0), 1.0))

    @property
    def kind_label(self) -> str:
        """What the job does, in words: "Campaign model", not the stored "campaign_model"."""
        return KIND_LABELS.get(self.kind) or self.kind.replace("_", " ").capitalize()

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
    send_on_commit(job, lambda: task.apply_async(args=(job.pk, *args), kwargs=kwargs))


def send_on_commit(job: Job, send) -> None:
    """Call send() after commit; when the broker cannot be reached the job fails with that reason, the page still answers.

    The job row is committed already, so an unreachable broker (Redis down) would otherwise leave a job
    "queued" forever and turn the operator's click into a server error.
    """

    def sending() -> None:
        from kombu.exceptions import OperationalError

        try:
            send()
        except (OperationalError, ConnectionError, OSError) as exc:
            logger.warning("could not queue job %s: %s", job.pk, exc)
            Job.objects.filter(pk=job.pk, status=Job.Status.QUEUED).update(
                status=Job.Status.FAILED, finished_at=timezone.now(), error=f"{type(exc).__name__}: {exc}"[:2000],
                message="The job queue could not be reached, so nothing ran; start the job again once it is back.")

    transaction.on_commit(sending)


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


class ModelVersionQuerySet(models.QuerySet):
    def champions(self):
        """The versions that serve now: at most one per key."""
        return self.filter(status=ModelVersion.Status.CHAMPION)

    def candidates(self):
        """Trained and registered, waiting for the gate or an operator to promote them."""
        return self.filter(status=ModelVersion.Status.CANDIDATE)

    def registered_by_job(self, key: str, job_id: int) -> "ModelVersion | None":
        """The version of `key` a job registered (its trained_on names the job): a retried job finishes it, never a second."""
        return self.filter(key=key, trained_on__job=job_id).first()


class ModelVersion(models.Model):
    """One trained model for one subject, with its metrics and where its artefact lies.

    The subject is a free `key` ("campaign:12", "lookalike:3") plus optional plain ids, not
    foreign keys: ml stays below marketing and audiences. `artefact` is relative to
    `ml.registry.model_dir()`, so the directory can move between machines.
    """

    class Kind(models.TextChoices):
        XGBOOST = "xgboost", "XGBoost"
        LOGISTIC = "logistic", "Logistic regression"
        GBDT_LR = "gbdt_lr", "GBDT + LR"
        FTRL = "ftrl", "FTRL-Proximal"
        RECSYS = "recsys", "Recommender"
        AUDIO = "audio", "Audio CNN + GRU"
        TAGGER = "tagger", "Audio tagger"
        FORECAST = "forecast", "Stream forecaster"

    class Status(models.TextChoices):
        CANDIDATE = "candidate", "Candidate"
        CHAMPION = "champion", "Champion"
        RETIRED = "retired", "Retired"

    key = models.CharField(max_length=100, db_index=True, help_text='What the model is for, e.g. "campaign:12"')
    campaign_id = models.PositiveIntegerField(null=True, blank=True)
    ad_id = models.PositiveIntegerField(null=True, blank=True)
    audience_id = models.PositiveIntegerField(null=True, blank=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    version = models.PositiveIntegerField(help_text="1, 2, 3 … per key")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.CANDIDATE, db_index=True)
    metrics = models.JSONField(default=dict, blank=True, help_text="auc, log_loss, rmse, calibration …")
    features = models.JSONField(default=list, blank=True, help_text='[{"name": …, "importance": …}], most important first')
    artefact = models.CharField(max_length=300, help_text="Path under the model directory")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children")
    trained_on = models.JSONField(default=dict, blank=True, help_text="rows, window …")
    report = models.JSONField(default=dict, blank=True, help_text="The variable exploration report: criteria, bins, ROC, calibration")
    revision = models.PositiveIntegerField(default=0, help_text="Bumped when an online model's artefact is rewritten in place")
    created_at = models.DateTimeField(auto_now_add=True)
    promoted_at = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)
    rolled_back_at = models.DateTimeField(null=True, blank=True, help_text="Withdrawn by a roll back: never rolled back to")
    notes = models.TextField(blank=True)
    history = models.JSONField(default=list, blank=True, help_text='[{"action": …, "by": …, "at": …}]')

    objects = ModelVersionQuerySet.as_manager()

    class Meta:
        ordering = ["key", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["key", "version"], name="ml_modelversion_key_version"),
            # Serving loads "the" champion of a key: two would make the choice arbitrary.
            models.UniqueConstraint(fields=["key"], condition=Q(status="champion"), name="ml_modelversion_one_champion_per_key"),
        ]

    def __str__(self) -> str:
        return f"{self.key} v{self.version} ({self.status})"

    @property
    def badge(self) -> str:
        return {self.Status.CHAMPION: "success", self.Status.CANDIDATE: "info"}.get(self.status, "secondary")
