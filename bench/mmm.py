"""Marketing-mix modelling on the shared data sets: fit quality on held-out periods and the allocator's gain (issue 7).

    .venv/bin/python bench/mmm.py

Every fit is ml.mmm with its defaults (geometric adstock, Hill saturation, linear trend, Fourier
seasonality of order 2 where the data hold a full cycle, ridge 0.001, 8 Sobol starts, 40 block-bootstrap
refits) — set before this bench first ran, not tuned to it. Validation: fit on the first 80 % of periods,
score the last 20 % (R², NRMSE = RMSE / range of the actuals as Robyn defines it, MAPE).

- robyn (../shared/data/robyn-simulated-weekly-mmm, SIMULATED by Meta's Robyn team): 208 weeks of revenue;
  spend columns tv_S, ooh_S, print_S, search_S, facebook_S; controls competitor_sales_B, newsletter and
  one dummy per event (event1, event2). The allocator then splits the same total weekly budget — the
  mean weekly spend of the whole history — with every channel bounded to 70 %–150 % of its mean weekly
  spend (Robyn's demo uses 70 % to 120–150 %). `allocator_gain_pct`: the predicted media response per
  week at the optimum against the historical mix, in %; `allocator_gain_low/high` its 90 % bootstrap
  interval; `bounds_respected` 1 when the result spends exactly the total and every channel lies within
  its bounds.
- fma_advsales / fma_advert (../shared/data/fma-advertising-sales, REAL monthly series of one product's
  advertising and sales, 36 and 24 months): one channel, monthly seasonality where a full year fits
  in the data; the fitted carryover (geometric θ) is printed too.
- islr (../shared/data/islr-advertising, REAL but cross-sectional: 200 markets, not a time series): no
  adstock, no trend or seasonality, TV, Radio and Newspaper saturating additively; the holdout is a
  seeded random 20 % of markets (`numpy.random.default_rng(42).permutation(200)[:40]`).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = Path(os.environ.get("ENCORE_SHARED_DATA") or ROOT.parent / "shared" / "data")


def show(name: str, value) -> None:
    print(f"{name}: {value:.4f}" if isinstance(value, float) else f"{name}: {value}", flush=True)


def fit_figures(prefix: str, metrics: dict) -> None:
    for key in ("r2_holdout", "nrmse_holdout", "mape_holdout", "r2_train", "r2_all"):
        if metrics.get(key) is not None:
            show(f"{prefix}_{key}", float(metrics[key]))


def robyn() -> None:
    import pandas as pd

    from ml import mmm

    df = pd.read_csv(DATA / "robyn-simulated-weekly-mmm" / "dt_simulated_weekly.csv")
    channels = ["tv_S", "ooh_S", "print_S", "search_S", "facebook_S"]
    controls = {"competitor_sales_B": df.competitor_sales_B.values, "newsletter": df.newsletter.values,
                **{e: (df.events == e).astype(float).values for e in ("event1", "event2")}}
    data = mmm.MixData(spend={c: df[c].values for c in channels}, outcome=df.revenue.values, controls=controls,
                       frequency="week", dates=list(df.DATE))
    started = time.perf_counter()
    params, metrics, report = mmm.run(data)
    show("robyn_fit_seconds", time.perf_counter() - started)
    fit_figures("robyn", metrics)
    for ch in report["channels"]:
        show(f"robyn_roas_{ch['name']}", ch["roas"])
    curves = mmm.Curves.from_params(params)
    current = {c: float(df[c].mean()) for c in channels}
    low = {c: 0.7 * current[c] for c in channels}
    high = {c: 1.5 * current[c] for c in channels}
    result = mmm.allocate(curves, total=sum(current.values()), low=low, high=high, current=current,
                          observed_max=report["observed_max"])
    show("allocator_total", sum(current.values()))
    show("allocator_spent", result["spent"])
    show("allocator_gain_pct", result["gain_pct"])
    if result["gain_pct_interval"]:
        show("allocator_gain_low", result["gain_pct_interval"][0])
        show("allocator_gain_high", result["gain_pct_interval"][1])
    exact = abs(result["spent"] - sum(current.values())) <= 1e-6 * sum(current.values())
    within = all(low[r["name"]] - 1e-6 <= r["to"] <= high[r["name"]] + 1e-6 for r in result["channels"])
    show("bounds_respected", int(exact and within and result["bounds_respected"]))
    for r in result["channels"]:
        show(f"allocator_change_pct_{r['name']}", r["change_pct"])


def fma() -> None:
    import pandas as pd

    from ml import mmm

    for name in ("advsales", "advert"):
        df = pd.read_csv(DATA / "fma-advertising-sales" / f"{name}.csv")
        data = mmm.MixData(spend={"advert": df.advert.values}, outcome=df.sales.values, frequency="month")
        params, metrics, report = mmm.run(data)
        fit_figures(f"fma_{name}", metrics)
        show(f"fma_{name}_theta", params["channels"]["advert"]["a"])


def islr() -> None:
    import numpy as np
    import pandas as pd

    from ml import mmm

    df = pd.read_csv(DATA / "islr-advertising" / "Advertising.csv")
    mask = np.zeros(len(df), bool)
    mask[np.random.default_rng(42).permutation(len(df))[:40]] = True
    data = mmm.MixData(spend={c: df[c].values for c in ("TV", "Radio", "Newspaper")}, outcome=df.Sales.values,
                       frequency="week")
    params, metrics, report = mmm.run(data, mmm.Options(adstock="none", seasonality=0, trend=False, holdout_mask=mask))
    fit_figures("islr", metrics)


if __name__ == "__main__":
    if not DATA.is_dir():
        sys.exit(f"{DATA} not found (set ENCORE_SHARED_DATA to the folder of the shared data sets)")
    robyn()
    fma()
    islr()
