"""The Models pages: the registry list, a version's page, and promote / roll back from the UI."""

import pickle

import numpy as np
import pytest
from django.urls import reverse
from sklearn.linear_model import LogisticRegression

from ml import registry, serving
from ml.models import ModelVersion

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
