"""The decision log page: newest first, filters, the day's mix by reason, keyset pages, an empty state."""

import random
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from audiences.models import Customer
from marketing.decisions import decide
from marketing.models import Ad, Campaign, Channel, Decision, DeliveryPlan, Placement

URL = reverse("campaigns:decisions")


@pytest.fixture
def logged(db):
    channel = Channel.objects.create(name="Banner", kind=Channel.Kind.BANNER)
    home = Placement.objects.create(slug="home", name="Home banner", channel=channel)
    Placement.objects.create(slug="push", name="Push", channel=channel)
    campaign = Campaign.objects.create(name="Release", status=Campaign.Status.EXPLORING)
    for name in ("single", "album"):
        Ad.objects.create(campaign=campaign, name=name).placements.add(home)
    DeliveryPlan.objects.create(placement=home, rest=DeliveryPlan.Rest.MODEL)
    now = timezone.now()
    for i in range(60):
        decide(Customer.objects.create(external_id=f"c{i:02d}"), home, now=now - timedelta(minutes=60 - i), rng=random.Random(i))
    Decision.objects.filter(customer__external_id="c59").update(reason="none", chosen=[])
    return home


def test_the_log_lists_the_newest_decisions_first_with_the_days_figures(client_for, ann, logged):
    page = client_for(ann).get(URL)
    assert page.status_code == 200
    rows = page.context["rows"]
    assert len(rows) == 50 and rows[0].customer.external_id == "c59" and rows[1].customer.external_id == "c58"
    assert page.context["kpis"] == {"total": 60, "served": 59, "explore": pytest.approx(59 / 60), "propensity": pytest.approx(0.5)}
    html = page.content.decode()
    assert "Exploring" in html and "98 %" in html and "chart-reasons" in html
    assert 'hx-trigger="every 10s' in html  # the newest page follows the traffic
    older = client_for(ann).get(URL + "?" + page.context["older"])
    assert 'hx-trigger="every 10s' not in older.content.decode()  # an older page stays put
    assert [r.customer.external_id for r in older.context["rows"]] == [f"c{i:02d}" for i in range(9, -1, -1)]
    assert older.context["older"] == ""


def test_control_decisions_served_nothing_and_leave_the_mean_propensity_alone(client_for, ann, logged):
    Decision.objects.filter(customer__external_id="c58").update(reason="control", chosen=[], propensity=0.2)
    kpis = client_for(ann).get(URL).context["kpis"]
    assert kpis["served"] == 58 and kpis["propensity"] == pytest.approx(0.5)


def test_filters_narrow_the_log_and_htmx_gets_the_table_only(client_for, ann, logged):
    c = client_for(ann)
    assert [r.reason for r in c.get(URL, {"reason": "none"}).context["rows"]] == ["none"]
    assert [r.customer.external_id for r in c.get(URL, {"customer": "c07"}).context["rows"]] == ["c07"]
    assert c.get(URL, {"placement": "push"}).context["rows"] == []
    partial = c.get(URL, {"placement": "push"}, HTTP_HX_REQUEST="true").content.decode()
    assert "No decision matches these filters." in partial and "<html" not in partial
    assert '<div class="row g-3 mb-4" id="decision-kpis" hx-swap-oob="true">' in partial  # the figures follow the table


def test_an_empty_log_says_where_decisions_come_from(client_for, ann, db):
    html = client_for(ann).get(URL).content.decode()
    assert "No decisions yet." in html and "/api/v1/docs/" in html


def test_the_hourly_chart_has_all_24_hours_quiet_ones_at_zero(client_for, ann, logged):
    chart = client_for(ann).get(URL).context["chart"]
    labels, datasets = chart["data"]["labels"], chart["data"]["datasets"]
    this = timezone.localtime().replace(minute=0, second=0, microsecond=0)
    assert len(labels) == 24 and labels[-1] == this.strftime("%H:00") and labels[0] == (this - timedelta(hours=23)).strftime("%H:00")
    per_hour = [sum(d["data"][i] for d in datasets) for i in range(24)]
    assert sum(per_hour) == 60 and per_hour[:22] == [0] * 22  # the 60 decisions of the last hour fall in its last two bars
