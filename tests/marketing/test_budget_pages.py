"""The budget pages: upload a dataset, fit it, read the model, allocate a budget, compare and apply scenarios."""

import copy
import csv
import functools
import io
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from marketing import mix
from marketing.models import Ad, BudgetScenario, Campaign, Channel, MixDataset, MixModel, Placement
from ml import mmm
from ml.models import Job

from .test_mix import make_dataset, simulated

pytestmark = pytest.mark.django_db

OVERVIEW = reverse("budget:overview")


# -- a fitted model without waiting: the fit's output is computed once and stored on each test's own rows --------


@functools.cache
def _fit_output() -> tuple[dict, dict, dict]:
    data = simulated()
    return mmm.run(mmm.MixData(spend=data["spend"], outcome=data["outcome"], dates=data["dates"], frequency="week"),
                   mmm.Options(bootstrap=5))


def fitted_model(dataset: MixDataset | None = None) -> MixModel:
    """A succeeded fit of the simulated weekly dataset (push saturates early, social has room to grow)."""
    dataset = dataset or make_dataset()
    params, metrics, report = copy.deepcopy(_fit_output())
    number = dataset.models.count() + 1
    job = Job.objects.create(kind="mix_model", title=f"fit {number}", status=Job.Status.SUCCEEDED, progress=1.0)
    return MixModel.objects.create(dataset=dataset, number=number, job=job, status=MixModel.Status.SUCCEEDED,
                                   options={"bootstrap": 5}, params=params, metrics=metrics, report=report,
                                   finished_at=timezone.now())


@functools.cache
def _allocation() -> dict:
    params = _fit_output()[0]
    low, high = mmm.bounds_from(params["current"], "relative", {})
    return mmm.allocate(mmm.Curves.from_params(params), total=sum(params["current"].values()), low=low, high=high,
                        current=params["current"], observed_max=params["observed_max"])


def make_scenario(model: MixModel, name: str = "Same budget") -> BudgetScenario:
    """A scenario of the same total as now within 0–200 % bounds (the allocation computed once)."""
    result = copy.deepcopy(_allocation())
    return BudgetScenario.objects.create(model=model, name=name, total=result["total"], bounds_mode="relative",
                                         bounds={}, result=result)


def upload_file(rows: list[list], name: str = "weekly.csv") -> SimpleUploadedFile:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return SimpleUploadedFile(name, out.getvalue().encode(), content_type="text/csv")


def simulated_rows() -> list[list]:
    data = simulated()
    return [["date", "push", "social", "revenue"], *[[d, p, s, o] for d, p, s, o in
            zip(data["dates"], data["spend"]["push"], data["spend"]["social"], data["outcome"])]]


def allocator_post(model: MixModel, **overrides) -> dict:
    names = list(model.report["current"])
    post = {"name": "Shift to social", "total": f"{sum(model.report['current'].values()):.2f}", "objective": "response",
            "target": "", "bounds_mode": "relative"}
    for i, _ in enumerate(names):
        post[f"low_{i}"], post[f"high_{i}"] = "70", "150"
    post.update(overrides)
    return post


# -- the overview and uploads ------------------------------------------------------------------------------------


def test_the_overview_says_what_to_do_when_there_is_no_dataset(client_for, mark):
    response = client_for(mark).get(OVERVIEW)
    assert response.status_code == 200
    page = response.content.decode()
    assert "No datasets yet" in page and "Upload a CSV" in page and "From the platform" in page
    assert "What the file should look like" in page


def test_analysts_read_the_overview_without_the_upload_forms(client_for, ann):
    page = client_for(ann).get(OVERVIEW).content.decode()
    assert "Upload a CSV" not in page and "a marketer uploads data" in page


def test_the_overview_lists_datasets_with_their_latest_fit(client_for, mark):
    model = fitted_model()
    make_scenario(model)
    page = client_for(mark).get(OVERVIEW).content.decode()
    assert "Streaming revenue" in page and reverse("budget:model", args=[model.pk]) in page
    assert f"{model.metrics['r2_holdout']:.3f}" in page
    assert f"{_allocation()['gain_pct']:+,.1f}" in page  # the best predicted gain


