"""Response model on real data: the auto-modelling stages on the Hillstrom e-mail campaign, outcome `visit`.

    .venv/bin/python bench/hillstrom_response.py

Data: ../shared/data/hillstrom-email/hillstrom.csv (Kevin Hillstrom's MineThatData e-mail challenge,
64,000 customers; all three arms — Mens E-Mail, Womens E-Mail, No E-Mail — with the arm as a feature).
Split: stratified on `visit`, 70 / 30, `random_state=42` (issue 5, item 9).

Stages, as the pipeline will run them (pure ml modules, no Django): `ml.criteria.rank` orders the
features by symmetric uncertainty on the training rows; `ml.transform.FeatureTransform` fits quantile
bins of the numeric columns, one-hot of the categorical ones and the crosses arm × womens / arm × mens
on the training rows only; the pipeline's own candidates (`ml.automodel.fit_candidates`: xgboost, logistic
regression, and GBDT+LR, the leaves of a small xgboost forest one-hot encoded into a logistic regression,
with the hyper-parameters campaign models use) are scored on the held-out 30 % by AUC, log loss, RMSE and
calibration error, and the best is picked as the pipeline picks it. Prints `name: value` lines; `hillstrom_response_auc` is the best candidate's AUC.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = Path(os.environ.get("ENCORE_SHARED_DATA") or ROOT.parent / "shared" / "data") / "hillstrom-email" / "hillstrom.csv"


def main() -> None:
    import numpy as np
    import pandas as pd
    from sklearn.model_selection import train_test_split

    from ml import automodel, criteria
    from ml.transform import FeatureTransform

    if not DATA.is_file():
        sys.exit(f"{DATA} not found (set ENCORE_SHARED_DATA to the folder of the shared data sets)")
    frame = pd.read_csv(DATA)
    frame["arm"] = frame.pop("segment")
    features = ["recency", "history", "mens", "womens", "zip_code", "newbie", "channel", "arm"]
    rows = np.arange(len(frame))
    train_rows, test_rows = train_test_split(rows, test_size=0.3, random_state=42, stratify=frame["visit"])
    train, test = frame.iloc[train_rows], frame.iloc[test_rows]
    y_train, y_test = train["visit"].to_numpy(), test["visit"].to_numpy()

    ranking = criteria.rank(train[features], y_train)
    for row in ranking.itertuples():
        print(f"su_{row.feature}: {row.symmetric_uncertainty:.4f}")

    transform = FeatureTransform(numeric=["recency", "history"], categorical=["mens", "womens", "zip_code", "newbie", "channel", "arm"],
                                 crosses=[("arm", "womens"), ("arm", "mens")])
    x_train, x_test = transform.fit_transform(train), transform.transform(test)
    print(f"features: {len(transform.get_feature_names())}")

    started = time.perf_counter()
    best, results, _ = automodel.fit_candidates(transform, x_train, y_train, x_test, y_test)
    seconds = time.perf_counter() - started
    for name, metrics in results.items():
        print(f"{name}_auc: {metrics['auc']:.4f}")
        print(f"{name}_log_loss: {metrics['log_loss']:.4f}")
        print(f"{name}_rmse: {metrics['rmse']:.4f}")
        print(f"{name}_calibration_error: {metrics['calibration_error']:.4f}")
    print(f"visit_rate_test: {y_test.mean():.4f}")
    print(f"train_seconds: {seconds:.1f}")
    print(f"best_candidate: {best}")
    print(f"hillstrom_response_auc: {results[best]['auc']:.4f}")


if __name__ == "__main__":
    main()
