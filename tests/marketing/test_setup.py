"""The placement set-up cache: read once per process, dropped when delivery rows change, few queries per decision."""

import time
from types import SimpleNamespace

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import ApiClient
from audiences.models import Customer
from marketing import setup
from marketing.models import Ad, Campaign, CapLock, Channel, Decision, DeliveryPlan, FrequencyCap, Placement, ServedAd
from tests.threads import while_one_works


@pytest.fixture
def cached(db, settings):
    settings.DELIVERY_SETUP_SECONDS = 60
    setup._forget()
    channel = Channel.objects.create(name="Banner", kind=Channel.Kind.BANNER)
    home = Placement.objects.create(slug="home", name="Home", channel=channel)
    campaign = Campaign.objects.create(name="Release", status=Campaign.Status.LIVE)
    ad = Ad.objects.create(campaign=campaign, name="single")
    ad.placements.add(home)
    FrequencyCap.objects.create(level="service", max_count=5, window=FrequencyCap.Window.DAY)
    DeliveryPlan.objects.create(placement=home, rest=DeliveryPlan.Rest.PRIORITY)
    setup._forget()
    yield {"home": home, "ad": ad, "campaign": campaign}
    setup._forget()


def test_the_set_up_is_read_once_and_then_served_from_memory(cached, django_assert_num_queries):
    first = setup.setup_for("home")
    assert [a.name for a in first.ads] == ["single"] and first.plan.rest == "priority" and len(first.caps) == 1
    with django_assert_num_queries(0):
        assert setup.setup_for("home") is first
    assert setup.setup_for("nowhere") is None


def test_a_saved_ad_plan_or_cap_drops_the_set_up_once_the_change_commits(cached, django_capture_on_commit_callbacks):
    setup.setup_for("home")
    with django_capture_on_commit_callbacks(execute=True):
        cached["ad"].status = Ad.Status.PAUSED
        cached["ad"].save()
    assert setup.setup_for("home").ads == []
    with django_capture_on_commit_callbacks(execute=True):
        FrequencyCap.objects.create(level="ad", ad=cached["ad"], max_count=1)
        cached["ad"].status = Ad.Status.ACTIVE
        cached["ad"].save()
    assert len(setup.setup_for("home").caps) == 2
    with django_capture_on_commit_callbacks(execute=True):
        DeliveryPlan.objects.get().delete()
    assert setup.setup_for("home").plan is None


def test_another_process_sees_the_change_through_the_shared_version_within_its_read_interval(
        cached, django_capture_on_commit_callbacks, monkeypatch):
    from django.core.cache import cache

    before = setup.setup_for("home")
    held, version = dict(setup._held), setup._version
    with django_capture_on_commit_callbacks(execute=True):
        Campaign.objects.filter(pk=cached["campaign"].pk).update(status=Campaign.Status.PAUSED)
        setup.changed()  # what code that uses .update() must do
    assert cache.get(setup.VERSION_KEY) != version[1]
    # As if this were another process, which read the version just before the change and holds the old copy:
    setup._held.update(held)
    setup._version = version
    assert setup.setup_for("home") is before  # it does not ask the cache again within VERSION_READ_SECONDS
    later = time.monotonic() + setup.VERSION_READ_SECONDS
    monkeypatch.setattr(setup, "time", SimpleNamespace(monotonic=lambda: later))  # this module's clock only
    after = setup.setup_for("home")
    assert after is not before and after.ads == []


def test_this_process_sees_its_own_change_at_once(cached):
    before = setup.setup_for("home")
    Campaign.objects.filter(pk=cached["campaign"].pk).update(status=Campaign.Status.PAUSED)
    setup.changed()
    assert setup.setup_for("home").ads == [] and before.ads


