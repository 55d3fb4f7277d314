"""Delivery lists: who a push or e-mail campaign messages, batches reserved once, caps and budgets honoured."""

import threading
from collections import Counter
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, connections
from django.utils import timezone

from accounts.models import ApiClient
from audiences.models import Audience, AudienceMember, Customer
from marketing import delivery_lists as lists
from marketing.decisions import decide
from marketing.models import (Ad, Campaign, CampaignSpend, Channel, DeliveryBatch, DeliveryPlan, FrequencyCap, Placement,
                              PlanRule, ServedAd)

NOW = timezone.now()
# Late in the day pacing allows the whole daily budget: budget tests must not depend on when they run.
EVENING = timezone.localtime().replace(hour=23, minute=30, second=0, microsecond=0)


@pytest.fixture
def push(db):
    channel = Channel.objects.create(name="Push", kind=Channel.Kind.PUSH, cost_model="send", unit_cost=Decimal("0.01"))
    placement = Placement.objects.create(slug="push", name="Push", channel=channel)
    upsell = Campaign.objects.create(name="Upsell", status=Campaign.Status.EXPLORING)
    other = Campaign.objects.create(name="Release", status=Campaign.Status.LIVE)
    ads = {}
    for name, campaign in [("family", upsell), ("student", upsell), ("duo", upsell), ("single", other)]:
        ads[name] = Ad.objects.create(campaign=campaign, name=name)
        ads[name].placements.add(placement)
    Customer.objects.bulk_create([Customer(external_id=f"c{i:04d}") for i in range(1000)])
    ids = list(Customer.objects.order_by("pk").values_list("pk", flat=True))
    fans, students = (Audience.objects.create(name=n, kind=Audience.Kind.LIST) for n in ("Fans", "Students"))
    AudienceMember.objects.bulk_create([AudienceMember(audience=fans, customer_id=pk) for pk in ids[:100]]
                                       + [AudienceMember(audience=students, customer_id=pk) for pk in ids[50:300]])
    return {"placement": placement, "upsell": upsell, "other": other, "fans": fans, "students": students, "ids": ids, **ads}


def fetch(world, key="monday", **kwargs):
    return list(lists.stream(world["upsell"], world["placement"], key, **kwargs))


def make_plan(world, rest, rules):
    plan = DeliveryPlan.objects.create(placement=world["placement"], rest=rest, epsilon=0)
    for i, (audience, mode, names) in enumerate(rules):
        rule = PlanRule.objects.create(plan=plan, position=i, audience=world[audience], mode=mode)
        rule.ads.set([world[n] for n in names])
    return plan


def test_the_plan_routes_each_customer_as_decisions_do_and_other_campaigns_keep_their_audience(push):
    make_plan(push, DeliveryPlan.Rest.MODEL, [("fans", "one", ["single"]), ("students", "one", ["student"])])
    rows = fetch(push, size=400)
    got = {r.customer: r.ad for r in rows}
    assert len(rows) == 900 and len(got) == 900  # the 100 fans belong to the other campaign's rule
    assert "c0000" not in got and got["c0100"] == push["student"].pk and got["c0299"] == push["student"].pk
    rest = Counter(ad for customer, ad in got.items() if int(customer[1:]) >= 300)
    assert set(rest) == {push["family"].pk, push["duo"].pk}  # everyone else: the remaining ads, explored uniformly
    assert all(300 < n < 400 for n in rest.values()), rest
    # The same customer asks the decision engine: the same routing.
    assert [a.name for a in decide(Customer.objects.get(external_id="c0100"), push["placement"])[1]] == ["student"]


