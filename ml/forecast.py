"""Stream forecasting: a release's cumulative plays at day 60, predicted from its first 3, 7, 14 or 30 days.

Pure numpy/pandas/xgboost (no Django; xgboost is imported inside the functions that need it).
audiences/tasks.py loads the catalogue's releases that have 60 days of plays, calls `train`, stores
`Forecaster.to_bytes()` as the artefact, and for each younger release calls `predict` and `curve`
with the largest trained horizon its days allow (`Forecaster.horizon_for`).

Why the model learns a multiplier. Releases span four orders of magnitude of plays, but their
lifecycles are alike: a launch peak in the first week, then a decay. What the first k days do not
say is how much is still to come, so each horizon's model learns

    y = log((cum_60 + 1) / (cum_k + 1)),

the log of the multiplier from day k to day 60 — close to scale-free, so a small indie single and a
superstar's album teach the same model — from features that are scale-free too (ratios, shapes,
slopes) plus the size and metadata that shift the curve (big fanbases listen at once and fade fast;
danceable tracks live on in playlists). The prediction is cum_k · multiplier: the part already
seen is never re-estimated.

Intervals. One xgboost model per horizon fits the 10 %, 50 % and 90 % quantiles of y at once
(`reg:quantileerror` with a vector `quantile_alpha`, xgboost ≥ 2.0). Trees fitted to quantiles
under-cover (about 72 % inside a nominal 80 % interval here), so the outer quantiles are moved by a
conformal margin learnt on releases the trees did not fit; then the three are sorted per row, since
separately learnt quantiles may cross, and clipped at 0 (a release cannot lose plays it has).

Threads. The data are small (thousands of releases), so xgboost runs on one thread by default: on a
busy two-core machine two threads made training three to ten times slower, not faster.

Baselines. A forecast is only worth its keep if it beats the obvious ones:
(a) linear extrapolation, cum_k · 60/k — what a spreadsheet does; blind to decay, it over-forecasts
    every release that peaked early;
(b) the historical median multiplier, cum_k · median(cum_60/cum_k) over the training releases —
    knows that releases decay, not which ones decay faster: the stronger naive forecast.
`train` reports both; `mape_ratio_vs_naive` is our MAPE over the *better* of the two on the
validation releases (named in `naive_baseline`), and `Forecaster.baseline` gives that one's forecast.

`simulate_releases` is the release lifecycle of the demo catalogue (the Django simulator calls it):
launch level driven by the artist's followers, label and marketing; a ramp to a first-week peak,
then a mix of a fast exponential and a power-law decay; weekend seasonality; playlist adds and chart
entries that lift plays for a stretch and then drop off; rare viral late bloomers; gamma-Poisson
(negative-binomial) day noise on a slowly drifting level. Genre, audio descriptors and followers shift
the curve in the documented ways below, so a model that learns them has something real to find.

`fit_cross_sectional` is the other half of the question on real data: the Spotify 2023 data set has
no daily series, only each track's total streams, so it asks how far playlist / chart reach and audio
features explain total streams (5-fold cross-validated), against a median and a one-variable fit.
"""

from __future__ import annotations

import io
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

TARGET_DAY = 60
HORIZONS = (3, 7, 14, 30)
QUANTILES = (0.1, 0.5, 0.9)
WEEKEND = (5, 6)  # Saturday, Sunday (Monday = 0)
FRIDAY = 4  # release day of most music since 2015 ("New Music Friday"): assumed when no release date is known

GENRES = ("pop", "hip-hop", "rock", "electronic", "k-pop", "indie", "latin", "jazz")
LABEL_TIERS = ("major", "indie", "self")
META_NUMERIC = ("artist_followers", "marketing", "tempo", "energy", "danceability")

Progress = Callable[[float, str], None]

# ------------------------------------------------------------------------------------------- simulator

