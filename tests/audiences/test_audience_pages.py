"""Marketers build rule audiences in the browser; sizes, members and why-in/out follow the rule."""

import json

import pytest
from django.urls import reverse

from audiences.models import Audience, Customer, Persona


@pytest.fixture
def people(db):
    from django.utils import timezone

    for ext, region, genre in [("a", "south", "hip-hop"), ("b", "south", "pop"), ("c", "north", "hip-hop")]:
        customer = Customer.objects.create(external_id=ext, region=region)
        Persona.objects.create(customer=customer, top_genre=genre, as_of=timezone.now())


RULE = {"all": [{"field": "region", "op": "eq", "value": "south"}, {"field": "top_genre", "op": "eq", "value": "hip-hop"}]}


def test_a_marketer_saves_a_rule_audience_and_sees_its_size_and_members(client, people, mark):
    client.force_login(mark)
    response = client.post(reverse("audiences:new"), {"name": "Southern hip-hop", "description": "", "rule": json.dumps(RULE)})
    audience = Audience.objects.get()
    assert response.status_code == 302 and (audience.size, audience.created_by) == (1, mark)
    page = client.get(reverse("audiences:detail", args=[audience.pk])).content.decode()
    assert "Region is south" in page and "Top genre is hip-hop" in page and ">a<" in page and ">b<" not in page


def test_a_bad_rule_is_refused_with_its_path(client, people, mark):
    client.force_login(mark)
    bad = {"all": [{"field": "region", "op": "eq", "value": "south"}, {"field": "age", "op": "gte", "value": "old"}]}
    response = client.post(reverse("audiences:new"), {"name": "Broken", "rule": json.dumps(bad)})
    assert response.status_code == 400
    assert "all[1].value: &#x27;old&#x27; is not a whole number" in response.content.decode()
    response = client.post(reverse("audiences:new"), {"name": "Broken", "rule": "{not json"})
    assert "Not valid JSON" in response.content.decode()
    assert not Audience.objects.exists()


def test_the_live_preview_counts_or_explains(client, people, mark):
    client.force_login(mark)
    ok = client.post(reverse("audiences:preview"), {"rule": json.dumps(RULE)}, HTTP_HX_REQUEST="true").content.decode()
    assert ">1<" in ok and "33.3 %" in ok and "<html" not in ok
    bad = client.post(reverse("audiences:preview"), {"rule": json.dumps({"any": []})}, HTTP_HX_REQUEST="true").content.decode()
    assert "any: a group needs at least one condition" in bad


def test_why_in_and_why_out_show_each_condition(client, people, ann, mark):
    from audiences import actions

    audience = actions.save_audience(Audience(name="Southern hip-hop", rule=RULE), by=mark)
    client.force_login(ann)
    b = Customer.objects.get(external_id="b")
    page = client.get(reverse("audiences:why", args=[audience.pk, b.pk])).content.decode()
    assert "is not in" in page and "holds:</span>" in page and "fails:</span>" in page
    customer_page = client.get(reverse("customers:detail", args=[b.pk])).content.decode()
    assert "Southern hip-hop" in customer_page and "not a member" in customer_page


def test_analysts_cannot_change_audiences(client, people, ann):
    audience = Audience.objects.create(name="Southern hip-hop", rule=RULE)
    client.force_login(ann)
    assert client.post(reverse("audiences:edit", args=[audience.pk]), {"name": "x", "rule": "{}"}).status_code == 403
    assert Audience.objects.get().name == "Southern hip-hop"


def test_an_uploaded_list_keeps_known_ids_and_reports_unknown_ones(client, people, mark):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client.force_login(mark)
    upload = SimpleUploadedFile("vip.csv", b"customer_id\na\nc\nzz-9\nc\n")
    response = client.post(reverse("audiences:upload"), {"name": "VIPs", "file": upload}, follow=True)
    audience = Audience.objects.get(name="VIPs")
    assert (audience.kind, audience.size) == ("list", 2)
    assert set(Customer.objects.in_audience(audience).values_list("external_id", flat=True)) == {"a", "c"}
    assert "1 ids are not customers and were left out: zz-9" in response.content.decode()


def test_rules_can_include_an_uploaded_list(people, mark):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from audiences import actions

    vip, _ = actions.create_list_audience(name="VIPs", description="", upload=SimpleUploadedFile("v.csv", b"a\nb\n"), by=mark)
    south_hiphop_vips = actions.save_audience(
        Audience(name="x", rule={"all": [{"in_audience": vip.pk}, {"field": "top_genre", "op": "eq", "value": "hip-hop"}]}), by=mark)
    assert south_hiphop_vips.size == 1
    assert list(Customer.objects.in_snapshot(south_hiphop_vips).values_list("external_id", flat=True)) == ["a"]


def test_snapshots_are_refreshed_by_the_scheduled_task(people, mark):
    from audiences import actions
    from audiences.tasks import refresh_audiences
    from ml.models import Job

    audience = actions.save_audience(Audience(name="South", rule={"field": "region", "op": "eq", "value": "south"}), by=mark)
    assert audience.size == 2
    Customer.objects.create(external_id="d", region="south")
    assert Customer.objects.in_snapshot(audience).count() == 2  # the snapshot holds until refreshed
    refresh_audiences()
    audience.refresh_from_db()
    assert audience.size == 3 and Customer.objects.in_snapshot(audience).count() == 3
    assert Job.objects.get(kind="audiences").message == "1 audiences refreshed"


def test_insights_index_the_audience_against_the_base(people, mark):
    from audiences import actions, insights

    audience = actions.save_audience(Audience(name="Hip-hop", rule={"field": "top_genre", "op": "eq", "value": "hip-hop"}), by=mark)
    dims = {d["key"]: {r["label"]: r for r in d["rows"]} for d in insights.compare(Customer.objects.in_snapshot(audience))}
    # 2 members (a south, c north); the base is 2 south + 1 north
    south, north = dims["region"]["south"], dims["region"]["north"]
    assert (round(south["audience"]), round(south["base"]), south["index"]) == (50, 67, 75)
    assert (round(north["audience"]), round(north["base"]), north["index"]) == (50, 33, 150)
    assert dims["top_genre"]["hip-hop"]["index"] == 150


def test_city_tiers_read_in_their_own_order_not_by_size(people, mark):
    from audiences import actions, insights

    for n, tier in enumerate([3, 3, 3, 1, 2, 4, 4]):
        Customer.objects.create(external_id=f"tier-{n}", region="south", city_tier=tier)
    audience = actions.save_audience(Audience(name="South", rule={"field": "region", "op": "eq", "value": "south"}), by=mark)
    tiers = next(d for d in insights.compare(Customer.objects.in_snapshot(audience)) if d["key"] == "city_tier")
    assert [r["label"] for r in tiers["rows"]] == ["1", "2", "3", "4"]
    assert tiers["rows"][2]["audience"] == pytest.approx(100 * 3 / audience.size)  # tier 3: the largest, third
