"""POST /api/v1/spend: daily spend from external platforms, idempotent per day and scope, bad items named, budgets count it."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import ApiClient
from marketing import spend
from marketing.models import Campaign, Channel, ExternalSpend

URL = "/api/v1/spend"


@pytest.fixture
def paid(db):
    social = Channel.objects.create(name="Paid social", kind=Channel.Kind.PAID)
    campaign = Campaign.objects.create(name="Upsell", status=Campaign.Status.LIVE, total_budget=Decimal("100"))
    return {"social": social, "campaign": campaign}


def key(*scopes, name="ads-platform"):
    return {"HTTP_AUTHORIZATION": f"Bearer {ApiClient.issue(f'{name}-{ApiClient.objects.count()}', list(scopes))[1]}"}


def post(client, items, auth):
    return client.post(URL, {"spend": items}, content_type="application/json", **auth)


def test_a_day_and_channel_posted_again_is_replaced_not_added(client, paid):
    auth = key("spend:write")
    yesterday = (timezone.localdate() - timedelta(days=1)).isoformat()
    first = post(client, [{"day": yesterday, "channel": "Paid social", "amount": "120.50"},
                          {"day": yesterday, "channel": str(paid["social"].pk), "campaign": paid["campaign"].pk, "amount": "40"}], auth)
    assert first.status_code == 200 and first.json() == {"accepted": 2, "created": 2, "replaced": 0, "rejected": []}
    again = post(client, [{"day": yesterday, "channel": "paid social", "amount": "130.00"}], auth)  # the platform restates
    assert again.json() == {"accepted": 1, "created": 0, "replaced": 1, "rejected": []}
    rows = {r.scope: r.amount for r in ExternalSpend.objects.all()}
    assert rows == {f"channel:{paid['social'].pk}": Decimal("130.00"),
                    f"channel:{paid['social'].pk}/campaign:{paid['campaign'].pk}": Decimal("40.00")}


def test_bad_items_are_named_by_index_and_field_and_the_good_ones_kept(client, paid):
    auth = key("spend:write")
    today = timezone.localdate()
    response = post(client, [
        {"day": today.isoformat(), "campaign": paid["campaign"].pk, "amount": "10"},
        {"day": (today + timedelta(days=1)).isoformat(), "channel": "Paid social", "amount": "5"},
        {"day": today.isoformat(), "channel": "TV", "amount": "5"},
        {"day": today.isoformat(), "amount": "5"},
        {"day": today.isoformat(), "campaign": 999, "amount": "-1"},
        "nonsense",
    ], auth)
    body = response.json()
    assert response.status_code == 200 and body["accepted"] == 1 and body["created"] == 1
    assert [(r["index"], r["field"]) for r in body["rejected"]] == [(1, "day"), (2, "channel"), (3, ""), (4, "amount"), (5, "")]
    assert "future" in body["rejected"][0]["reason"] and "no channel" in body["rejected"][1]["reason"]
    assert "name a channel, a campaign, or both" in body["rejected"][2]["reason"]
    assert ExternalSpend.objects.get().amount == Decimal("10.00")


def test_spend_needs_its_scope_and_a_batch_of_only_bad_items_is_a_400(client, paid):
    today = timezone.localdate().isoformat()
    assert post(client, [{"day": today, "campaign": paid["campaign"].pk, "amount": "1"}], key("events:write")).status_code == 403
    assert client.post(URL, {"spend": [{"day": "yesterday"}]}, content_type="application/json",
                       **key("spend:write")).status_code == 400
    assert client.post(URL, {"nothing": []}, content_type="application/json", **key("spend:write")).status_code == 400


def test_a_campaigns_external_spend_counts_toward_its_budget(client, paid):
    now = timezone.now()
    assert spend.budget_blocks([paid["campaign"]], now) == {}
    post(client, [{"day": timezone.localdate().isoformat(), "campaign": paid["campaign"].pk, "amount": "100"}], key("spend:write"))
    assert "total budget spent (100.00 of 100.00)" in spend.budget_blocks([paid["campaign"]], now)[paid["campaign"].pk]


def test_an_id_past_64_bits_is_a_bad_item_not_a_server_error(client, paid):
    auth = key("spend:write")
    today = timezone.localdate().isoformat()
    response = post(client, [{"day": today, "campaign": 2**100, "amount": "5"},
                             {"day": today, "channel": "Paid social", "amount": "7"}], auth)
    body = response.json()
    assert response.status_code == 200 and body["accepted"] == 1
    assert [(r["index"], r["field"]) for r in body["rejected"]] == [(0, "campaign")]
