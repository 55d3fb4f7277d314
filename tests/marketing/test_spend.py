"""Budgets: spend accrues through the cost model; total and daily budgets stop delivery; spend is paced across the day."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import ApiClient
from audiences.models import Customer
from marketing import spend
from marketing.decisions import decide
from marketing.models import Ad, Campaign, CampaignSpend, Channel, Decision, Placement, ServedAd
from marketing.spend import shard_of

MORNING = timezone.localtime().replace(hour=6, minute=0, second=0, microsecond=0)


@pytest.fixture
def push(db):
    channel = Channel.objects.create(name="Push", kind=Channel.Kind.PUSH, cost_model=Channel.CostModel.SEND, unit_cost=Decimal("1.00"))
    placement = Placement.objects.create(slug="push", name="Push", channel=channel)
    campaign = Campaign.objects.create(name="Upsell", status=Campaign.Status.LIVE)
    ad = Ad.objects.create(campaign=campaign, name="Go premium")
    ad.placements.add(placement)
    return {"placement": placement, "campaign": campaign, "ad": ad, "channel": channel}


def customers(n):
    return [Customer.objects.create(external_id=f"c{i}-{Customer.objects.count()}") for i in range(n)]


def spent(campaign) -> Decimal:
    return sum((s.amount for s in CampaignSpend.objects.filter(campaign=campaign)), Decimal(0))


def test_each_send_costs_its_unit_and_the_total_budget_stops_delivery(push):
    Campaign.objects.filter(pk=push["campaign"].pk).update(total_budget=3)
    served = [bool(decide(c, push["placement"], now=MORNING)[1]) for c in customers(5)]
    assert served == [True, True, True, False, False] and spent(push["campaign"]) == 3
    assert decide(customers(1)[0], push["placement"], now=MORNING)[0].reason == "none"


def test_one_decision_serving_several_ads_accrues_each_campaign_and_day(push):
    """Two slots, two campaigns: each campaign's day row gets its own sends (one write on PostgreSQL)."""
    Placement.objects.filter(pk=push["placement"].pk).update(slots=3)
    other = Campaign.objects.create(name="Win-back", status=Campaign.Status.LIVE)
    for campaign, name in ((push["campaign"], "Second upsell"), (other, "Come back")):
        Ad.objects.create(campaign=campaign, name=name).placements.add(push["placement"])
    placement = Placement.objects.get(pk=push["placement"].pk)
    first, second = customers(2)
    decision, ads = decide(first, placement, now=MORNING)  # no spend rows yet: the first serve of the day makes them
    assert len(ads) == 3 and spent(push["campaign"]) == 2 and spent(other) == 1
    decide(second, placement, now=MORNING)  # the rows exist now: updated in place
    decide(first, placement, now=MORNING + timedelta(days=1))  # a new day: new rows
    assert spent(push["campaign"]) == 6 and spent(other) == 3
    assert set(CampaignSpend.objects.filter(campaign=push["campaign"]).values_list("day", flat=True)) == {
        timezone.localdate(MORNING), timezone.localdate(MORNING + timedelta(days=1))}
    day_one = CampaignSpend.objects.filter(campaign=other, day=timezone.localdate(MORNING))
    assert sorted(day_one.values_list("shard", "amount")) == sorted([(shard_of(first.pk), 1), (shard_of(second.pk), 1)])
    stored = Decision.objects.get(pk=decision.pk)  # written by the same statement as the served ads and the spend
    served = ServedAd.objects.filter(decision=decision.pk)
    assert len(stored.chosen) == 3 and sorted(stored.chosen) == sorted(served.values_list("ad_id", flat=True))
    assert set(served.values_list("campaign_id", flat=True)) == {push["campaign"].pk, other.pk}
    assert ServedAd.objects.filter(decision=decision.pk).count() == 3

def test_the_spend_upsert_takes_campaign_rows_in_one_order_whatever_the_ads_order():
    """Two decisions paying the same two campaigns lock their day rows in the same order: no deadlock."""
    one = spend.accrual_upsert({9: Decimal("0.01"), 4: Decimal("0.02")}, MORNING, 3)
    other = spend.accrual_upsert({4: Decimal("0.02"), 9: Decimal("0.01")}, MORNING, 3)
    assert one == other and one[1][0::4] == [4, 9] and one[1][2::4] == [3, 3]
    assert "ON CONFLICT (campaign_id, day, shard) DO UPDATE" in one[0]


def test_pacing_spreads_the_daily_budget_over_the_day(push):
    Campaign.objects.filter(pk=push["campaign"].pk).update(daily_budget=24)
    # At 06:00 a quarter of the day is gone: 6 allowed, plus an hour's worth (1) of slack.
    served = sum(bool(decide(c, push["placement"], now=MORNING)[1]) for c in customers(10))
    assert served == 7
    blocked = spend.budget_blocks([Campaign.objects.get(pk=push["campaign"].pk)], MORNING)
    assert "paced" in blocked[push["campaign"].pk]
    # Later in the day there is room again, until the day's budget is spent.
    evening = MORNING.replace(hour=23, minute=30)
    served = sum(bool(decide(c, push["placement"], now=evening)[1]) for c in customers(30))
    assert served == 17 and spent(push["campaign"]) == 24
    assert "today's budget spent" in spend.budget_blocks([Campaign.objects.get(pk=push["campaign"].pk)], evening)[push["campaign"].pk]
    # The next day starts afresh.
    assert decide(customers(1)[0], push["placement"], now=MORNING + timedelta(days=1))[1]