def test_resuming_from_a_cursor_gives_the_same_rows_and_a_second_fetch_reserves_nothing(push):
    FrequencyCap.objects.create(level="service", max_count=1, window=FrequencyCap.Window.DAY)
    first = fetch(push, size=250, batches=1)
    assert len(first) == 250 and {r.cursor for r in first} == {push["ids"][249]} and first[0].batch == "monday:0"
    rest = fetch(push, after=first[0].cursor, size=250)
    whole = fetch(push, size=250)
    assert whole == first + rest and len(whole) == 1000
    lists.compact()
    assert ServedAd.objects.count() == 1000 and DeliveryBatch.objects.count() == 4
    assert CampaignSpend.objects.get().amount == Decimal("10.00")  # 1,000 sends at 0.01, once
    assert fetch(push, key="tuesday") == []  # the service cap of one a day: everyone already has theirs


def test_caps_skip_customers_a_decision_already_reached(push):
    FrequencyCap.objects.create(level="campaign", campaign=push["upsell"], max_count=1, window=FrequencyCap.Window.WEEK)
    FrequencyCap.objects.create(level="ad", ad=push["family"], max_count=1, window=FrequencyCap.Window.LIFETIME)
    FrequencyCap.objects.create(level="channel", channel=push["placement"].channel, min_gap_seconds=3600)
    first, second, third = (Customer.objects.get(external_id=f"c000{i}") for i in range(3))
    ServedAd.objects.create(customer=first, ad=push["duo"], campaign=push["upsell"], placement=push["placement"],
                            channel=push["placement"].channel, served_at=NOW - timedelta(days=6))
    ServedAd.objects.create(customer=second, ad=push["single"], campaign=push["other"], placement=push["placement"],
                            channel=push["placement"].channel, served_at=NOW - timedelta(minutes=30))
    ServedAd.objects.create(customer=third, ad=push["single"], campaign=push["other"], placement=push["placement"],
                            channel=push["placement"].channel, served_at=NOW - timedelta(minutes=61))
    make_plan(push, DeliveryPlan.Rest.PRIORITY, [])
    Ad.objects.filter(pk=push["family"].pk).update(priority=9)
    got = {r.customer: r.ad for r in fetch(push)}
    assert "c0000" not in got  # campaign cap: one a week, served six days ago
    assert "c0001" not in got  # channel gap: a push half an hour ago
    assert got["c0002"] == push["family"].pk  # the gap has passed
    assert len(got) == 998 and set(got.values()) == {push["family"].pk}  # by priority
    batch = DeliveryBatch.objects.get(key="monday")
    assert (batch.targeted, batch.rows) == (1000, 998)  # the plan picked everyone; caps left two out
    # The ad's lifetime cap now holds for everyone it reached.
    assert fetch(push, key="again") == []
    assert list(DeliveryBatch.objects.filter(key="again").values_list("targeted", "rows")) == [(1000, 0)]


def test_the_budget_limits_the_list_and_is_spent_once(push):
    Campaign.objects.filter(pk=push["upsell"].pk).update(total_budget=Decimal("2.00"))
    push["upsell"].refresh_from_db()
    rows = fetch(push, size=300)
    assert len(rows) == 200 and CampaignSpend.objects.get().amount == Decimal("2.00")
    assert fetch(push, key="more") == []


def test_the_days_budget_counts_what_decisions_spent_in_every_shard(push):
    Campaign.objects.filter(pk=push["upsell"].pk).update(daily_budget=Decimal("5.00"))
    push["upsell"].refresh_from_db()
    today = EVENING.date()
    for shard, amount in ((0, "1.00"), (3, "1.50"), (6, "1.00")):  # what decisions accrued today, by customer
        CampaignSpend.objects.create(campaign=push["upsell"], day=today, shard=shard, amount=Decimal(amount))
    rows = fetch(push, size=300, now=EVENING)
    assert len(rows) == 150  # 1.50 left at 0.01 a send
    assert sum(CampaignSpend.objects.filter(campaign=push["upsell"], day=today).values_list("amount", flat=True)) == Decimal("5.00")


