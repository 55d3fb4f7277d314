"""FTRL bench: how fast and how well `ml.ftrl` learns online from a click stream.

    .venv/bin/python bench/ftrl.py [--events 200000] [--batch 100] [--bits 20] [--sequential 20000]

Stream. Simulated ad impressions (numpy seed 7): a customer (segment, age band, region,
device, new or not, three preferred genres of twelve), a context (hour, weekday,
placement) and an ad (one of 200, with a genre and an artist tier), as 20 string tokens
per event: the 13 plain fields, the 3 genre preferences, and crosses segment^ad,
age^ad genre, device^placement, hour^placement (genre preference ^ ad genre is part of
the ground truth but left for the model to miss: real features never cover everything).
Ground truth: the click probability is logistic in a sum of one hidden effect per token
(plus a strong "ad genre among the customer's genres" effect), about a 3 % click rate.

Training is online: events arrive in mini-batches of `--batch`; each batch is predicted
with the weights learned so far and then learned from (progressive validation), so
ftrl_auc and ftrl_logloss are measured on events the model had not seen yet. The oracle
figures score the same events with the true probabilities: the best any model could do.

Timing covers everything the event consumer would do per batch: hashing the string tokens,
predicting and updating. Single thread (OMP/MKL/OpenBLAS threads set to 1 before numpy
loads). ftrl_events_per_s is wall time; ftrl_events_per_cpu_s is this process's CPU time,
the fairer figure on a busy machine. ftrl_update_events_per_s leaves hashing out (events
already hashed, as when the hashed batch is kept from scoring).

`--sequential N` also trains a fresh model one event at a time (batch of 1: exactly
McMahan et al.'s Algorithm 1) on the first N events, and the batched model on the same N,
to show what the mini-batch approximation costs in AUC.
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from sklearn.metrics import log_loss, roc_auc_score  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ml.ftrl import FTRL  # noqa: E402

GENRES = np.array(["pop", "rock", "hip-hop", "k-pop", "jazz", "classical", "electronic", "latin", "metal", "indie", "r&b",
                   "country"])
N_ADS = 200


def stream(n: int, seed: int = 7) -> tuple[list[tuple[str, ...]], np.ndarray, np.ndarray]:
    """n events of 20 tokens, their clicks and true click probabilities."""
    rng = np.random.default_rng(seed)
    fields = {  # field -> number of levels
        "seg": 8, "age": 6, "region": 5, "device": 3, "new": 2, "hour": 24, "weekday": 7, "placement": 4,
        "ad": N_ADS, "tier": 3,
    }
    level = {name: rng.integers(0, k, n) for name, k in fields.items()}
    ad_genre = rng.integers(0, len(GENRES), N_ADS)  # each ad has one genre
    ad_tier = rng.integers(0, 3, N_ADS)
    level["tier"] = ad_tier[level["ad"]]
    level["adg"] = ad_genre[level["ad"]]
    prefs = np.argsort(rng.random((n, len(GENRES))), axis=1)[:, :3]

    columns: list[np.ndarray] = []
    margin = np.full(n, -4.2)

    def add(name: str, codes: np.ndarray, labels: np.ndarray, scale: float) -> None:
        vocabulary = np.array([f"{name}={label}" for label in labels], dtype=object)
        effects = rng.normal(0.0, scale, len(vocabulary))
        columns.append(vocabulary[codes])
        margin[:] += effects[codes]

    for name, scale in (("seg", 0.3), ("age", 0.2), ("region", 0.1), ("device", 0.15), ("new", 0.2), ("hour", 0.15),
                        ("weekday", 0.05), ("placement", 0.3), ("ad", 0.4), ("tier", 0.2)):
        add(name, level[name], np.arange(fields[name]), scale)
    add("adg", level["adg"], GENRES, 0.2)
    for k in range(3):
        add("pref", prefs[:, k], GENRES, 0.1)
    add("seg^ad", level["seg"] * N_ADS + level["ad"], np.arange(8 * N_ADS), 0.3)
    add("age^adg", level["age"] * len(GENRES) + level["adg"], np.arange(6 * len(GENRES)), 0.3)
    add("device^placement", level["device"] * 4 + level["placement"], np.arange(12), 0.2)
    add("hour^placement", level["hour"] * 4 + level["placement"], np.arange(96), 0.1)
    # Hidden from the model: the ad's genre is one of the customer's genres.
    margin += 0.8 * (prefs == level["adg"][:, None]).any(axis=1)
    # 20 tokens: 10 + ad genre + 3 prefs + 4 crosses = 18; the remaining two are the ad crossed
    # with the placement and the tier with the age band, which carry no effect (noise features).
    columns.append(np.array([f"ad^placement={a}_{p}" for a, p in zip(level["ad"], level["placement"])], dtype=object))
    columns.append(np.array([f"tier^age={t}_{a}" for t, a in zip(level["tier"], level["age"])], dtype=object))

    p_true = 1.0 / (1.0 + np.exp(-margin))
    clicks = (rng.random(n) < p_true).astype(np.float64)
    events = list(zip(*(column.tolist() for column in columns)))
    return events, clicks, p_true


def train(model: FTRL, events, clicks: np.ndarray, batch: int) -> tuple[np.ndarray, float, float]:
    """Online pass; returns the progressive predictions, wall seconds and CPU seconds."""
    predictions = np.empty(len(clicks))
    wall, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(clicks), batch):
        stop = start + batch
        predictions[start:stop] = model.update(events[start:stop], clicks[start:stop])
    return predictions, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--bits", type=int, default=20)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--l1", type=float, default=0.1)
    parser.add_argument("--l2", type=float, default=1.0)
    parser.add_argument("--sequential", type=int, default=20_000, help="events for the batch-of-one comparison (0: skip)")
    args = parser.parse_args()
    started = time.perf_counter()

    print(f"simulating {args.events} events...", file=sys.stderr)
    events, clicks, p_true = stream(args.events)
    tokens = sum(map(len, events[:1000])) / min(1000, len(events))
    params = dict(bits=args.bits, alpha=args.alpha, l1=args.l1, l2=args.l2)

    print("training online...", file=sys.stderr)
    model = FTRL(**params)
    predictions, wall, cpu = train(model, events, clicks, args.batch)

    # The same stream already hashed: the cost of predict + update alone.
    hashed = [FTRL(**params).hashing.transform(events[s:s + args.batch]) for s in range(0, len(events), args.batch)]
    bare = FTRL(**params)
    bare_started = time.process_time()
    for i, batch in enumerate(hashed):
        bare.update(batch, clicks[i * args.batch:(i + 1) * args.batch])
    bare_cpu = time.process_time() - bare_started

    print(f"events: {len(events)}")
    print(f"tokens_per_event: {tokens:.0f}")
    print(f"batch: {args.batch}")
    print(f"bits: {args.bits}")
    print(f"click_rate: {clicks.mean():.4f}")
    print(f"ftrl_seconds: {wall:.2f}")
    print(f"ftrl_events_per_s: {len(events) / wall:.0f}")
    print(f"ftrl_events_per_cpu_s: {len(events) / cpu:.0f}")
    print(f"ftrl_update_events_per_s: {len(events) / bare_cpu:.0f}")
    print(f"ftrl_auc: {roc_auc_score(clicks, predictions):.4f}")
    print(f"ftrl_logloss: {log_loss(clicks, predictions):.4f}")
    half = len(events) // 2  # the second half: after the model has had time to learn
    print(f"ftrl_auc_second_half: {roc_auc_score(clicks[half:], predictions[half:]):.4f}")
    print(f"ftrl_logloss_second_half: {log_loss(clicks[half:], predictions[half:]):.4f}")
    print(f"oracle_auc: {roc_auc_score(clicks, p_true):.4f}")
    print(f"oracle_logloss: {log_loss(clicks, p_true):.4f}")
    print(f"constant_logloss: {log_loss(clicks, np.full(len(clicks), clicks.mean())):.4f}")
    print(f"nonzero_weights: {int(np.count_nonzero(model.weights()))}")
    print(f"model_bytes: {len(model.to_bytes())}")

    if args.sequential:
        n = min(args.sequential, len(events))
        print(f"batch of one on {n} events...", file=sys.stderr)
        one, one_wall, _ = train(FTRL(**params), events[:n], clicks[:n], 1)
        batched, _, _ = train(FTRL(**params), events[:n], clicks[:n], args.batch)
        print(f"sequential_events: {n}")
        print(f"sequential_auc: {roc_auc_score(clicks[:n], one):.4f}")
        print(f"sequential_batched_auc: {roc_auc_score(clicks[:n], batched):.4f}")
        print(f"sequential_events_per_s: {n / one_wall:.0f}")
    print(f"seconds: {time.perf_counter() - started:.1f}")


if __name__ == "__main__":
    main()
