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
