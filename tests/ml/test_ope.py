"""Off-policy estimates on synthetic logs with a known true value: intervals cover it, DR beats IPW's variance (pure)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ml.ope import doubly_robust, ipw, snipw

N_ACTIONS = 5


def synthetic_log(seed: int, n: int = 3000):
    """Contexts with a feature x; rewards Bernoulli(σ(x·b_a + c_a)); a logging policy that prefers some actions."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    b, c = np.linspace(-1, 1, N_ACTIONS), np.linspace(-2.0, -0.5, N_ACTIONS)
    rate = 1 / (1 + np.exp(-(x[:, None] * b + c)))  # (n, actions)
    logging = np.tile(np.array([0.4, 0.25, 0.15, 0.1, 0.1]), (n, 1))
    actions = (rng.random(n)[:, None] > logging.cumsum(axis=1)).sum(axis=1)
    rewards = (rng.random(n) < rate[np.arange(n), actions]).astype(float)
    # Target: mostly the action with the best rate for x, softened.
    target = np.full((n, N_ACTIONS), 0.1 / (N_ACTIONS - 1))
    target[np.arange(n), rate.argmax(axis=1)] = 0.9
    true_value = (target * rate).sum(axis=1).mean()  # the expected reward of the target on these contexts
    propensities = logging[np.arange(n), actions]
    return actions, rewards, propensities, target, rate, true_value


def test_intervals_cover_the_true_value_in_at_least_90_percent_of_40_seeds():
    covered = {"ipw": 0, "snipw": 0, "dr": 0}
    for seed in range(40):
        actions, rewards, mu, target, rate, true = synthetic_log(seed)
        noisy_model = np.clip(rate + np.random.default_rng(seed + 100).normal(0, 0.05, rate.shape), 0, 1)
        estimates = {
            "ipw": ipw(rewards, mu, target, actions),
            "snipw": snipw(rewards, mu, target, actions),
            "dr": doubly_robust(rewards, mu, target, actions, noisy_model),
        }
        for name, estimate in estimates.items():
            covered[name] += estimate.contains(true)
            assert estimate.high - estimate.low < 0.15  # an interval that covers by being huge means nothing
    assert all(count >= 36 for count in covered.values()), covered


def test_doubly_robust_has_lower_variance_than_ipw_with_a_good_reward_model():
    ipw_values, dr_values = [], []
    for seed in range(30):
        actions, rewards, mu, target, rate, true = synthetic_log(seed, n=1000)
        i = ipw(rewards, mu, target, actions)
        d = doubly_robust(rewards, mu, target, actions, rate)
        assert d.stderr < i.stderr
        ipw_values.append(i.value - true)
        dr_values.append(d.value - true)
    assert np.var(dr_values) < 0.5 * np.var(ipw_values)


def test_the_bootstrap_interval_agrees_with_the_normal_one():
    actions, rewards, mu, target, _, _ = synthetic_log(7)
    normal = snipw(rewards, mu, target, actions)
    boot = snipw(rewards, mu, target, actions, bootstrap=500, rng=np.random.default_rng(0))
    assert boot.value == normal.value
    assert boot.low == pytest.approx(normal.low, abs=0.01) and boot.high == pytest.approx(normal.high, abs=0.01)


def test_the_logging_policy_estimates_its_own_mean_with_full_sample_size():
    actions, rewards, mu, _, _, _ = synthetic_log(3)
    estimate = ipw(rewards, mu, mu)  # target = logging policy: every weight is 1
    assert estimate.value == pytest.approx(rewards.mean())
    assert estimate.effective_sample_size == pytest.approx(len(rewards))


def test_clipping_caps_the_weights():
    rewards, mu = np.array([1.0, 0.0, 1.0]), np.array([0.01, 0.5, 0.5])
    target = np.array([1.0, 0.5, 0.5])
    assert ipw(rewards, mu, target).value == pytest.approx((100 + 1) / 3)
    assert ipw(rewards, mu, target, clip=10).value == pytest.approx((10 + 1) / 3)


def test_it_rejects_zero_propensities():
    with pytest.raises(ValueError):
        ipw(np.ones(2), np.array([0.5, 0.0]), np.ones(2))


def test_importing_the_online_modules_loads_neither_django_nor_scikit_learn():
    """The decision engine imports these in web workers: they must stay numpy-only."""
    code = "import sys, ml.ftrl, ml.bandits, ml.ope; print(sorted(m for m in ('django', 'sklearn', 'scipy') if m in sys.modules))"
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert result.stdout.strip() == "[]"
