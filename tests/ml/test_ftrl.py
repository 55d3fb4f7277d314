"""FTRL-Proximal on hashed features: it learns, L1 zeroes weights, hashing is stable, state round-trips (pure)."""

import pickle

import numpy as np
import pytest

from ml.ftrl import FTRL, Hashing


def separable_stream(n: int, seed: int = 0) -> tuple[list[list[str]], np.ndarray]:
    """Clicks decided by one token ("good" vs "bad"), with noise tokens that say nothing."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n).astype(float)
    events = [["kind=good" if label else "kind=bad", f"noise={rng.integers(50)}", f"hour={rng.integers(24)}"] for label in y]
    return events, y


def test_it_converges_on_a_separable_problem_with_the_right_signs():
    events, y = separable_stream(6000)
    model = FTRL(bits=16, alpha=0.5, l1=0.1, l2=0.1)
    for start in range(0, 4000, 100):
        model.update(events[start:start + 100], y[start:start + 100])
    p = model.predict_proba(events[4000:])
    assert ((p > 0.5) == (y[4000:] == 1)).mean() >= 0.99
    good, bad = model.hashing.buckets(["kind=good", "kind=bad"])
    w = model.weights()
    assert w[good] > 1.0 and w[bad] < -1.0


def test_a_batch_of_one_is_the_sequential_algorithm():
    """McMahan et al.'s Algorithm 1, written out per coordinate, gives the same weights."""
    events, y = separable_stream(300, seed=3)
    alpha, beta, l1, l2 = 0.3, 1.0, 0.5, 0.2
    model = FTRL(bits=12, alpha=alpha, beta=beta, l1=l1, l2=l2)
    z, n = np.zeros(model.z.shape), np.zeros(model.n.shape)
    bias = len(z) - 1
    for event, label in zip(events, y):
        model.update([event], [label])
        idx = list(model.hashing.buckets(event)) + [bias]
        w = {}
        for i in idx:
            penalty = 0.0 if i == bias else l1
            w[i] = 0.0 if abs(z[i]) <= penalty else -(z[i] - np.sign(z[i]) * penalty) / ((beta + np.sqrt(n[i])) / alpha + l2)
        p = 1 / (1 + np.exp(-sum(w[i] for i in idx)))
        for i in idx:
            g = p - label
            sigma = (np.sqrt(n[i] + g * g) - np.sqrt(n[i])) / alpha
            z[i] += g - sigma * w[i]
            n[i] += g * g
    np.testing.assert_allclose(model.z, z, atol=1e-10)
    np.testing.assert_allclose(model.n, n, atol=1e-10)


def test_l1_gives_exact_zeros_to_features_that_say_nothing():
    events, y = separable_stream(4000, seed=1)
    sparse_model, dense_model = FTRL(bits=16, alpha=0.5, l1=5.0), FTRL(bits=16, alpha=0.5, l1=0.0)
    for start in range(0, 4000, 200):
        sparse_model.update(events[start:start + 200], y[start:start + 200])
        dense_model.update(events[start:start + 200], y[start:start + 200])
    noise = sparse_model.hashing.buckets([f"noise={i}" for i in range(50)] + [f"hour={h}" for h in range(24)])
    assert (sparse_model.weights()[noise] == 0.0).mean() >= 0.9
    assert (dense_model.weights()[noise] != 0.0).all()
    good = sparse_model.hashing.buckets(["kind=good"])[0]
    assert sparse_model.weights()[good] > 0


def test_numeric_pairs_and_strings_hash_alike_across_calls():
    hashing = Hashing(bits=20, seed=0)
    batch = hashing.transform([["genre=rock", ("age", 0.5), ("genre", "pop")]])
    assert batch.values.tolist() == [1.0, 0.5, 1.0]
    assert batch.indices[2] == hashing.buckets(["genre=pop"])[0]
    # Stable: the bucket is CRC-32 mixed, not Python's salted hash().
    again = Hashing(bits=20, seed=0).buckets(["genre=rock"])[0]
    assert again == batch.indices[0]


def test_predictions_before_update_are_returned():
    events, y = separable_stream(50)
    model = FTRL(bits=10)
    assert np.allclose(model.update(events, y), 0.5)


def test_it_round_trips_through_bytes_and_pickle():
    events, y = separable_stream(500)
    model = FTRL(bits=12, alpha=0.2, l1=0.3)
    model.update(events, y)
    for restored in (FTRL.from_bytes(model.to_bytes()), pickle.loads(pickle.dumps(model))):
        np.testing.assert_array_equal(restored.predict_proba(events[:20]), model.predict_proba(events[:20]))
        assert restored.events_seen == 500 and restored.l1 == 0.3


def test_it_rejects_outcomes_of_the_wrong_length():
    with pytest.raises(ValueError):
        FTRL(bits=8).update([["a"], ["b"]], [1.0])
