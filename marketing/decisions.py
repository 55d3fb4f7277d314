"""The decision engine: customer + placement → the ads to show, why, and with what probability.

Route: the placement's plan sends the customer to its first rule whose audience they are in
(targeted: one ad; ranked: several ads ranked by model), or to "everyone else" (by priority, or
ranked by model). Until a campaign has a model, "ranked by model" explores: a uniformly random
order, so the first slot is uniform over the ads the caps allow and its propensity is 1 / their
number. Campaigns out of budget or ahead of their pacing are left out (spend.py). Caps are applied
and the served ads recorded under the customer's lock (caps.serve); the decision is logged and the
serving cost accrued in the same transaction.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from typing import Sequence

from django.db import transaction
from django.utils import timezone

from audiences.models import AudienceMember, Customer

from . import caps, spend
from .models import Ad, Decision, DeliveryPlan, Placement, PlanRule


@dataclass
class Route:
    """Which ads a customer is offered on a placement, and how they are ordered."""

    ads: list[Ad]
    order: str  # "one", "priority" or "explore"
    rule: PlanRule | None = None


def route(customer: Customer, placement: Placement, now: datetime) -> Route:
    """The plan's answer for this customer, before caps (reads: the plan, servable ads, memberships)."""
    servable = {ad.pk: ad for ad in Ad.objects.servable(placement, now).select_related("campaign")}
    blocked = spend.budget_blocks({ad.campaign for ad in servable.values()}, now)
    servable = {pk: ad for pk, ad in servable.items() if ad.campaign_id not in blocked}
    plan = DeliveryPlan.objects.filter(placement=placement).prefetch_related("rules__ads", "rest_ads").first()
    if plan is None:
        return Route(sorted(servable.values(), key=lambda a: -a.priority), "priority")  # no plan: every servable ad
    rules = list(plan.rules.all())
    member_of = set(AudienceMember.objects.filter(customer=customer, audience_id__in=[r.audience_id for r in rules])
                    .values_list("audience_id", flat=True))
    for rule in rules:
        if rule.audience_id not in member_of:
            continue
        ads = [servable[a.pk] for a in rule.ads.all() if a.pk in servable]
        if not ads:
            continue  # nothing of this rule can be served now: the next rule, or everyone else
        if rule.mode == PlanRule.Mode.ONE_AD:
            return Route(ads[:1], "one", rule)
        return Route(ads, "explore", rule)
    named = [a.pk for a in plan.rest_ads.all()]
    in_rules = {a.pk for r in rules for a in r.ads.all()}
    rest = [servable[pk] for pk in named if pk in servable] if named else [a for pk, a in servable.items() if pk not in in_rules]
    if plan.rest == DeliveryPlan.Rest.NOTHING:
        return Route([], "priority")
    if plan.rest == DeliveryPlan.Rest.MODEL:
        return Route(rest, "explore")
    return Route(sorted(rest, key=lambda a: -a.priority), "priority")


def _ordered(route_: Route, rng: random.Random) -> list[Ad]:
    if route_.order == "explore":
        ads = list(route_.ads)
        rng.shuffle(ads)
        return ads
    if route_.order == "priority":  # ties in random order, so equal ads share the traffic
        return sorted(route_.ads, key=lambda a: (-a.priority, rng.random()))
    return list(route_.ads)


def _propensity(route_: Route, eligible: Sequence[Ad], first: Ad | None) -> float:
    """P(the logging policy put `first` in the first slot), given the ads the caps allowed."""
    if first is None or route_.order == "one":
        return 1.0
    if route_.order == "explore":
        return 1.0 / len(eligible)
    top = max(a.priority for a in eligible)
    return 1.0 / sum(1 for a in eligible if a.priority == top)


REASONS = {"one": Decision.Reason.TARGETED, "explore": Decision.Reason.EXPLORE, "priority": Decision.Reason.PRIORITY}


@transaction.atomic
def decide(customer: Customer, placement: Placement, *, context: dict | None = None, now: datetime | None = None,
           rng: random.Random | None = None) -> tuple[Decision, list[Ad]]:
    """Serve this customer on this placement: the ads, recorded with their caps and logged, in one transaction."""
    now = now or timezone.now()
    rng = rng or random.Random()
    planned = route(customer, placement, now)
    served = caps.serve(customer.pk, placement, _ordered(planned, rng), now=now)
    ads = [s.ad for s in served.ads]
    first = ads[0] if ads else None
    cost = spend.cost_of_serving(placement.channel)
    for ad in ads:
        spend.accrue(ad.campaign_id, cost, now)
    decision = Decision.objects.create(
        id=served.decision, customer=customer, placement=placement, rule=planned.rule, created_at=now,
        eligible=[a.pk for a in served.eligible], chosen=[a.pk for a in ads],
        reason=REASONS[planned.order] if ads else Decision.Reason.NONE,
        propensity=_propensity(planned, served.eligible, first), context=context or {},
    )
    return decision, ads
