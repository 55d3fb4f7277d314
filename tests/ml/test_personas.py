"""Personas from activity rows: decayed taste shares, window counts, spend, value segments."""

from collections import defaultdict

import numpy as np
import pandas as pd
import pytest

from ml.personas import assign_segments, compute_personas

AS_OF = pd.Timestamp("2024-06-01 12:00", tz="UTC")
WEIGHTS = {
    "play": 1.0,
    "complete": 1.5,
    "skip": 0.0,
    "favourite": 3.0,
    "share": 2.0,
    "search": 0.5,
    "purchase": 4.0,
    "subscribe": 0.0,
}


def days_ago(days: float) -> pd.Timestamp:
    return AS_OF - pd.Timedelta(days=days)


def activity(customer=1, kind="play", *, at=None, artist="", genres=(), language="", moods=(), quantity=1.0, value=0.0, item=None):
    row = {
        "customer_id": customer,
        "kind": kind,
        "quantity": quantity,
        "value": value,
        "occurred_at": AS_OF if at is None else at,
        "artist": artist,
        "genres": list(genres),
        "language": language,
        "moods": list(moods),
    }
    if item is not None:
        row["item_id"] = item
    return row


def personas(rows, **options) -> pd.DataFrame:
    options = {"as_of": AS_OF, "kind_weights": WEIGHTS, "half_life_days": 30.0, "top_n": 10, **options}
    return compute_personas(pd.DataFrame(rows), **options).set_index("customer_id")


def test_it_halves_the_weight_after_one_half_life():
    result = personas(
        [
            activity(artist="Stray Kids", language="ko", at=AS_OF),
            activity(artist="Kendrick Lamar", language="en", at=days_ago(30)),
        ]
    )
    # 1 against 0.5: two thirds and one third
    assert result.loc[1, "artists"] == {"Stray Kids": 0.6667, "Kendrick Lamar": 0.3333}
    assert result.loc[1, "languages"] == {"ko": 0.6667, "en": 0.3333}
    assert result.loc[1, "top_artist"] == "Stray Kids"


def test_it_follows_the_configured_half_life():
    rows = [activity(artist="A", at=AS_OF), activity(artist="B", at=days_ago(30))]
    # half-life 15: 30 days is two half-lives, so 1 against 0.25
    assert personas(rows, half_life_days=15.0).loc[1, "artists"] == {"A": 0.8, "B": 0.2}


def test_it_weighs_kinds_and_quantities_and_drops_zero_weight_kinds():
    result = personas(
        [
            activity(kind="favourite", artist="A"),  # 3
            activity(kind="play", artist="B", quantity=2.0),  # 2
            activity(kind="search", artist="C", quantity=2.0),  # 1
            activity(kind="skip", artist="D"),  # 0: not in the shares at all
        ]
    )
    assert result.loc[1, "artists"] == {"A": 0.5, "B": 0.3333, "C": 0.1667}


def test_it_splits_an_item_evenly_over_its_genres_and_moods():
    result = personas(
        [
            activity(genres=["pop", "rock"], moods=["happy", "calm", "dreamy", "upbeat"]),
            activity(genres=["rock"], moods=["calm"]),
        ]
    )
    assert result.loc[1, "genres"] == {"rock": 0.75, "pop": 0.25}
    # calm: 0.25 + 1 of 2; each other mood 0.25 of 2
    assert result.loc[1, "moods"] == {"calm": 0.625, "dreamy": 0.125, "happy": 0.125, "upbeat": 0.125}
    assert result.loc[1, "top_genre"] == "rock"
    assert result.loc[1, "top_mood"] == "calm"


def test_it_ignores_empty_names():
    result = personas(
        [
            activity(customer=1, artist="", genres=["", "jazz"], language="fr"),
            activity(customer=1, artist="Nina Simone", genres=[], language=""),
            activity(customer=2, artist="", genres=[""], language="", moods=[]),
        ]
    )
    assert result.loc[1, "artists"] == {"Nina Simone": 1.0}
    assert result.loc[1, "genres"] == {"jazz": 1.0}  # the blank genre takes no half
    assert result.loc[1, "languages"] == {"fr": 1.0}
    assert result.loc[2, ["artists", "genres", "languages", "moods"]].tolist() == [{}, {}, {}, {}]
    assert result.loc[2, ["top_artist", "top_genre", "top_language", "top_mood"]].tolist() == ["", "", "", ""]
    assert result.loc[2, "activities_7d"] == 1


