"""Off-policy evaluation: what would a candidate policy earn, judged only from logged decisions?

Pure numpy (no Django). The gate calls these with the exploration log of a placement: per
logged decision the action taken, its reward (click = 1), the propensity the logging policy
chose it with, and the candidate's probabilities for that row. A candidate is promoted only
when its estimate beats the champion's.

Estimators (n logged rows, importance weight w_i = π(a_i | x_i) / μ(a_i | x_i)):

- IPW: mean of w_i r_i. Unbiased whenever μ > 0 wherever π > 0; high variance when weights
  are large.
- Self-normalised IPW: Σ w_i r_i / Σ w_i. Slightly biased (O(1/n)) but bounded by the
  rewards and usually far less variable; its interval comes from the delta method.
- Doubly robust: mean of Σ_a π(a | x_i) q̂(x_i, a) + w_i (r_i − q̂(x_i, a_i)), a reward
  model's estimate corrected by the weighted residual. Unbiased if either the propensities
  or q̂ are right; the better q̂, the smaller the variance. q̂ must not have been fit on the
  row it predicts (cross-fit it), or the correction term is biased toward zero.

Intervals. By default the normal approximation: the estimate ± z·sd(terms)/√n over the
per-row terms of the estimator (for SNIPW the linearised terms w_i (r_i − V̂) / mean(w)).
With `bootstrap=B` the rows are resampled B times and the percentile interval is used
instead — better when a few huge weights make the terms far from normal.

Clipping. `clip=c` caps the weights at c (π/μ ≤ c): less variance, bias toward the
logging policy. Left off by default.

Effective sample size: (Σw)² / Σw², the number of equally weighted rows the estimate is
worth; a small one means the logs say little about the candidate.

Positions or slots are not special here: a logged row is one decision, and the caller
passes the target policy's probabilities for that row's decision (for a ranked widget,
the probabilities of the row's slot).
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Estimate:
    """A policy value with its confidence interval."""

    method: str
    value: float
    low: float
    high: float
    n: int
    effective_sample_size: float
    stderr: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


def _rows(rewards, propensities) -> tuple[np.ndarray, np.ndarray]:
    r = np.asarray(rewards, dtype=np.float64)
    mu = np.asarray(propensities, dtype=np.float64)
    if r.ndim != 1 or r.shape != mu.shape or len(r) == 0:
        raise ValueError("rewards and propensities must be non-empty vectors of the same length")
    if (mu <= 0).any() or (mu > 1).any():
        raise ValueError("logged propensities must be in (0, 1]")
    return r, mu


def _target_of_logged(actions, target: np.ndarray, n: int) -> np.ndarray:
    """π(a_i | x_i): target is either that vector already, or an (n, actions) matrix."""
    target = np.asarray(target, dtype=np.float64)
    if target.ndim == 1:
        if len(target) != n:
            raise ValueError("target probabilities must have one entry per logged row")
        return target
    if actions is None:
        raise ValueError("actions are needed to read a matrix of target probabilities")
    a = np.asarray(actions, dtype=np.intp)
    if target.shape[0] != n or a.shape != (n,):
        raise ValueError("target matrix and actions must have one row per logged row")
    return target[np.arange(n), a]


def _weights(pi: np.ndarray, mu: np.ndarray, clip: float | None) -> np.ndarray:
    w = pi / mu
    return np.minimum(w, clip) if clip is not None else w


def _ess(w: np.ndarray) -> float:
    total = float((w * w).sum())
    return float(w.sum()) ** 2 / total if total > 0 else 0.0


def _interval(method: str, value: float, terms: np.ndarray, w: np.ndarray, level: float, bootstrap: int,
              rng: np.random.Generator | None, statistic: Callable[[np.ndarray], float]) -> Estimate:
    n = len(terms)
    stderr = float(terms.std(ddof=1) / np.sqrt(n)) if n > 1 else float("inf")
    if bootstrap:
        rng = rng if rng is not None else np.random.default_rng()
        values = np.array([statistic(rng.integers(0, n, n)) for _ in range(bootstrap)])
        tail = (1.0 - level) / 2.0
        low, high = np.quantile(values, [tail, 1.0 - tail])
        stderr = float(values.std(ddof=1))
    else:
        z = NormalDist().inv_cdf(0.5 + level / 2.0)
        low, high = value - z * stderr, value + z * stderr
    return Estimate(method, float(value), float(low), float(high), n, _ess(w), stderr)


def ipw(rewards, propensities, target, actions=None, *, clip: float | None = None, level: float = 0.95,
        bootstrap: int = 0, rng: np.random.Generator | None = None) -> Estimate:
    """Inverse propensity weighting: mean of w_i r_i.

    `target` is π(a_i | x_i) per row, or an (n, actions) matrix read at `actions`.
    """
    r, mu = _rows(rewards, propensities)
    w = _weights(_target_of_logged(actions, target, len(r)), mu, clip)
    terms = w * r
    return _interval("ipw", terms.mean(), terms, w, level, bootstrap, rng, lambda idx: terms[idx].mean())


def snipw(rewards, propensities, target, actions=None, *, clip: float | None = None, level: float = 0.95,
          bootstrap: int = 0, rng: np.random.Generator | None = None) -> Estimate:
    """Self-normalised IPW: Σ w_i r_i / Σ w_i."""
    r, mu = _rows(rewards, propensities)
    w = _weights(_target_of_logged(actions, target, len(r)), mu, clip)
    if w.sum() <= 0:
        raise ValueError("the target policy never takes a logged action: nothing to estimate from")
    value = float((w * r).sum() / w.sum())
    terms = value + w * (r - value) / w.mean()  # delta method: sd(terms)/√n is the ratio's standard error

    def statistic(idx: np.ndarray) -> float:
        total = w[idx].sum()
        return float((w[idx] * r[idx]).sum() / total) if total > 0 else value

    return _interval("snipw", value, terms, w, level, bootstrap, rng, statistic)


def doubly_robust(rewards, propensities, target, actions, reward_predictions, *, clip: float | None = None,
                  level: float = 0.95, bootstrap: int = 0, rng: np.random.Generator | None = None) -> Estimate:
    """Doubly robust: the reward model's value of π plus the weighted residual of the logged action.

    `target` and `reward_predictions` are (n, actions) matrices: π(a | x_i) and q̂(x_i, a) for
    every action a; `actions` the logged actions.
    """
    r, mu = _rows(rewards, propensities)
    pi = np.asarray(target, dtype=np.float64)
    q = np.asarray(reward_predictions, dtype=np.float64)
    if pi.ndim != 2 or q.shape != pi.shape:
        raise ValueError("doubly robust needs (rows, actions) matrices of target probabilities and reward predictions")
    a = np.asarray(actions, dtype=np.intp)
    rows = np.arange(len(r))
    w = _weights(_target_of_logged(a, pi, len(r)), mu, clip)
    terms = (pi * q).sum(axis=1) + w * (r - q[rows, a])
    return _interval("dr", terms.mean(), terms, w, level, bootstrap, rng, lambda idx: terms[idx].mean())
