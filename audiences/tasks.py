"""Celery tasks of the audiences app: they take ids, are idempotent, and report progress on a Job."""

from __future__ import annotations

from celery import shared_task
from django.db import transaction

from ml.models import Job, running

from .models import DataImport, PersonaSettings


@shared_task(name="audiences.run_import", acks_late=True)
def run_import(job_id: int, import_id: int) -> None:
    """Load an uploaded file. Rows are upserted, so a retry after a crash duplicates nothing."""
    from . import imports

    data_import = DataImport.objects.get(pk=import_id)
    DataImport.objects.filter(pk=import_id).update(status=DataImport.Status.RUNNING)
    try:
        with running(job_id) as job:
            if job is None:  # already done, or given up after repeated worker deaths
                done = Job.objects.filter(pk=job_id, status=Job.Status.SUCCEEDED).exists()
                DataImport.objects.filter(pk=import_id).update(status=DataImport.Status.DONE if done else DataImport.Status.FAILED)
                return
            imports.run_import(data_import, progress=job.report, keep_extra=data_import.keep_extra)
            job.result = {
                "rows": data_import.rows_total,
                "ok": data_import.rows_ok,
                "failed": data_import.rows_failed,
                "created": data_import.rows_created,
            }
            job.message = (
                f"{data_import.rows_ok:,} rows loaded ({data_import.rows_created:,} new), "
                f"{data_import.rows_failed:,} rejected"
            )
            # Before the job is marked succeeded: whoever sees the job done must see the import done.
            DataImport.objects.filter(pk=import_id).update(status=DataImport.Status.DONE)
    except Exception:
        DataImport.objects.filter(pk=import_id).update(status=DataImport.Status.FAILED)
        raise


@shared_task(name="audiences.build_personas", acks_late=True)
def build_personas(job_id: int | None = None, full: bool = False) -> None:
    """Rebuild personas; beat calls it without a job, so one is created here then."""
    from .actions import persona_job
    from .personas import build_personas as build

    if job_id is None:
        with transaction.atomic():
            job_id = persona_job(full=full, by=None).pk
    with running(job_id) as job:
        if job is None:
            return
        if not PersonaSettings.claim_build(job_id):
            job.message = "Skipped: another persona build is running"
            return
        try:
            summary = build(full=full, progress=job.report)
        finally:
            PersonaSettings.release_build(job_id)
        job.result = {k: v for k, v in summary.items() if isinstance(v, (int, float, str, dict, list))}
        job.message = f"{summary.get('customers_rebuilt', 0):,} personas rebuilt"


@shared_task(name="audiences.refresh_audiences", acks_late=True)
def refresh_audiences(job_id: int | None = None) -> None:
    """Re-materialise every rule audience's and lookalike's membership (scheduled after the persona builds)."""
    from .actions import refresh_membership
    from .models import Audience

    if job_id is None:
        job_id = Job.objects.create(kind="audiences", title="Refresh audience memberships").pk
    with running(job_id) as job:
        if job is None:
            return
        # Rule audiences first: a lookalike's members leave out its seed's members as they are now.
        audiences = [*Audience.objects.rule_based(), *lookalikes_in_seed_order()]
        failed = []
        for n, audience in enumerate(audiences):
            try:
                refresh_membership(audience)
            except Exception as exc:  # one broken audience must not leave all the others stale
                failed.append(f"{audience.name}: {type(exc).__name__}: {exc}")
            job.report((n + 1) / max(len(audiences), 1), f"{n + 1} of {len(audiences)} audiences refreshed")
        job.message = f"{len(audiences) - len(failed)} audiences refreshed" + (f", {len(failed)} failed" if failed else "")
        if failed:
            job.result = {"failed": failed}


@shared_task(name="audiences.train_lookalike", acks_late=True)
def train_lookalike(job_id: int, lookalike_id: int) -> None:
    """Train a lookalike, score the base and refresh its members (on the ml queue: xgboost runs here)."""
    from . import lookalikes
    from .models import Lookalike

    with running(job_id) as job:
        if job is None:
            return
        lookalike = Lookalike.objects.select_related("audience", "seed").get(pk=lookalike_id)
        summary = lookalikes.build(lookalike, progress=job.report)
        job.result = summary
        job.message = (f"AUC {summary['auc']:.3f} · {summary['seed']:,} seed members · "
                       f"{summary['candidates']:,} customers ranked")


