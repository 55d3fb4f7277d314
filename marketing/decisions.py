"""The decision engine: customer + placement → the ads to show, why, and with what probability.

Route: the placement's plan sends the customer to its first rule whose audience they are in
(targeted: one ad; ranked: several ads ranked by model), or to "everyone else" (by priority, or
ranked by model). Campaigns out of budget or ahead of their pacing are left out (spend.py).

Order: "ranked by model" explores — a uniformly random order, so the first slot is uniform over
the ads the caps allow — while any of the ads is still new (fewer than its campaign's exploration
impressions and younger than its exploration days, see rates.close_exploration). After that a
share ε keeps exploring and the rest is allocated by Thompson sampling around the model's
predictions for this customer (`allocate`): the campaign's champion model (marketing/learning.py)
or, before it has one, the interim per-segment rates. The logged propensity is the probability of
the logging policy putting the served ad in the first slot, mixing both branches, so off-policy
evaluation can reweight it.
The fit check, when the plan sets one, leaves out ads whose predicted response is under the
threshold; exploration is exempt so new ads can learn.

Caps are applied and the served ads recorded under the customer's lock (caps.serve); the decision
is logged and the serving cost accrued in the same transaction. A customer the plan offers nothing
is logged by one statement: no cap can bear on serving nothing, so there is nothing to lock or read.
`simulate` runs the same steps without writing and says why at each one.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Sequence

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from audiences.models import Customer, Persona

from ml import bandits

from . import caps, control, learning, rows, setup, spend
from .models import Ad, Decision, DeliveryPlan, Placement, PlanRule, ServedAd


@dataclass
class Route:
    """Which ads a customer is offered on a placement, and how they are to be ordered."""

    ads: list[Ad]
    order: str  # "one", "priority" or "model"
    rule: PlanRule | None = None
    plan: DeliveryPlan | None = None
    out_of_budget: dict[int, str] = field(default_factory=dict)  # campaign id → why
    steps: list[str] = field(default_factory=list)  # the route in words, for the simulate panel
    caps: list | None = None  # the placement's caps from its set-up (None: caps.serve queries them)


def route(customer: Customer, placement: Placement, now: datetime) -> Route:
    """The plan's answer for this customer, before caps (reads: the plan, servable ads, memberships)."""
    found = setup.setup_for(placement.slug)
    if found is None:
        return Route([], "priority", steps=["The placement no longer exists."])
    servable = {ad.pk: ad for ad in found.servable(now)}
    blocked = spend.budget_blocks({ad.campaign for ad in servable.values()}, now)
    servable = {pk: ad for pk, ad in servable.items() if ad.campaign_id not in blocked}
    plan = found.plan
    rules = list(plan.rules.all()) if plan else []
    gated = {a.campaign.persuadable_id for a in servable.values() if a.campaign.uplift_targeting and a.campaign.persuadable_id}
    asked = {r.audience_id for r in rules} | gated
    member_of = rows.memberships(customer, asked)
    steps = []
    unpersuaded = {a.campaign.name for a in servable.values() if a.campaign.persuadable_id in gated - member_of
                   and a.campaign.uplift_targeting}
    if unpersuaded:  # targeting by uplift: the campaign's model does not expect its ad to change this customer
        servable = {pk: a for pk, a in servable.items() if not (a.campaign.uplift_targeting and a.campaign.persuadable_id in gated - member_of)}
        steps.append(f"Not persuadable by {', '.join(f'“{n}”' for n in sorted(unpersuaded))} (targeting by uplift).")
    if plan is None:
        ads = sorted(servable.values(), key=lambda a: -a.priority)
        return Route(ads, "priority", None, None, blocked, [*steps, "No delivery plan: every servable ad, by priority."], found.caps)
    for n, rule in enumerate(rules, 1):
        if rule.audience_id not in member_of:
            steps.append(f"Rule {n}: not in “{rule.audience.name}”.")
            continue
        ads = [servable[a.pk] for a in rule.ads.all() if a.pk in servable]
        if not ads:
            steps.append(f"Rule {n}: in “{rule.audience.name}”, but none of its ads can serve now.")
            continue
        steps.append(f"Rule {n}: in “{rule.audience.name}” → {rule.get_mode_display().lower()}.")
        return Route(ads[:1] if rule.mode == PlanRule.Mode.ONE_AD else ads,
                     "one" if rule.mode == PlanRule.Mode.ONE_AD else "model", rule, plan, blocked, steps, found.caps)
    rest = plan.rest_pool(servable)
    steps.append(f"Everyone else: {plan.get_rest_display().lower()}.")
    if plan.rest == DeliveryPlan.Rest.NOTHING:
        return Route([], "priority", None, plan, blocked, steps, found.caps)
    if plan.rest == DeliveryPlan.Rest.MODEL:
        return Route(rest, "model", None, plan, blocked, steps, found.caps)
    return Route(sorted(rest, key=lambda a: -a.priority), "priority", None, plan, blocked, steps, found.caps)


