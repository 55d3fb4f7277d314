"""POST /api/v1/decisions: the contract, scopes, bad input by field, and caps counting what is served."""

import pytest

from accounts.models import ApiClient
from audiences.models import Customer, Item
from marketing.models import Ad, Campaign, Channel, Decision, FrequencyCap, Placement, ServedAd

URL = "/api/v1/decisions"


@pytest.fixture
def live(db):
    channel = Channel.objects.create(name="Push", kind=Channel.Kind.PUSH)
    push = Placement.objects.create(slug="push", name="Push", channel=channel)
    campaign = Campaign.objects.create(name="Upsell", status=Campaign.Status.LIVE)
    single = Item.objects.create(external_id="kpop-1", title="Single")
    ad = Ad.objects.create(campaign=campaign, name="Go premium", title="Go premium", body="3 months for 1",
                           promoted_item=single, payload={"deeplink": "app://premium"})
    ad.placements.add(push)
    FrequencyCap.objects.create(level="channel", channel=channel, max_count=1, window=FrequencyCap.Window.DAY)
    Customer.objects.create(external_id="c1")
    return {"ad": ad, "campaign": campaign}


def key(*scopes):
    return {"HTTP_AUTHORIZATION": f"Bearer {ApiClient.issue(f'crm-{ApiClient.objects.count()}', list(scopes))[1]}"}


def test_a_decision_returns_the_ads_with_propensity_and_reason_and_counts_toward_caps(client, live):
    auth = key("decisions")
    response = client.post(URL, {"customer": "c1", "placement": "push", "context": {"screen": "home"}}, content_type="application/json", **auth)
    assert response.status_code == 201
    body = response.json()
    assert body["ads"] == [{"ad": live["ad"].pk, "campaign": live["campaign"].pk, "propensity": 1.0, "reason": "priority",
                            "creative": {"title": "Go premium", "body": "3 months for 1", "image_url": "", "landing_url": "",
                                         "item": "kpop-1", "deeplink": "app://premium"}}]
    decision = Decision.objects.get(pk=body["decision"])
    assert decision.context == {"screen": "home"} and decision.chosen == [live["ad"].pk]
    # The push channel allows one a day: the next request gets nothing, and says so with an empty list.
    again = client.post(URL, {"customer": "c1", "placement": "push"}, content_type="application/json", **auth).json()
    assert again["ads"] == [] and ServedAd.objects.count() == 1


def test_bad_input_is_named_by_field(client, live):
    response = client.post(URL, {"customer": "nobody", "placement": "nowhere"}, content_type="application/json", **key("decisions"))
    assert response.status_code == 400
    assert response.json() == {"customer": ["no customer with external id 'nobody'"], "placement": ["no placement 'nowhere'"]}
    assert not Decision.objects.exists()


def test_decisions_need_the_decisions_scope(client, live):
    body = {"customer": "c1", "placement": "push"}
    assert client.post(URL, body, content_type="application/json").status_code == 401
    assert client.post(URL, body, content_type="application/json", **key("audiences:read")).status_code == 403
    assert client.get(URL, **key("decisions")).status_code == 405


EVENTS = "/api/v1/events"


def test_an_event_batch_keeps_good_items_reports_bad_ones_by_index_and_field_and_replays_change_nothing(client, live):
    from marketing.models import Event

    auth = key("events:write")
    decision = client.post(URL, {"customer": "c1", "placement": "push"}, content_type="application/json", **key("decisions")).json()
    events = [
        {"id": "e1", "type": "impression", "customer": "c1", "decision": decision["decision"], "ad": live["ad"].pk, "occurred_at": "2026-11-20T10:00:00Z"},
        {"id": "e2", "type": "click", "customer": "c1", "ad": live["ad"].pk, "occurred_at": "2026-11-20T10:00:05Z"},
        {"id": "e3", "type": "teleport", "customer": "c1", "occurred_at": "2026-11-20T10:00:05Z"},
        {"id": "e4", "type": "conversion", "customer": "ghost", "value": 9.99, "occurred_at": "2026-11-20T10:01:00Z"},
        {"id": "e5", "type": "conversion", "customer": "c1", "value": -1, "occurred_at": "2026-11-20T10:01:00Z"},
        {"id": "e6", "type": "conversion", "customer": "c1", "value": "9.99", "ad": live["ad"].pk, "occurred_at": "2026-11-20T10:02:00Z"},
        "nonsense",
    ]
    response = client.post(EVENTS, {"events": events}, content_type="application/json", **auth)
    body = response.json()
    assert response.status_code == 200 and (body["accepted"], body["created"]) == (3, 3)
    assert [(r["index"], r["field"]) for r in body["rejected"]] == [(2, "type"), (3, "customer"), (4, "value"), (6, "")]
    assert Event.objects.get(key="e6").campaign == live["campaign"] and str(Event.objects.get(key="e6").value) == "9.99"
    assert str(Event.objects.get(key="e1").decision_id) == decision["decision"]
    replay = client.post(EVENTS, {"events": events}, content_type="application/json", **auth).json()
    assert (replay["accepted"], replay["created"]) == (3, 0) and Event.objects.count() == 3


def test_events_need_their_scope_and_a_batch_of_only_bad_items_is_a_400(client, live):
    bad = {"events": [{"id": "x", "type": "click"}]}
    assert client.post(EVENTS, bad, content_type="application/json").status_code == 401
    assert client.post(EVENTS, bad, content_type="application/json", **key("decisions")).status_code == 403
    response = client.post(EVENTS, bad, content_type="application/json", **key("events:write"))
    assert response.status_code == 400 and response.json()["rejected"][0]["field"] == "customer"
    assert client.post(EVENTS, [1, 2], content_type="application/json", **key("events:write")).status_code == 400
