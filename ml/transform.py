"""Transform: turn assembled training rows into a sparse matrix that a model can learn from.

Pure pandas/numpy/scipy (no Django). The model task fits a `FeatureTransform` on the
training rows only, pickles it next to the model and calls `transform` on the rows it
scores, so training and serving see exactly the same columns. scikit-learn is imported
inside `fit`, so importing this module from a web process does not load it.

What each kind of column becomes (every output column has a stable, readable name):
- numeric: quantile bins, one-hot ("age in [25, 35)"). Bins let logistic regression
  learn a non-linear response and make the variable exploration report readable; the
  edges are learnt on the training rows and reused as they are, values outside the
  training range fall into the end bins, NaN is a bin of its own ("age = (missing)");
- categorical: one-hot ("segment = loyal"); values seen fewer than `min_frequency` times
  at fit share one column ("segment = (rare)"); a value never seen at fit sets no column;
  missing and "" are a category of their own;
- crosses of named pairs: the pair's values joined ("segment × ad = loyal × A") and
  one-hot encoded like a categorical, rare pairs grouped the same way. A numeric member
  takes its bin label, so age × genre crosses age bands with genres;
- text tags: tf-idf over the `max_tags` most frequent tags ("tags: k-pop").

One-hot and tf-idf are scikit-learn's OneHotEncoder (rare grouping with min_frequency,
unknown values as all zeros) and TfidfVectorizer (vocabulary cap, smoothed idf, rows
L2-normalised): they do exactly this, and pickle with the transform.
Binning is our own numpy (`quantile_edges`, `bin_codes`), not KBinsDiscretizer: that one
rejects NaN, and on a column with few distinct values (a 0/1 flag, a tier 1-3) its
quantile edges coincide and it drops them, so a 0/1 flag becomes one bin holding both
values. Here a column with at most `bins` distinct values gets one bin per value. The
report (`bins_report`) and the criteria (ml/criteria.py) use the same two functions, so
the bins an operator reads are the bins the model was trained on.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import sparse

MISSING = "(missing)"
RARE = "(rare)"
CROSS = " × "
DEFAULT_BINS = 10


def quantile_edges(values: np.ndarray | pd.Series, bins: int = DEFAULT_BINS) -> np.ndarray:
    """Increasing bin edges of the finite values: `bins` quantile bins, fewer where values tie.

    A column with at most `bins` distinct values gets one bin per value (edges halfway
    between neighbours), so a flag or a small count is not merged into one bin. A value
    holding several quantiles (say 40 % zeros) gets one bin of its own instead of several,
    so there may be fewer bins. No finite value at all gives no edges (all missing).
    """
    if bins < 1:
        raise ValueError(f"bins must be at least 1, not {bins!r}")
    x = _to_float(values)
    finite = x[np.isfinite(x)]
    if finite.size == 0:
        return np.empty(0)
    distinct = np.unique(finite)
    if distinct.size <= bins:
        return np.concatenate([distinct[:1], (distinct[1:] + distinct[:-1]) / 2, distinct[-1:]])
    edges, repeats = np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)), return_counts=True)
    # A value spanning several quantiles (40 % zeros) would share a bin with the values just
    # above it; a cut halfway to its neighbour (below it, for the maximum) isolates it.
    tied = edges[repeats > 1]
    if tied.size:
        at = np.searchsorted(distinct, tied)
        neighbour = np.where(at + 1 < distinct.size, distinct[np.minimum(at + 1, distinct.size - 1)], distinct[at - 1])
        edges = np.unique(np.concatenate([edges, (tied + neighbour) / 2]))
    return edges


def bin_codes(values: np.ndarray | pd.Series, edges: np.ndarray) -> np.ndarray:
    """The bin of each value: 0 … n_bins − 1 for numbers, n_bins for NaN (n_bins = len(edges) − 1).

    Bins are [e_i, e_i+1) and the last one is closed. Values below the first edge or above
    the last one (unseen at fit) are clipped into the end bins rather than rejected: a new
    oldest customer is still "oldest". With no edges every value is missing (code 0).
    """
    x = _to_float(values)
    n_bins = max(len(edges) - 1, 0)
    codes = np.searchsorted(np.asarray(edges)[1:-1], x, side="right")
    return np.where(np.isnan(x), n_bins, codes) if n_bins else np.zeros(len(x), dtype=np.int64)


def bin_labels(edges: np.ndarray) -> list[str]:
    """Interval labels of the bins, then MISSING: "(-inf, 25)", "[25, 35)", …, "[60, inf)", "(missing)".

    The end bins are open towards infinity because `bin_codes` clips into them.
    """
    if len(edges) < 2:
        return [MISSING]
    text = _edge_text(np.asarray(edges))
    lower = ["-inf", *text[1:-1]]
    upper = [*text[1:-1], "inf"]
    labels = [f"[{lo}, {hi})" for lo, hi in zip(lower, upper)]
    labels[0] = "(" + labels[0][1:]
    return [*labels, MISSING]


def split_tags(text: str) -> list[str]:
    """Tags of one cell, lower-cased: comma-separated when the cell has a comma, else space-separated.

    Commas win so that multi-word tags survive ("hip hop, k-pop" is two tags, not three).
    Module-level (not a lambda) so a fitted transform pickles.
    """
    parts = text.split(",") if "," in text else text.split()
    return [tag for tag in (re.sub(r"\s+", " ", part).strip().lower() for part in parts) if tag]


@dataclass
class FeatureTransform:
    """Bins, one-hot, crosses and tf-idf, fitted once on training rows; see the module docstring.

    `crosses` are pairs of column names; a member listed in `numeric` is crossed by its
    bin, any other by its value. `min_frequency` is a count of training rows (categories
    and crosses seen less often are grouped as RARE); `max_tags` caps each text column's
    vocabulary to its most frequent tags.
    """

    numeric: Sequence[str] = ()
    categorical: Sequence[str] = ()
    crosses: Sequence[tuple[str, str]] = ()
    text: Sequence[str] = ()
    bins: int = DEFAULT_BINS
    min_frequency: int = 5
    max_tags: int = 1000
    # Learnt by `fit`:
    edges: dict[str, np.ndarray] = field(default_factory=dict, init=False)
    _onehot: object = field(default=None, init=False, repr=False)
    _tfidf: dict[str, object] = field(default_factory=dict, init=False, repr=False)
    _names: list[str] | None = field(default=None, init=False, repr=False)

    def fit(self, frame: pd.DataFrame) -> FeatureTransform:
        """Learn bin edges, category lists and tag vocabularies from the training rows in `frame`."""
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.preprocessing import OneHotEncoder

        _check_columns(frame, self._columns())
        self.edges = {column: quantile_edges(frame[column], self.bins) for column in self.numeric}
        labels = self._category_frame(frame)
        self._onehot = None
        if labels.shape[1]:
            # handle_unknown="ignore": a value unseen at fit sets no column (all zeros), where
            # "infrequent_if_exist" would pass it off as one of the rare values we did see.
            self._onehot = OneHotEncoder(
                handle_unknown="ignore", min_frequency=self.min_frequency, sparse_output=True, dtype=np.float64,
            ).fit(labels)
        self._tfidf = {}
        for column in self.text:
            vectorizer = TfidfVectorizer(
                tokenizer=split_tags, token_pattern=None, lowercase=False, max_features=self.max_tags,
            )
            try:
                vectorizer.fit(_as_text(frame[column]).fillna(""))
            except ValueError:  # no tag in any training row: the column contributes nothing
                vectorizer = None
            self._tfidf[column] = vectorizer
        self._names = self._feature_names()
        return self

    def transform(self, frame: pd.DataFrame) -> sparse.csr_matrix:
        """The feature matrix of `frame` (CSR, float64), one row per row, columns as `get_feature_names()`."""
        if self._names is None:
            raise ValueError("fit the transform on training rows before transforming")
        _check_columns(frame, self._columns())
        n = len(frame)
        if n == 0:  # scikit-learn refuses empty input
            return sparse.csr_matrix((0, len(self._names)))
        blocks = []
        for column, edges in self.edges.items():
            width = max(len(edges) - 1, 0) + 1  # the bins, then the missing bin
            codes = bin_codes(frame[column], edges)
            blocks.append(sparse.csr_matrix((np.ones(n), (np.arange(n), codes)), shape=(n, width)))
        if self._onehot is not None:
            blocks.append(self._onehot.transform(self._category_frame(frame)))
        for column, vectorizer in self._tfidf.items():
            if vectorizer is not None:
                blocks.append(vectorizer.transform(_as_text(frame[column]).fillna("")))
        if not blocks:
            return sparse.csr_matrix((n, 0))
        matrix = sparse.hstack(blocks, format="csr", dtype=np.float64)
        matrix.sort_indices()
        return matrix

    def fit_transform(self, frame: pd.DataFrame) -> sparse.csr_matrix:
        return self.fit(frame).transform(frame)

    def get_feature_names(self) -> list[str]:
        """One name per matrix column, in order; stable for the same training rows."""
        if self._names is None:
            raise ValueError("fit the transform on training rows first")
        return list(self._names)

    def _columns(self) -> list[str]:
        return list(dict.fromkeys([*self.numeric, *self.categorical, *(c for pair in self.crosses for c in pair), *self.text]))

    def _category_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The categorical columns as labels, then one column per cross ("a × b": "value × value")."""
        frame = frame.reset_index(drop=True)  # crosses join two columns by index: duplicates must not multiply rows
        labels = {column: _labels(frame[column]) for column in self.categorical}
        for a, b in self.crosses:
            labels[f"{a}{CROSS}{b}"] = self._member(frame, a) + CROSS + self._member(frame, b)
        return pd.DataFrame(labels, index=frame.index)

    def _member(self, frame: pd.DataFrame, column: str) -> pd.Series:
        """A cross member's labels: the bin label of a numeric column, the value of any other."""
        if column not in self.edges:
            return _labels(frame[column])
        edges = self.edges[column]
        return pd.Series(np.asarray(bin_labels(edges), dtype=object)[bin_codes(frame[column], edges)], index=frame.index)

    def _feature_names(self) -> list[str]:
        names = []
        for column, edges in self.edges.items():
            names += [f"{column} = {MISSING}" if label == MISSING else f"{column} in {label}" for label in bin_labels(edges)]
        if self._onehot is not None:
            # OneHotEncoder's column order: each feature's frequent categories (sorted), then its rare column.
            for column, categories, rare in zip(self._onehot.feature_names_in_, self._onehot.categories_,
                                                self._onehot.infrequent_categories_):
                kept = categories if rare is None else categories[~np.isin(categories, rare)]
                names += [f"{column} = {value}" for value in kept]
                if rare is not None:
                    names.append(f"{column} = {RARE}")
        for column, vectorizer in self._tfidf.items():
            if vectorizer is not None:
                names += [f"{column}: {tag}" for tag in vectorizer.get_feature_names_out()]
        return names


