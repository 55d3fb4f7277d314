"""Personas from behaviour: time-decayed taste shares, rolling activity counts, value segments.

Pure pandas/numpy (no Django), so the same code runs in the Celery task, in tests
and in benchmarks. Everything is vectorised over customers: one call handles a
chunk of tens of thousands of customers (about a million activity rows) at once.

Taste shares. Each activity row weighs

    kind weight × quantity × 0.5 ** (age_days / half_life_days)

and a customer's share of an artist (genre, language, mood) is the weight on it
divided by the weight on all named artists (genres ...). An item's weight is split
evenly over its genres and over its moods, so a three-genre track doesn't count
three times. Shares are ratios of weights of one customer, and time multiplies
all of that customer's weights by the same factor, so shares only change when
the customer's activity changes; that is what lets the hourly build skip
customers whose activity didn't change (only their window counts move).
"""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np
import pandas as pd

#: Preference column -> the activity column it is built from (str or list of str).
DIMENSIONS: dict[str, str] = {"artists": "artist", "genres": "genres", "languages": "language", "moods": "moods"}
#: Preference column -> the column naming its largest share.
TOP_COLUMNS: dict[str, str] = {"artists": "top_artist", "genres": "top_genre", "languages": "top_language", "moods": "top_mood"}
WINDOWS_DAYS: tuple[int, ...] = (7, 30, 90)
REVENUE_KINDS: tuple[str, ...] = ("purchase", "subscribe")
SEGMENTS: tuple[str, ...] = ("loyal", "active", "casual")

_DAY_NS = 86_400 * 10**9
_NAT = np.iinfo(np.int64).min  # NaT as int64 nanoseconds
_LIST_COLUMNS = ("genres", "moods")
_ATTRIBUTES = ("artist", "genres", "language", "moods")


def persona_columns() -> list[str]:
    """The columns of `compute_personas`' result, in order."""
    return (
        ["customer_id", *DIMENSIONS, *TOP_COLUMNS.values()]
        + [f"plays_{d}d" for d in WINDOWS_DAYS]
        + [f"activities_{d}d" for d in WINDOWS_DAYS]
        + ["purchases_90d", "spend_90d", "last_active_at"]
    )


def compute_personas(
    activities: pd.DataFrame,
    *,
    as_of: pd.Timestamp,
    kind_weights: Mapping[str, float],
    half_life_days: float = 30.0,
    top_n: int = 10,
    customers: Iterable[int] | None = None,
) -> pd.DataFrame:
    """One persona row per customer, computed at `as_of`; activity after `as_of` is ignored.

    `activities` has customer_id, kind (label: play, complete, skip, favourite,
    share, search, purchase, subscribe), quantity, value, occurred_at (UTC; naive
    values are read as UTC) and the item's artist, genres (list), language and
    moods (list); missing attributes (NaN, '', []) are ignored. If it also has an
    item_id column, weights are first summed per (customer, item) so list columns
    are exploded once per pair instead of once per play; rows without an item_id
    are kept as they are.

    Kinds missing from `kind_weights`, zero weights and non-positive quantities
    add nothing to the shares; every row counts in the activity windows. Windows
    are (as_of - D days, as_of]. `customers` adds rows (empty shares, zero counts,
    no last_active_at) for customers without activity up to `as_of`, so callers can
    reset them. Rows are sorted by customer_id.
    """
    as_of = _utc_timestamp(as_of)
    if half_life_days <= 0:
        raise ValueError(f"half_life_days must be positive, not {half_life_days!r}")
    if top_n < 1:
        raise ValueError(f"top_n must be at least 1, not {top_n!r}")
    occurred = _utc_ns(activities["occurred_at"])
    keep = (occurred <= as_of.value) & (occurred != _NAT)
    frame = activities.loc[keep]
    occurred = occurred[keep]

    ids = frame["customer_id"].to_numpy()
    index = np.unique(ids)
    if customers is not None:
        index = np.union1d(index, np.asarray(list(customers), dtype=index.dtype if len(index) else np.int64))
    codes = np.searchsorted(index, ids)
    n = len(index)

    kind = frame["kind"]
    result = pd.DataFrame({"customer_id": index})

    # Rolling counts: row counts, whatever the kind weighs.
    plays = (kind == "play").to_numpy()
    revenue = kind.isin(REVENUE_KINDS).to_numpy()
    for days in WINDOWS_DAYS:
        inside = occurred > as_of.value - days * _DAY_NS
        result[f"plays_{days}d"] = np.bincount(codes[inside & plays], minlength=n).astype(np.int64)
        result[f"activities_{days}d"] = np.bincount(codes[inside], minlength=n).astype(np.int64)
    bought = revenue & (occurred > as_of.value - 90 * _DAY_NS)
    result["purchases_90d"] = np.bincount(codes[bought], minlength=n).astype(np.int64)
    value = frame["value"].to_numpy(dtype=np.float64, na_value=0.0)
    result["spend_90d"] = np.round(np.bincount(codes[bought], weights=value[bought], minlength=n), 2)

    latest = np.full(n, _NAT, dtype=np.int64)  # stays NaT for customers without activity
    np.maximum.at(latest, codes, occurred)
    result["last_active_at"] = pd.to_datetime(latest.view("datetime64[ns]"), utc=True)

    # Decay against each customer's latest activity instead of as_of: the shares are
    # the same (one factor per customer cancels out), but they are then bit-for-bit
    # independent of as_of, and very old activity can't underflow every weight to 0.
    age_days = (latest[codes] - occurred) / _DAY_NS
    weights = kind.map(dict(kind_weights)).astype("float64").fillna(0.0).to_numpy()
    quantity = frame["quantity"].to_numpy(dtype=np.float64, na_value=0.0)
    weight = weights * quantity * np.power(0.5, age_days / half_life_days)
    engaged = weight > 0
    pair_code, pair_weight, pair_item, catalogue = _pair_weights(frame.loc[engaged], codes[engaged], weight[engaged])

    for dimension, column in DIMENSIONS.items():
        values = catalogue[column] if column in catalogue.columns else pd.Series(np.nan, index=catalogue.index)
        shares, top = _shares(pair_code, pair_weight, pair_item, values, column in _LIST_COLUMNS, n, top_n)
        result[dimension] = shares
        result[TOP_COLUMNS[dimension]] = top
    return result[persona_columns()]


