"""A marketer builds a nested audience in the browser: the size follows every edit, errors sit on their condition."""

import re

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from audiences.models import Audience, Customer, Persona
from tests.conftest import PASSWORD
from tests.e2e.conftest import shot

pytestmark = pytest.mark.e2e


@pytest.fixture
def listeners(transactional_db):
    year = timezone.now().year
    rows = [("s1", "south", 22, "hip-hop"), ("s2", "south", 30, "hip-hop"), ("s3", "south", 50, "pop"),
            ("n1", "north", 21, "hip-hop"), ("n2", "north", 45, "k-pop")]
    for ext, region, age, genre in rows:
        customer = Customer.objects.create(external_id=ext, region=region, birth_year=year - age)
        Persona.objects.create(customer=customer, top_genre=genre, genres={genre: 1.0}, as_of=timezone.now())


def size(page):
    return page.locator("#preview .value")


def open_builder(page, live_server):
    """Log in on a new audience and keep only the example's first condition: age between 18 and …"""
    page.goto(f"{live_server.url}/audiences/new/")
    page.get_by_label("Username").fill("mark")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name=re.compile("New audience"))).to_be_visible()
    expect(size(page)).to_have_text("0")  # the example rule: nobody here played this week
    for _ in range(3):
        page.get_by_role("button", name="Remove this condition").last.click()
        page.wait_for_load_state("networkidle")
    expect(page.locator(".rb-leaf")).to_have_count(1)


class HeldRedraws:
    """Holds the builder's redraws in the browser, as a slow server would, until released."""

    def __init__(self, page):
        self.page, self.routes = page, []
        page.route("**/audiences/builder/", self.hold)

    def hold(self, route):
        self.routes.append(route)

    def wait_for(self, count):
        """Wait (5 s at most) until the browser has sent `count` redraws."""
        for _ in range(50):
            if len(self.routes) >= count:
                break
            self.page.wait_for_timeout(100)
        assert len(self.routes) == count

    def release(self):
        self.page.unroute("**/audiences/builder/")
        for route in self.routes:
            try:
                route.continue_()
            except Exception:  # a request the page has since cancelled
                pass


def upper_bound_redraw_held(page, live_server) -> HeldRedraws:
    """The builder with one condition, its upper bound just changed to 40, and that edit's redraw held."""
    open_builder(page, live_server)
    held = HeldRedraws(page)
    page.locator("input[name='n.0.value2']").fill("40")
    page.locator("input[name='n.0.value2']").press("Tab")
    held.wait_for(1)
    return held


def test_a_marketer_builds_a_nested_audience_and_sees_its_size_live(live_server, browser_page, listeners, mark):
    page = browser_page
    open_builder(page, live_server)
    # age 18–30 → s1, s2, n1
    page.locator("input[name='n.0.value2']").fill("30")
    page.locator("input[name='n.0.value2']").press("Tab")
    expect(size(page)).to_have_text("3")

    # Nest an OR group: (region is south) OR (hip-hop genre affinity ≥ 0.5)
    page.get_by_role("button", name="Group").first.click()
    expect(page.locator("select[name='n.1.0.field']")).to_be_visible()
    page.locator("select[name='n.1.0.field']").select_option("region")
    expect(page.locator("select[name='n.1.0.op']")).to_have_value("eq")
    page.locator("input[name='n.1.0.value']").fill("south")
    page.locator("input[name='n.1.0.value']").press("Tab")
    expect(size(page)).to_have_text("2")  # s1, s2

    # A wrong value is named on its condition and the size says why it cannot count.
    page.locator("input[name='n.0.value']").fill("")
    page.locator("input[name='n.0.value']").press("Tab")
    expect(page.locator(".rb-leaf.rb-invalid")).to_have_count(1)
    expect(page.locator("#preview")).to_contain_text("is not a whole number")
    shot(page, "builder-error")
    page.locator("input[name='n.0.value']").fill("18")
    page.locator("input[name='n.0.value']").press("Tab")
    expect(size(page)).to_have_text("2")

    # Negate the group: young listeners NOT in the south → n1
    page.get_by_title("Negate this group").click()
    expect(page.locator(".rb-not")).to_have_count(1)
    expect(size(page)).to_have_text("1")
    expect(page.locator("#insights canvas").first).to_be_visible()
    shot(page, "builder-nested")

    page.get_by_label("Name").fill("Young outside the south")
    page.get_by_role("button", name="Save and count").click()
    expect(page.get_by_text("saved: 1 customers today")).to_be_visible()
    audience = Audience.objects.get(name="Young outside the south")
    assert audience.size == 1
    assert audience.rule == {"all": [{"field": "age", "op": "between", "value": [18, 30]},
                                     {"not": {"any": [{"field": "region", "op": "eq", "value": "south"}]}}]}


def test_an_edit_made_while_a_redraw_is_on_its_way_is_the_one_that_counts(live_server, browser_page, listeners, mark):
    """A slow redraw of an earlier edit must neither overwrite nor swallow the operator's next one."""
    page = browser_page
    held = upper_bound_redraw_held(page, live_server)
    # The first redraw is still on its way when the lower bound is cleared: the newer edit replaces it.
    page.locator("input[name='n.0.value']").fill("")
    page.locator("input[name='n.0.value']").press("Tab")
    held.wait_for(2)
    held.release()
    expect(page.locator(".rb-leaf.rb-invalid")).to_have_count(1)
    expect(page.locator("input[name='n.0.value']")).to_have_value("")
    expect(page.locator("input[name='n.0.value2']")).to_have_value("40")
    expect(page.locator("#preview")).to_contain_text("is not a whole number")


def test_text_being_typed_survives_a_redraw_and_is_counted(live_server, browser_page, listeners, mark):
    page = browser_page
    held = upper_bound_redraw_held(page, live_server)
    # The operator types the lower bound while the redraw of the upper one is on its way, and has not left the box.
    page.locator("input[name='n.0.value']").fill("25")
    held.release()
    # The redraw carries the typed text over and sends it: the builder is drawn again from 25–40.
    expect(page.locator("input[name='tree']")).to_have_value(re.compile(r"25,\s*40"))
    expect(page.locator(".rb-leaf")).to_have_count(1)
    expect(page.locator("input[name='n.0.value']")).to_have_value("25")
    expect(page.locator("input[name='n.0.value']")).to_be_focused()
    expect(size(page)).to_have_text("1")  # ages 25–40: s2 (30) only
    expect(page.locator("input[name='n.0.value2']")).to_have_value("40")