def test_a_dataset_whose_first_fit_is_under_way_says_so(client_for, mark):
    dataset = make_dataset()
    page = client_for(mark).get(OVERVIEW).content.decode()
    assert "not fitted yet" in page
    fit = MixModel.objects.create(dataset=dataset, number=1, status=MixModel.Status.RUNNING, options={})
    page = client_for(mark).get(OVERVIEW).content.decode()
    assert "not fitted yet" not in page and "1 fitting now" in page
    assert f'<a href="{reverse("budget:model", args=[fit.pk])}">fit 1</a> fitting' in page


def test_a_good_upload_is_stored_and_opens_its_page(client_for, mark):
    response = client_for(mark).post(reverse("budget:upload"), {
        "file": upload_file(simulated_rows()), "name": "Weekly push and social", "channels": "push, social",
        "outcome": "revenue", "outcome_kind": "revenue"})
    dataset = MixDataset.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("budget:dataset", args=[dataset.pk])
    assert dataset.name == "Weekly push and social" and dataset.channels == ["push", "social"]
    assert dataset.periods == 156 and dataset.frequency == "week" and dataset.created_by == mark
    page = client_for(mark).get(response["Location"]).content.decode()
    assert "Weekly push and social" in page and "Fit a model" in page and "Not fitted yet" in page


def test_a_bad_upload_lists_each_problem_by_row_and_column_and_stores_nothing(client_for, mark):
    rows = simulated_rows()
    rows[5][1] = "-40"  # spreadsheet row 6: the header is row 1
    rows[9][2] = "12,5"
    response = client_for(mark).post(reverse("budget:upload"), {
        "file": upload_file(rows), "name": "Broken", "channels": "push, social", "outcome": "revenue"})
    assert response.status_code == 400
    assert MixDataset.objects.count() == 0
    page = response.content.decode()
    assert "The file was not stored: 2 problems" in page
    assert '<td class="ps-3 text-end mono">6</td><td class="mono">push</td>' in page
    assert "negative spend (-40)" in page
    assert '<td class="ps-3 text-end mono">10</td><td class="mono">social</td>' in page
    assert 'value="Broken"' in page  # the form is kept


def test_an_upload_without_a_file_names_the_field(client_for, mark):
    response = client_for(mark).post(reverse("budget:upload"), {"name": "Nothing"})
    assert response.status_code == 400 and "This field is required" in response.content.decode()


def test_a_platform_range_that_ends_before_it_starts_is_refused_on_its_field(client_for, mark):
    response = client_for(mark).post(reverse("budget:platform"), {"start": "2026-03-10", "end": "2026-03-01",
                                                                 "frequency": "week", "outcome": "conversions"})
    assert response.status_code == 400 and "must end on or after its first day" in response.content.decode()
    assert MixDataset.objects.count() == 0


# -- a dataset and its fits -----------------------------------------------------------------------------------


def test_the_fit_form_queues_a_numbered_fit_and_its_job(client_for, mark):
    dataset = make_dataset()
    response = client_for(mark).post(reverse("budget:fit", args=[dataset.pk]),
                                     {"adstock": "weibull", "seasonality": "0", "bootstrap": "0", "threshold": "1.5"})
    assert response.status_code == 302
    model = MixModel.objects.get()
    assert model.number == 1 and model.status == MixModel.Status.QUEUED and model.created_by == mark
    assert model.options == {"adstock": "weibull", "seasonality": 0, "bootstrap": 0, "threshold": 1.5}
    assert Job.objects.get(pk=model.job_id).kind == "mix_model"
    page = client_for(mark).get(reverse("budget:dataset", args=[dataset.pk])).content.decode()
    assert "Fit 1" in page and 'hx-trigger="every 2s' in page  # polls while the fit waits
    partial = client_for(mark).get(reverse("budget:dataset", args=[dataset.pk]) + "?part=fits", HTTP_HX_REQUEST="true")
    assert partial.status_code == 200 and "<html" not in partial.content.decode() and "progress-bar" in partial.content.decode()


