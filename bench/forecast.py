"""Stream forecasting: day-60 plays of simulated releases from their first 3/7/14/30 days, and Spotify totals (issue 8).

    .venv/bin/python bench/forecast.py                 # 3,000 releases, seed 2026; ~15 s on 2 busy cores
    .venv/bin/python bench/forecast.py --releases 1000 --jobs 2

Setup, fixed before the bench first ran:

- releases: `ml.forecast.simulate_releases(3000, seed=2026)` — the demo catalogue's lifecycle
  (followers/label/marketing-driven launch, first-week peak, exponential + power-law decay, weekend
  lift, playlist adds and chart entries, 2 % viral late bloomers, level drift and negative-binomial day
  noise). The latest 20 % by release date are the test releases; `ml.forecast.train` (its defaults:
  horizons 3/7/14/30, quantiles 0.1/0.5/0.9, its own time-based validation on the latest 20 % of the
  training releases, refit on all of them) sees only the other 80 %. Every figure below is on the test
  releases, which no model, early stop, conformal margin or median multiplier has seen.
- per horizon k: `mape_d{k}` / `mdape_d{k}` of the p50 forecast of cum_60; `naive_linear_mape_d{k}`
  (cum_k · 60/k) and `naive_median_mape_d{k}` (cum_k · the training releases' median cum_60/cum_k);
  `naive_mape_d{k}` the better of those two on the test releases (always the median multiplier so
  far), and **`mape_ratio_vs_naive_d{k}`** = mape_d{k} / naive_mape_d{k}; `coverage80_d{k}` the share
  of test releases whose cum_60 lies inside [p10, p90], `width80_d{k}` that interval's median width
  relative to p50; `mape_vs_truth_d{k}` the MAPE against the noise-free expected cum_60.
- spotify (../shared/data/spotify-most-streamed-2023, REAL, 953 tracks, one total each — no daily
  series): `ml.forecast.fit_cross_sectional`, 5-fold CV (KFold, shuffled, seed 0) of xgboost on
  log(streams) from playlist / chart reach, audio features, artist count, mode and age; naive: the
  median, and log(streams) on log(1 + in_spotify_playlists). `_plausible` MAPEs leave out the tracks
  under 1 % of the median's streams (two: one listed with 2,762 streams against ~290 million typical).

Exits 1 when a forecast fails to beat its naive baseline or the quantiles come out disordered.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = Path(os.environ.get("ENCORE_SHARED_DATA") or ROOT.parent / "shared" / "data")


def show(name: str, value) -> None:
    print(f"{name}: {value:.4f}" if isinstance(value, float) else f"{name}: {value}", flush=True)


def releases(count: int, seed: int, jobs: int) -> bool:
    import numpy as np

    from ml import forecast

    started = time.perf_counter()
    meta, daily = forecast.simulate_releases(count, seed=seed)
    show("simulate_seconds", time.perf_counter() - started)
    order = np.argsort(meta.release_date.to_numpy(), kind="stable")
    n_test = int(round(0.2 * count))
    train_rows, test_rows = np.sort(order[:-n_test]), np.sort(order[-n_test:])
    show("releases_train", len(train_rows))
    show("releases_test", len(test_rows))
    for kind, share in meta.true_event.replace("", "none").value_counts(normalize=True).items():
        show(f"share_{kind}", float(share))
    show("share_viral", float((meta.true_viral_day >= 0).mean()))

    started = time.perf_counter()
    model = forecast.train(daily[train_rows], meta.iloc[train_rows], seed=seed, n_jobs=jobs)
    show("train_seconds", time.perf_counter() - started)
    data = model.to_bytes()
    show("artefact_bytes", len(data))
    model = forecast.Forecaster.from_bytes(data)

    test_meta, test = meta.iloc[test_rows].reset_index(drop=True), daily[test_rows]
    actual = test[:, : model.target_day].sum(axis=1)
    truth = test_meta.true_cum60.to_numpy()

    def mape(predicted, target) -> float:
        return float(np.mean(np.abs(predicted - target) / target))

    ok = True
    started = time.perf_counter()
    for k in model.horizons:
        q = model.predict(test, k, test_meta)
        cum_k = test[:, :k].sum(axis=1)
        ours = mape(q["p50"], actual)
        linear = mape(cum_k * model.target_day / k, actual)
        median = mape((cum_k + 1) * model.median_multiplier[k] - 1, actual)
        naive = min(linear, median)
        show(f"mape_d{k}", ours)
        show(f"mdape_d{k}", float(np.median(np.abs(q["p50"] - actual) / actual)))
        show(f"naive_linear_mape_d{k}", linear)
        show(f"naive_median_mape_d{k}", median)
        show(f"naive_mape_d{k}", naive)
        show(f"naive_baseline_d{k}", "median_multiplier" if median <= linear else "linear")
        show(f"mape_ratio_vs_naive_d{k}", ours / naive)
        show(f"coverage80_d{k}", float(np.mean((q["p10"] <= actual) & (actual <= q["p90"]))))
        show(f"width80_d{k}", float(np.median((q["p90"] - q["p10"]) / q["p50"])))
        show(f"mape_vs_truth_d{k}", mape(q["p50"], truth))
        show(f"naive_mape_vs_truth_d{k}", mape((cum_k + 1) * model.median_multiplier[k] - 1, truth))
        ok &= ours < naive and bool((q["p10"] <= q["p50"]).all() and (q["p50"] <= q["p90"]).all())
    elapsed = time.perf_counter() - started
    show("predict_seconds_per_1000_releases_per_horizon", elapsed / len(model.horizons) / len(test_rows) * 1000)
    started = time.perf_counter()
    model.curve(test, 7, test_meta)
    show("curve_seconds_per_1000_releases", (time.perf_counter() - started) / len(test_rows) * 1000)
    return ok


def spotify(jobs: int) -> None:
    import pandas as pd

    from ml import forecast

    frame = pd.read_csv(DATA / "spotify-most-streamed-2023" / "spotify-2023.csv", encoding="utf-8-sig")
    report = forecast.fit_cross_sectional(frame, n_jobs=jobs)
    show("spotify_rows", report["rows"])
    show("spotify_dropped_rows", report["dropped_rows"])
    show("spotify_r2_cv", report["r2_cv"])
    show("spotify_mape_cv", report["mape_cv"])
    show("spotify_mdape_cv", report["mdape_cv"])
    show("spotify_mape_cv_plausible", report["mape_plausible"])
    show("spotify_naive_mape", report["naive_median_mape"])
    show("spotify_naive_mape_plausible", report["naive_median_mape_plausible"])
    show("spotify_naive_mdape", report["naive_median_mdape"])
    show("spotify_loglinear_r2_cv", report["naive_loglinear_r2_cv"])
    show("spotify_loglinear_mape", report["naive_loglinear_mape"])
    show("spotify_loglinear_mape_plausible", report["naive_loglinear_mape_plausible"])
    show("spotify_loglinear_mdape", report["naive_loglinear_mdape"])
    show("spotify_loglinear_slope", report["naive_loglinear_slope"])
    show("spotify_implausible_rows", report["implausible_rows"])
    for row in report["importances"][:6]:
        show(f"spotify_importance_{row['feature'].replace('%', 'pct')}", row["importance"])
    show("spotify_seconds", report["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--releases", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--jobs", type=int, default=1, choices=(1, 2),
                        help="xgboost threads (1 is faster for data this small on a busy machine)")
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"{DATA} not found (set ENCORE_SHARED_DATA to the folder of the shared data sets)")
    started = time.perf_counter()
    ok = releases(args.releases, args.seed, args.jobs)
    spotify(args.jobs)
    show("total_seconds", time.perf_counter() - started)
    if not ok:
        sys.exit("a forecast did not beat its naive baseline, or its quantiles were disordered")


if __name__ == "__main__":
    main()