def bins_report(
    frame: pd.DataFrame,
    outcome: str | Sequence | np.ndarray | pd.Series,
    *,
    columns: Sequence[str] | None = None,
    bins: int = DEFAULT_BINS,
    transform: FeatureTransform | None = None,
) -> pd.DataFrame:
    """Per numeric feature and bin: edges, rows and response rate, one row per bin, ready to chart.

    Columns: feature, bin (0 … n, the last being MISSING), label, lower, upper (the fitted
    edges; NaN for the missing bin), count, share (of rows), responses (sum of the outcome)
    and response_rate (their mean; for a 0/1 outcome, the response rate). The missing bin
    is listed only when it holds rows. Given a fitted `transform`, its edges are used (the
    bins the model saw) and `columns` defaults to its numeric columns; otherwise edges are
    learnt from `frame` and `columns` defaults to its numeric, non-boolean columns.
    `outcome` is a column name of `frame` or one value per row.
    """
    frame, y = _outcome(frame, outcome)
    if columns is None:
        columns = list(transform.numeric) if transform is not None else [
            c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
        ]
    n = len(frame)
    parts = []
    for column in columns:
        edges = transform.edges[column] if transform is not None else quantile_edges(frame[column], bins)
        n_bins = max(len(edges) - 1, 0)
        codes = bin_codes(frame[column], edges)
        counts = np.bincount(codes, minlength=n_bins + 1)
        responses = np.bincount(codes, weights=y, minlength=n_bins + 1)
        keep = np.r_[np.ones(n_bins, dtype=bool), counts[n_bins:] > 0]
        parts.append(pd.DataFrame({
            "feature": column,
            "bin": np.arange(n_bins + 1),
            "label": bin_labels(edges),
            "lower": np.r_[edges[:-1], np.nan] if n_bins else [np.nan],
            "upper": np.r_[edges[1:], np.nan] if n_bins else [np.nan],
            "count": counts,
            "share": counts / n if n else np.zeros(n_bins + 1),
            "responses": responses,
            "response_rate": np.divide(responses, counts, out=np.full(n_bins + 1, np.nan), where=counts > 0),
        })[keep])
    if not parts:
        return pd.DataFrame(columns=["feature", "bin", "label", "lower", "upper", "count", "share", "responses", "response_rate"])
    return pd.concat(parts, ignore_index=True)


