"""Response rates per ad and value segment, the end of exploration, and the interim ranking model.

Until auto-modelling trains a model per campaign, "ranked by model" ranks ads by their smoothed
response rate in the customer's value segment (the campaign's goal counts as a response), and the
fit check compares the same prediction with the plan's threshold. A Celery beat task refreshes
the rates every minute and closes the exploration of ads that have had enough impressions or days;
the decision path reads the rates through a short in-process cache.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from typing import Sequence

from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from config.held import refreshed

from .models import Ad, Campaign, Event, ResponseRate, ServedAd

# Which events answer a campaign's goal.
GOAL_EVENTS = {
    Campaign.Goal.CLICK: ("click",),
    Campaign.Goal.STREAM: ("play",),
    Campaign.Goal.CONVERSION: ("conversion", "subscribe", "purchase"),
    Campaign.Goal.REVENUE: ("purchase", "conversion", "subscribe"),
}
# Pseudo-impressions of the prior: a segment's rate leans on the ad's overall rate until it has data,
# and the ad's overall rate on the average of the ads compared until it has data.
SMOOTHING = 50
DEFAULT_PRIOR = 0.02
MODEL_VERSION = "response-rates"
AWAIT_RETRY = timedelta(minutes=10)


def refresh(now: datetime | None = None) -> dict:
    """Recount served and responded per ad and segment for serving campaigns; end exploration that is done."""
    now = now or timezone.now()
    ads = {a.pk: a for a in Ad.objects.filter(campaign__status__in=Campaign.SERVING).select_related("campaign")}
    if not ads:
        return {"ads": 0, "explored": 0}
    served = (ServedAd.objects.filter(ad_id__in=list(ads)).values("ad_id", "customer__persona__segment")
              .annotate(n=Count("id")))
    goal_types = Q()
    for goal, types in GOAL_EVENTS.items():
        goal_types |= Q(campaign__goal=goal, type__in=types)
    responded = (Event.objects.filter(goal_types, ad_id__in=list(ads), decision__isnull=False)
                 .values("ad_id", "customer__persona__segment").annotate(n=Count("decision_id", distinct=True)))
    counts: dict[tuple[int, str], list[int]] = {}
    for row in served:
        for key in ((row["ad_id"], row["customer__persona__segment"] or ""), (row["ad_id"], "")):
            counts.setdefault(key, [0, 0])[0] += row["n"]
    for row in responded:
        for key in ((row["ad_id"], row["customer__persona__segment"] or ""), (row["ad_id"], "")):
            counts.setdefault(key, [0, 0])[1] += row["n"]
    rows = [ResponseRate(ad_id=ad, segment=seg, served=s, responded=min(r, s), updated_at=now)
            for (ad, seg), (s, r) in counts.items()]
    with transaction.atomic():
        ResponseRate.objects.bulk_create(rows, update_conflicts=True, unique_fields=["ad", "segment"],
                                         update_fields=["served", "responded", "updated_at"])
    explored = close_exploration(ads.values(), {ad: s for (ad, seg), (s, _) in counts.items() if seg == ""}, now)
    from .learning import record_traffic

    return {"ads": len(ads), "explored": explored, "trainings": train_awaiting(now), "challengers": record_traffic(now)}


def train_awaiting(now: datetime) -> int:
    """Queue a training for campaigns whose ads explored but that have no champion yet, backing off as attempts fail.

    The first training after an exploration often finds too few responses whose attribution
    window has closed, or a model the gate cannot show better yet; this tries again after
    AWAIT_RETRY, then twice that after a candidate was refused, three times after two …, up to
    the scheduled retrain, instead of waiting hours for it or filling the registry.
    """
    from django.conf import settings

    from ml.models import ModelVersion

    from .actions import queue_model_training
    from .learning import campaigns_to_train, model_key

    queued = 0
    for campaign in Campaign.objects.filter(pk__in=campaigns_to_train()).select_related("model_job"):
        versions = ModelVersion.objects.filter(key=model_key(campaign.pk))
        if versions.champions().exists():
            continue
        wait = min(AWAIT_RETRY * (1 + versions.count()), timedelta(hours=settings.RETRAIN_HOURS))
        job = campaign.model_job
        if job is not None and (not job.is_finished or (job.finished_at and job.finished_at > now - wait)):
            continue
        queue_model_training(campaign, by=None)
        queued += 1
    return queued


def close_exploration(ads, impressions: dict[int, int], now: datetime) -> int:
    """Mark ads whose exploration is over and start their campaign's model; a campaign whose active ads have all explored goes live."""
    ranked = ranked_ads()
    done = [a.pk for a in ads if a.explored_at is None and (
        a.pk not in ranked  # only ads a model ranks need exploring; a targeted or priority ad has nothing to learn first
        or impressions.get(a.pk, 0) >= a.campaign.explore_impressions
        or a.created_at <= now - timedelta(days=a.campaign.explore_days))]
    if done:
        Ad.objects.filter(pk__in=done, explored_at__isnull=True).update(explored_at=now)
        learned = {a.campaign for a in ads if a.pk in done and a.pk in ranked}
        if learned:  # they have explored: each campaign builds its model now (the Celery job gates it)
            from .actions import queue_model_training

            for campaign in learned:
                queue_model_training(campaign, by=None)
    still = Ad.objects.filter(status=Ad.Status.ACTIVE, explored_at__isnull=True).values("campaign_id")
    went_live = Campaign.objects.filter(status=Campaign.Status.EXPLORING, ads__isnull=False).exclude(pk__in=still).update(
        status=Campaign.Status.LIVE, updated_at=now)
    if done or went_live:
        from .setup import changed

        changed()  # decisions hold ads in their set-up cache: the ones that explored now rank by model
    return len(done)


