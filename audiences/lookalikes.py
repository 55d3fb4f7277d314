"""Lookalike audiences: persona features out of the database, into ml.lookalike, ranked candidates back.

The learning is ml/lookalike.py (pure); this module loads what it needs in chunks (a 1M-customer
base never sits in memory as Python dicts), and stores the top of the ranking so the operator can
resize the audience without retraining.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Callable, Iterator

import numpy as np
import pandas as pd
from django.db import transaction
from django.utils import timezone

from . import recommend
from .models import Audience, AudienceMember, Customer, Lookalike, LookalikeScore

Progress = Callable[[float, str], None]

SCALAR_COLUMNS = {
    # frame column: ORM path from Customer
    "birth_year": "birth_year",
    "gender": "gender",
    "region": "region",
    "city_tier": "city_tier",
    "is_subscriber": "is_subscriber",
    "signup_date": "signup_date",
    "segment": "persona__segment",
    "plays_7d": "persona__plays_7d",
    "plays_30d": "persona__plays_30d",
    "plays_90d": "persona__plays_90d",
    "activities_7d": "persona__activities_7d",
    "activities_30d": "persona__activities_30d",
    "activities_90d": "persona__activities_90d",
    "purchases_90d": "persona__purchases_90d",
    "spend_90d": "persona__spend_90d",
    "last_active_at": "persona__last_active_at",
}
MAP_COLUMNS = {"artists": "persona__artists", "genres": "persona__genres", "languages": "persona__languages", "moods": "persona__moods"}
CHUNK = 50_000
MAX_SEED = 40_000  # a bigger seed is sampled: more members add little to what the model learns
NEGATIVES_PER_SEED = 5


def persona_frame(customer_ids: np.ndarray, *, now: datetime | None = None, embeddings=None) -> pd.DataFrame:
    """Features of these customers (index = customer id, in the order given), as ml.lookalike expects.

    embeddings: the serving recommender's vectors (`recommend.vectors()`); when given, each customer's
    first dimensions join as emb_0 … — taste learnt from co-listening, which the persona's top-N
    preference shares only summarise.
    """
    now = now or timezone.now()
    paths = {**SCALAR_COLUMNS, **MAP_COLUMNS}
    rows = []
    for start in range(0, len(customer_ids), CHUNK):
        chunk = [int(i) for i in customer_ids[start:start + CHUNK]]
        rows.extend(Customer.objects.filter(pk__in=chunk).order_by().values_list("pk", *paths.values()))
    frame = pd.DataFrame.from_records(rows, columns=["customer_id", *paths]).set_index("customer_id")
    frame = frame.reindex(pd.Index(customer_ids, name="customer_id"))
    frame["age"] = now.year - pd.to_numeric(frame.pop("birth_year"), errors="coerce")
    signup = pd.to_datetime(frame.pop("signup_date"), errors="coerce")
    frame["tenure_days"] = (pd.Timestamp(now.date()) - signup).dt.days
    last = pd.to_datetime(frame.pop("last_active_at"), utc=True, errors="coerce")
    frame["days_since_active"] = (pd.Timestamp(now) - last).dt.total_seconds() / 86400
    frame["spend_90d"] = pd.to_numeric(frame["spend_90d"], errors="coerce").astype(float)
    frame["is_subscriber"] = frame["is_subscriber"].astype(float)
    for column in ("gender", "region", "segment"):
        frame[column] = frame[column].fillna("").astype(str)
    for column in MAP_COLUMNS:
        frame[column] = frame[column].map(lambda v: v if isinstance(v, dict) else {})
    if embeddings is not None:
        extra = recommend.embedding_features(np.asarray(customer_ids), embeddings)
        if extra is not None:
            frame = frame.join(extra)
    return frame


def _members(audience: Audience) -> np.ndarray:
    return np.fromiter(AudienceMember.objects.filter(audience=audience).values_list("customer_id", flat=True), dtype=np.int64)


def _chunks(ids: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


def build(lookalike: Lookalike, *, progress: Progress, random_state: int = 0) -> dict:
    """Train on the seed, score every non-seed customer, keep the top MAX_PCT % ranked, refresh membership.

    Idempotent: a retry replaces the scores and the evidence in one transaction at the end.
    """
    from ml import lookalike as learn

    from .actions import refresh_membership

    seed_audience = lookalike.seed
    if seed_audience.kind == Audience.Kind.RULES:
        refresh_membership(seed_audience)  # learn from who is in the seed now, not at its last count
    progress(0.02, "Reading the seed")
    seed = _members(seed_audience)
    if len(seed) < Lookalike.MIN_SEED:
        raise ValueError(f"The seed “{seed_audience.name}” has {len(seed)} members; a lookalike needs at least {Lookalike.MIN_SEED}.")
    everyone = np.fromiter(Customer.objects.order_by("pk").values_list("pk", flat=True), dtype=np.int64)
    candidates = np.setdiff1d(everyone, seed, assume_unique=True)
    if not len(candidates):
        raise ValueError("Everyone is in the seed: there is nobody left to find.")
    rng = np.random.default_rng(random_state)
    train_seed = rng.choice(seed, size=min(len(seed), MAX_SEED), replace=False)
    contrast = rng.choice(candidates, size=min(len(candidates), NEGATIVES_PER_SEED * len(train_seed), 200_000), replace=False)

    progress(0.05, f"Reading the personas of {len(train_seed):,} seed members and {len(contrast):,} others")
    ids = np.concatenate([train_seed, contrast])
    embeddings = recommend.vectors()  # read once: training and scoring must see the same recommender
    frame = persona_frame(ids, embeddings=embeddings)
    is_seed = np.zeros(len(ids), dtype=bool)
    is_seed[: len(train_seed)] = True

    def training_progress(fraction: float, message: str) -> None:
        progress(0.1 + 0.3 * fraction, message)

    model, sampled_index, sampled_scores = learn.train(
        frame, is_seed, negatives_per_seed=NEGATIVES_PER_SEED, random_state=random_state, progress=training_progress
    )
    del frame

    # Out-of-fold scores for the sampled contrast (scoring them with models that saw them would
    # push them down the ranking); the rest of the base is scored by the fold models in chunks.
    scores = pd.Series(np.nan, index=candidates)
    sampled_ids = ids[np.asarray(sampled_index)]
    scores.loc[sampled_ids] = np.asarray(sampled_scores, dtype=float)
    rest = scores.index[scores.isna()].to_numpy()
    done = 0
    for part in _chunks(rest, CHUNK):
        scores.loc[part] = learn.score(model, persona_frame(part, embeddings=embeddings))
        done += len(part)
        progress(0.4 + 0.5 * done / max(len(rest), 1), f"Scored {done + len(sampled_ids):,} of {len(candidates):,} customers")

    values = scores.to_numpy()
    curve = learn.size_curve(model, values, n_seed=len(seed))  # the whole seed, not the training sample
    keep = int(np.ceil(len(candidates) * Lookalike.MAX_PCT / 100))
    order = np.argsort(-values, kind="stable")[:keep]
    progress(0.92, f"Storing the top {keep:,} candidates")
    with transaction.atomic():
        Lookalike.objects.select_for_update().get(pk=lookalike.pk)  # one build writes its scores at a time
        LookalikeScore.objects.filter(lookalike=lookalike).delete()
        LookalikeScore.objects.bulk_create(
            (LookalikeScore(lookalike=lookalike, customer_id=int(candidates[i]), rank=r + 1, score=float(values[i]))
             for r, i in enumerate(order)),
            batch_size=5000,
        )
        lookalike.trained_at = timezone.now()
        lookalike.holdout_auc = float(model.holdout_auc)
        lookalike.n_seed = int(model.n_seed)
        lookalike.n_negatives = int(model.n_negatives)
        lookalike.n_candidates = len(candidates)
        lookalike.top_features = list(model.top_features)
        lookalike.curve = [{k: (float(v) if isinstance(v, (float, np.floating)) else int(v)) for k, v in p.items()} for p in curve]
        lookalike.save(update_fields=["trained_at", "holdout_auc", "n_seed", "n_negatives", "n_candidates", "top_features", "curve"])
        refresh_membership(lookalike.audience)  # reads the size chosen now, also if it changed while training
    return {"auc": lookalike.holdout_auc, "seed": lookalike.n_seed, "candidates": len(candidates), "kept": keep}


def explain(audience: Audience, customer: Customer) -> dict:
    """Why a customer is or is not in a lookalike: seed membership, rank and the cut-off."""
    lookalike = audience.lookalike
    member = AudienceMember.objects.filter(audience=audience, customer=customer).exists()
    in_seed = AudienceMember.objects.filter(audience=lookalike.seed, customer=customer).exists()
    found = LookalikeScore.objects.filter(lookalike=lookalike, customer=customer).values_list("rank", "score").first()
    rank, score = found or (None, None)
    if in_seed:
        text = f"is in the seed “{lookalike.seed.name}”, and seed members are never part of their lookalike"
    elif rank is None:
        text = (f"is not among the top {Lookalike.MAX_PCT:g} % most like the seed" if lookalike.trained_at
                else "the lookalike has not been trained yet")
    else:
        pct = 100 * rank / max(lookalike.n_candidates, 1)
        verdict = "within" if rank <= lookalike.selected else "outside"
        text = (f"ranks {rank:,} of {lookalike.n_candidates:,} (top {pct:.2f} %), {verdict} the chosen "
                f"{lookalike.size_pct:g} % ({lookalike.selected:,} customers)")
    return {"held": member, "kind": "lookalike", "text": text, "rank": rank, "score": score, "in_seed": in_seed,
            "top_features": lookalike.top_features[:5]}


def ranked(members, lookalike: Lookalike):
    """Members annotated with their lookalike rank (1 = most like the seed)."""
    from django.db.models import OuterRef, Subquery

    rank = LookalikeScore.objects.filter(lookalike=lookalike, customer=OuterRef("pk")).values("rank")[:1]
    return members.annotate(rank=Subquery(rank))


def page_context(lookalike: Lookalike, pct: str | None = None) -> dict:
    """The lookalike's evidence for its page: the size curve with the chosen size, top features, a what-if point."""
    try:
        what_if = float(pct) if pct else None
    except ValueError:
        what_if = None
    if what_if is not None:
        what_if = min(max(what_if, Lookalike.MIN_PCT), Lookalike.MAX_PCT) if math.isfinite(what_if) else None
    points = sorted(lookalike.curve or [], key=lambda p: p["pct"])
    chosen = lookalike.point()
    curve_chart = {
        "type": "line",
        "data": {
            "labels": [f"{p['pct']:g} %" for p in points],
            "datasets": [
                {"label": "Expected precision (%)", "data": [round(100 * p["precision"], 1) for p in points], "yAxisID": "y"},
                {"label": "Seed-like customers caught (recall, %)", "data": [round(100 * p["recall"], 1) for p in points], "yAxisID": "y"},
                {"label": "Lift (× random)", "data": [round(p["lift"], 2) for p in points], "yAxisID": "lift", "borderDash": [6, 4]},
            ],
        },
        "options": {"interaction": {"mode": "index", "intersect": False},
                    "scales": {"y": {"beginAtZero": True, "max": 100, "title": {"display": True, "text": "%"}},
                               "lift": {"position": "right", "beginAtZero": True, "grid": {"drawOnChartArea": False},
                                        "title": {"display": True, "text": "lift ×"}},
                               "x": {"title": {"display": True, "text": "size, % of the non-seed base"}}}},
    }
    features = lookalike.top_features[:12]
    features_chart = {
        "type": "bar",
        "data": {"labels": [f["feature"] for f in features],
                 "datasets": [{"label": "Share of the model's gain", "data": [round(100 * f["importance"], 1) for f in features]}]},
        "options": {"indexAxis": "y", "scales": {"x": {"beginAtZero": True, "title": {"display": True, "text": "% of gain"}}}},
    }
    return {
        "curve_chart": curve_chart, "features_chart": features_chart, "chosen": chosen,
        "chosen_precision_pct": f"{100 * chosen['precision']:.0f} %" if chosen else "—",
        "what_if": lookalike.point(what_if) if what_if is not None else None,
        "what_if_size": round(lookalike.n_candidates * what_if / 100) if what_if is not None else None,
        "job": lookalike.job, "training": lookalike.job is not None and not lookalike.job.is_finished,
    }