def test_the_lists_budget_counts_what_ad_platforms_reported_too(push, settings):
    from marketing.models import ExternalSpend

    settings.BUDGET_CHECK_SECONDS = 60  # the decisions' cached figure must not stand in for the list's fresh one
    upsell = push["upsell"]
    Campaign.objects.filter(pk=upsell.pk).update(daily_budget=Decimal("5.00"))
    upsell.refresh_from_db()
    today = EVENING.date()
    CampaignSpend.objects.create(campaign=upsell, day=today, shard=2, amount=Decimal("1.00"))
    ExternalSpend.objects.create(source="ads-platform", day=today, campaign=upsell, scope=f"campaign:{upsell.pk}",
                                 amount=Decimal("2.50"))
    assert len(fetch(push, size=300, now=EVENING)) == 150  # 5.00 a day − 1.00 accrued − 2.50 reported = 1.50, at 0.01 a send
    # The total budget too: 1.00 + the list's 1.50 accrued, 2.50 + 0.50 reported, of 5.60, leave 0.10.
    Campaign.objects.filter(pk=upsell.pk).update(daily_budget=None, total_budget=Decimal("5.60"))
    upsell.refresh_from_db()
    ExternalSpend.objects.create(source="ads-platform", day=today - timedelta(days=1), campaign=upsell,
                                 scope=f"campaign:{upsell.pk}", amount=Decimal("0.50"))
    assert len(fetch(push, key="evening", size=300, now=EVENING)) == 10


def test_after_exploration_each_segment_gets_its_best_ad_and_the_fit_check_leaves_out_the_unfit(push):
    from audiences.models import Persona
    from marketing import rates
    from marketing.models import ResponseRate

    Persona.objects.bulk_create([Persona(customer_id=pk, segment="loyal" if i % 2 else "casual", as_of=NOW)
                                 for i, pk in enumerate(push["ids"])])
    Ad.objects.filter(campaign=push["upsell"]).update(explored_at=NOW)
    for ad, segment, served, responded in [("family", "loyal", 1000, 90), ("student", "casual", 1000, 60),
                                           ("duo", "loyal", 1000, 10), ("duo", "casual", 1000, 10)]:
        ResponseRate.objects.create(ad=push[ad], segment=segment, served=served, responded=responded, updated_at=NOW)
    rates.forget()
    make_plan(push, DeliveryPlan.Rest.MODEL, [])
    segment_of = dict(Persona.objects.values_list("customer__external_id", "segment"))
    by_segment = Counter((segment_of[r.customer], r.ad) for r in fetch(push))
    assert by_segment == {("loyal", push["family"].pk): 500, ("casual", push["student"].pk): 500}
    DeliveryPlan.objects.update(fit_threshold=0.06)
    rates.forget()
    got = fetch(push, key="fit")
    assert {segment_of[r.customer] for r in got} == {"loyal"}  # casual's best is predicted under 6 %


def test_a_cursor_that_is_not_a_batch_boundary_is_refused(push):
    fetch(push, size=100, batches=1)
    with pytest.raises(lists.ListError) as error:
        lists.check_cursor(push["upsell"], push["placement"], "monday", push["ids"][50])
    assert error.value.field == "after"
    lists.check_cursor(push["upsell"], push["placement"], "monday", push["ids"][99])


def key(*scopes, rate=None):
    client, token = ApiClient.issue(f"crm-{ApiClient.objects.count()}", list(scopes))
    if rate:
        ApiClient.objects.filter(pk=client.pk).update(requests_per_minute=rate)
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def url(world, **query):
    return f"/api/v1/campaigns/{world['upsell'].pk}/delivery-list?" + "&".join(f"{k}={v}" for k, v in query.items())


def test_the_api_streams_csv_and_ndjson_resumable_by_cursor(client, push):
    auth = key("delivery-lists:read")
    response = client.get(url(push, list="mon", size=400, batches=1), **auth)
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert lines[0] == "customer,ad,batch,cursor" and len(lines) == 401
    cursor = lines[1].split(",")[3]
    response = client.get(url(push, list="mon", after=cursor, format="ndjson"), **auth)
    import json
    rows = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert len(rows) == 600 and set(rows[0]) == {"customer", "ad", "batch", "cursor"}
    assert rows[0]["batch"] == f"mon:{cursor}" and rows[0]["customer"] == "c0400"
    again = client.get(url(push, list="mon", after=cursor, format="ndjson"), **auth)
    assert [json.loads(x) for x in b"".join(again.streaming_content).decode().splitlines()] == rows
    assert lists.compact() == (1000 if connection.vendor == "postgresql" else 0)
    assert ServedAd.objects.count() == 1000


