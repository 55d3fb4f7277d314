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
