"""A campaign's model: learnt from its exploration, gated off-policy, served by the decision engine, and the loop in a worker."""

import random
from collections import Counter
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from audiences.models import Customer, Persona, PersonaSnapshot
from audiences.personas import record_snapshots
from marketing import learning, rates
from marketing.actions import queue_model_training
from marketing.decisions import decide
from marketing.models import Ad, Campaign, Channel, Decision, DeliveryPlan, Event, Placement
from ml import automodel, serving
from ml.models import Job, ModelVersion
from tests.conftest import wait_for

NOW = timezone.now().replace(microsecond=0)
START = NOW - timedelta(days=1)
# The hidden truth: the student offer speaks to casual listeners, the family plan to loyal ones.
TRUTH = {("casual", "student"): 0.40, ("casual", "family"): 0.05, ("loyal", "student"): 0.05, ("loyal", "family"): 0.40}


@pytest.fixture
def world(db):
    rates.forget()
    serving.forget()
    channel = Channel.objects.create(name="Push", kind=Channel.Kind.PUSH)
    push = Placement.objects.create(slug="push", name="Push", channel=channel)
    campaign = Campaign.objects.create(name="Upsell", status=Campaign.Status.EXPLORING, goal=Campaign.Goal.CLICK,
                                       explore_impressions=400, explore_days=3, attribution_minutes=10)
    ads = {}
    for name in ("student", "family"):
        ads[name] = Ad.objects.create(campaign=campaign, name=name)
        ads[name].placements.add(push)
    DeliveryPlan.objects.create(placement=push, rest=DeliveryPlan.Rest.MODEL, epsilon=0.1)
    people = []
    for i in range(200):
        made = Customer.objects.create(external_id=f"c{i}", birth_year=1980 + i % 25, region="north" if i % 3 else "south")
        Persona.objects.create(customer=made, segment="loyal" if i % 2 else "casual", plays_7d=i % 17, as_of=START)
        people.append(made)
    record_snapshots([c.pk for c in people], START - timedelta(hours=1))
    yield {"push": push, "campaign": campaign, "people": people, **ads}
    rates.forget()
    serving.forget()


def traffic(world, n: int, *, start, seed: int = 0) -> list[Decision]:
    """n decisions on the push placement, 20 s apart; customers click as TRUTH says, a minute later."""
    rng = random.Random(seed)
    made = []
    for i in range(n):
        person = Customer.objects.select_related("persona").get(pk=rng.choice(world["people"]).pk)
        at = start + timedelta(seconds=20 * i)
        decision, ads = decide(person, world["push"], now=at, rng=random.Random(seed * 100_000 + i))
        made.append(decision)
        if ads and rng.random() < TRUTH[(person.persona.segment, ads[0].name)]:
            Event.objects.create(source="t", key=f"{seed}-{i}", type="click", customer=person, decision=decision, ad=ads[0],
                                 campaign=ads[0].campaign, occurred_at=at + timedelta(minutes=1))
    return made


def test_a_model_learnt_from_exploration_passes_the_gate_and_then_ranks_the_ads(world):
    explored = traffic(world, 1500, start=START)
    assert {d.reason for d in explored} == {"explore"}
    result = learning.build_model(world["campaign"], now=NOW)
    version = ModelVersion.objects.get(pk=result["version"])
    assert result["promoted"] and version.status == ModelVersion.Status.CHAMPION
    assert version.key == f"campaign:{world['campaign'].pk}" and version.campaign_id == world["campaign"].pk
    assert version.metrics["auc"] > 0.7 and set(version.metrics["candidates"]) == set(automodel.CANDIDATES)
    gate = version.metrics["gate"]
    assert gate["passed"] and gate["incumbent"] == "random (no model yet)"
    # Serving at random earns about (0.40 + 0.05) / 2; the learnt policy (ε = 0.1) about 0.9 × 0.40 + 0.1 × 0.225.
    assert gate["estimates"]["incumbent"]["dr"]["low"] < 0.225 < gate["estimates"]["incumbent"]["dr"]["high"]
    assert gate["estimates"]["candidate"]["dr"]["value"] > 0.3
    assert version.trained_on["train_rows"] + version.trained_on["validation_rows"] == 1500
    assert version.report["criteria"] and version.report["roc"] and version.features
    assert "ad × segment" in [f["name"] for f in version.features][:4]

    rates.refresh(NOW)  # the minute's refresh: the exploration ends and the bandit learns how sure each ad's numbers are
    rates.forget()
    served = traffic(world, 400, start=NOW + timedelta(minutes=1), seed=9)
    ranked = [d for d in served if d.reason == "model"]
    assert {d.model_version for d in ranked} == {f"campaign:{world['campaign'].pk} v1"}
    right = sum(1 for d in ranked if Ad.objects.get(pk=d.chosen[0]).name == (
        "student" if Persona.objects.get(customer_id=d.customer_id).segment == "casual" else "family"))
    assert right / len(ranked) > 0.9
    assert all(0 < d.propensity <= 1 for d in served)


