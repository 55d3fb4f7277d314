"""Recommenders (pure): IUF and the metrics against hand computations, the split against the quoted procedure,
every model's recommendations against the exclusion rules, item2vec and cold start on two clear clusters."""

import math
import pickle
import subprocess
import sys
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from ml import recsys
from ml.recsys import EMPTY, iuf_similarity, lastfm_split, ndcg_at_k, recall_at_k

# Four users × four items; the values are play counts, which IUF ignores (it counts users).
#   user   items        |N(u)|   weight 1 / log(1 + |N(u)|)
#    0     0, 1          2       1 / ln 3 = 0.9102392
#    1     0, 1, 2       3       1 / ln 4 = 0.7213475
#    2     1, 2          2       1 / ln 3
#    3     3             1       1 / ln 2
# |N(i)|: item 0 → 2 (users 0, 1), item 1 → 3 (users 0, 1, 2), item 2 → 2 (users 1, 2), item 3 → 1.
PLAYS = sparse.csr_matrix(np.array([
    [5, 100, 0, 0],
    [1, 1, 7, 0],
    [0, 3, 2, 0],
    [0, 0, 0, 9],
], dtype=np.float32))
W3, W4 = 1 / math.log(3), 1 / math.log(4)
SIM_01 = (W3 + W4) / math.sqrt(2 * 3)  # users 0 and 1 share items 0 and 1 → 0.6660925
SIM_02 = W4 / math.sqrt(2 * 2)  # only user 1 has both → 0.3606738
SIM_12 = (W4 + W3) / math.sqrt(3 * 2)  # users 1 and 2 → 0.6660925


def test_iuf_similarity_matches_the_hand_computed_matrix():
    expected = np.array([
        [0, SIM_01, SIM_02, 0],
        [SIM_01, 0, SIM_12, 0],
        [SIM_02, SIM_12, 0, 0],
        [0, 0, 0, 0],
    ])
    assert iuf_similarity(PLAYS).toarray() == pytest.approx(expected)
    assert SIM_01 == pytest.approx(0.6660925) and SIM_02 == pytest.approx(0.3606738)


def test_iuf_similar_items_are_the_neighbours_best_first_and_an_isolated_item_has_none():
    model = recsys.iuf(PLAYS, dim=2)
    items, scores = model.similar([0, 3], 3)
    assert items.tolist() == [[1, 2, EMPTY], [EMPTY, EMPTY, EMPTY]]
    assert scores[0, :2] == pytest.approx([SIM_01, SIM_02])
    assert np.isneginf(scores[0, 2]) and np.isneginf(scores[1]).all()


def test_iuf_scores_a_user_by_summing_the_similarities_of_their_items_and_tops_up_with_popular_ones():
    model = recsys.iuf(PLAYS, dim=2)
    items, scores = model.recommend([0], 3)
    # user 0 has items 0 and 1: item 2 scores sim(0, 2) + sim(1, 2); item 3 has no evidence (0) but is
    # the only other item left, so it comes next; then nothing is left.
    assert items.tolist() == [[2, 3, EMPTY]]
    assert scores[0, :2] == pytest.approx([SIM_02 + SIM_12, 0.0])


def test_keeping_the_top_k_neighbours_keeps_each_items_best():
    model = recsys.iuf(PLAYS, neighbours=1, dim=2)
    assert model.neighbours.toarray() == pytest.approx(np.array([
        [0, SIM_01, 0, 0],
        [SIM_01, 0, 0, 0],  # sim(1, 0) = sim(1, 2): the tie goes to the lower item id
        [0, SIM_12, 0, 0],
        [0, 0, 0, 0],
    ]))


def test_iuf_item_vectors_reproduce_the_similarity_at_full_rank():
    # XᵀX is the similarity with its diagonal; at full rank (4) the SVD reproduces it exactly
    model = recsys.iuf(PLAYS, dim=4)
    gram = model.item_vectors.astype(np.float64) @ model.item_vectors.T.astype(np.float64)
    np.fill_diagonal(gram, 0.0)
    assert gram == pytest.approx(iuf_similarity(PLAYS).toarray(), abs=1e-5)


# ------------------------------------------------------------------------------- exclusion, every model


def random_plays(seed: int = 0, users: int = 40, items: int = 30) -> sparse.csr_matrix:
    rng = np.random.default_rng(seed)
    dense = (rng.random((users, items)) < 0.25) * rng.integers(1, 50, (users, items))
    dense[0] = 0
    dense[0, :items - 3] = 5  # user 0 consumed all but the last 3 items
    dense[1] = 0  # user 1 has no history at all
    return sparse.csr_matrix(dense.astype(np.float32))


FITS = {
    "popularity": lambda m: recsys.popularity(m),
    "als": lambda m: recsys.als(m, factors=8, iterations=5),
    "iuf": lambda m: recsys.iuf(m, neighbours=5, dim=4),
    "item2vec": lambda m: recsys.item2vec(m, dim=8, epochs=3, batch=256),
}


