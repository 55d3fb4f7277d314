"""Every API URL: anonymous → 401, each scope → 403 unless it is the one the method needs, each role by
session, a revoked token → 401.

The API URLs are read from the URL configuration, so a new one without an entry in API fails
test_every_api_url_is_in_the_matrix; its view's declared scopes must match the entry too.
"""

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from accounts.models import SCOPES, ApiClient
from audiences.models import Audience, Customer
from marketing.models import Campaign
from ml.models import Job

# name: (path kwargs key, {method: scope})
API = {
    "api-customers": (None, {"GET": "customers:read", "POST": "customers:write"}),
    "api-customer": ("customer", {"GET": "customers:read"}),
    "api-items": (None, {"GET": "catalogue:read", "POST": "catalogue:write"}),
    "api-activities": (None, {"POST": "activities:write"}),
    "api-job": ("job", {"GET": "jobs:read"}),
    "api-audiences": (None, {"GET": "audiences:read"}),
    "api-audience-members": ("audience", {"GET": "audiences:read"}),
    "api-audience-members-stream": ("audience", {"GET": "audiences:read"}),
    "api-audience-why": ("why", {"GET": "audiences:read"}),
    "api-decisions": (None, {"POST": "decisions"}),
    "api-events": (None, {"POST": "events:write"}),
    "api-spend": (None, {"POST": "spend:write"}),
    "api-delivery-list": ("campaign", {"GET": "delivery-lists:read"}),
}
# Any token or any role reads the schema; the docs page is a signed-in page (test_api_docs.py).
SCHEMA = {"api-schema", "api-schema-noslash", "api-docs"}
CALLS = [(name, method) for name, (_, methods) in sorted(API.items()) for method in sorted(methods)]


def api_patterns(resolver=None, prefix=""):
    """(name, view class) of every named URL under api/."""
    resolver = resolver or get_resolver()
    for pattern in resolver.url_patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            yield from api_patterns(pattern, route)
        elif isinstance(pattern, URLPattern) and route.startswith("api/") and pattern.name:
            yield pattern.name, getattr(pattern.callback, "view_class", None)


def test_every_api_url_is_in_the_matrix():
    found = dict(api_patterns())
    missing = set(found) - set(API) - SCHEMA
    assert not missing, f"add these API URLs to API with their scopes: {sorted(missing)}"
    assert not set(API) - set(found), "API lists URLs that no longer exist"


@pytest.mark.parametrize("name", sorted(API))
def test_each_api_view_declares_exactly_the_scopes_in_the_matrix(name):
    view = dict(api_patterns())[name]
    assert view.scopes == API[name][1]
    assert {m.upper() for m in view.http_method_names if hasattr(view, m)} - {"OPTIONS"} == set(API[name][1])


@pytest.fixture
def objects(db):
    customer = Customer.objects.create(external_id="c1")
    audience = Audience.objects.create(name="South", rule={"field": "region", "op": "eq", "value": "south"})
    return {"customer": {"external_id": customer.external_id}, "audience": {"pk": audience.pk},
            "why": {"pk": audience.pk, "external_id": customer.external_id},
            "job": {"pk": Job.objects.create(kind="import", title="An import").pk},
            "campaign": {"pk": Campaign.objects.create(name="Upsell").pk}}


def call(client, name, method, objects, **headers):
    key = API[name][0]
    url = reverse(name, kwargs=objects[key] if key else None)
    if method == "GET":
        return client.get(url, **headers)
    return client.post(url, {}, content_type="application/json", **headers)


def bearer(*scopes):
    token = ApiClient.issue(f"client-{ApiClient.objects.count() + 1}", list(scopes))[1]
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


@pytest.mark.parametrize("name,method", CALLS)
def test_anonymous_calls_are_refused_with_401(client, objects, name, method):
    response = call(client, name, method, objects)
    assert response.status_code == 401 and response["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("name,method", CALLS)
def test_a_token_passes_only_with_the_scope_the_method_needs(client, objects, name, method):
    needed = API[name][1][method]
    for scope in SCOPES:
        status = call(client, name, method, objects, **bearer(scope)).status_code
        if scope == needed:
            assert status not in (401, 403), f"{scope}: {status}"
        else:
            assert status == 403, f"{scope}: {status}"
    assert call(client, name, method, objects, **bearer(*SCOPES)).status_code not in (401, 403)


@pytest.mark.parametrize("name,method", CALLS)
def test_a_revoked_token_is_refused_with_401(client, objects, name, method):
    headers = bearer(*SCOPES)
    ApiClient.objects.update(is_active=False)
    assert call(client, name, method, objects, **headers).status_code == 401


@pytest.mark.parametrize("name,method", CALLS)
@pytest.mark.parametrize("who", ["nora", "ann", "mark", "alice"])
def test_signed_in_users_read_with_any_role_and_write_as_marketer_or_admin(client, objects, request, name, method, who):
    client.force_login(request.getfixturevalue(who))
    status = call(client, name, method, objects).status_code
    allowed = who in ("mark", "alice") or (who == "ann" and method == "GET")
    assert (status not in (401, 403)) if allowed else status == 403, status


@pytest.mark.parametrize("name", [n for n, m in CALLS if m == "POST"])
def test_a_session_write_without_the_csrf_token_is_refused(objects, mark, name):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(mark)
    response = call(browser, name, "POST", objects)
    assert response.status_code == 403 and "CSRF" in response.json()["detail"]


def test_the_schema_is_for_any_token_or_role(client, db, nora, ann):
    assert client.get("/api/v1/schema/").status_code == 401
    assert client.get("/api/v1/schema/", **bearer("spend:write")).status_code == 200
    client.force_login(nora)
    assert client.get("/api/v1/schema/").status_code == 403
    client.force_login(ann)
    assert client.get("/api/v1/schema/").status_code == 200


def test_an_unknown_api_url_is_a_json_404(client, db):
    for path in ("/api/v1/jobs/not-a-number", "/api/v1/nothing-here", "/api/v2/customers"):
        response = client.get(path, **bearer(*SCOPES))
        assert response.status_code == 404 and response.json() == {"detail": "Not found."}, path
