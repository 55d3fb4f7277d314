"""The Models pages: the registry list, a version's page (its report and gate), and promote / roll back from the UI."""

import json
import pickle
import re
from datetime import timedelta

import numpy as np
import pytest
from django.template.defaultfilters import floatformat
from django.urls import reverse
from django.utils.html import escape
from sklearn.linear_model import LogisticRegression

from ml import automodel, registry, serving
from ml.models import ModelVersion
from tests.ml.test_automodel import ADS, T0, exploration_log

KEY = "campaign:7"


@pytest.fixture(autouse=True)
def model_dir(settings, tmp_path):
    settings.MODEL_DIR = tmp_path / "models"
    serving.forget()
    yield settings.MODEL_DIR
    serving.forget()


def artefact() -> bytes:
    x = np.linspace(-3, 3, 40).reshape(-1, 1)
    return pickle.dumps(LogisticRegression().fit(x, (x[:, 0] > 0).astype(int)))


@pytest.fixture
def versions(db):
    """v1 champion, v2 a candidate trained from it."""
    v1 = registry.register_candidate(KEY, "logistic", artefact(), metrics={"auc": 0.7123, "log_loss": 0.4567},
                                     features=[{"name": "age_bin", "importance": 0.6}, {"name": "region=south", "importance": 0.4}],
                                     trained_on={"rows": 12345})
    registry.promote(v1)
    v2 = registry.register_candidate(KEY, "xgboost", b"{}", metrics={"auc": 0.7456, "rmse": 0.321}, parent=v1,
                                     features=[{"name": "clicks_7d", "importance": 0.9}])
    return v1, v2


def test_the_list_explains_itself_when_there_are_no_models(client_for, ann):
    response = client_for(ann).get(reverse("models:list"))
    assert response.status_code == 200
    assert b"No models yet" in response.content and b"explored" in response.content


def test_the_list_shows_each_key_with_its_versions_statuses_and_metrics(client_for, ann, versions):
    response = client_for(ann).get(reverse("models:list"))
    html = response.content.decode()
    assert KEY in html and "champion: v1" in html
    assert "0.712" in html and "0.746" in html and "0.457" in html and "0.321" in html
    assert ">Champion<" in html and ">Candidate<" in html
    assert response.context["counts"]["champions"] == 1 and response.context["counts"]["candidates"] == 1


def test_the_detail_page_shows_metrics_features_lineage_and_artefact(client_for, ann, versions, model_dir):
    v1, v2 = versions
    response = client_for(ann).get(reverse("models:detail", args=[v2.pk]))
    html = response.content.decode()
    assert response.status_code == 200
    assert "0.746" in html and "0.321" in html
    assert "clicks_7d" in html and 'data-chart="model-features"' in html
    assert reverse("models:detail", args=[v1.pk]) in html  # parent link
    assert str(model_dir) in html and v2.artefact in html
    assert "12,345" in client_for(ann).get(reverse("models:detail", args=[v1.pk])).content.decode()


def test_analysts_see_no_buttons_and_cannot_promote(client_for, ann, versions):
    v1, v2 = versions
    client = client_for(ann)
    html = client.get(reverse("models:detail", args=[v2.pk])).content.decode()
    assert reverse("models:promote", args=[v2.pk]) not in html
    assert client.post(reverse("models:promote", args=[v2.pk])).status_code == 403
    assert client.post(reverse("models:roll_back", args=[v1.pk])).status_code == 403
    v2.refresh_from_db()
    assert v2.status == ModelVersion.Status.CANDIDATE


