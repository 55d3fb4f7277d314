"""Lookalikes: cross-fitted seed-vs-rest classifiers, their scores and the size curve (pure, no database)."""

import os
import pickle
from decimal import Decimal

# Before scikit-learn loads OpenMP: spinning threads make xgboost 5-10x slower on a busy
# machine (see ml/lookalike.py, "Threads"). Only takes effect if nothing loaded it yet.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from ml.lookalike import FeatureEncoder, Lookalike, score, size_curve, train

GENRES = ["pop", "rock", "hip-hop", "k-pop", "jazz", "classical", "electronic", "latin", "metal", "indie", "r&b", "country"]
REGIONS = ["north", "south", "east", "west", "centre"]


def simulated_base(n: int = 6000, seed: int = 1) -> pd.DataFrame:
    """Customers shaped like our personas: scalars, a few categoricals and preference-share maps."""
    rng = np.random.default_rng(seed)
    age = rng.integers(16, 70, n).astype(float)
    age[rng.random(n) < 0.05] = np.nan  # some customers never told us
    plays_30d = rng.poisson(rng.gamma(1.0, 20.0, n))
    popularity = 1 / np.arange(1, len(GENRES) + 1)
    genres, artists = [], []
    for _ in range(n):
        picked = rng.choice(len(GENRES), size=rng.integers(1, 5), replace=False, p=popularity / popularity.sum())
        shares = rng.dirichlet(np.ones(len(picked)))
        genres.append({GENRES[g]: round(float(s), 4) for g, s in zip(picked, shares)})
        names = rng.zipf(1.6, size=rng.integers(1, 8)) % 300
        artists.append({f"artist {a}": round(1 / len(names), 4) for a in names})
    return pd.DataFrame({
        "customer_id": np.arange(1, n + 1),
        "age": age,
        "gender": rng.choice(["f", "m", ""], n, p=[0.48, 0.48, 0.04]),
        "region": rng.choice(REGIONS, n),
        "city_tier": rng.integers(1, 4, n),
        "is_subscriber": rng.random(n) < 0.3,
        "segment": rng.choice(["loyal", "active", "casual"], n, p=[0.1, 0.2, 0.7]),
        "plays_7d": rng.binomial(plays_30d, 0.25),
        "plays_30d": plays_30d,
        "spend_90d": np.round(rng.exponential(5.0, n), 2),
        "tenure_days": rng.integers(0, 2000, n),
        "artists": artists,
        "genres": genres,
        "languages": [{"en": 1.0} if rng.random() < 0.8 else {"ko": 0.6, "en": 0.4} for _ in range(n)],
        "moods": [{} for _ in range(n)],
    })


def kpop_youth_seed(base: pd.DataFrame, seed: int = 2) -> np.ndarray:
    """A seed that depends on three known features: k-pop share, youth and the south."""
    rng = np.random.default_rng(seed)
    kpop = base["genres"].map(lambda g: g.get("k-pop", 0.0)).to_numpy()
    young = (base["age"] < 25).to_numpy()
    south = (base["region"] == "south").to_numpy()
    logit = -5.5 + 5.0 * kpop + 2.0 * young + 2.5 * south
    return rng.random(len(base)) < 1 / (1 + np.exp(-logit))


@pytest.fixture(scope="module")
def base():
    return simulated_base()


@pytest.fixture(scope="module")
def informative(base):
    is_seed = kpop_youth_seed(base)
    model, sampled, sampled_scores = train(base, is_seed, random_state=0)
    return is_seed, model, sampled, sampled_scores


def test_a_seed_driven_by_known_features_is_learned_with_a_high_auc(base, informative):
    is_seed, model, _, _ = informative
    assert 250 < model.n_seed < 700
    assert model.n_negatives == 5 * model.n_seed
    assert model.holdout_auc > 0.83


def test_the_features_that_drive_the_seed_come_top(informative):
    _, model, _, _ = informative
    top = [f["feature"] for f in model.top_features[:3]]
    assert set(top) == {"genres: k-pop", "age", "region = south"}
    assert len(model.top_features) <= 15
    assert model.top_features[0]["importance"] >= model.top_features[-1]["importance"]
    assert sum(f["importance"] for f in model.top_features) <= 1.0 + 1e-6


def test_fresh_customers_from_the_same_world_are_ranked_like_the_holdout_says(informative):
    _, model, _, _ = informative
    fresh = simulated_base(n=4000, seed=9)
    truth = kpop_youth_seed(fresh, seed=10)
    auc = roc_auc_score(truth, score(model, fresh))
    assert auc > 0.8
    assert abs(auc - model.holdout_auc) < 0.06


