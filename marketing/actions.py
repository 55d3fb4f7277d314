"""State changes of the delivery configuration. The pages call these; forms only validate and shape."""

from __future__ import annotations

from typing import Iterable

from django.db import transaction
from django.utils import timezone

from accounts import audit
from ml.models import Job, enqueue

from .models import Ad, Campaign, Channel, DeliveryPlan, FrequencyCap, Placement, PlanRule


class Refused(ValueError):
    """The change is not allowed now; the message says why, for the operator."""


CAMPAIGN_FIELDS = ["name", "goal", "total_budget", "daily_budget", "target_cpa", "starts_at", "ends_at",
                   "explore_impressions", "explore_days", "attribution_minutes", "control_share", "uplift_targeting"]


@transaction.atomic
def save_channel(channel: Channel, *, by) -> Channel:
    before = audit.stored(channel, audit.editable_fields(Channel))
    channel.save()
    audit.record_save("channel", channel, before, by=by)
    return channel


@transaction.atomic
def save_placement(placement: Placement, *, by) -> Placement:
    before = audit.stored(placement, audit.editable_fields(Placement))
    placement.save()
    audit.record_save("placement", placement, before, by=by)
    return placement


@transaction.atomic
def create_campaign(campaign: Campaign, *, by) -> Campaign:
    """A new campaign starts as a draft owned by whoever made it."""
    campaign.owner = by
    campaign.status = Campaign.Status.DRAFT
    campaign.save()
    audit.record_save("campaign", campaign, None, by=by, fields=CAMPAIGN_FIELDS + ["status"])
    return campaign


@transaction.atomic
def update_campaign(campaign: Campaign, *, by) -> Campaign:
    """Save the editable settings only: the status changes through move_campaign, never through an edit."""
    before = audit.stored(campaign, CAMPAIGN_FIELDS)
    campaign.save(update_fields=CAMPAIGN_FIELDS + ["updated_at"])
    audit.record_save("campaign", campaign, before, by=by, fields=CAMPAIGN_FIELDS)
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
    before = locked.status
    locked.status = status
    locked.updated_at = timezone.now()
    locked.save(update_fields=["status", "updated_at"])
    audit.record("campaign.status", locked, by=by, changes={"status": [before, status]})
    return locked


AD_FIELDS = [f for f in audit.editable_fields(Ad) if f != "campaign"]


@transaction.atomic
def save_ad(ad: Ad, placements: Iterable[Placement], *, by) -> Ad:
    before = audit.stored(ad, AD_FIELDS)
    linked_before = sorted(ad.placements.values_list("slug", flat=True)) if ad.pk else []
    ad.save()
    ad.placements.set(placements)
    linked = sorted(ad.placements.values_list("slug", flat=True))
    audit.record_save("ad", ad, before, by=by, fields=AD_FIELDS, extra={"placements": [linked_before, linked]},
                      label=f"{ad.name} ({ad.campaign.name})")
    return ad


@transaction.atomic
def add_cap(cap: FrequencyCap, *, by) -> FrequencyCap:
    cap.save()
    audit.record_save("cap", cap, None, by=by)
    return cap


@transaction.atomic
def remove_cap(cap: FrequencyCap, *, by) -> None:
    held = audit.snapshot(cap, audit.editable_fields(FrequencyCap))
    audit.record("cap.delete", cap, by=by, changes={k: [v, None] for k, v in held.items() if v is not None})
    cap.delete()


@transaction.atomic
def save_plan(plan: DeliveryPlan, rest_ads: Iterable[Ad], rules: list[tuple[PlanRule, list[Ad]]],
              removed: Iterable[PlanRule], *, by) -> DeliveryPlan:
    """Save a placement's plan with its rules in the given order, in one transaction (a half-saved plan would serve)."""
    before = audit.stored(plan, ["rest", "epsilon", "fit_threshold"])
    rules_before = _plan_rules(plan) if plan.pk else []
    plan.save()
    plan.rest_ads.set(rest_ads)
    PlanRule.objects.filter(plan=plan, pk__in=[r.pk for r in removed if r.pk]).delete()
    for position, (rule, ads) in enumerate(rules):
        rule.plan = plan
        rule.position = position
        rule.save()
        rule.ads.set(ads)
    after = audit.snapshot(plan, ["rest", "epsilon", "fit_threshold"])
    diff = audit.changes(before, after)
    rules_after = _plan_rules(plan)
    if rules_after != rules_before:
        diff["rules"] = [rules_before, rules_after]
    if before is None or diff:
        audit.record("plan.save", plan, by=by, changes=diff, label=f"plan of {plan.placement.slug}")
    return plan


def _plan_rules(plan: DeliveryPlan) -> list[str]:
    """A plan's rules as readable lines, for its audit entry."""
    return [f"{rule.audience.name}: {rule.get_mode_display().lower()} {', '.join(a.name for a in rule.ads.all())}"
            for rule in plan.rules.select_related("audience").prefetch_related("ads").order_by("position", "pk")]


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
