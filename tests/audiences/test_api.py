"""The REST API: bearer tokens with scopes, session roles, batches that keep good items."""

import pytest

from accounts.models import ApiClient
from audiences.models import Activity, Customer, Item
from ml.models import Job


@pytest.fixture
def token(db):
    def issue(*scopes):
        return ApiClient.issue(f"client-{ApiClient.objects.count() + 1}", list(scopes))[1]

    return issue


def auth(token):
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


@pytest.fixture
def base(db):
    Customer.objects.create(external_id="c1", region="south")
    Customer.objects.create(external_id="c2")
    Item.objects.create(external_id="t1", title="Song")


def test_it_rejects_calls_without_a_token(client, base):
    assert client.get("/api/v1/customers").status_code in (401, 403)
    assert client.post("/api/v1/activities", [], content_type="application/json").status_code in (401, 403)


def test_it_rejects_unknown_and_revoked_tokens(client, base, token):
    assert client.get("/api/v1/customers", **auth("enc_not-a-token")).status_code == 401
    good = token("customers:read")
    ApiClient.objects.update(is_active=False)
    response = client.get("/api/v1/customers", **auth(good))
    assert response.status_code == 401 and "revoked" in response.json()["detail"]


def test_a_token_reads_customers_with_the_read_scope_only(client, base, token):
    response = client.get("/api/v1/customers", **auth(token("customers:read")))
    assert response.status_code == 200
    assert [c["external_id"] for c in response.json()["results"]] == ["c1", "c2"]
    denied = client.get("/api/v1/customers", **auth(token("activities:write")))
    assert denied.status_code == 403 and "customers:read" in denied.json()["detail"]
    assert ApiClient.objects.get(scopes=["customers:read"]).last_used_at is not None


def test_a_customer_is_fetched_by_external_id(client, base, token):
    response = client.get("/api/v1/customers/c1", **auth(token("customers:read")))
    assert response.status_code == 200 and response.json()["region"] == "south"
    assert client.get("/api/v1/customers/nope", **auth(token("jobs:read", "customers:read"))).status_code == 404


def test_an_activity_batch_keeps_good_items_and_reports_bad_ones_by_index(client, base, token):
    batch = [
        {"external_id": "e1", "customer": "c1", "item": "t1", "kind": "play", "occurred_at": "2024-05-01T10:00:00Z"},
        {"external_id": "e2", "customer": "c404", "kind": "play", "occurred_at": "2024-05-01T10:00:00Z"},
        {"external_id": "e3", "customer": "c2", "kind": "purchase", "value": 4.5, "occurred_at": "2024-05-01T11:00:00Z"},
        {"external_id": "e4", "customer": "c2", "kind": "play", "occurred_at": "soon"},
        "not an object",
        {"external_id": "e6", "customer": "c2", "kind": "play", "occurred_at": "2024-05-01T11:00:00Z", "colour": "red"},
    ]
    key = token("activities:write")
    response = client.post("/api/v1/activities", batch, content_type="application/json", **auth(key))
    assert response.status_code == 200
    body = response.json()
    assert (body["accepted"], body["created"]) == (2, 2)
    assert [(r["index"], r["field"]) for r in body["rejected"]] == [(1, "customer"), (3, "occurred_at"), (4, ""), (5, "colour")]
    assert "unknown customer" in body["rejected"][0]["reason"]
    assert Activity.objects.count() == 2
    again = client.post("/api/v1/activities", {"items": batch}, content_type="application/json", **auth(key)).json()
    assert (again["accepted"], again["created"]) == (2, 0) and Activity.objects.count() == 2


def test_a_batch_with_only_bad_items_is_a_400(client, base, token):
    response = client.post("/api/v1/activities", [{"customer": "c1"}], content_type="application/json",
                           **auth(token("activities:write")))
    assert response.status_code == 400
    assert {r["field"] for r in response.json()["rejected"]} == {"kind", "occurred_at"}


def test_an_oversized_or_malformed_batch_is_refused_whole(client, base, token):
    key = token("activities:write")
    assert client.post("/api/v1/activities", {"items": "x"}, content_type="application/json", **auth(key)).status_code == 400
    big = [{"customer": "c1"}] * 10_001
    response = client.post("/api/v1/activities", big, content_type="application/json", **auth(key))
    assert response.status_code == 400 and "at most 10,000" in response.json()["detail"]


def test_customers_and_items_are_upserted_in_batches(client, base, token):
    key = token("customers:write", "catalogue:write")
    r = client.post("/api/v1/customers", [{"external_id": "c1", "region": "north"}, {"external_id": "c3", "birth_year": 1999}],
                    content_type="application/json", **auth(key))
    assert r.json() == {"accepted": 2, "created": 1, "rejected": []}
    assert Customer.objects.get(external_id="c1").region == "north"
    r = client.post("/api/v1/customers", [{"external_id": "c3", "region": "east"}], content_type="application/json", **auth(key))
    c3 = Customer.objects.get(external_id="c3")
    assert (c3.region, c3.birth_year) == ("east", 1999), "fields an item leaves out keep their stored values"
    r = client.post("/api/v1/items", [{"external_id": "t2", "title": "New", "genres": ["k-pop", "pop"]}],
                    content_type="application/json", **auth(key))
    assert r.status_code == 200 and Item.objects.get(external_id="t2").genres == ["k-pop", "pop"]


def test_signed_in_analysts_read_but_cannot_write(client, base, ann):
    client.force_login(ann)
    assert client.get("/api/v1/customers").status_code == 200
    response = client.post("/api/v1/customers", [{"external_id": "x"}], content_type="application/json")
    assert response.status_code == 403
    assert not Customer.objects.filter(external_id="x").exists()


