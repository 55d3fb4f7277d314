"""Recommendations: plays out of the database, into ml.recsys, top items and similar items back.

The learning is ml/recsys.py (pure). This module reads the play counts with one aggregate query,
measures the model on a holdout of this platform's own plays (against popularity, the baseline
it must beat), fits on everything, and stores per customer the top items they have not played
(`Recommendations`, one indexed read on the decision path) and per item its nearest items
(`SimilarItems`; an item nobody played is placed through its tags). The embeddings go to the
model registry as an npz artefact, which lookalikes use as features and the model page draws.
"""

from __future__ import annotations

import io
import math
import threading
from dataclasses import dataclass
from itertools import chain
from typing import Callable

import numpy as np
from django.db import transaction
from django.db.models import Count
from django.utils import timezone
from scipy import sparse

from .models import Activity, ActivityKind, Customer, Item, Recommendations, SimilarItems

Progress = Callable[[float, str], None]

MODELS = ("als", "iuf", "item2vec", "popularity")
LABELS = {"als": "ALS", "iuf": "Item–item IUF", "item2vec": "item2vec", "popularity": "Popularity"}
TOP = 20  # stored per customer and per item
K = 10  # recall@K / NDCG@K
HOLDOUT = 0.2
MIN_ITEMS_FOR_HOLDOUT = 5  # fewer: nothing to spare for a test set
BATCH = 5000
SESSION_GAP_SECONDS = 30 * 60
MAX_SESSION_PLAYS = 2_000_000  # item2vec reads at most this many recent plays (memory, not accuracy, is the limit)
MAX_SESSION_LENGTH = 200
MAP_POINTS = 1500
EMBEDDING_FEATURES = 16


@dataclass
class Interactions:
    """Customers × items play counts (CSR) with the database ids of its rows and columns."""

    plays: sparse.csr_matrix
    customer_ids: np.ndarray  # row → Customer pk (customers with at least one play)
    item_ids: np.ndarray  # column → Item pk (the whole catalogue, so new items have a column)


def interactions() -> Interactions:
    """Play counts per (customer, item) from one GROUP BY query; every catalogue item gets a column."""
    item_ids = np.fromiter(Item.objects.order_by("pk").values_list("pk", flat=True), dtype=np.int64)
    rows = (Activity.objects.filter(kind=ActivityKind.PLAY, item__isnull=False)
            .values_list("customer_id", "item_id").annotate(n=Count("id")).order_by())
    # flattened straight into numpy: no list of tuples for tens of millions of pairs
    triples = np.fromiter(chain.from_iterable(rows.iterator(chunk_size=50_000)), dtype=np.int64).reshape(-1, 3)
    customer_ids, row = np.unique(triples[:, 0], return_inverse=True)
    col = np.searchsorted(item_ids, triples[:, 1])
    plays = sparse.csr_matrix((triples[:, 2].astype(np.float32), (row.reshape(-1), col)),
                              shape=(len(customer_ids), len(item_ids)))
    return Interactions(plays, customer_ids, item_ids)


def sessions(item_ids: np.ndarray, *, limit: int = MAX_SESSION_PLAYS) -> list[np.ndarray]:
    """Listening sessions as item column indices: a customer's plays in time order, cut where the gap exceeds 30 min.

    Reads the `limit` most recent plays (by time), so the memory stays bounded on a big base;
    one-play sessions teach skip-gram nothing and are dropped, long ones are cut into pieces.
    """
    recent = (Activity.objects.filter(kind=ActivityKind.PLAY, item__isnull=False).order_by("-occurred_at")
              .values_list("occurred_at", flat=True)[limit - 1:limit])
    plays = Activity.objects.filter(kind=ActivityKind.PLAY, item__isnull=False)
    cutoff = next(iter(recent), None)
    if cutoff is not None:
        plays = plays.filter(occurred_at__gte=cutoff)
    rows = plays.order_by("customer_id", "occurred_at").values_list("customer_id", "item_id", "occurred_at")
    customers, items, seconds = [], [], []
    for customer, item, at in rows.iterator(chunk_size=20_000):
        customers.append(customer)
        items.append(item)
        seconds.append(at.timestamp())
    if not items:
        return []
    customers, seconds = np.asarray(customers), np.asarray(seconds)
    cols = np.searchsorted(item_ids, np.asarray(items))
    new = np.ones(len(cols), dtype=bool)
    new[1:] = (customers[1:] != customers[:-1]) | (np.diff(seconds) > SESSION_GAP_SECONDS)
    out = []
    for piece in np.split(cols, np.flatnonzero(new)[1:]):
        for lo in range(0, len(piece), MAX_SESSION_LENGTH):
            part = piece[lo:lo + MAX_SESSION_LENGTH]
            if len(part) > 1:
                out.append(part)
    return out


