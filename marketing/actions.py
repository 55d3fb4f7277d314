"""State changes of the delivery configuration. The pages call these; forms only validate and shape."""

from __future__ import annotations

from typing import Iterable

from django.db import transaction
from django.utils import timezone

from ml.models import Job, enqueue

from .models import Ad, Campaign, Channel, DeliveryPlan, FrequencyCap, Placement, PlanRule


class Refused(ValueError):
    """The change is not allowed now; the message says why, for the operator."""


CAMPAIGN_FIELDS = ["name", "goal", "total_budget", "daily_budget", "target_cpa", "starts_at", "ends_at",
                   "explore_impressions", "explore_days", "attribution_minutes", "control_share", "uplift_targeting"]


def save_channel(channel: Channel) -> Channel:
    channel.save()
    return channel


def save_placement(placement: Placement) -> Placement:
    placement.save()
    return placement


def create_campaign(campaign: Campaign, *, by) -> Campaign:
    """A new campaign starts as a draft owned by whoever made it."""
    campaign.owner = by
    campaign.status = Campaign.Status.DRAFT
    campaign.save()
    return campaign


def update_campaign(campaign: Campaign) -> Campaign:
    """Save the editable settings only: the status changes through move_campaign, never through an edit."""
    campaign.save(update_fields=CAMPAIGN_FIELDS + ["updated_at"])
    return campaign


@transaction.atomic
def move_campaign(campaign: Campaign, status: str, *, by) -> Campaign:
    """Move a campaign along its lifecycle (Campaign.TRANSITIONS), under a row lock so two clicks cannot both win."""
    locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
    if status not in Campaign.Status.values:
        raise Refused(f"“{status}” is not a campaign status.")
    if not locked.can_move_to(status):
        allowed = ", ".join(sorted(Campaign.TRANSITIONS[Campaign.Status(locked.status)])) or "none: it is final"
        raise Refused(f"A {locked.status} campaign cannot become {status} (allowed: {allowed}).")
    if status in Campaign.SERVING and not locked.ads.filter(status=Ad.Status.ACTIVE, placements__isnull=False).exists():
        raise Refused("Add an active ad with a placement first: a campaign with nothing to show cannot serve.")
    locked.status = status
    locked.updated_at = timezone.now()
    locked.save(update_fields=["status", "updated_at"])
    return locked


@transaction.atomic
def save_ad(ad: Ad, placements: Iterable[Placement]) -> Ad:
    ad.save()
    ad.placements.set(placements)
    return ad


def add_cap(cap: FrequencyCap) -> FrequencyCap:
    cap.save()
    return cap


def remove_cap(cap: FrequencyCap) -> None:
    cap.delete()


@transaction.atomic
def save_plan(plan: DeliveryPlan, rest_ads: Iterable[Ad], rules: list[tuple[PlanRule, list[Ad]]],
              removed: Iterable[PlanRule]) -> DeliveryPlan:
    """Save a placement's plan with its rules in the given order, in one transaction (a half-saved plan would serve)."""
    plan.save()
    plan.rest_ads.set(rest_ads)
    PlanRule.objects.filter(plan=plan, pk__in=[r.pk for r in removed if r.pk]).delete()
    for position, (rule, ads) in enumerate(rules):
        rule.plan = plan
        rule.position = position
        rule.save()
        rule.ads.set(ads)
    return plan


@transaction.atomic
def queue_model_training(campaign: Campaign, *, by) -> Job:
    """Train the campaign's next model (then gate it); a training already queued or running is returned instead.

    The campaign row is locked so the beat schedule, the end of an exploration and a click cannot
    queue two trainings of one campaign at once. `.update`, not save: the delivery set-up does not change.
    """
    from .tasks import train_campaign_model

    campaign = Campaign.objects.select_for_update(of=("self",)).select_related("model_job").get(pk=campaign.pk)
    if campaign.model_job is not None and not campaign.model_job.is_finished:
        return campaign.model_job
    job = Job.objects.create(kind="campaign_model", title=f"Model for “{campaign.name}”", created_by=by)
    Campaign.objects.filter(pk=campaign.pk).update(model_job=job)
    enqueue(train_campaign_model, job, campaign.pk)
    return job


@transaction.atomic
def queue_uplift_training(campaign: Campaign, *, by) -> Job:
    """Train the campaign's uplift model; one already queued or running for it is returned instead."""
    from .tasks import train_uplift_model

    Campaign.objects.select_for_update(of=("self",)).get(pk=campaign.pk)
    title = f"Uplift model for “{campaign.name}”"
    running = Job.objects.unfinished().filter(kind="uplift_model", title=title).first()
    if running is not None:
        return running
    job = Job.objects.create(kind="uplift_model", title=title, created_by=by)
    enqueue(train_uplift_model, job, campaign.pk)
    return job
