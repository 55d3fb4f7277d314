"""Transform: quantile bins, one-hot, crosses and tf-idf into a sparse matrix, and the bins report (pure, no database)."""

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from ml.transform import FeatureTransform, bin_codes, bin_labels, bins_report, quantile_edges, split_tags

AGE_NAMES = ["age in (-inf, 24.75)", "age in [24.75, 49.5)", "age in [49.5, 74.25)", "age in [74.25, inf)", "age = (missing)"]


def train_rows(n: int = 100) -> pd.DataFrame:
    """Ages 0…99 (quartile edges 24.75, 49.5, 74.25), two segments, two ads, a rare segment, tags."""
    segment = np.where(np.arange(n) % 2 == 0, "loyal", "casual").astype(object)
    segment[:2] = "vip"  # seen twice: rare under min_frequency=5
    return pd.DataFrame({
        "age": np.arange(n, dtype=float),
        "segment": segment,
        "ad": np.where(np.arange(n) % 4 < 2, "A", "B"),
        "tags": ["rock, hip hop" if i % 3 == 0 else "k-pop pop" if i % 3 == 1 else "" for i in range(n)],
    })


def dense(transform: FeatureTransform, frame: pd.DataFrame, prefix: str) -> pd.DataFrame:
    """The columns of the transformed frame whose names start with `prefix`, as a readable frame."""
    names = transform.get_feature_names()
    matrix = transform.transform(frame).toarray()
    keep = [i for i, name in enumerate(names) if name.startswith(prefix)]
    return pd.DataFrame(matrix[:, keep], columns=[names[i] for i in keep])


def test_quantile_edges_cut_at_the_quantiles_and_keep_one_bin_per_value_of_a_small_column():
    assert quantile_edges(np.arange(100.0), 4).tolist() == [0, 24.75, 49.5, 74.25, 99]
    assert quantile_edges([0, 1, 1, np.nan], 10).tolist() == [0, 0.5, 1]  # a flag keeps both values apart
    # 60 % zeros fill three quartiles: they get one bin of their own (cut at 0.5) instead of three.
    assert quantile_edges([0] * 60 + list(range(1, 41)), 4).tolist() == [0, 0.5, 15.25, 40]
    assert quantile_edges(list(range(40)) + [99] * 60, 4).tolist() == [0, 24.75, 69, 99]  # a tied maximum too
    assert quantile_edges([np.nan, np.nan], 4).size == 0


def test_bin_codes_clip_out_of_range_values_into_the_end_bins_and_give_nan_its_own_bin():
    edges = np.array([0, 24.75, 49.5, 74.25, 99])
    assert bin_codes([-50, 0, 24.75, 60, 99, 500, np.nan], edges).tolist() == [0, 0, 1, 2, 3, 3, 4]
    assert bin_labels(edges) == ["(-inf, 24.75)", "[24.75, 49.5)", "[49.5, 74.25)", "[74.25, inf)", "(missing)"]


def test_numeric_bins_are_fitted_on_train_only_and_reused_on_new_rows():
    transform = FeatureTransform(numeric=["age"], bins=4).fit(train_rows())
    new = pd.DataFrame({"age": [-50.0, 10.0, 60.0, 500.0, np.nan, 24.75]})
    assert transform.get_feature_names() == AGE_NAMES
    assert transform.transform(new).toarray().tolist() == [
        [1, 0, 0, 0, 0],  # below the training range: the first bin
        [1, 0, 0, 0, 0],
        [0, 0, 1, 0, 0],
        [0, 0, 0, 1, 0],  # above it: the last bin
        [0, 0, 0, 0, 1],  # missing
        [0, 1, 0, 0, 0],  # on an edge: the bin it opens
    ]
    assert transform.edges["age"].tolist() == [0, 24.75, 49.5, 74.25, 99]  # not refitted on the new rows
    assert quantile_edges(new["age"], 4).tolist() != [0, 24.75, 49.5, 74.25, 99]


def test_categories_one_hot_with_rare_ones_grouped_and_unknown_ones_all_zeros():
    transform = FeatureTransform(categorical=["segment"], min_frequency=5).fit(train_rows())
    assert transform.get_feature_names() == ["segment = casual", "segment = loyal", "segment = (rare)"]
    new = pd.DataFrame({"segment": ["loyal", "vip", "platinum", None]})
    assert transform.transform(new).toarray().tolist() == [
        [0, 1, 0],
        [0, 0, 1],  # seen twice at fit: rare
        [0, 0, 0],  # never seen: no column, no error
        [0, 0, 0],  # missing was never seen at fit either
    ]


def test_missing_categories_seen_at_fit_get_their_own_column():
    frame = pd.DataFrame({"region": ["north"] * 5 + [None] * 3 + [""] * 2})
    transform = FeatureTransform(categorical=["region"], min_frequency=1).fit(frame)
    assert transform.get_feature_names() == ["region = (missing)", "region = north"]
    assert transform.transform(pd.DataFrame({"region": [np.nan, "north"]})).toarray().tolist() == [[1, 0], [0, 1]]