@dataclass
class Policy:
    """The ads in the order caps will take them, the branch that ordered them, and what it needs for propensities."""

    ordered: list[Ad]
    reason: str
    epsilon: float = 0.0  # the share of exploration mixed into a model ranking (0 while exploring, where all is random)
    scores: dict[int, float] = field(default_factory=dict)
    unfit: dict[int, float] = field(default_factory=dict)  # ads the fit check left out, with their prediction
    model_version: str = ""
    # The model branch's policy: per scoring variant (champion, challenger), its share of requests and the
    # bandit's allocation over the ads it found fit. The propensity mixes them (see `propensity`).
    mixture: list[tuple[float, dict[int, float], dict[int, float]]] = field(default_factory=list)


def segment_of(customer: Customer) -> str:
    if not Customer.persona.is_cached(customer):
        return Persona.objects.filter(customer=customer).values_list("segment", flat=True).first() or ""
    try:  # the API loads the persona with the customer: no second query
        return customer.persona.segment or ""
    except Persona.DoesNotExist:
        return ""


def allocate(ads: Sequence[Ad], scores: dict[int, float], rng: random.Random) -> dict[int, float]:
    """Thompson sampling between the ads: each ad's chance of being the best under its posterior, floored.

    An ad's posterior is a Beta centred on the model's prediction for this customer, as sure as the
    ad's impressions so far (capped at BANDIT_MAX_STRENGTH): a well-known ad with the best
    prediction takes nearly all the traffic, a young one with a close prediction still gets its
    share, and no ad gets less than BANDIT_FLOOR. Probabilities, not one draw: the propensity
    logged is then exact (ml.bandits).
    """
    if len(ads) == 1:
        return {ads[0].pk: 1.0}
    strength = learning.arm_strength(ads)
    arms = [bandits.Arm(a.pk, successes=scores[a.pk] * strength[a.pk], failures=(1 - scores[a.pk]) * strength[a.pk])
            for a in ads]
    floor = min(settings.BANDIT_FLOOR, 1.0 / len(ads))
    shares = bandits.allocate(arms, floor=floor, rng=np.random.default_rng(rng.getrandbits(64)), draws=settings.BANDIT_DRAWS)
    return {a.pk: float(p) for a, p in zip(ads, shares)}


def _draw_order(ads: list[Ad], allocation: dict[int, float], scores: dict[int, float], rng: random.Random) -> list[Ad]:
    """Ads in a Plackett–Luce order of their shares: the first eligible one was picked with share / Σ eligible shares."""
    left, out = list(ads), []
    while left:
        total = sum(allocation[a.pk] for a in left)
        if total <= 0:  # only zero shares left: the model's order (a floor of 0 allows this)
            out += sorted(left, key=lambda a: (-scores[a.pk], a.pk))
            break
        x, acc = rng.random() * total, 0.0
        for i, ad in enumerate(left):
            acc += allocation[ad.pk]
            if x < acc or i == len(left) - 1:
                out.append(left.pop(i))
                break
    return out


def order(route_: Route, customer: Customer, rng: random.Random, now: datetime | None = None) -> Policy:
    ads = list(route_.ads)
    plan = route_.plan
    threshold = plan.fit_threshold if plan else None
    if route_.order == "model" and any(a.explored_at is None for a in ads):
        rng.shuffle(ads)
        return Policy(ads, Decision.Reason.EXPLORE)
    variants = []
    if ads and (route_.order == "model" or threshold is not None):
        variants = learning.variants(ads, customer, now or timezone.now(), segment_of(customer))
    chosen = variants[0] if variants else None
    if len(variants) > 1:  # champion or challenger, by their shares
        x, acc = rng.random(), 0.0
        for variant in variants:
            acc += variant.share
            if x < acc:
                chosen = variant
                break
        else:
            chosen = variants[-1]
    scores, version = (chosen.scores, chosen.label) if chosen else ({}, "")

    def fit_of(found: dict[int, float]) -> list[Ad]:
        return [a for a in ads if threshold is None or found[a.pk] >= threshold]

    unfit = {a.pk: scores[a.pk] for a in ads if threshold is not None and scores[a.pk] < threshold}
    fit = [a for a in ads if a.pk not in unfit]
    if route_.order == "model":
        epsilon = plan.epsilon if plan else 0.0
        mixture = []
        allocation = {}
        for variant in variants:
            found = fit_of(variant.scores)
            shares = allocate(found, variant.scores, rng) if found else {}
            mixture.append((variant.share, shares, variant.scores))
            if variant is chosen:
                allocation = shares
        if rng.random() < epsilon:
            rng.shuffle(ads)
            return Policy(ads, Decision.Reason.EXPLORE, epsilon, scores, {}, version, mixture)
        return Policy(_draw_order(fit, allocation, scores, rng), Decision.Reason.MODEL, epsilon, scores, unfit, version, mixture)
    if route_.order == "priority":  # ties in random order, so equal ads share the traffic
        fit.sort(key=lambda a: (-a.priority, rng.random()))
        return Policy(fit, Decision.Reason.PRIORITY, 0.0, scores, unfit)
    return Policy(fit, Decision.Reason.TARGETED, 0.0, scores, unfit)