def _fit(model: str, plays: sparse.csr_matrix, item_ids: np.ndarray, *, with_sessions: bool):
    from ml import recsys

    if model == "als":
        # The default penalty was tuned on ~1,900 Last.fm listeners; it sums against every user's errors, so a
        # small base would be all penalty (flat vectors): scale it down with the number of customers.
        return recsys.als(plays, factors=min(64, max(2, min(plays.shape) - 1)),
                          regularization=min(20.0, max(0.1, plays.shape[0] / 100)))
    if model == "iuf":
        return recsys.iuf(plays)
    if model == "item2vec":
        # A mini-batch applies its updates summed (index_add_): on a small catalogue one batch hits the same
        # rows hundreds of times and the vectors blow up (21 items, batch 128: NaN). Two pairs per item per batch at most.
        return recsys.item2vec(plays, sessions(item_ids) if with_sessions else None,
                               batch=max(16, min(4096, 2 * plays.shape[1])))
    return recsys.popularity(plays)


def split(plays: sparse.csr_matrix, *, seed: int = 0) -> tuple[sparse.csr_matrix, list[np.ndarray], np.ndarray]:
    """(train, test item sets, test users): per customer with ≥ 5 items, 20 % of their items held out (seeded)."""
    rng = np.random.default_rng(seed)
    plays = sparse.csr_matrix(plays, copy=True)
    plays.sort_indices()
    held = np.zeros(plays.nnz, dtype=bool)
    tests, users = [], []
    for u in np.flatnonzero(np.diff(plays.indptr) >= MIN_ITEMS_FOR_HOLDOUT):
        lo, n = plays.indptr[u], plays.indptr[u + 1] - plays.indptr[u]
        out = lo + rng.permutation(n)[:math.ceil(HOLDOUT * n)]
        held[out] = True
        tests.append(plays.indices[out])
        users.append(u)
    train = plays.copy()
    train.data[held] = 0
    train.eliminate_zeros()
    return train, tests, np.asarray(users, dtype=np.int64)


def evaluate(model: str, data: Interactions) -> dict:
    """recall@10 and NDCG@10 of the model and of popularity on a seeded 20 % holdout of each customer's items."""
    from ml import recsys

    train, tests, users = split(data.plays)
    if not len(users):
        return {"recall10": None, "ndcg10": None, "popularity_recall10": None, "test_customers": 0}
    fitted = _fit(model, train, data.item_ids, with_sessions=False)
    baseline = recsys.popularity(train)
    items, _ = fitted.recommend(users, K)
    popular, _ = baseline.recommend(users, K)
    return {"recall10": recsys.recall_at_k(items, tests, K), "ndcg10": recsys.ndcg_at_k(items, tests, K),
            "popularity_recall10": recsys.recall_at_k(popular, tests, K),
            "popularity_ndcg10": recsys.ndcg_at_k(popular, tests, K), "test_customers": len(users)}


def item_tags(item_ids: np.ndarray) -> sparse.csr_matrix:
    """Items × tags (genres, moods, "lang:xx"), one count per tag, rows in `item_ids` order."""
    vocabulary: dict[str, int] = {}
    rows, cols = [], []
    position = {int(pk): n for n, pk in enumerate(item_ids)}
    for pk, genres, moods, language in Item.objects.values_list("pk", "genres", "moods", "language").iterator(chunk_size=10_000):
        tags = {f"genre:{g}".lower() for g in genres or []} | {f"mood:{m}".lower() for m in moods or []}
        if language:
            tags.add(f"lang:{language}".lower())
        for tag in tags:
            rows.append(position[pk])
            cols.append(vocabulary.setdefault(tag, len(vocabulary)))
    return sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(item_ids), max(len(vocabulary), 1)))


