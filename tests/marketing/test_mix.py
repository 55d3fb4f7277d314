"""Budget optimisation end to end: a dataset is fitted by a Celery job, a budget is allocated as a scenario, a scenario sets campaign budgets."""

from datetime import date, timedelta
from decimal import Decimal

import numpy as np
import pytest

from marketing import mix
from marketing.models import Ad, BudgetScenario, Campaign, Channel, MixDataset, MixModel, Placement
from ml import mmm
from ml.models import Job
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db

# A channel that saturates early (push) and one with room to grow (social): the allocator must move spend to social.
TRUTH = {"push": {"theta": 0.2, "k": 0.5, "s": 1.2, "beta": 3000.0}, "social": {"theta": 0.5, "k": 2.0, "s": 1.5, "beta": 9000.0}}


def simulated(weeks: int = 156, seed: int = 3) -> dict:
    rng = np.random.default_rng(seed)
    spend = {c: np.round((rng.random(weeks) < 0.8) * rng.uniform(0, 2000, weeks), 2) for c in TRUTH}
    t = np.arange(weeks)
    outcome = 50000 + 4000 * np.sin(2 * np.pi * t / 52.18) + rng.normal(0, 300, weeks)
    for c, p in TRUTH.items():
        level = mmm.adstock(spend[c], "geometric", p["theta"], 0, 13) / spend[c][spend[c] > 0].mean()
        outcome = outcome + p["beta"] * mmm.hill(level, p["k"], p["s"])
    start = date(2023, 1, 2)
    return {"dates": [(start + timedelta(weeks=i)).isoformat() for i in range(weeks)],
            "spend": {c: v.tolist() for c, v in spend.items()}, "outcome": outcome.round(2).tolist(), "controls": {}}


def make_dataset(data: dict | None = None, **fields) -> MixDataset:
    data = data or simulated()
    return MixDataset.objects.create(
        name="Streaming revenue", source=MixDataset.Source.UPLOAD, frequency="week", outcome_name="revenue",
        channels=list(data["spend"]), data=data, periods=len(data["dates"]),
        start=date.fromisoformat(data["dates"][0]), end=date.fromisoformat(data["dates"][-1]), **fields)


@pytest.fixture
def fitted(db, django_capture_on_commit_callbacks):
    dataset = make_dataset()
    with django_capture_on_commit_callbacks(execute=True):  # eager in unit tests: fitted on commit
        model = mix.queue_fit(dataset, by=None, options={"bootstrap": 10})
    model.refresh_from_db()
    return model


def test_a_fit_is_a_numbered_job_that_stores_metrics_curves_and_the_report(fitted, django_capture_on_commit_callbacks):
    assert fitted.status == MixModel.Status.SUCCEEDED and fitted.number == 1, fitted.error
    job = Job.objects.get(pk=fitted.job_id)
    assert job.status == Job.Status.SUCCEEDED and job.percent == 100 and "holdout R²" in job.message
    assert fitted.metrics["fit_periods"] == 125 and fitted.metrics["holdout_periods"] == 31
    assert fitted.metrics["r2_holdout"] > 0.9
    assert [c["name"] for c in fitted.report["channels"]] == ["push", "social"]
    assert len(fitted.params["draws"]) == 10
    # social has room to grow, push is saturated: its marginal return at current spend is far lower
    marginal = {c["name"]: c["mroas"] for c in fitted.report["channels"]}
    assert marginal["social"] > 2 * marginal["push"]
    with django_capture_on_commit_callbacks(execute=True):
        again = mix.queue_fit(fitted.dataset, by=None, options={"bootstrap": 0})
    assert again.number == 2


def test_a_fit_already_waiting_is_returned_instead_of_queueing_another(db, settings):
    from config.celery import app

    app.conf.task_always_eager = False  # nothing runs the queued task here: it stays waiting
    dataset = make_dataset()
    first = mix.queue_fit(dataset, by=None)
    assert mix.queue_fit(dataset, by=None) == first
    assert MixModel.objects.count() == 1 and Job.objects.filter(kind="mix_model").count() == 1


