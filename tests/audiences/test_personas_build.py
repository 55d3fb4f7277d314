"""Building personas in the database: the numbers, incremental rebuilds, segments.

The cast: lena plays K-pop and bought merch once; omar buys (a subscription and
merch) but only skips music; pia has done nothing yet.
"""

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from itertools import count

import pytest

from audiences.models import Activity, ActivityKind, Customer, Item, ItemKind, Persona, PersonaSettings
from audiences.personas import build_personas

T0 = datetime(2024, 6, 1, 12, 0, tzinfo=timezone.utc)
keys = count(1)


def act(customer, kind, at, item=None, value="0"):
    return Activity.objects.create(
        key=next(keys), customer=customer, item=item, kind=kind, occurred_at=at, value=Decimal(value)
    )


@pytest.fixture
def cast(db):
    lena = Customer.objects.create(external_id="lena")
    omar = Customer.objects.create(external_id="omar")
    pia = Customer.objects.create(external_id="pia")
    kpop = Item.objects.create(
        external_id="t1", title="Maniac", artist="Stray Kids", genres=["k-pop", "pop"], language="ko", moods=["happy"]
    )
    rap = Item.objects.create(
        external_id="t2", title="HUMBLE.", artist="Kendrick Lamar", genres=["hip-hop"], language="en", moods=["dark"]
    )
    merch = Item.objects.create(external_id="p1", kind=ItemKind.PRODUCT, title="Tour hoodie", artist="Stray Kids")
    act(lena, ActivityKind.PLAY, T0 - timedelta(days=1), kpop)  # weight 1
    act(lena, ActivityKind.PLAY, T0 - timedelta(days=31), rap)  # one half-life older: 0.5
    act(lena, ActivityKind.PURCHASE, T0 - timedelta(days=1), merch, "20.00")  # weight 4
    act(omar, ActivityKind.SUBSCRIBE, T0 - timedelta(days=2), None, "9.99")  # weighs 0
    act(omar, ActivityKind.PURCHASE, T0 - timedelta(days=10), merch, "40.00")
    act(omar, ActivityKind.SKIP, T0 - timedelta(hours=1), kpop)  # weighs 0
    return {"lena": lena, "omar": omar, "pia": pia, "kpop": kpop, "rap": rap, "merch": merch}


def persona(customer) -> Persona:
    return Persona.objects.get(customer=customer)


def numbers(p: Persona) -> dict:
    """Everything a build computes (as_of says when, not what)."""
    return {f.name: getattr(p, f.name) for f in Persona._meta.concrete_fields if f.name != "as_of"}


def test_it_builds_decayed_shares_window_counts_and_spend(cast):
    summary = build_personas(as_of=T0)

    assert summary["full"] is True
    assert summary["customers_rebuilt"] == 2
    lena = persona(cast["lena"])
    # Stray Kids 1 + 4, Kendrick Lamar 0.5
    assert lena.artists == {"Stray Kids": 0.9091, "Kendrick Lamar": 0.0909}
    # the hoodie has no genres: k-pop 0.5, pop 0.5, hip-hop 0.5
    assert lena.genres == {"hip-hop": 0.3333, "k-pop": 0.3333, "pop": 0.3333}
    assert lena.languages == {"ko": 0.6667, "en": 0.3333}
    assert lena.moods == {"happy": 0.6667, "dark": 0.3333}
    assert (lena.top_artist, lena.top_genre, lena.top_language, lena.top_mood) == ("Stray Kids", "hip-hop", "ko", "happy")
    assert (lena.plays_7d, lena.plays_30d, lena.plays_90d) == (1, 1, 2)
    assert (lena.activities_7d, lena.activities_30d, lena.activities_90d) == (2, 2, 3)
    assert (lena.purchases_90d, lena.spend_90d) == (1, Decimal("20.00"))
    assert lena.last_active_at == T0 - timedelta(days=1)
    assert lena.as_of == T0

    omar = persona(cast["omar"])
    assert omar.artists == {"Stray Kids": 1.0}
    assert (omar.genres, omar.top_genre, omar.languages, omar.moods) == ({}, "", {}, {})
    assert (omar.plays_90d, omar.activities_7d, omar.activities_30d) == (0, 2, 3)
    assert (omar.purchases_90d, omar.spend_90d) == (2, Decimal("49.99"))
    assert omar.last_active_at == T0 - timedelta(hours=1)

    assert not Persona.objects.filter(customer=cast["pia"]).exists()


def test_it_segments_by_frequency_and_share_of_revenue(cast):
    summary = build_personas(as_of=T0)

    # omar (2 purchases) brings 49.99 of 69.99; lena starts at 71 % of revenue
    assert persona(cast["omar"]).segment == "loyal"
    assert persona(cast["lena"]).segment == "active"
    assert summary["segments"] == {"loyal": 1, "active": 1, "casual": 0}


