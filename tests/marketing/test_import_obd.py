"""Importing the Open Bandit Dataset: a slice of each log becomes decisions and click events, once."""

from io import StringIO

import pandas as pd
import pytest
from django.core.management import call_command

from audiences.models import Customer
from marketing import obd
from marketing.models import Ad, Campaign, Channel, Decision, Event, Placement, ServedAd

# Enough rows that both slices hold clicks (random: 4, BTS: 7 in the first 1,500).
ROWS = 1500

pytestmark = pytest.mark.skipif(not (obd.DEFAULT_DATA_DIR / "random" / "all" / "all.csv").is_file(),
                                reason="the Open Bandit Dataset sample is not in ../shared/data")


def csv_slice(policy: str) -> pd.DataFrame:
    return obd.read_log(obd.DEFAULT_DATA_DIR, "all", policy, ROWS)


def run_import() -> dict[str, str]:
    out = StringIO()
    call_command("import_obd", "--limit", str(ROWS), stdout=out)
    return dict(line.split(": ", 1) for line in out.getvalue().splitlines())


@pytest.fixture(scope="module")
def committed(django_db_setup, django_db_blocker):
    """The slice imported once for the module (each test's own changes roll back), removed afterwards."""
    with django_db_blocker.unblock():
        yield run_import()
        Event.objects.filter(source=obd.EVENT_SOURCE).delete()
        Placement.objects.filter(slug__startswith="obd-pos-").delete()  # and their decisions
        Campaign.objects.filter(name__startswith="OBD ").delete()
        Channel.objects.filter(name=obd.CHANNEL_NAME).delete()
        Customer.objects.filter(external_id__startswith="obd-").delete()


@pytest.fixture
def imported(committed, db) -> dict[str, str]:
    return committed


def test_it_creates_one_ended_campaign_per_policy_with_an_ad_per_item(imported):
    for name in ("OBD random", "OBD BTS"):
        campaign = Campaign.objects.get(name=name)
        assert campaign.status == Campaign.Status.ENDED
        assert campaign.ads.count() == 80
    ad = Ad.objects.get(campaign__name="OBD BTS", name="item 07")
    assert ad.payload["obd_item_id"] == 7
    assert {"item_feature_0", "item_feature_1", "item_feature_2", "item_feature_3"} <= set(ad.payload)
    assert sorted(ad.placements.values_list("slug", flat=True)) == ["obd-pos-1", "obd-pos-2", "obd-pos-3"]
    assert not Ad.objects.servable(Placement.objects.get(slug="obd-pos-1"), Decision.objects.first().created_at).exists()


@pytest.mark.parametrize("policy", ["random", "bts"])
def test_each_row_of_the_slice_becomes_a_decision_with_its_logged_propensity(imported, policy):
    log = csv_slice(policy)
    decisions = {d.context["obd"]["row"]: d for d in obd.logged_decisions("all", policy).select_related("placement")}
    assert int(imported[f"{policy}_decisions"]) == len(decisions) == ROWS
    ads = dict(Ad.objects.filter(campaign__name=obd.campaign_name("all", policy)).values_list("pk", "payload__obd_item_id"))
    for row, logged in log.iterrows():
        decision = decisions[row]
        assert decision.propensity == logged["propensity_score"]
        assert decision.placement.slug == f"obd-pos-{logged['position']}"
        assert [ads[pk] for pk in decision.chosen] == [logged["item_id"]]
        assert decision.created_at == logged["timestamp"]
        assert decision.context["user_features"] == [logged[f"user_feature_{i}"] for i in range(4)]
        assert len(decision.eligible) == 80
    expected = (Decision.Reason.EXPLORE, "") if policy == "random" else (Decision.Reason.MODEL, "obd-bts")
    assert {(d.reason, d.model_version) for d in decisions.values()} == {expected}


@pytest.mark.parametrize("policy", ["random", "bts"])
def test_clicks_become_events_of_their_decision_and_the_click_rate_matches_the_csv(imported, policy):
    log = csv_slice(policy)
    clicked = set(log.index[log["click"] == 1])
    events = Event.objects.filter(source="obd", campaign__name=obd.campaign_name("all", policy)).select_related("decision")
    assert clicked  # the slice is long enough to hold clicks
    assert {e.decision.context["obd"]["row"] for e in events} == clicked
    assert all(e.type == Event.Type.CLICK and e.ad_id == e.decision.chosen[0] and e.occurred_at == e.decision.created_at
               and e.customer_id == e.decision.customer_id for e in events)
    assert int(imported[f"{policy}_events"]) == len(clicked)
    assert float(imported[f"{policy}_click_rate"]) == pytest.approx(log["click"].mean(), abs=5e-6)


def test_one_customer_stands_for_each_user_context(imported):
    contexts = pd.concat([csv_slice(p) for p in ("random", "bts")])[obd.USER_FEATURES].drop_duplicates()
    assert Customer.objects.filter(external_id__startswith="obd-").count() == len(contexts)


def test_historic_impressions_count_toward_no_cap(imported):
    assert not ServedAd.objects.exists()


def test_running_it_again_creates_nothing(imported):
    counts = (Decision.objects.count(), Event.objects.count(), Customer.objects.count(), Ad.objects.count(),
              Campaign.objects.count(), Placement.objects.count())
    again = run_import()
    assert again["random_new_decisions"] == again["bts_new_decisions"] == "0"
    assert again["random_new_events"] == again["bts_new_events"] == "0"
    assert (Decision.objects.count(), Event.objects.count(), Customer.objects.count(), Ad.objects.count(),
            Campaign.objects.count(), Placement.objects.count()) == counts


def test_a_longer_limit_adds_only_the_new_rows(imported):
    out = StringIO()
    call_command("import_obd", "--limit", str(ROWS + 100), "--policies", "bts", stdout=out)
    lines = dict(line.split(": ", 1) for line in out.getvalue().splitlines())
    assert lines["bts_new_decisions"] == "100"
    assert obd.logged_decisions("all", "random").count() == ROWS