def test_a_series_too_short_to_fit_fails_the_fit_with_the_reason(db, django_capture_on_commit_callbacks):
    data = simulated(weeks=6)
    dataset = make_dataset(data)
    with pytest.raises(mmm.MixError), django_capture_on_commit_callbacks(execute=True):
        mix.queue_fit(dataset, by=None)
    model = MixModel.objects.get()
    assert model.status == MixModel.Status.FAILED and "too few" in model.error
    assert Job.objects.get(kind="mix_model").status == Job.Status.FAILED


def test_fit_options_are_checked_by_name():
    assert mix.check_fit_options({"adstock": "weibull", "seasonality": "1", "bootstrap": "20"}) == {
        "adstock": "weibull", "seasonality": 1, "bootstrap": 20}
    with pytest.raises(ValueError, match="adstock"):
        mix.check_fit_options({"adstock": "exponential"})
    with pytest.raises(ValueError, match="threshold"):
        mix.check_fit_options({"threshold": "-1"})


def test_a_scenario_respects_budget_and_bounds_and_moves_spend_to_the_channel_with_room(fitted):
    current = fitted.params["current"]
    total = sum(current.values())
    scenario = mix.save_scenario(fitted, name="Same budget", total=total, objective="response", target=None,
                                 bounds_mode="relative", bounds={"push": (50, 150), "social": (50, 150)}, by=None)
    rows = {r["name"]: r for r in scenario.result["channels"]}
    assert sum(r["to"] for r in rows.values()) == pytest.approx(total, rel=1e-9)
    for name, row in rows.items():
        assert current[name] * 0.5 - 1e-6 <= row["to"] <= current[name] * 1.5 + 1e-6
    assert rows["social"]["to"] > current["social"] and rows["push"]["to"] < current["push"]
    assert scenario.result["gain_pct"] > 0 and scenario.result["bounds_respected"]
    assert rows["social"]["why"] and rows["push"]["why"]


def test_a_scenario_that_cannot_hold_is_refused_and_nothing_is_saved(fitted):
    with pytest.raises(mmm.MixError, match="lower bounds add up"):
        mix.save_scenario(fitted, name="Too tight", total=100.0, objective="response", target=None,
                          bounds_mode="absolute", bounds={"push": (80, 200), "social": (80, 200)}, by=None)
    assert BudgetScenario.objects.count() == 0


def test_a_target_roi_spends_less_than_the_budget_and_keeps_the_target(fitted):
    current = fitted.params["current"]
    total = 3 * sum(current.values())
    bounds = {"push": (0, 400), "social": (0, 400)}
    loose = mix.allocate(fitted, total=total, objective="efficiency", target=0.5, bounds_mode="relative", bounds=bounds)
    tight = mix.allocate(fitted, total=total, objective="efficiency", target=1.0, bounds_mode="relative", bounds=bounds)
    assert 0 < tight["spent"] < loose["spent"] <= total + 1e-6
    assert loose["response_after"] / loose["spent"] >= 1.5 - 1e-9  # ROI ≥ 50 %
    assert tight["response_after"] / tight["spent"] >= 2.0 - 1e-9
    never = mix.allocate(fitted, total=total, objective="efficiency", target=9.0, bounds_mode="relative", bounds=bounds)
    assert never["spent"] == 0 and "No spend level reaches the target" in never["note"]
    assert loose["efficiency_after"] >= 0.5 - 1e-9


@pytest.fixture
def campaigns(db):
    push = Channel.objects.create(name="Push", kind="push", cost_model="send", unit_cost=Decimal("0.01"))
    social = Channel.objects.create(name="Paid social", kind="paid", cost_model="cpm", unit_cost=Decimal("5"))
    placements = {c.name: Placement.objects.create(slug=c.name.lower().replace(" ", "-"), name=c.name, channel=c)
                  for c in (push, social)}
    made = {}
    for name, channel, daily, total in [("Upsell", "Push", "100", None), ("Win-back", "Push", "300", None),
                                        ("K-pop launch", "Paid social", "50", "60")]:
        campaign = Campaign.objects.create(name=name, daily_budget=Decimal(daily), total_budget=total and Decimal(total))
        Ad.objects.create(campaign=campaign, name=name).placements.add(placements[channel])
        made[name] = campaign
    return {"push": push, "social": social, **made}


