"""Object-level access: what one user or API client may reach of another's by id.

The rule for this single-team product: operators (users with a role) share the workspace, so
they see each other's campaigns, audiences and jobs; only admins edit users and API clients
(tests/accounts/test_access.py). API clients are external systems: a scope lets a client read or
write every object of its kind (audiences:read covers every audience, delivery-lists:read every
campaign's list), but what a client *sends* stays its own, and what it sends may not be
attributed to someone else:
- events and spend are keyed by their sender, so one client's ids never replace another's;
- an event may name any decision (the app asks, another system reports outcomes), but only for
  the customer that decision was made for and an ad it served;
- a job's progress is readable with jobs:read, its exception text is not;
- a delivery-list batch fetched again by another client replays the same rows: nothing is
  reserved twice and nothing outside the scope is revealed.
"""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import ApiClient
from audiences.models import Customer
from marketing.decisions import decide
from marketing.models import Ad, Campaign, Channel, Event, ExternalSpend, Placement, ServedAd
from ml.models import Job

NOW = timezone.now()


def bearer(name, *scopes):
    return {"HTTP_AUTHORIZATION": f"Bearer {ApiClient.issue(name, list(scopes))[1]}"}


@pytest.fixture
def served(db):
    """A push campaign with two ads, three customers, and a decision that served c1 the first ad."""
    channel = Channel.objects.create(name="Push", kind=Channel.Kind.PUSH, cost_model="send", unit_cost=Decimal("0.01"))
    placement = Placement.objects.create(slug="push", name="Push", channel=channel)
    campaign = Campaign.objects.create(name="Upsell", status=Campaign.Status.LIVE)
    first = Ad.objects.create(campaign=campaign, name="Family", priority=2)
    other = Campaign.objects.create(name="Release", status=Campaign.Status.LIVE)
    second = Ad.objects.create(campaign=other, name="Single")
    for ad in (first, second):
        ad.placements.add(placement)
    c1, c2, _ = (Customer.objects.create(external_id=f"c{i}") for i in (1, 2, 3))
    decision, ads = decide(c1, Placement.objects.select_related("channel").get(pk=placement.pk))
    return {"campaign": campaign, "first": ads[0], "second": second if ads[0] != second else first,
            "decision": str(decision.pk), "c1": c1, "c2": c2}


def post_events(client, events, auth):
    return client.post("/api/v1/events", {"events": events}, content_type="application/json", **auth)


def event(served, key, **fields):
    return {"id": key, "type": "click", "customer": "c1", "decision": served["decision"], "ad": served["first"].pk,
            "occurred_at": NOW.isoformat(), **fields}


def test_an_event_for_another_customers_decision_is_refused_and_credits_nobody(client, served):
    response = post_events(client, [event(served, "e1", customer="c2")], bearer("app", "events:write"))
    assert response.status_code == 400
    assert response.json()["rejected"] == [{"index": 0, "field": "decision", "value": served["decision"],
                                            "reason": "this decision was made for another customer"}]
    assert not Event.objects.exists()


def test_an_event_for_an_ad_the_decision_did_not_serve_is_refused(client, served):
    response = post_events(client, [event(served, "e1", ad=served["second"].pk)], bearer("app", "events:write"))
    assert response.status_code == 400 and response.json()["rejected"][0]["reason"] == "this decision did not serve this ad"
    assert not Event.objects.exists()


def test_any_client_may_report_an_outcome_of_a_decision_another_client_asked_for(client, served):
    response = post_events(client, [event(served, "e1")], bearer("events-pipeline", "events:write"))
    assert response.status_code == 200 and response.json()["created"] == 1
    assert Event.objects.get().campaign == served["campaign"]


def test_one_clients_event_ids_never_replace_or_hide_another_clients(client, served):
    post_events(client, [event(served, "e1")], bearer("app", "events:write"))
    again = post_events(client, [event(served, "e1", type="conversion")], bearer("web", "events:write")).json()
    assert again["created"] == 1
    assert sorted(Event.objects.values_list("type", flat=True)) == ["click", "conversion"]


def test_one_clients_spend_never_replaces_another_clients(client, served):
    day = (NOW - timedelta(days=1)).date().isoformat()
    for name, amount in (("ads", "10.00"), ("social", "3.00")):
        body = {"spend": [{"day": day, "campaign": served["campaign"].pk, "amount": amount}]}
        response = client.post("/api/v1/spend", body, content_type="application/json", **bearer(name, "spend:write"))
        assert response.status_code == 200 and response.json()["created"] == 1
    assert sorted(ExternalSpend.objects.values_list("amount", flat=True)) == [Decimal("3.00"), Decimal("10.00")]


def test_a_client_sees_a_jobs_progress_but_not_its_exception(client, db, mark):
    job = Job.objects.create(kind="campaign_model", title="Model", status=Job.Status.FAILED, created_by=mark,
                             error="OperationalError: could not connect to server at 10.0.3.7", message="Training failed")
    body = client.get(f"/api/v1/jobs/{job.pk}", **bearer("crm", "jobs:read")).json()
    assert (body["status"], body["message"]) == ("failed", "Training failed")
    assert "10.0.3.7" not in str(body) and body["error"]
    client.force_login(mark)  # operators share the workspace: the whole error, as on the Jobs page
    assert client.get(f"/api/v1/jobs/{job.pk}").json()["error"] == job.error


def test_another_client_fetching_the_same_delivery_batch_replays_it_and_reserves_nothing(client, served):
    url = f"/api/v1/campaigns/{served['campaign'].pk}/delivery-list?list=monday&format=ndjson"
    first = client.get(url, **bearer("crm", "delivery-lists:read"))
    rows = b"".join(first.streaming_content)
    reserved = ServedAd.objects.count()
    second = client.get(url, **bearer("mailer", "delivery-lists:read"))
    assert b"".join(second.streaming_content) == rows and ServedAd.objects.count() == reserved