def test_it_keeps_the_top_n_shares_of_the_whole_and_breaks_ties_by_name():
    rows = (
        [activity(artist="Adele")] * 3
        + [activity(artist="Coldplay")] * 2
        + [activity(artist="Beyoncé")] * 2
        + [activity(artist="Drake")]
    )
    result = personas(rows, top_n=2)
    # shares are of all 8 plays, before the cut
    assert result.loc[1, "artists"] == {"Adele": 0.375, "Beyoncé": 0.25}
    assert list(result.loc[1, "artists"]) == ["Adele", "Beyoncé"]


def test_its_shares_sum_to_one_when_nothing_is_cut():
    rows = [activity(artist=name, at=days_ago(age)) for name, age in [("A", 0), ("B", 3), ("C", 11), ("D", 47)]]
    shares = personas(rows).loc[1, "artists"]
    assert sum(shares.values()) == pytest.approx(1.0, abs=2e-4)
    assert shares["A"] == round(1 / (1 + 0.5 ** 0.1 + 0.5 ** (11 / 30) + 0.5 ** (47 / 30)), 4)


def test_its_windows_include_their_end_and_exclude_their_start():
    second = pd.Timedelta(seconds=1)
    result = personas(
        [
            activity(at=AS_OF),  # in every window
            activity(at=days_ago(7) + second),  # in 7d
            activity(at=days_ago(7)),  # not in 7d, in 30d
            activity(at=days_ago(30)),  # not in 30d, in 90d
            activity(at=days_ago(90) + second),  # in 90d
            activity(at=days_ago(90)),  # in none
            activity(kind="favourite", at=days_ago(1)),  # an activity, not a play
            activity(kind="skip", at=days_ago(1)),  # counted although it weighs nothing
            activity(at=AS_OF + second),  # after as_of: ignored
        ]
    )
    counts = result.loc[1, ["plays_7d", "plays_30d", "plays_90d", "activities_7d", "activities_30d", "activities_90d"]]
    assert counts.tolist() == [2, 3, 5, 4, 5, 7]


def test_it_counts_purchases_and_subscriptions_of_the_last_90_days_as_spend():
    result = personas(
        [
            activity(kind="purchase", value=9.99, at=days_ago(10)),
            activity(kind="subscribe", value=4.99, at=days_ago(89)),
            activity(kind="purchase", value=100.0, at=days_ago(90)),  # outside the window
            activity(kind="play", value=5.0, at=days_ago(1)),  # not revenue
            activity(kind="purchase", value=50.0, at=AS_OF + pd.Timedelta(hours=1)),  # after as_of
        ]
    )
    assert result.loc[1, "purchases_90d"] == 2
    assert result.loc[1, "spend_90d"] == 14.98


def test_its_last_active_at_is_the_latest_activity_up_to_as_of():
    result = personas(
        [
            activity(kind="skip", at=days_ago(2)),
            activity(at=days_ago(5)),
            activity(at=AS_OF + pd.Timedelta(days=1), artist="Future"),
        ]
    )
    assert result.loc[1, "last_active_at"] == days_ago(2)
    assert result.loc[1, "artists"] == {}


def test_it_reports_requested_customers_without_activity_as_empty():
    result = personas([activity(customer=5, artist="A")], customers=[3, 5, 9])
    assert result.index.tolist() == [3, 5, 9]
    assert result.loc[3, "artists"] == {} and result.loc[9, "top_artist"] == ""
    assert result.loc[9, ["plays_90d", "activities_90d", "purchases_90d"]].tolist() == [0, 0, 0]
    assert result.loc[9, "spend_90d"] == 0.0
    assert pd.isna(result.loc[9, "last_active_at"])
    assert result.loc[5, "artists"] == {"A": 1.0}


def test_it_rejects_a_half_life_that_is_not_positive():
    with pytest.raises(ValueError, match="half_life_days"):
        personas([activity()], half_life_days=0)


