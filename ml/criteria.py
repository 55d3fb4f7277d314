"""Criteria: how much each feature, on its own, tells about the outcome; for ranking and selection.

Pure pandas/numpy (no Django). The model task calls `rank` on the assembled training rows,
keeps `select(...)` of them and stores the ranking for the variable exploration report.

Every criterion is computed from one contingency table per feature (levels × outcome
classes, by `np.bincount`), with logarithms in base 2, so entropies and gains are in bits:
- information gain IG = H(Y) − H(Y | X): the bits of outcome uncertainty the feature removes.
  It grows with the number of levels (an id column removes all of it), hence:
- gain ratio GR = IG / H(X) (Quinlan's C4.5): IG per bit of the feature's own entropy;
- Gini gain = Gini(Y) − Σ p(x) Gini(Y | X = x), the impurity decrease of a CART split on
  every level at once;
- symmetric uncertainty SU = 2 IG / (H(X) + H(Y)), in [0, 1]: 0 for independence, 1 when
  the feature and the outcome determine each other. The default ranking: like GR it
  discounts many-valued features, and unlike GR it does not explode for a feature with
  tiny entropy (a flag set on three rows).
A criterion whose denominator is 0 (a constant feature, a constant outcome) is 0.

Features: a numeric (not boolean) column is cut into quantile bins with the same
functions the model's transform uses (ml/transform.py), so a column with few distinct
values keeps one bin per value; anything else is taken level by level. Missing values
are a level of their own in both, so "never told us" can carry information.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from ml.transform import DEFAULT_BINS, bin_codes, quantile_edges

CRITERIA: tuple[str, ...] = ("information_gain", "gain_ratio", "gini_gain", "symmetric_uncertainty")
RANKING_COLUMNS: tuple[str, ...] = ("feature", "bins", *CRITERIA, "response_rate_spread")
#: Levels with fewer rows than this are left out of the response rate spread: one row has a rate of 0 or 1.
SPREAD_MIN_ROWS = 30


def entropy(counts: np.ndarray) -> np.ndarray | float:
    """Shannon entropy in bits of the distribution(s) along the last axis of `counts`; 0 for an empty row."""
    p = _shares(counts)
    logs = np.log2(p, out=np.zeros_like(p), where=p > 0)
    result = -(p * logs).sum(axis=-1)
    return float(result) if result.ndim == 0 else result


def gini(counts: np.ndarray) -> np.ndarray | float:
    """Gini impurity 1 − Σ p² of the distribution(s) along the last axis; 0 for an empty row."""
    p = _shares(counts)
    result = np.where(p.sum(axis=-1) > 0, 1 - (p**2).sum(axis=-1), 0.0)
    return float(result) if result.ndim == 0 else result


def table_criteria(table: np.ndarray) -> dict[str, float]:
    """All four criteria of a contingency table (rows: feature levels, columns: outcome classes)."""
    table = np.asarray(table, dtype=np.float64)
    n = table.sum()
    if n == 0:
        return dict.fromkeys(CRITERIA, 0.0)
    level_weights = table.sum(axis=1) / n
    h_y = entropy(table.sum(axis=0))
    h_x = entropy(table.sum(axis=1))
    # max(…, 0): H(Y) − H(Y|X) can come out at −1e-17 for an independent feature.
    gain = max(h_y - float(level_weights @ entropy(table)), 0.0)
    return {
        "information_gain": gain,
        "gain_ratio": gain / h_x if h_x > 0 else 0.0,
        "gini_gain": max(gini(table.sum(axis=0)) - float(level_weights @ gini(table)), 0.0),
        "symmetric_uncertainty": 2 * gain / (h_x + h_y) if h_x + h_y > 0 else 0.0,
    }


def contingency(feature, outcome, *, bins: int = DEFAULT_BINS) -> np.ndarray:
    """Rows per (feature level, outcome class): numeric features binned, missing values a level of their own."""
    levels, n_levels = levels_of(feature, bins=bins)
    classes, n_classes = _outcome_codes(outcome)
    if len(levels) != len(classes):
        raise ValueError(f"the feature has {len(levels)} values but the outcome has {len(classes)}")
    return np.bincount(levels * n_classes + classes, minlength=n_levels * n_classes).reshape(n_levels, n_classes)


def information_gain(feature, outcome, *, bins: int = DEFAULT_BINS) -> float:
    """H(outcome) − H(outcome | feature), in bits."""
    return table_criteria(contingency(feature, outcome, bins=bins))["information_gain"]


def gain_ratio(feature, outcome, *, bins: int = DEFAULT_BINS) -> float:
    """Information gain / H(feature); 0 for a constant feature."""
    return table_criteria(contingency(feature, outcome, bins=bins))["gain_ratio"]


def gini_gain(feature, outcome, *, bins: int = DEFAULT_BINS) -> float:
    """Gini(outcome) − the row-weighted Gini impurity of the outcome within each feature level."""
    return table_criteria(contingency(feature, outcome, bins=bins))["gini_gain"]


def symmetric_uncertainty(feature, outcome, *, bins: int = DEFAULT_BINS) -> float:
    """2 · information gain / (H(feature) + H(outcome)), in [0, 1]."""
    return table_criteria(contingency(feature, outcome, bins=bins))["symmetric_uncertainty"]


def levels_of(feature, *, bins: int = DEFAULT_BINS) -> tuple[np.ndarray, int]:
    """(level code per row, number of levels): quantile bins for numbers, values for anything else; NaN its own level."""
    values = feature if isinstance(feature, pd.Series) else pd.Series(np.asarray(feature, dtype=object).ravel()).infer_objects()
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        edges = quantile_edges(values, bins)
        return bin_codes(values, edges), max(len(edges) - 1, 0) + 1
    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    return codes.astype(np.int64), max(len(uniques), 1)


def rank(
    frame: pd.DataFrame,
    outcome: str | Sequence | np.ndarray | pd.Series,
    *,
    by: str = "symmetric_uncertainty",
    bins: int = DEFAULT_BINS,
    columns: Sequence[str] | None = None,
    spread_min_rows: int = SPREAD_MIN_ROWS,
) -> pd.DataFrame:
    """One row per feature, best first by `by` (ties by name), with the columns of RANKING_COLUMNS.

    `outcome` is a column name of `frame` (then not ranked itself) or one value per row;
    binary or multi-class, never missing. `columns` defaults to every column but dates and
    durations (pass ages in days instead); cells must be scalars. `bins` is the number of levels the feature was
    cut into (non-empty ones, missing included). `response_rate_spread` is, for a binary
    outcome, the highest minus the lowest rate of the larger class across levels holding
    at least `spread_min_rows` rows: how far apart the best and worst bins are (NaN for a
    multi-class outcome or when no level is that large). The criterion is kept in
    `ranking.attrs["by"]` for `select`.
    """
    if by not in CRITERIA:
        raise ValueError(f"rank by one of {', '.join(CRITERIA)}, not {by!r}")
    if isinstance(outcome, str):
        if outcome not in frame.columns:
            raise ValueError(f"the frame has no outcome column {outcome!r}")
        frame, outcome = frame.drop(columns=[outcome]), frame[outcome]
    classes, n_classes = _outcome_codes(outcome)
    if len(classes) != len(frame):
        raise ValueError(f"the outcome has {len(classes)} values but the frame has {len(frame)} rows")
    if columns is None:  # dates would be taken value by value, each date a level of its own
        columns = [c for c in frame.columns if not pd.api.types.is_datetime64_any_dtype(frame[c])
                   and not pd.api.types.is_timedelta64_dtype(frame[c])]
    rows = []
    for column in columns:
        levels, n_levels = levels_of(frame[column], bins=bins)
        table = np.bincount(levels * n_classes + classes, minlength=n_levels * n_classes).reshape(n_levels, n_classes)
        rows.append({
            "feature": column,
            "bins": int((table.sum(axis=1) > 0).sum()),
            **table_criteria(table),
            "response_rate_spread": _spread(table, spread_min_rows),
        })
    ranking = pd.DataFrame(rows, columns=list(RANKING_COLUMNS))
    ranking = ranking.sort_values([by, "feature"], ascending=[False, True], kind="mergesort").reset_index(drop=True)
    ranking.attrs["by"] = by
    return ranking


def select(ranking: pd.DataFrame, *, k: int | None = None, threshold: float | None = None, by: str | None = None) -> list[str]:
    """Feature names to keep: the best `k` by `by`, of those scoring strictly above `threshold` (either or both).

    `by` defaults to the criterion the ranking was sorted by. With neither k nor threshold
    every feature is kept, best first.
    """
    by = by or ranking.attrs.get("by", "symmetric_uncertainty")
    if by not in CRITERIA:
        raise ValueError(f"select by one of {', '.join(CRITERIA)}, not {by!r}")
    if k is not None and k < 0:
        raise ValueError(f"k must be at least 0, not {k!r}")
    kept = ranking.sort_values([by, "feature"], ascending=[False, True], kind="mergesort")
    if threshold is not None:
        kept = kept[kept[by] > threshold]
    if k is not None:
        kept = kept.head(k)
    return kept["feature"].tolist()


def _spread(table: np.ndarray, min_rows: int) -> float:
    """Max − min share of the last outcome class (the 1 of a 0/1 outcome) over levels with enough rows."""
    if table.shape[1] > 2:
        return float("nan")
    rows = table.sum(axis=1)
    large = rows >= max(min_rows, 1)
    if not large.any():
        return float("nan")
    rates = table[large, -1] / rows[large] if table.shape[1] == 2 else np.zeros(int(large.sum()))
    return float(rates.max() - rates.min())


def _outcome_codes(outcome) -> tuple[np.ndarray, int]:
    """(class code per row, number of classes), classes in sorted order so a 0/1 outcome's 1 is the last."""
    values = outcome if isinstance(outcome, pd.Series) else pd.Series(np.asarray(outcome).ravel())
    if values.isna().any():
        raise ValueError("the outcome has missing values: drop those rows or label them first")
    codes, uniques = pd.factorize(values, sort=True)
    return codes.astype(np.int64), max(len(uniques), 1)


def _shares(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    totals = counts.sum(axis=-1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
