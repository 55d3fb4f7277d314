"""Uplift modelling: whom does an ad *persuade*, judged from treated customers and a random control group?

Pure numpy/pandas/scikit-learn/xgboost (no Django). marketing/tasks.py loads a campaign's
treated and control customers (the control group is a random holdout, so treatment is
independent of the features) with their outcome (converted or not) and calls a learner's
`fit(X, t, y)`; `predict(X)` then gives each customer's uplift

    τ(x) = P(y=1 | treated, x) − P(y=1 | control, x),

the change in their response probability that the ad causes. Nobody is seen both treated and
untreated, so no model can fit τ directly; the learners below are four ways around that, all on
xgboost (imported inside the functions, so importing this module from a web process loads
neither xgboost nor scikit-learn):

- S-learner: one classifier with the treatment as a feature; τ(x) = f(x, 1) − f(x, 0). Trees
  only use t where it helps, so it shrinks the effects toward zero: biased, but low variance —
  often the best ranker when effects are small next to the base rate (as with e-mail visits).
- T-learner: one classifier per arm; τ(x) = μ1(x) − μ0(x). Unbiased in principle, but the
  difference of two independently noisy models is noisier than either.
- X-learner (Künzel et al. 2019): the T-learner's arms impute each customer's effect from the
  other arm's model — D1 = y − μ0(x) for the treated, D0 = μ1(x) − y for the controls — and one
  regressor per arm learns τ1 from D1 and τ0 from D0; τ(x) = g(x)·τ0(x) + (1 − g(x))·τ1(x).
  Each imputation uses a model that never saw that row (μ0 is fit on controls only, and is
  applied to the treated), so no cross-fitting is needed. g is the propensity P(t=1 | x); it is
  only a weight between the two estimates (never a divisor), and leans on τ0 — whose imputation
  used μ1, the model of the larger arm — when the treated are the majority. In a randomised
  experiment the true propensity is the constant treated share, so `propensity="share"` (the
  default) uses it: a fitted classifier would only learn the chance imbalances of this sample.
  `propensity="fitted"` fits a logistic regression of t on x, for logs where treatment was not
  assigned at random.
- Class transformation (Jaskowski & Jaroszewicz 2012): one classifier of Z = y·t + (1 − y)(1 − t)
  ("responded when treated, or did not when not"). With equal arms and t independent of x,
  P(Z=1 | x) = ½·P(y=1 | t=1, x) + ½·(1 − P(y=1 | t=0, x)), so τ(x) = 2·P(Z=1 | x) − 1. With a
  treated share p ≠ ½ the halves become p and 1 − p and that identity is biased: for p = 0.7 and
  no effect at all, 2·P(Z=1) − 1 = 1.4·P1 − 0.6·P0 − 0.4, not 0. We therefore fit with sample
  weights 1/(2p) for treated rows and 1/(2(1 − p)) for control rows: each arm then carries half
  the total weight, the weighted problem is the equal-arms one, and τ(x) = 2·P_w(Z=1 | x) − 1
  stays unbiased. (`weighted=False` gives the textbook version, to show the bias.)

Metrics follow scikit-uplift (sklift.metrics, v0.5) exactly, so figures compare with published
ones; scikit-uplift is not a dependency. Customers are ranked by predicted uplift, best first;
at each cut n (taken only after the last of a run of tied scores, ties are never split):

- uplift curve: (Y_T/N_T − Y_C/N_C) · n — the top n's response-rate difference times n;
- Qini curve: Y_T − Y_C · N_T/N_C — incremental responders among the treated of the top n;

where N_T, N_C count the treated and control customers in the top n and Y_T, Y_C their
responders; both curves start at (0, 0). `uplift_auc_score` and `qini_auc_score` are the areas
between the curve and the random-targeting line (0, 0)–(n, end value), divided by the same area
for the perfect curve; 1 is perfect, 0 is random (the Qini coefficient). `uplift_at_k` is the
response-rate difference among the top k.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

# ---------------------------------------------------------------------------------------- learners


def _matrix(X) -> np.ndarray:
    """Features as a dense float matrix (the caller encodes categoricals; NaN stays missing for xgboost)."""
    x = np.asarray(X.to_numpy() if isinstance(X, pd.DataFrame) else X, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"X must be a 2-D matrix, got shape {x.shape}")
    return x


def _labels(values, name: str, n: int) -> np.ndarray:
    v = np.asarray(values)
    if v.shape != (n,):
        raise ValueError(f"{name} must have one entry per row of X ({n}), got shape {v.shape}")
    if not np.isin(v, (0, 1)).all():
        raise ValueError(f"{name} must be 0/1")
    return v.astype(np.int64)


def _check(X, t, y) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = _matrix(X)
    t, y = _labels(t, "t", len(x)), _labels(y, "y", len(x))
    for arm in (0, 1):
        outcomes = y[t == arm]
        if len(outcomes) == 0 or outcomes.min() == outcomes.max():
            name = "treated" if arm else "control"
            raise ValueError(f"the {name} arm needs both responders and non-responders to learn from")
    return x, t, y


@dataclass
class Learner:
    """xgboost hyper-parameters shared by every model a learner fits; `fit(X, t, y)` / `predict(X)`.

    X: a numeric matrix or DataFrame (categoricals already encoded; NaN allowed), t and y: 0/1.
    A fitted learner pickles as one object, its xgboost models inside.
    """

    # Shallow, slowly learnt trees: uplift is a small difference of two response rates, and
    # deep trees fit the noise of each arm long before they find it.
    n_estimators: int = 200
    max_depth: int = 3
    learning_rate: float = 0.05
    min_child_weight: float = 5.0
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    reg_lambda: float = 1.0
    random_state: int = 0
    n_jobs: int = 2

    def fit(self, X, t, y) -> Learner:
        raise NotImplementedError

    def predict(self, X) -> np.ndarray:
        """Predicted uplift per row: P(y=1 | treated, x) − P(y=1 | control, x)."""
        raise NotImplementedError

    def _params(self) -> dict[str, Any]:
        return {"n_estimators": self.n_estimators, "max_depth": self.max_depth, "learning_rate": self.learning_rate,
                "min_child_weight": self.min_child_weight, "subsample": self.subsample,
                "colsample_bytree": self.colsample_bytree, "reg_lambda": self.reg_lambda,
                "random_state": self.random_state, "n_jobs": self.n_jobs, "tree_method": "hist"}

    def _classifier(self, x: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None):
        import xgboost

        model = xgboost.XGBClassifier(**self._params(), objective="binary:logistic", eval_metric="logloss")
        return model.fit(x, y, sample_weight=sample_weight)

    def _regressor(self, x: np.ndarray, target: np.ndarray):
        import xgboost

        model = xgboost.XGBRegressor(**self._params(), objective="reg:squarederror")
        return model.fit(x, target)

    def _fitted(self, *names: str) -> None:
        if any(getattr(self, n, None) is None for n in names):
            raise RuntimeError(f"{type(self).__name__} is not fitted yet: call fit(X, t, y) first")


def _positive(model, x: np.ndarray) -> np.ndarray:
    return model.predict_proba(x)[:, 1].astype(np.float64)


@dataclass
class SLearner(Learner):
    """One classifier on (x, t); uplift = f(x, 1) − f(x, 0)."""

    model: Any = field(default=None, init=False, repr=False)

    def fit(self, X, t, y) -> SLearner:
        x, t, y = _check(X, t, y)
        self.model = self._classifier(np.column_stack([x, t]), y)
        return self

    def predict(self, X) -> np.ndarray:
        self._fitted("model")
        x = _matrix(X)
        ones, zeros = np.ones(len(x)), np.zeros(len(x))
        return _positive(self.model, np.column_stack([x, ones])) - _positive(self.model, np.column_stack([x, zeros]))


@dataclass
class TLearner(Learner):
    """One classifier per arm; uplift = μ1(x) − μ0(x)."""

    treated: Any = field(default=None, init=False, repr=False)
    control: Any = field(default=None, init=False, repr=False)

    def fit(self, X, t, y) -> TLearner:
        x, t, y = _check(X, t, y)
        self.treated = self._classifier(x[t == 1], y[t == 1])
        self.control = self._classifier(x[t == 0], y[t == 0])
        return self

    def predict(self, X) -> np.ndarray:
        self._fitted("treated", "control")
        x = _matrix(X)
        return _positive(self.treated, x) - _positive(self.control, x)


@dataclass
class XLearner(Learner):
    """T-learner first stage, imputed effects, one effect regressor per arm, combined with the propensity g.

    propensity: "share" (the treated share of the training rows: right for a randomised
    experiment), "fitted" (a logistic regression of t on x), or a number in [0, 1].
    """

    propensity: str | float = "share"
    treated: Any = field(default=None, init=False, repr=False)
    control: Any = field(default=None, init=False, repr=False)
    effect_treated: Any = field(default=None, init=False, repr=False)  # τ1, learnt from D1 on the treated
    effect_control: Any = field(default=None, init=False, repr=False)  # τ0, learnt from D0 on the controls
    share: float | None = field(default=None, init=False)
    propensity_model: Any = field(default=None, init=False, repr=False)

    def fit(self, X, t, y) -> XLearner:
        x, t, y = _check(X, t, y)
        if not (self.propensity in ("share", "fitted") or isinstance(self.propensity, (int, float))):
            raise ValueError(f"propensity must be 'share', 'fitted' or a number, not {self.propensity!r}")
        x1, y1, x0, y0 = x[t == 1], y[t == 1], x[t == 0], y[t == 0]
        self.treated = self._classifier(x1, y1)
        self.control = self._classifier(x0, y0)
        # Each arm's effect is imputed with the other arm's model, which never saw these rows.
        self.effect_treated = self._regressor(x1, y1 - _positive(self.control, x1))
        self.effect_control = self._regressor(x0, _positive(self.treated, x0) - y0)
        self.share = float(t.mean())
        if self.propensity == "fitted":
            from sklearn.linear_model import LogisticRegression
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import StandardScaler

            self.propensity_model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, t)
        return self

    def propensity_of(self, x: np.ndarray) -> np.ndarray:
        """g(x), the weight of τ0 in the combination."""
        if self.propensity == "fitted":
            return self.propensity_model.predict_proba(x)[:, 1]
        value = self.share if self.propensity == "share" else float(self.propensity)
        return np.full(len(x), value)

    def predict(self, X) -> np.ndarray:
        self._fitted("effect_treated", "effect_control")
        x = _matrix(X)
        g = self.propensity_of(x)
        return g * self.effect_control.predict(x).astype(np.float64) + (1 - g) * self.effect_treated.predict(x).astype(np.float64)


@dataclass
class ClassTransformation(Learner):
    """One classifier of Z = y·t + (1−y)(1−t), arms weighted to equal total weight; uplift = 2·P(Z=1|x) − 1."""

    weighted: bool = True
    model: Any = field(default=None, init=False, repr=False)
    share: float | None = field(default=None, init=False)

    def fit(self, X, t, y) -> ClassTransformation:
        x, t, y = _check(X, t, y)
        z = y * t + (1 - y) * (1 - t)
        p = float(t.mean())
        self.share = p
        # Weights 1/(2p) and 1/(2(1−p)): each arm weighs n/2 in total, as if the arms were equal.
        weights = np.where(t == 1, 0.5 / p, 0.5 / (1 - p)) if self.weighted else None
        self.model = self._classifier(x, z, sample_weight=weights)
        return self

    def predict(self, X) -> np.ndarray:
        self._fitted("model")
        return 2.0 * _positive(self.model, _matrix(X)) - 1.0


LEARNERS: dict[str, type[Learner]] = {
    "s_learner": SLearner,
    "t_learner": TLearner,
    "x_learner": XLearner,
    "class_transformation": ClassTransformation,
}


def make_learner(name: str, **params) -> Learner:
    """A learner by its registry name, with hyper-parameters; an unknown name lists the known ones."""
    if name not in LEARNERS:
        raise ValueError(f"unknown uplift learner {name!r}; choose one of {', '.join(LEARNERS)}")
    return LEARNERS[name](**params)


# ----------------------------------------------------------------------------------------- metrics


def _scored(y, uplift, t) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y, uplift, t = np.asarray(y), np.asarray(uplift, dtype=np.float64), np.asarray(t)
    if y.ndim != 1 or y.shape != uplift.shape or y.shape != t.shape or len(y) == 0:
        raise ValueError("y, uplift and t must be non-empty vectors of the same length")
    for name, v in (("y", y), ("t", t)):
        if not np.isin(v, (0, 1)).all():
            raise ValueError(f"{name} must be 0/1")
    return y.astype(np.float64), uplift, t.astype(np.float64)


def _cumulative(y: np.ndarray, uplift: np.ndarray, t: np.ndarray):
    """Counts in the top n by descending uplift, at the end of each run of tied scores (as sklift)."""
    order = np.argsort(uplift, kind="mergesort")[::-1]
    y, uplift, t = y[order], uplift[order], t[order]
    ends = np.r_[np.flatnonzero(np.diff(uplift)), len(uplift) - 1]
    n = ends + 1
    n_t = np.cumsum(t)[ends]
    y_t = np.cumsum(y * t)[ends]
    y_c = np.cumsum(y * (1 - t))[ends]
    return n, n_t, n - n_t, y_t, y_c


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.zeros_like(a, dtype=np.float64), where=b != 0)


def _from_origin(n: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if n[0] != 0 or values[0] != 0:
        n, values = np.r_[0, n], np.r_[0.0, values]
    return n, values


def uplift_curve(y, uplift, t) -> tuple[np.ndarray, np.ndarray]:
    """(n, (Y_T/N_T − Y_C/N_C)·n) at each distinct score, from (0, 0); sklift's `uplift_curve`."""
    n, n_t, n_c, y_t, y_c = _cumulative(*_scored(y, uplift, t))
    return _from_origin(n, (_ratio(y_t, n_t) - _ratio(y_c, n_c)) * n)


