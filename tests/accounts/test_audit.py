"""Every change to campaigns, caps, plans, budgets, audiences, users and API clients leaves an audit entry."""

import json
from decimal import Decimal

import pytest
from django.urls import reverse

from accounts.models import ApiClient, AuditEntry
from audiences.models import Audience, Customer
from marketing import mix
from marketing.models import Ad, Campaign, Channel, FrequencyCap, Placement
from tests.marketing.test_budget_pages import fitted_model, make_scenario


def only(action: str) -> AuditEntry:
    return AuditEntry.objects.get(action=action)


# -- campaigns, ads, caps, delivery ----------------------------------------------------------------------------------


def test_creating_editing_and_moving_a_campaign_are_recorded_with_their_changes(client_for, mark):
    client = client_for(mark)
    client.post(reverse("campaigns:new"), {"name": "Win-back", "goal": "conversion", "daily_budget": "50",
                                           "explore_impressions": 500, "explore_days": 3})
    campaign = Campaign.objects.get(name="Win-back")
    created = only("campaign.create")
    assert (created.user, created.actor, created.object_type, created.object_id, created.object_label) == (
        mark, "mark", "campaign", str(campaign.pk), "Win-back")
    assert created.changes["daily_budget"] == [None, "50.00"] and created.changes["status"] == [None, "draft"]

    client.post(reverse("campaigns:edit", args=[campaign.pk]), {"name": "Win-back", "goal": "conversion",
                                                                 "daily_budget": "80", "explore_impressions": 500,
                                                                 "explore_days": 3})
    assert only("campaign.update").changes == {"daily_budget": ["50.00", "80.00"]}

    channel = Channel.objects.create(name="Banner", kind="banner")
    Ad.objects.create(campaign=campaign, name="Hero").placements.add(Placement.objects.create(slug="home", name="Home", channel=channel))
    client.post(reverse("campaigns:status", args=[campaign.pk]), {"status": "exploring"})
    assert only("campaign.status").changes == {"status": ["draft", "exploring"]}


def test_a_refused_change_leaves_no_entry(client_for, mark):
    campaign = Campaign.objects.create(name="Empty")
    client_for(mark).post(reverse("campaigns:status", args=[campaign.pk]), {"status": "live"})  # no ad to serve
    assert not AuditEntry.objects.filter(action="campaign.status").exists()


def test_an_edit_that_changes_nothing_is_not_recorded(client_for, mark):
    campaign = Campaign.objects.create(name="Same", explore_impressions=500, explore_days=3)
    client_for(mark).post(reverse("campaigns:edit", args=[campaign.pk]), {
        "name": "Same", "goal": campaign.goal, "explore_impressions": 500, "explore_days": 3,
        "attribution_minutes": campaign.attribution_minutes, "control_share": campaign.control_share})
    assert not AuditEntry.objects.filter(action="campaign.update").exists()


def test_ads_record_their_placements(client_for, mark):
    campaign = Campaign.objects.create(name="Release")
    channel = Channel.objects.create(name="Banner", kind="banner")
    home = Placement.objects.create(slug="home", name="Home", channel=channel)
    response = client_for(mark).post(reverse("campaigns:ad_new", args=[campaign.pk]), {
        "name": "Hero", "status": "active", "priority": 0, "placements": [home.pk], "payload": "{}"})
    assert response.status_code == 302, response.content[:500]
    entry = only("ad.create")
    assert entry.object_label == "Hero (Release)" and entry.changes["placements"] == [None, ["home"]]


def test_adding_and_removing_a_cap_are_recorded(client_for, mark):
    campaign = Campaign.objects.create(name="Release")
    client = client_for(mark)
    client.post(reverse("campaigns:cap_new"), {"level": "campaign", "campaign": campaign.pk, "max_count": 2, "window": 86400})
    cap = FrequencyCap.objects.get()
    added = only("cap.create")
    assert added.changes["max_count"] == [None, 2] and added.changes["campaign"] == [None, campaign.pk]
    client.post(reverse("campaigns:cap_delete", args=[cap.pk]))
    removed = only("cap.delete")
    assert (removed.user, removed.object_id) == (mark, str(cap.pk))
    assert removed.changes["max_count"] == [2, None] and removed.changes["window"] == [86400, None]


def test_channels_and_placements_are_recorded(client_for, mark):
    client = client_for(mark)
    client.post(reverse("campaigns:channel_new"), {"name": "Push", "kind": "push", "cost_model": "send", "unit_cost": "0.01"})
    channel = Channel.objects.get()
    assert only("channel.create").changes["unit_cost"] == [None, "0.0100"]
    client.post(reverse("campaigns:channel_edit", args=[channel.pk]), {"name": "Push", "kind": "push", "cost_model": "send",
                                                                       "unit_cost": "0.02"})
    assert only("channel.update").changes == {"unit_cost": ["0.0100", "0.0200"]}


# -- budgets ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def linked(db):
    model = fitted_model()
    push = Channel.objects.create(name="Push", kind="push", cost_model="send", unit_cost=Decimal("0.01"))
    placement = Placement.objects.create(slug="push", name="Push", channel=push)
    campaign = Campaign.objects.create(name="Upsell", daily_budget=Decimal("25"))
    Ad.objects.create(campaign=campaign, name="Upsell").placements.add(placement)
    mix.link_channels(model.dataset, {"push": push.pk})
    return make_scenario(model, name="Q3 plan"), campaign


