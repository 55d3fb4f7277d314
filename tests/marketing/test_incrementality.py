"""The uplift model of a campaign: treated vs its control group, point-in-time features, the best learner by Qini."""

import random
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from audiences.models import Customer, Persona
from audiences.personas import record_snapshots
from marketing import control, incrementality
from marketing.decisions import decide
from marketing.models import Ad, Campaign, Channel, Decision, DeliveryPlan, Event, Placement
from ml import automodel, registry, serving
from ml.models import Job, ModelVersion

NOW = timezone.now().replace(microsecond=0)
START = NOW - timedelta(days=1)


@pytest.fixture
def world(db):
    channel = Channel.objects.create(name="Push", kind=Channel.Kind.PUSH)
    push = Placement.objects.create(slug="push", name="Push", channel=channel)
    campaign = Campaign.objects.create(name="Upsell", status=Campaign.Status.LIVE, goal=Campaign.Goal.CLICK,
                                       attribution_minutes=10, control_share=0.3)
    ad = Ad.objects.create(campaign=campaign, name="offer", explored_at=START)
    ad.placements.add(push)
    DeliveryPlan.objects.create(placement=push, rest=DeliveryPlan.Rest.PRIORITY)
    people = []
    for i in range(600):
        made = Customer.objects.create(external_id=f"c{i}", birth_year=1970 + i % 40)
        Persona.objects.create(customer=made, segment="loyal" if i % 2 else "casual", as_of=START)
        people.append(made)
    record_snapshots([c.pk for c in people], START - timedelta(hours=1))
    return {"push": push, "campaign": campaign, "ad": ad, "people": people}


def run(world, n: int, seed: int = 0):
    """Decisions over a day; everyone clicks at 5 % organically, loyal listeners who saw the ad at 35 %."""
    rng = random.Random(seed)
    for i in range(n):
        person = Customer.objects.select_related("persona").get(pk=rng.choice(world["people"]).pk)
        at = START + timedelta(seconds=40 * i)
        decision, ads = decide(person, world["push"], now=at, rng=random.Random(i))
        rate = 0.35 if ads and person.persona.segment == "loyal" else 0.05
        if rng.random() < rate:
            Event.objects.create(source="t", key=f"{seed}-{i}", type="click", customer=person, decision=decision,
                                 ad=ads[0] if ads else None, campaign=world["campaign"], occurred_at=at + timedelta(minutes=1))


def test_the_uplift_model_finds_whom_the_campaign_persuades(world):
    run(world, 2000)
    assert Decision.objects.filter(reason="control").count() > 300
    result = incrementality.build_uplift_model(world["campaign"], now=NOW)
    version = ModelVersion.objects.get(pk=result["version"])
    assert version.key == f"uplift:campaign:{world['campaign'].pk}" and version.status == ModelVersion.Status.CHAMPION
    assert set(version.metrics["candidates"]) == {"s_learner", "t_learner", "x_learner", "class_transformation"}
    assert version.metrics["qini"] > 0.1 and version.metrics["learner"] == result["learner"]
    assert 0.08 < version.metrics["observed_uplift"] < 0.25  # half the listeners gain 30 points: about 15 on average
    assert version.report["uplift"]["qini_curve"][0] == [0.0, 0.0]
    rows = incrementality.logs(world["campaign"], NOW)
    loaded = serving.load(version.kind, registry.artefact_path(version))
    assert isinstance(loaded, incrementality.UpliftScorer)
    predicted = loaded.predict(rows)
    loyal = rows["segment"].to_numpy() == "loyal"
    assert predicted[loyal].mean() > predicted[~loyal].mean() + 0.15


def test_control_decisions_and_treated_ones_are_told_apart_with_their_outcomes(world):
    run(world, 300)
    rows = incrementality.logs(world["campaign"], NOW)
    held = {c.pk for c in world["people"] if control.held_out(c.pk, 0.3, world["campaign"].control_salt)}
    assert set(rows.loc[rows["t"] == 0, "customer_id"]) <= held
    assert not set(rows.loc[rows["t"] == 1, "customer_id"]) & held
    clicked = set(Event.objects.values_list("decision_id", flat=True))
    assert {d for d in rows.loc[rows["responded"] == 1, "decision_id"]} == {str(d) for d in clicked}


def test_too_few_control_decisions_say_so(world, django_capture_on_commit_callbacks, client, mark):
    Campaign.objects.update(control_share=0.01)
    run(world, 200)
    client.force_login(mark)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("campaigns:train_uplift", args=[world["campaign"].pk]))
    job = Job.objects.get(kind="uplift_model")
    assert job.status == "succeeded" and "control decisions with a known outcome" in job.message
    with pytest.raises(automodel.NotEnoughData):
        incrementality.build_uplift_model(world["campaign"], now=NOW)
    page = client.get(reverse("campaigns:detail", args=[world["campaign"].pk]))
    assert b"No uplift model yet" in page.content


