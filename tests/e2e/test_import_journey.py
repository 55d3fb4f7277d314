"""A marketer logs in and imports customers through the UI; a real worker loads the file."""

import re

import pytest
from playwright.sync_api import expect

from audiences.models import Customer
from tests.conftest import PASSWORD
from tests.e2e.conftest import shot

pytestmark = [pytest.mark.e2e, pytest.mark.worker]


def test_a_marketer_logs_in_and_imports_a_csv(live_server, celery_worker_process, browser_page, mark, tmp_path):
    csv = tmp_path / "listeners.csv"
    csv.write_text(
        "user_id,birth_year,gender,region,premium,favourite_station\n"
        "u1,1995,f,south,yes,lofi\n"
        "u2,1988,m,north,no,rock\n"
        "u3,20x1,f,east,no,jazz\n"
    )
    page = browser_page
    page.goto(f"{live_server.url}/customers/")
    expect(page).to_have_url(re.compile(r"/login/"))
    page.get_by_label("Username").fill("mark")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Customers")).to_be_visible()
    shot(page, "customers-empty")

    page.get_by_role("link", name="Data imports").click()
    page.get_by_role("link", name="Import a file").first.click()
    page.get_by_label("What the file holds").select_option("customers")
    page.get_by_label("File", exact=False).and_(page.locator("input[type=file]")).set_input_files(str(csv))
    page.get_by_role("button", name="Upload and map columns").click()

    expect(page.get_by_text("Preview: the first rows of the file")).to_be_visible()
    expect(page.get_by_label("Customer id *")).to_have_value("user_id")
    expect(page.get_by_label("Subscriber")).to_have_value("premium")
    shot(page, "import-mapping")
    page.get_by_role("button", name="Import customers").click()

    expect(page.get_by_text("Done", exact=True)).to_be_visible(timeout=60_000)
    expect(page.get_by_text("not a number")).to_be_visible()
    expect(page.locator(".kpi", has_text="Loaded").locator(".value")).to_have_text("2")
    shot(page, "import-done")

    assert sorted(Customer.objects.values_list("external_id", flat=True)) == ["u1", "u2"]
    assert Customer.objects.get(external_id="u1").attributes == {"favourite_station": "lofi"}

    page.get_by_role("link", name="Customers").first.click()
    expect(page.get_by_role("link", name="u1")).to_be_visible()
    page.get_by_role("link", name="u1").click()
    expect(page.get_by_text("Favourite station")).to_be_visible()  # the imported attribute, labelled in words
    shot(page, "customer-detail")
