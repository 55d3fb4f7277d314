"""Thompson sampling with a floor and ε exploration: traffic moves to the better arm, never below the floor (pure)."""

import numpy as np
import pytest

from ml.bandits import Arm, allocate, choose, mix, slot_probabilities


def test_it_moves_traffic_to_the_better_arm_and_never_below_the_floor():
    rng = np.random.default_rng(0)
    true_rates = [0.02, 0.05, 0.03]
    arms = [Arm(key) for key in ("a", "b", "c")]
    floor, shares = 0.05, []
    for _ in range(300):  # 300 rounds of 20 impressions split by the allocation
        p = allocate(arms, floor=floor, epsilon=0.05, rng=rng, draws=2000)
        assert p.min() >= floor - 1e-12
        assert p.sum() == pytest.approx(1.0)
        shown = rng.multinomial(20, p)
        clicks = rng.binomial(shown, true_rates)
        arms = [arm.observed(c, s - c) for arm, s, c in zip(arms, shown, clicks)]
        shares.append(p)
    assert shares[-1][1] > 0.8
    assert np.mean([s[1] for s in shares[-50:]]) > np.mean([s[1] for s in shares[:10]])


def test_propensities_sum_to_one_and_match_the_choice():
    rng = np.random.default_rng(1)
    arms = [Arm("champion", 120, 880), Arm("challenger", 30, 170)]
    choice = choose(arms, floor=0.1, epsilon=0.1, rng=rng)
    assert choice.probabilities.sum() == pytest.approx(1.0)
    assert choice.propensity == choice.probabilities[choice.index]
    assert choice.key == arms[choice.index].key
    picks = [choose(arms, floor=0.1, epsilon=0.1, rng=rng, draws=500).index for _ in range(2000)]
    assert np.mean(picks) == pytest.approx(allocate(arms, 0.1, 0.1, rng, draws=20000)[1], abs=0.04)


def test_epsilon_keeps_a_uniform_share_and_the_floor_takes_from_the_rest():
    p = mix(np.array([1.0, 0.0, 0.0, 0.0]), floor=0.0, epsilon=0.2)
    np.testing.assert_allclose(p, [0.85, 0.05, 0.05, 0.05])
    p = mix(np.array([0.7, 0.25, 0.05, 0.0]), floor=0.1)
    np.testing.assert_allclose(p[2:], [0.1, 0.1])
    assert p[0] / p[1] == pytest.approx(0.7 / 0.25)
    with pytest.raises(ValueError):
        mix(np.ones(4) / 4, floor=0.3)


def test_a_clear_winner_gets_the_traffic_and_equal_arms_share_it():
    rng = np.random.default_rng(2)
    clear = allocate([Arm("a", 10, 990), Arm("b", 100, 900)], rng=rng)
    assert clear[1] > 0.999
    even = allocate([Arm("a", 50, 50), Arm("b", 50, 50)], rng=rng, draws=40000)
    assert even[0] == pytest.approx(0.5, abs=0.02)


def test_slot_probabilities_fill_each_slot_once():
    rng = np.random.default_rng(3)
    arms = [Arm(i, prior_alpha=a, prior_beta=100) for i, a in enumerate([1, 5, 10, 20, 40])]
    p = slot_probabilities(arms, 3, rng, draws=20000)
    np.testing.assert_allclose(p.sum(axis=0), 1.0)
    assert p[:, :3].sum(axis=1).max() <= 1.0 + 1e-9  # an arm is shown at most once per ranking
    assert p[4, 0] > 0.9 and p[0, 0] < 0.01


def test_best_arm_probabilities_are_exact_where_they_have_a_closed_form():
    from ml.bandits import best_arm_probabilities

    rng = np.random.default_rng(4)
    # Beta(2, 1) against a uniform: P(X > Y) = ∫ 2x · x dx = 2/3.
    np.testing.assert_allclose(best_arm_probabilities([Arm("a", 1, 0), Arm("b")], rng), [2 / 3, 1 / 3], atol=1e-6)
    np.testing.assert_allclose(best_arm_probabilities([Arm(i) for i in range(3)], rng), [1 / 3] * 3, atol=1e-6)
    # Beta(1, 2), Beta(2, 1) and a uniform: f = 2(1 − x), 2x, 1 and F = 1 − (1 − x)², x², x, so
    # P(low best) = ∫ 2(1 − x) · x² · x dx = 1/10, P(high best) = ∫ 2x · (2x − x²) · x dx = 3/5, P(uniform best) = 3/10.
    by_hand = [1 / 10, 3 / 5, 3 / 10]
    np.testing.assert_allclose(best_arm_probabilities([Arm("low", 0, 1), Arm("high", 1, 0), Arm("u")], rng), by_hand, atol=1e-6)


def test_best_arm_probabilities_agree_with_sampling_for_sharp_and_broad_posteriors_alike():
    from ml.bandits import best_arm_probabilities

    rng = np.random.default_rng(5)
    # A well-known ad (2,000 impressions), two younger ones, a new one: the sharp posterior sits inside the broad ones.
    arms = [Arm("known", 0.06 * 2000, 0.94 * 2000), Arm("young", 3, 40), Arm("younger", 1, 9), Arm("new")]
    exact = best_arm_probabilities(arms, rng)
    alpha, beta = np.array([a.alpha for a in arms]), np.array([a.beta for a in arms])
    sampled = np.bincount(rng.beta(alpha, beta, size=(400_000, 4)).argmax(axis=1), minlength=4) / 400_000
    assert exact.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(exact, sampled, atol=0.003)  # 4 standard errors of the sample at most


def test_a_prior_below_one_falls_back_to_sampling():
    from ml.bandits import best_arm_probabilities

    arms = [Arm("a", prior_alpha=0.5, prior_beta=0.5), Arm("b", 2, 2)]
    p = best_arm_probabilities(arms, np.random.default_rng(6), draws=50_000)
    assert p.sum() == pytest.approx(1.0) and 0.3 < p[0] < 0.7
    assert not np.array_equal(p, best_arm_probabilities(arms, np.random.default_rng(7), draws=50_000))  # sampled
