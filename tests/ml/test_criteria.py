"""Criteria: information gain, gain ratio, Gini gain and symmetric uncertainty per feature (pure, no database)."""

import warnings

import numpy as np
import pandas as pd
import pytest

from ml.criteria import (
    contingency,
    entropy,
    gain_ratio,
    gini_gain,
    information_gain,
    levels_of,
    rank,
    select,
    symmetric_uncertainty,
    table_criteria,
)

# Quinlan's 14-day play-tennis table.
PLAY_TENNIS = pd.DataFrame({
    "outlook": "sunny sunny overcast rain rain rain overcast sunny sunny rain sunny overcast overcast rain".split(),
    "temperature": "hot hot hot mild cool cool cool mild cool mild mild mild hot mild".split(),
    "humidity": "high high high high normal normal normal high normal normal normal high normal high".split(),
    "wind": "weak strong weak weak weak strong strong weak weak weak strong strong weak strong".split(),
    "play": "no no yes yes yes no yes no yes yes yes yes yes no".split(),
})

# Worked by hand, logs in base 2; H(a, b) is the entropy of shares a, b.
# play: 9 yes, 5 no.  H(Y) = H(9/14, 5/14) = 0.940286;  Gini(Y) = 1 − (81 + 25)/196 = 90/196 = 0.459184.
#
# outlook: sunny 5 (2 yes, 3 no), overcast 4 (4, 0), rain 5 (3, 2).
#   H(Y|X) = 5/14·H(.4, .6) + 4/14·0 + 5/14·H(.6, .4) = 10/14 · 0.970951 = 0.693536
#   IG = 0.940286 − 0.693536 = 0.246750
#   H(X) = H(5/14, 4/14, 5/14) = 1.577406  →  GR = 0.246750 / 1.577406 = 0.156428
#   SU = 2 · 0.246750 / (1.577406 + 0.940286) = 0.196013
#   Gini: sunny and rain 1 − (4 + 9)/25 = 0.48, overcast 0  →  90/196 − 10/14 · 0.48 = 0.459184 − 0.342857 = 0.116327
# humidity: high 7 (3 yes, 4 no), normal 7 (6, 1).
#   H(Y|X) = ½ · (0.985228 + 0.591673) = 0.788450  →  IG = 0.151836;  H(X) = 1  →  GR = 0.151836
#   SU = 2 · 0.151836 / (1 + 0.940286) = 0.156508
#   Gini: high 1 − (9 + 16)/49 = 24/49, normal 1 − (36 + 1)/49 = 12/49  →  90/196 − ½ · 36/49 = 18/196 = 0.091837
# wind: weak 8 (6 yes, 2 no), strong 6 (3, 3).
#   H(Y|X) = 8/14 · 0.811278 + 6/14 · 1 = 0.892159  →  IG = 0.048127
#   H(X) = H(8/14, 6/14) = 0.985228  →  GR = 0.048849;  SU = 2 · 0.048127 / 1.925514 = 0.049989
#   Gini: weak 1 − (36 + 4)/64 = 0.375, strong 0.5  →  90/196 − (8/14 · 0.375 + 6/14 · 0.5) = 90/196 − 84/196 = 0.030612
# temperature: hot 4 (2 yes, 2 no), mild 6 (4, 2), cool 4 (3, 1).
#   H(Y|X) = 4/14 · 1 + 6/14 · 0.918296 + 4/14 · 0.811278 = 0.911063  →  IG = 0.029223
#   H(X) = H(4/14, 6/14, 4/14) = 1.556657  →  GR = 0.018773;  SU = 2 · 0.029223 / 2.496943 = 0.023407
#   Gini: hot 0.5, mild 1 − (16 + 4)/36 = 4/9, cool 1 − (9 + 1)/16 = 0.375
#         →  90/196 − (2/14 + 6/14 · 4/9 + 4/14 · 0.375) = 0.459184 − 0.440476 = 0.018707
EXPECTED = {
    "outlook": {"information_gain": 0.246750, "gain_ratio": 0.156428, "gini_gain": 0.116327, "symmetric_uncertainty": 0.196013},
    "humidity": {"information_gain": 0.151836, "gain_ratio": 0.151836, "gini_gain": 0.091837, "symmetric_uncertainty": 0.156508},
    "wind": {"information_gain": 0.048127, "gain_ratio": 0.048849, "gini_gain": 0.030612, "symmetric_uncertainty": 0.049989},
    "temperature": {"information_gain": 0.029223, "gain_ratio": 0.018773, "gini_gain": 0.018707, "symmetric_uncertainty": 0.023407},
}