def test_it_remembers_what_it_built(cast):
    build_personas(as_of=T0)

    settings = PersonaSettings.load()
    assert settings.last_built_at == T0
    assert settings.last_activity_id == Activity.objects.order_by("-id").first().id


def test_an_incremental_build_rebuilds_only_customers_with_new_activity(cast):
    build_personas(as_of=T0)
    lena_before = numbers(persona(cast["lena"]))
    new = act(cast["pia"], ActivityKind.PLAY, T0 + timedelta(minutes=30), cast["rap"])

    summary = build_personas(as_of=T0 + timedelta(hours=1))

    assert summary["full"] is False
    assert summary["customers_rebuilt"] == 1
    assert PersonaSettings.load().last_activity_id == new.id
    pia = persona(cast["pia"])
    assert (pia.artists, pia.plays_7d, pia.as_of) == ({"Kendrick Lamar": 1.0}, 1, T0 + timedelta(hours=1))
    assert persona(cast["lena"]).as_of == T0  # untouched
    assert numbers(persona(cast["lena"])) == lena_before
    assert persona(cast["omar"]).as_of == T0


def test_an_incremental_build_rebuilds_customers_whose_activity_left_a_window(cast):
    build_personas(as_of=T0)
    later = T0 + timedelta(days=5)  # omar's subscription of T0-2d turns 7 days old; lena's activity stays put

    summary = build_personas(as_of=later)

    assert summary["customers_rebuilt"] == 1
    omar = persona(cast["omar"])
    assert (omar.activities_7d, omar.activities_30d, omar.as_of) == (1, 3, later)
    assert (omar.purchases_90d, omar.spend_90d) == (2, Decimal("49.99"))
    assert persona(cast["lena"]).as_of == T0


def test_an_incremental_build_picks_up_activity_dated_after_the_last_build(cast):
    ahead = act(cast["pia"], ActivityKind.PLAY, T0 + timedelta(days=2), cast["kpop"])
    build_personas(as_of=T0)  # pia's play lies in the future: her persona is empty
    assert persona(cast["pia"]).plays_7d == 0

    summary = build_personas(as_of=T0 + timedelta(days=3))

    assert PersonaSettings.load().last_activity_id == ahead.id
    assert summary["customers_rebuilt"] == 1
    assert (persona(cast["pia"]).plays_7d, persona(cast["pia"]).top_artist) == (1, "Stray Kids")


def test_an_incremental_build_drops_activity_that_crossed_the_history_horizon(cast):
    # 10 half-lives of 30 days: activity older than 300 days is not loaded
    oldie = Item.objects.create(external_id="t0", title="Fantastic Baby", artist="BIGBANG", genres=["k-pop"])
    act(cast["lena"], ActivityKind.PLAY, T0 - timedelta(days=299), oldie)
    build_personas(as_of=T0)
    assert persona(cast["lena"]).artists["BIGBANG"] == 0.0002  # 0.5 ** (298 / 30) of 5.5

    summary = build_personas(as_of=T0 + timedelta(days=2))

    assert summary["customers_rebuilt"] == 1
    lena = persona(cast["lena"])
    assert lena.as_of == T0 + timedelta(days=2)
    # without the old play: Stray Kids 1 + 4 against Kendrick Lamar 0.5, as before it
    assert lena.artists == {"Stray Kids": 0.9091, "Kendrick Lamar": 0.0909}


def test_a_full_rebuild_gives_the_same_numbers_as_incremental_builds(cast):
    build_personas(as_of=T0)
    act(cast["pia"], ActivityKind.FAVOURITE, T0 + timedelta(days=1), cast["kpop"])
    act(cast["lena"], ActivityKind.PLAY, T0 + timedelta(days=2), cast["rap"])
    for days in (3, 8, 40):
        build_personas(as_of=T0 + timedelta(days=days))
    incremental = {p.customer_id: numbers(p) for p in Persona.objects.all()}

    summary = build_personas(full=True, as_of=T0 + timedelta(days=40))

    assert summary["customers_rebuilt"] == 3
    assert {p.customer_id: numbers(p) for p in Persona.objects.all()} == incremental
    # and they did move: lena's plays of T0-1d and T0+2d are now 41 and 38 days old
    assert (incremental[cast["lena"].pk]["plays_30d"], incremental[cast["lena"].pk]["plays_90d"]) == (0, 3)


def test_a_full_rebuild_resets_personas_whose_activity_is_gone(cast):
    build_personas(as_of=T0)
    Activity.objects.filter(customer=cast["omar"]).delete()

    build_personas(full=True, as_of=T0)

    omar = persona(cast["omar"])
    assert (omar.artists, omar.top_artist, omar.activities_90d, omar.purchases_90d) == ({}, "", 0, 0)
    assert (omar.spend_90d, omar.last_active_at, omar.segment) == (Decimal("0"), None, "casual")
    assert persona(cast["lena"]).segment == "loyal"  # now all the revenue