def _outcome(frame: pd.DataFrame, outcome) -> tuple[pd.DataFrame, np.ndarray]:
    """(features, outcome as floats): `outcome` names a column of `frame` (then dropped) or holds one value per row."""
    if isinstance(outcome, str):
        if outcome not in frame.columns:
            raise ValueError(f"the frame has no outcome column {outcome!r}")
        frame, y = frame.drop(columns=[outcome]), _to_float(frame[outcome])
    else:
        y = _to_float(outcome)
        if len(y) != len(frame):
            raise ValueError(f"the outcome has {len(y)} values but the frame has {len(frame)} rows")
    if np.isnan(y).any():
        raise ValueError("the outcome has missing values: drop those rows or label them first")
    return frame, y


def _check_columns(frame: pd.DataFrame, columns: list[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"the frame lacks the columns the transform uses: {', '.join(missing)}")


def _edge_text(edges: np.ndarray) -> list[str]:
    """Short numbers for labels, with as many digits as it takes to keep neighbouring edges apart."""
    for digits in (4, 6, 10, 17):
        text = [f"{edge:.{digits}g}" for edge in edges]
        if len(set(text)) == len(text):
            return text
    return text


def _to_float(values) -> np.ndarray:
    """Numbers as float64 with NaN for missing; booleans become 0/1, Decimals floats, text NaN."""
    series = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values).ravel())
    if pd.api.types.is_bool_dtype(series):
        series = series.astype(float)
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _as_text(values: pd.Series) -> pd.Series:
    """Text as object strings; None, NaN and blank are missing (None)."""
    present = values.notna().to_numpy()
    text = values.astype(str).astype(object)
    present = present & (text.where(present, "").str.strip() != "").to_numpy()
    return text.where(present, None)


