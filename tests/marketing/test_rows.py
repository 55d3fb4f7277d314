"""The decision path's plain SQL gives what the ORM gives."""

from datetime import date
from decimal import Decimal

import pytest
from django.utils import timezone

from audiences.models import Audience, AudienceMember, Customer, Persona
from marketing import rows


@pytest.fixture
def listener(db):
    customer = Customer.objects.create(external_id="ext-1", birth_year=1990, region="south", gender="f",
                                       attributes={"plan": "family", "tags": ["a", "b"]})
    Persona.objects.create(customer=customer, segment="loyal", genres={"hip-hop": 0.6, "pop": 0.4}, plays_30d=12,
                           last_active_at=timezone.now(), spend_90d=Decimal("12.50"), as_of=timezone.now())
    return customer


def test_a_customer_and_persona_load_exactly_as_the_orms_select_related(listener):
    expected = Customer.objects.select_related("persona").get(pk=listener.pk)
    found = rows.customer_with_persona("ext-1")
    for field in Customer._meta.concrete_fields:
        assert getattr(found, field.attname) == getattr(expected, field.attname), field.name
    for field in Persona._meta.concrete_fields:
        assert getattr(found.persona, field.attname) == getattr(expected.persona, field.attname), field.name
    assert found.persona.genres == {"hip-hop": 0.6, "pop": 0.4} and found.attributes["tags"] == ["a", "b"]
    assert found.persona.spend_90d == Decimal("12.50") and found.persona.customer is found
    assert not found._state.adding and found._state.db == "default"


def test_a_customer_without_a_persona_says_so_without_another_query(db, django_assert_num_queries):
    Customer.objects.create(external_id="ext-2", birth_year=date.today().year - 30)
    with django_assert_num_queries(1):
        found = rows.customer_with_persona("ext-2")
        with pytest.raises(Persona.DoesNotExist):
            found.persona
    assert rows.customer_with_persona("nobody") is None


def test_memberships_are_the_asked_audiences_the_customer_is_in(listener):
    audiences = [Audience.objects.create(name=f"A{i}", kind=Audience.Kind.LIST) for i in range(3)]
    AudienceMember.objects.create(audience=audiences[0], customer=listener)
    AudienceMember.objects.create(audience=audiences[2], customer=listener)
    assert rows.memberships(listener, {a.pk for a in audiences}) == {audiences[0].pk, audiences[2].pk}
    assert rows.memberships(listener, {audiences[1].pk}) == set() and rows.memberships(listener, []) == set()
    loaded = rows.customer_with_persona(listener.external_id)  # the API's lookup reads them with the customer
    assert loaded.audience_ids == {audiences[0].pk, audiences[2].pk}
    assert rows.customer_with_persona("nobody") is None
    nobody = Customer.objects.create(external_id="ext-3")
    assert rows.customer_with_persona("ext-3").audience_ids == frozenset()
    assert rows.memberships(nobody, {a.pk for a in audiences}) == set()


def test_memberships_read_with_the_customer_need_no_query(listener, django_assert_num_queries):
    audience = Audience.objects.create(name="Fans", kind=Audience.Kind.LIST)
    AudienceMember.objects.create(audience=audience, customer=listener)
    loaded = rows.customer_with_persona(listener.external_id)
    with django_assert_num_queries(0):
        assert rows.memberships(loaded, [audience.pk, audience.pk + 1]) == {audience.pk}


def test_an_insert_writes_what_bulk_create_writes(listener):
    import uuid

    from django.db import connection
    from django.db.models.functions import Now

    from marketing.models import Channel, Decision, Placement, ServedAd

    channel = Channel.objects.create(name="Push", kind="push", cost_model="send", unit_cost=0)
    placement = Placement.objects.create(slug="p", name="P", channel=channel)
    now = timezone.now()

    def decision(**kw):
        return Decision(id=uuid.uuid4(), customer=listener, placement=placement, created_at=now, eligible=[3, 4], chosen=[3],
                        reason="model", propensity=0.25, context={"screen": "home", "n": [1, 2]}, **kw)

    ours, theirs = decision(), decision()
    sql, params = rows.insert([ours])
    assert sql.startswith('INSERT INTO "marketing_decision"' if connection.vendor == "postgresql" else "INSERT INTO")
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
    Decision.objects.bulk_create([theirs])
    fields = [f.attname for f in Decision._meta.concrete_fields if f.attname != "id"]
    assert (Decision.objects.filter(pk=ours.pk).values(*fields).get() == Decision.objects.filter(pk=theirs.pk).values(*fields).get())

    decision_id = uuid.uuid4()
    served = [ServedAd(decision=decision_id, customer_id=listener.pk, ad_id=1, campaign_id=1, placement=placement,
                       channel_id=channel.pk, served_at=now) for _ in range(2)]
    sql, params = rows.insert(served)
    assert sql.count("(%s") == 2 and len(params) == 2 * len(rows._insert_fields(ServedAd))  # two rows of values
    made = rows._insert_statement.cache_info()
    assert rows.insert(served) == (sql, params)
    again = rows._insert_statement.cache_info()
    assert (again.hits, again.misses) == (made.hits + 1, made.misses)  # the statement is made once per row count
    # An expression goes through the ORM's compiler, as bulk_create would take it.
    late = decision(model_version="")
    late.created_at = Now()
    sql, params = rows.insert([late])
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
    assert Decision.objects.get(pk=late.pk).created_at >= now