def test_activity_beyond_the_history_horizon_only_sets_last_active_at(cast):
    # 10 half-lives of 30 days: 300 days
    act(cast["pia"], ActivityKind.PLAY, T0 - timedelta(days=301), cast["kpop"])

    build_personas(as_of=T0)

    pia = persona(cast["pia"])
    assert (pia.artists, pia.plays_90d, pia.last_active_at) == ({}, 0, T0 - timedelta(days=301))


def test_it_follows_the_persona_settings(cast):
    settings = PersonaSettings.load()
    settings.half_life_days = 15.0
    settings.top_n = 1
    settings.kind_weights = {"purchase": 0.0}
    settings.save()

    build_personas(as_of=T0)

    # plays only: 1 against 0.25 (two half-lives), then cut to the top one
    assert persona(cast["lena"]).artists == {"Stray Kids": 0.8}
    assert persona(cast["lena"]).languages == {"ko": 0.8}


def test_it_reports_progress_up_to_done(cast):
    seen = []

    build_personas(as_of=T0, progress=lambda fraction, message: seen.append((fraction, message)))

    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions)
    assert seen[-1] == (1.0, "Rebuilt 2 personas")


def test_a_second_build_is_skipped_while_one_holds_the_lock(db):
    from audiences.actions import persona_job
    from audiences.models import PersonaSettings
    from audiences.tasks import build_personas as build_task

    assert PersonaSettings.claim_build(1000) is True
    assert PersonaSettings.claim_build(1001) is False
    assert PersonaSettings.claim_build(1000) is True, "a redelivered task of the same job takes its lock back"
    job = persona_job(full=True, by=None)
    build_task(job_id=job.pk, full=True)
    job.refresh_from_db()
    assert job.status == "succeeded" and job.message == "Skipped: another persona build is running"
    PersonaSettings.release_build(1000)
    job = persona_job(full=True, by=None)
    build_task(job_id=job.pk, full=True)
    job.refresh_from_db()
    assert "personas rebuilt" in job.message
    assert PersonaSettings.load().build_started_at is None


def test_a_lock_left_by_a_dead_worker_expires(db):
    from datetime import timedelta

    from django.utils import timezone

    from audiences.models import PersonaSettings

    PersonaSettings.load()
    PersonaSettings.objects.update(build_started_at=timezone.now() - timedelta(hours=7))
    assert PersonaSettings.claim_build(7) is True


def test_an_event_changed_in_place_is_rebuilt_by_the_next_incremental_build(db):
    from decimal import Decimal

    from audiences.api import load_batch
    from audiences.models import Customer, Persona
    from audiences.personas import build_personas as build

    Customer.objects.create(external_id="buyer")
    when = "2024-05-01T10:00:00Z"
    as_of = datetime(2024, 5, 2, tzinfo=timezone.utc)
    load_batch("activities", [{"external_id": "p1", "customer": "buyer", "kind": "purchase", "value": 5, "occurred_at": when}])
    build(full=True, as_of=as_of)
    assert Persona.objects.get().spend_90d == Decimal("5.00")
    body, _ = load_batch("activities", [{"external_id": "p1", "customer": "buyer", "kind": "purchase", "value": 50, "occurred_at": when}])
    assert body["created"] == 0
    assert Persona.objects.get().stale is True
    summary = build(full=False, as_of=as_of + timedelta(minutes=5))
    persona = Persona.objects.get()
    assert summary["customers_rebuilt"] == 1 and persona.spend_90d == Decimal("50.00") and persona.stale is False


def test_each_build_snapshots_the_personas_it_changed_for_point_in_time_training(cast):
    from audiences.models import PersonaSnapshot

    build_personas(as_of=T0)
    first = {s.customer_id: s for s in PersonaSnapshot.objects.all()}
    assert set(first) == {cast["lena"].pk, cast["omar"].pk}  # pia has no activity, so no persona
    assert first[cast["lena"].pk].valid_from == T0
    assert first[cast["lena"].pk].features["top_genre"] == persona(cast["lena"]).top_genre
    assert first[cast["lena"].pk].features["plays_7d"] == 1

    act(cast["lena"], ActivityKind.PLAY, T0 + timedelta(minutes=30), cast["rap"])
    build_personas(as_of=T0 + timedelta(hours=1))
    lena = PersonaSnapshot.objects.filter(customer=cast["lena"]).order_by("valid_from")
    assert [(s.valid_from, s.features["plays_7d"]) for s in lena] == [(T0, 1), (T0 + timedelta(hours=1), 2)]
    assert PersonaSnapshot.objects.filter(customer=cast["omar"]).count() == 1  # unchanged: no new snapshot

    build_personas(as_of=T0 + timedelta(hours=1))  # a retried build at the same time replaces, never duplicates
    assert PersonaSnapshot.objects.filter(customer=cast["lena"]).count() == 2
