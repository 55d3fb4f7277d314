"""A marketer sets up a campaign with two ads and a plan in the browser, then asks why a fan gets their ad."""

import re

import pytest
from playwright.sync_api import expect

from audiences.models import Audience, AudienceMember, Customer
from marketing.models import Channel, DeliveryPlan, Placement
from tests.conftest import PASSWORD
from tests.e2e.conftest import shot

pytestmark = pytest.mark.e2e


@pytest.fixture
def stage(transactional_db):
    banner = Channel.objects.create(name="In-app banner", kind=Channel.Kind.BANNER)
    Placement.objects.create(slug="home-banner", name="Home banner", channel=banner)
    fans = Audience.objects.create(name="K-pop fans", kind=Audience.Kind.LIST)
    AudienceMember.objects.create(audience=fans, customer=Customer.objects.create(external_id="fan-42"))
    Customer.objects.create(external_id="casual-7")


def test_a_marketer_creates_a_campaign_and_plan_and_simulates_a_fan(live_server, browser_page, stage, mark):
    page = browser_page
    page.goto(f"{live_server.url}/campaigns/")
    page.get_by_label("Username").fill("mark")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_text("No campaigns yet.")).to_be_visible()

    page.get_by_role("link", name="Create a campaign").click()
    page.get_by_label("Name").fill("K-pop single")
    page.get_by_role("button", name="Create the campaign").click()
    expect(page.locator("#status")).to_have_text("Draft")
    for name, priority in [("Teaser", "5"), ("Pre-save", "1")]:
        page.get_by_role("link", name=re.compile("^(Add an ad|New ad)$")).first.click()
        page.locator("#id_name").fill(name)
        page.get_by_label("Priority").fill(priority)
        page.get_by_label("Home banner · home-banner").check()
        page.get_by_role("button", name="Save the ad").click()
    page.get_by_role("button", name="Start exploring").click()
    expect(page.locator("#status")).to_have_text("Exploring")
    shot(page, "campaign-detail")

    page.get_by_role("link", name="Delivery set-up").first.click()
    page.get_by_role("link", name="Edit plan").click()
    page.get_by_role("button", name="Add a rule").click()
    page.get_by_label("Audience", exact=True).select_option(label="K-pop fans")
    page.locator(".rule-row").get_by_label("K-pop single · Pre-save").check()
    page.get_by_label("Everyone else gets").select_option("priority")
    page.get_by_role("button", name="Save the plan").click()
    expect(page.get_by_text("is saved")).to_be_visible()
    assert DeliveryPlan.objects.get().rules.count() == 1

    page.get_by_role("link", name="Simulate on this placement").click()
    page.get_by_label("Customer id").fill("fan")
    expect(page.locator("#customer-options option[value='fan-42']")).to_have_count(1)  # the suggestion arrived
    page.get_by_label("Customer id").fill("fan-42")
    page.get_by_role("button", name="Simulate").click()
    expect(page.locator("#would-serve")).to_contain_text("Pre-save")
    expect(page.get_by_text("Rule 1: in “K-pop fans” → one specified ad.")).to_be_visible()
    shot(page, "simulate-fan")
    page.get_by_label("Customer id").fill("casual-7")
    page.get_by_role("button", name="Simulate").click()
    expect(page.locator("#would-serve")).to_contain_text("Teaser")
    expect(page.get_by_text("Everyone else: by priority.")).to_be_visible()