@shared_task(name="audiences.retrain_lookalikes", acks_late=True)
def retrain_lookalikes() -> int:
    """Nightly: every lookalike learns again from its seed as it is now (each in its own job)."""
    from .actions import queue_lookalike_training
    from .models import Lookalike

    lookalikes = list(Lookalike.objects.select_related("audience"))
    for lookalike in lookalikes:
        queue_lookalike_training(lookalike, by=None)  # skips one whose training is still queued or running
    return len(lookalikes)


def lookalikes_in_seed_order() -> list:
    """Lookalike audiences, each after any lookalike that is its seed, so it excludes its seed as it is now."""
    from .models import Audience, Lookalike

    seeds = dict(Lookalike.objects.values_list("audience_id", "seed_id"))
    ordered: list[int] = []

    def visit(pk: int, path: tuple = ()) -> None:
        if pk in ordered or pk in path:
            return
        if seeds.get(pk) in seeds:
            visit(seeds[pk], (*path, pk))
        ordered.append(pk)

    for pk in seeds:
        visit(pk)
    by_pk = Audience.objects.in_bulk(ordered)
    return [by_pk[pk] for pk in ordered if pk in by_pk]


# -- music intelligence (issue 8): the glue lives in recommend.py, audio_jobs.py and forecasts.py ----------------


@shared_task(name="audiences.build_recommendations", acks_late=True)
def build_recommendations(job_id: int | None = None, model: str = "als") -> None:
    """Fit the recommender on everyone's plays, store top items, similar items and embeddings (idempotent: rows replaced)."""
    from . import recommend

    if job_id is None:  # the nightly beat run
        job_id = Job.objects.create(kind="recommendations", title="Recommendations").pk
    with running(job_id) as job:
        if job is None:
            return
        job.result = recommend.build(model, progress=job.report)
        job.message = recommend.summary(job.result)


@shared_task(name="audiences.analyse_audio", acks_late=True)
def analyse_audio(job_id: int, analysis_id: int) -> None:
    """Decode an uploaded recording, find its chorus, describe, tag and score it (a retry analyses again)."""
    from . import audio_jobs
    from .models import AudioAnalysis

    with running(job_id) as job:
        if job is None:
            return
        analysis = audio_jobs.analyse(AudioAnalysis.objects.select_related("item").get(pk=analysis_id), progress=job.report)
        job.result = {"analysis": analysis.pk, "status": analysis.status, "hit_score": analysis.hit_score}
        job.message = audio_jobs.summary(analysis)


@shared_task(name="audiences.train_audio_models", acks_late=True)
def train_audio_models(job_id: int) -> None:
    """Learn the hit model and the genre / mood tagger from the catalogue's audio against its engagement."""
    from . import audio_jobs

    with running(job_id) as job:
        if job is None:
            return
        job.result = audio_jobs.train(progress=job.report)
        job.message = audio_jobs.training_summary(job.result)


@shared_task(name="audiences.train_forecaster", acks_late=True)
def train_forecaster(job_id: int | None = None) -> None:
    """Learn the stream forecaster from the catalogue's release history, then forecast every recent release."""
    from . import forecasts

    if job_id is None:
        job_id = Job.objects.create(kind="stream_forecast", title="Stream forecasts").pk
    with running(job_id) as job:
        if job is None:
            return
        job.result = forecasts.train_and_forecast(progress=job.report)
        job.message = forecasts.summary(job.result)


@shared_task(name="audiences.sync_analytics_copy", acks_late=True)
def sync_analytics_copy(full: bool = False) -> dict:
    """Bring the analytics copy up to date (every ANALYTICS_COPY_MINUTES; a no-op while the base is small)."""
    from . import columnar

    copy = columnar.sync(full=full)
    return {"rows": copy.rows, "synced_at": copy.synced_at.isoformat()} if copy else {}