def test_bad_fit_options_are_refused_with_the_field_named(client_for, mark):
    dataset = make_dataset()
    response = client_for(mark).post(reverse("budget:fit", args=[dataset.pk]),
                                     {"adstock": "exponential", "seasonality": "2", "bootstrap": "40"})
    assert response.status_code == 400 and "Select a valid choice" in response.content.decode()
    assert MixModel.objects.count() == 0


def test_a_fit_run_by_its_job_shows_its_metrics_and_channels(client_for, mark, django_capture_on_commit_callbacks):
    dataset = make_dataset()
    with django_capture_on_commit_callbacks(execute=True):  # eager: the task runs on commit
        client_for(mark).post(reverse("budget:fit", args=[dataset.pk]), {"adstock": "geometric", "seasonality": "2", "bootstrap": "0"})
    model = MixModel.objects.get()
    assert model.status == MixModel.Status.SUCCEEDED, model.error
    page = client_for(mark).get(reverse("budget:model", args=[model.pk])).content.decode()
    assert "Holdout R²" in page and f"{model.metrics['r2_holdout']:.3f}" in page
    assert f"{model.metrics['nrmse_holdout']:.3f}" in page and "R² on every period" in page
    assert "fitted on 125, held out 31" in page
    for name in ("push", "social"):
        assert f"Response curve of {name}" in page
    assert "Allocate and save the scenario" in page


def test_linking_spend_columns_to_channels_is_kept_for_apply(client_for, mark):
    dataset = make_dataset()
    push = Channel.objects.create(name="Push", kind="push")
    response = client_for(mark).post(reverse("budget:channels", args=[dataset.pk]), {"channel_0": push.pk, "channel_1": ""})
    assert response.status_code == 302
    dataset.refresh_from_db()
    assert dataset.channel_map == {"push": push.pk}
    bad = client_for(mark).post(reverse("budget:channels", args=[dataset.pk]), {"channel_0": "999"})
    assert bad.status_code == 400 and "Select a valid choice" in bad.content.decode()


# -- a model's page ------------------------------------------------------------------------------------------------


def test_the_model_page_shows_returns_curves_and_carryover_per_channel(client_for, ann):
    model = fitted_model()
    page = client_for(ann).get(reverse("budget:model", args=[model.pk])).content.decode()
    for text in ("Return per channel", "Marginal ROI at current spend", "Response curves", "Carryover", "chart-contributions",
                 "chart-fit", "curve-0", "curve-1", "Half-life"):
        assert text in page
    assert "Allocate and save the scenario" not in page  # analysts read, marketers allocate


def test_the_plateau_threshold_is_chosen_on_the_page(client_for, mark):
    model = fitted_model()
    url = reverse("budget:model", args=[model.pk])
    curves = mmm.Curves.from_params(model.params)
    social = next(c for c in model.report["channels"] if c["name"] == "social")
    upto = max(2 * social["observed_max"], 1.5 * social["current"])
    low, high = curves.plateau("social", 0.3, upto * 2), curves.plateau("social", 0.6, upto * 2)
    assert low != high
    assert f"{low:,.2f}" in client_for(mark).get(url, {"threshold": "0.3"}).content.decode()
    assert f"{high:,.2f}" in client_for(mark).get(url, {"threshold": "0.6"}).content.decode()
    bad = client_for(mark).get(url, {"threshold": "-2"})
    assert bad.status_code == 400 and "must be a number above 0" in bad.content.decode()


