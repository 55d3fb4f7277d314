"""The customers list: KPIs, search, segment filter and sortable columns that keep each other."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from audiences.models import Customer, Persona, Segment

pytestmark = pytest.mark.django_db


@pytest.fixture
def base(db):
    now = timezone.now()
    rows = [("c-ann", "North", Segment.LOYAL, 40, "12.50", now - timedelta(days=1)),
            ("c-bob", "South", Segment.CASUAL, 3, "99.00", now - timedelta(days=20)),
            ("c-cat", "North", Segment.CASUAL, 15, "0", None)]
    for external_id, region, segment, plays, spend, active in rows:
        customer = Customer.objects.create(external_id=external_id, region=region)
        Persona.objects.create(customer=customer, segment=segment, plays_30d=plays, spend_90d=Decimal(spend),
                               last_active_at=active, as_of=now)
    Customer.objects.create(external_id="c-dan", region="East")  # no persona yet


def ids(client, **params):
    return [c.external_id for c in client.get(reverse("customers:list"), params).context["page_obj"]]


def test_the_list_sorts_by_its_columns_and_keeps_search_and_filter(client_for, ann, base):
    client = client_for(ann)
    assert ids(client) == ids(client, sort="nonsense") == ["c-ann", "c-bob", "c-cat", "c-dan"]
    assert ids(client, sort="-spend") == ["c-bob", "c-ann", "c-cat", "c-dan"]  # no persona: last either way
    assert ids(client, sort="-plays") == ["c-ann", "c-cat", "c-bob", "c-dan"]
    assert ids(client, sort="-active") == ["c-ann", "c-bob", "c-cat", "c-dan"]
    assert ids(client, sort="-plays", q="north") == ["c-ann", "c-cat"]
    assert ids(client, sort="-spend", segment="casual") == ["c-bob", "c-cat"]
    response = client.get(reverse("customers:list"), {"sort": "-spend", "q": "north"}, HTTP_HX_REQUEST="true")
    page = response.content.decode()
    assert "<html" not in page and 'aria-sort="descending"' in page
    assert 'href="?q=north&amp;sort=spend"' in page  # the active column toggles, the search stays
    assert 'id="customers-sort" name="sort" value="-spend" hx-swap-oob="true"' in page  # the search form follows


def test_the_list_shows_the_base_in_figures(client_for, ann, base):
    kpis = client_for(ann).get(reverse("customers:list")).context["kpis"]
    assert kpis["total"] == 4 and kpis["active_7d"] == 1 and dict(kpis["segments"])["Loyal"] == 1


def test_the_customer_page_labels_imported_attributes_in_words(client_for, ann, base):
    customer = Customer.objects.get(external_id="c-ann")
    Customer.objects.filter(pk=customer.pk).update(attributes={"onboarding_genres": ["dancehall", "reggaeton"], "plan": "duo"})
    page = client_for(ann).get(reverse("customers:detail", args=[customer.pk])).content.decode()
    assert '<dt class="col-5" title="onboarding_genres">Onboarding genres</dt><dd class="col-7">dancehall, reggaeton</dd>' in page
    assert '<dt class="col-5" title="plan">Plan</dt><dd class="col-7">duo</dd>' in page
