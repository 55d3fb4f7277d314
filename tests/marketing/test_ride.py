"""A serving decision's transaction rides on its statements (PostgreSQL): BEGIN with the lock, COMMIT with the writes.

Outside an atomic block, `decide` sends `BEGIN; <lock>; <history>` and `<writes>; COMMIT` instead of
letting psycopg send BEGIN and COMMIT as round trips of their own. These tests run in autocommit mode
(transactional_db), as gunicorn's requests do: whatever goes wrong, the transaction ends, nothing of it
is kept, and the customer's lock is free again.
"""

import threading
from decimal import Decimal

import psycopg
import pytest
from django.db import IntegrityError, connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from audiences.models import Customer
from marketing import decisions, rows, setup, spend
from marketing.decisions import decide
from marketing.models import Ad, Campaign, CampaignSpend, CapLock, Channel, Decision, FrequencyCap, Placement, ServedAd

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def served_here(settings):
    if connection.vendor != "postgresql":
        pytest.skip("the riding transaction is PostgreSQL's; SQLite decides in atomic()")
    settings.DELIVERY_SETUP_SECONDS = 0  # every decision reads the set-up as it is now
    setup._forget()
    channel = Channel.objects.create(name="Push", kind=Channel.Kind.PUSH, cost_model=Channel.CostModel.SEND,
                                     unit_cost=Decimal("0.01"))
    placement = Placement.objects.create(slug="push", name="Push", channel=channel, slots=2)
    campaign = Campaign.objects.create(name="Upsell", status=Campaign.Status.LIVE)
    ads = [Ad.objects.create(campaign=campaign, name=f"ad-{i}", priority=10 - i) for i in range(3)]
    for ad in ads:
        ad.placements.add(placement)
    customer = Customer.objects.create(external_id="c1")
    CapLock.objects.create(customer=customer)
    yield {"placement": Placement.objects.select_related("channel").get(pk=placement.pk), "campaign": campaign,
           "ads": ads, "customer": customer}
    setup._forget()


def lock_is_free(customer_id: int) -> bool:
    """Whether another connection can take the customer's cap lock row at once."""
    settings = connection.settings_dict
    with psycopg.connect(dbname=settings["NAME"], host=settings["HOST"] or None, port=settings["PORT"] or None,
                         user=settings["USER"] or None, autocommit=True) as other:
        try:
            with other.transaction():
                other.execute("SET LOCAL lock_timeout = '100ms'")
                other.execute("SELECT 1 FROM marketing_caplock WHERE customer_id = %s FOR UPDATE", [customer_id])
            return True
        except psycopg.errors.LockNotAvailable:
            return False


def test_the_lock_carries_the_begin_and_the_writes_the_commit(served_here):
    customer, placement = served_here["customer"], served_here["placement"]
    FrequencyCap.objects.create(level="service", max_count=100, window=FrequencyCap.Window.DAY)
    assert rows.can_ride()
    with CaptureQueriesContext(connection) as queries:
        decision, ads = decide(customer, placement)
    sql = [q["sql"] for q in queries.captured_queries if not q["sql"].startswith("SELECT \"marketing_")]
    # Two round trips, no BEGIN or COMMIT of their own (the other statements read the set-up and budgets).
    assert len(sql) == 2, sql
    assert sql[0].startswith("BEGIN; SELECT pg_advisory_xact_lock_shared") and "; SELECT ad_id" in sql[0]
    assert sql[1].startswith("WITH served AS (INSERT") and sql[1].endswith("; COMMIT")
    assert not rows.in_transaction() and lock_is_free(customer.pk)
    assert [a.name for a in ads] == ["ad-0", "ad-1"]
    assert ServedAd.objects.filter(decision=decision.pk).count() == 2 and Decision.objects.filter(pk=decision.pk).exists()
    assert CampaignSpend.objects.get().amount == Decimal("0.02")


def test_a_failure_between_the_lock_and_the_writes_rolls_back_and_frees_the_customer(served_here, monkeypatch):
    customer, placement = served_here["customer"], served_here["placement"]

    def broken(*args, **kwargs):
        assert rows.in_transaction() and not lock_is_free(customer.pk)  # the lock is held while the decision is made
        raise RuntimeError("scoring failed")

    monkeypatch.setattr(decisions, "propensity", broken)
    with pytest.raises(RuntimeError, match="scoring failed"):
        decide(customer, placement)
    assert not rows.in_transaction() and lock_is_free(customer.pk)
    assert not ServedAd.objects.exists() and not Decision.objects.exists() and not CampaignSpend.objects.exists()
    monkeypatch.undo()
    decision, ads = decide(customer, placement)  # the connection serves the next decision as usual
    assert len(ads) == 2 and ServedAd.objects.filter(decision=decision.pk).count() == 2


def test_a_write_refused_at_commit_keeps_nothing(served_here, monkeypatch):
    """The spend row's foreign key is checked at COMMIT (deferred): the whole decision goes, not only the spend."""
    customer, placement = served_here["customer"], served_here["placement"]
    real = spend.accrual_upsert
    monkeypatch.setattr(spend, "accrual_upsert", lambda costs, now, shard=0: real({999_999: Decimal(1)}, now, shard))
    with pytest.raises(IntegrityError):
        decide(customer, placement)
    assert not rows.in_transaction() and lock_is_free(customer.pk)
    assert not ServedAd.objects.exists() and not Decision.objects.exists() and not CampaignSpend.objects.exists()


def test_inside_an_atomic_block_or_with_server_side_binding_the_decision_uses_atomic(served_here, monkeypatch):
    customer, placement = served_here["customer"], served_here["placement"]
    with transaction.atomic():
        assert not rows.can_ride()
        with CaptureQueriesContext(connection) as queries:
            decide(customer, placement)
        assert not any("BEGIN" in q["sql"] or "COMMIT" in q["sql"] for q in queries.captured_queries)
    monkeypatch.setitem(connection.settings_dict["OPTIONS"], "server_side_binding", True)
    assert not rows.can_ride()
    assert ServedAd.objects.count() == 2


def test_caps_are_exact_when_decisions_for_one_customer_race(served_here):
    """32 threads × 40 decisions for one customer through `decide`: the campaign cap binds, exactly."""
    customer, placement, campaign, ads = (served_here[k] for k in ("customer", "placement", "campaign", "ads"))
    FrequencyCap.objects.create(level="ad", ad=ads[0], max_count=3, window=FrequencyCap.Window.DAY)
    FrequencyCap.objects.create(level="campaign", campaign=campaign, max_count=7, window=FrequencyCap.Window.DAY)
    errors = []

    def hammer():
        try:
            for _ in range(40):
                decide(customer, placement)
        except Exception as exc:  # surfaced below: a failed thread must fail the test
            errors.append(exc)
        finally:
            connections.close_all()

    workers = [threading.Thread(target=hammer) for _ in range(32)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors, errors[:3]
    assert Decision.objects.count() == 32 * 40
    assert ServedAd.objects.count() == 7 and ServedAd.objects.filter(ad=ads[0]).count() == 3
    assert sum(CampaignSpend.objects.values_list("amount", flat=True)) == Decimal("0.07")