def qini_curve(y, uplift, t) -> tuple[np.ndarray, np.ndarray]:
    """(n, Y_T − Y_C·N_T/N_C) at each distinct score, from (0, 0); sklift's `qini_curve`."""
    n, n_t, n_c, y_t, y_c = _cumulative(*_scored(y, uplift, t))
    return _from_origin(n, y_t - y_c * _ratio(n_t, n_c))


def perfect_uplift_curve(y, t) -> tuple[np.ndarray, np.ndarray]:
    """The uplift curve of the best possible ranking (sklift's): treated responders and control
    non-responders first, then whichever of control responders / treated non-responders is more
    numerous — the score 2·[y = t] + (y if CR > TN else t)."""
    y, _, t = _scored(y, np.zeros(len(np.asarray(y))), t)
    control_responders = np.sum((y == 1) & (t == 0))
    treated_non_responders = np.sum((y == 0) & (t == 1))
    summand = y if control_responders > treated_non_responders else t
    return uplift_curve(y, 2 * (y == t) + summand, t)


def perfect_qini_curve(y, t, negative_effect: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The Qini curve of the best possible ranking (sklift's).

    negative_effect=True: rank treated responders first and control responders last (score
    y·t − y·(1−t)), so the curve rises above its end and falls back — the campaign can hurt.
    negative_effect=False: sklift's curve without harm, (0, 0) → (R, R) → (n, R) with R the total
    incremental responders (R is used as an x position too: a straight line of slope 1).
    """
    if not isinstance(negative_effect, bool):
        raise TypeError(f"negative_effect must be a bool, not {type(negative_effect).__name__}")
    y, _, t = _scored(y, np.zeros(len(np.asarray(y))), t)
    if negative_effect:
        return qini_curve(y, y * t - y * (1 - t), t)
    treated, control = t == 1, t == 0
    total = y[treated].sum() - treated.sum() * y[control].sum() / control.sum()
    return np.array([0.0, total, len(y)]), np.array([0.0, total, total])


def _area(x: np.ndarray, values: np.ndarray) -> float:
    """Trapezoidal area, as sklearn's `auc` (which sklift uses): it refuses a curve that goes back on x."""
    x = np.asarray(x, dtype=np.float64)
    if (np.diff(x) < 0).any():
        # Only sklift's no-harm perfect Qini curve does this, when the campaign lost responders overall.
        raise ValueError(f"the curve's x positions go back ({x[:3]}...): no area under it")
    return float(np.trapezoid(values, x))


def _normalised_area(actual, perfect) -> float:
    """(area(actual) − area(random)) / (area(perfect) − area(random)); random = the straight line to the perfect end.

    NaN or ±inf when the perfect curve is no better than random (no responders at all, say), where
    sklift divides by zero too.
    """
    x_perfect, y_perfect = perfect
    baseline = _area(np.array([0.0, x_perfect[-1]]), np.array([0.0, y_perfect[-1]]))
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(_area(*actual) - baseline) / np.float64(_area(*perfect) - baseline))


def uplift_auc_score(y, uplift, t) -> float:
    """Normalised area under the uplift curve (AUUC), as sklift's `uplift_auc_score`: 0 random, 1 perfect."""
    return _normalised_area(uplift_curve(y, uplift, t), perfect_uplift_curve(y, t))


def qini_auc_score(y, uplift, t, negative_effect: bool = True) -> float:
    """The Qini coefficient, as sklift's `qini_auc_score`: normalised area under the Qini curve."""
    if not isinstance(negative_effect, bool):
        raise TypeError(f"negative_effect must be a bool, not {type(negative_effect).__name__}")
    return _normalised_area(qini_curve(y, uplift, t), perfect_qini_curve(y, t, negative_effect))


def uplift_at_k(y, uplift, t, strategy: str = "overall", k: float | int = 0.3) -> float:
    """Treated minus control response rate among the top k by uplift, as sklift's `uplift_at_k`.

    k: a share in (0, 1) or a number of customers. strategy "overall": the top ⌊k·n⌋ customers of
    both arms together; "by_group": the top ⌊k·n_T⌋ treated and the top ⌊k·n_C⌋ controls, each
    ranked within its arm (the same k for both when k is a count). Ties are broken as sklift
    breaks them: among equal scores, the later row comes first. NaN when an arm has nobody in the top k.
    """
    y, uplift, t = _scored(y, uplift, t)
    if strategy not in ("overall", "by_group"):
        raise ValueError(f"strategy must be 'overall' or 'by_group', not {strategy!r}")
    kind = np.asarray(k).dtype.kind
    if kind not in ("i", "f"):
        raise ValueError(f"k must be a share or a count, not {k!r}")
    n = len(y)
    if (kind == "i" and not 0 < k < n) or (kind == "f" and not 0 < k < 1):
        raise ValueError(f"k={k} must be a share in (0, 1) or a count in (0, {n})")
    order = np.argsort(uplift, kind="mergesort")[::-1]
    y, t = y[order], t[order]
    if strategy == "overall":
        size = int(n * k) if kind == "f" else int(k)
        top_y, top_t = y[:size], t[:size]
        treated, control = top_y[top_t == 1], top_y[top_t == 0]
    else:
        n_treated, n_control = int((t == 1).sum()), int((t == 0).sum())
        size_t, size_c = (int(n_treated * k), int(n_control * k)) if kind == "f" else (int(k), int(k))
        if size_t > n_treated or size_c > n_control:
            raise ValueError(f"k={k} is more customers than one arm has")
        treated, control = y[t == 1][:size_t], y[t == 0][:size_c]
    if len(treated) == 0 or len(control) == 0:
        return float("nan")
    return float(treated.mean() - control.mean())


def chart_points(x, values, max_points: int = 101) -> list[tuple[float, float]]:
    """At most `max_points` (x, value) pairs of a curve for a chart, first and last kept, evenly spaced by index."""
    x, values = np.asarray(x), np.asarray(values)
    keep = np.unique(np.linspace(0, len(x) - 1, min(max_points, len(x))).round().astype(int))
    return [(float(x[i]), float(values[i])) for i in keep]


@dataclass(frozen=True)
class UpliftReport:
    """What the report page shows of one model on held-out customers."""

    n: int
    n_treated: int
    observed_uplift: float  # treated minus control response rate over everyone: the average effect
    qini: float
    uplift_auc: float
    uplift_at_k: float
    k: float
    uplift_curve: list[tuple[float, float]]
    qini_curve: list[tuple[float, float]]
    perfect_uplift_curve: list[tuple[float, float]]
    perfect_qini_curve: list[tuple[float, float]]


def evaluate(y, uplift, t, *, k: float = 0.3, max_points: int = 101) -> UpliftReport:
    """Every metric and the chart curves of predicted `uplift` against outcomes `y` of arms `t`."""
    y, uplift, t = _scored(y, uplift, t)
    treated, control = t == 1, t == 0
    if not treated.any() or not control.any():
        raise ValueError("evaluation needs customers in both arms")
    return UpliftReport(
        n=len(y),
        n_treated=int(treated.sum()),
        observed_uplift=float(y[treated].mean() - y[control].mean()),
        qini=qini_auc_score(y, uplift, t),
        uplift_auc=uplift_auc_score(y, uplift, t),
        uplift_at_k=uplift_at_k(y, uplift, t, "overall", k),
        k=k,
        uplift_curve=chart_points(*uplift_curve(y, uplift, t), max_points),
        qini_curve=chart_points(*qini_curve(y, uplift, t), max_points),
        perfect_uplift_curve=chart_points(*perfect_uplift_curve(y, t), max_points),
        perfect_qini_curve=chart_points(*perfect_qini_curve(y, t), max_points),
    )



@dataclass
class Selection:
    """Who to target by uplift, and what the choice is predicted to earn."""

    include: np.ndarray  # bool per customer
    threshold: float | None  # the least predicted uplift included (None: nobody)
    customers: int
    incremental: float  # predicted incremental responses of those included
    cost: float
    incremental_cpa: float | None
    incremental_profit: float


def select_persuadable(uplift, *, value: float, cost: float, target_cpa: float | None = None) -> Selection:
    """Rank customers by predicted uplift × value − cost and keep the best while it pays.

    Never a customer with a predicted uplift of zero or less (the ad would not help, or would hurt).
    With a target CPA: the longest best-first prefix whose predicted incremental CPA (contacts' cost
    over predicted incremental responses) stays at or under it. Without one: every customer whose
    uplift × value exceeds the cost of reaching them. `value` is what one response is worth, `cost`
    what one contact costs.
    """
    u = np.asarray(uplift, dtype=np.float64)
    order = np.argsort(-(u * value - cost), kind="mergesort")
    ranked = u[order]
    positive = ranked > 0
    if target_cpa is not None:
        incremental = np.cumsum(np.where(positive, ranked, 0.0))
        spent = cost * np.arange(1, len(ranked) + 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            icpa = np.where(incremental > 0, spent / incremental, np.inf)
        ok = positive & (icpa <= target_cpa)
        # the longest prefix: everything up to the last position that still meets the target, positives only
        last = int(np.flatnonzero(ok)[-1]) + 1 if ok.any() else 0
        keep = np.zeros(len(ranked), dtype=bool)
        keep[:last] = positive[:last]
    else:
        keep = positive & (ranked * value - cost > 0)
    include = np.zeros(len(u), dtype=bool)
    include[order[keep]] = True
    n = int(include.sum())
    gained = float(u[include].sum())
    spent = float(cost * n)
    return Selection(include, float(u[include].min()) if n else None, n, gained, spent,
                     spent / gained if gained > 0 else None, gained * value - spent)