def test_a_running_fit_shows_its_progress_and_the_poll_reloads_when_it_ends(client_for, mark):
    dataset = make_dataset()
    job = Job.objects.create(kind="mix_model", title="fit", status=Job.Status.RUNNING, progress=0.42, message="Bootstrap refit 6 of 40")
    model = MixModel.objects.create(dataset=dataset, number=1, job=job, status=MixModel.Status.RUNNING)
    url = reverse("budget:model", args=[model.pk])
    page = client_for(mark).get(url).content.decode()
    assert "42%" in page and "Bootstrap refit 6 of 40" in page and "?part=progress" in page
    partial = client_for(mark).get(url + "?part=progress", HTTP_HX_REQUEST="true")
    assert "<html" not in partial.content.decode() and "42%" in partial.content.decode()
    MixModel.objects.filter(pk=model.pk).update(status=MixModel.Status.FAILED, error="9 periods are too few")
    done = client_for(mark).get(url + "?part=progress", HTTP_HX_REQUEST="true")
    assert done.headers["HX-Refresh"] == "true"
    assert "9 periods are too few" in client_for(mark).get(url).content.decode()


# -- the allocator -------------------------------------------------------------------------------------------------


def test_allocating_saves_a_scenario_within_the_budget_and_bounds(client_for, mark):
    model = fitted_model()
    response = client_for(mark).post(reverse("budget:allocate", args=[model.pk]), allocator_post(model))
    scenario = BudgetScenario.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("budget:scenario", args=[scenario.pk])
    current = model.report["current"]
    rows = {r["name"]: r for r in scenario.result["channels"]}
    assert scenario.total == pytest.approx(sum(current.values()), abs=0.005)  # the form's default: the total now
    assert sum(r["to"] for r in rows.values()) == pytest.approx(scenario.total, rel=1e-9)
    for name, row in rows.items():
        assert 0.7 * current[name] - 1e-6 <= row["to"] <= 1.5 * current[name] + 1e-6
    assert rows["social"]["to"] > current["social"] and scenario.created_by == mark
    assert scenario.bounds == {"push": [70.0, 150.0], "social": [70.0, 150.0]}
    page = client_for(mark).get(response["Location"]).content.decode()
    assert "what moves and why" in page and rows["social"]["why"] in page and "chart-frontier" in page


def test_a_low_bound_above_its_high_bound_is_refused_with_the_channel_named(client_for, mark):
    model = fitted_model()
    response = client_for(mark).post(reverse("budget:allocate", args=[model.pk]), allocator_post(model, low_1="160", high_1="120"))
    assert response.status_code == 400
    assert "social: the low bound 160.00 is above the high bound 120.00" in response.content.decode()
    assert BudgetScenario.objects.count() == 0


def test_bounds_that_cannot_hold_the_budget_say_why(client_for, mark):
    model = fitted_model()
    response = client_for(mark).post(reverse("budget:allocate", args=[model.pk]),
                                     allocator_post(model, bounds_mode="absolute", total="100", low_0="80", high_0="200", low_1="80", high_1="200"))
    assert response.status_code == 400
    page = response.content.decode()
    assert "This budget cannot hold" in page and "The lower bounds add up to 160.00" in page
    assert BudgetScenario.objects.count() == 0


def test_a_target_roi_spends_no_more_than_keeps_the_target(client_for, mark):
    model = fitted_model()
    total = 3 * sum(model.report["current"].values())
    response = client_for(mark).post(reverse("budget:allocate", args=[model.pk]), allocator_post(
        model, total=str(total), objective="efficiency", target="-50", low_0="0", high_0="", low_1="0", high_1=""))
    assert response.status_code == 302
    scenario = BudgetScenario.objects.get()
    assert scenario.target == -0.5  # ROI entered in %, kept as the allocator reads it
    result = scenario.result
    assert result["spent"] <= total + 1e-6 and result["response_after"] / result["spent"] >= 0.5 - 1e-9


def test_a_target_efficiency_needs_its_target(client_for, mark):
    model = fitted_model()
    response = client_for(mark).post(reverse("budget:allocate", args=[model.pk]), allocator_post(model, objective="efficiency"))
    assert response.status_code == 400 and "needs its target: the minimum ROI" in response.content.decode()


