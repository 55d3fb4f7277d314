"""The operator's journey, end to end in a real browser: from a CSV to a budget scenario.

Mark, a marketer, logs in, imports listeners and their activity, builds a nested audience, sets up
a mixed delivery plan with frequency caps and a control group, watches the traffic simulator's
decisions arrive, sees the campaign's own model appear once exploration is over, reads ROI and
incremental ROI, and plans a budget. Everything runs for real: the live server, the test database,
a Celery worker process, `manage.py simulate_traffic` in a subprocess, Debian's chromium. The one
stand-in is the beat's minute tick (`marketing.refresh_rates`), which the test sends itself once the
attribution window of the simulated decisions has closed, instead of waiting for a beat process.

A screenshot of every step lands in test-artifacts/journey-NN-step.png.
"""

from __future__ import annotations

import csv
import os
import random
import re
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from audiences.models import Audience, Customer
from marketing.models import Ad, Campaign, Decision, FrequencyCap, MixModel, ServedAd
from ml.models import Job, ModelVersion
from tests.conftest import PASSWORD, _database_url_for_subprocess, wait_for
from tests.e2e.conftest import shot

pytestmark = [pytest.mark.e2e, pytest.mark.worker]

ROOT = Path(__file__).resolve().parents[2]
CUSTOMERS = 400
DECISIONS = 3000  # enough that the rest of the traffic trains a model
CPM = 40  # the banner's price per 1,000 impressions
RANKED = ["Student discount", "Duo for two", "3 months for 0.99"]  # ads the simulator's ground truth knows
TARGETED = "Family plan"


# -- the operator's files -----------------------------------------------------------------------------------


def listeners(rng: random.Random) -> list[dict]:
    """Mostly young free listeners; ages avoid 29–31 and 59+ so 'age between 30 and 60' has no edge cases."""
    year = timezone.now().year
    rows = []
    for n in range(CUSTOMERS):
        age = rng.choice([rng.randint(18, 24), rng.randint(18, 24), rng.randint(25, 28), rng.randint(32, 58)])
        rows.append({"user_id": f"L{n:04d}", "birth_year": year - age, "gender": rng.choice("fmx"),
                     "region": rng.choice(["south", "north", "east", "west"]), "tier": rng.choice([1, 2, 3]),
                     "premium": "yes" if rng.random() < 0.15 else "no", "age": age})
    return rows


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def activity(rng: random.Random, people: list[dict]) -> list[dict]:
    """Plays over the last three weeks (a few listeners lapsed), and purchases for some, for the value segments."""
    now = timezone.now()
    rows = []
    for person in people:
        if rng.random() < 0.1:
            continue
        for _ in range(rng.randint(1, 12)):
            at = now - timedelta(days=rng.uniform(0.1, 21))
            rows.append({"user_id": person["user_id"], "event": "play", "timestamp": at.isoformat(timespec="seconds"), "value": ""})
        if rng.random() < 0.3:
            at = now - timedelta(days=rng.uniform(0.1, 60))
            rows.append({"user_id": person["user_id"], "event": "purchase", "timestamp": at.isoformat(timespec="seconds"),
                         "value": f"{rng.choice([4.99, 9.99, 19.99]):.2f}"})
    return rows


def mix_history(path: Path) -> Path:
    """The demo's weekly spend per channel and revenue (marketing.demo), as a marketer would export it."""
    from marketing.demo import demo_mix_series

    series = demo_mix_series(weeks=104)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["week", *(f"{name.lower().replace(' ', '_')}_S" for name in series.channels), "revenue", "promotion"])
        for i, day in enumerate(series.dates):
            writer.writerow([day.isoformat(), *(f"{series.spend[c][i]:.2f}" for c in series.channels),
                             f"{series.outcome[i]:.2f}", int(series.controls["promotion"][i])])
    return path


# -- helpers ---------------------------------------------------------------------------------------------------


class Steps:
    """Numbered screenshots, and how long each step took (printed at the end, shown with -s)."""

    def __init__(self, page) -> None:
        self.page, self.n, self.started, self.times = page, 0, time.monotonic(), []

    def done(self, name: str) -> None:
        self.n += 1
        shot(self.page, f"journey-{self.n:02d}-{name}")
        self.times.append((f"{self.n:02d} {name}", time.monotonic() - self.started))
        print(f"journey {self.times[-1][0]}: {self.times[-1][1]:.0f} s", file=sys.stderr)  # shown with -s


