"""Learning from exploration: the platform's own loop against the traffic simulator's hidden ground truth.

    .venv/bin/python bench/automodel.py [--customers 4000] [--explore 9000] [--evaluate 2000]

On a fresh SQLite database in a temporary folder (or on DATABASE_URL when it names one: use a database of
its own, the bench adds a campaign, decisions and events to it). Steps, through the product's own code:

1. the demo's listeners (seed_demo) and a campaign with the simulator's three upsell ads (Student
   discount, Family plan, Duo for two), goal click, on a push placement whose plan ranks them by model;
2. exploration: `decisions.decide` for listeners drawn at random, spread over the last day; each
   listener clicks with the probability the simulator's hidden truth gives (marketing/simulator.py,
   which the platform never reads), recorded as events answering the decision;
3. the minute's `rates.refresh` ends the exploration, which queues the campaign's training; the Celery
   task runs in-process here (eager), so the real task assembles, trains, gates and promotes;
4. evaluation on other listeners: the policy as served (ε uniform + Thompson sampling around the
   champion's predictions, `decisions.allocate`) against uniform random and against the oracle that
   knows the truth; the value of each is its expected true click rate.

Prints `name: value` lines, `policy_vs_random` and `policy_vs_oracle` (ratios of expected click rates).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ADS = ("Student discount", "Family plan", "Duo for two")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=4000, help="demo listeners to seed when the database has none")
    parser.add_argument("--explore", type=int, default=9000, help="exploration decisions")
    parser.add_argument("--evaluate", type=int, default=2000, help="listeners the learnt policy is evaluated on")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    sys.path.insert(0, str(ROOT))
    from demo_db import start_django_on_own_database

    start_django_on_own_database("automodel")
    from django.conf import settings
    from django.core.management import call_command
    from django.utils import timezone

    from audiences.models import Customer, PersonaSnapshot
    from config.celery import app
    from marketing import decisions, learning, rates, simulator
    from marketing.models import Ad, Campaign, Channel, DeliveryPlan, Event, Placement
    from ml.models import ModelVersion

    app.conf.task_always_eager = True  # the training task runs here, in this process, as a worker would run it
    settings.DELIVERY_SETUP_SECONDS = 0
    call_command("migrate", verbosity=0)
    if not Customer.objects.exists():
        call_command("seed_demo", "--customers", str(args.customers), "--seed", "7", verbosity=0)

    now = timezone.now()
    channel, _ = Channel.objects.get_or_create(name="Bench push", defaults={"kind": Channel.Kind.PUSH})
    placement, _ = Placement.objects.get_or_create(slug="bench-push", defaults={"name": "Bench push", "channel": channel})
    campaign = Campaign.objects.create(name=f"Automodel bench {now:%Y-%m-%d %H:%M:%S.%f}", goal=Campaign.Goal.CLICK,
                                       status=Campaign.Status.EXPLORING, explore_impressions=args.explore // (2 * len(ADS)),
                                       explore_days=3, attribution_minutes=10)
    ads = []
    for name in ADS:
        ad = Ad.objects.create(campaign=campaign, name=name)
        ad.placements.set([placement])
        ads.append(ad)
    DeliveryPlan.objects.filter(placement=placement).delete()
    plan = DeliveryPlan.objects.create(placement=placement, rest=DeliveryPlan.Rest.MODEL, epsilon=0.05)
    plan.rest_ads.set(ads)

    people = list(Customer.objects.filter(persona__isnull=False).values_list("pk", flat=True))
    rng = random.Random(args.seed)
    rng.shuffle(people)
    evaluate, explore_pool = people[: args.evaluate], people[args.evaluate:]

    started = time.perf_counter()
    start = now - timedelta(days=1)
    # The demo's personas were just built; the simulated day of exploration starts after them.
    PersonaSnapshot.objects.filter(valid_from__gt=start).update(valid_from=start - timedelta(hours=1))
    clicks = served = 0
    for i in range(args.explore):
        customer = Customer.objects.select_related("persona").get(pk=rng.choice(explore_pool))
        at = start + timedelta(seconds=i * (20 * 3600 / args.explore))
        decision, shown = decisions.decide(customer, placement, now=at, rng=random.Random(rng.getrandbits(64)))
        if not shown:
            continue
        served += 1
        truth = simulator.truth(shown[0].name, campaign.goal, simulator.Profile.of(customer))
        if rng.random() < truth.click:
            clicks += 1
            Event.objects.create(source="bench", key=f"{campaign.pk}-{i}", type="click", customer=customer, decision=decision,
                                 ad=shown[0], campaign=campaign, occurred_at=at + timedelta(seconds=30))
    explore_seconds = time.perf_counter() - started

    started = time.perf_counter()
    rates.refresh(now)  # ends the exploration → queues the training → the task runs (eager)
    train_seconds = time.perf_counter() - started
    rates.forget()
    campaign.refresh_from_db()
    job = campaign.model_job
    version = ModelVersion.objects.filter(key=learning.model_key(campaign.pk)).order_by("-version").first()
    if version is None or version.status != ModelVersion.Status.CHAMPION:
        why = (job.message or job.error) if job else "no training was queued"
        sys.exit(f"no champion after exploration: {why}")

    ads = list(Ad.objects.filter(pk__in=[a.pk for a in ads]).select_related("campaign", "promoted_item"))
    v_random = v_policy = v_oracle = 0.0
    pick = random.Random(args.seed + 1)
    for pk in evaluate:
        customer = Customer.objects.select_related("persona").get(pk=pk)
        profile = simulator.Profile.of(customer)
        truth = {a.pk: simulator.truth(a.name, campaign.goal, profile).click for a in ads}
        scores, _ = learning.scores(ads, customer, now, decisions.segment_of(customer))
        allocation = decisions.allocate(ads, scores, pick)
        model = sum(allocation[a.pk] * truth[a.pk] for a in ads)
        uniform = sum(truth.values()) / len(ads)
        v_random += uniform
        v_policy += plan.epsilon * uniform + (1 - plan.epsilon) * model
        v_oracle += max(truth.values())
    n = len(evaluate)
    print(f"customers: {Customer.objects.count()}")
    print(f"exploration_decisions: {args.explore}")
    print(f"exploration_served: {served}")
    print(f"exploration_click_rate: {clicks / max(served, 1):.4f}")
    print(f"exploration_seconds: {explore_seconds:.1f}")
    print(f"model_kind: {version.kind}")
    print(f"model_auc: {version.metrics['auc']:.4f}")
    print(f"gate_passed: {int(version.metrics['gate']['passed'])}")
    print(f"train_and_gate_seconds: {train_seconds:.1f}")
    print(f"evaluated_customers: {n}")
    print(f"true_ctr_random: {v_random / n:.4f}")
    print(f"true_ctr_policy: {v_policy / n:.4f}")
    print(f"true_ctr_oracle: {v_oracle / n:.4f}")
    print(f"policy_vs_random: {v_policy / v_random:.3f}")
    print(f"policy_vs_oracle: {v_policy / v_oracle:.3f}")


if __name__ == "__main__":
    main()