def test_a_marketer_promotes_with_a_confirmation_and_then_rolls_back(client_for, mark, versions, django_capture_on_commit_callbacks):
    v1, v2 = versions
    client = client_for(mark)
    html = client.get(reverse("models:detail", args=[v2.pk])).content.decode()
    assert reverse("models:promote", args=[v2.pk]) in html and "data-confirm=" in html and "csrfmiddlewaretoken" in html
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("models:promote", args=[v2.pk]))
    assert response.status_code == 302 and response["Location"] == reverse("models:detail", args=[v2.pk])
    v1.refresh_from_db()
    v2.refresh_from_db()
    assert (v1.status, v2.status) == (ModelVersion.Status.RETIRED, ModelVersion.Status.CHAMPION)
    assert v2.history[-1]["by"] == "mark"

    html = client.get(reverse("models:detail", args=[v2.pk])).content.decode()
    assert reverse("models:roll_back", args=[v2.pk]) in html
    response = client.post(reverse("models:roll_back", args=[v2.pk]), follow=True)
    assert response.redirect_chain[-1][0] == reverse("models:detail", args=[v1.pk])
    assert "is the champion again" in response.content.decode()
    v1.refresh_from_db()
    assert v1.status == ModelVersion.Status.CHAMPION


def test_a_refused_roll_back_says_why(client_for, mark, versions):
    v1, _ = versions
    response = client_for(mark).post(reverse("models:roll_back", args=[v1.pk]), follow=True)
    assert "no earlier champion" in response.content.decode()


def test_anonymous_users_are_sent_to_login(client, versions):
    _, v2 = versions
    for url in (reverse("models:list"), reverse("models:detail", args=[v2.pk])):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    assert client.post(reverse("models:promote", args=[v2.pk])).status_code == 302


def test_it_rejects_get_on_promote_and_post_on_the_pages(client_for, alice, versions):
    _, v2 = versions
    client = client_for(alice)
    assert client.get(reverse("models:promote", args=[v2.pk])).status_code == 405
    assert client.get(reverse("models:roll_back", args=[v2.pk])).status_code == 405
    assert client.post(reverse("models:detail", args=[v2.pk])).status_code == 405
    assert client.post(reverse("models:list")).status_code == 405


def test_an_unknown_version_is_404(client_for, mark, db):
    assert client_for(mark).get(reverse("models:detail", args=[999])).status_code == 404
    assert client_for(mark).post(reverse("models:promote", args=[999])).status_code == 404


# -- the variable exploration report and the off-policy gate --------------------------------------------


def chart(html: str, chart_id: str) -> dict:
    """The Chart.js config a page hands to a canvas, read back from its json_script tag."""
    match = re.search(rf'<script id="{re.escape(chart_id)}" type="application/json">(.*?)</script>', html, re.S)
    assert match, f"no chart {chart_id!r} on the page"
    return json.loads(match.group(1))


@pytest.fixture(scope="module")
def trained():
    """A campaign model trained and gated for real on a synthetic exploration log, as marketing.learning does."""
    decisions, outcomes, snaps, _ = exploration_log(1500)
    rows = automodel.assemble(decisions, outcomes, snaps, ADS, window_seconds=600, now=T0 + timedelta(days=3))
    model = automodel.train(rows)
    validation = model.validation.reset_index(drop=True)
    verdict = automodel.gate(validation, model.scorer.predict(validation[automodel.FEATURES]), None)
    return model, verdict


@pytest.fixture
def gated(db, trained):
    model, verdict = trained
    gate = {"passed": verdict.passed, "reason": verdict.reason, "decisions": verdict.decisions,
            "incumbent": "random (no model yet)", "estimates": verdict.estimates, "difference": verdict.difference}
    return registry.register_candidate(
        KEY, model.kind, pickle.dumps(model.scorer), suffix=".pkl",
        metrics={**model.metrics, "candidates": model.candidates, "gate": gate}, features=model.importances,
        report=model.report, trained_on={"decisions": 1500, "until": "2026-11-04T00:00:00+00:00", "goal": "clicks",
                                         "ads": [1, 2]})