def ranked_ads() -> set[int]:
    """Ads some plan ranks by model: those of ranked rules, and everyone else's when the plan ranks them."""
    from .models import DeliveryPlan, PlanRule

    ranked = set(PlanRule.objects.filter(mode=PlanRule.Mode.RANKED).values_list("ads", flat=True))
    for plan in DeliveryPlan.objects.filter(rest=DeliveryPlan.Rest.MODEL).prefetch_related("rest_ads", "rules__ads"):
        ranked |= {a.pk for a in plan.rest_pool({a.pk: a for a in Ad.objects.filter(placements=plan.placement_id)})}
    ranked.discard(None)
    return ranked


_cache: dict[frozenset, tuple[float, dict]] = {}
CACHE_SECONDS = 30


def rates_for(ad_ids: Sequence[int]) -> dict[tuple[int, str], tuple[int, int]]:
    """(ad, segment) → (served, responded) for these ads, from a 30-second in-process cache."""
    key = frozenset(ad_ids)
    hit = _cache.get(key)
    if hit:
        if hit[0] > time.monotonic():
            return hit[1]
        return refreshed(_rereading, hit[1], lambda: _read_rates(key))  # one thread re-reads
    return _read_rates(key)


_rereading = threading.Lock()


def _read_rates(key: frozenset) -> dict[tuple[int, str], tuple[int, int]]:
    found = {(ad, seg): (s, r) for ad, seg, s, r in
             ResponseRate.objects.filter(ad_id__in=key).values_list("ad_id", "segment", "served", "responded")}
    if len(_cache) > 1000:
        _cache.clear()
    _cache[key] = (time.monotonic() + CACHE_SECONDS, found)
    return found


def forget() -> None:
    """Drop the cache (tests, and a process that has just refreshed the rates)."""
    _cache.clear()


def predict(ads: Sequence[Ad], segment: str) -> dict[int, float]:
    """Each ad's predicted response for a customer of this segment: the segment's rate shrunk to the ad's, and that to the prior."""
    rates = rates_for([a.pk for a in ads])
    served = sum(rates.get((a.pk, ""), (0, 0))[0] for a in ads)
    responded = sum(rates.get((a.pk, ""), (0, 0))[1] for a in ads)
    prior = (responded + SMOOTHING * DEFAULT_PRIOR) / (served + SMOOTHING)
    out = {}
    for ad in ads:
        s_all, r_all = rates.get((ad.pk, ""), (0, 0))
        overall = (r_all + SMOOTHING * prior) / (s_all + SMOOTHING)
        s_seg, r_seg = rates.get((ad.pk, segment), (0, 0)) if segment else (0, 0)
        out[ad.pk] = (r_seg + SMOOTHING * overall) / (s_seg + SMOOTHING)
    return out