def test_applying_a_scenario_splits_each_channels_daily_spend_over_its_campaigns_by_their_budgets(fitted, campaigns):
    dataset = fitted.dataset
    dataset.channel_map = {"push": campaigns["push"].pk}  # social is not linked: skipped, and said so
    dataset.save()
    scenario = mix.save_scenario(fitted, name="Plan", total=sum(fitted.params["current"].values()), objective="response",
                                 target=None, bounds_mode="relative", bounds={}, by=None)
    changes, skipped = mix.plan_application(scenario)
    assert skipped == ["social: not linked to a platform channel"]
    weekly = {r["name"]: r["to"] for r in scenario.result["channels"]}["push"]
    planned = {c.campaign.name: c.after for c in changes}
    assert planned["Upsell"] == pytest.approx(weekly / 7 * 100 / 400, abs=0.01)
    assert planned["Win-back"] == pytest.approx(weekly / 7 * 300 / 400, abs=0.01)
    assert Campaign.objects.get(name="Upsell").daily_budget == Decimal("100")  # planning changes nothing

    mix.apply_scenario(scenario, by=None)
    assert float(Campaign.objects.get(name="Upsell").daily_budget) == pytest.approx(planned["Upsell"], abs=0.01)
    scenario.refresh_from_db()
    assert scenario.applied_at is not None and {a["name"] for a in scenario.applied} == {"Upsell", "Win-back"}
    assert Campaign.objects.get(name="K-pop launch").daily_budget == Decimal("50")


def test_a_daily_budget_above_the_campaigns_total_is_capped_at_the_total(fitted, campaigns):
    dataset = fitted.dataset
    dataset.channel_map = {"social": campaigns["social"].pk}
    dataset.save()
    scenario = mix.save_scenario(fitted, name="Big", total=sum(fitted.params["current"].values()), objective="response",
                                 target=None, bounds_mode="relative", bounds={}, by=None)
    (change,), _ = mix.plan_application(scenario)
    assert change.campaign.name == "K-pop launch" and change.after == 60.0 and "capped" in change.note


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_fits_the_model_and_reports_progress(celery_worker_process, django_capture_on_commit_callbacks):
    dataset = make_dataset()
    with django_capture_on_commit_callbacks(execute=True):
        model = mix.queue_fit(dataset, by=None, options={"bootstrap": 5})
    job = wait_for(lambda: (j := Job.objects.get(pk=model.job_id)).is_finished and j, timeout=180)
    model.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert model.status == MixModel.Status.SUCCEEDED and model.metrics["r2_holdout"] > 0.9


def test_the_demo_history_is_stored_once_linked_to_the_demo_channels_with_a_fit_queued(db):
    from marketing import demo

    demo.store_demo_campaigns()
    assert demo.store_demo_mix() == 1 and demo.store_demo_mix() == 0
    dataset = MixDataset.objects.get(name=demo.MIX_NAME)
    assert dataset.periods == 156 and dataset.frequency == "week" and dataset.controls == ["promotion"]
    linked = {name for name in dataset.channel_map}
    assert linked == {"App push", "In-app banner", "In-player", "E-mail"}  # paid social is an external platform
    assert MixModel.objects.get(dataset=dataset).options == {"bootstrap": 40}


def test_the_demo_history_tells_its_story_to_the_model():
    from marketing import demo

    series = demo.demo_mix_series()
    data = mmm.MixData(spend=series.spend, outcome=series.outcome, controls=series.controls, frequency="week")
    params, metrics, report = mmm.run(data, mmm.Options(bootstrap=0))
    assert metrics["r2_holdout"] > 0.85
    marginal = {c["name"]: c["mroas"] for c in report["channels"]}
    assert marginal["In-player"] > marginal["App push"]  # push is saturated, in-player has room to grow