def _random_activities(seed: int, rows: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    genres = ["pop", "rock", "jazz", "k-pop", "", "hip-hop"]
    moods = ["happy", "sad", "calm", ""]
    items = [
        {
            "artist": rng.choice(["A", "B", "C", "D", ""]),
            "genres": list(rng.choice(genres, rng.integers(0, 3), replace=False)),
            "language": rng.choice(["en", "ko", "es", ""]),
            "moods": list(rng.choice(moods, rng.integers(0, 3), replace=False)),
        }
        for _ in range(25)
    ]
    item = rng.integers(0, 25, rows)
    return pd.DataFrame(
        {
            "customer_id": rng.integers(1, 12, rows),
            "item_id": item,
            "kind": rng.choice(list(WEIGHTS), rows),
            "quantity": rng.choice([1.0, 2.0, 0.5], rows),
            "value": rng.integers(0, 2000, rows) / 100,
            "occurred_at": AS_OF - pd.to_timedelta(rng.integers(-5 * 86400, 200 * 86400, rows), unit="s"),
            **{k: [items[i][k] for i in item] for k in ("artist", "genres", "language", "moods")},
        }
    )


def _reference(frame: pd.DataFrame, top_n: int) -> dict:
    """The definition, one row at a time."""
    totals = defaultdict(lambda: defaultdict(lambda: defaultdict(float)))
    for row in frame.itertuples():
        if row.occurred_at > AS_OF:
            continue
        age = (AS_OF - row.occurred_at) / pd.Timedelta(days=1)
        weight = WEIGHTS[row.kind] * row.quantity * 0.5 ** (age / 30.0)
        if weight <= 0:
            continue
        for dimension, names in (
            ("artists", [row.artist]),
            ("genres", row.genres),
            ("languages", [row.language]),
            ("moods", row.moods),
        ):
            names = [n for n in names if n]
            for name in names:
                totals[row.customer_id][dimension][name] += weight / len(names)
    result = {}
    for customer, dimensions in totals.items():
        for dimension, weights in dimensions.items():
            total = sum(weights.values())
            ranked = sorted(weights.items(), key=lambda kv: (-kv[1], kv[0]))[:top_n]
            result[customer, dimension] = {name: round(w / total, 4) for name, w in ranked}
    return result


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_it_agrees_with_the_definition_computed_row_by_row(seed):
    frame = _random_activities(seed)
    expected = _reference(frame, top_n=3)
    for with_items in (True, False):
        result = personas(frame if with_items else frame.drop(columns="item_id"), top_n=3)
        for customer in result.index:
            for dimension in ("artists", "genres", "languages", "moods"):
                got = result.loc[customer, dimension]
                want = expected.get((customer, dimension), {})
                assert list(got) == list(want), (customer, dimension)
                assert got == pytest.approx(want, abs=1e-4), (customer, dimension)


class TestSegments:
    def test_the_most_frequent_buyers_bringing_55_percent_of_revenue_are_loyal(self):
        purchases = [10, 8, 5, 5, 2, 1, 0]
        spend = [300.0, 250.0, 150.0, 100.0, 100.0, 100.0, 0.0]
        # ranked: 300 (0 % before), 250 (30 %), 150 (55 %: loyal is full), 100 (70 %), 100 (80 %) ...
        assert assign_segments(purchases, spend).tolist() == [
            "loyal", "loyal", "active", "active", "casual", "casual", "casual",
        ]  # fmt: skip

    def test_the_customer_who_crosses_the_line_is_loyal_too(self):
        # 40 % before the second customer: they take loyal revenue to 70 %
        segments = assign_segments([9, 7, 3, 1], [40.0, 30.0, 20.0, 10.0])
        assert segments.tolist() == ["loyal", "loyal", "active", "casual"]

    def test_it_ranks_by_frequency_not_by_one_big_purchase(self):
        segments = assign_segments([1, 10, 8], [300.0, 600.0, 100.0])
        # frequent buyer first (0 %), then 8 purchases (60 %), then the one-off (70 %)
        assert segments.tolist() == ["active", "loyal", "active"]

    def test_equal_buyers_are_ranked_by_spend_then_position(self):
        segments = assign_segments([2, 2, 2, 2], [10.0, 30.0, 30.0, 30.0])
        # order: #1 (0 %), #2 (30 %), #3 (60 %), #0 (90 %)
        assert segments.tolist() == ["casual", "loyal", "loyal", "active"]

    def test_customers_without_spend_are_casual(self):
        assert assign_segments([3, 0, 5], [0.0, 0.0, -5.0]).tolist() == ["casual", "casual", "casual"]

    def test_it_follows_the_configured_shares(self):
        segments = assign_segments([4, 3, 2, 1], [25.0, 25.0, 25.0, 25.0], loyal_share=0.25, active_share=0.5)
        assert segments.tolist() == ["loyal", "active", "active", "casual"]
