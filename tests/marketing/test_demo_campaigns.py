"""The demo's delivery: seed_campaigns builds the story's campaigns once, and its plans route as the issue asks."""

import random

import pytest
from django.core.management import call_command

from audiences import demo as audience_demo
from audiences.models import Audience, AudienceMember, Customer
from marketing import demo, rates
from marketing.decisions import decide
from marketing.models import (Ad, Campaign, Channel, Decision, DeliveryPlan, FrequencyCap, Placement, PlanRule,
                              ServedAd)
from tests.conftest import removing_new_jobs


@pytest.fixture(scope="module")
def listeners(django_db_setup, django_db_blocker):
    """600 demo listeners with personas and the demo audiences, as of today (rules look back from now), committed once."""
    with django_db_blocker.unblock(), removing_new_jobs():
        call_command("seed_demo", "--customers", "600", "--artists", "300", "--days", "60", "--seed", "3", verbosity=0)
        yield
        demo.delete_demo_campaigns()
        Audience.objects.filter(name=demo.KPOP_FANS, created_by__isnull=True).delete()
        audience_demo.delete_demo()


@pytest.fixture
def seeded(listeners, db):
    rates.forget()
    call_command("seed_campaigns", verbosity=0)
    assert set(Campaign.objects.values_list("control_share", flat=True)) == {0.1}  # the demo measures its effects
    Campaign.objects.update(control_share=0.0)  # these tests follow the plans; tests/marketing/test_control.py the holdout
    yield
    rates.forget()


def everything() -> dict:
    """The delivery objects as rows, to compare two states."""
    return {
        "channels": list(Channel.objects.order_by("pk").values()),
        "placements": list(Placement.objects.order_by("pk").values()),
        "campaigns": list(Campaign.objects.order_by("pk").values()),
        "ads": list(Ad.objects.order_by("pk").values()),
        "ad_placements": list(Ad.placements.through.objects.order_by("pk").values()),
        "caps": list(FrequencyCap.objects.order_by("pk").values()),
        "plans": list(DeliveryPlan.objects.order_by("pk").values()),
        "rules": list(PlanRule.objects.order_by("pk").values()),
        "rule_ads": list(PlanRule.ads.through.objects.order_by("pk").values()),
        "audiences": list(Audience.objects.order_by("pk").values("pk", "name", "rule", "size", "size_at")),
        "members": AudienceMember.objects.count(),
    }


def ad(name: str) -> Ad:
    return Ad.objects.get(name=name)


def member_of(audience_name: str, n: int = 0) -> Customer:
    members = Customer.objects.in_snapshot(Audience.objects.get(name=audience_name)).order_by("pk")
    assert members.count() > n, f"the small demo has too few members of {audience_name!r}"
    return members[n]


def outsider_of(*audience_names: str) -> Customer:
    inside = AudienceMember.objects.filter(audience__name__in=audience_names).values("customer_id")
    return Customer.objects.exclude(pk__in=inside).order_by("pk").first()


# -- seeding ------------------------------------------------------------------------------------------------


def test_seeding_again_changes_nothing(seeded):
    before = everything()
    call_command("seed_campaigns", verbosity=0)
    assert everything() == before
    assert demo.store_demo_campaigns() == dict.fromkeys(
        ("channels", "placements", "audiences", "campaigns", "ads", "caps", "plans", "rules"), 0)


def test_seeding_keeps_an_operators_changes(seeded):
    Campaign.objects.filter(name=demo.UPSELL).update(daily_budget=99)
    Ad.objects.filter(name="Lyric card").delete()
    call_command("seed_campaigns", verbosity=0)
    assert Campaign.objects.get(name=demo.UPSELL).daily_budget == 99
    assert Ad.objects.filter(name="Lyric card").count() == 1  # missing: made again


def test_reset_rebuilds_the_campaigns_without_their_history(seeded):
    customer = member_of(demo.KPOP_FREE)
    decide(customer, Placement.objects.get(slug="push"))
    old = set(Campaign.objects.values_list("pk", flat=True))
    call_command("seed_campaigns", "--reset", verbosity=0)
    assert not ServedAd.objects.exists() and not Decision.objects.exists()
    assert Campaign.objects.count() == 3 and not old & set(Campaign.objects.values_list("pk", flat=True))
    assert Ad.objects.count() == 11 and PlanRule.objects.count() == 4