def _pair_weights(frame: pd.DataFrame, codes: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, pd.DataFrame]:
    """Engagement per (customer, item): customer codes, weights, item positions, and the items' attributes.

    Without an item_id (or for rows whose item_id is missing) every row is its own item.
    """
    attributes = [c for c in _ATTRIBUTES if c in frame.columns]
    has_item = frame["item_id"].notna().to_numpy() if "item_id" in frame.columns else np.zeros(len(frame), dtype=bool)
    loose = ~has_item
    catalogue = frame.loc[loose, attributes]
    parts_code, parts_weight, parts_item = [codes[loose]], [weight[loose]], [np.arange(len(catalogue))]
    if has_item.any():
        item_code, first = pd.factorize(frame["item_id"].to_numpy()[has_item])
        # An item's attributes are the same on each of its rows: take them once per item.
        _, first_row = np.unique(item_code, return_index=True)
        catalogue = pd.concat([catalogue, frame.loc[has_item, attributes].iloc[first_row]], ignore_index=True)
        key = codes[has_item].astype(np.int64) * len(first) + item_code
        unique_key, inverse = np.unique(key, return_inverse=True)
        pair_code, pair_item = np.divmod(unique_key, len(first))
        parts_code.append(pair_code)
        parts_weight.append(np.bincount(inverse, weights=weight[has_item]))
        parts_item.append(pair_item + len(parts_item[0]))
    return np.concatenate(parts_code), np.concatenate(parts_weight), np.concatenate(parts_item), catalogue.reset_index(drop=True)