AWKWARD = ["plain", "has,comma", 'say "hi"', "=SUM(A1)", "-5", "+44 20", "@me", "\tTab", "\rCR", "two\nlines",
           "crlf\r\nend", "Ünïcødé ♫", " lead space", "O'Brien", 'mix,"of"\nall', "back\\slash"]


def test_a_batchs_csv_and_ndjson_text_is_what_pythons_writers_make_of_its_rows(push):
    """On PostgreSQL the reserving statement writes the text; it must be the CSV Python's writer makes and valid JSON."""
    import csv
    import io
    import json

    from audiences.analytics import spreadsheet_safe

    Customer.objects.bulk_create([Customer(external_id=e) for e in AWKWARD])
    after = push["ids"][-1]
    done, text = lists.batch(push["upsell"], push["placement"], "odd", after, 100, fmt="csv")  # reserves
    assert done.rows == len(AWKWARD)
    replayed, rows = lists.batch(push["upsell"], push["placement"], "odd", after, 100, fmt="rows")
    assert replayed == done and [r.customer for r in rows] == AWKWARD
    assert text == lists._text(done, [(r.customer, r.ad) for r in rows], "csv")
    parsed = list(csv.reader(io.StringIO(text, newline="")))
    assert parsed == [[spreadsheet_safe(r.customer), str(r.ad), f"odd:{after}", str(done.last)] for r in rows]
    _, ndjson = lists.batch(push["upsell"], push["placement"], "odd", after, 100, fmt="ndjson")  # a replay, as text
    assert [json.loads(line) for line in ndjson.splitlines()] == [
        {"customer": r.customer, "ad": r.ad, "batch": f"odd:{after}", "cursor": done.last} for r in rows]
    lists.compact()
    assert ServedAd.objects.count() == ServedAd.objects.filter(decision=done.token).count() == len(AWKWARD)  # replays reserved nothing
    assert lists.batch(push["upsell"], push["placement"], "odd", after, 100, fmt="csv")[1] == text  # replayed from the rows


def test_a_whole_list_as_csv_has_one_header_and_every_batch_once(push):
    chunks = list(lists.stream(push["upsell"], push["placement"], "csv", size=300, fmt="csv"))
    assert chunks[0] == lists.CSV_HEADER and len(chunks) == 5  # the header, then one text per batch
    lines = "".join(chunks).splitlines()
    assert len(lines) == 1001 and [line.split(",")[0] for line in lines[1:]] == [f"c{i:04d}" for i in range(1000)]
    assert {line.split(",")[2] for line in lines[1:]} == {"csv:0", f"csv:{push['ids'][299]}", f"csv:{push['ids'][599]}",
                                                          f"csv:{push['ids'][899]}"}


def test_deleting_a_customer_or_an_ad_still_removes_their_served_rows(push):
    """The ledger has no database foreign keys (they cost a list half its time); Django cascades the deletes."""
    rows = fetch(push, size=1000)
    lists.compact()
    assert len(rows) == 1000 and ServedAd.objects.count() == 1000
    Customer.objects.get(external_id="c0000").delete()
    assert ServedAd.objects.count() == 999 and not ServedAd.objects.filter(customer_id=push["ids"][0]).exists()
    gone = push["family"]
    served = ServedAd.objects.filter(ad=gone).count()
    assert served > 200
    gone.delete()
    assert ServedAd.objects.count() == 999 - served and not ServedAd.objects.filter(ad_id=gone.pk).exists()


