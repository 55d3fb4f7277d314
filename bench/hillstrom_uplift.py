"""Uplift on real data: the four ml.uplift learners on the Hillstrom e-mail experiment (issue 6, item 6).

    .venv/bin/python bench/hillstrom_uplift.py

Data: ../shared/data/hillstrom-email/hillstrom.csv (Kevin Hillstrom's MineThatData e-mail challenge, a
randomised experiment). Treatment = "Womens E-Mail", control = "No E-Mail": the rows of those two arms in
file order (42,693 customers, 50.1 % treated); the "Mens E-Mail" arm is left out. Outcomes `visit` and
`conversion`, each with its own split: `train_test_split(row_ids, test_size=0.3, random_state=42,
stratify=t * 2 + y)` — the joint treatment × outcome label, as scikit-uplift's examples stratify (a
two-column stratify frame gives the same four classes in the same order, hence the same split).
Features: recency, history, mens, womens, newbie as numbers; zip_code and channel one-hot.

Figures (all on the 30 % test rows; scikit-uplift's definitions, reimplemented in ml.uplift):
`qini_<learner>_<outcome>` (qini_auc_score, negative_effect=True), `uplift_auc_<learner>_<outcome>`
(uplift_auc_score) and `uplift_at_30_<learner>_<outcome>` (uplift_at_k, strategy "overall", k=0.3).
`baseline_t_learner_*` is a plain T-learner on xgboost's own defaults (100 trees of depth 6, learning
rate 0.3, min_child_weight 1, no subsampling). `best_*` is the best learner on the test rows — picking
the best of four on the test rows flatters it a little, so `cv_qini_<learner>_<outcome>` (3-fold
cross-validated Qini on the training rows only) and `cv_best_learner_<outcome>` show which learner the
training rows alone would have picked. `qini_<best>_visit_seed_min/_max` refit the best visit learner
with five seeds.

Tuning: none. Every learner runs with ml.uplift's defaults (200 trees of depth 3, learning rate 0.05,
min_child_weight 5, 80 % row and column subsampling), which were set before this bench first ran and
were not changed after seeing its results. Runs in well under a minute on 2 cores.
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

TREATMENT, CONTROL = "Womens E-Mail", "No E-Mail"
OUTCOMES = ("visit", "conversion")
NUMERIC = ["recency", "history", "mens", "womens", "newbie"]
CATEGORICAL = ["zip_code", "channel"]
# xgboost's own defaults, spelt out: the "plain" T-learner the learners are compared with.
XGBOOST_DEFAULTS = {"n_estimators": 100, "max_depth": 6, "learning_rate": 0.3, "min_child_weight": 1.0, "subsample": 1.0,
                    "colsample_bytree": 1.0, "reg_lambda": 1.0}
SEEDS = (0, 1, 2, 3, 4)


def scores(y, uplift, t) -> dict[str, float]:
    from ml.uplift import qini_auc_score, uplift_at_k, uplift_auc_score

    return {"qini": qini_auc_score(y, uplift, t), "uplift_auc": uplift_auc_score(y, uplift, t),
            "uplift_at_30": uplift_at_k(y, uplift, t, "overall", 0.3)}


def cross_validated_qini(name: str, x, t, y, folds: int = 3) -> float:
    """Mean Qini over folds of the training rows, stratified on treatment × outcome like the split."""
    import numpy as np
    from sklearn.model_selection import StratifiedKFold

    from ml.uplift import make_learner, qini_auc_score

    values = []
    for fit_rows, check_rows in StratifiedKFold(folds, shuffle=True, random_state=42).split(x, t * 2 + y):
        model = make_learner(name).fit(x[fit_rows], t[fit_rows], y[fit_rows])
        values.append(qini_auc_score(y[check_rows], model.predict(x[check_rows]), t[check_rows]))
    return float(np.mean(values))


def main() -> None:
    import numpy as np
    import pandas as pd
    from sklearn.model_selection import train_test_split

    from ml.uplift import LEARNERS, TLearner, make_learner

    if not DATA.is_file():
        sys.exit(f"{DATA} not found (set ENCORE_SHARED_DATA to the folder of the shared data sets)")
    started = time.perf_counter()
    frame = pd.read_csv(DATA)
    frame = frame[frame["segment"].isin([TREATMENT, CONTROL])].reset_index(drop=True)  # file order kept
    t = (frame["segment"] == TREATMENT).to_numpy(dtype=np.int64)
    x = pd.get_dummies(frame[NUMERIC + CATEGORICAL], columns=CATEGORICAL, dtype=float).to_numpy(dtype=np.float64)
    rows = np.arange(len(frame))
    print(f"rows: {len(frame)}")
    print(f"treated_share: {t.mean():.4f}")
    print(f"features: {x.shape[1]}")

    best: dict[str, tuple[str, dict[str, float]]] = {}
    for outcome in OUTCOMES:
        y = frame[outcome].to_numpy(dtype=np.int64)
        train, test = train_test_split(rows, test_size=0.3, random_state=42, stratify=t * 2 + y)
        x_train, t_train, y_train = x[train], t[train], y[train]
        x_test, t_test, y_test = x[test], t[test], y[test]
        print(f"test_rows_{outcome}: {len(test)}")
        print(f"observed_uplift_test_{outcome}: {y_test[t_test == 1].mean() - y_test[t_test == 0].mean():.4f}")

        results: dict[str, dict[str, float]] = {}
        for name in LEARNERS:
            fit_started = time.perf_counter()
            uplift = make_learner(name).fit(x_train, t_train, y_train).predict(x_test)
            seconds = time.perf_counter() - fit_started
            results[name] = scores(y_test, uplift, t_test)
            for metric, value in results[name].items():
                print(f"{metric}_{name}_{outcome}: {value:.4f}")
            print(f"seconds_{name}_{outcome}: {seconds:.1f}")

        baseline = scores(y_test, TLearner(**XGBOOST_DEFAULTS).fit(x_train, t_train, y_train).predict(x_test), t_test)
        for metric, value in baseline.items():
            print(f"baseline_t_learner_{metric}_{outcome}: {value:.4f}")

        cv = {name: cross_validated_qini(name, x_train, t_train, y_train) for name in LEARNERS}
        for name, value in cv.items():
            print(f"cv_qini_{name}_{outcome}: {value:.4f}")
        print(f"cv_best_learner_{outcome}: {max(cv, key=cv.get)}")
        winner = max(results, key=lambda n: results[n]["qini"])
        best[outcome] = (winner, results[winner])

        if outcome == "visit":
            seeded = [scores(y_test, make_learner(winner, random_state=s).fit(x_train, t_train, y_train).predict(x_test),
                             t_test)["qini"] for s in SEEDS]
            print(f"qini_{winner}_visit_seed_min: {min(seeded):.4f}")
            print(f"qini_{winner}_visit_seed_max: {max(seeded):.4f}")

    print(f"best_learner_visit: {best['visit'][0]}")
    print(f"best_learner_conversion: {best['conversion'][0]}")
    print(f"best_qini_visit: {best['visit'][1]['qini']:.4f}")
    print(f"best_qini_conversion: {best['conversion'][1]['qini']:.4f}")
    print(f"best_uplift_at_30_visit: {best['visit'][1]['uplift_at_30']:.4f}")
    print(f"total_seconds: {time.perf_counter() - started:.1f}")


if __name__ == "__main__":
    main()