def _store_recommendations(fitted, data: Interactions, model_key: str, built_at, progress: Progress) -> int:
    n = len(data.customer_ids)
    for lo in range(0, n, BATCH):
        users = np.arange(lo, min(n, lo + BATCH))
        items, scores = fitted.recommend(users, TOP)
        rows = []
        for u, top, score in zip(users, items, scores):
            keep = (top >= 0) & np.isfinite(score)  # an empty slot, or a NaN a degenerate vector gave
            rows.append(Recommendations(customer_id=int(data.customer_ids[u]), items=data.item_ids[top[keep]].tolist(),
                                        scores=[round(float(s), 5) for s in score[keep]], model_key=model_key, built_at=built_at))
        with transaction.atomic():
            Recommendations.objects.bulk_create(rows, update_conflicts=True, unique_fields=["customer"],
                                                update_fields=["items", "scores", "model_key", "built_at"])
        progress(0.6 + 0.2 * min(n, lo + BATCH) / max(n, 1), f"Stored recommendations for {min(n, lo + BATCH):,} of {n:,} customers")
    # Customers not rewritten (no plays any more, or an older model's rows) must not keep stale items.
    Recommendations.objects.exclude(built_at=built_at).delete()
    return n


def _store_similar(fitted, data: Interactions, model_key: str, built_at) -> tuple[np.ndarray, int]:
    """SimilarItems of every item; items nobody played are placed through their tags. Returns item vectors."""
    played = np.flatnonzero(fitted.popularity > 0)
    cold = np.flatnonzero(fitted.popularity == 0)
    vectors = None if fitted.item_vectors is None else np.array(fitted.item_vectors, dtype=np.float32)
    batches = []
    for lo in range(0, len(played), BATCH):
        part = played[lo:lo + BATCH]
        batches.append((part, *fitted.similar(part, TOP), False))
    if len(cold) and len(played):
        tags = item_tags(data.item_ids)
        top, scores, cold_vectors = fitted.cold_start(tags[cold], tags, TOP)
        batches.append((cold, top, scores, True))
        if vectors is not None and cold_vectors is not None:
            vectors[cold] = cold_vectors
    for part, top, scores, is_cold in batches:
        rows = []
        for i, near, score in zip(part, top, scores):
            keep = (near >= 0) & np.isfinite(score)
            rows.append(SimilarItems(item_id=int(data.item_ids[i]), items=data.item_ids[near[keep]].tolist(),
                                     scores=[round(float(s), 5) for s in score[keep]], model_key=model_key,
                                     cold_start=is_cold, built_at=built_at))
        with transaction.atomic():
            SimilarItems.objects.bulk_create(rows, update_conflicts=True, unique_fields=["item"],
                                             update_fields=["items", "scores", "model_key", "cold_start", "built_at"])
    SimilarItems.objects.exclude(built_at=built_at).delete()
    return vectors, len(played) + (len(cold) if len(played) else 0)


def projection(vectors: np.ndarray, weights: np.ndarray) -> dict:
    """The 2-D PCA of item vectors (numpy SVD of the centred matrix): {"mean", "components"} as lists."""
    mean = vectors.mean(axis=0) if len(vectors) else np.zeros(vectors.shape[1])
    centred = vectors - mean
    if centred.shape[0] < 2 or centred.shape[1] < 1:
        components = np.zeros((2, vectors.shape[1]))
    else:
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        components = np.zeros((2, vectors.shape[1]))
        components[:min(2, len(vt))] = vt[:2]
    return {"mean": [float(v) for v in mean], "components": [[float(v) for v in row] for row in components]}


def project(vector: np.ndarray, proj: dict) -> tuple[float, float]:
    x, y = (np.asarray(vector, dtype=np.float64) - np.asarray(proj["mean"])) @ np.asarray(proj["components"]).T
    return float(x), float(y)