def test_the_story_has_three_exploring_campaigns_with_their_goals_budgets_and_ads(seeded):
    campaigns = {c.name: c for c in Campaign.objects.all()}
    assert {n: (c.goal, c.status) for n, c in campaigns.items()} == {
        demo.UPSELL: ("conversion", "exploring"), demo.RELEASE: ("stream", "exploring"), demo.WINBACK: ("click", "exploring")}
    upsell = campaigns[demo.UPSELL]
    assert upsell.daily_budget and upsell.total_budget and upsell.target_cpa
    for campaign in campaigns.values():
        assert 2 <= campaign.ads.count() <= 4
    single = campaigns[demo.RELEASE].ads.values_list("promoted_item__external_id", flat=True)
    assert set(single) == {audience_demo.KPOP_SINGLE_ID}
    # Only ads that are ranked (by exploration first) have exploring to do.
    assert set(Ad.objects.filter(explored_at__isnull=True).values_list("name", flat=True)) == {
        "Student discount", "Family plan", "Duo for two", "Out now: Supernova Heart", "Dance challenge",
        "We miss you", "Your mixes are waiting", "3 months for 0.99"}
    costs = dict(Channel.objects.values_list("kind", "cost_model"))
    assert costs == {"push": "send", "banner": "cpm", "player": "cpm", "email": "send"}


def test_caps_are_set_at_every_level_the_story_needs(seeded):
    caps = {(c.level, str(c.target or "")): (c.max_count, c.window, c.min_gap_seconds) for c in FrequencyCap.objects.all()}
    assert caps[("service", "")] == (12, FrequencyCap.Window.DAY, None)
    assert caps[("channel", "App push")] == (None, FrequencyCap.Window.DAY, 4 * 3600)
    assert caps[("campaign", demo.UPSELL)][:2] == (3, FrequencyCap.Window.WEEK)
    assert caps[("ad", f"{demo.RELEASE} · Chart debut")][:2] == (3, FrequencyCap.Window.LIFETIME)
    for cap in FrequencyCap.objects.all():
        cap.full_clean()  # what the admin would accept


# -- the three plan combinations, through the decision engine ----------------------------------------------------


def test_a_targeted_audience_gets_its_one_ad_and_nobody_else_anything(seeded):
    """Combination a: in the player, the young hip-hop fans of the south get the dance challenge."""
    preroll = Placement.objects.get(slug="player-preroll")
    decision, ads = decide(member_of(demo.YOUNG_HIP_HOP_SOUTH), preroll)
    assert [a.name for a in ads] == ["Dance challenge"] and decision.reason == "targeted" and decision.propensity == 1.0
    decision, ads = decide(outsider_of(demo.YOUNG_HIP_HOP_SOUTH), preroll)
    assert ads == [] and decision.reason == "none"


def test_a_targeted_audience_gets_ads_ranked_by_model_and_everyone_else_by_priority(seeded):
    """Combination b: on the home banner K-pop fans get two creatives (explored first), the rest the chart debut."""
    banner = Placement.objects.get(slug="home-banner")
    firsts = set()
    for n in range(12):
        decision, ads = decide(member_of(demo.KPOP_FANS, n), banner, rng=random.Random(n))
        assert decision.reason == "explore" and decision.propensity == pytest.approx(0.5)
        assert sorted(decision.eligible) == sorted([ad("Out now: Supernova Heart").pk, ad("Dance challenge").pk])
        firsts.add(ads[0].name)
    assert firsts == {"Out now: Supernova Heart", "Dance challenge"}
    outsider = outsider_of(demo.KPOP_FANS)
    decision, ads = decide(outsider, banner)
    assert [a.name for a in ads] == ["Chart debut"] and decision.reason == "priority"
    for _ in range(2):  # its lifetime cap of 3 is then reached, and the lyric card follows by priority
        assert [a.name for a in decide(outsider, banner)[1]] == ["Chart debut"]
    assert [a.name for a in decide(outsider, banner)[1]] == ["Lyric card"]


def test_a_targeted_audience_gets_one_ad_and_everyone_else_ads_ranked_by_model(seeded):
    """Combination c: free-plan K-pop fans get the ad-free K-pop push, everyone else a plan offer (explored first)."""
    push = Placement.objects.get(slug="push")
    decision, ads = decide(member_of(demo.KPOP_FREE), push)
    assert [a.name for a in ads] == ["K-pop without ads"] and decision.reason == "targeted"
    offers = {"Student discount", "Family plan", "Duo for two"}
    firsts = set()
    outsiders = Customer.objects.exclude(pk__in=AudienceMember.objects.filter(audience__name=demo.KPOP_FREE)
                                         .values("customer_id")).order_by("pk")[:15]
    for n, customer in enumerate(outsiders):
        decision, ads = decide(customer, push, rng=random.Random(n))
        assert decision.reason == "explore" and decision.propensity == pytest.approx(1 / 3)
        firsts.add(ads[0].name)
    assert firsts == offers


def test_the_win_back_goes_to_lapsed_listeners_only(seeded):
    email = Placement.objects.get(slug="email")
    decision, ads = decide(member_of(demo.LAPSED), email)
    assert decision.reason == "explore" and ads[0].campaign.name == demo.WINBACK
    decision, ads = decide(outsider_of(demo.LAPSED), email)
    assert ads == [] and decision.reason == "none"
