"""Stream forecasting (pure): the simulated lifecycle, features that never look ahead, and forecasts that beat the naive ones."""

import subprocess
import sys
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml import forecast
from ml.forecast import Forecaster, features, fit_cross_sectional, simulate_releases, train

HORIZONS = (7, 14)


@cache
def catalogue():
    """1,200 releases with 60 days known (the catalogue's history) and 400 new ones from the same lifecycle."""
    history_meta, history = simulate_releases(1200, seed=3, days=60)
    new_meta, new = simulate_releases(400, seed=4, days=60)
    return history_meta, history, new_meta, new


@cache
def forecaster() -> Forecaster:
    history_meta, history, _, _ = catalogue()
    return train(history, history_meta, horizons=HORIZONS, seed=0)


def mape(predicted, actual) -> float:
    return float(np.mean(np.abs(predicted - actual) / actual))


# ---------------------------------------------------------------------------------------- the simulator


def test_simulate_releases_is_deterministic_per_seed():
    meta_a, daily_a = simulate_releases(50, seed=11)
    meta_b, daily_b = simulate_releases(50, seed=11)
    _, daily_c = simulate_releases(50, seed=12)
    pd.testing.assert_frame_equal(meta_a, meta_b)
    np.testing.assert_array_equal(daily_a, daily_b)
    assert not np.array_equal(daily_a, daily_c)
    assert daily_a.shape == (50, 90)
    assert list(meta_a.columns[:9]) == ["release_id", "release_date", "genre", "artist_followers", "label_tier",
                                        "marketing", "tempo", "energy", "danceability"]
    assert all(c.startswith("true_") for c in meta_a.columns[9:])


def test_simulated_releases_peak_in_the_first_week_and_decay():
    _, daily, _, _ = catalogue()
    week1, week4 = daily[:, :7].sum(axis=1), daily[:, 21:28].sum(axis=1)
    assert np.median(week1 / week4) > 1.4  # about 1.8
    assert np.median(daily.argmax(axis=1)) <= 6


def test_most_releases_come_out_on_a_friday_and_play_more_at_weekends():
    meta, daily, _, _ = catalogue()
    assert (meta.release_date.dt.day_of_week == 4).mean() > 0.8
    fridays = daily[meta.release_date.dt.day_of_week.to_numpy() == 4]
    # Week 3 of a Friday release: days 14 (Fri) … 20 (Thu); Sat/Sun are days 15 and 16.
    weekend, weekdays = fridays[:, 15:17].mean(axis=1), fridays[:, [14, 17, 18, 19, 20]].mean(axis=1)
    assert np.median(weekend / weekdays) > 1.03


def test_chart_entries_and_playlist_adds_lift_plays_for_a_stretch():
    meta, daily, _, _ = catalogue()
    with_event = meta.index[(meta.true_event != "") & (meta.true_event_day.between(8, 45))].to_numpy()
    without = meta.index[meta.true_event == ""].to_numpy()
    assert len(with_event) > 50
    start = meta.true_event_day.to_numpy()

    def lift(rows, day):
        after = np.array([daily[r, d + 2:d + 9].sum() for r, d in zip(rows, day)])
        before = np.array([daily[r, d - 7:d].sum() for r, d in zip(rows, day)])
        return np.median(after / before)

    assert lift(with_event, start[with_event]) > 1.3
    assert lift(without, np.full(len(without), 20)) < 1.0  # the same window without an event: still decaying


# ------------------------------------------------------------------------------------------- features


def test_features_read_only_the_first_k_days():
    meta, daily, _, _ = catalogue()
    changed = daily.copy()
    changed[:, 7:] = np.random.default_rng(0).integers(0, 10**6, changed[:, 7:].shape)
    pd.testing.assert_frame_equal(features(daily, 7, meta), features(changed, 7, meta))
    model = forecaster()
    a, b = model.predict(daily[:20], 7, meta[:20]), model.predict(changed[:20], 7, meta[:20])
    for name in ("p10", "p50", "p90"):
        np.testing.assert_array_equal(a[name], b[name])


def test_features_fix_one_hot_levels_and_treat_missing_meta_as_unknown():
    meta, daily, _, _ = catalogue()
    x = features(daily[:3], 7, meta[:3], genres=["pop", "polka"], label_tiers=["major"])
    assert {"genre=pop", "genre=polka", "label_tier=major"} <= set(x.columns)
    assert x["genre=polka"].sum() == 0
    bare = features(daily[:3], 7, None)
    assert bare["danceability"].isna().all() and not bare["slope_log"].isna().any()


def test_features_refuse_a_prefix_shorter_than_the_horizon():
    with pytest.raises(ValueError, match="14 days"):
        features(np.ones((2, 10)), 14)


# ----------------------------------------------------------------------------------------- forecasting


@pytest.mark.parametrize("k", HORIZONS)
def test_forecast_beats_the_naive_baselines_on_new_releases(k):
    _, _, meta, daily = catalogue()
    model = forecaster()
    actual = daily[:, :60].sum(axis=1)
    cum_k = daily[:, :k].sum(axis=1)
    ours = mape(model.predict(daily[:, :k], k, meta)["p50"], actual)
    median_multiplier = mape(model.baseline(daily, k), actual)
    linear = mape(cum_k * 60 / k, actual)
    assert model.naive_kind[k] == "median_multiplier"
    assert ours / median_multiplier < 0.75  # about 0.5 at both horizons
    assert median_multiplier < linear
    assert ours < {7: 0.25, 14: 0.17}[k]  # about 0.17 and 0.11
    # Against the known (noise-free) curve too, not just the noisy realisation.
    truth = meta.true_cum60.to_numpy()
    assert mape(model.predict(daily, k, meta)["p50"], truth) < 0.75 * mape(model.baseline(daily, k), truth)