def test_the_model_page_shows_the_learners_by_qini_and_the_uplift_curves(world, client, ann):
    run(world, 1200)
    result = incrementality.build_uplift_model(world["campaign"], now=NOW)
    client.force_login(ann)
    page = client.get(reverse("models:detail", args=[result["version"]]))
    assert page.status_code == 200
    assert page.context["candidate_columns"][0] == ("qini", "Qini coefficient")
    rows = {c["kind"]: c for c in page.context["candidates"]}
    assert set(rows) == {"s_learner", "t_learner", "x_learner", "class_transformation"} and rows[result["learner"]]["chosen"]
    assert rows[result["learner"]]["values"][0] == pytest.approx(result["qini"])
    assert page.context["uplift"]["qini"]["data"]["datasets"][0]["data"][0] == {"x": 0.0, "y": 0.0}
    assert b"Qini curve" in page.content and b"No variable exploration report" not in page.content


def test_targeting_by_uplift_serves_and_lists_only_the_persuadable(world):
    from audiences.models import AudienceMember
    from marketing.delivery_lists import batch

    run(world, 2000)
    campaign = world["campaign"]
    Channel.objects.update(cost_model=Channel.CostModel.SEND, unit_cost=0.5)  # a send costs 0.50
    campaign.target_cpa = 2  # loyal listeners: 0.50 / 0.30 = 1.67 a persuaded click; the others ~50
    campaign.save()
    result = incrementality.build_uplift_model(campaign, now=NOW)
    campaign.refresh_from_db()
    targeting = ModelVersion.objects.get(pk=result["version"]).metrics["targeting"]
    assert campaign.persuadable is not None and targeting["scored"] == 600
    chosen = set(AudienceMember.objects.filter(audience=campaign.persuadable).values_list("customer_id", flat=True))
    assert len(chosen) == targeting["included"] == campaign.persuadable.size
    segments = dict(Persona.objects.values_list("customer_id", "segment"))
    assert (targeting["cost"], targeting["value"], targeting["target_cpa"]) == (0.5, 1.0, 2.0), targeting
    loyal = {c for c, s in segments.items() if s == "loyal"}
    assert len(chosen & loyal) / len(loyal) > 0.8  # the ad persuades loyal listeners: most are chosen (0.85–1.0 over runs) …
    assert len(chosen & loyal) / len(chosen) > 0.65  # … and fewer others (half the base), only while the average pays
    assert targeting["threshold"] > 0 and targeting["predicted_incremental_cpa"] <= 2

    # Until targeting by uplift is on, everyone not held out is served; then only the persuadable.
    Campaign.objects.filter(pk=campaign.pk).update(uplift_targeting=True)
    campaign.refresh_from_db()
    later = NOW + timedelta(days=2)
    outside = next(c for c in world["people"] if c.pk not in chosen and not control.held_out(c.pk, 0.3, campaign.control_salt))
    inside = next(c for c in world["people"] if c.pk in chosen and not control.held_out(c.pk, 0.3, campaign.control_salt))
    decision, ads = decide(Customer.objects.select_related("persona").get(pk=outside.pk), world["push"], now=later)
    assert ads == [] and decision.reason == "none"
    decision, ads = decide(Customer.objects.select_related("persona").get(pk=inside.pk), world["push"], now=later)
    assert ads == [world["ad"]]
    done, rows = batch(campaign, world["push"], "persuadable", 0, 1000, now=later)
    listed = {r.customer for r in rows}
    allowed = {c.external_id for c in world["people"] if c.pk in chosen and not control.held_out(c.pk, 0.3, campaign.control_salt)}
    assert listed and listed <= allowed


def test_a_retried_uplift_job_finishes_the_model_its_killed_attempt_registered(world, monkeypatch):
    from marketing import tasks

    run(world, 2000)
    campaign = world["campaign"]
    job = Job.objects.create(kind="uplift_model", title="Uplift")
    promote = registry.promote

    def killed(*args, **kwargs):
        raise RuntimeError("the worker died here")

    monkeypatch.setattr(registry, "promote", killed)  # the first attempt stops between registering and promoting
    with pytest.raises(RuntimeError):
        tasks.train_uplift_model(job.pk, campaign.pk)
    assert ModelVersion.objects.filter(key=incrementality.uplift_key(campaign.pk)).count() == 1

    monkeypatch.setattr(registry, "promote", promote)
    tasks.train_uplift_model(job.pk, campaign.pk)  # the redelivered message

    version = ModelVersion.objects.get(key=incrementality.uplift_key(campaign.pk))
    assert version.status == ModelVersion.Status.CHAMPION
    assert version.metrics["targeting"]["scored"] == 600  # the persuadable customers were chosen on the retry
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED and job.attempts == 2
    assert job.result["version"] == version.pk and job.result["learner"] == version.metrics["learner"]