def test_applying_a_budget_scenario_records_each_campaigns_daily_budget(client_for, mark, linked):
    scenario, campaign = linked
    client_for(mark).post(reverse("budget:apply", args=[scenario.pk]))
    campaign.refresh_from_db()
    entry = only("budget.apply")
    assert (entry.user, entry.object_type, entry.object_id) == (mark, "campaign", str(campaign.pk))
    assert entry.changes == {"daily_budget": ["25.00", f"{campaign.daily_budget:.2f}"]} and campaign.daily_budget != 25
    assert entry.note == "scenario “Q3 plan”"


# -- audiences -------------------------------------------------------------------------------------------------------


RULE = {"field": "region", "op": "eq", "value": "south"}


def test_audiences_record_creation_rule_changes_and_refreshes(client_for, mark):
    Customer.objects.create(external_id="a", region="south")
    client = client_for(mark)
    client.post(reverse("audiences:new"), {"name": "South", "description": "", "rule": json.dumps(RULE)})
    audience = Audience.objects.get()
    assert only("audience.create").changes == {"name": [None, "South"], "kind": [None, "rules"], "rule": [None, RULE]}
    north = {"field": "region", "op": "eq", "value": "north"}
    client.post(reverse("audiences:edit", args=[audience.pk]), {"name": "South", "description": "", "rule": json.dumps(north)})
    assert only("audience.update").changes == {"rule": [RULE, north]}
    Customer.objects.create(external_id="b", region="north")
    client.post(reverse("audiences:refresh", args=[audience.pk]))
    entry = only("audience.refresh")
    assert (entry.user, entry.changes) == (mark, {"size": [0, 1]})


# -- users and API clients -------------------------------------------------------------------------------------------


def test_users_roles_and_api_clients_are_recorded(client_for, alice, mark):
    client = client_for(alice)
    client.post(reverse("team:user_new"), {"username": "mia", "email": "", "role": "Analyst", "password": "a-long-enough-secret-7"})
    assert only("user.create").changes == {"role": [None, "Analyst"]}
    client.post(reverse("team:user_edit", args=[mark.pk]), {"role": "Analyst", "is_active": "on"})
    role = only("user.role")
    assert (role.user, role.object_label, role.changes) == (alice, "mark", {"role": ["Marketer", "Analyst"]})
    client.post(reverse("team:user_edit", args=[mark.pk]), {"role": "Analyst"})
    assert only("user.update").changes == {"is_active": [True, False]}
    client.post(reverse("team:client_new"), {"name": "crm", "scopes": ["customers:read"]})
    api_client = ApiClient.objects.get()
    assert only("client.issue").changes == {"scopes": [None, ["customers:read"]], "requests_per_minute": [None, None]}
    client.post(reverse("team:client_revoke", args=[api_client.pk]))
    assert only("client.revoke").changes == {"is_active": [True, False]}


def test_an_api_client_is_named_as_the_actor(db):
    from accounts import audit
    from accounts.authentication import ApiClientPrincipal

    api_client, _ = ApiClient.issue("crm", ["customers:read"])
    entry = audit.record("campaign.status", Campaign.objects.create(name="X"), by=ApiClientPrincipal(api_client))
    assert (entry.user, entry.client, entry.actor) == (None, api_client, "api:crm")


# -- the audit log page ----------------------------------------------------------------------------------------------


def test_only_admins_read_the_audit_log(client, alice, mark, ann, nora):
    assert client.get(reverse("team:audit"))["Location"].startswith(reverse("login"))
    for user in (mark, ann, nora):
        client.force_login(user)
        assert client.get(reverse("team:audit")).status_code == 403
    client.force_login(alice)
    response = client.get(reverse("team:audit"))
    assert response.status_code == 200 and "Nothing recorded yet." in response.content.decode()
    assert reverse("team:audit") in client.get(reverse("team:overview")).content.decode()


def test_the_audit_log_lists_newest_first_and_filters(client_for, alice, mark):
    client = client_for(mark)
    client.post(reverse("campaigns:new"), {"name": "First", "goal": "click", "explore_impressions": 5, "explore_days": 1})
    client.post(reverse("campaigns:new"), {"name": "Second", "goal": "click", "explore_impressions": 5, "explore_days": 1})
    cap_campaign = Campaign.objects.get(name="First")
    client.post(reverse("campaigns:cap_new"), {"level": "campaign", "campaign": cap_campaign.pk, "max_count": 2, "window": 86400})
    rows = client_for(alice).get(reverse("team:audit")).content.decode().split("<tbody>")[1].split("<tr>")[1:]
    assert "cap.create" in rows[0] and ">Second<" in rows[1] and ">First<" in rows[2]

    page = client_for(alice).get(reverse("team:audit"), {"action": "campaign"}).content.decode()
    assert "Second" in page and "<td><a class=\"badge text-bg-light border text-decoration-none\" href=\"?action=cap.create\"" not in page
    page = client_for(alice).get(reverse("team:audit"), {"object": f"campaign:{cap_campaign.pk}"}).content.decode()
    assert "First" in page and "Second" not in page
    page = client_for(alice).get(reverse("team:audit"), {"actor": "alice"}).content.decode()
    assert "No entry matches these filters." in page
    partial = client_for(alice).get(reverse("team:audit"), {"actor": "mark"}, HTTP_HX_REQUEST="true").content.decode()
    assert "Second" in partial and "<html" not in partial


def test_the_campaign_page_shows_its_recent_history(client_for, mark):
    client = client_for(mark)
    client.post(reverse("campaigns:new"), {"name": "Win-back", "goal": "click", "explore_impressions": 5, "explore_days": 1})
    campaign = Campaign.objects.get()
    page = client.get(reverse("campaigns:detail", args=[campaign.pk])).content.decode()
    assert "History" in page and "campaign.create" in page
