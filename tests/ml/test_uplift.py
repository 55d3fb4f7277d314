"""Uplift learners and metrics (pure): metrics against hand computations, learners on experiments with a known effect."""

import pickle
import subprocess
import sys
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from ml import uplift
from ml.uplift import (
    LEARNERS, ClassTransformation, XLearner, chart_points, evaluate, make_learner, perfect_qini_curve, perfect_uplift_curve,
    qini_auc_score, qini_curve, uplift_at_k, uplift_auc_score, uplift_curve,
)

# Eight customers, best predicted uplift first; rows 4 and 5 tie at 0.5.
#   row   score  t  y
#    0    0.9    1  1
#    1    0.8    0  0
#    2    0.7    1  1
#    3    0.6    0  1
#    4    0.5    1  0
#    5    0.5    0  0
#    6    0.3    1  0
#    7    0.2    0  0
SCORE = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.5, 0.3, 0.2])
T = np.array([1, 0, 1, 0, 1, 0, 1, 0])
Y = np.array([1, 0, 1, 1, 0, 0, 0, 0])
# Counts in the top n, at the end of each run of equal scores (no cut at n=5, inside the tie):
#   n    N_T Y_T N_C Y_C   uplift (Y_T/N_T − Y_C/N_C)·n    Qini Y_T − Y_C·N_T/N_C
#   1     1   1   0   0    (1 − 0)·1   = 1                1 − 0 (N_C = 0: ratio 0) = 1
#   2     1   1   1   0    (1 − 0)·2   = 2                1 − 0·1/1 = 1
#   3     2   2   1   0    (1 − 0)·3   = 3                2 − 0     = 2
#   4     2   2   2   1    (1 − 1/2)·4 = 2                2 − 1·2/2 = 1
#   6     3   2   3   1    (2/3 − 1/3)·6 = 2              2 − 1·3/3 = 1
#   7     4   2   3   1    (1/2 − 1/3)·7 = 7/6            2 − 1·4/3 = 2/3
#   8     4   2   4   1    (1/2 − 1/4)·8 = 2              2 − 1·4/4 = 1
X_CUTS = [0, 1, 2, 3, 4, 6, 7, 8]
UPLIFT_VALUES = [0, 1, 2, 3, 2, 2, 7 / 6, 2]
QINI_VALUES = [0, 1, 1, 2, 1, 1, 2 / 3, 1]


def test_the_uplift_curve_matches_the_hand_computed_table():
    x, values = uplift_curve(Y, SCORE, T)
    assert x.tolist() == X_CUTS
    assert values == pytest.approx(UPLIFT_VALUES)


def test_the_qini_curve_matches_the_hand_computed_table():
    x, values = qini_curve(Y, SCORE, T)
    assert x.tolist() == X_CUTS
    assert values == pytest.approx(QINI_VALUES)


def test_the_perfect_uplift_curve_ranks_treated_responders_and_control_non_responders_first():
    # Control responders (CR) = 1 (row 3) ≤ treated non-responders (TN) = 2 (rows 4, 6), so the
    # perfect score is 2·[y = t] + t: rows 0, 2 → 3; rows 1, 5, 7 → 2; rows 4, 6 → 1; row 3 → 0.
    #   n=2: N_T=2 Y_T=2 N_C=0        → (1 − 0)·2       = 2
    #   n=5: N_T=2 Y_T=2 N_C=3 Y_C=0  → (1 − 0)·5       = 5
    #   n=7: N_T=4 Y_T=2 N_C=3 Y_C=0  → (1/2 − 0)·7     = 3.5
    #   n=8: N_T=4 Y_T=2 N_C=4 Y_C=1  → (1/2 − 1/4)·8   = 2
    x, values = perfect_uplift_curve(Y, T)
    assert x.tolist() == [0, 2, 5, 7, 8]
    assert values == pytest.approx([0, 2, 5, 3.5, 2])


def test_the_perfect_qini_curve_with_and_without_negative_effects():
    # negative_effect=True: score y·t − y·(1 − t): rows 0, 2 → 1; row 3 → −1; the rest 0.
    #   n=2: 2 − 0 = 2;  n=7: N_T=4 Y_T=2 N_C=3 Y_C=0 → 2;  n=8: 2 − 1·4/4 = 1
    x, values = perfect_qini_curve(Y, T)
    assert x.tolist() == [0, 2, 7, 8]
    assert values == pytest.approx([0, 2, 2, 1])
    # negative_effect=False: R = Y_T − N_T·Y_C/N_C = 2 − 4·1/4 = 1; (0, 0) → (R, R) → (n, R).
    x, values = perfect_qini_curve(Y, T, negative_effect=False)
    assert x.tolist() == [0, 1, 8]
    assert values.tolist() == [0, 1, 1]