@pytest.mark.parametrize("feature", list(EXPECTED))
def test_each_criterion_matches_the_hand_computed_play_tennis_table(feature):
    x, y = PLAY_TENNIS[feature], PLAY_TENNIS["play"]
    expected = EXPECTED[feature]
    assert information_gain(x, y) == pytest.approx(expected["information_gain"], abs=1e-6)
    assert gain_ratio(x, y) == pytest.approx(expected["gain_ratio"], abs=1e-6)
    assert gini_gain(x, y) == pytest.approx(expected["gini_gain"], abs=1e-6)
    assert symmetric_uncertainty(x, y) == pytest.approx(expected["symmetric_uncertainty"], abs=1e-6)


def test_entropy_is_in_bits():
    assert entropy([1, 1]) == pytest.approx(1.0)
    assert entropy([1, 1, 1, 1]) == pytest.approx(2.0)
    assert entropy([9, 5]) == pytest.approx(0.940286, abs=1e-6)
    assert entropy([0, 0]) == 0.0


def test_the_contingency_table_counts_rows_per_level_and_class():
    # Levels in order of appearance (sunny, overcast, rain); classes sorted (no, yes).
    assert contingency(PLAY_TENNIS["outlook"], PLAY_TENNIS["play"]).tolist() == [[3, 2], [0, 4], [2, 3]]


def test_a_numeric_feature_is_cut_into_quantile_bins():
    # bins=2 cuts 1…8 at the median 4.5: {1, 2, 3, 4} holds (3 zeros, 1 one), {5, 6, 7, 8} holds (1, 3).
    #   IG = H(½, ½) − H(¼, ¾) = 1 − 0.811278 = 0.188722;  H(X) = 1  →  GR = SU = 0.188722
    #   Gini: 0.5 − (1 − 1/16 − 9/16) = 0.5 − 0.375 = 0.125
    x = np.arange(1.0, 9.0)
    y = [0, 0, 0, 1, 0, 1, 1, 1]
    assert table_criteria(contingency(x, y, bins=2)) == pytest.approx(
        {"information_gain": 0.188722, "gain_ratio": 0.188722, "gini_gain": 0.125, "symmetric_uncertainty": 0.188722}, abs=1e-6
    )


def test_a_numeric_feature_with_few_values_keeps_one_level_per_value():
    codes, n_levels = levels_of(pd.Series([0.0, 1.0, 0.0, 1.0, np.nan]), bins=10)
    assert n_levels == 3  # 0, 1 and missing
    assert codes.tolist() == [0, 1, 0, 1, 2]


@pytest.mark.parametrize("missing", [None, np.nan])
def test_missing_values_are_a_level_of_their_own(missing):
    # Only the missing rows responded: missingness alone predicts the outcome, so IG = H(Y) = 1 bit.
    text = pd.Series(["a", "a", missing, missing], dtype=object)
    numbers = pd.Series([3.0, 3.0, np.nan, np.nan])
    y = [0, 0, 1, 1]
    for feature in (text, numbers):
        assert information_gain(feature, y) == pytest.approx(1.0)
        assert symmetric_uncertainty(feature, y) == pytest.approx(1.0)


@pytest.mark.parametrize("feature", [
    pd.Series(["x"] * 6),
    pd.Series([5.0] * 6),
    pd.Series([np.nan] * 6),
    pd.Series([None] * 6, dtype=object),
], ids=["constant text", "constant number", "all missing number", "all missing text"])
def test_a_constant_or_all_missing_feature_scores_zero_without_dividing_by_zero(feature):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a 0/0 would warn
        scores = table_criteria(contingency(feature, [0, 1, 1, 0, 1, 0]))
    assert scores == {"information_gain": 0.0, "gain_ratio": 0.0, "gini_gain": 0.0, "symmetric_uncertainty": 0.0}


def test_a_constant_outcome_leaves_nothing_to_explain():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scores = table_criteria(contingency(["a", "b", "c", "a"], [1, 1, 1, 1]))
    assert set(scores.values()) == {0.0}


def test_a_perfect_predictor_has_symmetric_uncertainty_one():
    y = PLAY_TENNIS["play"]
    mirror = y.map({"yes": "sun", "no": "rain"})
    assert information_gain(mirror, y) == pytest.approx(0.940286, abs=1e-6)
    assert gain_ratio(mirror, y) == pytest.approx(1.0)
    assert symmetric_uncertainty(mirror, y) == pytest.approx(1.0)
    assert gini_gain(mirror, y) == pytest.approx(90 / 196)


def test_a_feature_that_splits_each_class_further_is_penalised_by_symmetric_uncertainty():
    # It still removes all uncertainty (IG = H(Y)), but the outcome does not determine it.
    y = [0, 0, 1, 1]
    feature = ["a", "b", "c", "d"]
    assert information_gain(feature, y) == pytest.approx(1.0)
    assert gain_ratio(feature, y) == pytest.approx(0.5)  # 1 bit / H(X) = 2 bits
    assert symmetric_uncertainty(feature, y) == pytest.approx(2 / 3)  # 2 · 1 / (2 + 1)


