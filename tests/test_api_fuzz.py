"""Property-based fuzzing of every operation in the OpenAPI schema with schemathesis.

Each operation gets a small world (customers, a live banner campaign, a push campaign with a
delivery list, an audience, a job) and a token holding every scope; generated requests must
never answer 5xx, and every response must be documented by the schema: its status code, its
content type and its body. Generated ids and external ids are swapped for the world's real ones
half of the time, so the fuzzer reaches the code behind the 404s.

Writes (decisions, events, spend, batches, delivery-list batches) land in the test database,
rolled back after each operation. Runs are derandomized so CI sees the same cases every time.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
import schemathesis
from schemathesis import checks
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from accounts.models import SCOPES, ApiClient
from audiences.models import Audience, Customer, Item
from marketing.models import Ad, Campaign, Channel, Decision, Placement
from ml.models import Job

# The schema the API serves at /api/v1/schema/ (test_the_fuzzed_schema_is_the_served_one checks they match).
RAW_SCHEMA = SchemaGenerator().get_schema(request=None, public=True)
schema = schemathesis.openapi.from_dict(RAW_SCHEMA)
schema.app = get_wsgi_application()

WORLD: dict = {}  # the current operation's real ids, filled by the `world` fixture


@pytest.fixture
def world(db):
    """Enough rows for every operation to reach past its lookups."""
    customers = [Customer.objects.create(external_id=f"c{i}", region="south" if i % 2 else "north") for i in range(1, 6)]
    item = Item.objects.create(external_id="t1", title="Song")
    banner = Channel.objects.create(name="Banner", kind=Channel.Kind.BANNER)
    push = Channel.objects.create(name="Push", kind=Channel.Kind.PUSH, cost_model="send", unit_cost=Decimal("0.01"))
    home = Placement.objects.create(slug="home", name="Home", channel=banner)
    inbox = Placement.objects.create(slug="push", name="Push", channel=push)
    release = Campaign.objects.create(name="Release", status=Campaign.Status.LIVE)
    ad = Ad.objects.create(campaign=release, name="Single", title="New single", promoted_item=item)
    ad.placements.add(home)
    upsell = Campaign.objects.create(name="Upsell", status=Campaign.Status.LIVE)
    Ad.objects.create(campaign=upsell, name="Go premium").placements.add(inbox)
    south = Audience.objects.create(name="South", rule={"field": "region", "op": "eq", "value": "south"})
    job = Job.objects.create(kind="import", title="An import")
    _, token = ApiClient.issue("fuzzer", list(SCOPES))
    ApiClient.objects.update(requests_per_minute=1_000_000)
    decision = Decision.objects.create(customer=customers[0], placement=home, chosen=[ad.pk], eligible=[ad.pk],
                                       reason=Decision.Reason.PRIORITY, propensity=1.0, created_at=timezone.now())
    WORLD.clear()
    WORLD.update({
        "token": token, "customers": [c.external_id for c in customers], "placements": ["home", "push"],
        "audiences": [south.pk], "campaigns": [release.pk, upsell.pk], "jobs": [job.pk], "ads": [ad.pk],
        "decisions": [str(decision.pk)],
    })
    return WORLD


@pytest.fixture
def in_process_requests():
    """The WSGI handler closes database connections at each request's end, which would end the test's
    transaction; Django's own test client disconnects the same receivers."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


REAL = {"id": None, "external_id": "customers", "customer": "customers", "placement": "placements",
        "decision": "decisions", "ad": "ads"}
PATH_IDS = {"audiences": "audiences", "campaigns": "campaigns", "jobs": "jobs"}


def _real_id(path: str) -> str | None:
    for prefix, key in PATH_IDS.items():
        if path.startswith(f"/api/v1/{prefix}/"):
            return key
    return None


@schema.hook
def flatmap_path_parameters(context, path_parameters):
    """Half of the time, the world's real ids in place of generated ones."""
    if not path_parameters or not WORLD:
        return st.just(path_parameters)
    real = dict(path_parameters)
    if "id" in real and (key := _real_id(context.operation.path)):
        real["id"] = WORLD[key][0]
    if "external_id" in real:
        real["external_id"] = WORLD["customers"][0]
    return st.sampled_from([path_parameters, real])


def _with_real_values(value):
    if isinstance(value, dict):
        real = dict(value)
        for field, key in REAL.items():
            if key and field in real and isinstance(real[field], (str, int)) and not isinstance(real[field], bool):
                real[field] = WORLD[key][0]
        return real
    return value


@schema.hook
def flatmap_body(context, body):
    if not WORLD:
        return st.just(body)
    if isinstance(body, dict) and isinstance(body.get("events"), list):
        real = {**body, "events": [_with_real_values(e) for e in body["events"]]}
    elif isinstance(body, list):
        real = [_with_real_values(e) for e in body]
    else:
        real = _with_real_values(body)
    return st.sampled_from([body, real])


# Whether data is valid depends on rows the schema cannot know (a customer's external id must
# exist), so schema-valid requests may be refused; and a bad `page_size` falls back to the
# default page size, as DRF's pagination does. Every response is still checked against the schema.
NOT_CHECKED = [checks.positive_data_acceptance, checks.negative_data_rejection]


@pytest.mark.django_db
@schema.parametrize()
@settings(max_examples=50, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_no_operation_answers_5xx_or_breaks_its_schema(case, world, in_process_requests):
    case.call_and_validate(headers={"Authorization": f"Bearer {world['token']}"}, excluded_checks=NOT_CHECKED)


def test_the_fuzzed_schema_is_the_served_one(client, world):
    served = client.get("/api/v1/schema/", HTTP_AUTHORIZATION=f"Bearer {world['token']}", HTTP_ACCEPT="application/json")
    assert served.status_code == 200
    assert served.json()["paths"].keys() == RAW_SCHEMA["paths"].keys()


# Regressions the fuzzer found, pinned down in the schema itself.

def test_a_customer_without_a_persona_is_documented_as_null():
    persona = RAW_SCHEMA["components"]["schemas"]["Customer"]["properties"]["persona"]
    assert persona.get("nullable") or any(s.get("nullable") for s in persona.get("allOf", []) + persona.get("oneOf", []))


def test_a_refused_batch_is_documented_as_its_result_or_a_detail():
    refused = RAW_SCHEMA["paths"]["/api/v1/customers"]["post"]["responses"]["400"]["content"]["application/json"]["schema"]
    assert refused == {"$ref": "#/components/schemas/BatchRefused"}
    assert len(RAW_SCHEMA["components"]["schemas"]["BatchRefused"]["oneOf"]) == 2


def test_every_operation_documents_the_errors_it_can_answer():
    for path, operations in RAW_SCHEMA["paths"].items():
        for method, operation in operations.items():
            codes = set(operation["responses"])
            assert {"401", "403", "429"} <= codes, (method, path)
            assert "{" not in path or "404" in codes, (method, path)
            assert method == "get" or "400" in codes, (method, path)