def test_the_api_names_bad_input_and_checks_scopes(client, push):
    assert client.get(url(push)).status_code == 401
    assert client.get(url(push), **key("decisions")).status_code == 403
    auth = key("delivery-lists:read")
    assert client.get(url(push, placement="email"), **auth).json() == {
        "placement": ["The campaign has no ads on 'email' (it has push)."]}
    assert "after" in client.get(url(push, after=5), **auth).json()
    assert "list" in client.get(url(push, list="no%20spaces"), **auth).json()
    assert "size" in client.get(url(push, size=0), **auth).json()
    assert client.get("/api/v1/campaigns/999999/delivery-list", **auth).status_code == 404


def test_each_client_has_its_own_rate_limit(client, push):
    from django.core.cache import cache

    cache.clear()  # counters of earlier tests' clients (whose ids the database may reuse)
    slow, other = key("delivery-lists:read", rate=2), key("delivery-lists:read")
    codes = [client.get(url(push, batches=1, size=1), **slow).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    assert client.get(url(push, batches=1, size=1), **other).status_code == 200


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("cap, decisions_each, compacting", [(1, 1, False), (2, 2, True)], ids=["arrays", "write-out"])
def test_a_list_and_concurrent_decisions_share_the_caps_exactly(cap, decisions_each, compacting):
    """On PostgreSQL: decisions for the list's customers race its batches; everyone ends with exactly the cap.

    "arrays": nothing is written out during the race, so a decision after the batch must count its arrays (one
    missed: two served). "write-out": the beat task's work races too, and each customer gets two decisions under a
    cap of two (a reservation counted twice: one served)."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite serialises every writer; the race needs PostgreSQL")
    channel = Channel.objects.create(name="Push", kind=Channel.Kind.PUSH)
    placement = Placement.objects.create(slug="push", name="Push", channel=channel)
    campaign = Campaign.objects.create(name="Upsell", status=Campaign.Status.LIVE)
    ad = Ad.objects.create(campaign=campaign, name="family")
    ad.placements.add(placement)
    FrequencyCap.objects.create(level="service", max_count=cap, window=FrequencyCap.Window.DAY)
    Customer.objects.bulk_create([Customer(external_id=f"r{i:04d}") for i in range(400)])
    customers = list(Customer.objects.order_by("pk"))
    errors, compacted = [], []
    listed = threading.Event()

    def guarded(work):
        def run(*args):
            try:
                work(*args)
            except Exception as exc:
                errors.append(exc)
            finally:
                connections.close_all()
        return run

    def decisions(part):
        for c in customers[part::4] * decisions_each:
            decide(c, placement)

    def listing():
        list(lists.stream(campaign, placement, "race", size=20))

    def write_out():  # every 0.1 s, so decisions meet batches in both states
        while not listed.wait(0.1):
            compacted.append(lists.compact())

    workers = [threading.Thread(target=guarded(decisions), args=(i,)) for i in range(4)]
    workers.append(threading.Thread(target=guarded(listing)))
    compactor = threading.Thread(target=guarded(write_out))
    for w in workers:
        w.start()
    if compacting:
        compactor.start()
    for w in workers:
        w.join()
    listed.set()
    if compacting:
        compactor.join()
        assert sum(compacted) > 0  # batches were written out while decisions ran
    assert not errors, errors[:3]
    listed_rows = lists.compact() + sum(compacted)
    per_customer = Counter(ServedAd.objects.values_list("customer_id", flat=True))
    assert len(per_customer) == 400 and set(per_customer.values()) == {cap}
    assert listed_rows > 0 and ServedAd.objects.filter(decision__in=DeliveryBatch.objects.values("token")).count() == listed_rows


def test_migration_0017_gives_earlier_batches_their_reserved_rows_as_picked(push):
    """Batches fetched before 0017 did not count whom the plan picked; at least their reserved rows were."""
    import importlib

    from django.apps import apps

    migration = importlib.import_module("marketing.migrations.0017_delivery_batch_targeted")
    fetch(push, size=300)
    DeliveryBatch.objects.update(targeted=0)  # as the column's default left them
    migration.picked_at_least_reserved(apps, None)
    assert sorted(DeliveryBatch.objects.values_list("targeted", "rows")) == [(100, 100), (300, 300), (300, 300), (300, 300)]


def test_a_batch_counts_toward_caps_from_its_commit_and_is_written_out_once(push, client_for, mark):
    """On PostgreSQL a batch's reservations wait in its arrays; caps, later lists and replays read them there."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite writes a batch's served rows at once")
    FrequencyCap.objects.create(level="service", max_count=1, window=FrequencyCap.Window.DAY)
    first = fetch(push, size=400)
    assert len(first) == 1000 and ServedAd.objects.count() == 0
    pending = DeliveryBatch.objects.order_by("after")
    assert [len(b.pending_customers) for b in pending] == [400, 400, 200]
    by_customer = {pk: r.ad for pk, r in zip(push["ids"], first)}
    assert sorted(zip(pending[0].pending_customers, pending[0].pending_ads)) == sorted(
        (pk, by_customer[pk]) for pk in push["ids"][:400])
    # Not written out yet, and already counted: by a decision, by another list of the campaign, by a replay.
    assert decide(Customer.objects.get(external_id="c0007"), push["placement"])[1] == []
    assert fetch(push, key="again") == []
    assert fetch(push) == first

    assert ServedAd.objects.count() == 0
    page = client_for(mark).get(f"/campaigns/{push['upsell'].pk}/")  # the campaign page counts them already
    assert sum(ad.served_count for ad in page.context["ads"]) == 1000 and page.context["served_14d"] == 1000
    [monday] = [lst for lst in page.context["lists"] if lst["key"] == "monday"]
    assert (monday["customers"], monday["waiting"], monday["stale"]) == (1000, 1000, False)
    assert "1,000 not in the ledger yet" in page.content.decode()
    DeliveryBatch.objects.filter(key="monday").update(created_at=timezone.now() - timedelta(minutes=5))
    assert "is the Celery worker with beat running?" in client_for(mark).get(f"/campaigns/{push['upsell'].pk}/").content.decode()

    assert lists.compact(batches=2) == 800 and lists.compact() == 200 and lists.compact() == 0
    assert not DeliveryBatch.objects.filter(pending_customers__isnull=False).exists()
    served = ServedAd.objects.order_by("customer_id")
    assert [(s.customer_id, s.ad_id) for s in served] == [(pk, r.ad) for pk, r in zip(push["ids"], first)]
    by_batch = {b.token: b for b in DeliveryBatch.objects.filter(key="monday")}
    assert all(s.decision in by_batch and s.served_at == by_batch[s.decision].created_at for s in served)
    assert {(s.campaign_id, s.placement_id, s.channel_id) for s in served} == {
        (push["upsell"].pk, push["placement"].pk, push["placement"].channel_id)}
    assert fetch(push) == first and fetch(push, key="again") == []  # the same from the rows
    page = client_for(mark).get(f"/campaigns/{push['upsell'].pk}/")
    assert sum(ad.served_count for ad in page.context["ads"]) == 1000 and page.context["served_14d"] == 1000
    assert "not in the ledger yet" not in page.content.decode()
    newcomer = Customer.objects.create(external_id="new")  # not on the list, so not capped: served
    assert decide(newcomer, push["placement"])[1] != []
    assert decide(Customer.objects.get(external_id="c0007"), push["placement"])[1] == []


def test_a_customer_or_an_ad_deleted_before_the_batch_is_written_out_leaves_no_row(push):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite writes a batch's served rows at once")
    rows = fetch(push, size=1000)
    Customer.objects.get(external_id="c0000").delete()
    gone = push["family"]
    served = sum(1 for r in rows if r.ad == gone.pk and r.customer != "c0000")
    gone.delete()
    from config.celery import app
    from marketing.tasks import compact_reservations

    assert any(e["task"] == "marketing.compact_reservations" for e in app.conf.beat_schedule.values())
    assert compact_reservations() == 999 - served and compact_reservations() == 0
    assert not ServedAd.objects.filter(customer_id=push["ids"][0]).exists() and not ServedAd.objects.filter(ad_id=gone.pk).exists()