# Per genre: share of releases, launch-level multiplier, power-law tail exponent β (higher: faster decay),
# weekend lift, and typical danceability / energy. K-pop's fandoms stream at once and move on (high β);
# jazz and indie are slow burners (low β); electronic and latin are weekend music.
_GENRE_TRUTH = {
    #              share level  beta  weekend dance energy
    "pop":        (0.22, 1.00, 0.75, 0.10, 0.65, 0.65),
    "hip-hop":    (0.20, 1.10, 0.90, 0.14, 0.75, 0.60),
    "rock":       (0.11, 0.70, 0.60, 0.04, 0.45, 0.75),
    "electronic": (0.12, 0.80, 0.65, 0.30, 0.75, 0.80),
    "k-pop":      (0.06, 1.30, 1.10, 0.04, 0.70, 0.75),
    "indie":      (0.12, 0.50, 0.45, 0.00, 0.50, 0.50),
    "latin":      (0.11, 0.90, 0.65, 0.24, 0.80, 0.70),
    "jazz":       (0.06, 0.30, 0.35, -0.04, 0.40, 0.35),
}
_LABEL_TRUTH = {"major": (0.25, 1.6), "indie": (0.45, 1.0), "self": (0.30, 0.6)}  # share, level multiplier


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def simulate_releases(n: int, *, seed: int, days: int = 90, start: str = "2023-01-06",
                      span_days: int = 3 * 365) -> tuple[pd.DataFrame, np.ndarray]:
    """`n` releases with `days` days of plays each, from a lifecycle with known parts: (meta, daily [n, days]).

    Day 0 of row i is `meta.release_date[i]` (85 % of releases come out on a Friday, spread over
    `span_days` from `start`). Meta columns: release_id, release_date, genre, artist_followers,
    label_tier (major / indie / self), marketing (launch budget, thousands), tempo (BPM), energy and
    danceability (0–1), plus the hidden truths `true_*` a test or the demo may check against.

    How the metadata shape the curve (the "known" part a model can learn):
    - launch level ∝ followers^0.7 × label × genre × (1 + 0.25·log(1 + marketing)) × (0.8 + 0.4·danceability);
    - share of the fast launch spike (front-loading) grows with followers and marketing — fans
      listen in week one and move on;
    - the power-law tail exponent β is the genre's, plus 0.12 per decade of followers above 10^4.5,
      minus 0.6·(danceability − 0.5) and 0.4·(energy − 0.5), minus 0.12 near 122 BPM (playlist tempo);
    - weekend lift is the genre's plus 0.3·(danceability − 0.5);
    - a playlist add is likelier for danceable tracks on bigger labels; a chart entry for big launches.
    And the parts no model can foresee: the slow level drift, the day noise, and most of a viral
    late bloom (2 %: plays climb by 1–4× the launch level after day 10, then fade with a 45-day half-life).
    """
    if n < 1 or days < 1:
        raise ValueError("n and days must be at least 1")
    rng = np.random.default_rng(seed)
    names = list(_GENRE_TRUTH)
    truth = np.array([_GENRE_TRUTH[g] for g in names])
    g = rng.choice(len(names), size=n, p=truth[:, 0] / truth[:, 0].sum())
    tiers = list(_LABEL_TRUTH)
    t_share = np.array([_LABEL_TRUTH[t][0] for t in tiers])
    tier = rng.choice(len(tiers), size=n, p=t_share / t_share.sum())
    label_mult = np.array([_LABEL_TRUTH[t][1] for t in tiers])[tier]

    log_followers = np.clip(rng.normal(4.3, 1.0, n) + 0.5 * (tier == 0) - 0.4 * (tier == 2), 2.0, 7.5)
    followers = np.round(10 ** log_followers).astype(np.int64)
    # Majors nearly always pay for a launch; self-released artists mostly do not.
    spends = rng.random(n) < np.array([0.9, 0.55, 0.2])[tier]
    marketing = np.where(spends, np.round(rng.lognormal(np.array([3.5, 2.0, 0.5])[tier], 0.8), 1), 0.0)
    danceability = np.clip(rng.normal(truth[g, 4], 0.12), 0.05, 0.98)
    energy = np.clip(rng.normal(truth[g, 5], 0.13), 0.05, 0.99)
    tempo = np.round(np.clip(rng.normal(np.where(truth[g, 4] > 0.6, 120, 105), 22), 60, 200), 1)

    # Release dates: a random week, mostly its Friday.
    first = pd.Timestamp(start).normalize()
    first -= pd.Timedelta(days=(first.weekday() - FRIDAY) % 7)
    week = rng.integers(0, max(1, span_days // 7), n)
    weekday = np.where(rng.random(n) < 0.85, FRIDAY, rng.integers(0, 7, n))
    offset = week * 7 + (weekday - FRIDAY)
    release_date = first + pd.to_timedelta(offset, unit="D")
    weekday = (FRIDAY + offset) % 7

    # Launch level (expected plays a day at the peak of the organic curve).
    level = (0.8 * followers ** 0.7 * label_mult * truth[g, 1] * (1 + 0.25 * np.log1p(marketing))
             * (0.8 + 0.4 * danceability) * rng.lognormal(0.0, 0.45, n) + 20.0)
    # Ramp to the peak: marketing and big fanbases (pre-saves) make day 0 the peak; small artists build up.
    ramp = np.clip(rng.lognormal(0.3, 0.5, n) * (1.3 - 0.15 * (log_followers - 4.3)) / (1 + 0.1 * np.log1p(marketing)),
                   0.15, 6.0)
    spike = _sigmoid(-0.6 + 0.55 * (log_followers - 4.5) + 0.25 * np.log1p(marketing) + rng.normal(0, 0.4, n))
    tau = rng.uniform(1.5, 4.5, n)
    beta = np.clip(truth[g, 2] + 0.12 * (log_followers - 4.5) - 0.6 * (danceability - 0.5) - 0.4 * (energy - 0.5)
                   - 0.12 * np.exp(-(((tempo - 122) / 15) ** 2)) + rng.normal(0, 0.1, n), 0.12, 1.8)
    weekend_lift = truth[g, 3] + 0.3 * (danceability - 0.5) + rng.normal(0, 0.04, n)

    t = np.arange(days, dtype=np.float64)[None, :]
    organic = ((1 - np.exp(-(t + 1) / ramp[:, None]))
               * (spike[:, None] * np.exp(-t / tau[:, None]) + (1 - spike[:, None]) * (1 + t / 7.0) ** -beta[:, None]))
    organic /= organic.max(axis=1, keepdims=True)
    expected = level[:, None] * organic

    # One lift event at most: a chart entry (big early launches) or a playlist add (danceable, labelled).
    p_chart = _sigmoid(-4.2 + 0.9 * (np.log10(level) - 3.0) + 0.5 * (tier == 0))
    p_playlist = _sigmoid(-1.9 + 3.0 * (danceability - 0.6) + 0.6 * (tier == 0) - 0.5 * (tier == 2))
    u = rng.random(n)
    kind = np.where(u < p_chart, "chart", np.where(u < p_chart + (1 - p_chart) * p_playlist, "playlist", ""))
    event_day = np.where(kind == "chart", rng.integers(2, 15, n), rng.integers(5, 50, n))
    event_days = np.where(kind == "chart", rng.integers(7, 29, n), rng.integers(14, 46, n))
    event_lift = np.where(kind == "chart", rng.uniform(0.3, 1.0, n), rng.lognormal(np.log(0.9), 0.5, n))
    event_lift = np.where(kind == "", 0.0, event_lift)
    half_life = rng.uniform(2.0, 6.0, n)
    rows = np.flatnonzero(kind != "")
    at = expected[rows, np.minimum(event_day[rows], days - 1)]
    since = t - event_day[rows, None]
    inside = np.clip((since + 1) / 2.0, 0.0, 1.0)  # two days to reach full effect
    after = np.where(since > event_days[rows, None], 0.5 ** ((since - event_days[rows, None]) / half_life[rows, None]),
                     1.0)
    lift = event_lift[rows, None] * at[:, None] * inside * after
    # After the drop-off a little of the lift stays (listeners who saved the track).
    lift += 0.1 * event_lift[rows, None] * at[:, None] * (since > event_days[rows, None])
    expected[rows] += lift

    # Viral late bloomers: a logistic climb to 1–4× the launch level, mostly after the forecast horizons.
    viral = rng.random(n) < 0.02
    viral_day = np.where(viral, rng.integers(10, 75, n), -1)
    viral_lift = np.where(viral, rng.uniform(1.0, 4.0, n), 0.0)
    vr = np.flatnonzero(viral)
    climb = _sigmoid((t - viral_day[vr, None] - 4.0) / 1.5) * 0.5 ** (np.clip(t - viral_day[vr, None], 0, None) / 45.0)
    expected[vr] += viral_lift[vr, None] * level[vr, None] * climb

    weekend = np.isin((weekday[:, None] + np.arange(days)[None, :]) % 7, WEEKEND)
    expected *= 1 + weekend_lift[:, None] * weekend
    true_cum60 = expected[:, :TARGET_DAY].sum(axis=1) if days >= TARGET_DAY else np.full(n, np.nan)

    # Noise no model can foresee: a slow AR(1) drift of the level (log scale) and gamma-Poisson day noise.
    drift = np.zeros((n, days))
    shocks = rng.normal(0.0, 0.05, (n, days))
    for d in range(1, days):
        drift[:, d] = 0.9 * drift[:, d - 1] + shocks[:, d]
    mean = expected * np.exp(drift - 0.5 * 0.05 ** 2 / (1 - 0.81))
    dispersion = 40.0
    daily = rng.poisson(mean * rng.gamma(dispersion, 1.0 / dispersion, (n, days))).astype(np.float64)

    meta = pd.DataFrame({
        "release_id": np.arange(1, n + 1),
        "release_date": release_date,
        "genre": np.array(names)[g],
        "artist_followers": followers,
        "label_tier": np.array(tiers)[tier],
        "marketing": marketing,
        "tempo": tempo,
        "energy": np.round(energy, 3),
        "danceability": np.round(danceability, 3),
        "true_level": level,
        "true_ramp": ramp,
        "true_spike": spike,
        "true_tau": tau,
        "true_beta": beta,
        "true_weekend_lift": weekend_lift,
        "true_event": kind,
        "true_event_day": np.where(kind == "", -1, event_day),
        "true_event_days": np.where(kind == "", 0, event_days),
        "true_event_lift": event_lift,
        "true_viral_day": viral_day,
        "true_viral_lift": viral_lift,
        "true_cum60": true_cum60,
    })
    return meta, daily


# -------------------------------------------------------------------------------------------- features


def _prefix(daily, k: int) -> np.ndarray:
    """The first k days as a float matrix [n, k]; a 1-D array is one release."""
    d = np.asarray(daily, dtype=np.float64)
    if d.ndim == 1:
        d = d[None, :]
    if d.ndim != 2:
        raise ValueError(f"daily plays must be a matrix [releases, days], got shape {d.shape}")
    if k < 3:
        raise ValueError(f"a forecast needs at least 3 days of plays, not {k}")
    if d.shape[1] < k:
        raise ValueError(f"{k} days of plays are needed, these releases have {d.shape[1]}")
    d = d[:, :k]
    if not np.isfinite(d).all() or (d < 0).any():
        raise ValueError("daily plays must be finite and non-negative")
    return d


def _meta(meta: pd.DataFrame | None, n: int) -> pd.DataFrame:
    if meta is None:
        return pd.DataFrame(index=range(n))
    if len(meta) != n:
        raise ValueError(f"meta has {len(meta)} rows for {n} releases")
    return meta.reset_index(drop=True)


def _weekday0(meta: pd.DataFrame) -> np.ndarray:
    """Weekday of each release's day 0 (Monday = 0): from release_date, else the usual Friday."""
    if "release_date" not in meta:
        return np.full(len(meta), FRIDAY)
    dates = pd.to_datetime(meta["release_date"], errors="coerce")
    return dates.dt.day_of_week.fillna(FRIDAY).to_numpy(dtype=np.int64)


def _slope(y: np.ndarray) -> np.ndarray:
    """Least-squares slope of each row of y against 0, 1, …, columns − 1."""
    x = np.arange(y.shape[1], dtype=np.float64)
    x -= x.mean()
    return (y - y.mean(axis=1, keepdims=True)) @ x / (x @ x)


def _slope_since(y: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Per row, the least-squares slope of y over columns start..end (NaN with fewer than 3 points)."""
    x = np.arange(y.shape[1], dtype=np.float64)[None, :]
    mask = x >= start[:, None]
    count = mask.sum(axis=1)
    safe = np.maximum(count, 1)
    xbar = (x * mask).sum(axis=1) / safe
    ybar = (y * mask).sum(axis=1) / safe
    dx = (x - xbar[:, None]) * mask
    denominator = (dx * dx).sum(axis=1)
    slope = (dx * (y - ybar[:, None])).sum(axis=1) / np.where(denominator > 0, denominator, 1.0)
    return np.where(count >= 3, slope, np.nan)


def features(daily, k: int, meta: pd.DataFrame | None = None, *, genres: Sequence[str] | None = None,
             label_tiers: Sequence[str] | None = None) -> pd.DataFrame:
    """One row of model input per release, from its first `k` days of plays (nothing later is read) and its meta.

    Scale-free shape features (plays relative to the prefix's mean day, so a small and a big
    release with the same lifecycle look alike) next to the size (log of cum_k) and the metadata.
    `genres` / `label_tiers` fix the one-hot levels (a trained Forecaster passes its own, so a
    genre it never saw is all zeros); by default the levels present in `meta`. Meta columns that
    are missing become NaN (xgboost treats them as unknown).
    """
    d = _prefix(daily, k)
    n = len(d)
    m = _meta(meta, n)
    cum = d.sum(axis=1)
    mean_day = np.maximum(cum / k, 1e-9)
    rel = d / mean_day[:, None]
    logd = np.log1p(d)
    out: dict[str, np.ndarray] = {"log_cum": np.log1p(cum), "log_mean_day": np.log1p(cum / k)}
    for j in range(1, 8):  # the last 7 days, relative to the mean day (NaN where the prefix is shorter)
        out[f"lag{j}"] = rel[:, k - j] if j <= k else np.full(n, np.nan)
    first3, last3 = d[:, :3].sum(axis=1), d[:, -3:].sum(axis=1)
    out["last3_over_first3"] = (last3 + 1) / (first3 + 1)
    peak = d.max(axis=1)
    out["last_over_peak"] = (d[:, -1] + 1) / (peak + 1)
    out["ma3_over_peak"] = (d[:, -3:].mean(axis=1) + 1) / (peak + 1)
    third = max(1, math.ceil(k / 3))
    out["last_third_share"] = d[:, -third:].sum(axis=1) / np.maximum(cum, 1e-9)
    out["ma3"] = rel[:, -3:].mean(axis=1)
    out["ma7"] = rel[:, -min(7, k):].mean(axis=1)
    out["ma7_over_ma3"] = (d[:, -min(7, k):].mean(axis=1) + 1) / (d[:, -3:].mean(axis=1) + 1)
    out["first_day_share"] = d[:, 0] / np.maximum(cum, 1e-9)
    out["slope_log"] = _slope(logd)
    out["slope_log_last7"] = _slope(logd[:, -min(7, k):])
    out["slope_log_since_peak"] = _slope_since(logd, d.argmax(axis=1))
    out["days_since_peak"] = (k - 1 - d.argmax(axis=1)).astype(np.float64)
    out["peak_day"] = d.argmax(axis=1).astype(np.float64)
    # Weekend share: weekend plays per weekend day over plays per weekday (the release's weekend lift),
    # and how many weekend days lie between day k and the target (known in advance).
    w0 = _weekday0(m)
    is_weekend = np.isin((w0[:, None] + np.arange(k)[None, :]) % 7, WEEKEND)
    we_days, wd_days = is_weekend.sum(axis=1), (~is_weekend).sum(axis=1)
    we = np.where(we_days > 0, (d * is_weekend).sum(axis=1) / np.maximum(we_days, 1), np.nan)
    wd = np.where(wd_days > 0, (d * ~is_weekend).sum(axis=1) / np.maximum(wd_days, 1), np.nan)
    out["weekend_share"] = (d * is_weekend).sum(axis=1) / np.maximum(cum, 1e-9)
    out["weekend_ratio"] = (we + 1) / (wd + 1)
    ahead = np.isin((w0[:, None] + np.arange(k, TARGET_DAY)[None, :]) % 7, WEEKEND)
    out["weekend_days_ahead"] = ahead.sum(axis=1).astype(np.float64)

    def number(column: str) -> np.ndarray:
        if column not in m:
            return np.full(n, np.nan)
        return pd.to_numeric(m[column], errors="coerce").to_numpy(dtype=np.float64)

    out["log_followers"] = np.log10(np.maximum(number("artist_followers"), 1.0))
    out["log_marketing"] = np.log1p(np.maximum(number("marketing"), 0.0))
    for column in ("tempo", "energy", "danceability"):
        out[column] = number(column)
    out["cum_per_follower"] = np.log1p(cum) - np.log1p(np.maximum(number("artist_followers"), 0.0))
    for column, levels in (("genre", genres), ("label_tier", label_tiers)):
        values = m[column].astype("string").str.strip().str.lower() if column in m else pd.Series([pd.NA] * n, dtype="string")
        levels = sorted(values.dropna().unique()) if levels is None else list(levels)
        for level in levels:
            out[f"{column}={level}"] = (values == level).fillna(False).to_numpy(dtype=np.float64)
    return pd.DataFrame(out)


# ------------------------------------------------------------------------------------------- the model


def _name(q: float) -> str:
    return f"p{round(q * 100)}"


def _ape(predicted: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """Absolute percentage errors (as fractions); releases with no plays at all are left out."""
    keep = actual > 0
    return np.abs(predicted[keep] - actual[keep]) / actual[keep]


def _metrics(predicted: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    ape = _ape(predicted, actual)
    return {"mape": float(ape.mean()), "mdape": float(np.median(ape))}


@dataclass
class Forecaster:
    """One quantile model per horizon, with what predictions, baselines and charts need; stored by `to_bytes`.

    `boosters[k]` is the raw UBJSON of horizon k's xgboost model (version-stable, no pickle);
    `median_multiplier[k]` the training releases' median (cum_T + 1)/(cum_k + 1); `shape[k]` the median
    path of a release from day k to day T, as a share of its growth (0 at k, 1 at T); `naive_kind[k]`
    the naive baseline that did better on the validation releases ("median_multiplier" or "linear");
    `widen[k]` the conformal correction of the outer quantiles (log scale, see `train`).
    """

    horizons: tuple[int, ...]
    quantiles: tuple[float, ...]
    target_day: int
    genres: list[str]
    label_tiers: list[str]
    feature_names: dict[int, list[str]]
    boosters: dict[int, bytes]
    median_multiplier: dict[int, float]
    naive_kind: dict[int, str]
    shape: dict[int, list[float]]
    widen: dict[int, float]
    report: dict
    _models: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def horizon_for(self, days_seen: int) -> int | None:
        """The largest trained horizon a release with `days_seen` days of plays can use (None: too young)."""
        usable = [k for k in self.horizons if k <= days_seen]
        return max(usable) if usable else None

    def _booster(self, k: int):
        if k not in self.boosters:
            raise ValueError(f"no model for {k} days; trained horizons: {list(self.horizons)}")
        if k not in self._models:
            import xgboost

            booster = xgboost.Booster()
            booster.load_model(bytearray(self.boosters[k]))
            self._models[k] = booster
        return self._models[k]

    def _multipliers(self, daily_prefix, k: int, meta: pd.DataFrame | None) -> tuple[np.ndarray, np.ndarray]:
        """(cum_k, sorted log-multiplier quantiles [n, len(quantiles)])."""
        booster = self._booster(k)
        x = features(daily_prefix, k, meta, genres=self.genres, label_tiers=self.label_tiers)
        if list(x.columns) != self.feature_names[k]:
            raise RuntimeError("the features no longer match the ones this model was trained on: retrain it")
        q = np.asarray(booster.inplace_predict(x.to_numpy(dtype=np.float32)), dtype=np.float64).reshape(len(x), -1)
        return _prefix(daily_prefix, k).sum(axis=1), _calibrated(q, self.widen[k])

    def predict(self, daily_prefix, k: int, meta: pd.DataFrame | None = None) -> dict[str, np.ndarray]:
        """Cumulative plays at the target day, {"p10", "p50", "p90"} (one array entry per release), from k days.

        `daily_prefix`: [n, ≥ k] plays per day since release (a 1-D array is one release); only the
        first k days are read. `meta`: one row per release (columns as in `simulate_releases`; any may
        be missing).
        """
        cum, q = self._multipliers(daily_prefix, k, meta)
        forecast = (cum[:, None] + 1) * np.exp(q) - 1
        return {_name(a): forecast[:, i] for i, a in enumerate(self.quantiles)}

    def baseline(self, daily_prefix, k: int) -> np.ndarray:
        """The naive forecast `mape_ratio_vs_naive` was measured against (see `naive_kind`)."""
        cum = _prefix(daily_prefix, k).sum(axis=1)
        if self.naive_kind[k] == "linear":
            return cum * self.target_day / k
        return (cum + 1) * self.median_multiplier[k] - 1

    def curve(self, daily_prefix, k: int, meta: pd.DataFrame | None = None, *, quantile: float = 0.5) -> np.ndarray:
        """Expected cumulative plays on days k, k + 1, …, T: [n, T − k + 1], for the item page's chart.

        The median path of the training releases from day k to T, scaled to go from the release's
        actual cum_k to its forecast at T (the `quantile` one; 0.5 by default).
        """
        forecast = self.predict(daily_prefix, k, meta)[_name(quantile)]
        cum = _prefix(daily_prefix, k).sum(axis=1)
        share = np.asarray(self.shape[k])
        return cum[:, None] + share[None, :] * (forecast - cum)[:, None]

    # -- storage ------------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """A compressed .npz: the state as JSON and each booster's raw UBJSON (loads with allow_pickle=False)."""
        state = {"horizons": list(self.horizons), "quantiles": list(self.quantiles), "target_day": self.target_day,
                 "genres": self.genres, "label_tiers": self.label_tiers,
                 "feature_names": {str(k): v for k, v in self.feature_names.items()},
                 "median_multiplier": {str(k): v for k, v in self.median_multiplier.items()},
                 "naive_kind": {str(k): v for k, v in self.naive_kind.items()},
                 "shape": {str(k): v for k, v in self.shape.items()},
                 "widen": {str(k): v for k, v in self.widen.items()}, "report": self.report}
        arrays = {f"booster_{k}": np.frombuffer(raw, dtype=np.uint8) for k, raw in self.boosters.items()}
        buffer = io.BytesIO()
        np.savez_compressed(buffer, state=np.array(json.dumps(state)), **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Forecaster:
        with np.load(io.BytesIO(data), allow_pickle=False) as stored:
            state = json.loads(str(stored["state"]))
            boosters = {int(name.removeprefix("booster_")): stored[name].tobytes()
                        for name in stored.files if name.startswith("booster_")}

        def by_horizon(d: dict) -> dict:
            return {int(k): v for k, v in d.items()}

        return cls(horizons=tuple(state["horizons"]), quantiles=tuple(state["quantiles"]), target_day=state["target_day"],
                   genres=state["genres"], label_tiers=state["label_tiers"],
                   feature_names=by_horizon(state["feature_names"]), boosters=boosters,
                   median_multiplier=by_horizon(state["median_multiplier"]), naive_kind=by_horizon(state["naive_kind"]),
                   shape=by_horizon(state["shape"]), widen=by_horizon(state["widen"]), report=state["report"])


# Slowly learnt shallow trees: the multiplier depends smoothly on a handful of shape features, and
# day noise is large next to it. Rounds are chosen by early stopping on a slice of the training rows.
PARAMS = {"eta": 0.03, "max_depth": 4, "min_child_weight": 10, "subsample": 0.8, "colsample_bynode": 0.8,
          "lambda": 1.0, "tree_method": "hist", "max_bin": 128}
MAX_ROUNDS = 2000


def _calibrated(q: np.ndarray, widen: float) -> np.ndarray:
    """Log-multiplier quantiles [n, m] made usable: outer ones moved by the conformal margin, sorted, ≥ 0.

    Separately learnt quantiles can cross (sorting fixes it without moving the set of values), and a
    release cannot lose plays it already has (so no multiplier below 1).
    """
    q = np.array(q, dtype=np.float64).reshape(len(q), -1)
    q[:, 0] -= widen
    q[:, -1] += widen
    return np.clip(np.sort(q, axis=1), 0.0, None)


def _conformal(q: np.ndarray, y: np.ndarray, coverage: float) -> float:
    """Conformalised quantile regression (Romano et al. 2019): the margin that makes [q_lo, q_hi] cover `coverage`.

    Scores are how far each calibration release's outcome lies outside its interval (negative
    inside); the margin is their ⌈(n + 1)·coverage⌉-th smallest, added to both ends.
    """
    q = np.sort(q, axis=1)
    scores = np.sort(np.maximum(q[:, 0] - y, y - q[:, -1]))
    rank = min(len(scores), math.ceil((len(scores) + 1) * coverage)) - 1
    return float(scores[rank])


def _split(meta: pd.DataFrame, n: int, share: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, str]:
    """(train rows, validation rows, how): the latest releases by release_date when every row has one, else at random."""
    n_valid = max(1, int(round(n * share)))
    if "release_date" in meta:
        dates = pd.to_datetime(meta["release_date"], errors="coerce")
        if dates.notna().all():
            order = np.argsort(dates.to_numpy(), kind="stable")
            return np.sort(order[:-n_valid]), np.sort(order[-n_valid:]), "time"
    order = rng.permutation(n)
    return np.sort(order[:-n_valid]), np.sort(order[-n_valid:]), "random"


def _shape(cum: np.ndarray, k: int, target_day: int) -> list[float]:
    """Median share of the growth from day k to the target reached by each day in between (0 … 1, monotone)."""
    start, end = cum[:, k - 1:k], cum[:, target_day - 1:target_day]
    grown = (end - start)[:, 0] > 0
    share = (cum[grown, k - 1:target_day] - start[grown]) / (end - start)[grown]
    path = np.maximum.accumulate(np.median(share, axis=0)) if grown.any() else np.linspace(0, 1, target_day - k + 1)
    path[0], path[-1] = 0.0, 1.0
    return [round(float(v), 6) for v in np.clip(path, 0, 1)]


def _fit(x: np.ndarray, y: np.ndarray, quantiles: Sequence[float], seed: int, n_jobs: int, *,
         rounds: int | None = None, early: tuple[np.ndarray, np.ndarray] | None = None):
    import xgboost

    params = {**PARAMS, "objective": "reg:quantileerror", "quantile_alpha": np.array(quantiles), "seed": seed,
              "nthread": n_jobs}
    train_set = xgboost.DMatrix(x, label=y)
    if early is None:
        return xgboost.train(params, train_set, num_boost_round=rounds or MAX_ROUNDS)
    stop_set = xgboost.DMatrix(early[0], label=early[1])
    return xgboost.train(params, train_set, num_boost_round=MAX_ROUNDS, evals=[(stop_set, "stop")],
                         early_stopping_rounds=100, verbose_eval=False)


def _importances(booster, names: list[str], top: int = 12) -> list[dict]:
    gains = np.zeros(len(names))
    for key, gain in booster.get_score(importance_type="total_gain").items():
        gains[int(key[1:])] += gain  # unnamed features are "f<index>"
    shares = gains / gains.sum() if gains.sum() > 0 else gains
    order = [i for i in np.argsort(-gains, kind="stable")[:top] if gains[i] > 0]
    return [{"feature": names[i], "importance": round(float(shares[i]), 4)} for i in order]


def train(daily, meta: pd.DataFrame | None, *, horizons: Sequence[int] = HORIZONS, target_day: int = TARGET_DAY,
          quantiles: Sequence[float] = QUANTILES, seed: int = 0, validation_share: float = 0.2, refit: bool = True,
          n_jobs: int = 1, progress: Progress | None = None) -> Forecaster:
    """Per horizon k, a quantile model of log((cum_T + 1)/(cum_k + 1)) from the first k days; returns the Forecaster.

    `daily`: [n, ≥ target_day] plays per day since release of releases old enough to know their
    outcome; `meta`: one row per release. The latest `validation_share` of releases by release_date
    (at random, seeded, when dates are missing) are held out and scored: per horizon MAPE and MdAPE of
    the p50 forecast, the share of releases inside the outer quantiles' interval (80 % for 10–90 %)
    and its median relative width, both naive baselines' MAPE and `mape_ratio_vs_naive` — ours over
    the better of the two (named in `naive_baseline`). Tree counts come from early stopping on a
    seeded 15 % of the training releases, so the validation releases stay unseen; the same slice
    calibrates the interval (conformalised quantile regression: the outer quantiles are moved out, or
    in, by the margin that makes them cover hi − lo of it — trees fitted to quantiles tend to
    under-cover, ~72 % for a nominal 80 % on the simulator). With `refit`, the
    stored models, median multipliers and curve shapes are then refit on every release.
    """
    started = time.perf_counter()
    report_progress = progress or (lambda fraction, message: None)
    horizons = tuple(sorted({int(k) for k in horizons}))
    quantiles = tuple(sorted(float(q) for q in quantiles))
    if 0.5 not in quantiles or len(quantiles) < 3 or not all(0 < q < 1 for q in quantiles):
        raise ValueError("quantiles must lie in (0, 1), include 0.5 and an interval around it, e.g. (0.1, 0.5, 0.9)")
    if not horizons or horizons[0] < 3 or horizons[-1] >= target_day:
        raise ValueError(f"horizons must lie between 3 and {target_day - 1} days, got {list(horizons)}")
    d = np.asarray(daily, dtype=np.float64)
    if d.ndim != 2 or d.shape[1] < target_day:
        raise ValueError(f"training needs {target_day} days of plays per release, got shape {d.shape}")
    d = d[:, :target_day]
    if not np.isfinite(d).all() or (d < 0).any():
        raise ValueError("daily plays must be finite and non-negative")
    n = len(d)
    if n < 50:
        raise ValueError(f"training needs at least 50 releases with {target_day} days of plays, got {n}")
    m = _meta(meta, n)
    rng = np.random.default_rng(seed)
    fit_rows, valid_rows, split = _split(m, n, validation_share, rng)
    inner = rng.permutation(fit_rows)
    n_stop = max(1, int(round(len(inner) * 0.15)))
    stop_rows, grow_rows = np.sort(inner[:n_stop]), np.sort(inner[n_stop:])

    def levels(column: str) -> list[str]:
        return sorted(m[column].astype("string").str.strip().str.lower().dropna().unique()) if column in m else []

    genres, label_tiers = levels("genre"), levels("label_tier")
    cum = d.cumsum(axis=1)
    outcome = cum[:, target_day - 1]
    lo, hi = quantiles[0], quantiles[-1]
    per_horizon: dict[str, dict] = {}
    forecaster = Forecaster(horizons=horizons, quantiles=quantiles, target_day=target_day, genres=genres,
                            label_tiers=label_tiers, feature_names={}, boosters={}, median_multiplier={}, naive_kind={},
                            shape={}, widen={}, report={})
    for step, k in enumerate(horizons):
        report_progress(step / len(horizons), f"Training the {k}-day model")
        x_frame = features(d, k, m, genres=genres, label_tiers=label_tiers)
        names = list(x_frame.columns)
        x = x_frame.to_numpy(dtype=np.float32)
        cum_k = cum[:, k - 1]
        y = np.log((outcome + 1) / (cum_k + 1))
        booster = _fit(x[grow_rows], y[grow_rows], quantiles, seed, n_jobs, early=(x[stop_rows], y[stop_rows]))
        rounds = booster.best_iteration + 1
        stop_q = np.asarray(booster.inplace_predict(x[stop_rows], iteration_range=(0, rounds))).reshape(len(stop_rows), -1)
        widen = _conformal(stop_q, y[stop_rows], hi - lo)
        q = _calibrated(booster.inplace_predict(x[valid_rows], iteration_range=(0, rounds)), widen)
        forecast = (cum_k[valid_rows, None] + 1) * np.exp(q) - 1
        actual = outcome[valid_rows]
        p50 = forecast[:, quantiles.index(0.5)]
        ours = _metrics(p50, actual)
        multiplier = float(np.exp(np.median(y[fit_rows])))
        linear = _metrics(cum_k[valid_rows] * target_day / k, actual)["mape"]
        median = _metrics((cum_k[valid_rows] + 1) * multiplier - 1, actual)["mape"]
        naive_kind = "median_multiplier" if median <= linear else "linear"
        naive = min(median, linear)
        inside = (forecast[:, 0] <= actual) & (actual <= forecast[:, -1])
        per_horizon[str(k)] = {
            **ours,
            "coverage": float(inside.mean()),
            "conformal_widen": widen,
            "interval": f"{_name(lo)}–{_name(hi)}",
            "interval_width_median": float(np.median((forecast[:, -1] - forecast[:, 0]) / np.maximum(p50, 1))),
            "naive_linear_mape": linear,
            "naive_median_multiplier_mape": median,
            "naive_baseline": naive_kind,
            "naive_mape": naive,
            "mape_ratio_vs_naive": ours["mape"] / naive if naive > 0 else math.nan,
            "median_multiplier": multiplier,
            "rounds": rounds,
            "importances": _importances(booster, names),
        }
        rows = np.arange(n) if refit else fit_rows
        if refit:
            booster = _fit(x, y, quantiles, seed, n_jobs, rounds=rounds)
        elif booster.num_boosted_rounds() > rounds:
            booster = booster[:rounds]
        forecaster.feature_names[k] = names
        forecaster.boosters[k] = bytes(booster.save_raw(raw_format="ubj"))
        forecaster.median_multiplier[k] = float(np.exp(np.median(y[rows])))
        forecaster.naive_kind[k] = naive_kind
        forecaster.shape[k] = _shape(cum[rows], k, target_day)
        forecaster.widen[k] = widen
    report_progress(1.0, "Done")
    forecaster.report = {
        "target_day": target_day,
        "quantiles": list(quantiles),
        "split": split,
        "releases": n,
        "train_releases": int(len(fit_rows)),
        "validation_releases": int(len(valid_rows)),
        "refit_on_all": refit,
        "naive_baselines": {"linear": "cum_k · T/k",
                            "median_multiplier": "cum_k · median(cum_T/cum_k) of the training releases"},
        "mape_ratio_vs_naive": "our MAPE over the better naive baseline's, on the validation releases",
        "horizons": per_horizon,
        "seconds": round(time.perf_counter() - started, 3),
    }
    return forecaster


# ------------------------------------------------------------------------- cross-sectional (total streams)

REACH = ("in_spotify_playlists", "in_spotify_charts", "in_apple_playlists", "in_apple_charts", "in_deezer_playlists",
         "in_deezer_charts", "in_shazam_charts")
AUDIO = ("bpm", "danceability_%", "valence_%", "energy_%", "acousticness_%", "instrumentalness_%", "liveness_%",
         "speechiness_%")


def _numbers(column: pd.Series) -> pd.Series:
    """Numbers from a column that may hold text: thousands separators stripped, junk → NaN."""
    if pd.api.types.is_numeric_dtype(column):
        return column.astype(np.float64)
    return pd.to_numeric(column.astype("string").str.replace(",", "", regex=False).str.strip(), errors="coerce")


def _cross_sectional_frame(frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, int]:
    """(features, log streams, rows dropped) from a Spotify-2023-like frame; rows without a numeric `streams` go."""
    if "streams" not in frame or "in_spotify_playlists" not in frame:
        raise ValueError("the frame needs at least `streams` and `in_spotify_playlists` columns")
    streams = _numbers(frame["streams"])
    keep = (streams > 0).fillna(False).to_numpy()
    f = frame.loc[keep].reset_index(drop=True)
    x = pd.DataFrame({c: _numbers(f[c]) for c in (*REACH, *AUDIO, "artist_count") if c in f})
    if "mode" in f:
        x["mode_major"] = (f["mode"].astype("string").str.strip().str.lower() == "major").astype(np.float64)
    # Totals accumulate with time since release: the track's age at the data set's snapshot (its newest release).
    if {"released_year", "released_month", "released_day"} <= set(f.columns):
        dates = pd.to_datetime(pd.DataFrame({"year": _numbers(f["released_year"]), "month": _numbers(f["released_month"]),
                                             "day": _numbers(f["released_day"])}), errors="coerce")
        x["years_since_release"] = (dates.max() - dates).dt.days / 365.25
    return x, np.log(streams[keep].to_numpy(dtype=np.float64)), int((~keep).sum())


def fit_cross_sectional(frame: pd.DataFrame, *, folds: int = 5, seed: int = 0, n_jobs: int = 1) -> dict[str, Any]:
    """How well playlist / chart reach and audio features explain a track's total streams: a 5-fold CV report.

    The Spotify 2023 data set (../shared/data/spotify-most-streamed-2023) has one cumulative total per
    track and no daily series, so this is the cross-sectional half of the forecasting question. The
    model is xgboost on log(streams) from the reach columns (REACH), the audio features (AUDIO),
    artist_count, mode and the track's age; R² is on log(streams), MAPE and MdAPE on streams
    (exp of the predicted log: a median-type forecast). Naive baselines, fitted within each fold
    too: the training tracks' median streams, and a one-variable log-linear fit
    log(streams) = a + b·log(1 + in_spotify_playlists). Importances: share of total split gain of a
    model fitted on every row.

    One implausible total can own a MAPE: the data set lists "Que Vuelvas" (26 chart entries, 763
    playlists) with 2,762 streams, where the median track has ~290 million, so any sensible forecast
    is off by 10^4 % there and the mean over 952 tracks by 10^2 %. `*_mape_plausible` are the same
    MAPEs over tracks with at least 1 % of the median's streams (`implausible_rows` counts the others:
    on the Spotify data, Que Vuelvas and Jhoome Jo Pathaan at 1.4 million); MdAPE needs no such rule.
    """
    import xgboost
    from sklearn.model_selection import KFold

    started = time.perf_counter()
    x, y, dropped = _cross_sectional_frame(frame)
    if len(y) < 5 * folds:
        raise ValueError(f"{len(y)} usable rows are too few for {folds}-fold cross-validation")
    names = list(x.columns)
    matrix = x.to_numpy(dtype=np.float32)
    playlists = np.log1p(x["in_spotify_playlists"].fillna(0).to_numpy(dtype=np.float64))
    params = {"objective": "reg:squarederror", "eta": 0.05, "max_depth": 3, "min_child_weight": 3, "subsample": 0.8,
              "colsample_bynode": 0.8, "tree_method": "hist", "seed": seed, "nthread": n_jobs}
    rounds = 400
    ours, loglinear, median = np.zeros(len(y)), np.zeros(len(y)), np.zeros(len(y))
    for fit_rows, out_rows in KFold(n_splits=folds, shuffle=True, random_state=seed).split(matrix):
        booster = xgboost.train(params, xgboost.DMatrix(matrix[fit_rows], label=y[fit_rows]), num_boost_round=rounds)
        ours[out_rows] = booster.inplace_predict(matrix[out_rows])
        slope, intercept = np.polyfit(playlists[fit_rows], y[fit_rows], 1)
        loglinear[out_rows] = intercept + slope * playlists[out_rows]
        median[out_rows] = np.median(y[fit_rows])

    def r2(predicted: np.ndarray) -> float:
        return float(1 - ((y - predicted) ** 2).sum() / ((y - y.mean()) ** 2).sum())

    streams = np.exp(y)
    plausible = streams >= 0.01 * np.median(streams)
    booster = xgboost.train(params, xgboost.DMatrix(matrix, label=y), num_boost_round=rounds)
    ours_metrics = _metrics(np.exp(ours), streams)

    def plausible_mape(predicted_log: np.ndarray) -> float:
        return _metrics(np.exp(predicted_log[plausible]), streams[plausible])["mape"]

    return {
        "rows": int(len(y)),
        "dropped_rows": dropped,
        "features": names,
        "folds": folds,
        "r2_cv": r2(ours),
        "mape_cv": ours_metrics["mape"],
        "mdape_cv": ours_metrics["mdape"],
        "naive_median_mape": _metrics(np.exp(median), streams)["mape"],
        "naive_loglinear_r2_cv": r2(loglinear),
        "naive_loglinear_mape": _metrics(np.exp(loglinear), streams)["mape"],
        "naive_loglinear_slope": float(np.polyfit(playlists, y, 1)[0]),
        "implausible_rows": int((~plausible).sum()),
        "mape_plausible": plausible_mape(ours),
        "naive_median_mape_plausible": plausible_mape(median),
        "naive_loglinear_mape_plausible": plausible_mape(loglinear),
        "naive_median_mdape": _metrics(np.exp(median), streams)["mdape"],
        "naive_loglinear_mdape": _metrics(np.exp(loglinear), streams)["mdape"],
        "importances": _importances(booster, names, top=len(names)),
        "seconds": round(time.perf_counter() - started, 3),
    }
