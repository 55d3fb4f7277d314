"""Every page: anonymous → login, wrong role → 403, wrong method → 405, right role → 200.

PAGES lists each named URL with the least role it needs; a test fails when the URL
configuration gains a page that is missing here, so no page escapes these checks.
"""

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from audiences.models import Audience, Customer, DataImport, Item, Lookalike
from marketing.models import Ad, Campaign, Channel, FrequencyCap, Placement
from ml.models import Job, ModelVersion
from tests.marketing.test_budget_pages import fitted_model, make_scenario

# name: (kwargs builder key, least role for GET, methods allowed)
VIEWER, WRITER, ADMIN = "viewer", "writer", "admin"
PAGES = {
    "dashboard": (None, VIEWER, {"GET"}),
    "customers:list": (None, VIEWER, {"GET"}),
    "customers:detail": ("customer", VIEWER, {"GET"}),
    "customers:persona_settings": (None, VIEWER, {"GET", "POST"}),
    "customers:persona_rebuild": (None, WRITER, {"POST"}),
    "imports:list": (None, VIEWER, {"GET"}),
    "imports:new": (None, WRITER, {"GET", "POST"}),
    "imports:detail": ("import", VIEWER, {"GET", "POST"}),
    "imports:errors": ("import", VIEWER, {"GET"}),
    "audiences:list": (None, VIEWER, {"GET"}),
    "audiences:new": (None, WRITER, {"GET", "POST"}),
    "audiences:preview": (None, WRITER, {"POST"}),
    "audiences:builder": (None, WRITER, {"POST"}),
    "audiences:upload": (None, WRITER, {"GET", "POST"}),
    "audiences:lookalike_new": (None, WRITER, {"GET", "POST"}),
    "audiences:lookalike_resize": ("lookalike", WRITER, {"POST"}),
    "audiences:refresh": ("audience", WRITER, {"POST"}),
    "audiences:detail": ("audience", VIEWER, {"GET"}),
    "audiences:edit": ("audience", WRITER, {"GET", "POST"}),
    "audiences:why": ("why", VIEWER, {"GET"}),
    "audiences:analytics": (None, VIEWER, {"GET"}),
    "audiences:analytics_csv": (None, VIEWER, {"GET"}),
    "catalogue:list": (None, VIEWER, {"GET"}),
    "catalogue:detail": ("item", VIEWER, {"GET"}),
    "catalogue:audio_upload": ("item", WRITER, {"POST"}),
    "catalogue:audio_train": (None, WRITER, {"POST"}),
    "campaigns:list": (None, VIEWER, {"GET"}),
    "campaigns:decisions": (None, VIEWER, {"GET"}),
    "campaigns:roi": (None, VIEWER, {"GET"}),
    "campaigns:roi_csv": (None, VIEWER, {"GET"}),
    "campaigns:new": (None, WRITER, {"GET", "POST"}),
    "campaigns:detail": ("campaign", VIEWER, {"GET"}),
    "campaigns:edit": ("campaign", WRITER, {"GET", "POST"}),
    "campaigns:status": ("campaign", WRITER, {"POST"}),
    "campaigns:train": ("campaign", WRITER, {"POST"}),
    "campaigns:train_uplift": ("campaign", WRITER, {"POST"}),
    "campaigns:ad_new": ("ad_new", WRITER, {"GET", "POST"}),
    "campaigns:ad_edit": ("ad", WRITER, {"GET", "POST"}),
    "campaigns:cap_new": (None, WRITER, {"GET", "POST"}),
    "campaigns:cap_delete": ("cap", WRITER, {"POST"}),
    "campaigns:delivery": (None, VIEWER, {"GET"}),
    "campaigns:channel_new": (None, WRITER, {"GET", "POST"}),
    "campaigns:channel_edit": ("channel", WRITER, {"GET", "POST"}),
    "campaigns:placement_new": (None, WRITER, {"GET", "POST"}),
    "campaigns:placement_edit": ("placement", WRITER, {"GET", "POST"}),
    "campaigns:plan": ("placement", WRITER, {"GET", "POST"}),
    "campaigns:simulate": (None, VIEWER, {"GET"}),
    "campaigns:simulate_customers": (None, VIEWER, {"GET"}),
    "budget:overview": (None, VIEWER, {"GET"}),
    "budget:upload": (None, WRITER, {"POST"}),
    "budget:platform": (None, WRITER, {"POST"}),
    "budget:dataset": ("dataset", VIEWER, {"GET"}),
    "budget:fit": ("dataset", WRITER, {"POST"}),
    "budget:channels": ("dataset", WRITER, {"POST"}),
    "budget:model": ("mix_model", VIEWER, {"GET"}),
    "budget:allocate": ("mix_model", WRITER, {"POST"}),
    "budget:scenario": ("scenario", VIEWER, {"GET"}),
    "budget:apply": ("scenario", WRITER, {"GET", "POST"}),
    "budget:compare": (None, VIEWER, {"GET"}),
    "jobs:list": (None, VIEWER, {"GET"}),
    "jobs:detail": ("job", VIEWER, {"GET"}),
    "models:list": (None, VIEWER, {"GET"}),
    "models:build_recommendations": (None, WRITER, {"POST"}),
    "models:detail": ("model", VIEWER, {"GET"}),
    "models:promote": ("model", WRITER, {"POST"}),
    "models:roll_back": ("model", WRITER, {"POST"}),
    "team:overview": (None, ADMIN, {"GET"}),
    "team:user_new": (None, ADMIN, {"GET", "POST"}),
    "team:user_edit": ("user", ADMIN, {"GET", "POST"}),
    "team:client_new": (None, ADMIN, {"GET", "POST"}),
    "team:client_revoke": ("client", ADMIN, {"POST"}),
    "team:audit": (None, ADMIN, {"GET"}),
    "two_factor": (None, VIEWER, {"GET", "POST"}),
    "two_factor_remove": (None, VIEWER, {"POST"}),
}
# Served by Django itself or checked elsewhere (auth views; every api-* URL in test_api_access.py, which fails on a new one).
OTHERS = {"healthz", "login", "login_verify", "logout", "password_change", "password_change_done", "api-schema", "api-schema-noslash", "api-docs", "api-delivery-list", "api-customers",
          "api-customer", "api-items", "api-activities", "api-job",
          "api-audiences", "api-audience-members", "api-audience-members-stream", "api-audience-why", "api-decisions", "api-events", "api-spend"}


