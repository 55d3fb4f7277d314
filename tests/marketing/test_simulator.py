"""The traffic simulator: listeners answer by a hidden truth, decisions and events flow in proportion, caps hold."""

import random
from collections import Counter, defaultdict
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import OperationalError
from django.db.models import Count

from audiences.models import Customer
from marketing import simulator
from marketing.models import Decision, Event, FrequencyCap, ServedAd
from marketing.simulator import Profile, Simulator, answer, truth

from .test_demo_campaigns import listeners, seeded  # noqa: F401 (the demo fixtures, seeded once per module)

YOUNG_FREE = Profile(segment="casual", age=19, region="south", subscriber=False, top_genre="hip-hop", hiphop=0.4)
LOYAL_PAYING = Profile(segment="loyal", age=41, region="north", subscriber=True, top_genre="rock")
DRAWS = 4000


def observed(ad_name: str, goal: str, profile: Profile, kind: str, seed: int = 1) -> float:
    rng = random.Random(seed)
    return sum(any(k == kind for k, _, _ in answer(ad_name, goal, profile, rng)) for _ in range(DRAWS)) / DRAWS


def true_rate(ad_name: str, goal: str, profile: Profile, kind: str) -> float:
    t = truth(ad_name, goal, profile)
    return t.click if kind == "click" else t.click * next((p for k, p, _ in t.then if k == kind), 0.0)


def se(p: float) -> float:
    return (p * (1 - p) / DRAWS) ** 0.5


# -- the hidden truth, without a database ----------------------------------------------------------------------


@pytest.mark.parametrize("profile, better, worse", [
    (YOUNG_FREE, "Student discount", "Family plan"),  # true 5.6 % against 0.04 %
    (LOYAL_PAYING, "Family plan", "Student discount"),  # true 5.5 % against 0 (they already pay)
    (Profile(segment="active", age=33, subscriber=True), "Duo for two", "Student discount"),  # 2.5 % against 0
])
def test_a_truly_better_offer_converts_its_segment_more_often(profile, better, worse):
    good, bad = observed(better, "conversion", profile, "conversion"), observed(worse, "conversion", profile, "conversion")
    # Each observed rate lies within 4 standard errors of its truth (a seeded draw, so this is a check
    # that answer() follows truth(), not luck) …
    for name, rate in ((better, good), (worse, bad)):
        expected = true_rate(name, "conversion", profile, "conversion")
        assert abs(rate - expected) <= 4 * se(expected) + 1e-9, (name, rate, expected)
    # … and the gap is at least 2 points: the true gaps are ≥ 2.5 points and the standard error of the
    # difference at 4,000 draws is ≤ 0.37 points, so 2 points is over a point of slack (> 3 SE).
    assert good - bad >= 0.02, (good, bad)


def test_k_pop_fans_play_the_single_from_its_banner_far_more_than_others():
    fan = Profile(segment="casual", age=19, kpop=0.5, top_genre="k-pop")
    fan_rate, other_rate = observed("Out now: Supernova Heart", "stream", fan, "play"), observed(
        "Out now: Supernova Heart", "stream", LOYAL_PAYING, "play")
    assert fan_rate > 3 * other_rate and fan_rate - other_rate > 0.05  # true 10.5 % against 1.5 %


def test_follow_ups_come_only_after_a_click_and_after_it_in_time():
    rng = random.Random(3)
    for _ in range(2000):
        done = answer("3 months for 0.99", "click", YOUNG_FREE, rng)
        kinds = [k for k, _, _ in done]
        assert kinds[0] == "impression" and len(set(kinds)) == len(kinds)
        if len(done) > 1:
            click_at = dict((k, t) for k, _, t in done)["click"]
            assert all(t > click_at for k, _, t in done if k not in ("impression", "click"))
        else:
            assert kinds == ["impression"]
        assert all(v > 0 for k, v, _ in done if k == "conversion")


def test_an_unknown_ad_answers_at_a_plain_rate_for_its_goal():
    assert truth("An operator's own ad", "stream", YOUNG_FREE).then[0][0] == "play"
    assert truth("An operator's own ad", "click", YOUNG_FREE).then == ()


# -- against the demo -----------------------------------------------------------------------------------------------


def run(n: int, seed: int = 1) -> simulator.Tally:
    return Simulator(seed=seed, log=lambda line: None).run(once=n)


