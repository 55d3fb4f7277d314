"""A request the database cannot answer (restart, refused connection) gets 503 with Retry-After, not 500."""

import json
from unittest import mock

import pytest
from django.db import OperationalError
from django.test import RequestFactory

from config.middleware import DatabaseUnavailableMiddleware


def middleware():
    return DatabaseUnavailableMiddleware(lambda request: None)


def test_an_api_request_during_a_database_outage_gets_503_json_with_retry_after():
    request = RequestFactory().post("/api/v1/decisions")
    response = middleware().process_exception(request, OperationalError("server closed the connection unexpectedly"))
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert "unavailable" in json.loads(response.content)["detail"]


def test_a_page_during_a_database_outage_gets_a_plain_503():
    response = middleware().process_exception(RequestFactory().get("/campaigns/"), OperationalError("refused"))
    assert response.status_code == 503
    assert response["Content-Type"].startswith("text/plain")


def test_other_errors_are_left_to_django():
    assert middleware().process_exception(RequestFactory().get("/"), ValueError("bug")) is None


def test_a_missing_table_is_a_bug_not_an_outage():
    # SQLite raises OperationalError for schema errors too; they must stay 500s that someone sees.
    assert middleware().process_exception(RequestFactory().get("/"), OperationalError("no such table: marketing_ad")) is None


@pytest.mark.django_db
def test_the_api_answers_503_when_its_query_fails(client):
    with mock.patch("django.db.backends.utils.CursorWrapper.execute",
                    side_effect=OperationalError("terminating connection due to administrator command")):
        response = client.post("/api/v1/decisions", {"customer": "c1", "placement": "home-banner"},
                               content_type="application/json", HTTP_AUTHORIZATION="Bearer nope")
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
