"""Exploration until N impressions or D days, ε exploration after it, the interim model and the fit check."""

import random
from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from audiences.models import Customer, Persona
from marketing import rates
from marketing.decisions import decide, simulate
from marketing.models import Ad, Campaign, Channel, Decision, DeliveryPlan, Event, FrequencyCap, Placement, ResponseRate, ServedAd

NOW = timezone.now()


@pytest.fixture
def world(db):
    rates.forget()
    channel = Channel.objects.create(name="Push", kind=Channel.Kind.PUSH)
    push = Placement.objects.create(slug="push", name="Push", channel=channel)
    campaign = Campaign.objects.create(name="Upsell", status=Campaign.Status.EXPLORING, goal=Campaign.Goal.CLICK,
                                       explore_impressions=40, explore_days=3)
    ads = {}
    for name in ("family", "student", "duo"):
        ads[name] = Ad.objects.create(campaign=campaign, name=name)
        ads[name].placements.add(push)
    plan = DeliveryPlan.objects.create(placement=push, rest=DeliveryPlan.Rest.MODEL, epsilon=0.0)
    yield {"push": push, "campaign": campaign, "plan": plan, **ads}
    rates.forget()


def customer(name, segment="active"):
    made = Customer.objects.create(external_id=name)
    Persona.objects.create(customer=made, segment=segment, as_of=NOW)
    return made


def respond(world, *, clicks_on, times=60, batch="x"):
    """Serve each ad `times` times (exploring) and click only `clicks_on`, to segment 'active'."""
    for i in range(times * 3):
        decision, ads = decide(customer(f"{batch}{i}"), world["push"], now=NOW - timedelta(hours=2), rng=random.Random(f"{batch}{i}"))
        if ads and ads[0].name in clicks_on:
            Event.objects.create(source="t", key=f"{batch}{i}", type="click", customer_id=decision.customer_id, decision=decision,
                                 ad=ads[0], campaign=ads[0].campaign, occurred_at=NOW)


def test_a_new_ad_explores_until_it_has_its_impressions_then_the_campaign_goes_live(world):
    respond(world, clicks_on={"duo"}, times=20)
    assert set(Decision.objects.values_list("reason", flat=True)) == {"explore"}
    rates.refresh(NOW)
    served = Counter(ServedAd.objects.values_list("ad__name", flat=True))
    for ad in Ad.objects.all():
        assert (ad.explored_at is not None) == (served[ad.name] >= 40), (ad.name, served[ad.name])
    respond(world, clicks_on={"duo"}, times=40, batch="y")
    rates.refresh(NOW)
    assert not Ad.objects.filter(explored_at=None).exists()
    assert Campaign.objects.get().status == Campaign.Status.LIVE


def test_an_ad_older_than_its_exploration_days_stops_exploring(world):
    Ad.objects.filter(name="family").update(created_at=NOW - timedelta(days=3, minutes=1))
    rates.refresh(NOW)
    assert list(Ad.objects.exclude(explored_at=None).values_list("name", flat=True)) == ["family"]
    assert Campaign.objects.get().status == Campaign.Status.EXPLORING  # the others still explore


def test_after_exploration_the_best_ad_for_the_segment_comes_first(world):
    respond(world, clicks_on={"duo"})
    rates.refresh(NOW)
    rates.forget()
    duo = ResponseRate.objects.get(ad=world["duo"], segment="active")
    assert duo.responded == duo.served > 0
    assert ResponseRate.objects.get(ad=world["family"], segment="").responded == 0
    firsts = Counter()
    for i in range(200):
        decision, ads = decide(customer(f"new{i}"), world["push"], now=NOW, rng=random.Random(i))
        assert decision.reason == "model" and decision.model_version == rates.MODEL_VERSION
        # ε = 0: Thompson sampling gives duo all it can, the others keep their floor of 2 % each.
        assert decision.propensity == pytest.approx(0.96 if ads[0].name == "duo" else 0.02)
        firsts[ads[0].name] += 1
    assert firsts["duo"] >= 180 and firsts["duo"] < 200, firsts