def test_the_report_names_the_baseline_and_holds_out_the_latest_releases():
    report = forecaster().report
    assert report["split"] == "time" and report["validation_releases"] == 240
    for k in HORIZONS:
        row = report["horizons"][str(k)]
        assert row["naive_baseline"] == "median_multiplier"
        assert row["naive_mape"] == row["naive_median_multiplier_mape"] < row["naive_linear_mape"]
        assert row["mape_ratio_vs_naive"] == pytest.approx(row["mape"] / row["naive_mape"])
        assert row["mape_ratio_vs_naive"] < 0.8
        assert row["importances"] and row["rounds"] > 10


def test_quantiles_are_ordered_and_the_80_percent_interval_covers_most_new_releases():
    _, _, meta, daily = catalogue()
    model = forecaster()
    actual = daily[:, :60].sum(axis=1)
    for k in HORIZONS:
        q = model.predict(daily, k, meta)
        assert (q["p10"] <= q["p50"]).all() and (q["p50"] <= q["p90"]).all()
        assert (q["p10"] >= daily[:, :k].sum(axis=1) - 1e-6).all()  # never fewer plays than already counted
        coverage = np.mean((q["p10"] <= actual) & (actual <= q["p90"]))
        assert 0.6 <= coverage <= 0.95, coverage


def test_the_curve_runs_from_the_plays_so_far_to_the_median_forecast():
    _, _, meta, daily = catalogue()
    model = forecaster()
    curve = model.curve(daily[:5], 7, meta[:5])
    assert curve.shape == (5, 54)  # days 7 … 60
    np.testing.assert_allclose(curve[:, 0], daily[:5, :7].sum(axis=1))
    np.testing.assert_allclose(curve[:, -1], model.predict(daily[:5], 7, meta[:5])["p50"])
    assert (np.diff(curve, axis=1) >= 0).all()


def test_a_stored_forecaster_predicts_identically():
    _, _, meta, daily = catalogue()
    model = forecaster()
    data = model.to_bytes()
    loaded = Forecaster.from_bytes(data)
    for k in HORIZONS:
        a, b = model.predict(daily, k, meta), loaded.predict(daily, k, meta)
        for name in a:
            np.testing.assert_array_equal(a[name], b[name])
        np.testing.assert_array_equal(model.baseline(daily, k), loaded.baseline(daily, k))
    assert loaded.report == model.report
    assert loaded.horizon_for(10) == 7 and loaded.horizon_for(40) == 14 and loaded.horizon_for(5) is None


def test_one_release_predicts_from_a_one_dimensional_prefix():
    _, _, meta, daily = catalogue()
    one = forecaster().predict(daily[0, :7], 7, meta[:1])
    assert one["p50"].shape == (1,)
    assert one["p50"][0] == forecaster().predict(daily[:1], 7, meta[:1])["p50"][0]


def test_training_without_release_dates_splits_at_random_and_without_meta_still_trains():
    meta, daily, _, _ = catalogue()
    model = train(daily[:300], None, horizons=(7,), seed=1, refit=False)
    assert model.report["split"] == "random" and model.report["validation_releases"] == 60
    assert model.predict(daily[300:310], 7)["p50"].shape == (10,)


def test_training_refuses_releases_younger_than_the_target_day():
    with pytest.raises(ValueError, match="60 days"):
        train(np.ones((100, 30)), None)


def test_importing_the_module_loads_no_xgboost():
    root = Path(__file__).resolve().parents[2]
    code = "import sys, ml.forecast; sys.exit('xgboost' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=root).returncode == 0


# ------------------------------------------------------------------------------------- cross-sectional


def test_cross_sectional_fit_finds_that_playlists_drive_streams():
    rng = np.random.default_rng(5)
    n = 400
    playlists = rng.lognormal(7, 1.2, n).round()
    frame = pd.DataFrame({
        "in_spotify_playlists": playlists,
        "in_spotify_charts": rng.integers(0, 50, n),
        "in_deezer_playlists": [f"{v:,}" for v in rng.integers(0, 3000, n)],  # thousands separators, as in the data
        "bpm": rng.integers(70, 180, n),
        "danceability_%": rng.integers(20, 95, n),
        "energy_%": rng.integers(20, 95, n),
        "mode": rng.choice(["Major", "Minor"], n),
        "streams": (2e4 * playlists ** 0.9 * rng.lognormal(0, 0.3, n)).round().astype(np.int64).astype(str),
    })
    frame.loc[n] = frame.loc[0]
    frame.loc[n, "streams"] = "BPM110KeyAModeMajor"  # the junk row the real data set has
    report = fit_cross_sectional(frame)
    assert report["rows"] == n and report["dropped_rows"] == 1
    assert report["importances"][0]["feature"] == "in_spotify_playlists"
    assert report["importances"][0]["importance"] > 0.8
    assert report["r2_cv"] > 0.8
    assert report["mape_cv"] < 0.5 * report["naive_median_mape"]
    assert report["naive_loglinear_slope"] == pytest.approx(0.9, abs=0.05)


def test_cross_sectional_fit_needs_streams_and_playlists():
    with pytest.raises(ValueError, match="streams"):
        fit_cross_sectional(pd.DataFrame({"bpm": [120] * 50}))


def test_numbers_strip_thousands_separators_and_junk():
    values = forecast._numbers(pd.Series(["1,093", "12", "BPM110", None]))
    assert values.tolist()[:2] == [1093.0, 12.0] and values[2:].isna().all()