def test_the_auuc_is_the_area_above_random_over_the_perfect_one():
    # Trapezoids of the uplift curve: 0.5 + 1.5 + 2.5 + 2.5 + 4 + 19/12 + 19/12 = 85/6.
    # Random: the line (0, 0)–(8, 2), area 8. Perfect: 2 + 10.5 + 8.5 + 2.75 = 23.75.
    # AUUC = (85/6 − 8) / (23.75 − 8) = (37/6) / 15.75 = 74/189.
    assert uplift_auc_score(Y, SCORE, T) == pytest.approx(74 / 189)


def test_the_qini_coefficient_is_the_area_above_random_over_the_perfect_one():
    # Trapezoids of the Qini curve: 0.5 + 1 + 1.5 + 1.5 + 2 + 5/6 + 5/6 = 49/6.
    # Random: (0, 0)–(8, 1), area 4. Perfect (negative effects): 2 + 10 + 1.5 = 13.5.
    # Qini = (49/6 − 4) / (13.5 − 4) = (25/6) / 9.5 = 25/57.
    assert qini_auc_score(Y, SCORE, T) == pytest.approx(25 / 57)
    # Without negative effects the perfect area is 0.5 + 7 = 7.5: (25/6) / 3.5 = 25/21, above 1
    # because this ranking profits from putting the control responder late, which that curve ignores.
    assert qini_auc_score(Y, SCORE, T, negative_effect=False) == pytest.approx(25 / 21)


def test_uplift_at_k_takes_the_top_share_of_everyone_or_of_each_arm():
    # overall, k=0.5: top ⌊8·0.5⌋ = 4 = rows 0–3: treated 0, 2 → 1; control 1, 3 → 1/2.
    assert uplift_at_k(Y, SCORE, T, "overall", k=0.5) == pytest.approx(0.5)
    # overall, k=0.3: top ⌊2.4⌋ = 2 = rows 0, 1: treated 1, control 0.
    assert uplift_at_k(Y, SCORE, T, "overall", k=0.3) == pytest.approx(1.0)
    # by_group, k=3: the top 3 treated (rows 0, 2, 4) → 2/3 and the top 3 controls (1, 3, 5) → 1/3.
    assert uplift_at_k(Y, SCORE, T, "by_group", k=3) == pytest.approx(1 / 3)
    # by_group, k=0.5: ⌊4·0.5⌋ = 2 per arm: treated 0, 2 → 1; control 1, 3 → 1/2.
    assert uplift_at_k(Y, SCORE, T, "by_group", k=0.5) == pytest.approx(0.5)


def test_uplift_at_k_breaks_ties_as_scikit_uplift_does_the_later_row_first():
    # overall, k=5: the fifth place goes to one of the tied rows 4, 5. sklift's reversed stable sort
    # puts row 5 (control, y=0) first: treated 0, 2 → 1; control 1, 3, 5 → 1/3; 1 − 1/3 = 2/3.
    # (With row 4 it would be 2/3 − 1/2 = 1/6.)
    assert uplift_at_k(Y, SCORE, T, "overall", k=5) == pytest.approx(2 / 3)


def test_uplift_at_k_rejects_a_k_outside_the_sample():
    for k in (0, 1.0, 8, -0.2):
        with pytest.raises(ValueError):
            uplift_at_k(Y, SCORE, T, "overall", k=k)
    with pytest.raises(ValueError):
        uplift_at_k(Y, SCORE, T, "by_group", k=5)  # only four customers per arm
    with pytest.raises(ValueError):
        uplift_at_k(Y, SCORE, T, "first", k=0.3)


