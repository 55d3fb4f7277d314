"""The demo simulator makes the same believable streaming service for the same seed, and a different one otherwise."""

from datetime import date, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from django.core.management import CommandError, call_command
from django.db.models import Count

from audiences import demo
from audiences.models import REVENUE_KINDS, Activity, ActivityKind, Customer, Item, ItemKind
from tests.conftest import removing_new_jobs

AS_OF = date(2025, 6, 1)
ANCHOR = datetime(2025, 6, 1, tzinfo=timezone.utc)
SMALL = ["--artists", "400", "--as-of", AS_OF.isoformat()]  # a smaller catalogue keeps the suite quick


def seed(*args: str) -> None:
    """Seed inside the test's transaction; --reset first clears whatever another test committed."""
    call_command("seed_demo", *args, *SMALL, verbosity=0)


def snapshot() -> dict[str, list]:
    return {
        "customers": list(Customer.objects.order_by("external_id").values_list(
            "external_id", "birth_year", "gender", "region", "city_tier", "signup_date", "is_subscriber", "attributes")),
        "items": list(Item.objects.order_by("external_id").values_list(
            "external_id", "kind", "title", "artist", "genres", "language", "moods", "release_date", "price", "attributes")),
        "activities": list(Activity.objects.order_by("key").values_list(
            "key", "customer__external_id", "item__external_id", "kind", "quantity", "value", "occurred_at")),
    }


def test_seeding_twice_with_the_same_seed_gives_identical_rows_and_no_duplicates(db):
    seed("--customers", "300", "--seed", "5", "--reset")
    first = snapshot()
    seed("--customers", "300", "--seed", "5")
    second = snapshot()
    assert len(first["customers"]) == 300
    assert len(first["activities"]) > 300 * 10
    assert first == second
    assert Activity.objects.count() == len(first["activities"])


def test_a_different_seed_gives_different_listeners_and_activity(db):
    seed("--customers", "300", "--seed", "5", "--reset")
    first = snapshot()
    seed("--customers", "300", "--seed", "6", "--reset")
    second = snapshot()
    assert Customer.objects.count() == 300  # --reset removed the first run's rows
    assert first["customers"] != second["customers"]
    assert not {a[0] for a in first["activities"]} & {a[0] for a in second["activities"]}
    assert Activity.objects.count() == len(second["activities"])


def test_reset_deletes_only_simulated_rows(db):
    Customer.objects.create(external_id="real-1")
    seed("--customers", "50", "--seed", "5", "--reset")
    assert demo.delete_demo()["customers"] == 50
    assert list(Customer.objects.values_list("external_id", flat=True)) == ["real-1"]
    assert not Item.objects.exists() and not Activity.objects.exists()


# -- the generator alone (no database writes) --------------------------------------------------------


def test_the_generator_is_deterministic_and_its_keys_unique(db):
    config = demo.DemoConfig(seed=3, customers=500, as_of=AS_OF, artists=200)
    first = [(c.customers, c.activities) for c in demo.simulate(config)]
    second = [(c.customers, c.activities) for c in demo.simulate(config)]
    for (c1, a1), (c2, a2) in zip(first, second):
        pd.testing.assert_frame_equal(c1, c2)
        pd.testing.assert_frame_equal(a1, a2)
    keys = first[0][1]["key"]
    assert keys.is_unique
    other = next(demo.simulate(demo.DemoConfig(seed=4, customers=500, as_of=AS_OF, artists=200)))
    assert not set(keys) & set(other.activities["key"])


def test_activity_keys_never_repeat_across_chunks():
    keys = np.concatenate([demo.activity_keys(1, chunk, 200_000) for chunk in range(3)])
    assert len(np.unique(keys)) == len(keys)


def test_a_bad_as_of_date_is_refused(db):
    with pytest.raises(CommandError, match="not a date"):
        call_command("seed_demo", "--customers", "10", "--as-of", "June 1st")


# -- one seeded service, shared by the tests that only read it ---------------------------------------


@pytest.fixture(scope="module")
def seeded(django_db_setup, django_db_blocker):
    """1,000 listeners and the full default catalogue as of AS_OF, committed once for this module."""
    with django_db_blocker.unblock(), removing_new_jobs():
        call_command("seed_demo", "--customers", "1000", "--seed", "7", "--as-of", AS_OF.isoformat(), verbosity=0)
        yield
        demo.delete_demo()


@pytest.fixture
def service(seeded, db):
    return None


def test_about_a_quarter_of_listeners_subscribe(service):
    share = Customer.objects.filter(is_subscriber=True).count() / Customer.objects.count()
    assert 0.18 <= share <= 0.32


def test_plays_are_the_most_common_activity(service):
    counts = dict(Activity.objects.values_list("kind").annotate(n=Count("id")))
    assert max(counts, key=counts.get) == ActivityKind.PLAY
    assert set(counts) == set(ActivityKind.values)  # every kind occurs


