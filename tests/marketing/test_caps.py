"""Frequency caps: rolling windows, lifetimes and gaps at every level, and exactness under concurrent requests."""

import threading
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone

from audiences.models import Customer
from marketing import caps
from marketing.models import Ad, Campaign, CapLock, Channel, FrequencyCap, Placement, ServedAd

NOW = timezone.now().replace(microsecond=0)


@pytest.fixture
def setup(db):
    push = Channel.objects.create(name="Push", kind=Channel.Kind.PUSH, cost_model=Channel.CostModel.SEND)
    banner = Channel.objects.create(name="Banner", kind=Channel.Kind.BANNER)
    home = Placement.objects.create(slug="home-banner", name="Home banner", channel=banner, slots=2)
    notify = Placement.objects.create(slug="push", name="Push", channel=push)
    upsell = Campaign.objects.create(name="Premium upsell", status=Campaign.Status.LIVE)
    kpop = Campaign.objects.create(name="K-pop single", status=Campaign.Status.LIVE)
    ads = {name: Ad.objects.create(campaign=campaign, name=name) for name, campaign in
           [("upsell-a", upsell), ("upsell-b", upsell), ("kpop-a", kpop)]}
    for ad in ads.values():
        ad.placements.set([home, notify])
    customer = Customer.objects.create(external_id="c1")
    return {"home": home, "notify": notify, "push": push, "banner": banner, "upsell": upsell, "kpop": kpop, **ads, "customer": customer}


def served(setup, ad, placement, at):
    return ServedAd.objects.create(customer=setup["customer"], ad=setup[ad], campaign=setup[ad].campaign,
                                   placement=setup[placement], channel=setup[placement].channel, served_at=at)


def cap(**fields):
    made = FrequencyCap(**fields)
    made.full_clean()
    made.save()
    return made


def ranked(setup, *names):
    return [setup[n] for n in names]


def test_a_rolling_day_counts_what_was_served_in_the_last_24_hours_only(setup):
    cap(level="campaign", campaign=setup["upsell"], max_count=2, window=FrequencyCap.Window.DAY)
    served(setup, "upsell-a", "home", NOW - timedelta(hours=25))  # outside the window
    served(setup, "upsell-b", "home", NOW - timedelta(hours=23))
    result = caps.serve(setup["customer"].pk, setup["home"], ranked(setup, "upsell-a", "upsell-b", "kpop-a"), now=NOW)
    taken, blocked = result.ads, result.blocked
    # One more upsell fits (1 in the window + 1 = 2); the second upsell ad is capped, the K-pop ad fills the slot.
    assert [s.ad.name for s in taken] == ["upsell-a", "kpop-a"]
    assert [b.ad for b in blocked] == [setup["upsell-b"].pk] and "already 2" in blocked[0].reason


def test_a_lifetime_cap_counts_everything_ever_served(setup):
    cap(level="ad", ad=setup["kpop-a"], max_count=1, window=FrequencyCap.Window.LIFETIME)
    served(setup, "kpop-a", "notify", NOW - timedelta(days=400))
    result = caps.serve(setup["customer"].pk, setup["home"], ranked(setup, "kpop-a"), now=NOW)
    taken, blocked = result.ads, result.blocked
    assert taken == [] and "in a lifetime" in blocked[0].reason


def test_the_history_read_reaches_back_only_as_far_as_the_caps_look(setup):
    """A lifetime ad cap needs that ad's whole history, not everything the customer was ever served."""
    lifetime = cap(level="ad", ad=setup["kpop-a"], max_count=3, window=FrequencyCap.Window.LIFETIME)
    daily = cap(level="service", max_count=10, window=FrequencyCap.Window.DAY)
    served(setup, "kpop-a", "notify", NOW - timedelta(days=400))
    served(setup, "upsell-a", "notify", NOW - timedelta(days=300))  # no cap looks this far back for it
    served(setup, "upsell-b", "home", NOW - timedelta(hours=2))
    seen = caps.history(setup["customer"].pk, [lifetime, daily], NOW)
    assert sorted(e.ad for e in seen) == sorted([setup["kpop-a"].pk, setup["upsell-b"].pk])
    service_lifetime = cap(level="service", max_count=100, window=FrequencyCap.Window.LIFETIME)
    assert len(caps.history(setup["customer"].pk, [lifetime, service_lifetime], NOW)) == 3


def test_a_minimum_gap_between_pushes(setup):
    cap(level="channel", channel=setup["push"], min_gap_seconds=4 * 3600)
    served(setup, "upsell-a", "notify", NOW - timedelta(hours=3))
    result = caps.serve(setup["customer"].pk, setup["notify"], ranked(setup, "kpop-a"), now=NOW)
    taken, blocked = result.ads, result.blocked
    assert taken == [] and "last one 10800 s ago" in blocked[0].reason
    # The banner is another channel: the push gap does not apply there.
    result = caps.serve(setup["customer"].pk, setup["home"], ranked(setup, "kpop-a"), now=NOW)
    assert [s.ad.name for s in result.ads] == ["kpop-a"]
    later = caps.serve(setup["customer"].pk, setup["notify"], ranked(setup, "kpop-a"), now=NOW + timedelta(hours=1, seconds=1))
    assert [s.ad.name for s in later.ads] == ["kpop-a"]


