"""Stream forecasts for the catalogue: the glue between the activity log and `ml.forecast` (issue 8, item 3).

`release_history` turns play activities into ml.forecast's shape (meta, daily plays since release);
`train_and_forecast` learns the forecaster from the releases whose day-60 outcome is known, registers
and promotes it as "forecast:streams", and forecasts every release younger than 60 days. The Celery
task `audiences.train_forecaster` runs it nightly on the ml queue.

Why simulated releases join the training set: a forecaster needs hundreds of releases with 60 days
of plays, and a young catalogue (the demo's among them) has a handful. Below MIN_RELEASES the
shortfall is filled with `ml.forecast.simulate_releases` (seeded, dated before the catalogue's own
releases so the time-ordered validation stays on the newest ones), and the result says how many —
a forecast learnt mostly from a simulator must not pass for one learnt from our listeners.
"""

from __future__ import annotations

import math
from datetime import date, datetime, time, timedelta
from typing import Callable

import numpy as np
import pandas as pd
from django.db.models import Count, Min
from django.db.models.functions import TruncDate
from django.utils import timezone

from ml import forecast, registry
from ml.models import ModelVersion

from .models import Activity, ActivityKind, AudioAnalysis, Item, ItemKind, StreamForecast

MODEL_KEY = "forecast:streams"
MIN_RELEASES = 300  # below this many catalogue releases with a known outcome, simulated ones fill the gap
SIMULATION_SEED = 8
MIN_DAYS = 3  # the shortest trained horizon

Progress = Callable[[float, str], None]

META_COLUMNS = ("item_id", "release_date", "days_seen", "genre", "artist_followers", "label_tier", "marketing", "tempo",
                "energy", "danceability")


def _number(value) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number if math.isfinite(number) else math.nan


def _audio_descriptors(tracks) -> dict[int, dict]:
    """The latest succeeded analysis's descriptors per item (an item may have been analysed several times)."""
    latest: dict[int, dict] = {}
    rows = (AudioAnalysis.objects.filter(item__in=tracks, status=AudioAnalysis.Status.SUCCEEDED)
            .order_by("item_id", "-finished_at", "-id").values_list("item_id", "result"))
    for item_id, result in rows:
        if item_id not in latest:
            latest[item_id] = (result or {}).get("descriptors") or {}
    return latest


def _energy_from_loudness(lufs: float) -> float:
    """A rough 0–1 energy from integrated loudness: −30 LUFS (quiet, acoustic) → 0, −5 LUFS (a loud master) → 1.

    Spotify-style energy tracks loudness more than anything else; the descriptors have no energy of their own.
    """
    return float(np.clip((lufs + 30.0) / 25.0, 0.0, 1.0)) if math.isfinite(lufs) else math.nan


def _followers(tracks: list[dict], queryset, as_of: datetime) -> dict[int, float]:
    """Per track, the artist's reach before it came out: the most distinct listeners of one of the artist's earlier tracks.

    Counted over plays before `as_of` (the log has no follower counts); NaN for a debut. A lower bound
    of the fanbase, and cheap: one GROUP BY item query.
    """
    listeners = dict(
        Activity.objects.filter(kind=ActivityKind.PLAY, item__in=queryset, occurred_at__lt=as_of)
        .values("item_id").annotate(n=Count("customer_id", distinct=True)).values_list("item_id", "n")
    )
    by_artist: dict[str, list[tuple[date, int]]] = {}
    for t in tracks:
        by_artist.setdefault(t["artist"], []).append((t["release_date"], listeners.get(t["id"], 0)))
    out = {}
    for t in tracks:
        earlier = [n for released, n in by_artist[t["artist"]] if released < t["release_date"]]
        out[t["id"]] = float(max(earlier)) if earlier and t["artist"] else math.nan
    return out