def test_a_few_items_get_most_plays(service):
    plays = np.array(sorted(
        Activity.objects.filter(kind=ActivityKind.PLAY).values("item").annotate(n=Count("id")).values_list("n", flat=True),
        reverse=True,
    ))
    top_tenth = plays[: max(1, len(plays) // 10)].sum()
    assert top_tenth / plays.sum() > 0.4


def test_the_kpop_single_is_new_and_only_played_since_its_release(service):
    single = Item.objects.get(external_id=demo.KPOP_SINGLE_ID)
    assert (single.kind, single.artist, single.language) == (ItemKind.TRACK, demo.KPOP_ARTIST, "ko")
    assert "k-pop" in single.genres
    assert AS_OF - timedelta(days=30) <= single.release_date < AS_OF
    released = datetime.combine(single.release_date, datetime.min.time(), tzinfo=timezone.utc)
    assert not Activity.objects.filter(item=single, occurred_at__lt=released).exists()


def test_revenue_comes_from_purchases_and_subscriptions_with_positive_values(service):
    revenue = Activity.objects.filter(kind__in=REVENUE_KINDS)
    assert revenue.exists()
    assert not revenue.filter(value__lte=0).exists()
    assert not Activity.objects.exclude(kind__in=REVENUE_KINDS).exclude(value=0).exists()
    bought = set(revenue.filter(kind=ActivityKind.PURCHASE).values_list("item__kind", flat=True))
    assert bought <= {ItemKind.CONCERT, ItemKind.PRODUCT}
    assert not revenue.filter(kind=ActivityKind.SUBSCRIBE, item__isnull=False).exists()
    paying = set(revenue.filter(kind=ActivityKind.SUBSCRIBE).values_list("customer__attributes__plan", flat=True))
    assert paying <= set(demo.PLANS)


def test_every_activity_belongs_to_a_stored_customer_and_falls_in_the_window(service):
    assert not Activity.objects.exclude(customer__in=Customer.objects.all()).exists()
    assert not Activity.objects.exclude(kind=ActivityKind.SUBSCRIBE).filter(item__isnull=True).exists()
    assert not Activity.objects.filter(occurred_at__gte=ANCHOR).exists()
    assert not Activity.objects.filter(occurred_at__lt=ANCHOR - timedelta(days=180)).exists()


def test_listeners_have_plausible_demographics(service):
    customers = pd.DataFrame(Customer.objects.values("birth_year", "region", "city_tier", "gender", "signup_date"))
    ages = AS_OF.year - customers["birth_year"]
    assert ages.between(16, 70).all() and 25 <= ages.median() <= 40
    assert set(customers["region"]) == set(demo.REGIONS)
    assert set(customers["city_tier"]) == {1, 2, 3, 4}
    assert (customers["signup_date"] < AS_OF).all()


def test_taste_follows_age_and_region(service):
    """The demo audience "young hip-hop fans in the south" exists and is not just noise."""
    rows = Customer.objects.values_list("birth_year", "region", "attributes")
    young_south = [a["onboarding_genres"] for y, r, a in rows if AS_OF.year - y <= 25 and r == "south"]
    older_north = [a["onboarding_genres"] for y, r, a in rows if AS_OF.year - y >= 45 and r == "north"]

    def hip_hop_share(group):
        return sum(bool({"hip-hop", "trap", "drill"} & set(g)) for g in group) / len(group)

    assert hip_hop_share(young_south) > 0.3
    assert hip_hop_share(young_south) > 2 * hip_hop_share(older_north)


def test_some_listeners_lapsed_and_most_activity_is_recent(service):
    last = Activity.objects.exclude(kind=ActivityKind.SUBSCRIBE).values("customer").annotate(n=Count("id"))
    active_last_week = Activity.objects.filter(occurred_at__gte=ANCHOR - timedelta(days=7)).values("customer").distinct().count()
    lapsed = Customer.objects.exclude(activities__occurred_at__gte=ANCHOR - timedelta(days=21)).count()
    assert last.count() > 900
    assert 0.05 < lapsed / 1000 < 0.5  # the win-back e-mail has someone to write to
    assert active_last_week > 300
    recent = Activity.objects.filter(occurred_at__gte=ANCHOR - timedelta(days=90)).count()
    assert recent / Activity.objects.count() > 0.55


def test_seeding_an_empty_table_rebuilds_every_activity_index(transactional_db):
    from django.db import connection

    from audiences.models import Activity

    call_command("seed_demo", "--customers", "200", "--seed", "5", "--days", "30", verbosity=0)
    with connection.cursor() as cursor:
        present = set(connection.introspection.get_constraints(cursor, Activity._meta.db_table))
    assert {index.name for index in Activity._meta.indexes} <= present
    assert Activity.objects.count() > 1000


def test_new_releases_peak_at_launch_and_fade(db):
    """The generator directly (no database): plays of tracks released in the window, by week of their age."""
    config = demo.DemoConfig(customers=5000, seed=7, as_of=AS_OF)
    cat = demo.catalogue(config)
    acts = pd.concat([c.activities for c in demo.simulate(config, cat)])
    plays = acts[(acts.kind == int(ActivityKind.PLAY)) & (acts.item_pos >= 0)]
    pos = plays.item_pos.to_numpy()
    day = (plays.occurred_at - pd.Timestamp(0, tz="UTC")).dt.days.to_numpy()
    released = cat.release_day[pos]
    old_enough = (released >= config.anchor_day - config.days) & (released <= config.anchor_day - 90)
    weeks = np.bincount((day - released)[old_enough] // 7)
    assert weeks[0] > 1.5 * np.median(weeks[4:12])  # the launch week against weeks 5–12


def test_listening_comes_in_sessions(service):
    times = list(Activity.objects.filter(kind=ActivityKind.PLAY).order_by("customer_id", "occurred_at")
                            .values_list("customer_id", "occurred_at")[:20000])
    gaps = [(b[1] - a[1]).total_seconds() for a, b in zip(times, times[1:]) if a[0] == b[0] and a[1].date() == b[1].date()]
    assert gaps and np.median(gaps) < 600  # most next plays come minutes later, within the session