def test_users_without_a_role_get_nothing(client, base, nora):
    client.force_login(nora)
    assert client.get("/api/v1/customers").status_code == 403


def test_job_progress_needs_the_jobs_scope(client, db, token):
    job = Job.objects.create(kind="import", title="Import", progress=0.5)
    response = client.get(f"/api/v1/jobs/{job.pk}", **auth(token("jobs:read")))
    assert response.status_code == 200 and response.json()["progress"] == 0.5
    assert client.get(f"/api/v1/jobs/{job.pk}", **auth(token("customers:read"))).status_code == 403


def test_wrong_methods_get_405(client, base, token):
    key = token("customers:read", "customers:write", "activities:write")
    assert client.delete("/api/v1/customers", **auth(key)).status_code == 405
    assert client.get("/api/v1/activities", **auth(key)).status_code == 405
    assert client.put("/api/v1/customers/c1", {}, content_type="application/json", **auth(key)).status_code == 405


def test_the_openapi_schema_is_served_to_authenticated_callers(client, db, token):
    assert client.get("/api/v1/schema").status_code in (401, 403)
    response = client.get("/api/v1/schema", **auth(token("jobs:read")))
    assert response.status_code == 200
    assert b"/api/v1/activities" in response.content and b"bearerAuth" in response.content


ENDPOINTS = [
    # (url, method, scope)
    ("/api/v1/customers", "get", "customers:read"),
    ("/api/v1/customers", "post", "customers:write"),
    ("/api/v1/customers/c1", "get", "customers:read"),
    ("/api/v1/items", "get", "catalogue:read"),
    ("/api/v1/items", "post", "catalogue:write"),
    ("/api/v1/activities", "post", "activities:write"),
    ("/api/v1/jobs/{job}", "get", "jobs:read"),
    ("/api/v1/audiences", "get", "audiences:read"),
    ("/api/v1/audiences/{audience}/members", "get", "audiences:read"),
    ("/api/v1/audiences/{audience}/members.ndjson", "get", "audiences:read"),
    ("/api/v1/audiences/{audience}/why/c1", "get", "audiences:read"),
]
ALL_SCOPES = ("customers:read", "customers:write", "catalogue:read", "catalogue:write", "activities:write", "jobs:read", "audiences:read")


def fill(url):
    from audiences.models import Audience

    audience = Audience.objects.get_or_create(name="South", defaults={"rule": {"field": "region", "op": "eq", "value": "south"}})[0]
    return url.format(job=Job.objects.create(kind="t", title="T").pk, audience=audience.pk)


@pytest.mark.parametrize("url,method,scope", ENDPOINTS)
def test_every_endpoint_needs_its_own_scope(client, base, token, url, method, scope):
    url = fill(url)
    call = getattr(client, method)
    body = {"data": [], "content_type": "application/json"} if method == "post" else {}
    assert call(url, **body).status_code in (401, 403)
    others = [s for s in ALL_SCOPES if s != scope]
    assert call(url, **body, **auth(token(*others))).status_code == 403
    assert call(url, **body, **auth(token(scope))).status_code == 200


@pytest.mark.parametrize("url", sorted({u for u, _, _ in ENDPOINTS}))
def test_every_endpoint_refuses_unknown_methods_with_405(client, base, token, url):
    url = fill(url)
    key = auth(token(*ALL_SCOPES))
    assert client.delete(url, **key).status_code == 405
    assert client.patch(url, {}, content_type="application/json", **key).status_code == 405


def test_the_schema_needs_a_role_or_a_token(client, db, nora):
    client.force_login(nora)
    assert client.get("/api/v1/schema").status_code == 403


def test_audience_members_and_why_follow_the_rule(client, base, token):
    from audiences.models import Audience

    audience = Audience.objects.create(name="South", rule={"field": "region", "op": "eq", "value": "south"})
    key = auth(token("audiences:read"))
    members = client.get(f"/api/v1/audiences/{audience.pk}/members", **key).json()
    assert [m["external_id"] for m in members["results"]] == ["c1"]
    why = client.get(f"/api/v1/audiences/{audience.pk}/why/c2", **key).json()
    assert why["member"] is False and why["why"]["text"] == "Region is south" and why["why"]["held"] is False


def test_audience_members_stream_as_ndjson_and_resume_after_a_cursor(client, base, token):
    import json

    from audiences.models import Audience, Customer

    Customer.objects.bulk_create(Customer(external_id=f"s{i:03d}", region="south") for i in range(12))
    audience = Audience.objects.create(name="South", rule={"field": "region", "op": "eq", "value": "south"})
    key = auth(token("audiences:read"))

    def fetch(query=""):
        response = client.get(f"/api/v1/audiences/{audience.pk}/members.ndjson{query}", **key)
        assert response.status_code == 200 and response["Content-Type"] == "application/x-ndjson" and response.streaming
        return [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]

    lines = fetch()
    expected = list(Customer.objects.filter(region="south").order_by("pk").values_list("external_id", flat=True))
    assert [line["external_id"] for line in lines] == expected
    # A member who joins before the resumed call does not shift the rest.
    Customer.objects.filter(external_id="c2").update(region="south")
    rest = fetch(f"?after={lines[9]['cursor']}")
    assert [line["external_id"] for line in rest] == expected[10:]
    for bad in ("x", "-1", str(2**70)):
        assert client.get(f"/api/v1/audiences/{audience.pk}/members.ndjson?after={bad}", **key).status_code == 400
