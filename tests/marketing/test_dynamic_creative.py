"""A dynamic creative: the ad promotes each customer's best recommended item of its item set."""

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import ApiClient
from audiences.models import Customer, Item, Recommendations
from marketing.models import Ad, Campaign, Channel, Placement

URL = "/api/v1/decisions"


@pytest.fixture
def world(db):
    channel = Channel.objects.create(name="Banner", kind=Channel.Kind.BANNER)
    banner = Placement.objects.create(slug="home", name="Home banner", channel=channel)
    campaign = Campaign.objects.create(name="New releases", status=Campaign.Status.LIVE)
    items = {x: Item.objects.create(external_id=x, title=f"Track {x}", artist="NOVA9") for x in ("a", "b", "c", "d")}
    ad = Ad.objects.create(campaign=campaign, name="Your next favourite", title="Listen now",
                           dynamic_items=[items["a"].pk, items["b"].pk, items["c"].pk], promoted_item=items["b"])
    ad.placements.add(banner)
    fan = Customer.objects.create(external_id="fan")
    Customer.objects.create(external_id="new")
    # d is their best overall but not in the set; c ranks above a
    Recommendations.objects.create(customer=fan, items=[items["d"].pk, items["c"].pk, items["a"].pk], scores=[0.9, 0.8, 0.7],
                                   model_key="recsys:als", built_at=timezone.now())
    return {"ad": ad, "items": items, "campaign": campaign}


def decide(client, customer: str) -> dict:
    token = ApiClient.issue(f"app-{customer}", ["decisions"])[1]
    response = client.post(URL, {"customer": customer, "placement": "home"}, content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 201
    (ad,) = response.json()["ads"]
    return ad["creative"]


def test_the_ad_promotes_the_customers_best_recommended_item_of_its_set(client, world):
    creative = decide(client, "fan")
    assert (creative["item"], creative["item_title"], creative["item_reason"]) == ("c", "Track c", "recommended")


def test_without_a_recommendation_in_the_set_the_promoted_item_is_shown(client, world):
    creative = decide(client, "new")
    assert (creative["item"], creative["item_reason"]) == ("b", "default")


def test_the_ad_form_takes_the_set_by_catalogue_id_and_names_unknown_ids(client_for, mark, world):
    client = client_for(mark)
    ad = world["ad"]
    url = reverse("campaigns:ad_edit", args=[ad.pk])
    page = client.get(url)
    assert b"a, b, c" in page.content
    form = {"name": ad.name, "status": "active", "priority": 0, "placements": [ad.placements.get().pk], "title": "Listen now",
            "payload": "{}", "dynamic_items": "d, zz, a"}
    refused = client.post(url, form)
    assert refused.status_code == 400 and "No catalogue item has the id “zz”." in refused.content.decode()
    assert client.post(url, {**form, "dynamic_items": "d, a"}).status_code == 302
    ad.refresh_from_db()
    assert ad.dynamic_items == [world["items"]["d"].pk, world["items"]["a"].pk]
