"""Lookalike audiences: rank the non-seed base by how much each customer resembles a seed audience.

Pure pandas/numpy/scipy (no Django): the audiences task loads personas into a frame,
calls `train` on the whole base with the seed flagged, scores everyone who was not a
training row with `score`, and shows `size_curve` so the operator can pick 1–10 %.
xgboost and scikit-learn are imported inside the functions, so importing this module
from a web process loads neither.

How it learns. A gradient-boosted classifier separates the seed from a random sample of
the rest (up to `negatives_per_seed` non-seed customers per seed member). The rest of
the base is unlabelled, not negative: some of it looks like the seed, and those are the
customers we want, so the classifier is only used to rank.

Cross-fitting. The training rows are split into K folds and one model is trained per
fold without that fold. Seed members and sampled negatives get the score of the model
that never saw them (out-of-fold); every other customer gets the mean of the K models.
Without this a customer drawn as a negative would be scored by a model that was taught
to call them "not seed", would rank systematically low and would never be picked. (One
model's scores spread a little wider than a mean of K, so in tests sampled negatives
were 1.0–1.2× as common in the top 10 % as their share of the base: a small tilt, the
right way round for "nobody is locked out".)

Threads. `n_jobs` OpenMP threads (default 2). On a 2-core machine busy with other work
(web, database, another worker), OpenMP threads spinning at barriers made training 5–10×
slower in our measurements; with OMP_WAIT_POLICY=PASSIVE it ran at full speed. OpenMP
reads that variable once, when the first library using it loads (scikit-learn and
xgboost share one libgomp), so it belongs in the worker's environment, set before
anything imports them; this module cannot set it reliably.

What a score means. Classes are weighted equally (scale_pos_weight = negatives / seed),
so a score is roughly "P(seed | features) if seed and non-seed were equally common".
It is not the probability of anything in the base; use it to rank, and read sizes,
recall and lift from `size_curve`.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import sparse

#: Preference-share map columns: cells are {name: share} dicts.
FEATURE_MAPS: tuple[str, ...] = ("artists", "genres", "languages", "moods")
#: Identifier columns are never features (ids correlate with sign-up order, not taste).
IGNORED_COLUMNS: tuple[str, ...] = ("customer_id", "id", "external_id", "pk")
MIN_SEED = 100
DEFAULT_PCTS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
TOP_FEATURES = 15

Progress = Callable[[float, str], None]

# Modest trees: enough for interactions like "young and k-pop", small enough to train a
# 20k-customer demo in seconds and score a million rows in seconds. Early stopping
# watches log loss, not AUC: on a small seed the inner AUC is too noisy to stop on
# (on the Last.fm bench it stopped some folds after 8 rounds and cost 0.02 of AUC).
XGB_PARAMS = {
    "objective": "binary:logistic",
    "eval_metric": "logloss",
    "tree_method": "hist",
    "max_depth": 4,
    "eta": 0.1,
    "min_child_weight": 5.0,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "lambda": 1.0,
    "max_bin": 128,
}
MAX_ROUNDS = 300
EARLY_STOPPING_ROUNDS = 25
INNER_VALIDATION = 0.2


@dataclass
class FeatureEncoder:
    """Turns a persona frame into a sparse matrix; the vocabulary is fixed when it is fitted.

    - numeric and boolean columns: the value as is; NaN stays missing (xgboost routes it);
    - text columns: one-hot over the most frequent values plus "<column> = other";
      a missing value sets no column;
    - map columns (FEATURE_MAPS): one column per key among the most frequent keys, the
      share as value. An absent key is stored as missing, which for trees is the same as
      a share of 0 (shares are positive), and keeps a million-row matrix small.
    Datetime columns are left out: pass ages such as days_since_active instead.
    """

    numeric: list[str] = field(default_factory=list)
    categorical: dict[str, list[str]] = field(default_factory=dict)
    maps: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def fit(cls, frame: pd.DataFrame, *, max_map_keys: int = 100, max_levels: int = 20, min_rows: int = 5) -> FeatureEncoder:
        """Learn the columns and vocabularies from `frame` (keys and levels seen in at least `min_rows` rows)."""
        encoder = cls()
        for column in frame.columns:
            if column in IGNORED_COLUMNS:
                continue
            values = frame[column]
            if column in FEATURE_MAPS:
                keys, _, _ = _flatten_map(values)
                counts = pd.Series(keys, dtype=object).value_counts() if len(keys) else pd.Series(dtype=np.int64)
                encoder.maps[column] = _most_frequent(counts, max_map_keys, min_rows)
            elif pd.api.types.is_datetime64_any_dtype(values) or pd.api.types.is_timedelta64_dtype(values):
                continue
            elif _is_numeric(values):
                encoder.numeric.append(column)
            else:
                counts = _as_text(values).dropna().value_counts()
                encoder.categorical[column] = _most_frequent(counts, max_levels, min_rows)
        if not encoder.feature_names:
            raise ValueError("the frame has no usable feature columns")
        return encoder

    @property
    def feature_names(self) -> list[str]:
        names = list(self.numeric)
        for column, levels in self.categorical.items():
            names += [f"{column} = {level}" for level in levels] + [f"{column} = other"]
        for column, keys in self.maps.items():
            names += [f"{column}: {key}" for key in keys]
        return names

    def transform(self, frame: pd.DataFrame) -> sparse.csr_matrix:
        """The feature matrix of `frame` (CSR, float32), one row per row of `frame`, in order."""
        missing = [c for c in [*self.numeric, *self.categorical, *self.maps] if c not in frame.columns]
        if missing:
            raise ValueError(f"the frame lacks the columns the model was trained on: {', '.join(missing)}")
        n = len(frame)
        rows, cols, data = [], [], []
        offset = 0
        for column in self.numeric:
            values = _to_float(frame[column])
            present = np.flatnonzero(~np.isnan(values))
            # Zeros are stored explicitly: 0 plays is information, NaN is not.
            rows.append(present)
            cols.append(np.full(len(present), offset))
            data.append(values[present])
            offset += 1
        for column, levels in self.categorical.items():
            text = _as_text(frame[column])
            code = pd.Index(levels).get_indexer(text.fillna(""))
            known = text.notna().to_numpy()
            code = np.where(code < 0, len(levels), code)  # unseen or rare values -> "other"
            present = np.flatnonzero(known)
            rows.append(present)
            cols.append(offset + code[present])
            data.append(np.ones(len(present)))
            offset += len(levels) + 1
        for column, keys in self.maps.items():
            names, shares, lengths = _flatten_map(frame[column])
            code = pd.Index(keys).get_indexer(pd.Index(names, dtype=object)) if len(names) else np.zeros(0, dtype=np.int64)
            row = np.repeat(np.arange(n), lengths)
            keep = (code >= 0) & (shares > 0)
            rows.append(row[keep])
            cols.append(offset + code[keep])
            data.append(shares[keep])
            offset += len(keys)
        matrix = sparse.csr_matrix(
            (np.concatenate(data).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))),
            shape=(n, offset),
            dtype=np.float32,
        )
        matrix.sort_indices()
        return matrix


@dataclass
class Lookalike:
    """A trained lookalike: everything needed to score more customers, plus its evidence."""

    models: list  # one xgboost Booster per cross-fitting fold, as raw UBJSON bytes (picklable, version-stable)
    encoder: FeatureEncoder
    feature_names: list[str]
    holdout_auc: float  # out-of-fold AUC, seed vs sampled non-seed
    top_features: list[dict]  # [{"feature": "genres: k-pop", "importance": 0.23}, ...] share of total gain
    seed_oof_scores: np.ndarray  # out-of-fold scores of the seed: stand-ins for unseen seed-like customers
    n_seed: int
    n_negatives: int


def train(
    frame: pd.DataFrame,
    is_seed: np.ndarray,
    *,
    negatives_per_seed: int = 5,
    max_negatives: int = 200_000,
    folds: int = 3,
    random_state: int = 0,
    progress: Progress | None = None,
    max_map_keys: int = 100,
    n_jobs: int = 2,
) -> tuple[Lookalike, np.ndarray, np.ndarray]:
    """Train a lookalike of the seed rows of `frame`; returns (model, sampled_index, sampled_oof_scores).

    `frame` is the whole base (seed and non-seed), one persona per row; `is_seed` flags the
    seed rows. A random sample of non-seed rows (negatives_per_seed per seed member, at most
    max_negatives, at most all of them) is drawn as negatives. `sampled_index` holds their
    row positions in `frame` (for `.iloc`, sorted) and `sampled_oof_scores` their
    out-of-fold scores: give those customers these scores and everyone else non-seed
    `score(model, ...)`. Seed rows must not be offered as candidates at all.
    """
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    report = progress or (lambda fraction, message: None)
    is_seed = np.asarray(is_seed, dtype=bool)
    if is_seed.ndim != 1 or len(is_seed) != len(frame):
        raise ValueError(f"is_seed has {len(is_seed)} flags but the frame has {len(frame)} rows")
    seed_rows = np.flatnonzero(is_seed)
    others = np.flatnonzero(~is_seed)
    if len(seed_rows) < MIN_SEED:
        raise ValueError(f"a lookalike needs a seed of at least {MIN_SEED} customers; this seed has {len(seed_rows)}")
    if len(others) == 0:
        raise ValueError("every customer is in the seed: there is nobody left to rank")
    if folds < 2:
        raise ValueError(f"folds must be at least 2, not {folds!r}")
    if negatives_per_seed < 1 or max_negatives < 1:
        raise ValueError("negatives_per_seed and max_negatives must be at least 1")

    rng = np.random.default_rng(random_state)
    n_negatives = int(min(len(others), max_negatives, negatives_per_seed * len(seed_rows)))
    sampled = np.sort(rng.choice(others, size=n_negatives, replace=False))
    rows = np.concatenate([seed_rows, sampled])
    labels = np.r_[np.ones(len(seed_rows)), np.zeros(n_negatives)]

    report(0.02, f"Encoding {len(rows):,} customers ({len(seed_rows):,} seed, {n_negatives:,} sampled from the rest)")
    training = frame.iloc[rows]
    encoder = FeatureEncoder.fit(training, max_map_keys=max_map_keys)
    matrix = encoder.transform(training)
    names = encoder.feature_names

    oof = np.zeros(len(rows))
    boosters: list[bytes] = []
    gains = np.zeros(len(names))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=random_state)
    for k, (fit_part, out_part) in enumerate(splitter.split(np.zeros(len(rows)), labels)):
        report(0.05 + 0.9 * k / folds, f"Training fold {k + 1} of {folds}")
        booster = _fit_fold(matrix[fit_part], labels[fit_part], rng=rng, random_state=random_state + k, n_jobs=n_jobs)
        oof[out_part] = booster.inplace_predict(matrix[out_part])
        for key, gain in booster.get_score(importance_type="total_gain").items():
            gains[int(key[1:])] += gain  # unnamed features are "f<index>"
        boosters.append(bytes(booster.save_raw(raw_format="ubj")))

    # Importance = the feature's share of the total split gain over all fold models.
    shares = gains / gains.sum() if gains.sum() > 0 else gains
    order = [i for i in np.argsort(-gains, kind="stable")[:TOP_FEATURES] if gains[i] > 0]
    top = [{"feature": names[i], "importance": round(float(shares[i]), 4)} for i in order]
    model = Lookalike(
        models=boosters,
        encoder=encoder,
        feature_names=names,
        holdout_auc=float(roc_auc_score(labels, oof)),
        top_features=top,
        seed_oof_scores=oof[: len(seed_rows)].copy(),
        n_seed=len(seed_rows),
        n_negatives=n_negatives,
    )
    report(1.0, f"Trained: out-of-fold AUC {model.holdout_auc:.3f}")
    return model, sampled, oof[len(seed_rows):].copy()


def _fit_fold(matrix: sparse.csr_matrix, labels: np.ndarray, *, rng: np.random.Generator, random_state: int, n_jobs: int):
    """One booster, early-stopped on an inner stratified split of its own training rows."""
    import xgboost as xgb

    inner = np.zeros(len(labels), dtype=bool)
    for label in (0.0, 1.0):
        members = np.flatnonzero(labels == label)
        inner[rng.choice(members, size=max(1, int(len(members) * INNER_VALIDATION)), replace=False)] = True
    positives = labels[~inner].sum()
    params = {
        **XGB_PARAMS,
        "scale_pos_weight": float((len(labels[~inner]) - positives) / positives),
        "seed": random_state,
        "nthread": n_jobs,
    }
    fit = xgb.DMatrix(matrix[~inner], label=labels[~inner], nthread=n_jobs)
    check = xgb.DMatrix(matrix[inner], label=labels[inner], nthread=n_jobs)
    booster = xgb.train(
        params, fit, num_boost_round=MAX_ROUNDS, evals=[(check, "inner")],
        early_stopping_rounds=EARLY_STOPPING_ROUNDS, verbose_eval=False,
    )
    # Keep the trees up to the best round only, so later predictions need no iteration range.
    return booster[: booster.best_iteration + 1]


def score(model: Lookalike, frame: pd.DataFrame, *, chunk_size: int = 50_000, progress: Progress | None = None,
          n_jobs: int = 2) -> np.ndarray:
    """Scores in [0, 1] for customers the model did not train on: the mean of the fold models.

    Use it for the non-seed customers that were not sampled as negatives (those have
    out-of-fold scores from `train`). Scores rank; see the module docstring for what they mean.
    Works in chunks (dense within a chunk: xgboost predicts 2× faster than on CSR) so a
    million personas never become one dense matrix.
    """
    import xgboost as xgb

    report = progress or (lambda fraction, message: None)
    boosters = []
    for raw in model.models:
        booster = xgb.Booster(params={"nthread": n_jobs})
        booster.load_model(bytearray(raw))
        boosters.append(booster)
    result = np.zeros(len(frame))
    for start in range(0, len(frame), chunk_size):
        end = min(start + chunk_size, len(frame))
        report(start / len(frame), f"Scoring customers {start + 1:,}–{end:,} of {len(frame):,}")
        matrix = _dense(model.encoder.transform(frame.iloc[start:end]))
        result[start:end] = np.mean([b.inplace_predict(matrix, missing=np.nan) for b in boosters], axis=0)
    report(1.0, f"Scored {len(frame):,} customers")
    return result


def size_curve(
    model: Lookalike, nonseed_scores: np.ndarray, pcts: Sequence[float] = DEFAULT_PCTS, *, n_seed: int | None = None
) -> list[dict]:
    """What picking the top p % of the non-seed base would bring, for each p in `pcts`.

    For operators, per row:
    - size: how many customers the audience gets: p % of everyone outside the seed;
    - threshold: the score of the last customer taken (the (1 − p/100) quantile of the
      non-seed scores), so "score ≥ threshold" is the audience (ties aside: take the top
      `size` by score);
    - recall: the share of the seed that would have made the cut if it had been scored
      like everyone else (out-of-fold scores). The seed stands in for the seed-like
      customers hidden in the base: recall is how many of those the top p % catches;
    - lift: recall / (p/100), how many times better than picking p % at random
      (a random pick catches p % of them; lift 4 at 5 % means 20 % caught);
    - precision: the share of the audience we expect to be seed-like, if the base held as
      many seed-like customers as the seed (mixed in at the seed's rate):
      recall·n_seed / (recall·n_seed + (p/100)·n_nonseed). It is an estimate for comparing
      sizes, not a measured conversion rate.
    `n_seed` is the whole seed's size when the model was trained on a sample of it
    (default: the seed it was trained on); `nonseed_scores` are everyone outside the seed.
    """
    scores = np.asarray(nonseed_scores, dtype=np.float64)
    if len(scores) == 0:
        raise ValueError("no non-seed scores: there is nobody to pick from")
    ranked = np.sort(scores)[::-1]
    seed = np.asarray(model.seed_oof_scores, dtype=np.float64)
    curve = []
    for pct in pcts:
        if not 0 < pct <= 100:
            raise ValueError(f"a size must be between 0 and 100 % of the base, not {pct!r}")
        share = pct / 100
        size = max(1, int(round(share * len(scores))))
        threshold = float(ranked[size - 1])
        recall = float(np.mean(seed >= threshold)) if len(seed) else 0.0
        caught = recall * (model.n_seed if n_seed is None else n_seed)
        denominator = caught + share * len(scores)
        curve.append({
            "pct": pct,
            "size": size,
            "threshold": threshold,
            "recall": recall,
            "precision": caught / denominator if denominator > 0 else 0.0,
            "lift": recall / share,
        })
    return curve


def _dense(matrix: sparse.csr_matrix) -> np.ndarray:
    """The matrix as a dense array with NaN where nothing is stored, so absent stays missing (not 0)."""
    dense = np.full(matrix.shape, np.nan, dtype=np.float32)
    coo = matrix.tocoo()
    dense[coo.row, coo.col] = coo.data
    return dense


def _flatten_map(values: Iterable) -> tuple[list, np.ndarray, np.ndarray]:
    """(keys, shares, number of keys per row) of a column of {name: share} dicts; None/NaN are empty."""
    cells = [cell if isinstance(cell, dict) else {} for cell in values]
    strange = next((cell for cell in values if not isinstance(cell, dict) and not _is_missing(cell)), None)
    if strange is not None:  # e.g. JSON left as text: silently empty maps would train on nothing
        raise ValueError(f"preference maps must hold {{name: share}} dicts, not {type(strange).__name__}: {strange!r:.60}")
    lengths = np.fromiter((len(cell) for cell in cells), dtype=np.int64, count=len(cells))
    keys = [str(key) for cell in cells for key in cell]
    count = int(lengths.sum())
    try:
        shares = np.fromiter((v for cell in cells for v in cell.values()), dtype=np.float64, count=count)
    except (TypeError, ValueError):  # a None or a text share somewhere: take the slow path once
        shares = np.fromiter((_share(v) for cell in cells for v in cell.values()), dtype=np.float64, count=count)
    return keys, np.where(np.isfinite(shares), shares, 0.0), lengths


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _share(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _most_frequent(counts: pd.Series, limit: int, min_rows: int) -> list[str]:
    """The `limit` most frequent names seen at least `min_rows` times; ties by name, for a stable vocabulary."""
    if counts.empty:
        return []
    table = pd.DataFrame({"name": counts.index.astype(str), "count": counts.to_numpy()})
    table = table[table["count"] >= min_rows].sort_values(["count", "name"], ascending=[False, True])
    return table["name"].head(limit).tolist()


def _is_numeric(values: pd.Series) -> bool:
    """Numbers and booleans, including object columns of Decimals (DecimalField) or bools with None."""
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return True
    if values.dtype != object:
        return False
    present = values.dropna()
    return len(present) > 0 and all(isinstance(v, numbers.Number) for v in present)


def _to_float(values: pd.Series) -> np.ndarray:
    if values.dtype == object:
        values = values.map(lambda v: float(v) if isinstance(v, numbers.Number) else np.nan)
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _as_text(values: pd.Series) -> pd.Series:
    """Text labels; None, NaN and '' are missing."""
    text = values.astype(str)
    keep = values.notna().to_numpy() & (text.str.strip() != "").to_numpy()
    return text.astype(object).where(keep, None)