def embedding_map(vectors: np.ndarray, popularity: np.ndarray, item_ids: np.ndarray, *, seed: int = 0) -> dict:
    """Up to 1,500 played items (drawn with probability ∝ their listeners) projected on 2 PCA axes."""
    played = np.flatnonzero(popularity > 0)
    if vectors is None or not len(played) or not vectors.shape[1]:
        return {"points": [], "projection": None}
    proj = projection(vectors[played].astype(np.float64), popularity[played])
    rng = np.random.default_rng(seed)
    p = popularity[played] / popularity[played].sum()
    chosen = played if len(played) <= MAP_POINTS else rng.choice(played, size=MAP_POINTS, replace=False, p=p)
    xy = (vectors[chosen].astype(np.float64) - np.asarray(proj["mean"])) @ np.asarray(proj["components"]).T
    meta = {pk: (title, artist, genres) for pk, title, artist, genres in
            Item.objects.filter(pk__in=item_ids[chosen].tolist()).values_list("pk", "title", "artist", "genres")}
    points = []
    for i, (x, y) in zip(chosen, xy):
        title, artist, genres = meta.get(int(item_ids[i]), ("?", "", []))
        points.append({"x": round(float(x), 4), "y": round(float(y), 4), "title": title, "artist": artist,
                       "genre": (genres or ["—"])[0], "id": int(item_ids[i])})
    return {"points": points, "projection": proj}


def _artefact(data: Interactions, fitted, item_vectors) -> bytes:
    users = np.zeros((len(data.customer_ids), 0), np.float32) if fitted.user_vectors is None else fitted.user_vectors
    items = np.zeros((len(data.item_ids), 0), np.float32) if item_vectors is None else item_vectors
    buffer = io.BytesIO()
    np.savez(buffer, customer_ids=data.customer_ids, item_ids=data.item_ids,
             user_vectors=np.asarray(users, dtype=np.float32), item_vectors=np.asarray(items, dtype=np.float32))
    return buffer.getvalue()


def build(model: str = "als", progress: Progress | None = None) -> dict:
    """Measure on a holdout, fit on all plays, store recommendations and similar items, register the champion.

    Idempotent: every row is rewritten with this run's built_at and the rows of customers or
    items not rewritten are deleted, so nothing an older model wrote survives a successful run.
    """
    from ml import registry
    from ml.models import ModelVersion

    if model not in MODELS:
        raise ValueError(f"Unknown recommender {model!r}; choose one of {', '.join(MODELS)}")
    progress = progress or (lambda fraction, message: None)
    key = f"recsys:{model}"
    progress(0.02, "Reading the plays")
    data = interactions()
    if not data.plays.nnz:
        raise ValueError("Nobody has played anything yet: import plays (activities of kind “play”) first.")
    progress(0.1, f"Measuring {LABELS[model]} on a 20 % holdout of {len(data.customer_ids):,} customers")
    metrics = evaluate(model, data)
    progress(0.35, f"Fitting {LABELS[model]} on {data.plays.nnz:,} customer–item pairs")
    fitted = _fit(model, data.plays, data.item_ids, with_sessions=True)
    built_at = timezone.now()
    progress(0.6, "Storing recommendations")
    customers = _store_recommendations(fitted, data, key, built_at, progress)
    progress(0.82, "Storing similar items")
    vectors, items = _store_similar(fitted, data, key, built_at)
    if vectors is not None:  # a diverged fit must not break the map's SVD or the lookalike features
        vectors = np.nan_to_num(vectors, nan=0.0, posinf=0.0, neginf=0.0)
    if fitted.user_vectors is not None:
        fitted.user_vectors = np.nan_to_num(fitted.user_vectors, nan=0.0, posinf=0.0, neginf=0.0)
    progress(0.92, "Registering the model")
    metrics.update(customers=customers, items=int((fitted.popularity > 0).sum()),
                   fit_seconds=round(float(fitted.fit_seconds), 2))
    version = registry.register_candidate(
        key, ModelVersion.Kind.RECSYS, _artefact(data, fitted, vectors), suffix=".npz", metrics=metrics,
        report={"map": embedding_map(vectors, fitted.popularity, data.item_ids)},
        trained_on={"plays": int(data.plays.sum()), "pairs": int(data.plays.nnz), "customers": customers,
                    "catalogue": len(data.item_ids), "built_at": built_at.isoformat(), "params": fitted.params},
        notes=f"{LABELS[model]} on every customer's play counts.",
    )
    registry.promote(version)
    progress(1.0, "Done")
    return {"model": model, "version": version.pk, **metrics, "similar_items": items}