def release_history(as_of: datetime | None = None, *, days: int = forecast.TARGET_DAY) -> tuple[pd.DataFrame, np.ndarray]:
    """Daily plays of every track since its release, up to `days` days: (meta, daily [n, days]) as ml.forecast reads them.

    Day 0 is the release date (in the configured time zone); only whole days before `as_of` count, so
    `meta.days_seen` says how many of a row's days are known (later columns are 0). Tracks released
    before the first play in the log are left out: their first days are missing, not silent. The
    plays come from ONE aggregate query (GROUP BY item, day); meta from the items, their attributes
    and their latest audio analysis (see META_COLUMNS; unknown numbers are NaN).
    """
    as_of = as_of or timezone.now()
    today = timezone.localdate(as_of)
    day_start = timezone.make_aware(datetime.combine(today, time.min))
    first = Activity.objects.filter(kind=ActivityKind.PLAY).aggregate(first=Min("occurred_at"))["first"]
    empty = pd.DataFrame({c: [] for c in META_COLUMNS}), np.zeros((0, days))
    if first is None:
        return empty
    first_day = timezone.localdate(first)
    # Subqueries, not id lists: a catalogue can hold more tracks than SQLite takes query parameters.
    releases = Item.objects.filter(kind=ItemKind.TRACK, release_date__gte=first_day, release_date__lt=today)
    tracks = list(releases.order_by("release_date", "id").values("id", "artist", "genres", "release_date", "attributes"))
    if not tracks:
        return empty
    row_of = {t["id"]: i for i, t in enumerate(tracks)}
    released = {t["id"]: t["release_date"] for t in tracks}

    daily = np.zeros((len(tracks), days))
    plays = (Activity.objects.filter(kind=ActivityKind.PLAY, item__kind=ItemKind.TRACK, item__release_date__gte=first_day,
                                     occurred_at__gte=timezone.make_aware(datetime.combine(first_day, time.min)),
                                     occurred_at__lt=day_start)
             .annotate(day=TruncDate("occurred_at")).values("item_id", "day").annotate(plays=Count("id"))
             .values_list("item_id", "day", "plays"))
    for item_id, day, count in plays:
        offset = (day - released[item_id]).days
        if 0 <= offset < days:
            daily[row_of[item_id], offset] = count

    followers = _followers(tracks, releases.values("id"), day_start)
    audio = _audio_descriptors(releases.values("id"))
    rows = []
    for t in tracks:
        attrs, described = t["attributes"] or {}, audio.get(t["id"], {})
        genres = t["genres"] if isinstance(t["genres"], list) else []
        known_followers = _number(attrs.get("artist_followers", attrs.get("followers")))
        energy = _number(attrs.get("energy", described.get("energy")))
        rows.append({
            "item_id": t["id"],
            "release_date": pd.Timestamp(t["release_date"]),
            "days_seen": min((today - t["release_date"]).days, days),
            "genre": str(genres[0]).strip().lower() if genres else None,
            "artist_followers": known_followers if math.isfinite(known_followers) else followers[t["id"]],
            "label_tier": str(attrs.get("label_tier") or "indie").strip().lower(),
            "marketing": _number(attrs.get("marketing", 0.0)),
            "tempo": _number(attrs.get("tempo", described.get("tempo_bpm"))),
            "energy": energy if math.isfinite(energy) else _energy_from_loudness(_number(described.get("loudness_lufs"))),
            "danceability": _number(attrs.get("danceability", described.get("danceability"))),
        })
    return pd.DataFrame(rows, columns=list(META_COLUMNS)), daily


def _training_set(meta: pd.DataFrame, daily: np.ndarray, today: date) -> tuple[pd.DataFrame, np.ndarray, int, int]:
    """(meta, daily, catalogue releases, simulated releases): the releases whose day-60 outcome is known, topped up."""
    known = (meta["days_seen"].to_numpy() >= forecast.TARGET_DAY) & (daily.sum(axis=1) > 0)
    own_meta, own_daily = meta.loc[known].reset_index(drop=True), daily[known]
    shortfall = max(MIN_RELEASES - len(own_meta), 0)
    if not shortfall:
        return own_meta, own_daily, len(own_meta), 0
    # Dated before the catalogue's releases, so the time-ordered validation split keeps the newest (ours).
    earliest = min([today - timedelta(days=forecast.TARGET_DAY), *(pd.Timestamp(d).date() for d in own_meta["release_date"])])
    span = 3 * 365
    sim_meta, sim_daily = forecast.simulate_releases(shortfall, seed=SIMULATION_SEED, days=forecast.TARGET_DAY,
                                                     start=str(earliest - timedelta(days=span + 7)), span_days=span)
    sim_meta = sim_meta.assign(item_id=None, days_seen=forecast.TARGET_DAY)[list(META_COLUMNS)]
    frames = [f for f in (own_meta, sim_meta) if len(f)]
    return (pd.concat(frames, ignore_index=True), np.vstack([own_daily, sim_daily[:, :forecast.TARGET_DAY]]),
            len(own_meta), shortfall)