def test_a_trained_version_shows_only_numbers_as_key_figures_and_compares_every_candidate(client_for, ann, gated, trained):
    model, _ = trained
    response = client_for(ann).get(reverse("models:detail", args=[gated.pk]))
    html = response.content.decode()
    assert response.status_code == 200
    labels = [label for label, _, _ in response.context["metrics"]]
    assert labels[:4] == ["AUC", "Log loss", "RMSE", "Calibration error"] and "Base rate" in labels
    assert not {"Candidates", "Gate", "Candidate"} & set(labels)
    rows = {c["kind"]: c for c in response.context["candidates"]}
    assert set(rows) == {"xgboost", "logistic", "gbdt_lr"}
    assert [kind for kind, row in rows.items() if row["chosen"]] == [model.kind]
    for metrics in model.candidates.values():
        assert floatformat(metrics["auc"], 4) in html and floatformat(metrics["log_loss"], 4) in html
    assert "chosen</span>" in html  # the winner is named in words, not only shaded
    # trained_on: counts with separators, moments as dates, lists as lists
    assert "1,500" in html and "1, 2" in html and "clicks" in html and "[1, 2]" not in html


def test_the_gate_panel_shows_the_verdict_the_incumbent_and_every_estimate_with_its_interval(client_for, ann, gated, trained):
    _, verdict = trained
    assert verdict.passed  # the synthetic truth is learnable: a model beats random serving
    html = client_for(ann).get(reverse("models:detail", args=[gated.pk])).content.decode()
    assert "Passed: shown better than the incumbent." in html and escape(verdict.reason) in html
    assert "random (no model yet)" in html and f"{verdict.decisions} randomised decisions" in html
    for policy in ("candidate", "incumbent"):
        for method in ("ipw", "snipw", "dr"):
            est = verdict.estimates[policy][method]
            assert f"{floatformat(est['low'], 4)} – {floatformat(est['high'], 4)}" in html, (policy, method)
    diff = verdict.difference
    assert f'id="gate-difference">{floatformat(diff["value"], 4)}<' in html
    assert f"{floatformat(diff['low'], 4)} – {floatformat(diff['high'], 4)}" in html
    assert "Self-normalised IPW" in html and "Doubly robust" in html


def test_the_report_charts_each_variable_with_its_share_of_rows_and_response_rate(client_for, ann, gated, trained):
    model, _ = trained
    response = client_for(ann).get(reverse("models:detail", args=[gated.pk]))
    html = response.content.decode()
    plays = next(b for b in model.report["bins"] if b["feature"] == "plays_7d")["bins"]
    config = chart(html, "var-plays_7d-chart")
    rate, share = config["data"]["datasets"]
    assert config["data"]["labels"] == [b["label"] for b in plays]
    assert share["data"] == [round(100 * b["share"], 2) for b in plays] and share["yAxisID"] == "share"
    assert rate["data"] == [round(100 * b["response_rate"], 2) for b in plays] and rate["yAxisID"] == "rate"
    assert rate["type"] == "line" and set(config["options"]["scales"]) >= {"share", "rate"}
    segment = next(lv for lv in model.report["levels"] if lv["feature"] == "segment")["levels"]
    config = chart(html, "var-segment-chart")
    assert config["data"]["labels"] == [lv["label"] for lv in segment]
    assert config["data"]["datasets"][0]["data"] == [round(100 * lv["response_rate"], 2) for lv in segment]
    assert rate["showLine"] and not config["data"]["datasets"][0]["showLine"]  # levels have no order to draw a line along
    # a variable with one bin or level (here: region, never known) is named, not charted
    assert "region" in response.context["exploration"]["constant"] and 'id="var-region-chart"' not in html
    # every variable has a labelled canvas, in the order of the criteria ranking
    ranked = [c["feature"] for c in model.report["criteria"]]
    shown = [v["name"] for v in response.context["exploration"]["variables"]]
    assert shown == [f for f in ranked if f in shown]
    assert html.count('role="img"') == html.count("<canvas") and html.count("aria-label=") >= len(shown) + 3
    # the criteria table, four decimals
    best = model.report["criteria"][0]
    assert floatformat(best["symmetric_uncertainty"], 4) in html and floatformat(best["information_gain"], 4) in html