def test_crosses_are_named_by_both_columns_and_cross_numeric_columns_by_bin():
    transform = FeatureTransform(numeric=["age"], crosses=[("segment", "ad"), ("age", "ad")], bins=4, min_frequency=5)
    transform.fit(train_rows())
    names = transform.get_feature_names()
    assert [n for n in names if n.startswith("segment × ad")] == [
        "segment × ad = casual × A",
        "segment × ad = casual × B",
        "segment × ad = loyal × A",
        "segment × ad = loyal × B",
        "segment × ad = (rare)",  # vip × A, seen twice
    ]
    assert "age × ad = (-inf, 24.75) × A" in names
    assert "age × ad = [74.25, inf) × B" in names
    crossed = dense(transform, pd.DataFrame({"age": [30.0], "segment": ["loyal"], "ad": ["B"]}), "age × ad")
    assert crossed.columns[crossed.iloc[0] == 1].tolist() == ["age × ad = [24.75, 49.5) × B"]


def test_text_tags_become_tf_idf_columns_with_a_capped_vocabulary():
    assert split_tags("Rock,  Hip  Hop") == ["rock", "hip hop"]
    assert split_tags("k-pop pop") == ["k-pop", "pop"]
    assert split_tags(" , ") == []
    transform = FeatureTransform(text=["tags"]).fit(train_rows())
    assert transform.get_feature_names() == ["tags: hip hop", "tags: k-pop", "tags: pop", "tags: rock"]
    tags = dense(transform, pd.DataFrame({"tags": ["rock", "rock, hip hop", "", None, "polka"]}), "tags")
    # Each row is L2-normalised; hip hop and rock are equally rare, so they share it equally.
    assert tags.iloc[0].tolist() == [0, 0, 0, 1]
    assert tags.iloc[1].tolist() == pytest.approx([2**-0.5, 0, 0, 2**-0.5])
    assert tags.iloc[2:].to_numpy().sum() == 0  # blank, missing, and a tag outside the vocabulary

    capped = FeatureTransform(text=["tags"], max_tags=1).fit(pd.DataFrame({"tags": ["jazz", "jazz blues", "jazz"]}))
    assert capped.get_feature_names() == ["tags: jazz"]


def test_the_matrix_is_csr_with_one_column_per_feature_name():
    transform = FeatureTransform(
        numeric=["age"], categorical=["segment", "ad"], crosses=[("segment", "ad")], text=["tags"], bins=4,
    )
    matrix = transform.fit_transform(train_rows())
    names = transform.get_feature_names()
    assert sparse.issparse(matrix) and matrix.format == "csr"
    assert matrix.shape == (100, len(names))
    assert len(set(names)) == len(names)
    assert names[:5] == AGE_NAMES


def test_a_pickled_transform_gives_the_same_matrix():
    transform = FeatureTransform(
        numeric=["age"], categorical=["segment"], crosses=[("segment", "ad")], text=["tags"], bins=4,
    ).fit(train_rows())
    restored = pickle.loads(pickle.dumps(transform))
    new = train_rows(30).assign(segment=["platinum"] * 30, age=np.linspace(-10, 200, 30))
    assert restored.get_feature_names() == transform.get_feature_names()
    assert (restored.transform(new) != transform.transform(new)).nnz == 0


def test_no_rows_give_an_empty_matrix_of_the_same_width():
    transform = FeatureTransform(numeric=["age"], categorical=["segment"], text=["tags"]).fit(train_rows())
    assert transform.transform(train_rows().iloc[:0]).shape == (0, len(transform.get_feature_names()))


def test_the_transform_refuses_rows_before_fit_or_without_its_columns():
    with pytest.raises(ValueError, match="fit the transform"):
        FeatureTransform(numeric=["age"]).transform(train_rows())
    transform = FeatureTransform(numeric=["age"], crosses=[("segment", "ad")]).fit(train_rows())
    with pytest.raises(ValueError, match="lacks the columns the transform uses: ad"):
        transform.transform(train_rows().drop(columns=["ad"]))


def test_bins_report_gives_edges_counts_and_response_rates_per_bin():
    frame = pd.DataFrame({"age": [10, 20, 30, 40, 50, 60, 70, 80, np.nan, np.nan], "segment": ["a"] * 10})
    clicked = [0, 0, 1, 0, 1, 1, 1, 1, 0, 1]
    report = bins_report(frame, clicked, bins=2)
    assert report["feature"].unique().tolist() == ["age"]  # text columns are not binned
    assert report["label"].tolist() == ["(-inf, 45)", "[45, inf)", "(missing)"]
    assert report["lower"].tolist()[:2] == [10, 45] and report["upper"].tolist()[:2] == [45, 80]
    assert report["count"].tolist() == [4, 4, 2]
    assert report["responses"].tolist() == [1, 4, 1]
    assert report["response_rate"].tolist() == [0.25, 1.0, 0.5]
    assert report["share"].tolist() == [0.4, 0.4, 0.2]


def test_bins_report_uses_the_fitted_edges_and_lists_the_missing_bin_only_when_it_has_rows():
    transform = FeatureTransform(numeric=["age"], bins=4).fit(train_rows())
    frame = pd.DataFrame({"age": [5.0, 30.0, 30.0, 90.0], "clicked": [1, 0, 1, 1]})
    report = bins_report(frame, "clicked", transform=transform)
    assert report["label"].tolist() == ["(-inf, 24.75)", "[24.75, 49.5)", "[49.5, 74.25)", "[74.25, inf)"]
    assert report["count"].tolist() == [1, 2, 0, 1]
    assert report["response_rate"].tolist()[:2] == [1.0, 0.5]
    assert np.isnan(report["response_rate"].iloc[2])


def test_importing_the_pure_modules_loads_neither_django_nor_scikit_learn():
    code = "import sys, ml.transform, ml.criteria; print(sorted(m for m in ('django', 'sklearn') if m in sys.modules))"
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert result.stdout.strip() == "[]"