def propensity(policy: Policy, eligible: Sequence[Ad], first: Ad | None, threshold: float | None = None) -> float:
    """P(the logging policy put `first` in the first slot), given the ads the caps allowed.

    Model-ranked: ε uniform over the eligible ads, plus 1 − ε times the first ad's share of the
    bandit's allocation over the eligible fit ads (the Plackett–Luce draw makes it exactly that),
    averaged over the scoring variants (champion, challenger) with their shares of requests.
    """
    if first is None or policy.reason == Decision.Reason.TARGETED:
        return 1.0
    if policy.reason == Decision.Reason.PRIORITY:
        top = max(a.priority for a in eligible)
        return 1.0 / sum(1 for a in eligible if a.priority == top)
    uniform = 1.0 / len(eligible)
    if not policy.scores:  # still exploring: uniform is the whole policy
        return uniform
    model = 0.0
    for share, allocation, scores in policy.mixture:
        fit = [a for a in eligible if a.pk in allocation]
        total = sum(allocation[a.pk] for a in fit)
        if total > 0:
            model += share * allocation.get(first.pk, 0.0) / total
        else:
            best = min(fit, key=lambda a: (-scores[a.pk], a.pk)) if fit else None
            model += share * (1.0 if best is not None and best.pk == first.pk else 0.0)
    return policy.epsilon * uniform + (1 - policy.epsilon) * model


def decide(customer: Customer, placement: Placement, *, context: dict | None = None, now: datetime | None = None,
           rng: random.Random | None = None) -> tuple[Decision, list[Ad]]:
    """Serve this customer on this placement: the ads, recorded with their caps and logged, in one transaction.

    When the plan offers the customer nothing, no cap can bear on the decision: it is logged by one
    statement, without the customer's lock, their history or a transaction around them.
    """
    now = now or timezone.now()
    planned = route(customer, placement, now)
    if not planned.ads:
        decision = Decision(id=uuid.uuid4(), customer=customer, placement=placement, rule=planned.rule, created_at=now,
                            eligible=[], chosen=[], reason=Decision.Reason.NONE, propensity=1.0, context=dict(context or {}))
        record(decision, [], Decimal(0), now)
        return decision, []
    if rows.can_ride():  # PostgreSQL in autocommit: BEGIN rides with the lock, COMMIT with the writes
        with rows.riding() as ride:
            return _serve(customer, placement, planned, context, now, rng or random.Random(), ride)
    with transaction.atomic():
        return _serve(customer, placement, planned, context, now, rng or random.Random(), None)


def _serve(customer: Customer, placement: Placement, planned: Route, context: dict | None, now: datetime,
           rng: random.Random, ride: rows.Ride | None) -> tuple[Decision, list[Ad]]:
    """Order, lock, cap, write: in one transaction, Django's (`atomic`) or one riding on the statements."""
    policy = order(planned, customer, rng, now)
    held = control.campaigns_holding_out(customer.pk, {a.campaign for a in planned.ads})
    withheld = [a for a in policy.ordered if a.campaign_id in held]
    if held:  # the campaign's control group: nothing of it is served, and the decision says what was withheld
        policy.ordered = [a for a in policy.ordered if a.campaign_id not in held]
    served = caps.serve(customer.pk, placement, policy.ordered, now=now, known_caps=planned.caps, record=False, ride=ride)
    ads = [s.ad for s in served.ads]
    threshold = planned.plan.fit_threshold if planned.plan else None
    eligible = served.eligible
    if policy.unfit:  # the exploring branch would have drawn from the unfit ads too: count them for the propensity
        offered = [a for a in planned.ads if a.campaign_id not in held]
        found = caps.bearing(planned.caps, placement, offered) if planned.caps is not None else caps.caps_for(placement, offered)
        eligible = caps.choose(offered, placement, found, caps.history(customer.pk, found, now), now, placement.slots)[2]
    context = dict(context or {})
    reason = policy.reason if ads else Decision.Reason.NONE
    chance = propensity(policy, eligible, ads[0] if ads else None, threshold)
    if withheld:
        context["control"] = _withheld(customer, placement, planned, withheld, now)
        if not ads:  # held out and nothing else served: a control decision, logged with P(held out)
            reason, chance = Decision.Reason.CONTROL, context["control"]["share"]
    decision = Decision(
        id=served.decision, customer=customer, placement=placement, rule=planned.rule, created_at=now,
        eligible=[a.pk for a in eligible], chosen=[a.pk for a in ads], reason=reason, propensity=chance,
        model_version=policy.model_version if ads else "", context=context,
    )
    record(decision, served.ads, spend.cost_of_serving(placement.channel), now, ride)
    return decision, ads


