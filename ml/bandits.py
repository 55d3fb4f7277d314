"""Traffic allocation by Thompson sampling, with a floor per arm and an ε share kept exploring.

Pure numpy (no Django). The same code serves two decisions: which ad of a ranked set to
show, and which model version (champion or challenger) scores a request. An arm is
anything with a click/conversion count: successes and failures observed, plus a Beta prior
(1, 1 by default; an informed prior such as ZOZOTOWN's in the Open Bandit Dataset is just
larger numbers).

The policy. Thompson sampling gives each arm the probability that it is the best under
the posterior, P(θ_i = max_j θ_j). Two things are mixed in so that every arm stays
observable and every decision can be evaluated off-line later (ml.ope):

1. ε exploration: with probability ε the arm is uniform over all arms;
2. a floor: no arm gets less than `floor` (a share of traffic), taking the difference from
   the arms above the floor in proportion to their share, repeated until none is below.

`allocate` returns these mixed probabilities; `choose` samples from them and returns the
probability of the arm it picked — the propensity to log. The posterior probabilities are
computed by quadrature (to ~1e-5) for Beta posteriors with α, β ≥ 1, and estimated by
Monte Carlo otherwise (`draws` samples per arm, standard error at most 0.5/sqrt(draws)); either
way the propensity is exact for the decision taken, because the arm is drawn from the very
vector returned, so importance weights built from it are unbiased.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Sequence

import numpy as np


@dataclass(frozen=True)
class Arm:
    """An ad or a model version with its observed outcomes and its Beta prior."""

    key: Hashable
    successes: float = 0.0
    failures: float = 0.0
    prior_alpha: float = 1.0
    prior_beta: float = 1.0

    @property
    def alpha(self) -> float:
        return self.prior_alpha + self.successes

    @property
    def beta(self) -> float:
        return self.prior_beta + self.failures

    @property
    def mean(self) -> float:
        """Posterior mean success rate."""
        return self.alpha / (self.alpha + self.beta)

    def observed(self, successes: float = 0.0, failures: float = 0.0) -> Arm:
        """The same arm with more outcomes counted."""
        return Arm(self.key, self.successes + successes, self.failures + failures, self.prior_alpha, self.prior_beta)


@dataclass(frozen=True)
class Choice:
    """One decision: the arm picked, the probability it had (to log), and the whole allocation."""

    index: int
    key: Hashable
    propensity: float
    probabilities: np.ndarray


def _posterior(arms: Sequence[Arm]) -> tuple[np.ndarray, np.ndarray]:
    if not arms:
        raise ValueError("no arms to allocate between")
    alpha = np.array([arm.alpha for arm in arms], dtype=np.float64)
    beta = np.array([arm.beta for arm in arms], dtype=np.float64)
    if (alpha <= 0).any() or (beta <= 0).any():
        raise ValueError("Beta parameters must be positive")
    return alpha, beta


def best_arm_probabilities(arms: Sequence[Arm], rng: np.random.Generator, draws: int = 10_000,
                           chunk: int = 20_000) -> np.ndarray:
    """P(arm i has the highest success rate) under the posterior.

    By quadrature (`_best_arm_exact`) when every Beta has α, β ≥ 1, as with the default uniform
    prior: to ~1e-5, and several times faster than sampling. Otherwise (a prior below 1 makes
    a density unbounded at 0 or 1) by Monte Carlo with `draws` samples per arm.
    """
    alpha, beta = _posterior(arms)
    if len(arms) == 1:
        return np.ones(1)
    if (alpha >= 1).all() and (beta >= 1).all():
        return _best_arm_exact(alpha, beta)
    wins = np.zeros(len(arms))
    for start in range(0, draws, chunk):
        size = min(chunk, draws - start)
        samples = rng.beta(alpha, beta, size=(size, len(arms)))
        wins += np.bincount(samples.argmax(axis=1), minlength=len(arms))
    return wins / draws


_GAUSS_NODES, _GAUSS_WEIGHTS = np.polynomial.legendre.leggauss(8)
_SPREAD = (-10.0, -4.0, -1.5, 1.5, 4.0, 10.0)  # breakpoints per arm, in posterior standard deviations


def _best_arm_exact(alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """P(θ_i = max_j θ_j) = ∫ f_i(x) Π_{j≠i} F_j(x) dx for Beta posteriors, by composite Gauss–Legendre.

    The interval [0, 1] is cut at every arm's mean ± 1.5, 4 and 10 standard deviations, and each
    piece gets 8 nodes, so a sharp posterior (a well-known ad) is resolved as finely as a broad one
    (a new ad) wherever either has mass: within 2e-5 of a 40-node, ±15 sd rule on random arms, in
    ~70 µs for three arms (2,000 Monte Carlo draws: ~300 µs, standard error up to 0.011).
    Needs α, β ≥ 1 (bounded densities).
    """
    from scipy import special

    total = alpha + beta
    mean, sd = alpha / total, np.sqrt(alpha * beta / (total * total * (total + 1.0)))
    cuts = np.unique(np.clip(np.concatenate([[0.0, 1.0], (mean[:, None] + sd[:, None] * np.array(_SPREAD)).ravel()]), 0.0, 1.0))
    low, width = cuts[:-1], np.diff(cuts)  # unique cuts: every piece has a width
    x = (low[:, None] + width[:, None] * (_GAUSS_NODES + 1.0) / 2.0).ravel()
    w = (width[:, None] * _GAUSS_WEIGHTS / 2.0).ravel()
    a, b = alpha[:, None], beta[:, None]
    log_pdf = (a - 1.0) * np.log(x) + (b - 1.0) * np.log1p(-x) - special.betaln(alpha, beta)[:, None]
    log_cdf = np.log(np.maximum(special.betainc(a, b, x), 1e-300))
    # Π_{j≠i} F_j(x) = exp(Σ_j log F_j(x) − log F_i(x)): one pass for all arms.
    p = (np.exp(log_pdf + log_cdf.sum(axis=0) - log_cdf) * w).sum(axis=1)
    return p / p.sum()


def slot_probabilities(arms: Sequence[Arm], slots: int, rng: np.random.Generator, draws: int = 100_000,
                       chunk: int = 10_000) -> np.ndarray:
    """P(arm i is shown in slot k) when one sample per arm is drawn and the `slots` largest fill the slots in order.

    Shape (len(arms), slots); each column sums to 1. With slots=1 it is `best_arm_probabilities`.
    This is how a ranked widget runs Thompson sampling (and how the Open Bandit Dataset's BTS
    policy chose the 3 items it showed).
    """
    alpha, beta = _posterior(arms)
    if not 1 <= slots <= len(arms):
        raise ValueError("slots must be between 1 and the number of arms")
    counts = np.zeros((len(arms), slots))
    for start in range(0, draws, chunk):
        size = min(chunk, draws - start)
        samples = rng.beta(alpha, beta, size=(size, len(arms)))
        top = np.argpartition(-samples, slots - 1, axis=1)[:, :slots] if slots < len(arms) else np.tile(
            np.arange(len(arms)), (size, 1))
        order = np.argsort(-np.take_along_axis(samples, top, axis=1), axis=1)
        ranked = np.take_along_axis(top, order, axis=1)
        for k in range(slots):
            counts[:, k] += np.bincount(ranked[:, k], minlength=len(arms))
    return counts / draws


def mix(probabilities: np.ndarray, floor: float = 0.0, epsilon: float = 0.0) -> np.ndarray:
    """(1 − ε)·p + ε·uniform, then raised to the floor: arms below it get exactly `floor`, the rest shrink in proportion."""
    p = np.asarray(probabilities, dtype=np.float64)
    k = len(p)
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError("epsilon must be between 0 and 1")
    if floor < 0 or floor * k > 1.0 + 1e-12:
        raise ValueError(f"a floor of {floor} cannot hold for {k} arms (floor × arms must be at most 1)")
    p = (1.0 - epsilon) * p / p.sum() + epsilon / k
    pinned = np.zeros(k, dtype=bool)
    for _ in range(k):  # each round pins at least one more arm, so k rounds suffice
        low = ~pinned & (p < floor)
        if not low.any():
            break
        pinned |= low
        free = ~pinned
        remaining = 1.0 - floor * pinned.sum()
        p[pinned] = floor
        if free.any():
            p[free] *= remaining / p[free].sum()
    return p / p.sum()


def allocate(arms: Sequence[Arm], floor: float = 0.0, epsilon: float = 0.0, rng: np.random.Generator | None = None,
             draws: int = 10_000) -> np.ndarray:
    """Selection probability of each arm under Thompson sampling mixed with ε uniform exploration and a floor.

    Sums to 1, aligned with `arms`. `floor` is a share of traffic per arm (e.g. 0.05);
    `epsilon` the share that ignores the posterior entirely.
    """
    rng = rng if rng is not None else np.random.default_rng()
    return mix(best_arm_probabilities(arms, rng, draws), floor, epsilon)


def choose(arms: Sequence[Arm], floor: float = 0.0, epsilon: float = 0.0, rng: np.random.Generator | None = None,
           draws: int = 10_000) -> Choice:
    """Pick one arm under `allocate`'s policy; its propensity is the probability it was picked with."""
    rng = rng if rng is not None else np.random.default_rng()
    probabilities = allocate(arms, floor, epsilon, rng, draws)
    index = int(rng.choice(len(arms), p=probabilities))
    return Choice(index, arms[index].key, float(probabilities[index]), probabilities)