def test_ads_taken_in_the_same_decision_count_toward_the_caps(setup):
    cap(level="placement", placement=setup["home"], max_count=1, window=FrequencyCap.Window.HOUR)
    result = caps.serve(setup["customer"].pk, setup["home"], ranked(setup, "upsell-a", "kpop-a"), now=NOW)
    taken, blocked = result.ads, result.blocked
    assert [s.ad.name for s in taken] == ["upsell-a"] and [b.ad for b in blocked] == [setup["kpop-a"].pk]
    assert len({s.decision for s in taken}) == 1
    assert result.eligible == ranked(setup, "upsell-a", "kpop-a")  # each alone was allowed: the first slot drew from both


def test_a_service_cap_spans_every_channel(setup):
    cap(level="service", max_count=2, window=FrequencyCap.Window.WEEK)
    served(setup, "upsell-a", "notify", NOW - timedelta(days=6))
    served(setup, "kpop-a", "home", NOW - timedelta(days=1))
    result = caps.serve(setup["customer"].pk, setup["home"], ranked(setup, "upsell-b"), now=NOW)
    taken, blocked = result.ads, result.blocked
    assert taken == [] and "Whole service" in blocked[0].reason


def test_caps_of_other_ads_and_campaigns_do_not_apply(setup):
    cap(level="ad", ad=setup["upsell-a"], max_count=1, window=FrequencyCap.Window.DAY)
    cap(level="campaign", campaign=setup["upsell"], max_count=1, window=FrequencyCap.Window.DAY)
    served(setup, "upsell-a", "home", NOW - timedelta(hours=1))
    result = caps.serve(setup["customer"].pk, setup["home"], ranked(setup, "upsell-b", "kpop-a"), now=NOW)
    assert [s.ad.name for s in result.ads] == ["kpop-a"]
    assert {b.ad for b in result.blocked} == {setup["upsell-b"].pk}  # its campaign is capped


@pytest.mark.parametrize("fields,message", [
    ({"level": "ad", "max_count": 3}, "needs its ad"),
    ({"level": "service", "max_count": 3, "channel_id": -1}, "names no channel"),
    ({"level": "service"}, "Give a maximum count, a minimum gap, or both"),
])
def test_a_cap_must_name_exactly_its_target_and_a_limit(db, fields, message):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match=message):
        FrequencyCap(**fields).clean()


def test_campaign_statuses_move_only_along_the_lifecycle(db):
    from django.core.exceptions import ValidationError

    campaign = Campaign.objects.create(name="x")
    assert campaign.can_move_to(Campaign.Status.EXPLORING) and not campaign.can_move_to(Campaign.Status.LIVE)
    campaign.status = Campaign.Status.LIVE
    with pytest.raises(ValidationError, match="A draft campaign cannot become live"):
        campaign.full_clean()
    campaign.status = Campaign.Status.EXPLORING
    campaign.full_clean()
    campaign.save()
    campaign.status = Campaign.Status.ENDED
    campaign.full_clean()
    campaign.save()
    assert not any(campaign.can_move_to(s) for s in Campaign.Status)
    campaign.status = Campaign.Status.LIVE
    with pytest.raises(ValidationError, match="none: it is final"):
        campaign.full_clean()


@pytest.mark.django_db(transaction=True)
def test_caps_are_exact_under_concurrent_requests_for_one_customer():
    """64 threads × 200 requests on PostgreSQL (fewer on SQLite): never one served ad more than the caps allow."""
    threads, per_thread = (64, 200) if connection.vendor == "postgresql" else (8, 25)
    channel = Channel.objects.create(name="Banner", kind=Channel.Kind.BANNER)
    placement = Placement.objects.create(slug="home", name="Home", channel=channel, slots=2)
    campaign = Campaign.objects.create(name="C", status=Campaign.Status.LIVE)
    ads = [Ad.objects.create(campaign=campaign, name=f"ad-{i}") for i in range(3)]
    cap(level="ad", ad=ads[0], max_count=3, window=FrequencyCap.Window.DAY)
    cap(level="campaign", campaign=campaign, max_count=7, window=FrequencyCap.Window.DAY)
    cap(level="service", max_count=50, window=FrequencyCap.Window.LIFETIME)
    customer = Customer.objects.create(external_id="hot")
    errors = []

    def hammer():
        try:
            for _ in range(per_thread):
                caps.serve(customer.pk, placement, ads)
        except Exception as exc:  # surfaced below: a failed thread must fail the test
            errors.append(exc)
        finally:
            connections.close_all()

    workers = [threading.Thread(target=hammer) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors, errors[:3]
    assert ServedAd.objects.filter(customer=customer).count() == 7  # the campaign cap binds first, exactly
    assert ServedAd.objects.filter(customer=customer, ad=ads[0]).count() == 3
    assert CapLock.objects.filter(customer=customer).count() == 1