def summary(result: dict) -> str:
    """One line for the Jobs page: the model's recall@10 against popularity, and the size of what it learnt."""
    def number(value):
        return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"

    label = LABELS.get(result.get("model", ""), result.get("model", "?"))
    return (f"{label}: recall@10 {number(result.get('recall10'))} (popularity {number(result.get('popularity_recall10'))})"
            f" · {result.get('customers', 0):,} customers · {result.get('items', 0):,} items")


def best_item_for(customer_id: int, candidate_item_ids) -> int | None:
    """The customer's highest-ranked recommended item among `candidate_item_ids` (one indexed read), or None."""
    ranked = Recommendations.objects.filter(customer_id=customer_id).values_list("items", flat=True).first()
    candidates = {int(i) for i in candidate_item_ids}
    return next((int(i) for i in ranked or [] if int(i) in candidates), None)


# -- the serving champion's embeddings, loaded once per process ----------------------------------------------


@dataclass
class Vectors:
    version_id: int
    artefact: str  # with the id: ids are reused after a database is rebuilt (tests), artefact names never are
    rows: dict[int, int]  # customer pk → row of `users`
    users: np.ndarray
    projection: dict | None


_cache: dict[str, Vectors | None] = {}
_lock = threading.Lock()


def champion():
    """The recommender serving now: the most recently promoted champion of any "recsys:*" key."""
    from ml.models import ModelVersion

    return (ModelVersion.objects.champions().filter(key__startswith="recsys:")
            .order_by("-promoted_at", "-pk").only("pk", "artefact", "report", "key").first())


def vectors() -> Vectors | None:
    """The champion's customer embeddings (customer id → row, matrix), read once per champion version."""
    from ml.registry import artefact_path

    version = champion()
    if version is None:
        return None
    found = _cache.get("champion")
    if found is not None and (found.version_id, found.artefact) == (version.pk, version.artefact):
        return found
    with _lock:
        with np.load(artefact_path(version)) as npz:
            ids, users = npz["customer_ids"], npz["user_vectors"]
        loaded = Vectors(version.pk, version.artefact, {int(c): n for n, c in enumerate(ids)}, users,
                         (version.report or {}).get("map", {}).get("projection"))
        _cache["champion"] = loaded
        return loaded


def customer_point(customer_id: int) -> dict | None:
    """Where the customer's vector falls on the champion's embedding map: {x, y}, or None without one."""
    loaded = vectors()
    if loaded is None or loaded.projection is None or customer_id not in loaded.rows or not loaded.users.shape[1]:
        return None
    x, y = project(loaded.users[loaded.rows[customer_id]], loaded.projection)
    return {"x": x, "y": y}


def embedding_features(customer_ids: np.ndarray, loaded: Vectors | None, *, dims: int = EMBEDDING_FEATURES):
    """Customer embeddings as lookalike features (columns emb_0 …; zeros for a customer the model never saw).

    `loaded`: `vectors()` read once by the caller, so training and scoring see the same model even
    if a new champion is promoted meanwhile. None (no recommender yet): None, personas alone.
    """
    import pandas as pd

    if loaded is None or not loaded.users.shape[1]:
        return None
    d = min(dims, loaded.users.shape[1])
    out = np.zeros((len(customer_ids), d), dtype=np.float32)
    rows = np.array([loaded.rows.get(int(c), -1) for c in customer_ids], dtype=np.int64)
    known = rows >= 0
    out[known] = loaded.users[rows[known], :d]
    return pd.DataFrame(out, index=pd.Index(customer_ids, name="customer_id"), columns=[f"emb_{i}" for i in range(d)])


def customer_card(customer: Customer) -> dict | None:
    """The customer page's "Recommended for them": the top 10 items with artist and score, or None."""
    found = Recommendations.objects.filter(customer=customer).first()
    if found is None:
        return None
    ids = found.items[:10]
    items = Item.objects.in_bulk(ids)
    rows = [{"item": items[i], "score": s} for i, s in zip(ids, found.scores) if i in items]
    return {"rows": rows, "model_key": found.model_key, "built_at": found.built_at}