def test_the_roc_and_calibration_curves_come_with_their_diagonals(client_for, ann, gated, trained):
    model, _ = trained
    html = client_for(ann).get(reverse("models:detail", args=[gated.pk])).content.decode()
    roc = chart(html, "model-roc")
    assert roc["type"] == "scatter" and all(ds["showLine"] for ds in roc["data"]["datasets"])
    assert roc["data"]["datasets"][0]["data"] == [{"x": p["fpr"], "y": p["tpr"]} for p in model.report["roc"]]
    assert roc["data"]["datasets"][1]["data"] == [{"x": 0, "y": 0}, {"x": 1.0, "y": 1.0}]
    assert f"AUC {model.metrics['auc']:.3f}" in roc["data"]["datasets"][0]["label"]
    calibration = chart(html, "model-calibration")
    points = calibration["data"]["datasets"][0]["data"]
    assert points == [{"x": p["predicted"], "y": p["observed"]} for p in model.report["calibration"]]
    top = calibration["options"]["scales"]["x"]["max"]
    assert max(max(p["x"], p["y"]) for p in points) <= top <= 1.0


def test_the_criteria_sort_by_a_heading_and_ignore_an_unknown_one(client_for, ann, gated):
    client = client_for(ann)
    url = reverse("models:detail", args=[gated.pk])
    by_gain = client.get(url, {"sort": "information_gain"}).context["exploration"]["criteria"]
    gains = [c["information_gain"] for c in by_gain]
    assert gains == sorted(gains, reverse=True)
    response = client.get(url, {"sort": "__class__"})
    assert response.status_code == 200 and response.context["sort"] == ""
    assert [c["rank"] for c in response.context["exploration"]["criteria"]] == list(range(1, len(gains) + 1))


def test_a_failed_gate_says_not_shown_better_and_one_with_too_few_decisions_has_no_estimates(client_for, ann, db):
    reason = "Not shown better: the doubly robust difference is -0.0123 with lower bound -0.0456 ≤ 0."
    estimate = {"value": 0.1, "low": 0.05, "high": 0.15, "n": 80, "effective_sample_size": 40.0, "stderr": 0.02}
    worse = registry.register_candidate(KEY, "logistic", artefact(), metrics={"auc": 0.61, "gate": {
        "passed": False, "reason": reason, "decisions": 80, "incumbent": "v3",
        "estimates": {"candidate": {m: estimate for m in ("ipw", "snipw", "dr")}, "incumbent": {"dr": estimate}},
        "difference": {"value": -0.0123, "low": -0.0456, "high": 0.021, "n": 80}}})
    html = client_for(ann).get(reverse("models:detail", args=[worse.pk])).content.decode()
    assert "Not promoted by the gate: not shown better." in html and reason in html and "Passed" not in html
    assert 'id="gate-difference">-0.0123<' in html and "-0.0456 – 0.0210" in html and "v3" in html
    few = registry.register_candidate(KEY, "logistic", artefact(), metrics={"gate": {
        "passed": False, "reason": "Only 12 randomised decisions in the validation period; the gate needs 30.",
        "decisions": 12, "incumbent": "v3", "estimates": {"candidate": {"dr": {"value": None}}, "incumbent": {"dr": {"value": None}}},
        "difference": {}}})
    response = client_for(ann).get(reverse("models:detail", args=[few.pk]))
    html = response.content.decode()
    assert response.status_code == 200 and "the gate needs 30" in html
    assert response.context["gate"]["rows"] == [] and 'id="gate-difference"' not in html