def test_a_share_epsilon_keeps_exploring_and_propensities_mix_both_branches(world):
    respond(world, clicks_on={"duo"})
    rates.refresh(NOW)
    rates.forget()
    DeliveryPlan.objects.update(epsilon=0.3)
    reasons, logged = Counter(), {}
    for i in range(1500):
        decision, ads = decide(customer(f"n{i}"), world["push"], now=NOW, rng=random.Random(10_000 + i))
        reasons[decision.reason] += 1
        logged[ads[0].name] = decision.propensity
    assert 0.25 < reasons["explore"] / 1500 < 0.35, reasons
    # The policy: duo with 0.7 × 0.96 (Thompson's share, the others on their 2 % floor) + 0.3/3, the others
    # 0.7 × 0.02 + 0.3/3 each; over the eligible ads they sum to 1.
    assert logged["duo"] == pytest.approx(0.772) and logged["family"] == pytest.approx(0.114)
    assert sum(logged.values()) == pytest.approx(1.0)


def test_the_fit_check_holds_back_ads_predicted_under_the_threshold_but_not_exploration(world):
    DeliveryPlan.objects.update(fit_threshold=0.5)
    decision, ads = decide(customer("early"), world["push"], now=NOW)
    assert ads and decision.reason == "explore"  # exploring ads are exempt
    respond(world, clicks_on={"duo"})
    rates.refresh(NOW)
    rates.forget()
    decision, ads = decide(customer("fit", "active"), world["push"], now=NOW)
    assert [a.name for a in ads] == ["duo"]
    assert sorted(decision.eligible) == sorted(a.pk for a in Ad.objects.all())  # the exploring branch's draw counts all
    DeliveryPlan.objects.update(fit_threshold=0.99)
    decision, ads = decide(customer("unfit", "active"), world["push"], now=NOW)
    assert ads == [] and decision.reason == "none"


def test_simulate_explains_and_writes_nothing(world):
    FrequencyCap.objects.create(level=FrequencyCap.Level.AD, ad=world["family"], max_count=1, window=86400)
    someone = customer("sim")
    decide(someone, world["push"], now=NOW, rng=random.Random(1))
    before = (Decision.objects.count(), ServedAd.objects.count())
    why = simulate(someone, world["push"], now=NOW)
    assert (Decision.objects.count(), ServedAd.objects.count()) == before
    assert why.route.steps == ["Everyone else: ranked by model."]
    first = ServedAd.objects.get().ad
    if first.name == "family":
        assert [b.ad for b in why.blocked] == [world["family"].pk] and "already 1" in why.blocked[0].reason
    assert why.would_serve and why.policy.reason == "explore"


def test_an_ad_no_plan_ranks_has_nothing_to_explore_and_does_not_hold_its_campaign_back(world):
    from marketing.models import PlanRule
    from audiences.models import Audience

    targeted = Ad.objects.create(campaign=world["campaign"], name="targeted")
    targeted.placements.add(world["push"])
    fans = Audience.objects.create(name="Fans", kind=Audience.Kind.LIST)
    rule = PlanRule.objects.create(plan=world["plan"], audience=fans, mode=PlanRule.Mode.ONE_AD)
    rule.ads.set([targeted])
    rates.refresh(NOW)
    assert list(Ad.objects.exclude(explored_at=None).values_list("name", flat=True)) == ["targeted"]
    Ad.objects.exclude(name="targeted").update(explored_at=NOW)
    rates.refresh(NOW)
    assert Campaign.objects.get().status == Campaign.Status.LIVE


def test_one_thread_re_reads_expired_response_rates_while_the_others_use_the_rates_held(monkeypatch):
    import threading
    import time

    from tests.threads import while_one_works

    rates.forget()
    held, fresh = {(1, ""): (10, 1)}, {(1, ""): (11, 2)}
    rates._cache[frozenset([1])] = (time.monotonic() - 1, held)  # expired
    reads, started = [], threading.Event()

    def slow_read(key):  # no query: the threads' connections would not see a test's rows
        reads.append(key)
        started.set()
        time.sleep(0.2)
        rates._cache[key] = (time.monotonic() + rates.CACHE_SECONDS, fresh)
        return fresh

    monkeypatch.setattr(rates, "_read_rates", slow_read)
    got = while_one_works(lambda: rates.rates_for([1]), started)
    assert reads == [frozenset([1])] and got[0] is fresh and all(g is held for g in got[1:])
    assert rates.rates_for([1]) is fresh and len(reads) == 1
    rates.forget()