def test_curves_start_at_zero_and_end_at_the_total_effect():
    rng = np.random.default_rng(3)
    y, t, score = rng.integers(0, 2, 500), rng.integers(0, 2, 500), rng.normal(size=500)
    n_t, n_c = (t == 1).sum(), (t == 0).sum()
    rate_t, rate_c = y[t == 1].mean(), y[t == 0].mean()
    x, values = uplift_curve(y, score, t)
    assert (x[0], values[0]) == (0, 0)
    assert x[-1] == 500 and values[-1] == pytest.approx((rate_t - rate_c) * 500)
    x, values = qini_curve(y, score, t)
    assert (x[0], values[0]) == (0, 0)
    assert x[-1] == 500 and values[-1] == pytest.approx(y[t == 1].sum() - y[t == 0].sum() * n_t / n_c)
    assert len(x) == 501  # no ties: one point per customer, plus the origin


def test_a_perfect_ranking_gives_the_perfect_curve_and_a_coefficient_of_one():
    rng = np.random.default_rng(4)
    y, t = rng.integers(0, 2, 400), rng.integers(0, 2, 400)
    # Treated responders first, control responders last, and the non-responders between in random
    # order with distinct scores: the Qini curve is flat over them, so the area is the perfect one.
    score = y * t - y * (1 - t) + (y == 0) * rng.uniform(0, 0.1, 400)
    assert qini_auc_score(y, score, t) == pytest.approx(1.0)
    x, values = qini_curve(y, score, t)
    x_perfect, values_perfect = perfect_qini_curve(y, t)
    assert np.interp(x_perfect, x, values) == pytest.approx(values_perfect)
    assert qini_auc_score(y, -score, t) < 0  # the worst ranking is below random
    perfect = 2 * (y == t) + (y if ((y == 1) & (t == 0)).sum() > ((y == 0) & (t == 1)).sum() else t)
    assert uplift_auc_score(y, perfect, t) == pytest.approx(1.0)
    assert qini_auc_score(y, rng.normal(size=400), t) == pytest.approx(0.0, abs=0.25)


def test_chart_points_keep_both_ends_and_at_most_the_asked_number():
    x, values = qini_curve(*np.random.default_rng(5).integers(0, 2, (2, 1000)), t=np.tile([0, 1], 500))
    points = chart_points(x, values, max_points=50)
    assert len(points) <= 50
    assert points[0] == (0.0, 0.0) and points[-1] == (float(x[-1]), float(values[-1]))
    assert chart_points([0, 1, 2], [0, 1, 0], max_points=50) == [(0.0, 0.0), (1.0, 1.0), (2.0, 0.0)]


def test_evaluate_reports_every_metric_of_the_table():
    report = evaluate(Y, SCORE, T, k=0.5)
    assert (report.n, report.n_treated) == (8, 4)
    assert report.observed_uplift == pytest.approx(2 / 4 - 1 / 4)
    assert report.qini == pytest.approx(25 / 57) and report.uplift_auc == pytest.approx(74 / 189)
    assert report.uplift_at_k == pytest.approx(0.5)
    assert report.qini_curve == [(float(a), pytest.approx(b)) for a, b in zip(X_CUTS, QINI_VALUES)]


# ------------------------------------------------------------------------------------------ learners

