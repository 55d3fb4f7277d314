"""Delivery's background work: response rates and the end of exploration (every minute), campaign models."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="marketing.refresh_rates", acks_late=True, ignore_result=True)
def refresh_rates() -> dict:
    """Recount response rates per ad and segment and close finished explorations (idempotent: a recount)."""
    from . import rates

    return rates.refresh()


@shared_task(name="marketing.compact_reservations", acks_late=True, ignore_result=True)
def compact_reservations(rounds: int = 100) -> int:
    """Every few seconds: delivery-list reservations held in batch arrays become served-ad rows (idempotent).

    Runs until none is left (at most `rounds` × 100 batches); returns the rows written."""
    from .delivery_lists import compact
    from .models import DeliveryBatch

    written = 0
    for _ in range(rounds):
        written += compact()
        if not DeliveryBatch.objects.filter(pending_customers__isnull=False).exists():
            break
    return written


@shared_task(name="marketing.train_campaign_model", acks_late=True)
def train_campaign_model(job_id: int, campaign_id: int) -> None:
    """Build the campaign's next model from its logs, gate it, promote it if it is shown better (ml queue).

    Idempotent: a retried attempt retrains unless the killed one already registered its candidate
    (found by job id), which it then only finishes; nothing is half-written (the file, then the row).
    """
    from ml.automodel import NotEnoughData
    from ml.models import running

    from . import learning
    from .models import Campaign

    with running(job_id) as job:
        if job is None:
            return
        campaign = Campaign.objects.get(pk=campaign_id)
        try:
            job.result = learning.build_model(campaign, by=job.created_by, progress=job.report, job_id=job.pk)
        except NotEnoughData as exc:
            job.result = {"skipped": str(exc)}
            job.message = f"Not trained yet, it tries again by itself: {exc}"[:300]
        else:
            job.message = (f"v{job.result['number']} {job.result['kind']}, AUC {job.result['auc']:.3f}: "
                           + ("promoted to champion" if job.result["promoted"] else "kept as a candidate"))


@shared_task(name="marketing.retrain_models", acks_late=True, ignore_result=True)
def retrain_models() -> int:
    """On the beat schedule: every serving campaign with explored, model-ranked ads trains again (each its own job)."""
    from . import learning
    from .actions import queue_model_training
    from .models import Campaign

    ids = learning.campaigns_to_train()
    for campaign in Campaign.objects.filter(pk__in=ids):
        queue_model_training(campaign, by=None)
    return len(ids)


@shared_task(name="marketing.update_online_models", acks_late=True, ignore_result=True)
def update_online_models() -> dict:
    """Every minute: each champion's FTRL correction learns from the decisions whose window closed (idempotent: a cursor)."""
    from . import learning
    from .models import Campaign

    done = {}
    for campaign in Campaign.objects.filter(pk__in=learning.campaigns_with_champions()):
        done[campaign.pk] = learning.update_online(campaign)
    return done


@shared_task(name="marketing.train_uplift_model", acks_late=True)
def train_uplift_model(job_id: int, campaign_id: int) -> None:
    """Fit the uplift learners on the campaign's treated and control decisions, register the best by Qini (ml queue)."""
    from ml.automodel import NotEnoughData
    from ml.models import running

    from . import incrementality
    from .models import Campaign

    with running(job_id) as job:
        if job is None:
            return
        campaign = Campaign.objects.get(pk=campaign_id)
        try:
            job.result = incrementality.build_uplift_model(campaign, by=job.created_by, progress=job.report, job_id=job.pk)
        except NotEnoughData as exc:
            job.result = {"skipped": str(exc)}
            job.message = f"Not trained yet: {exc}"[:300]
        else:
            qini = job.result["qini"]
            job.message = f"v{job.result['number']} {job.result['learner'].replace('_', ' ')}, Qini " + (
                f"{qini:.3f}" if qini is not None else "undefined")


@shared_task(name="marketing.retrain_uplift_models", acks_late=True, ignore_result=True)
def retrain_uplift_models() -> int:
    """Nightly: every serving campaign with a control group learns its uplift again (each its own job)."""
    from .actions import queue_uplift_training
    from .models import Campaign

    campaigns = list(Campaign.objects.filter(status__in=Campaign.SERVING, control_share__gt=0))
    for campaign in campaigns:
        queue_uplift_training(campaign, by=None)
    return len(campaigns)


@shared_task(name="marketing.fit_mix_model", acks_late=True)
def fit_mix_model(job_id: int, model_id: int) -> None:
    """Fit a marketing-mix model with validation and bootstrap intervals (ml queue); a retry refits from scratch."""
    from ml.models import running

    from . import mix
    from .models import MixModel

    with running(job_id) as job:
        if job is None:
            return
        model = mix.fit(MixModel.objects.select_related("dataset").get(pk=model_id), progress=job.report)
        m = model.metrics
        job.result = {"model": model.pk, **{k: m.get(k) for k in ("r2_holdout", "nrmse_holdout", "mape_holdout")}}
        job.message = (f"Fitted: holdout R² {m['r2_holdout']:.3f}, NRMSE {m['nrmse_holdout']:.3f}"
                       if m.get("r2_holdout") is not None else "Fitted")