def _item_names(values: pd.Series, is_list: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(item position, name code, fraction of the item's weight) per named attribute, and the names.

    Lists split their item's weight evenly over their non-empty names; NaN, '' and
    [] name nothing.
    """
    exploded = values.explode() if is_list else values
    item = np.asarray(exploded.index, dtype=np.int64)
    name_code, labels = pd.factorize(exploded.to_numpy(dtype=object, na_value=None), sort=True)
    labels = np.asarray(labels, dtype=object)
    named = np.array([isinstance(v, str) and v.strip() != "" for v in labels], dtype=bool)
    valid = name_code >= 0
    valid[valid] = named[name_code[valid]]
    item, name_code = item[valid], name_code[valid]
    count = np.bincount(item, minlength=len(values))
    return item, name_code, 1.0 / count[item], labels


def _shares(
    code: np.ndarray, weight: np.ndarray, item: np.ndarray, values: pd.Series, is_list: bool, n: int, top_n: int
) -> tuple[list[dict], np.ndarray]:
    """Per customer code: {name: share} of its top_n names, and its top name ('' when none)."""
    shares: list[dict] = [{} for _ in range(n)]
    top = np.full(n, "", dtype=object)
    if len(code) == 0:
        return shares, top
    name_item, name_code, fraction, labels = _item_names(values, is_list)
    if len(name_item) == 0:
        return shares, top
    # Expand each (customer, item) pair into one row per name of the item, without
    # a join: the names of one item are contiguous, ordered by item position.
    order = np.argsort(name_item, kind="stable")
    name_item, name_code, fraction = name_item[order], name_code[order], fraction[order]
    first = np.searchsorted(name_item, np.arange(len(values)))
    per_item = np.bincount(name_item, minlength=len(values))
    repeats = per_item[item]
    pair = np.repeat(np.arange(len(code)), repeats)
    offset = np.arange(len(pair)) - np.repeat(np.cumsum(repeats) - repeats, repeats)
    at = first[item[pair]] + offset
    code, name_code, weight = code[pair], name_code[at], weight[pair] * fraction[at]

    # Sum per (customer, name) on integer keys: far cheaper than grouping strings.
    m = len(labels)
    unique_key, inverse = np.unique(code.astype(np.int64) * m + name_code, return_inverse=True)
    summed = np.bincount(inverse, weights=weight)
    code, name_code = np.divmod(unique_key, m)
    total = np.bincount(code, weights=summed, minlength=n)
    share = summed / total[code]

    # Largest share first, ties by name; keep top_n per customer. Names are coded in
    # sorted order and np.unique left the rows sorted by (customer, name), so two
    # stable sorts do what a three-key lexsort would, in a fraction of the time.
    order = np.argsort(-share, kind="stable")
    order = order[np.argsort(code[order], kind="stable")]
    code, name_code, share = code[order], name_code[order], share[order]
    starts = np.flatnonzero(np.r_[True, code[1:] != code[:-1]])
    rank = np.arange(len(code)) - np.repeat(starts, np.diff(np.r_[starts, len(code)]))
    kept = rank < top_n
    code, name_code, share = code[kept], name_code[kept], np.round(share[kept], 4)
    starts = np.flatnonzero(np.r_[True, code[1:] != code[:-1]])
    ends = np.r_[starts[1:], len(code)]
    names = labels[name_code]
    name_list, share_list = names.tolist(), share.tolist()
    # Building the dicts is the one per-customer step; it only zips slices.
    for c, a, b in zip(code[starts].tolist(), starts.tolist(), ends.tolist()):
        shares[c] = dict(zip(name_list[a:b], share_list[a:b]))
    top[code[starts]] = names[starts]
    return shares, top


def assign_segments(
    purchases: np.ndarray | list,
    spend: np.ndarray | list,
    loyal_share: float = 0.55,
    active_share: float = 0.25,
) -> np.ndarray:
    """'loyal', 'active' or 'casual' per customer, by purchase frequency and share of revenue.

    Customers are ranked by purchases (most first; ties by spend, then by their
    position) and revenue accumulates down the ranking. A customer is loyal while
    the revenue of the customers ranked above them is below `loyal_share` of the
    total, so the customer who crosses the line is loyal too: the loyal group is the
    smallest set of most frequent buyers bringing at least that share. Active
    follows with the next `active_share`; everyone after, and everyone without
    positive spend (no revenue to rank), is casual. Ranking by frequency rather
    than spend keeps one big one-off purchase from making a customer loyal.
    """
    purchases = np.asarray(purchases, dtype=np.float64)
    spend = np.asarray(spend, dtype=np.float64)
    if purchases.shape != spend.shape:
        raise ValueError("purchases and spend must have the same length")
    segments = np.full(len(spend), "casual", dtype=object)
    revenue = np.where(spend > 0, spend, 0.0)
    total = revenue.sum()
    if total <= 0:
        return segments
    order = np.lexsort((np.arange(len(spend)), -spend, -purchases))
    before = (np.cumsum(revenue[order]) - revenue[order]) / total
    # A hair of tolerance so a customer starting exactly on a boundary (0.55 made
    # of cents) isn't flipped by float rounding of the running sum.
    tolerance = 1e-9
    ranked = np.where(
        before < loyal_share - tolerance,
        "loyal",
        np.where(before < loyal_share + active_share - tolerance, "active", "casual"),
    )
    segments[order] = np.where(revenue[order] > 0, ranked, "casual")
    return segments


def _utc_timestamp(value) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _utc_ns(series: pd.Series) -> np.ndarray:
    """Nanoseconds since the epoch (UTC) as int64; naive values are taken as UTC."""
    values = pd.to_datetime(series, utc=True)
    return values.dt.as_unit("ns").to_numpy(dtype="datetime64[ns]").view(np.int64)