def test_a_scenario_beyond_the_spend_seen_warns_prominently(client_for, mark):
    model = fitted_model()
    response = client_for(mark).post(reverse("budget:allocate", args=[model.pk]),
                                     allocator_post(model, total=str(4 * sum(model.report["current"].values())), low_0="0",
                                                    high_0="500", low_1="0", high_1="500"))
    scenario = BudgetScenario.objects.get()
    assert scenario.result["warnings"]
    page = client_for(mark).get(response["Location"]).content.decode()
    assert "Extrapolated beyond the spend the model has seen" in page and "above the most ever spent" in page


# -- comparing -----------------------------------------------------------------------------------------------------


def test_scenarios_compare_side_by_side(client_for, ann):
    model = fitted_model()
    first, second = make_scenario(model, "Same budget"), make_scenario(model, "Same again")
    response = client_for(ann).get(reverse("budget:compare"), {"ids": [first.pk, second.pk]})
    page = response.content.decode()
    assert response.status_code == 200 and "Same budget" in page and "Same again" in page
    assert "Predicted gain" in page and "chart-compare" in page and ">push</th>" in page


def test_scenarios_of_different_datasets_compare_with_blanks(client_for, ann):
    one = make_scenario(fitted_model())
    data = simulated()
    data["spend"] = {"tv": data["spend"]["push"], "social": data["spend"]["social"]}
    other = make_scenario(fitted_model(make_dataset(data)))
    other.result["channels"][0]["name"] = "tv"
    other.save()
    page = client_for(ann).get(reverse("budget:compare"), {"ids": [one.pk, other.pk]}).content.decode()
    assert ">tv</th>" in page and ">push</th>" in page and "not in this scenario" in page and "different datasets" in page


def test_comparing_unknown_scenarios_says_which(client_for, ann):
    known = make_scenario(fitted_model())
    response = client_for(ann).get(reverse("budget:compare"), {"ids": [known.pk, 9999]})
    assert response.status_code == 404 and "No scenario 9999" in response.content.decode()
    assert client_for(ann).get(reverse("budget:compare"), {"ids": "x"}).status_code == 400
    assert "No scenarios chosen" in client_for(ann).get(reverse("budget:compare")).content.decode()


# -- applying ------------------------------------------------------------------------------------------------------


@pytest.fixture
def linked(db):
    """A scenario whose push column is linked to a channel with one campaign on it; social is not linked."""
    model = fitted_model()
    push = Channel.objects.create(name="Push", kind="push", cost_model="send", unit_cost=Decimal("0.01"))
    placement = Placement.objects.create(slug="push", name="Push", channel=push)
    campaign = Campaign.objects.create(name="Upsell", daily_budget=Decimal("25"))
    Ad.objects.create(campaign=campaign, name="Upsell").placements.add(placement)
    mix.link_channels(model.dataset, {"push": push.pk})
    return make_scenario(model), campaign


def test_the_apply_page_shows_the_plan_and_changes_nothing(client_for, mark, linked):
    scenario, campaign = linked
    response = client_for(mark).get(reverse("budget:apply", args=[scenario.pk]))
    page = response.content.decode()
    weekly = {r["name"]: r["to"] for r in scenario.result["channels"]}["push"]
    assert response.status_code == 200 and "Upsell" in page and "25.00" in page and f"{weekly / 7:,.2f}" in page
    assert "social: not linked to a platform channel" in page and "Set 1 daily budget" in page
    campaign.refresh_from_db()
    assert campaign.daily_budget == Decimal("25")
    scenario.refresh_from_db()
    assert scenario.applied_at is None


def test_applying_sets_the_campaign_daily_budgets_and_says_when(client_for, mark, linked):
    scenario, campaign = linked
    response = client_for(mark).post(reverse("budget:apply", args=[scenario.pk]))
    assert response.status_code == 302 and response["Location"] == reverse("budget:scenario", args=[scenario.pk])
    weekly = {r["name"]: r["to"] for r in scenario.result["channels"]}["push"]
    campaign.refresh_from_db()
    assert float(campaign.daily_budget) == pytest.approx(weekly / 7, abs=0.01)
    scenario.refresh_from_db()
    assert scenario.applied_by == mark and scenario.applied_at is not None
    page = client_for(mark).get(response["Location"]).content.decode()
    assert "Daily budgets set on 1 campaign." in page and "Applied" in page and "by mark" in page and "Apply again" in page