def all_url_names(resolver=None, namespace=""):
    resolver = resolver or get_resolver()
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            if pattern.app_name == "admin":
                continue
            ns = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            yield from all_url_names(pattern, ns)
        elif isinstance(pattern, URLPattern) and pattern.name:
            yield namespace + pattern.name


def test_every_named_url_is_in_the_access_table():
    missing = set(all_url_names()) - set(PAGES) - OTHERS
    assert not missing, f"add these URLs to PAGES with their least role: {sorted(missing)}"


@pytest.fixture
def objects(alice, mark):
    from accounts.models import ApiClient

    customer = Customer.objects.create(external_id="c-1")
    item = Item.objects.create(external_id="t-1", title="A track")
    data_import = DataImport.objects.create(kind="customers", original_name="x.csv", file_format="csv", file="imports/x.csv")
    job = Job.objects.create(kind="test", title="A job")
    model = ModelVersion.objects.create(key="campaign:1", kind=ModelVersion.Kind.LOGISTIC, version=1, artefact="campaign-1/a.pkl")
    client, _ = ApiClient.issue("crm", ["customers:read"])
    audience = Audience.objects.create(name="Everyone south", rule={"field": "region", "op": "eq", "value": "south"})
    lookalike = Audience.objects.create(name="Like the south", kind=Audience.Kind.LOOKALIKE)
    Lookalike.objects.create(audience=lookalike, seed=audience)
    channel = Channel.objects.create(name="Banner", kind=Channel.Kind.BANNER)
    placement = Placement.objects.create(slug="home", name="Home", channel=channel)
    campaign = Campaign.objects.create(name="Release")
    ad = Ad.objects.create(campaign=campaign, name="Single")
    cap = FrequencyCap.objects.create(level=FrequencyCap.Level.CAMPAIGN, campaign=campaign, max_count=2)
    delivery = {"channel": channel.pk, "placement": placement.pk, "campaign": campaign.pk, "ad": ad.pk, "cap": cap.pk,
                "ad_new": {"campaign_pk": campaign.pk}}
    scenario = make_scenario(fitted_model())  # a fitted model's pages and a scenario, without fitting per test
    budget = {"dataset": scenario.model.dataset_id, "mix_model": scenario.model_id, "scenario": scenario.pk}
    return {**delivery, **budget, "customer": customer.pk, "item": item.pk, "import": data_import.pk, "job": job.pk, "model": model.pk, "user": mark.pk, "client": client.pk,
            "audience": audience.pk, "lookalike": lookalike.pk, "why": {"pk": audience.pk, "customer_pk": customer.pk}}


