"""The decision engine on each delivery-plan combination, with exploration propensities and caps."""

import random
from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from audiences.models import Audience, AudienceMember, Customer
from marketing.decisions import decide
from marketing.models import Ad, Campaign, Channel, Decision, DeliveryPlan, FrequencyCap, Placement, PlanRule, ServedAd

NOW = timezone.now()


@pytest.fixture
def world(db):
    channel = Channel.objects.create(name="Banner", kind=Channel.Kind.BANNER)
    home = Placement.objects.create(slug="home", name="Home", channel=channel)
    campaign = Campaign.objects.create(name="Release", status=Campaign.Status.EXPLORING)
    ads = {}
    for name, priority in [("single", 5), ("album", 1), ("tour", 1), ("merch", 0)]:
        ads[name] = Ad.objects.create(campaign=campaign, name=name, priority=priority)
        ads[name].placements.add(home)
    fans = Audience.objects.create(name="Fans", kind=Audience.Kind.LIST)
    fan, other = Customer.objects.create(external_id="fan"), Customer.objects.create(external_id="other")
    AudienceMember.objects.create(audience=fans, customer=fan)
    return {"home": home, "campaign": campaign, "fans": fans, "fan": fan, "other": other, **ads}


def plan(world, rest, rules, rest_ads=()):
    made = DeliveryPlan.objects.create(placement=world["home"], rest=rest)
    made.rest_ads.set([world[a] for a in rest_ads])
    for i, (mode, names) in enumerate(rules):
        rule = PlanRule.objects.create(plan=made, position=i, audience=world["fans"], mode=mode)
        rule.ads.set([world[n] for n in names])
    return made


def names(ads):
    return [a.name for a in ads]


def test_a_targeted_audience_gets_its_one_ad(world):
    plan(world, DeliveryPlan.Rest.NOTHING, [(PlanRule.Mode.ONE_AD, ["merch"])])
    decision, ads = decide(world["fan"], world["home"], now=NOW)
    assert names(ads) == ["merch"] and decision.reason == "targeted" and decision.propensity == 1.0
    decision, ads = decide(world["other"], world["home"], now=NOW)
    assert ads == [] and decision.reason == "none"


def test_targeted_ads_ranked_by_model_explore_and_everyone_else_gets_priority(world):
    """Combination b: the audience gets several ads (explored until a model exists), the rest by priority."""
    plan(world, DeliveryPlan.Rest.PRIORITY, [(PlanRule.Mode.RANKED, ["album", "tour", "merch"])])
    seen = Counter()
    for i in range(600):
        customer = Customer.objects.create(external_id=f"f{i}")
        AudienceMember.objects.create(audience=world["fans"], customer=customer)
        decision, ads = decide(customer, world["home"], now=NOW, rng=random.Random(i))
        assert decision.reason == "explore" and decision.propensity == pytest.approx(1 / 3)
        assert sorted(decision.eligible) == sorted(world[n].pk for n in ("album", "tour", "merch"))
        seen[ads[0].name] += 1
    assert set(seen) == {"album", "tour", "merch"} and all(150 < n < 250 for n in seen.values()), seen
    decision, ads = decide(world["other"], world["home"], now=NOW)
    assert names(ads) == ["single"] and decision.reason == "priority" and decision.propensity == 1.0  # the other ads are the rule's


def test_targeted_one_ad_and_everyone_else_ranked_by_model(world):
    """Combination c: the audience gets one specified ad, everyone else the remaining ads, explored."""
    plan(world, DeliveryPlan.Rest.MODEL, [(PlanRule.Mode.ONE_AD, ["single"])])
    assert names(decide(world["fan"], world["home"], now=NOW)[1]) == ["single"]
    firsts = Counter()
    for i in range(300):
        decision, ads = decide(Customer.objects.create(external_id=f"o{i}"), world["home"], now=NOW, rng=random.Random(i))
        assert ads[0].name != "single" and decision.reason == "explore"
        assert sum(1 / len(decision.eligible) for _ in decision.eligible) == pytest.approx(1.0)
        firsts[ads[0].name] += 1
    assert set(firsts) == {"album", "tour", "merch"}


def test_capped_ads_leave_the_draw_and_the_propensity_follows(world):
    plan(world, DeliveryPlan.Rest.MODEL, [])
    FrequencyCap.objects.create(level="ad", ad=world["single"], max_count=1, window=FrequencyCap.Window.DAY)
    customer = world["other"]
    ServedAd.objects.create(customer=customer, ad=world["single"], campaign=world["campaign"], placement=world["home"],
                            channel=world["home"].channel, served_at=NOW - timedelta(hours=1))
    decision, ads = decide(customer, world["home"], now=NOW, rng=random.Random(1))
    assert world["single"].pk not in decision.eligible and len(decision.eligible) == 3
    assert decision.propensity == pytest.approx(1 / 3) and ads[0].name != "single"


def test_ties_in_priority_share_the_first_slot(world):
    plan(world, DeliveryPlan.Rest.PRIORITY, [], rest_ads=["album", "tour"])
    decision, ads = decide(world["other"], world["home"], now=NOW, rng=random.Random(3))
    assert ads[0].name in ("album", "tour") and decision.propensity == 0.5


def test_paused_campaigns_and_ads_outside_their_flight_are_not_served(world):
    Campaign.objects.filter(pk=world["campaign"].pk).update(status=Campaign.Status.PAUSED)
    assert decide(world["other"], world["home"], now=NOW)[1] == []
    Campaign.objects.filter(pk=world["campaign"].pk).update(status=Campaign.Status.LIVE, starts_at=NOW + timedelta(days=1))
    assert decide(world["other"], world["home"], now=NOW)[1] == []
    Campaign.objects.filter(pk=world["campaign"].pk).update(starts_at=NOW - timedelta(days=1), ends_at=NOW + timedelta(days=1))
    decision, ads = decide(world["other"], world["home"], now=NOW)
    assert names(ads) == ["single"]  # no plan: every servable ad by priority
    assert Decision.objects.filter(customer=world["other"]).count() == 3