def test_a_decision_through_the_api_costs_few_queries_once_the_set_up_is_held(cached, client):
    Customer.objects.create(external_id="c1")
    token = ApiClient.issue("app", ["decisions"])[1]
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    client.post("/api/v1/decisions", {"customer": "c1", "placement": "home"}, content_type="application/json", **auth)
    with CaptureQueriesContext(connection) as queries:
        response = client.post("/api/v1/decisions", {"customer": "c1", "placement": "home"}, content_type="application/json", **auth)
    assert response.status_code == 201 and response.json()["ads"][0]["ad"] == cached["ad"].pk
    # The token, the customer with its persona, (budgets: none here), the customer's locks (block and row, in
    # one statement on PostgreSQL, sent with the statement reading their history; on SQLite the row's existence,
    # then the history), then the served ads and the decision (one statement on PostgreSQL, with the spend
    # when there is a cost) — not counting the transaction's own BEGIN / COMMIT (or, inside the test's
    # transaction, SAVEPOINT / RELEASE).
    statements = [q["sql"] for q in queries.captured_queries
                  if not q["sql"].startswith(("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE"))]
    assert len(statements) == (4 if connection.vendor == "postgresql" else 6), statements
    if connection.vendor == "postgresql":
        locks = statements[2]
        assert locks.index("pg_advisory_xact_lock_shared") < locks.index("FOR UPDATE") < locks.index("; SELECT ad_id")


def test_a_decision_the_plan_offers_nothing_is_logged_by_one_statement_without_locks(cached, client):
    DeliveryPlan.objects.filter(placement=cached["home"]).update(rest=DeliveryPlan.Rest.NOTHING)
    setup._forget()
    customer = Customer.objects.create(external_id="c1")
    token = ApiClient.issue("app", ["decisions"])[1]
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    client.post("/api/v1/decisions", {"customer": "c1", "placement": "home"}, content_type="application/json", **auth)
    with CaptureQueriesContext(connection) as queries:
        response = client.post("/api/v1/decisions", {"customer": "c1", "placement": "home"}, content_type="application/json", **auth)
    assert response.status_code == 201 and response.json()["ads"] == []
    # The token, the customer, the decision: no transaction, no lock, no history (no cap can bear on nothing).
    sql = [q["sql"] for q in queries.captured_queries]
    assert len(sql) == 3 and sql[2].startswith('INSERT INTO "marketing_decision"'), sql
    assert not CapLock.objects.filter(customer=customer).exists() and not ServedAd.objects.exists()
    logged = Decision.objects.get(pk=response.json()["decision"])
    assert (logged.reason, logged.eligible, logged.chosen, logged.propensity, logged.rule) == ("none", [], [], 1.0, None)
    assert Decision.objects.filter(customer=customer).count() == 2


def test_with_server_side_binding_the_history_is_read_by_its_own_statement(cached, client, monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("the one-round-trip read is PostgreSQL's")
    Customer.objects.create(external_id="c1")
    token = ApiClient.issue("app", ["decisions"])[1]
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    client.post("/api/v1/decisions", {"customer": "c1", "placement": "home"}, content_type="application/json", **auth)
    monkeypatch.setitem(connection.settings_dict["OPTIONS"], "server_side_binding", True)  # one statement per execute
    with CaptureQueriesContext(connection) as queries:
        response = client.post("/api/v1/decisions", {"customer": "c1", "placement": "home"}, content_type="application/json", **auth)
    assert response.status_code == 201 and response.json()["ads"][0]["ad"] == cached["ad"].pk
    sql = [q["sql"] for q in queries.captured_queries]
    assert not any(";" in s for s in sql) and any(s.startswith("SELECT ad_id") for s in sql)


@pytest.mark.parametrize("edited", [False, True], ids=["expired", "edited"])
def test_one_thread_reloads_a_set_up_while_the_others_wait_or_use_the_old_copy(cached, monkeypatch, edited):
    """8 threads meet an expired (or edited) set-up at once: one loads it. After an edit, nobody gets the old one."""
    import threading

    old = setup.setup_for("home")
    loads, started, new = [], threading.Event(), object()

    def slow_load(slug):  # no query: the threads' connections would not see the test's rows
        loads.append(slug)
        started.set()
        time.sleep(0.2)  # long enough for every other thread to arrive while it loads
        return new

    monkeypatch.setattr(setup, "load", slow_load)
    expires, version, found = setup._held["home"]
    setup._held["home"] = (time.monotonic() - 1, version, found)  # expired
    if edited:
        setup._version = (time.monotonic() + 60, ("edited", version))  # the shared version moved
    got = while_one_works(lambda: setup.setup_for("home"), started)
    assert loads == ["home"] and len(got) == 8
    if edited:
        assert all(g is new for g in got)
    else:  # the seven that came during the reload went on with the old copy
        assert got[0] is new and all(g is old for g in got[1:]) and setup.setup_for("home") is new