def _metrics(report: dict) -> dict[str, float]:
    """Flat per-horizon figures for the registry page: MAPE, the naive baseline's, their ratio and the interval coverage."""
    out = {}
    for k, figures in report["horizons"].items():
        out[f"mape_d{k}"] = round(figures["mape"], 4)
        out[f"naive_mape_d{k}"] = round(figures["naive_mape"], 4)
        out[f"mape_ratio_vs_naive_d{k}"] = round(figures["mape_ratio_vs_naive"], 4)
        out[f"coverage_d{k}"] = round(figures["coverage"], 4)
    return out


def _forecast_rows(model: forecast.Forecaster, version: ModelVersion, meta: pd.DataFrame, daily: np.ndarray) -> list[StreamForecast]:
    """A StreamForecast per recent release and each horizon it has reached."""
    seen = meta["days_seen"].to_numpy()
    recent = (seen >= MIN_DAYS) & (seen < forecast.TARGET_DAY)
    now = timezone.now()
    rows = []
    for k in model.horizons:
        index = np.flatnonzero(recent & (seen >= k) & (daily[:, :k].sum(axis=1) > 0))
        if not len(index):
            continue
        prefix, rows_meta = daily[index, :k], meta.iloc[index].reset_index(drop=True)
        predicted = model.predict(prefix, k, rows_meta)
        naive = model.baseline(prefix, k)
        curves = model.curve(prefix, k, rows_meta)
        for j, i in enumerate(index):
            rows.append(StreamForecast(
                item_id=int(meta["item_id"].iat[i]), horizon=k, p10=float(predicted["p10"][j]), p50=float(predicted["p50"][j]),
                p90=float(predicted["p90"][j]), naive=float(naive[j]), curve=[round(float(v), 1) for v in curves[j]],
                model_version=version, made_at=now,
            ))
    return rows


def train_and_forecast(progress: Progress | None = None, *, as_of: datetime | None = None) -> dict:
    """Learn the forecaster, make it the "forecast:streams" champion, and forecast every release younger than 60 days.

    Idempotent: a rerun registers a new version and replaces each release's forecast per horizon.
    """
    report = progress or (lambda fraction, message: None)
    as_of = as_of or timezone.now()
    report(0.02, "Reading the release history")
    meta, daily = release_history(as_of)
    train_meta, train_daily, own, simulated = _training_set(meta, daily, timezone.localdate(as_of))

    def training_progress(fraction: float, message: str) -> None:
        report(0.05 + 0.85 * fraction, message)

    model = forecast.train(train_daily, train_meta, seed=SIMULATION_SEED, n_jobs=1, progress=training_progress)
    trained_on = {"catalogue_releases": own, "simulated_releases": simulated, "as_of": as_of.isoformat()}
    model.report["trained_on"] = trained_on
    version = registry.register_candidate(
        MODEL_KEY, ModelVersion.Kind.FORECAST, model.to_bytes(), suffix=".npz", metrics=_metrics(model.report),
        features=model.feature_names[model.horizons[0]], trained_on=trained_on, report=model.report,
        notes=f"Trained on {own} catalogue releases + {simulated} simulated",
    )
    registry.promote(version)

    report(0.93, "Forecasting the recent releases")
    rows = _forecast_rows(model, version, meta, daily)
    StreamForecast.objects.bulk_create(rows, update_conflicts=True, unique_fields=["item", "horizon"],
                                       update_fields=["p10", "p50", "p90", "naive", "curve", "model_version", "made_at"])
    d7 = model.report["horizons"].get("7", {})
    return {
        "trained_on": own,
        "simulated": simulated,
        "forecasts": len(rows),
        "releases_forecast": len({r.item_id for r in rows}),
        "model_version": version.version,
        "mape_d7": d7.get("mape"),
        "mape_ratio_vs_naive_d7": d7.get("mape_ratio_vs_naive"),
        "naive_baseline_d7": d7.get("naive_baseline"),
    }


def summary(result: dict) -> str:
    """One line for the job list: what the model learnt from, how good it is, what it wrote."""
    source = f"{result['trained_on']} catalogue releases"
    if result.get("simulated"):
        source += f" + {result['simulated']} simulated"
    ratio = result.get("mape_ratio_vs_naive_d7")
    quality = f"; 7-day MAPE {ratio:.2f}× the naive forecast's" if ratio is not None and math.isfinite(ratio) else ""
    return (f"Trained on {source}{quality}; {result['forecasts']} forecasts for "
            f"{result.get('releases_forecast', result['forecasts'])} recent releases.")
