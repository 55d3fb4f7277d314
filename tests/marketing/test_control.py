"""Control groups: stable, of the right size, independent between campaigns; decisions and lists hold them out."""

import random

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from audiences.models import Customer, Persona
from marketing import control
from marketing.decisions import decide, simulate
from marketing.delivery_lists import batch
from marketing.models import Ad, Campaign, Channel, Decision, DeliveryPlan, Placement, ServedAd

NOW = timezone.now()


def test_a_customer_stays_in_or_out_and_the_share_holds_on_100k_ids():
    ids = range(1, 100_001)
    salt = 987_654
    held = [i for i in ids if control.held_out(i, 0.1, salt)]
    assert abs(len(held) / 100_000 - 0.1) < 0.005  # 3 standard deviations of a binomial share are 0.0028
    assert held == [i for i in ids if control.held_out(i, 0.1, salt)]  # stable across calls
    assert not any(control.held_out(i, 0.0, salt) for i in range(1, 1000))


def test_campaigns_with_different_salts_hold_out_independent_groups():
    a = {i for i in range(1, 100_001) if control.held_out(i, 0.2, 11)}
    b = {i for i in range(1, 100_001) if control.held_out(i, 0.2, 12)}
    both = len(a & b) / 100_000
    assert abs(both - 0.2 * 0.2) < 0.004  # independent: 4 %, not 0 % (disjoint) nor 20 % (the same)


@pytest.mark.django_db
def test_the_database_computes_the_same_fraction_as_python():
    ids = [1, 2, 3, 77, 65_535, 1_000_003, 2_147_483_000]
    salt = 1_234_567_891
    with connection.cursor() as cursor:
        rows = []
        for i in ids:
            cursor.execute(f"SELECT {control.sql_fraction('x.v', salt)} FROM (SELECT %s AS v) x", [i])
            rows.append(cursor.fetchone()[0])
    assert rows == pytest.approx([control.fraction(i, salt) for i in ids], abs=1e-12)


@pytest.fixture
def world(db):
    channel = Channel.objects.create(name="Push", kind=Channel.Kind.PUSH)
    push = Placement.objects.create(slug="push", name="Push", channel=channel)
    campaign = Campaign.objects.create(name="Upsell", status=Campaign.Status.LIVE, control_share=0.3)
    ad = Ad.objects.create(campaign=campaign, name="offer", explored_at=NOW)
    ad.placements.add(push)
    DeliveryPlan.objects.create(placement=push, rest=DeliveryPlan.Rest.PRIORITY)
    people = []
    for i in range(200):
        made = Customer.objects.create(external_id=f"c{i:03d}")
        Persona.objects.create(customer=made, as_of=NOW)
        people.append(made)
    return {"push": push, "campaign": campaign, "ad": ad, "people": people}


def test_a_held_out_customer_gets_nothing_and_the_decision_says_control_and_what_was_withheld(world):
    campaign = world["campaign"]
    held = [c for c in world["people"] if control.held_out(c.pk, 0.3, campaign.control_salt)]
    kept = [c for c in world["people"] if c not in held]
    assert 30 < len(held) < 90
    decision, ads = decide(held[0], world["push"], now=NOW, rng=random.Random(1))
    assert ads == [] and decision.reason == Decision.Reason.CONTROL and decision.propensity == pytest.approx(0.3)
    assert decision.context["control"] == {"campaign": campaign.pk, "ad": world["ad"].pk, "capped": False, "share": 0.3,
                                           "campaigns": [campaign.pk]}
    assert not ServedAd.objects.filter(customer=held[0]).exists()
    decision, ads = decide(kept[0], world["push"], now=NOW, rng=random.Random(1))
    assert ads == [world["ad"]] and decision.reason == "priority" and "control" not in decision.context
    why = simulate(held[1], world["push"], now=NOW)
    assert why.would_serve == [] and "In the control group of “Upsell”" in why.route.steps[-1]


@override_settings(GLOBAL_CONTROL_SHARE=0.25, GLOBAL_CONTROL_SALT=4242)
def test_the_global_control_group_holds_customers_out_of_every_campaign(world):
    Campaign.objects.update(control_share=0.0)
    held = next(c for c in world["people"] if control.held_out(c.pk, 0.25, 4242))
    decision, ads = decide(held, world["push"], now=NOW)
    assert ads == [] and decision.reason == "control" and decision.propensity == pytest.approx(0.25)


def test_delivery_lists_leave_the_control_group_out(world):
    campaign = world["campaign"]
    done, rows = batch(campaign, world["push"], "evening", 0, 1000, now=NOW)
    listed = {r.customer for r in rows}
    expected = {c.external_id for c in world["people"] if not control.held_out(c.pk, 0.3, campaign.control_salt)}
    assert listed == expected


def test_an_outcome_of_a_control_decision_is_credited_to_the_campaign_that_held_the_customer_out(world):
    from marketing.api import record_events
    from marketing.models import Event

    campaign = world["campaign"]
    held = next(c for c in world["people"] if control.held_out(c.pk, 0.3, campaign.control_salt))
    decision, _ = decide(held, world["push"], now=NOW)
    body, code = record_events([{"id": "organic-1", "type": "conversion", "customer": held.external_id,
                                 "decision": str(decision.pk), "occurred_at": NOW.isoformat()}], source="app")
    assert code == 200 and body["created"] == 1
    assert Event.objects.get(key="organic-1").campaign_id == campaign.pk