def test_a_random_seed_gives_an_auc_near_one_half(base):
    is_seed = np.random.default_rng(5).random(len(base)) < 0.08
    model, _, _ = train(base, is_seed, random_state=0)
    assert 0.42 < model.holdout_auc < 0.58


def test_sampled_negatives_are_not_scored_lower_than_the_rest_of_the_base(base, informative):
    is_seed, model, sampled, sampled_scores = informative
    assert not is_seed[sampled].any()
    assert len(sampled) == len(sampled_scores) == model.n_negatives
    rest = np.setdiff1d(np.flatnonzero(~is_seed), sampled)
    rest_scores = score(model, base.iloc[rest])
    assert abs(sampled_scores.mean() - rest_scores.mean()) < 0.02
    # What the operator sees: the top 10 % of the non-seed base holds sampled negatives at
    # about their share of the base. (A single fold model spreads its scores a little wider
    # than the mean of three, so they are, if anything, slightly over-represented.)
    combined = np.r_[sampled_scores, rest_scores]
    top = combined >= np.quantile(combined, 0.9)
    share_in_top = top[: len(sampled)].mean() / top.mean()
    assert 0.8 < share_in_top < 1.4


def test_training_is_reproducible_and_the_model_pickles(base, informative):
    is_seed, model, sampled, sampled_scores = informative
    again, sampled_again, scores_again = train(base, is_seed, random_state=0)
    assert np.array_equal(sampled, sampled_again)
    np.testing.assert_allclose(scores_again, sampled_scores)
    restored = pickle.loads(pickle.dumps(model))
    some = base.iloc[:50]
    np.testing.assert_allclose(score(restored, some), score(model, some))


def test_scores_are_in_zero_one_and_scoring_in_chunks_changes_nothing(base, informative):
    _, model, _, _ = informative
    whole = score(model, base.iloc[:1000])
    chunked = score(model, base.iloc[:1000], chunk_size=97)
    assert whole.min() >= 0 and whole.max() <= 1
    np.testing.assert_allclose(whole, chunked)


def test_scoring_keeps_absent_preferences_missing_as_in_training(base, informative):
    # score() predicts on a dense chunk; an absent key must stay NaN there, not become 0.
    import xgboost as xgb

    _, model, _, _ = informative
    some = base.iloc[:300]
    matrix = model.encoder.transform(some)
    boosters = [xgb.Booster(model_file=bytearray(raw)) for raw in model.models]
    expected = np.mean([b.inplace_predict(matrix) for b in boosters], axis=0)
    np.testing.assert_allclose(score(model, some), expected, rtol=1e-6)