def nav(page, name: str) -> None:
    page.get_by_role("navigation", name="Main navigation").get_by_role("link", name=name).click()


def kpi(page, label: str):
    return page.locator(".kpi", has=page.locator(".label", has_text=re.compile(f"^{re.escape(label)}$"))).locator(".value")


def number(text: str) -> float:
    return float(text.replace(",", "").replace("\u00a0", "").replace("%", "").strip())


def simulate(decisions: int, seed: int, settings, log: Path) -> subprocess.Popen:
    """`manage.py simulate_traffic --once N` on the test database, as the demo runs it."""
    env = {**os.environ, "DEBUG": "true", "DATABASE_URL": _database_url_for_subprocess()}
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        env["ENCORE_VAR_DIR"] = str(settings.VAR_DIR)
    return subprocess.Popen([sys.executable, "manage.py", "simulate_traffic", "--once", str(decisions), "--seed", str(seed)],
                            cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def upload(page, kind: str, path: Path, button: str) -> None:
    nav(page, "Data imports")
    page.get_by_role("link", name="Import a file").first.click()
    page.get_by_label("What the file holds").select_option(kind)
    page.locator("input[type=file]").set_input_files(str(path))
    page.get_by_role("button", name="Upload and map columns").click()
    expect(page.get_by_text("Preview: the first rows of the file")).to_be_visible()
    page.get_by_role("button", name=button).click()
    expect(page.get_by_text("Done", exact=True)).to_be_visible(timeout=90_000)


# -- the journey -------------------------------------------------------------------------------------------------


def test_an_operator_goes_from_a_csv_to_a_live_campaign_its_model_roi_and_a_budget(
        live_server, celery_worker_process, browser_page, mark, settings, tmp_path):
    rng = random.Random(20261123)
    people = listeners(rng)
    page = browser_page
    page.on("dialog", lambda dialog: dialog.accept())  # "Rebuild every persona?" and other confirmations
    step = Steps(page)

    # 1. Log in through the form.
    page.goto(f"{live_server.url}/")
    expect(page).to_have_url(re.compile(r"/login/"))
    page.get_by_label("Username").fill("mark")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    expect(page.get_by_text("Welcome to Encore.")).to_be_visible()
    step.done("logged-in")

    # 2. Import listeners and their activity; the worker loads them; personas are built.
    upload(page, "customers", write_csv(tmp_path / "listeners.csv", people,
                                        ["user_id", "birth_year", "gender", "region", "tier", "premium"]), "Import customers")
    expect(kpi(page, "Loaded")).to_have_text(f"{CUSTOMERS}")
    expect(kpi(page, "Rejected")).to_have_text("0")
    step.done("customers-imported")
    plays = activity(rng, people)
    upload(page, "activities", write_csv(tmp_path / "activity.csv", plays, ["user_id", "event", "timestamp", "value"]),
           "Import activities")
    expect(kpi(page, "Loaded")).to_have_text(f"{len(plays):,}")
    step.done("activity-imported")
    nav(page, "Customers")
    page.get_by_role("link", name="Settings").click()
    page.get_by_role("button", name="Rebuild everyone").click()
    expect(page.locator("#job").get_by_text("Succeeded")).to_be_visible(timeout=90_000)
    expect(page.locator("#job")).to_contain_text(f"{CUSTOMERS - sum(1 for p in people if p['user_id'] not in {r['user_id'] for r in plays})}")
    step.done("personas-built")

    # 3. A nested audience: age 30–60 AND (region south OR city tier 1); its size follows the edits.
    nav(page, "Audiences")
    page.get_by_role("link", name="New audience").click()
    size = page.locator("#preview .value")
    builder = page.locator("#builder")

    def edit(action) -> None:
        """One edit of the builder, then wait until htmx has swapped in the re-rendered tree (a change re-renders it)."""
        builder.evaluate("b => b.firstElementChild.dataset.stale = '1'")
        action()
        expect(builder.locator("[data-stale]")).to_have_count(0)

    def value(name: str, text: str) -> None:
        edit(lambda: (page.locator(f"[name='n.{name}']").fill(text), page.locator(f"[name='n.{name}']").press("Tab")))

    for _ in range(3):
        edit(lambda: page.get_by_role("button", name="Remove this condition").last.click())
    expect(page.locator(".rb-leaf")).to_have_count(1)
    value("0.value2", "60")
    expect(size).to_have_text(f"{CUSTOMERS}")  # 18–60: everyone
    value("0.value", "30")
    older = sum(1 for p in people if 30 <= p["age"] <= 60)
    expect(size).to_have_text(f"{older:,}")
    edit(lambda: page.get_by_role("button", name="Group").first.click())
    expect(page.locator("select[name='n.1.group']")).to_have_value("any")
    edit(lambda: page.locator("select[name='n.1.0.field']").select_option("region"))
    expect(page.locator("select[name='n.1.0.op']")).to_have_value("eq")
    value("1.0.value", "south")
    south = sum(1 for p in people if 30 <= p["age"] <= 60 and p["region"] == "south")
    expect(size).to_have_text(f"{south:,}")
    edit(lambda: page.get_by_role("group", name="Any of group").get_by_role("button", name="Condition", exact=True).click())
    edit(lambda: page.locator("select[name='n.1.1.field']").select_option("city_tier"))
    if page.locator("select[name='n.1.1.op']").input_value() != "eq":
        edit(lambda: page.locator("select[name='n.1.1.op']").select_option("eq"))
    value("1.1.value", "1")
    members = sorted(p["user_id"] for p in people if 30 <= p["age"] <= 60 and (p["region"] == "south" or p["tier"] == 1))
    expect(size).to_have_text(f"{len(members):,}")
    page.get_by_label("Name").fill("30–60 in the south or big cities")
    step.done("audience-built")
    page.get_by_role("button", name="Save and count").click()
    expect(page.get_by_text(f"saved: {len(members)} customers today")).to_be_visible()
    audience = Audience.objects.get(name="30–60 in the south or big cities")
    assert audience.rule == {"all": [{"field": "age", "op": "between", "value": [30, 60]},
                                     {"any": [{"field": "region", "op": "eq", "value": "south"},
                                              {"field": "city_tier", "op": "eq", "value": 1}]}]}
    assert sorted(Customer.objects.filter(audience_memberships__audience=audience).values_list("external_id", flat=True)) == members
    step.done("audience-saved")

    # 4. Delivery: a banner placement, a campaign with four ads, a mixed plan, caps; then it explores.
    page.goto(f"{live_server.url}/campaigns/delivery/")
    page.get_by_role("link", name="New channel").first.click()
    page.locator("#id_name").fill("In-app banner")
    page.locator("#id_kind").select_option("banner")
    page.locator("#id_cost_model").select_option("cpm")
    page.locator("#id_unit_cost").fill(str(CPM))
    page.get_by_role("button", name="Save the channel").click()
    page.get_by_role("link", name="New placement").first.click()
    page.locator("#id_slug").fill("home-banner")
    page.locator("#id_name").fill("Home banner")
    page.locator("#id_channel").select_option(label="In-app banner")
    page.get_by_role("button", name=re.compile("Save the placement")).click()
    expect(page.get_by_role("cell", name="home-banner")).to_be_visible()

    page.goto(f"{live_server.url}/campaigns/new/")
    page.locator("#id_name").fill("Premium upsell")
    page.locator("#id_goal").select_option("conversion")
    page.locator("#id_explore_impressions").fill("100")
    page.locator("#id_attribution_minutes").fill("1")
    page.locator("#id_control_share").fill("0.2")
    page.get_by_role("button", name="Create the campaign").click()
    expect(page.locator("#status")).to_have_text("Draft")
    for name in [TARGETED, *RANKED]:
        page.get_by_role("link", name=re.compile("^(Add an ad|New ad)$")).first.click()
        page.locator("#id_name").fill(name)
        page.get_by_label("Home banner · home-banner").check()
        page.get_by_role("button", name="Save the ad").click()
        expect(page.get_by_text(f"Ad “{name}” saved.")).to_be_visible()
    # Caps: the campaign at most 20 a day per listener, the targeted ad at most 2.
    page.get_by_role("link", name="Add a cap").click()
    page.locator("#id_max_count").fill("20")
    page.locator("#id_window").select_option(label="per rolling day")
    page.get_by_role("button", name="Add the cap").click()
    page.get_by_role("link", name="Add a cap").click()
    page.locator("#id_level").select_option("ad")
    page.locator("#id_ad").select_option(label=f"Premium upsell · {TARGETED}")
    page.locator("#id_campaign").select_option("")
    page.locator("#id_max_count").fill("2")
    page.get_by_role("button", name="Add the cap").click()
    caps = page.locator(".card", has_text="Frequency caps of this campaign").locator(".list-group-item")
    expect(caps).to_have_text([re.compile("Premium upsell: 20 per rolling day"),
                               re.compile(f"Premium upsell · {TARGETED}: 2 per rolling day")])
    assert FrequencyCap.objects.count() == 2

    page.goto(f"{live_server.url}/campaigns/delivery/")
    page.get_by_role("link", name="Edit plan").click()
    page.get_by_role("button", name="Add a rule").click()
    page.get_by_label("Audience", exact=True).select_option(label="30–60 in the south or big cities")
    page.locator(".rule-row").get_by_label(f"Premium upsell · {TARGETED}").check()
    page.get_by_label("Everyone else gets").select_option("model")
    rest = page.locator(".card", has=page.get_by_text("Everyone else", exact=True))
    for name in RANKED:
        rest.get_by_label(f"Premium upsell · {name}").check()
    step.done("mixed-plan")
    page.get_by_role("button", name="Save the plan").click()
    expect(page.get_by_text("is saved")).to_be_visible()

    page.goto(f"{live_server.url}/campaigns/")
    page.get_by_role("link", name="Premium upsell").click()
    page.get_by_role("button", name="Start exploring").click()
    expect(page.locator("#status")).to_have_text("Exploring")
    expect(page.get_by_text("Exploring: 0 of 100 impressions")).to_have_count(len(RANKED))
    expect(page.locator("tr", has_text=TARGETED)).to_contain_text("Needs no exploration")
    expect(page.get_by_text("20 % held out")).to_be_visible()
    step.done("campaign-exploring")
    campaign = Campaign.objects.get(name="Premium upsell")

    # 5. The simulator's traffic: the decision log fills by itself (htmx, every 10 s).
    page.goto(f"{live_server.url}/campaigns/decisions/")
    expect(page.get_by_text("No decisions yet.")).to_be_visible()
    sim_log = tmp_path / "simulator.log"
    sim = simulate(DECISIONS, 7, settings, sim_log)
    try:
        expect(page.locator("#decisions tbody tr").first).to_be_visible(timeout=60_000)  # arrived without a reload
        step.done("decisions-arriving")
        assert sim.wait(timeout=180) == 0, sim_log.read_text()[-3000:]
    finally:
        if sim.poll() is None:
            sim.kill()
    last_decision = Decision.objects.order_by("-created_at").values_list("created_at", flat=True).first()
    expect(kpi(page, "Decisions, last 24 h")).to_have_text(f"{DECISIONS:,}", timeout=30_000)  # refreshed with the table
    served = ServedAd.objects.count()
    expect(kpi(page, "Served an ad")).to_have_text(f"{served:,}")
    page.locator("#reason").select_option("targeted")
    expect(page.locator("#decisions tbody tr").first).to_contain_text(TARGETED)
    expect(page.locator("#decisions tbody tr").first).to_contain_text("rule: 30–60 in the south")
    page.locator("#reason").select_option("explore")
    expect(page.locator("#decisions tbody tr").first).to_contain_text("everyone else")
    expect(page.locator("#decisions tbody tr").first.locator("td").nth(6)).to_have_text("0.333")
    step.done("decision-log")
    # The plan and the caps held: the audience got its ad, no one more than twice a day; others the ranked ads.
    targeted = Decision.objects.filter(reason=Decision.Reason.TARGETED)
    assert targeted.exists()
    assert set(targeted.values_list("customer__external_id", flat=True)) <= set(members)
    family = Ad.objects.get(name=TARGETED)
    per_listener = {}
    for customer_id in ServedAd.objects.filter(ad=family).values_list("customer_id", flat=True):
        per_listener[customer_id] = per_listener.get(customer_id, 0) + 1
    assert per_listener and max(per_listener.values()) <= 2
    assert Decision.objects.filter(reason=Decision.Reason.CONTROL).exists()

    page.goto(f"{live_server.url}/campaigns/{campaign.pk}/")
    expect(kpi(page, "Ads served, 14 days")).to_have_text(f"{served:,}")
    expect(page.get_by_text(re.compile(r"Exploration done \(\d+ impressions\)"))).to_have_count(len(RANKED))

    # 6. Exploration ends at the minute's refresh and the worker trains the campaign's model. Its training
    #    rows are decisions whose one-minute attribution window has closed: wait for it, then tick.
    wait_for(lambda: timezone.now() > last_decision + timedelta(minutes=1, seconds=2), timeout=90, interval=0.5)
    from config.celery import app

    app.send_task("marketing.refresh_rates")
    wait_for(lambda: Campaign.objects.filter(pk=campaign.pk, status=Campaign.Status.LIVE).exists(), timeout=60)
    job = wait_for(lambda: Job.objects.filter(pk=Campaign.objects.get(pk=campaign.pk).model_job_id, finished_at__isnull=False).first(),
                   timeout=120)
    assert job.status == Job.Status.SUCCEEDED, f"{job.message} {job.error}"
    page.reload()
    expect(page.locator("#status")).to_have_text("Live")
    expect(kpi(page, "Ads explored")).to_have_text("3")  # the targeted Family plan needs no exploration
    expect(page.locator(".kpi", has_text="Ads explored")).to_contain_text("of 3 ranked by model, 1 targeted or by priority")
    expect(page.locator("#model-card table tbody tr")).to_have_count(1, timeout=120_000)  # polls while it trains
    expect(page.locator("#model-card")).to_contain_text("Succeeded")
    version = ModelVersion.objects.get(key=f"campaign:{campaign.pk}")
    row = page.locator("#model-card table tbody tr").first
    expect(row).to_contain_text("v1")
    expect(row.locator("td").nth(3)).to_have_text(f"{version.metrics['auc']:.3f}")
    step.done("model-trained")
    row.get_by_role("link", name="v1").click()
    expect(page.get_by_text(version.get_kind_display()).first).to_be_visible()
    expect(page.get_by_text(f"{version.trained_on['train_rows']:,}").first).to_be_visible()
    step.done("model-page")

    # 7. ROI and incremental ROI against the control group.
    page.goto(f"{live_server.url}/campaigns/roi/")
    spend = served * CPM / 1000
    expect(kpi(page, "Spend")).to_have_text(f"{spend:,.2f}")
    revenue = number(kpi(page, "Revenue").inner_text())
    assert revenue > 0
    expect(kpi(page, "ROI")).to_have_text(f"{100 * (revenue - spend) / spend:,.0f}\u00a0%")
    expect(kpi(page, "Incremental ROI")).to_have_text(re.compile(r"^-?[\d,]+\u00a0%$"))
    lift = page.locator("#lift tbody tr", has_text="Premium upsell")
    expect(lift.locator("td").nth(2)).not_to_contain_text("no control decisions")
    expect(lift.locator("td").last).to_have_text(re.compile(r"^-?[\d,]+\u00a0%"))
    assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")  # no sideways scroll
    step.done("roi")

    # 8. A budget scenario from the marketing history: upload, fit (worker), allocate.
    page.goto(f"{live_server.url}/budget/")
    page.locator("#id_file").set_input_files(str(mix_history(tmp_path / "weekly-mix.csv")))
    page.locator("#id_name").fill("Weekly mix, two years")
    page.get_by_role("button", name="Upload and check").click()
    expect(page.get_by_text("Weekly mix, two years").first).to_be_visible()
    page.locator("#id_bootstrap").select_option("0")
    page.get_by_role("button", name="Fit", exact=True).click()
    fit = page.locator("#fits tbody tr", has_text="Fit 1")
    expect(fit.locator("td").first).to_have_text("Fitted", timeout=150_000)  # the table polls while the worker fits
    model = MixModel.objects.get()
    expect(fit.locator("td").nth(2)).to_have_text(f"{model.metrics['r2_holdout']:.3f}")
    fit.get_by_role("link", name="Fit 1").click()
    expect(page.get_by_role("button", name="Allocate and save the scenario")).to_be_visible()
    step.done("mix-model")
    page.locator("#id_name").fill("Same budget, better split")
    page.get_by_role("button", name="Allocate and save the scenario").click()
    expect(page.get_by_role("heading", name=re.compile("Same budget, better split"))).to_be_visible()
    scenario = model.scenarios.get()
    expect(kpi(page, "Spend per week")).to_have_text(f"{scenario.total:,.2f}")  # the same total, split anew …
    expect(kpi(page, "Predicted gain")).to_have_text(re.compile(r"^\+\d+\.\d\u00a0%$"))  # … earns more
    moves = page.locator(".card", has_text="Per channel: what moves and why").locator("tbody tr")
    expect(moves).to_have_count(len(model.dataset.channels))
    expect(moves.first).to_contain_text(re.compile(r"(More|Less|Raised|Cut|Kept)"))  # each move says why
    step.done("budget-scenario")