def experiment(seed: int, n: int, treated_share: float = 0.7):
    """A randomised experiment with unequal arms: the ad adds 25 points of response for half the
    customers (x0 < 0.5) and nothing for the others, over a base rate of 15–25 % set by x1."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, 4))
    responds = x[:, 0] < 0.5
    base = 0.15 + 0.1 * x[:, 1]
    effect = 0.25 * responds
    t = (rng.random(n) < treated_share).astype(int)
    y = (rng.random(n) < base + effect * t).astype(int)
    return x, t, y, effect, responds


@cache
def fitted(name: str):
    x, t, y, _, _ = experiment(seed=0, n=4000)
    return make_learner(name, random_state=0).fit(x, t, y)


@pytest.mark.parametrize("name", list(LEARNERS))
def test_every_learner_ranks_the_responding_half_above_the_others(name):
    x, t, y, effect, responds = experiment(seed=1, n=20000)  # fresh customers: predicting is cheap
    predicted = fitted(name).predict(x)
    assert predicted.shape == (20000,)
    assert predicted[responds].mean() - predicted[~responds].mean() > 0.12  # the truth: 0.25
    # Ranked by the true effect these customers score 0.15 (outcomes are coin flips); at random, 0.
    assert qini_auc_score(y, effect + 1e-9 * x[:, 3], t) == pytest.approx(0.15, abs=0.01)
    assert qini_auc_score(y, predicted, t) > 0.08
    assert uplift_at_k(y, predicted, t, "overall", 0.3) > 0.15  # the truth in the top 30 %: at most 0.25


def test_weighted_class_transformation_is_unbiased_with_unequal_arms_and_the_unweighted_one_is_not():
    x, t, y, effect, _ = experiment(seed=5, n=20000)  # 70 % treated
    weighted = ClassTransformation().fit(x, t, y).predict(x)
    unweighted = ClassTransformation(weighted=False).fit(x, t, y).predict(x)
    # The weighted mean of 2Z − 1 is exactly ȳ_T − ȳ_C, the experiment's unbiased estimate; the
    # model's mean follows it, and both are the true average effect up to sampling noise (±0.006).
    difference_in_means = y[t == 1].mean() - y[t == 0].mean()
    assert weighted.mean() == pytest.approx(difference_in_means, abs=0.006)
    assert weighted.mean() == pytest.approx(effect.mean(), abs=0.02)  # 0.125
    # Unweighted, 2·P(Z=1|x) − 1 = 1.4·P1 − 0.6·P0 − 0.4: about −0.06 on average, not 0.125.
    assert unweighted.mean() < 0.0


def test_the_x_learner_combines_arms_with_the_treated_share_or_a_fitted_propensity():
    x, t, y, _, responds = experiment(seed=0, n=4000)
    share = fitted("x_learner")
    assert share.share == pytest.approx(t.mean())
    assert share.propensity_of(x[:3]).tolist() == [t.mean()] * 3
    modelled = XLearner(propensity="fitted", random_state=0).fit(x, t, y)
    g = modelled.propensity_of(x)
    assert g.mean() == pytest.approx(t.mean(), abs=0.01) and g.std() < 0.05  # randomised: nearly constant
    assert np.corrcoef(modelled.predict(x), share.predict(x))[0, 1] > 0.95


def test_a_learner_refuses_an_arm_without_both_outcomes_and_predicting_before_fitting():
    x, t, y, _, _ = experiment(seed=0, n=200)
    with pytest.raises(ValueError, match="control arm"):
        make_learner("t_learner").fit(x, t, np.where(t == 0, 0, y))
    with pytest.raises(RuntimeError, match="not fitted"):
        make_learner("s_learner").predict(x)
    with pytest.raises(ValueError, match="s_learner"):
        make_learner("causal_forest")


def test_importing_the_uplift_module_loads_neither_django_nor_xgboost_nor_scikit_learn():
    code = "import sys, ml.uplift; print(sorted(m for m in ('django', 'sklearn', 'xgboost') if m in sys.modules))"
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert result.stdout.strip() == "[]"
    assert uplift.LEARNERS["class_transformation"] is ClassTransformation


def test_a_fitted_learner_predicts_the_same_after_pickling():
    x = experiment(seed=2, n=50)[0]
    for name in LEARNERS:
        model = fitted(name)
        assert np.array_equal(pickle.loads(pickle.dumps(model)).predict(x), model.predict(x))


def test_persuadable_customers_are_the_best_first_prefix_that_keeps_the_incremental_cpa_under_target():
    from ml.uplift import select_persuadable

    u = np.array([0.10, -0.05, 0.02, 0.30, 0.0, 0.05])
    # Best first: 0.30, 0.10, 0.05, 0.02. Cost 1 a contact: iCPA 1/0.30 = 3.3, 2/0.40 = 5, 3/0.45 = 6.7, 4/0.47 = 8.5.
    chosen = select_persuadable(u, value=20.0, cost=1.0, target_cpa=7.0)
    assert chosen.include.tolist() == [True, False, False, True, False, True]
    assert chosen.customers == 3 and chosen.threshold == pytest.approx(0.05)
    assert chosen.incremental_cpa == pytest.approx(3 / 0.45) and chosen.incremental_profit == pytest.approx(0.45 * 20 - 3)
    # Without a target: whoever is worth more than the contact (uplift × 20 > 1, so uplift > 0.05).
    assert select_persuadable(u, value=20.0, cost=1.0).include.tolist() == [True, False, False, True, False, False]
    # Never a negative or zero uplift, even when contacts are free and the target generous.
    free = select_persuadable(u, value=1.0, cost=0.0, target_cpa=1e9)
    assert free.include.tolist() == [True, False, True, True, False, True]
    assert select_persuadable(u, value=20.0, cost=1.0, target_cpa=1.0).customers == 0