def test_a_scenario_with_nothing_linked_cannot_be_applied(client_for, mark):
    scenario = make_scenario(fitted_model())
    response = client_for(mark).post(reverse("budget:apply", args=[scenario.pk]), follow=True)
    assert "Nothing to apply" in response.content.decode()
    scenario.refresh_from_db()
    assert scenario.applied_at is None


# -- who may do what -------------------------------------------------------------------------------------------------


def test_analysts_cannot_upload_fit_link_allocate_or_apply(client_for, ann, linked):
    scenario, campaign = linked
    model, dataset = scenario.model, scenario.model.dataset
    client = client_for(ann)
    assert client.post(reverse("budget:upload"), {"file": upload_file(simulated_rows())}).status_code == 403
    assert client.post(reverse("budget:platform"), {}).status_code == 403
    assert client.post(reverse("budget:fit", args=[dataset.pk]), {"adstock": "geometric"}).status_code == 403
    assert client.post(reverse("budget:channels", args=[dataset.pk]), {}).status_code == 403
    assert client.post(reverse("budget:allocate", args=[model.pk]), allocator_post(model)).status_code == 403
    assert client.get(reverse("budget:apply", args=[scenario.pk])).status_code == 403
    assert client.post(reverse("budget:apply", args=[scenario.pk])).status_code == 403
    assert MixDataset.objects.count() == 1 and MixModel.objects.count() == 1 and BudgetScenario.objects.count() == 1
    campaign.refresh_from_db()
    assert campaign.daily_budget == Decimal("25")


def test_pages_refuse_the_wrong_method(client_for, mark):
    scenario = make_scenario(fitted_model())
    client = client_for(mark)
    assert client.get(reverse("budget:upload")).status_code == 405
    assert client.get(reverse("budget:allocate", args=[scenario.model.pk])).status_code == 405
    assert client.post(reverse("budget:scenario", args=[scenario.pk])).status_code == 405
    assert client.put(reverse("budget:apply", args=[scenario.pk])).status_code == 405
    assert client.post(reverse("budget:compare")).status_code == 405


def test_unknown_objects_are_404(client_for, mark):
    client = client_for(mark)
    for name in ("budget:dataset", "budget:model", "budget:scenario", "budget:apply"):
        assert client.get(reverse(name, args=[404])).status_code == 404


def test_a_count_outcome_reads_as_costs_per_outcome(client_for, mark):
    dataset = make_dataset(outcome_kind=MixDataset.OutcomeKind.COUNT)
    MixDataset.objects.filter(pk=dataset.pk).update(outcome_name="conversions")
    model = fitted_model(MixDataset.objects.get(pk=dataset.pk))
    model.report["outcome_kind"] = model.params["outcome_kind"] = "count"
    model.save()
    page = client_for(mark).get(reverse("budget:model", args=[model.pk])).content.decode()
    assert "CPA (spend per outcome)" in page and "Highest CPA" in page and "Next outcome costs" in page
    total = sum(model.report["current"].values())
    response = client_for(mark).post(reverse("budget:allocate", args=[model.pk]), allocator_post(
        model, total=str(2 * total), objective="efficiency", target="8", low_0="0", high_0="300", low_1="0", high_1="300"))
    assert response.status_code == 302
    result = BudgetScenario.objects.get().result
    assert result["spent"] / result["response_after"] <= 8 + 1e-9  # the CPA target holds
    page = client_for(mark).get(response["Location"]).content.decode()
    assert "CPA at most 8.00" in page and "Media CPA" in page


def test_the_overview_page_has_no_duplicate_element_ids(client, mark):
    import re
    from collections import Counter

    client.force_login(mark)
    html = client.get(reverse("budget:overview")).content.decode()
    repeated = [i for i, n in Counter(re.findall(r'\sid="([^"]+)"', html)).items() if n > 1]
    assert repeated == []