def url_of(name, objects):
    key = PAGES[name][0]
    if key is None:
        return reverse(name)
    value = objects[key]
    return reverse(name, kwargs=value if isinstance(value, dict) else {"pk": value})


@pytest.mark.parametrize("name", sorted(PAGES))
def test_anonymous_users_are_sent_to_login(client, objects, name):
    method = "get" if "GET" in PAGES[name][2] else "post"
    response = getattr(client, method)(url_of(name, objects))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.fixture(scope="module")
def every_scope():
    from accounts.models import SCOPES

    return sorted(SCOPES)


@pytest.mark.parametrize("name", sorted(PAGES))
def test_api_tokens_do_not_open_pages(client, objects, every_scope, name):
    """A Bearer token (here one holding every scope) is for /api/ only: a page treats its holder as anonymous."""
    from accounts.models import ApiClient

    _, token = ApiClient.issue("page-prober", every_scope)
    method = "get" if "GET" in PAGES[name][2] else "post"
    response = getattr(client, method)(url_of(name, objects), HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


ROLE_RANK = {VIEWER: 0, WRITER: 1, ADMIN: 2}


@pytest.mark.parametrize("name", sorted(PAGES))
@pytest.mark.parametrize("who,rank", [("nora", -1), ("ann", 0), ("mark", 1), ("alice", 2)])
def test_each_role_gets_exactly_the_pages_it_may_use(client, objects, request, name, who, rank):
    user = request.getfixturevalue(who)
    client.force_login(user)
    least = ROLE_RANK[PAGES[name][1]]
    methods = PAGES[name][2]
    url = url_of(name, objects)
    if "GET" in methods:
        response = client.get(url)
        if rank < least:
            assert response.status_code == 403
        else:
            # imports:errors has no report for this import: the page exists but says 404
            assert response.status_code == (404 if name == "imports:errors" else 200), response.content[:300]
    else:
        response = client.post(url)
        if rank < least:
            assert response.status_code == 403
        else:
            assert response.status_code in (200, 302, 400)


@pytest.mark.parametrize("name", sorted(PAGES))
def test_wrong_methods_are_refused_with_405(client, objects, alice, name):
    client.force_login(alice)
    url = url_of(name, objects)
    for method in {"GET", "POST", "PUT", "DELETE"} - PAGES[name][2]:
        response = getattr(client, method.lower())(url)
        assert response.status_code == 405, f"{method} {url} gave {response.status_code}"


def test_analysts_see_persona_settings_but_cannot_change_them(client, ann):
    client.force_login(ann)
    assert client.get(reverse("customers:persona_settings")).status_code == 200
    assert client.post(reverse("customers:persona_settings"), {"half_life_days": 5}).status_code == 403


def test_login_page_logs_a_user_in_and_logout_needs_post(client, mark):
    from tests.conftest import PASSWORD

    response = client.post(reverse("login"), {"username": "mark", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == reverse("dashboard")
    assert client.get(reverse("dashboard")).status_code == 200
    assert client.get(reverse("logout")).status_code == 405
    assert client.post(reverse("logout")).status_code == 302
    assert client.get(reverse("dashboard")).status_code == 302


def test_a_wrong_password_is_refused_with_a_message(client, mark):
    response = client.post(reverse("login"), {"username": "mark", "password": "nope"})
    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content


def test_users_change_their_password(client, mark):
    from tests.conftest import PASSWORD

    client.force_login(mark)
    response = client.post(reverse("password_change"), {
        "old_password": PASSWORD, "new_password1": "a-much-better-secret-42", "new_password2": "a-much-better-secret-42"})
    assert response.status_code == 302
    mark.refresh_from_db()
    assert mark.check_password("a-much-better-secret-42")