@pytest.mark.usefixtures("seeded")
def test_decisions_and_events_flow_in_proportion_and_no_cap_is_exceeded():
    # Tighter than the demo's 12 a day so the service cap bites in 200 decisions of 600 listeners.
    FrequencyCap.objects.filter(level=FrequencyCap.Level.SERVICE).update(max_count=2)
    n = 200
    tally = run(n)
    assert tally.decisions == Decision.objects.count() == n and tally.busy == tally.errors == 0

    # Placements are asked in the simulator's mix (binomial, ±3.5 standard errors).
    asked = Counter(Decision.objects.values_list("placement__slug", flat=True))
    for slug, share in simulator.PLACEMENT_WEIGHTS.items():
        assert abs(asked[slug] - n * share) <= 3.5 * (n * share * (1 - share)) ** 0.5, (slug, asked)

    # Every served ad got exactly one impression; follow-ups only after a click on the same ad, except what
    # listeners do anyway (organic, see simulator.baseline), which needs no click but comes once too.
    events = list(Event.objects.values_list("decision_id", "ad_id", "type", "value", "source", "key"))
    assert {e[4] for e in events} == {"simulator"} and len(events) == tally.events
    by_kind = Counter(e[2] for e in events)
    assert by_kind["impression"] == ServedAd.objects.count() == tally.served
    kinds, organic = defaultdict(set), defaultdict(set)
    for decision, ad, kind, value, _, key in events:
        assert kind not in kinds[(decision, ad)] | organic[(decision, ad)]  # once each
        (organic if ":organic:" in key else kinds)[(decision, ad)].add(kind)
        if kind in ("conversion", "purchase"):
            assert value > 0
    assert set(ServedAd.objects.values_list("decision", "ad_id")) == {k for k, v in kinds.items() if "impression" in v}
    assert all("click" in v for v in kinds.values() if v - {"impression", "click"})
    assert set(organic) <= set(kinds) and all(v <= {"conversion", "play"} for v in organic.values())
    assert 0 < by_kind["click"] < 0.25 * by_kind["impression"]  # the demo's true click rates lie between 1 % and 25 %

    # In-app placements see active listeners; sends go to anyone, the lapsed included.
    lapsed = set(Customer.objects.filter(persona__activities_30d=0).values_list("pk", flat=True))
    visitors = defaultdict(list)
    for slug, customer in Decision.objects.values_list("placement__slug", "customer_id"):
        visitors[slug].append(customer in lapsed)
    in_app = visitors["home-banner"] + visitors["player-preroll"]
    sent = visitors["push"] + visitors["email"]
    assert sum(in_app) / len(in_app) < sum(sent) / len(sent) / 3

    assert_caps_hold()
    service = FrequencyCap.objects.get(level=FrequencyCap.Level.SERVICE)
    most = ServedAd.objects.values("customer_id").annotate(n=Count("id")).order_by("-n").first()["n"]
    assert most == service.max_count  # the cap was reached, and held


def assert_caps_hold():
    """Count what each customer was served against every cap (the run lasts seconds: every window holds it all)."""
    served = list(ServedAd.objects.order_by("served_at").values("customer_id", "ad_id", "campaign_id", "placement_id",
                                                                 "channel_id", "served_at"))
    for cap in FrequencyCap.objects.all():
        per_customer = defaultdict(list)
        for row in served:
            if cap.level == FrequencyCap.Level.SERVICE or row[f"{cap.level}_id"] == getattr(cap, f"{cap.level}_id"):
                per_customer[row["customer_id"]].append(row["served_at"])
        for customer, times in per_customer.items():
            if cap.max_count:
                assert len(times) <= cap.max_count, (str(cap), customer, len(times))
            if cap.min_gap_seconds:
                gaps = [b - a for a, b in zip(times, times[1:])]
                assert all(g >= timedelta(seconds=cap.min_gap_seconds) for g in gaps), (str(cap), customer)


@pytest.mark.usefixtures("seeded")
def test_running_again_with_the_same_seed_adds_new_decisions_and_duplicates_no_event():
    first = run(20, seed=7)
    keys = set(Event.objects.values_list("key", flat=True))
    second = run(20, seed=7)
    assert Decision.objects.count() == 40
    assert Event.objects.count() == first.events + second.events
    assert keys < set(Event.objects.values_list("key", flat=True))  # the first run's events are all still there, once
    repeated = Event.objects.values("decision_id", "ad_id", "type").annotate(n=Count("id")).filter(n__gt=1)
    assert not repeated.exists()


@pytest.mark.usefixtures("seeded")
def test_a_busy_database_is_waited_out_and_a_resent_batch_adds_nothing(monkeypatch):
    """SQLite's single writer: a decision refused and a batch whose answer was lost are both retried."""
    monkeypatch.setattr(simulator.time, "sleep", lambda seconds: None)
    real_decide, real_record = simulator.decide, simulator.record_events
    refusals = {"decide": 2, "record": 1}

    def busy_decide(*args, **kwargs):
        if refusals["decide"]:
            refusals["decide"] -= 1
            raise OperationalError("database is locked")
        return real_decide(*args, **kwargs)

    def lost_answer(items, *, source):
        body = real_record(items, source=source)  # kept, but the sender never hears so and sends them again
        if refusals["record"]:
            refusals["record"] -= 1
            raise OperationalError("database is locked")
        return body

    monkeypatch.setattr(simulator, "decide", busy_decide)
    monkeypatch.setattr(simulator, "record_events", lost_answer)
    tally = run(20, seed=3)
    assert tally.decisions == Decision.objects.count() == 20
    assert tally.busy == 3
    assert Event.objects.filter(type="impression").count() == ServedAd.objects.count()
    assert not Event.objects.values("key").annotate(n=Count("id")).filter(n__gt=1).exists()


@pytest.mark.usefixtures("seeded")
def test_the_command_runs_a_number_of_decisions_and_says_what_it_did(capsys):
    call_command("simulate_traffic", "--once", "10", "--seed", "2")
    out = capsys.readouterr().out
    assert "simulator: 10 decisions" in out and "reasons" in out
    assert Decision.objects.count() == 10


@pytest.mark.usefixtures("listeners", "db")
def test_the_command_refuses_to_run_without_placements():
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="seed_campaigns"):
        call_command("simulate_traffic", "--once", "5")