def record(decision: Decision, served: list[ServedAd], cost: Decimal, now: datetime, ride: rows.Ride | None = None) -> None:
    """Write the served ads, the decision and what serving them cost each campaign (under the customer's cap lock).

    On PostgreSQL one statement does all three (data-modifying CTEs; the ORM's three writes cost two
    more round trips and ~2 ms more per decision). The day's spend row (one of SPEND_SHARDS, by
    customer) is shared with other decisions of the campaign, so it is written last, and its row lock
    is held only until the commit that follows; a campaign's first serve of the day in a shard makes
    the row (spend.accrual_upsert). With a `ride`, the statement carries the transaction's COMMIT.
    """
    costs: dict[int, Decimal] = {}
    for row in served if cost else ():
        costs[row.campaign_id] = costs.get(row.campaign_id, 0) + cost
    shard = spend.shard_of(decision.customer_id)
    if connection.vendor != "postgresql":
        ServedAd.objects.bulk_create(served)
        decision.save(force_insert=True)
        for campaign_id, amount in sorted(costs.items()):
            spend.accrue(campaign_id, amount, now, shard)
        return
    parts, params = [], []
    if served:
        sql, values = rows.insert(served)
        parts.append(f"served AS ({sql})")
        params += values
    if costs:
        sql, values = spend.accrual_upsert(costs, now, shard)
        parts.append(f"spent AS ({sql})")
        params += values
    sql, values = rows.insert([decision])
    statement = (f"WITH {', '.join(parts)} " if parts else "") + sql + (ride.commit() if ride else "")
    with connection.cursor() as cursor:
        cursor.execute(statement, params + values)


def _withheld(customer: Customer, placement: Placement, planned: Route, withheld: list[Ad], now: datetime) -> dict:
    """What a held-out customer would have got (the first withheld ad the caps allow), its campaign and P(held out)."""
    found = caps.bearing(planned.caps, placement, withheld) if planned.caps is not None else caps.caps_for(placement, withheld)
    taken = caps.choose(withheld, placement, found, caps.history(customer.pk, found, now), now, 1)[0]
    ad = taken[0] if taken else withheld[0]
    campaign = ad.campaign
    share = settings.GLOBAL_CONTROL_SHARE if control.global_control(customer.pk) else campaign.control_share
    return {"campaign": campaign.pk, "ad": ad.pk, "capped": not taken, "share": float(share),
            "campaigns": sorted({a.campaign_id for a in withheld})}


@dataclass
class Why:
    """What a customer would get on a placement now, and the reasons at each step (nothing is written)."""

    customer: Customer
    placement: Placement
    route: Route
    policy: Policy
    would_serve: list[Ad]
    eligible: list[Ad]
    blocked: list[caps.Blocked]


def simulate(customer: Customer, placement: Placement, *, now: datetime | None = None, rng: random.Random | None = None) -> Why:
    """The decision without its side effects: which rule, which caps, which budget, which ads."""
    now = now or timezone.now()
    planned = route(customer, placement, now)
    policy = order(planned, customer, rng or random.Random(0), now)
    held = control.campaigns_holding_out(customer.pk, {a.campaign for a in planned.ads})
    if held:
        names = sorted({a.campaign.name for a in planned.ads if a.campaign_id in held})
        planned.steps.append(f"In the control group of {', '.join(f'“{n}”' for n in names)}: nothing of it is served.")
        policy.ordered = [a for a in policy.ordered if a.campaign_id not in held]
    found = caps.bearing(planned.caps, placement, policy.ordered) if planned.caps is not None else caps.caps_for(placement, policy.ordered)
    taken, blocked, eligible = caps.choose(policy.ordered, placement, found, caps.history(customer.pk, found, now), now,
                                           placement.slots)
    return Why(customer, placement, planned, policy, taken, eligible, blocked)