def test_a_version_without_report_candidates_or_gate_shows_empty_states(client_for, ann, versions):
    v1, _ = versions
    response = client_for(ann).get(reverse("models:detail", args=[v1.pk]))
    html = response.content.decode()
    assert response.status_code == 200
    assert "This version was not gated." in html
    assert "No variable exploration report for this version." in html
    assert "No comparison was recorded" in html
    assert 'data-chart="model-roc"' not in html and 'data-chart="model-features"' in html


def test_a_partial_report_renders_what_it_has(client_for, ann, db):
    version = registry.register_candidate(KEY, "logistic", artefact(), metrics={"auc": "n/a", "note": "x"}, report={
        "criteria": [{"feature": "age", "bins": 2, "information_gain": 0.01234567, "gain_ratio": None}],
        "bins": [{"feature": "age", "bins": [
            {"bin": 0, "label": "(-inf, 30)", "count": 30, "share": 0.25, "response_rate": 0.1},
            {"bin": 1, "label": "[30, inf)", "count": 90, "share": 0.75, "response_rate": 0.3},
        ]}]})
    response = client_for(ann).get(reverse("models:detail", args=[version.pk]))
    html = response.content.decode()
    assert response.status_code == 200 and response.context["metrics"] == []  # a string is not a key figure
    rate, share = chart(html, "var-age-chart")["data"]["datasets"]
    assert share["data"] == [25.0, 75.0] and rate["data"] == [10.0, 30.0]
    assert "0.0123" in html and "No ROC curve was recorded." in html and "No calibration curve was recorded." in html


def test_the_list_shows_the_calibration_error_column(client_for, ann, gated, trained):
    model, _ = trained
    html = client_for(ann).get(reverse("models:list")).content.decode()
    assert "Calibration error" in html
    assert floatformat(model.metrics["auc"], 3) in html and floatformat(model.metrics["calibration_error"], 3) in html


def test_a_campaigns_models_are_headed_by_the_campaigns_name_and_link_to_it(client_for, ann, versions, db):
    from marketing.models import Campaign

    campaign = Campaign.objects.create(name="Summer K-pop push")
    ModelVersion.objects.filter(key=KEY).update(campaign_id=campaign.pk)  # trained_on recorded no name
    registry.register_candidate("campaign:999", "logistic", artefact(), campaign_id=999)  # its campaign is gone
    html = client_for(ann).get(reverse("models:list")).content.decode()
    link = reverse("campaigns:detail", args=[campaign.pk])
    assert f'<span class="fw-semibold">{KEY}</span> <span class="text-muted">· <a class="link-secondary" href="{link}">Summer K-pop push</a>' in html
    assert '<span class="fw-semibold">campaign:999</span></span>' in html  # nothing to name, nothing made up


def test_each_subject_in_the_list_shows_its_own_key_figures(client_for, ann, versions):
    registry.register_candidate("recsys:als", "recsys", b"{}", metrics={
        "recall10": 0.1941, "ndcg10": 0.2321, "popularity_recall10": 0.0702, "popularity_ndcg10": 0.081, "fit_seconds": 3.2})
    registry.register_candidate("forecast:streams", "forecast", b"{}", metrics={
        "mape_ratio_vs_naive_d7": 0.5061, "mape_d7": 0.2211, "coverage_d7": 0.81, "mape_d30": 0.31, "naive_mape_d7": 0.43})
    response = client_for(ann).get(reverse("models:list"))
    columns = {g["key"]: [label for _, label, _ in g["metric_names"]] for g in response.context["keys"]}
    assert columns == {KEY: ["AUC", "Log loss", "RMSE"],
                       "recsys:als": ["Recall@10", "NDCG@10", "Popularity recall@10", "Popularity NDCG@10"],
                       "forecast:streams": ["MAPE vs naive, day 7", "MAPE, day 7", "80 % interval coverage, day 7", "MAPE, day 30"]}
    html = response.content.decode()
    assert "0.194" in html and "0.506" in html and "0.81" in html and "Calibration error" not in html