def _labels(values: pd.Series) -> pd.Series:
    """Category labels as text, with missing and blank values as the MISSING category."""
    return _as_text(values).fillna(MISSING)


class RowEncoder:
    """A fitted transform compiled for scoring a few rows at a time, as the decision engine does.

    `FeatureTransform.transform` goes through pandas and scikit-learn, about 25 ms whatever
    the number of rows; serving scores a handful of ads per request with a budget of a few
    milliseconds. This encoder reads the fitted edges, categories and vocabularies once and
    then encodes plain dicts with dictionary look-ups: the same columns, the same values
    (a test compares it with `transform` on random frames).
    """

    def __init__(self, transform: FeatureTransform) -> None:
        names = transform.get_feature_names()
        self.width = len(names)
        self._index = {name: i for i, name in enumerate(names)}
        self._numeric = []
        offset = 0
        for column, edges in transform.edges.items():
            n_bins = max(len(edges) - 1, 0)
            self._numeric.append((column, [float(e) for e in np.asarray(edges)[1:-1]], n_bins, offset))
            offset += n_bins + 1
        self._labels = {column: bin_labels(edges) for column, edges in transform.edges.items()}
        self._by_column = {column: (inner, n_bins) for column, inner, n_bins, _ in self._numeric}
        self._categorical = list(transform.categorical)
        self._crosses = [(a, b, f"{a}{CROSS}{b}") for a, b in transform.crosses]
        self._rare: dict[str, set[str]] = {}
        onehot = transform._onehot
        if onehot is not None:
            for column, rare in zip(onehot.feature_names_in_, onehot.infrequent_categories_):
                self._rare[str(column)] = set() if rare is None else {str(v) for v in rare}
        self._text = []
        for column, vectorizer in transform._tfidf.items():
            if vectorizer is not None:
                start = self._index[f"{column}: {vectorizer.get_feature_names_out()[0]}"]
                self._text.append((column, vectorizer.vocabulary_, np.asarray(vectorizer.idf_, dtype=np.float64), start))

    @staticmethod
    def _label(value) -> str:
        if value is None or (isinstance(value, float) and value != value):
            return MISSING
        text = str(value)
        return text if text.strip() else MISSING

    def _member(self, column: str, value) -> str:
        numeric = self._by_column.get(column)
        if numeric is None:
            return self._label(value)
        return self._labels[column][self._code(value, numeric[0], numeric[1])]

    @staticmethod
    def _code(value, inner: list[float], n_bins: int) -> int:
        try:
            x = float(value) if value is not None else float("nan")
        except (TypeError, ValueError):
            x = float("nan")
        if not n_bins:
            return 0
        if x != x:
            return n_bins
        return bisect.bisect_right(inner, x)

    def _onehot(self, column: str, label: str) -> int | None:
        index = self._index.get(f"{column} = {label}")
        if index is not None and label not in self._rare.get(column, ()):
            return index
        if label in self._rare.get(column, ()):
            return self._index.get(f"{column} = {RARE}")
        return None

    def cells(self, row: dict) -> dict[int, float]:
        """The non-zero columns of one row: {column index: value}."""
        cells: dict[int, float] = {}
        for column, inner, n_bins, offset in self._numeric:
            cells[offset + self._code(row.get(column), inner, n_bins)] = 1.0
        for column in self._categorical:
            index = self._onehot(column, self._label(row.get(column)))
            if index is not None:
                cells[index] = 1.0
        for a, b, name in self._crosses:
            index = self._onehot(name, f"{self._member(a, row.get(a))}{CROSS}{self._member(b, row.get(b))}")
            if index is not None:
                cells[index] = 1.0
        for column, vocabulary, idf, start in self._text:
            text = self._label(row.get(column))
            counts: dict[int, int] = {}
            if text != MISSING:
                for tag in split_tags(text):
                    j = vocabulary.get(tag)
                    if j is not None:
                        counts[j] = counts.get(j, 0) + 1
            if counts:
                weights = {j: c * idf[j] for j, c in counts.items()}
                norm = sum(w * w for w in weights.values()) ** 0.5
                for j, w in weights.items():
                    cells[start + j] = float(w / norm)
        return cells

    def encode(self, rows: Sequence[dict]) -> sparse.csr_matrix:
        """The feature matrix of `rows` (dicts keyed by column), equal to `transform` of the same frame."""
        indptr, indices, data = [0], [], []
        for row in rows:
            cells = self.cells(row)
            for index in sorted(cells):
                indices.append(index)
                data.append(cells[index])
            indptr.append(len(indices))
        return sparse.csr_matrix((np.asarray(data, dtype=np.float64), np.asarray(indices, dtype=np.int32),
                                  np.asarray(indptr, dtype=np.int32)), shape=(len(rows), self.width))