def test_a_candidate_not_shown_better_than_the_champion_stays_a_candidate(world):
    traffic(world, 1500, start=START)
    first = learning.build_model(world["campaign"], now=NOW)
    again = learning.build_model(world["campaign"], now=NOW)  # the same logs: no better than the champion it copies
    assert first["promoted"] and not again["promoted"]
    candidate = ModelVersion.objects.get(pk=again["version"])
    assert candidate.status == ModelVersion.Status.CANDIDATE and candidate.parent_id == first["version"]
    assert candidate.metrics["gate"]["incumbent"] == "v1" and "Not shown better" in candidate.metrics["gate"]["reason"]
    assert ModelVersion.objects.champions().get().pk == first["version"]


def test_training_uses_the_persona_as_it_was_at_each_decision(world):
    someone = world["people"][0]  # casual until a snapshot an hour after the decision says loyal
    decision, _ = decide(Customer.objects.select_related("persona").get(pk=someone.pk), world["push"], now=START)
    PersonaSnapshot.objects.create(customer=someone, valid_from=START + timedelta(hours=1),
                                   features={**PersonaSnapshot.objects.get(customer=someone).features, "segment": "loyal"})
    decisions, outcomes, snapshots, ads = learning._logs(world["campaign"], NOW)
    rows = automodel.assemble(decisions, outcomes, snapshots, ads, window_seconds=600, now=NOW)
    assert set(rows.loc[rows["decision_id"] == str(decision.pk), "segment"]) == {"casual"}


def test_too_few_decisions_leave_the_job_succeeded_with_the_reason_and_no_model(world, django_capture_on_commit_callbacks):
    traffic(world, 50, start=START)
    with django_capture_on_commit_callbacks(execute=True):
        job = queue_model_training(world["campaign"], by=None)
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED and "Not trained yet, it tries again by itself: 50 served decisions" in job.message
    assert not ModelVersion.objects.exists()


def test_train_now_queues_one_training_at_a_time(client, world, mark):
    client.force_login(mark)
    url = reverse("campaigns:train", args=[world["campaign"].pk])
    client.post(url)
    client.post(url)
    job = Job.objects.get(kind="campaign_model")  # the second click found the first still queued
    assert Campaign.objects.get().model_job_id == job.pk
    page = client.get(reverse("campaigns:detail", args=[world["campaign"].pk]))
    assert b"Latest training" in page.content and b"hx-trigger=\"every 2s\"" in page.content
    part = client.get(reverse("campaigns:detail", args=[world["campaign"].pk]) + "?part=model", HTTP_HX_REQUEST="true")
    assert b'id="model-card"' in part.content and b"<html" not in part.content


@pytest.mark.django_db(transaction=True)
def test_the_whole_loop_explore_train_gate_champion_serve_runs_in_a_worker(world, celery_worker_process):
    traffic(world, 1500, start=START)  # 750 impressions per ad: more than the 400 of exploration
    rates.refresh(NOW)  # the minute's refresh ends the exploration, which queues the campaign's training
    assert Ad.objects.filter(explored_at__isnull=True).count() == 0
    job = Campaign.objects.get().model_job
    assert job is not None
    wait_for(lambda: Job.objects.get(pk=job.pk).is_finished, timeout=180)
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, job.error
    champion = ModelVersion.objects.champions().get(key=learning.model_key(world["campaign"].pk))
    assert job.result["promoted"] and job.result["version"] == champion.pk
    serving.forget()
    served = traffic(world, 100, start=NOW + timedelta(minutes=1), seed=4)
    assert f"campaign:{world['campaign'].pk} v1" in {d.model_version for d in served}


def test_between_retrains_an_online_correction_follows_a_drift_and_decisions_use_it(world):
    traffic(world, 1500, start=START)
    first = learning.build_model(world["campaign"], now=NOW)
    assert first["promoted"]
    assert learning.update_online(world["campaign"], now=NOW)["events"] == 0  # nothing new has matured yet
    online = ModelVersion.objects.get(key=learning.online_key(world["campaign"].pk))
    assert online.status == ModelVersion.Status.CHAMPION and online.parent_id == first["version"] and online.kind == "ftrl"
    # The drift: the family plan stops working for loyal listeners.
    TRUTH[("loyal", "family")] = 0.01
    try:
        rates.refresh(NOW)
        later = NOW + timedelta(hours=1)
        drifted = traffic(world, 1200, start=later, seed=5)
        done = learning.update_online(world["campaign"], now=later + timedelta(hours=8))
    finally:
        TRUTH[("loyal", "family")] = 0.40
    online.refresh_from_db()
    matured = sum(1 for d in drifted if d.chosen)
    assert done["events"] == matured and online.trained_on["events"] == matured and online.revision == 1
    loyal = Customer.objects.select_related("persona").get(pk=world["people"][1].pk)
    family = Ad.objects.select_related("campaign", "promoted_item").get(name="family")
    serving.forget()
    scores, version = learning.scores([family], loyal, later, "loyal")
    assert version == f"campaign:{world['campaign'].pk} v1+online"
    batch = serving.champion(learning.model_key(world["campaign"].pk)).predict(
        [automodel.features(learning.snapshot_now(loyal), learning.ad_features(family), later)])[0]
    assert batch > 0.1 and scores[family.pk] < batch / 2, (batch, scores)  # the batch model still believes in it
    again = learning.update_online(world["campaign"], now=later + timedelta(hours=8))
    assert again["events"] == 0  # the cursor moved: nothing is learnt twice