def test_progress_is_reported_from_zero_to_one(base):
    calls = []
    is_seed = kpop_youth_seed(base)
    model, _, _ = train(base.iloc[:3000], is_seed[:3000], folds=2, progress=lambda f, m: calls.append((f, m)))
    fractions = [f for f, _ in calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(calls) >= 3
    calls.clear()
    score(model, base.iloc[:500], chunk_size=200, progress=lambda f, m: calls.append((f, m)))
    assert [round(f, 1) for f, _ in calls] == [0.0, 0.4, 0.8, 1.0]


def tiny_model(seed_scores) -> Lookalike:
    return Lookalike(models=[], encoder=FeatureEncoder(), feature_names=[], holdout_auc=0.5, top_features=[],
                     seed_oof_scores=np.asarray(seed_scores, dtype=float), n_seed=len(seed_scores), n_negatives=0)


def test_size_curve_matches_a_hand_computation():
    # 20 non-seed customers scored 0.01 … 0.20; 4 seed members scored out of fold.
    nonseed = np.arange(1, 21) / 100
    model = tiny_model([0.195, 0.185, 0.05, 0.19])
    ten, twenty = size_curve(model, nonseed, pcts=(10, 20))
    # 10 % of 20 = 2 customers: 0.20 and 0.19; threshold 0.19; seed ≥ 0.19: 0.195, 0.19 -> 2 of 4.
    assert (ten["pct"], ten["size"], ten["threshold"]) == (10, 2, 0.19)
    assert ten["recall"] == 0.5
    assert ten["lift"] == pytest.approx(5.0)
    assert ten["precision"] == pytest.approx(2 / (2 + 2))  # 0.5·4 caught vs 0.1·20 others
    # 20 %: 4 customers, threshold 0.17; 3 of 4 seed ≥ 0.17.
    assert (twenty["size"], twenty["threshold"]) == (4, 0.17)
    assert twenty["recall"] == 0.75
    assert twenty["lift"] == pytest.approx(3.75)
    assert twenty["precision"] == pytest.approx(3 / (3 + 4))
    # Trained on 4 of a 40-member seed: precision counts the whole seed's look-alikes.
    (whole,) = size_curve(model, nonseed, pcts=(20,), n_seed=40)
    assert whole["recall"] == 0.75 and whole["precision"] == pytest.approx(30 / (30 + 4))


def test_size_curve_defaults_to_one_to_ten_percent():
    model = tiny_model(np.linspace(0, 1, 200))
    curve = size_curve(model, np.linspace(0, 1, 1000))
    assert [row["pct"] for row in curve] == list(range(1, 11))
    assert [row["size"] for row in curve] == list(range(10, 101, 10))
    recalls = [row["recall"] for row in curve]
    assert recalls == sorted(recalls)


def test_size_curve_rejects_sizes_outside_the_base():
    with pytest.raises(ValueError, match="between 0 and 100"):
        size_curve(tiny_model([0.5] * 3), np.ones(10), pcts=(0,))
    with pytest.raises(ValueError, match="nobody to pick"):
        size_curve(tiny_model([0.5] * 3), np.array([]))


def test_a_seed_under_one_hundred_is_refused(base):
    is_seed = np.zeros(len(base), dtype=bool)
    is_seed[:99] = True
    with pytest.raises(ValueError, match="at least 100 customers; this seed has 99"):
        train(base, is_seed)


def test_a_seed_of_everyone_is_refused(base):
    with pytest.raises(ValueError, match="nobody left to rank"):
        train(base.iloc[:150], np.ones(150, dtype=bool))


def test_flags_that_do_not_match_the_frame_are_refused(base):
    with pytest.raises(ValueError, match="is_seed has 10 flags but the frame has 6000 rows"):
        train(base, np.ones(10, dtype=bool))


def test_the_encoder_reads_numbers_categories_and_maps_readably():
    frame = pd.DataFrame({
        "customer_id": [1, 2, 3, 4, 5, 6],
        "plays_30d": [0, 3, 5, np.nan, 1, 2],
        "spend_90d": [Decimal("1.50"), None, Decimal("0"), Decimal("2"), Decimal("3"), Decimal("4")],
        "is_subscriber": [True, False, True, False, True, False],
        "region": ["south", "south", "north", None, "", "west"],
        "last_active_at": pd.to_datetime(["2024-01-01"] * 6),
        "genres": [{"hip-hop": 0.7, "pop": 0.3}, {"pop": 1.0}, {}, None, {"hip-hop": 1.0}, {"jazz": 1.0}],
    })
    encoder = FeatureEncoder.fit(frame, min_rows=2)
    assert encoder.feature_names == [
        "plays_30d", "spend_90d", "is_subscriber", "region = south", "region = other", "genres: hip-hop", "genres: pop",
    ]
    matrix = encoder.transform(frame)
    dense = matrix.toarray()
    # Zeros are stored (0 plays is known); NaN and None stay missing, absent keys too.
    assert 0 in matrix[0].indices and 1 in matrix[2].indices  # stored zeros: plays_30d, spend_90d
    assert 0 not in matrix[3].indices and 1 not in matrix[1].indices
    np.testing.assert_allclose(dense[0], [0, 1.5, 1, 1, 0, 0.7, 0.3])
    np.testing.assert_allclose(dense[2], [5, 0, 1, 0, 1, 0, 0])  # north is rare -> other
    assert 3 not in matrix[3].indices and 4 not in matrix[3].indices  # no region at all
    np.testing.assert_allclose(dense[5], [2, 4, 0, 0, 1, 0, 0])  # jazz is not in the vocabulary


def test_the_encoder_refuses_a_frame_without_the_trained_columns():
    frame = pd.DataFrame({"plays_30d": [1, 2, 3], "genres": [{"pop": 1.0}] * 3})
    encoder = FeatureEncoder.fit(frame, min_rows=1)
    with pytest.raises(ValueError, match="lacks the columns the model was trained on: genres"):
        encoder.transform(frame[["plays_30d"]])


def test_maps_left_as_json_text_are_refused_rather_than_read_as_empty():
    frame = pd.DataFrame({"plays_30d": [1, 2], "genres": ['{"pop": 1.0}', None]})
    with pytest.raises(ValueError, match="must hold {name: share} dicts, not str"):
        FeatureEncoder.fit(frame)