def test_clicks_cost_on_cpc_channels_once_per_event(push, client):
    Channel.objects.filter(pk=push["channel"].pk).update(cost_model=Channel.CostModel.CPC, unit_cost=Decimal("0.50"))
    placement = Placement.objects.select_related("channel").get(pk=push["placement"].pk)
    customer = customers(1)[0]
    decision, _ = decide(customer, placement, now=MORNING)
    assert spent(push["campaign"]) == 0  # serving is free on CPC
    token = ApiClient.issue("app", ["events:write"])[1]
    events = {"events": [{"id": f"k{i}", "type": "click", "customer": customer.external_id, "decision": str(decision.pk),
                          "ad": push["ad"].pk, "occurred_at": MORNING.isoformat()} for i in range(3)]}
    for _ in range(2):  # the replay costs nothing
        client.post("/api/v1/events", events, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert spent(push["campaign"]) == Decimal("1.50")


def test_with_a_budget_check_interval_a_spent_budget_stops_delivery_within_that_interval(push, settings, monkeypatch):
    """Spend is re-read at most every BUDGET_CHECK_SECONDS per process: a second's traffic may pass, not more."""
    import time as clock

    settings.BUDGET_CHECK_SECONDS = 1
    spend._spent.clear()
    Campaign.objects.filter(pk=push["campaign"].pk).update(total_budget=2)
    now = [1000.0]
    monkeypatch.setattr(clock, "monotonic", lambda: now[0])
    served = [bool(decide(c, push["placement"], now=MORNING)[1]) for c in customers(4)]
    assert served == [True, True, True, True] and spent(push["campaign"]) == 4  # the spend read at the first decision held
    now[0] += 1.01
    assert decide(customers(1)[0], push["placement"], now=MORNING)[1] == []  # re-read: the budget is spent
    spend._spent.clear()


def test_a_days_spend_is_spread_over_shard_rows_by_customer_and_read_as_one(push, settings):
    """Concurrent decisions of one campaign update different rows (no queue on one row lock); budgets and pages sum them."""
    settings.SPEND_SHARDS = 3
    Campaign.objects.filter(pk=push["campaign"].pk).update(total_budget=None, daily_budget=100)
    listeners = customers(7)
    for customer in listeners:
        assert decide(customer, push["placement"], now=MORNING)[1]
    rows = dict(CampaignSpend.objects.filter(campaign=push["campaign"]).values_list("shard", "amount"))
    expected = {}
    for customer in listeners:
        expected[customer.pk % 3] = expected.get(customer.pk % 3, 0) + 1
    assert rows == expected and len(rows) == 3 and spent(push["campaign"]) == 7
    # The budget check counts every shard: a daily budget of 7 sends is spent now.
    spend._spent.clear()
    Campaign.objects.filter(pk=push["campaign"].pk).update(daily_budget=7)
    assert decide(customers(1)[0], push["placement"], now=MORNING)[0].reason == "none"
    assert "today's budget spent (7.00 of 7.00)" in spend.budget_blocks([Campaign.objects.get(pk=push["campaign"].pk)], MORNING).values()



def test_migration_0015_backwards_merges_a_days_shards_into_one_row(db):
    """Unapplying the shards migration: the old one-row-a-day constraint holds again, nothing spent is lost."""
    import importlib

    from django.apps import apps

    migration = importlib.import_module("marketing.migrations.0015_campaign_spend_shards")
    one, two = (Campaign.objects.create(name=n) for n in ("One", "Two"))
    day, next_day = timezone.localdate(MORNING), timezone.localdate(MORNING + timedelta(days=1))
    for campaign, on, shard, amount in [(one, day, 0, "1.25"), (one, day, 3, "2.50"), (one, day, 7, "0.25"),
                                        (one, next_day, 5, "4.00"), (two, day, 2, "0.10")]:
        CampaignSpend.objects.create(campaign=campaign, day=on, shard=shard, amount=Decimal(amount))
    migration.merge_shards(apps, None)
    rows = sorted(CampaignSpend.objects.values_list("campaign__name", "day", "amount"))
    assert rows == [("One", day, Decimal("4.00")), ("One", next_day, Decimal("4.00")), ("Two", day, Decimal("0.10"))]
    assert CampaignSpend.objects.get(campaign=one, day=day).shard == 0


def test_one_thread_re_reads_the_spend_while_the_others_use_the_figures_held(settings, monkeypatch):
    """8 threads meet the expired figures at once: one query, not eight; the others go on with the held ones."""
    import threading
    import time

    from tests.threads import while_one_works

    settings.BUDGET_CHECK_SECONDS = 1
    spend._spent.clear()
    today = timezone.localdate()
    spend._spent[((1, 2), today)] = (time.monotonic() - 1, {1: Decimal(5)}, {})  # expired
    reads, started = [], threading.Event()

    def slow_spent(ids, day):  # no query: the threads' connections would not see a test's rows
        reads.append(ids)
        started.set()
        time.sleep(0.2)
        return {1: Decimal(6)}, {}

    monkeypatch.setattr(spend, "spent", slow_spent)
    got = while_one_works(lambda: spend._spend_of([2, 1], today), started)
    assert reads == [[1, 2]] and got[0] == ({1: Decimal(6)}, {}) and all(g == ({1: Decimal(5)}, {}) for g in got[1:])
    assert spend._spend_of([1, 2], today) == ({1: Decimal(6)}, {}) and len(reads) == 1  # held again for a second
    spend._spent.clear()