def test_a_challenger_shares_the_traffic_by_thompson_sampling_and_propensities_mix_both_versions(world, settings):
    traffic(world, 1500, start=START)
    first = learning.build_model(world["campaign"], now=NOW)
    second = learning.build_model(world["campaign"], now=NOW)  # not shown better: a challenger
    assert first["promoted"] and not second["promoted"]
    rates.refresh(NOW)
    rates.forget()
    serving.forget()
    key = learning.model_key(world["campaign"].pk)
    later = NOW + timedelta(minutes=30)
    served = traffic(world, 300, start=later, seed=2)
    labels = Counter(d.model_version for d in served if d.reason == "model")
    assert set(labels) == {f"{key} v1", f"{key} v2"}
    assert 0.3 < labels[f"{key} v2"] / sum(labels.values()) < 0.7  # no evidence yet either way: an even split
    # The propensity of a model decision mixes both versions' allocations with their shares.
    sample = next(d for d in served if d.reason == "model")
    person = Customer.objects.select_related("persona").get(pk=sample.customer_id)
    variants = learning.variants(list(Ad.objects.select_related("campaign", "promoted_item")), person, sample.created_at, "")
    assert [round(v.share, 6) for v in variants] == [0.5, 0.5]

    # The challenger converts far better since it came: Thompson moves traffic to it, up to the cap.
    ModelVersion.objects.filter(pk=second["version"]).update(metrics={"traffic": {"served": 400, "responded": 160}})
    ModelVersion.objects.filter(pk=first["version"]).update(
        metrics={**ModelVersion.objects.get(pk=first["version"]).metrics, "traffic": {"served": 400, "responded": 40}})
    serving.forget()
    assert learning.variants(list(Ad.objects.select_related("campaign", "promoted_item")), person, later, "")[1].share == 0.5
    # … and away from it when it is worse, never under the floor.
    ModelVersion.objects.filter(pk=second["version"]).update(metrics={"traffic": {"served": 400, "responded": 4}})
    serving.forget()
    share = learning.variants(list(Ad.objects.select_related("campaign", "promoted_item")), person, later, "")[1].share
    assert share == pytest.approx(settings.CHALLENGER_FLOOR)


def test_the_minute_refresh_counts_each_versions_answered_decisions(world):
    traffic(world, 1500, start=START)
    first = learning.build_model(world["campaign"], now=NOW)
    second = learning.build_model(world["campaign"], now=NOW)
    rates.refresh(NOW)
    serving.forget()
    later = NOW + timedelta(minutes=30)
    served = traffic(world, 300, start=later, seed=3)
    assert learning.record_traffic(later + timedelta(hours=3)) == 1
    key = learning.model_key(world["campaign"].pk)
    answered = set(Event.objects.filter(decision__in=served).values_list("decision_id", flat=True))
    for version in (first, second):
        mine = [d for d in served if d.reason == "model" and d.model_version == f"{key} v{ModelVersion.objects.get(pk=version['version']).version}"]
        counted = ModelVersion.objects.get(pk=version["version"]).metrics["traffic"]
        assert counted["served"] == len(mine) > 0
        assert counted["responded"] == sum(1 for d in mine if d.pk in answered)


def test_a_campaign_without_a_champion_retrains_by_itself_backing_off_as_candidates_are_refused(world, django_capture_on_commit_callbacks):
    Ad.objects.update(explored_at=START)

    def tick(at):
        with django_capture_on_commit_callbacks(execute=True):
            return rates.train_awaiting(at)

    assert tick(NOW) == 1  # nothing learnt yet: the job finds no data and says so
    Job.objects.update(finished_at=NOW)  # the jobs run now, in real time; the test's clock is NOW
    assert tick(NOW + timedelta(minutes=5)) == 0
    assert tick(NOW + timedelta(minutes=11)) == 1
    traffic(world, 1500, start=START)
    learning.build_model(world["campaign"], now=NOW)  # v1 is the champion: no more retries until the schedule
    assert ModelVersion.objects.champions().exists()
    assert tick(NOW + timedelta(hours=2)) == 0
    ModelVersion.objects.update(status=ModelVersion.Status.CANDIDATE)  # as if the gate had refused it
    Job.objects.update(finished_at=NOW + timedelta(hours=2))
    assert tick(NOW + timedelta(hours=2, minutes=15)) == 0  # one refused candidate: wait 20 minutes
    assert tick(NOW + timedelta(hours=2, minutes=21)) == 1