@cache
def fitted(name: str):
    return FITS[name](random_plays())


@pytest.mark.parametrize("name", FITS)
def test_recommendations_never_repeat_a_consumed_item_nor_pad_when_few_are_left(name):
    plays, model = random_plays(), fitted(name)
    users = np.arange(plays.shape[0])
    items, scores = model.recommend(users, 10)
    assert items.shape == scores.shape == (len(users), 10)
    for user, row in zip(users, items):
        real = row[row != EMPTY]
        assert not set(real) & set(plays[user].indices), f"user {user} got an item they consumed"
        assert len(set(real)) == len(real), f"user {user} got an item twice"
        assert (row[:len(real)] != EMPTY).all(), "empty slots only at the end"
    assert sorted(items[0, :3]) == [27, 28, 29] and (items[0, 3:] == EMPTY).all()
    assert np.isneginf(scores[0, 3:]).all()
    assert (items[1] != EMPTY).all()  # no history: still ten (popular) items


@pytest.mark.parametrize("name", FITS)
def test_recommendations_honour_an_explicit_exclusion_and_a_candidate_set(name):
    plays, model = random_plays(), fitted(name)
    nothing = sparse.csr_matrix(plays.shape, dtype=np.float32)
    items, _ = model.recommend([2], plays.shape[1], exclude=nothing)
    assert sorted(items[0]) == list(range(plays.shape[1]))  # nothing excluded: every item, once
    campaign = [27, 28, 29, 3]
    items, _ = model.recommend([0], 3, candidates=campaign)
    assert sorted(items[0]) == [27, 28, 29]  # item 3 was consumed by user 0
    with pytest.raises(recsys.RecsysError):
        model.recommend([0], 3, exclude=nothing[:5])


@pytest.mark.parametrize("name", FITS)
def test_a_fitted_recommender_recommends_the_same_after_pickling(name):
    model = fitted(name)
    again = pickle.loads(pickle.dumps(model))
    assert np.array_equal(again.recommend(np.arange(5), 4)[0], model.recommend(np.arange(5), 4)[0])


def test_popularity_ranks_items_by_their_users_and_is_the_same_for_everyone_without_history():
    model = recsys.popularity(PLAYS)
    items, scores = model.recommend([3], 4)
    # user 3 consumed item 3; items by users: 1 → 3, 0 → 2, 2 → 2 (tie: the lower id first)
    assert items.tolist() == [[1, 0, 2, EMPTY]]
    assert scores[0, :3].tolist() == [3, 2, 2]
    similar, _ = model.similar([1], 2)
    assert similar.tolist() == [[0, 2]]  # the most popular other items


def test_ids_out_of_range_are_refused():
    model = fitted("popularity")
    with pytest.raises(recsys.RecsysError):
        model.recommend([40], 3)
    with pytest.raises(recsys.RecsysError):
        model.similar([-1], 3)


# ------------------------------------------------------------------------------------------- metrics


def test_recall_and_ndcg_match_the_hand_computed_cases():
    recommended = np.array([[1, 2, 3], [5, 6, EMPTY], [1, 2, 3]])
    tests = [np.array([2, 3, 8, 9]), np.array([5]), np.array([], dtype=int)]
    # user 0: hits at ranks 2 and 3 of 4 test items → recall 2/4;
    #   DCG = 1/log2(3) + 1/log2(4) = 0.6309298 + 0.5, ideal over min(4, 3) = 3 slots = 1 + 0.6309298 + 0.5
    # user 1: its one test item at rank 1 → recall 1, NDCG 1;  user 2 has no test set: not averaged
    ndcg0 = (1 / math.log2(3) + 0.5) / (1 + 1 / math.log2(3) + 0.5)
    assert recall_at_k(recommended, tests, 3) == pytest.approx((0.5 + 1) / 2)
    assert ndcg_at_k(recommended, tests, 3) == pytest.approx((ndcg0 + 1) / 2)
    assert ndcg0 == pytest.approx(0.5307212)
    # at k = 2 user 0 has one hit (rank 2): recall 1/4, NDCG (1/log2 3) / (1 + 1/log2 3)
    assert recall_at_k(recommended, tests, 2) == pytest.approx((0.25 + 1) / 2)
    assert ndcg_at_k(recommended, tests, 2) == pytest.approx((0.6309298 / 1.6309298 + 1) / 2)


# --------------------------------------------------------------------------------------------- split