def test_a_multi_class_outcome_is_scored_too():
    # Y = (x, y, z, z): H(Y) = H(¼, ¼, ½) = 1.5; level a holds (x, y): 1 bit, level b (z, z): 0.
    #   IG = 1.5 − ½ = 1;  H(X) = 1  →  GR = 1;  SU = 2 / 2.5 = 0.8
    #   Gini(Y) = 1 − (1/16 + 1/16 + 1/4) = 0.625;  Gini(a) = 0.5, Gini(b) = 0  →  0.625 − 0.25 = 0.375
    scores = table_criteria(contingency(["a", "a", "b", "b"], ["x", "y", "z", "z"]))
    assert scores == pytest.approx({"information_gain": 1.0, "gain_ratio": 1.0, "gini_gain": 0.375, "symmetric_uncertainty": 0.8})


def test_rank_sorts_the_features_best_first_and_leaves_the_outcome_out():
    ranking = rank(PLAY_TENNIS, "play", by="information_gain", spread_min_rows=1)
    assert ranking["feature"].tolist() == ["outlook", "humidity", "wind", "temperature"]
    assert list(ranking.columns) == [
        "feature", "bins", "information_gain", "gain_ratio", "gini_gain", "symmetric_uncertainty", "response_rate_spread",
    ]
    outlook = ranking.iloc[0]
    assert outlook["bins"] == 3
    assert outlook[["information_gain", "gain_ratio", "gini_gain", "symmetric_uncertainty"]].to_dict() == pytest.approx(
        EXPECTED["outlook"], abs=1e-6
    )
    # Share of "yes": sunny 2/5, overcast 4/4, rain 3/5  →  1 − 0.4.
    assert outlook["response_rate_spread"] == pytest.approx(0.6)


def test_rank_takes_the_outcome_as_values_and_by_any_criterion():
    features = PLAY_TENNIS.drop(columns=["play"])
    responded = (PLAY_TENNIS["play"] == "yes").to_numpy()
    ranking = rank(features, responded, by="gini_gain")
    assert ranking["feature"].tolist() == ["outlook", "humidity", "wind", "temperature"]
    assert ranking.attrs["by"] == "gini_gain"
    assert ranking["response_rate_spread"].isna().all()  # no level holds 30 rows


def test_rank_bins_numeric_columns_and_levels_ties_by_name():
    rng = np.random.default_rng(0)
    n = 2000
    frame = pd.DataFrame({
        "noise_b": rng.normal(size=n),
        "noise_a": rng.normal(size=n),
        "score": rng.uniform(size=n),
        "constant": np.ones(n),
        "flag": rng.random(n) < 0.5,
    })
    y = (rng.uniform(size=n) < frame["score"]).astype(int)
    ranking = rank(frame, y, bins=5)
    assert ranking["feature"].iloc[0] == "score"
    assert ranking.set_index("feature").loc["score", "bins"] == 5
    assert ranking.set_index("feature").loc["flag", "bins"] == 2
    assert ranking["feature"].iloc[-1] == "constant"
    # Rates rise from about 0.1 in the lowest fifth to about 0.9 in the highest.
    assert ranking.set_index("feature").loc["score", "response_rate_spread"] == pytest.approx(0.8, abs=0.08)


def test_rank_refuses_an_unknown_criterion_or_a_missing_outcome():
    with pytest.raises(ValueError, match="rank by one of"):
        rank(PLAY_TENNIS, "play", by="accuracy")
    with pytest.raises(ValueError, match="missing values"):
        rank(PLAY_TENNIS.drop(columns=["play"]), [1.0, np.nan] * 7)
    with pytest.raises(ValueError, match="no outcome column"):
        rank(PLAY_TENNIS, "clicked")


def test_select_keeps_the_top_k_or_those_above_a_threshold():
    ranking = rank(PLAY_TENNIS, "play", by="information_gain")
    assert select(ranking, k=2) == ["outlook", "humidity"]
    assert select(ranking, threshold=0.04) == ["outlook", "humidity", "wind"]
    assert select(ranking, k=1, threshold=0.04) == ["outlook"]
    assert select(ranking, threshold=0.1, by="gain_ratio") == ["outlook", "humidity"]
    assert select(ranking) == ["outlook", "humidity", "wind", "temperature"]
    assert select(ranking, threshold=1.0) == []


def test_rank_leaves_dates_out_unless_asked():
    frame = PLAY_TENNIS.assign(day=pd.date_range("2024-06-01", periods=14))
    assert "day" not in rank(frame, "play")["feature"].tolist()