def test_the_split_follows_the_quoted_procedure_on_a_tiny_frame():
    frame = pd.DataFrame({
        "userID": [3, 1, 1, 2, 1, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3],
        "artistID": [12, 60, 10, 5, 30, 7, 50, 6, 11, 20, 7, 8, 40, 8, 9],
        "weight": range(15),
    })
    # default_rng(42): user 1 (sorted artists 10 20 30 40 50 60, n = 6) draws permutation(6) = 3 2 5 4 1 0
    # and holds out ceil(1.2) = 2: positions 3 and 2 → artists 40 and 30. User 2 has n = 4 < 5: all train,
    # and draws nothing. User 3 (7 8 9 11 12, n = 5) draws permutation(5) = 2 4 0 1 3 and holds out
    # ceil(1.0) = 1: position 2 → artist 9. (Had user 2 drawn a permutation(4), user 3's would start with 0.)
    rng = np.random.default_rng(42)
    assert rng.permutation(6).tolist() == [3, 2, 5, 4, 1, 0] and rng.permutation(5).tolist() == [2, 4, 0, 1, 3]
    train, test = lastfm_split(frame)
    assert sorted(zip(test.userID, test.artistID)) == [(1, 30), (1, 40), (3, 9)]
    assert len(train) == 12 and not set(train.index) & set(test.index)
    assert list(train.index) == sorted(train.index)  # the frame's own order is kept


def test_the_split_refuses_a_repeated_pair():
    frame = pd.DataFrame({"userID": [1, 1], "artistID": [5, 5], "weight": [1, 2]})
    with pytest.raises(recsys.RecsysError):
        lastfm_split(frame)


# ----------------------------------------------------------------------------- item2vec and cold start


def two_clusters(seed: int = 0) -> sparse.csr_matrix:
    """60 users: the first 30 play 6 of items 0–9 (cluster A), the others 6 of items 10–19 (cluster B)."""
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    for user in range(60):
        base = 0 if user < 30 else 10
        rows += [user] * 6
        cols += list(base + rng.choice(10, 6, replace=False))
    return sparse.csr_matrix((rng.integers(1, 20, len(rows)).astype(np.float32), (rows, cols)), shape=(60, 20))


@cache
def clustered_item2vec():
    return recsys.item2vec(two_clusters(), dim=16, epochs=30, batch=128, learning_rate=0.05)


def test_item2vec_puts_items_listened_together_closer_than_unrelated_ones():
    vectors = clustered_item2vec().item_vectors
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    cos = unit @ unit.T
    same = np.add.outer(np.arange(20) < 10, np.arange(20) < 10) != 1
    off_diagonal = ~np.eye(20, dtype=bool)
    assert cos[same & off_diagonal].mean() > cos[~same].mean() + 0.3
    similar, _ = clustered_item2vec().similar([0, 15], 5)
    assert (similar[0] < 10).all() and (similar[1] >= 10).all()
    items, _ = clustered_item2vec().recommend([0, 45], 3)
    assert (items[0] < 10).all() and (items[1] >= 10).all()


def test_item2vec_takes_ordered_sessions_too():
    sessions = [[0, 1, 2, 3], [3, 2, 1, 0], [10, 11, 12], [12, 11, 10]] * 20
    model = recsys.item2vec(two_clusters(), sessions, dim=8, epochs=20, batch=64, learning_rate=0.05)
    assert model.params["sessions"] is True
    similar, _ = model.similar([0], 2)
    assert set(similar[0]) <= {1, 2, 3}


def cluster_tags() -> sparse.csr_matrix:
    """Tags 0 rock, 1 guitar on cluster A (items 0–9); 2 pop, 3 dance on cluster B; tag 4 'favourite' on all."""
    tags = np.zeros((20, 5))
    tags[:10, 0], tags[:10, 1], tags[10:, 2], tags[10:, 3], tags[:, 4] = 3, 1, 2, 4, 1
    return sparse.csr_matrix(tags)


def test_cold_start_places_a_new_item_with_cluster_a_tags_near_cluster_a():
    model = clustered_item2vec()
    new = sparse.csr_matrix(np.array([[2, 2, 0, 0, 1], [0, 0, 0, 0, 0]]))  # rock + guitar; no tags at all
    items, scores, vectors = model.cold_start(new, cluster_tags(), 5)
    assert (items[0] < 10).all() and (items[0] >= 0).all() and (scores[0] > 0).all()
    assert (items[1] == EMPTY).all() and not vectors[1].any()
    unit = model.item_vectors / np.linalg.norm(model.item_vectors, axis=1, keepdims=True)
    placed = vectors[0] / np.linalg.norm(vectors[0])
    assert (unit[:10] @ placed).mean() > (unit[10:] @ placed).mean() + 0.3


def test_cold_start_without_vectors_still_finds_similar_items_by_tags():
    model = recsys.popularity(two_clusters())
    items, _, vectors = model.cold_start(sparse.csr_matrix(np.array([[0, 0, 1, 1, 0]])), cluster_tags(), 3)
    assert vectors is None and (items[0] >= 10).all()
    with pytest.raises(recsys.RecsysError):
        model.cold_start(sparse.csr_matrix(np.ones((1, 5))), cluster_tags()[:5], 3)


def test_importing_the_module_loads_neither_torch_nor_implicit():
    root = Path(__file__).resolve().parents[2]
    code = "import sys, ml.recsys; print(sorted(m for m in ('torch', 'implicit', 'sklearn') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert result.stdout.strip() == "[]"
