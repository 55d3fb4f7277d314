"""Recommendations from listening history: what a customer should hear next, and which items go together.

Pure numpy/scipy (no Django); `implicit` and torch are imported inside the functions that need
them, so importing this module from a web process loads neither. audiences/tasks.py builds one
users × items matrix of play counts (row = customer, column = catalogue item: the task maps its
own ids to these indices), fits a model, and stores what it returns: `recommend()` per customer
(the Recommendations rows), `similar()` per item (SimilarItems), `user_vectors` / `item_vectors`
(lookalike features) and `cold_start()` for items nobody has played yet.

Models (each returns a `Recommender`):

- `popularity`: items by how many users played them. The baseline every model must beat, and
  the fallback for a customer with no history.
- `als`: implicit ALS (Hu, Koren & Volinsky 2008) through the `implicit` library, confidence
  c_ui = 1 + α·plays_ui. implicit reads the stored value of a cell *as* its confidence (observed
  cells count c_ui, every other cell 1 with preference 0), so we store 1 + α·plays and leave the
  library's own alpha at 1 (it would otherwise multiply the whole value, 1 included).
- `iuf`: item–item collaborative filtering with inverse user frequency,

      sim(i, j) = Σ_{u ∈ N(i) ∩ N(j)} 1 / log(1 + |N(u)|) / sqrt(|N(i)| · |N(j)|),

  N(u) the items of user u and N(i) the users of item i. A user who played everything says little
  about any pair, hence the 1 / log(1 + |N(u)|). With B the binary users × items matrix,
  X = D^½ B M^-½ (D = diag 1/log(1 + |N(u)|), M = diag |N(i)|) gives sim = XᵀX off the diagonal:
  two sparse products, no loop over pairs. Each item keeps its `neighbours` most similar items, and
  a user's score for j is Σ_{i ∈ N(u)} sim_k(i, j).
- `item2vec` (Barkan & Koenigstein 2016): word2vec's skip-gram with negative sampling where a
  "sentence" is a listening session or, without sessions, a user's set of items (a playlist, in no
  order: it is shuffled every epoch so every pair gets its turn inside the window). Negatives are
  drawn from the unigram distribution to the power 0.75, i.e. toward popular items: an item must
  then beat the popular ones to sit near its real neighbours, not just the rare ones. Users are
  scored against the output vectors with part of log Pn(item) added back, because the negatives
  otherwise penalise every item by its popularity (see `item2vec`).

Recommending always removes what the user already consumed (`exclude`, by default the training
history) and never pads: when fewer than n items remain, the empty slots hold item -1 and score
-inf. Ties — in practice IUF's "no evidence at all" score 0 — go to the more popular item, so a
short history is topped up with popular items rather than with arbitrary ones.

Metrics: `recall_at_k` (hits / |test| per user) and `ndcg_at_k` (binary relevance, ideal DCG over
min(|test|, k) slots), both averaged over the users that have a test set. `lastfm_split` is the
fixed evaluation split of issue 8 on the HetRec Last.fm 2K plays.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy import sparse

EMPTY = -1  # the item id of an empty slot (fewer candidates than asked for)
_FILTERED = -3.0e38  # implicit's topk gives a filtered item the score -FLT_MAX (-3.4e38)


class RecsysError(ValueError):
    """The data cannot be used as asked (not a users × items matrix, negative plays, bad ids …)."""


# ------------------------------------------------------------------------------------------- inputs


def _plays(train) -> sparse.csr_matrix:
    """A clean float32 CSR copy: duplicates summed, explicit zeros dropped, nothing negative."""
    if not sparse.issparse(train) or train.ndim != 2:
        raise RecsysError("train must be a scipy sparse users × items matrix of play counts")
    m = sparse.csr_matrix(train, dtype=np.float32, copy=True)
    m.sum_duplicates()
    m.eliminate_zeros()
    if m.nnz and m.data.min() < 0:
        raise RecsysError("play counts must not be negative")
    m.sort_indices()
    return m


def _ids(values, size: int, what: str) -> np.ndarray:
    ids = np.asarray(values, dtype=np.int64).reshape(-1)
    if ids.size and (ids.min() < 0 or ids.max() >= size):
        raise RecsysError(f"{what} ids must lie in [0, {size}), got {ids.min()}..{ids.max()}")
    return ids


def _binary(m: sparse.csr_matrix) -> sparse.csr_matrix:
    b = m.copy()
    b.data = np.ones_like(b.data)
    return b


# --------------------------------------------------------------------------------------- recommender


@dataclass
class Recommender:
    """A fitted model: `recommend`, `similar`, `cold_start`, and embeddings where the model has them.

    `history` is the users × items play matrix it learnt from (float32 CSR): the default exclusion
    and, for IUF, the scoring input. `popularity` counts each item's users in it. Scoring:
    "dot" — user_vectors · (context_vectors, or item_vectors without them) + item_bias (if any):
    ALS and item2vec; "neighbours" — the binary history times the top-k similarity matrix: IUF;
    "popularity". `item_vectors` are the item embeddings (similar items, cold start, lookalike
    features); item2vec scores against its separate context (output) vectors.
    """

    kind: str
    history: sparse.csr_matrix
    popularity: np.ndarray
    scoring: str
    user_vectors: np.ndarray | None = None
    item_vectors: np.ndarray | None = None
    context_vectors: np.ndarray | None = None  # item2vec: the output embeddings users are scored against
    item_bias: np.ndarray | None = None  # item2vec: log of the negative-sampling distribution (see item2vec)
    neighbours: sparse.csr_matrix | None = None  # IUF: items × items, row i = i's top-k, zero diagonal
    params: dict = field(default_factory=dict)
    fit_seconds: float = 0.0

    @property
    def n_users(self) -> int:
        return self.history.shape[0]

    @property
    def n_items(self) -> int:
        return self.history.shape[1]

    # -- recommending ----------------------------------------------------------------------------

    def recommend(self, users, n: int = 10, exclude: sparse.spmatrix | None = None, *,
                  candidates=None) -> tuple[np.ndarray, np.ndarray]:
        """The n best items per user, best first: (items int64 [len(users), n], scores float [len(users), n]).

        exclude: a users × items matrix indexed by user id like `history`; every stored cell is an
        item that user must not get. None excludes the history (what they already consumed); pass
        an empty matrix to exclude nothing. candidates: item ids to choose from (e.g. a campaign's
        items, for "the customer's best recommended item from this set"); None for all.
        Empty slots (fewer than n items left) hold item -1 and score -inf. A user with no history
        gets the popular items (a factor model has nothing to go on for them).
        """
        users = _ids(users, self.n_users, "user")
        if n < 0:
            raise RecsysError("n must not be negative")
        exclude = self.history if exclude is None else _exclusion(exclude, self.history.shape)
        cand = None if candidates is None else np.unique(_ids(candidates, self.n_items, "item"))
        out_items = np.full((len(users), n), EMPTY, dtype=np.int64)
        out_scores = np.full((len(users), n), -np.inf, dtype=np.float64)
        if not len(users) or not n:
            return out_items, out_scores
        known = np.diff(self.history.indptr)[users] > 0
        if self.scoring == "dot":
            cold = ~known
            warm = np.flatnonzero(known)
            if len(warm):
                out_items[warm], out_scores[warm] = self._top_factors(users[warm], n, exclude, cand)
            if cold.any():
                cold = np.flatnonzero(cold)
                out_items[cold], out_scores[cold] = self._top_dense(users[cold], n, exclude, cand, popular=True)
        else:
            # IUF: a user with no history scores 0 everywhere and gets the popular items by the tie-break
            out_items[:], out_scores[:] = self._top_dense(users, n, exclude, cand, popular=False)
        return out_items, out_scores

    def _top_factors(self, users, n, exclude, cand):
        """Dot-product top-n through implicit's multithreaded C++ topk, then its padding removed."""
        from implicit.cpu.topk import topk

        items = self.item_vectors if self.context_vectors is None else self.context_vectors
        query = self.user_vectors[users]
        if self.item_bias is not None:  # u·v + b = [u, 1]·[v, b]
            items = np.hstack([items, self.item_bias[:, None].astype(items.dtype)])
            query = np.hstack([query, np.ones((len(query), 1), dtype=query.dtype)])
        filt = exclude[users]
        if cand is not None:
            items, filt = items[cand], filt[:, cand]
        filt = sparse.csr_matrix(filt, dtype=np.float32)
        filt.sort_indices()
        n_cand = items.shape[0]
        k = min(n, n_cand)
        if k == 0:
            return _pad(np.empty((len(users), 0), dtype=np.int64), np.empty((len(users), 0)), n)
        ids, scores = topk(np.ascontiguousarray(items, dtype=np.float32), np.ascontiguousarray(query, dtype=np.float32),
                           k, filter_query_items=filt if filt.nnz else None)
        ids = np.asarray(ids, dtype=np.int64)
        scores = np.asarray(scores, dtype=np.float64)
        left = n_cand - np.diff(filt.indptr)
        empty = (scores <= _FILTERED) | (np.arange(k)[None, :] >= left[:, None])
        if cand is not None:
            ids = cand[ids]
        ids[empty], scores[empty] = EMPTY, -np.inf
        return _pad(ids, scores, n)

    def _score_block(self, users: np.ndarray, popular: bool) -> np.ndarray:
        if popular or self.scoring == "popularity":
            return np.broadcast_to(self.popularity.astype(np.float64), (len(users), self.n_items)).copy()
        # neighbours: Σ over the user's items i of sim_k(i, j)
        return (_binary(self.history[users]) @ self.neighbours).toarray().astype(np.float64)

    def _top_dense(self, users, n, exclude, cand, *, popular: bool):
        """Top-n of a dense score block, a few hundred users at a time (~16 MB of scores per block)."""
        block = max(1, 2_000_000 // max(self.n_items, 1))
        tiebreak = _tiebreak(self.popularity)
        items_out, scores_out = [], []
        allowed = None
        if cand is not None:
            allowed = np.zeros(self.n_items, dtype=bool)
            allowed[cand] = True
        for start in range(0, len(users), block):
            rows = users[start:start + block]
            scores = self._score_block(rows, popular)
            banned = exclude[rows].toarray() != 0
            if allowed is not None:
                banned |= ~allowed
            # a tie (above all IUF's 0 = no evidence) goes to the more popular item; 1e-9 of the
            # block's largest score leaves every real difference in place
            key = scores + tiebreak * (1e-9 * max(1.0, float(np.abs(scores).max(initial=0))))
            key[banned] = -np.inf
            items_out.append(_top_rows(key, n))
            scores_out.append(np.take_along_axis(scores, items_out[-1], axis=1))
            empty = np.take_along_axis(banned, items_out[-1], axis=1)
            items_out[-1][empty] = EMPTY
            scores_out[-1][empty] = -np.inf
        return _pad(np.vstack(items_out), np.vstack(scores_out), n)

    # -- item to item ----------------------------------------------------------------------------

    def similar(self, items, n: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Each item's n nearest other items, nearest first: (items [len(items), n], scores).

        ALS / item2vec: cosine of the item vectors, among items somebody played. IUF: the stored
        neighbours (the similarity of the formula), so an item with fewer co-listened items gets
        fewer (empty slots: -1 and -inf). Popularity has no notion of likeness: the most popular
        other items, scored by their user count.
        """
        items = _ids(items, self.n_items, "item")
        out_items = np.full((len(items), n), EMPTY, dtype=np.int64)
        out_scores = np.full((len(items), n), -np.inf)
        if not len(items) or not n:
            return out_items, out_scores
        if self.scoring == "neighbours":
            rows = self.neighbours[items]
            for r in range(len(items)):  # rows are stored best first
                lo, hi = rows.indptr[r], min(rows.indptr[r + 1], rows.indptr[r] + n)
                out_items[r, :hi - lo] = rows.indices[lo:hi]
                out_scores[r, :hi - lo] = rows.data[lo:hi]
            return out_items, out_scores
        played = self.popularity > 0
        if self.scoring == "popularity":
            # the n + 1 most popular played items, the item itself taken out (else the last one falls off)
            order = np.lexsort((np.arange(self.n_items), -self.popularity))
            order = order[played[order]][:n + 1]
            top = np.tile(order, (len(items), 1))
            top[top == items[:, None]] = EMPTY
            top = np.take_along_axis(top, np.argsort(top == EMPTY, axis=1, kind="stable"), axis=1)[:, :n]
            scores = np.where(top >= 0, self.popularity[np.maximum(top, 0)], -np.inf)
            return _pad(top, scores, n)
        from implicit.cpu.topk import topk

        vectors = np.ascontiguousarray(_normalised(self.item_vectors), dtype=np.float32)
        own = sparse.csr_matrix((np.ones(len(items), dtype=np.float32), (np.arange(len(items)), items)),
                                shape=(len(items), self.n_items))
        unplayed = np.flatnonzero(~played).astype(np.int32)
        left = int(played.sum()) - played[items].astype(int)
        k = min(n, int(played.sum()))
        if k == 0:
            return out_items, out_scores
        ids, scores = topk(vectors, vectors[items], k, filter_query_items=own,
                           filter_items=unplayed if len(unplayed) else None)
        ids, scores = np.asarray(ids, dtype=np.int64), np.asarray(scores, dtype=np.float64)
        empty = (scores <= _FILTERED) | (np.arange(k)[None, :] >= left[:, None])
        ids[empty], scores[empty] = EMPTY, -np.inf
        return _pad(ids, scores, n)

    # -- items nobody has played -----------------------------------------------------------------

    def cold_start(self, new_tags, known_tags, n: int = 10, *, neighbours: int | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Place items with no plays through their tags: (similar known items, their scores, vectors).

        new_tags: new items × tags; known_tags: this model's items × the same tags (row = item id);
        values are tag counts (e.g. how many listeners applied the tag). Both are weighted by
        tf-idf — tf = log(1 + count), idf = log((1 + N) / (1 + df)) + 1 over all N rows — and
        compared by cosine; only known items somebody played are candidates (the others have no
        meaningful vector). The new item's vector is the cosine-weighted mean of its `neighbours`
        (default n) most similar known items' vectors, so it lands where listeners of those items
        live and can be recommended and scored at once; None for a model without vectors. An item
        whose tags match nothing gets no similar items (-1) and a zero vector.
        """
        new = sparse.csr_matrix(new_tags, dtype=np.float64)
        known = sparse.csr_matrix(known_tags, dtype=np.float64)
        if known.shape[0] != self.n_items or new.shape[1] != known.shape[1]:
            raise RecsysError(f"known_tags must be {self.n_items} items × the same tags as new_tags "
                              f"(got {known.shape} and {new.shape})")
        new, known = _tfidf(new, known)
        known = sparse.csr_matrix(sparse.diags((self.popularity > 0).astype(np.float64)) @ known)  # unplayed: no match
        k = max(n, neighbours or n)
        tops, all_scores = [], []
        block = max(1, 2_000_000 // max(self.n_items, 1))
        for lo in range(0, new.shape[0], block):
            cos = (new[lo:lo + block] @ known.T).toarray()
            tops.append(_top_rows(cos, k))
            all_scores.append(np.take_along_axis(cos, tops[-1], axis=1))
        top = np.vstack(tops) if tops else np.empty((0, min(k, self.n_items)), dtype=np.int64)
        scores = np.vstack(all_scores) if all_scores else np.empty(top.shape)
        top[scores <= 0] = EMPTY
        vectors = None
        if self.item_vectors is not None:
            m = neighbours or n
            w = np.where(top[:, :m] >= 0, scores[:, :m], 0.0)
            total = w.sum(axis=1, keepdims=True)
            mean = np.einsum("rk,rkd->rd", w, self.item_vectors[np.maximum(top[:, :m], 0)].astype(np.float64))
            vectors = np.divide(mean, total, out=np.zeros_like(mean), where=total > 0).astype(self.item_vectors.dtype)
        scores = np.where(top >= 0, scores, -np.inf)
        return _pad(top[:, :n], scores[:, :n], n) + (vectors,)


def _exclusion(exclude, shape) -> sparse.csr_matrix:
    if not sparse.issparse(exclude) or exclude.shape != shape:
        raise RecsysError(f"exclude must be a sparse users × items matrix of shape {shape}, indexed by user id")
    m = sparse.csr_matrix(exclude, copy=True)
    m.eliminate_zeros()
    return m


def _tiebreak(popularity: np.ndarray) -> np.ndarray:
    """In (0, 1]: the item's popularity rank (more users → larger), for breaking ties only."""
    order = np.lexsort((-np.arange(len(popularity)), popularity))  # among equals the lower id ranks higher
    rank = np.empty(len(popularity))
    rank[order] = np.arange(1, len(popularity) + 1)
    return rank / max(len(popularity), 1)


def _top_rows(key: np.ndarray, n: int) -> np.ndarray:
    """Column indices of each row's n largest values, largest first (n clipped to the columns)."""
    k = min(n, key.shape[1])
    if k == 0:
        return np.empty((key.shape[0], 0), dtype=np.int64)
    part = np.argpartition(-key, k - 1, axis=1)[:, :k] if k < key.shape[1] else np.tile(np.arange(key.shape[1]), (key.shape[0], 1))
    order = np.argsort(-np.take_along_axis(key, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1).astype(np.int64)


def _pad(items: np.ndarray, scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    if items.shape[1] >= n:
        return items[:, :n], scores[:, :n].astype(np.float64)
    extra = n - items.shape[1]
    return (np.hstack([items, np.full((len(items), extra), EMPTY, dtype=np.int64)]),
            np.hstack([scores.astype(np.float64), np.full((len(items), extra), -np.inf)]))


def _normalised(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


def _tfidf(new: sparse.csr_matrix, known: sparse.csr_matrix) -> tuple[sparse.csr_matrix, sparse.csr_matrix]:
    both = sparse.vstack([known, new]).tocsr()
    both.data = np.log1p(np.maximum(both.data, 0))
    both.eliminate_zeros()
    df = np.bincount(both.indices, minlength=both.shape[1])
    idf = np.log((1 + both.shape[0]) / (1 + df)) + 1
    both = sparse.csr_matrix(both @ sparse.diags(idf))
    norms = np.sqrt(np.asarray(both.multiply(both).sum(axis=1)).ravel())
    both = sparse.csr_matrix(sparse.diags(np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)) @ both)
    return both[known.shape[0]:], both[:known.shape[0]]


# ------------------------------------------------------------------------------------------- models


def _users_per_item(m: sparse.csr_matrix) -> np.ndarray:
    return np.bincount(m.indices, minlength=m.shape[1]).astype(np.int64)


def popularity(train) -> Recommender:
    """Items ranked by their number of users (ties: lower item id)."""
    started = time.perf_counter()
    m = _plays(train)
    return Recommender("popularity", m, _users_per_item(m), "popularity", fit_seconds=time.perf_counter() - started)


def als(train, *, factors: int = 64, regularization: float = 20.0, alpha: float = 0.02, iterations: int = 15,
        seed: int = 0, threads: int = 0) -> Recommender:
    """Implicit ALS on confidence 1 + α·plays (implicit's CPU conjugate-gradient solver).

    The defaults were chosen on a validation split carved out of the Last.fm training rows
    (bench/recsys.py --tune). `threads`: implicit's own (0 = every core). BLAS is held to one
    thread during the fit, as implicit asks: its solver runs its threads itself, and a
    multithreaded BLAS underneath only fights it.
    """
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    started = time.perf_counter()
    m = _plays(train)
    c = m.copy()
    c.data = (1.0 + alpha * c.data).astype(np.float32)  # the confidence, as implicit reads it
    with threadpool_limits(1, "blas"):  # the constructor checks the BLAS threads too
        model = AlternatingLeastSquares(factors=factors, regularization=regularization, alpha=1.0, dtype=np.float32,
                                        iterations=iterations, random_state=seed, num_threads=threads)
        model.fit(c, show_progress=False)
    params = dict(factors=factors, regularization=regularization, alpha=alpha, iterations=iterations, seed=seed)
    return Recommender("als", m, _users_per_item(m), "dot", user_vectors=model.user_factors,
                       item_vectors=model.item_factors, params=params, fit_seconds=time.perf_counter() - started)


def _iuf_factor(m: sparse.csr_matrix) -> sparse.csr_matrix:
    """X = D^½ B M^-½: users × items, so that XᵀX is the IUF similarity (its diagonal included)."""
    b = _binary(m).astype(np.float64)
    per_user = np.diff(b.indptr)
    user_w = np.divide(1.0, np.log1p(per_user), out=np.zeros(len(per_user)), where=per_user > 0)
    per_item = _users_per_item(b)
    item_w = np.divide(1.0, np.sqrt(per_item), out=np.zeros(len(per_item)), where=per_item > 0)
    return sparse.csr_matrix(sparse.diags(np.sqrt(user_w)) @ b @ sparse.diags(item_w))


def iuf_similarity(train) -> sparse.csr_matrix:
    """The full item × item IUF similarity of the module docstring (zero diagonal), from two sparse products."""
    x = _iuf_factor(_plays(train))
    sim = sparse.csr_matrix(x.T @ x)
    sim.setdiag(0.0)
    sim.eliminate_zeros()
    sim.sort_indices()
    return sim


def _keep_top(sim: sparse.csr_matrix, k: int | None) -> sparse.csr_matrix:
    """Each row's k largest entries, stored largest first (ties: lower column first)."""
    rows = np.repeat(np.arange(sim.shape[0]), np.diff(sim.indptr))
    order = np.lexsort((sim.indices, -sim.data, rows))
    rank = np.arange(len(order)) - sim.indptr[rows[order]]
    keep = order[rank < k] if k is not None else order
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows[keep], minlength=sim.shape[0]))])
    # built directly (not through the coo constructor), so each row keeps its best-first order
    return sparse.csr_matrix((sim.data[keep], sim.indices[keep], indptr), shape=sim.shape)


def iuf(train, *, neighbours: int | None = 1000, dim: int = 64, seed: int = 0) -> Recommender:
    """Item–item CF with inverse user frequency, each item keeping its `neighbours` best (None: all).

    Embeddings (for lookalike features; recommending uses the exact similarities): a truncated SVD
    X ≈ U Σ Vᵀ of X = D^½ B M^-½, whose Gram matrix XᵀX is the IUF similarity (diagonal
    included). Item vectors are the rows of VΣ, so item·item dot products are the best rank-`dim`
    approximation of sim; a user's vector is the sum of their items' vectors (b_u V Σ), so
    user·item approximates the user's IUF score before the top-k cut.
    """
    from scipy.sparse.linalg import svds

    started = time.perf_counter()
    m = _plays(train)
    kept = _keep_top(iuf_similarity(m), neighbours)
    x = _iuf_factor(m)
    if min(x.shape) <= 500:  # small: a dense SVD, which may keep every dimension
        _, s, vt = np.linalg.svd(x.toarray(), full_matrices=False)
        k = min(dim, len(s))
        items = (vt[:k].T * s[:k]).astype(np.float32)
    else:
        k = min(dim, min(x.shape) - 1)  # svds cannot return all of them
        v0 = np.random.default_rng(seed).standard_normal(min(x.shape))
        _, s, vt = svds(x, k=k, v0=v0)
        order = np.argsort(-s)
        items = (vt[order].T * s[order]).astype(np.float32)
    users = np.asarray(_binary(m) @ items, dtype=np.float32)
    params = dict(neighbours=neighbours, dim=dim, seed=seed)
    return Recommender("iuf", m, _users_per_item(m), "neighbours", user_vectors=users, item_vectors=items, neighbours=kept,
                       params=params, fit_seconds=time.perf_counter() - started)


def _skipgram_pairs(flat: np.ndarray, group: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """(centre, context) for every two positions at most `window` apart in the same sentence, both ways."""
    centres, contexts = [], []
    for d in range(1, window + 1):
        same = group[d:] == group[:-d]
        a, b = flat[:-d][same], flat[d:][same]
        centres += [a, b]
        contexts += [b, a]
    return np.concatenate(centres), np.concatenate(contexts)


def item2vec(train, sessions: Sequence[Sequence[int]] | None = None, *, dim: int = 64, window: int = 3,
             negatives: int = 5, epochs: int = 10, learning_rate: float = 0.2, batch: int = 4096,
             prior: float = 0.5, user_weight: str = "plays", seed: int = 0, threads: int | None = 1) -> Recommender:
    """Skip-gram with negative sampling (torch tensors, CPU) over sessions or, without them, each user's items.

    sessions: ordered item-id sequences (a listening session, a playlist), order kept. Without
    them each user's items form an unordered playlist, shuffled every epoch so that every pair
    meets inside the window over the epochs. Negatives are drawn from the item frequencies ^ 0.75.

    Training is word2vec's: plain SGD, learning rate decaying linearly to zero, gradients written
    out by hand (no autograd) and applied per mini-batch with index_add_ — on two CPU cores this
    is several times faster than autograd with a sparse optimiser, and needs no warm-up. `threads`:
    torch's threads during the fit (None: leave torch's setting). One by default: a batch is ~20
    small tensor operations, and on a 2-core machine shared with other work torch's OpenMP threads
    spinning at the barrier after each made a fit that takes ~11 s on one thread (6 s on two when
    the machine is idle) take 45–130 s. On a dedicated worker with OMP_WAIT_POLICY=PASSIVE in its
    environment, more threads pay. The result does not depend on the thread count.

    Item vectors are the input embeddings (for similar items, cold start, lookalike features).
    A user's vector is the mean of their items' input vectors weighted by plays (`user_weight`:
    "plays", "log" for log(1 + plays), "none"). Scoring: SGNS makes in_i · out_j estimate
    log[P(j | i) / (k·Pn(j))], the log-odds of a real context against a noise draw, so scoring
    users by u · out_j alone divides every item by its noise probability — it *penalises*
    popular items by their frequency^0.75, and on Last.fm that took recall@10 from ~0.16 to ~0.09
    on our validation split. We add `prior` · log Pn(j) back as a per-item bias (1 would restore
    log P(j | user's items) exactly; 0.5 did best on validation, between popularity-blind and
    popularity-led). The defaults were chosen on a validation split carved out of the Last.fm
    training rows (bench/recsys.py --tune).
    """
    import torch

    started = time.perf_counter()
    m = _plays(train)
    n_items = m.shape[1]
    rng = np.random.default_rng(seed)
    if sessions is None:
        flat = m.indices.astype(np.int64)
        group = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
        shuffle = True
    else:
        seqs = [_ids(s, n_items, "item") for s in sessions]
        flat = np.concatenate(seqs) if seqs else np.empty(0, dtype=np.int64)
        group = np.repeat(np.arange(len(seqs)), [len(s) for s in seqs])
        shuffle = False
    counts = np.bincount(flat, minlength=n_items).astype(np.float64)
    noise = counts ** 0.75
    noise = noise / noise.sum() if noise.sum() > 0 else np.full(n_items, 1.0 / n_items)

    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        gen = torch.Generator().manual_seed(seed)
        w_in = (torch.rand(n_items, dim, generator=gen) - 0.5) / dim  # word2vec's start: small inputs,
        w_out = torch.zeros(n_items, dim)  # zero outputs
        steps = 0
        for epoch in range(epochs):
            centre, context = _skipgram_pairs(flat[np.lexsort((rng.random(len(flat)), group))] if shuffle else flat,
                                              group, window)
            if epoch == 0:
                total = max(1, epochs * len(centre))
            perm = rng.permutation(len(centre))
            centre, context = torch.from_numpy(centre[perm]), torch.from_numpy(context[perm])
            drawn = torch.from_numpy(rng.choice(n_items, size=(len(perm), negatives), p=noise))
            for lo in range(0, len(perm), batch):
                rate = learning_rate * max(1e-4, 1.0 - steps / total)
                c, t, neg = centre[lo:lo + batch], context[lo:lo + batch], drawn[lo:lo + batch]
                steps += len(c)
                vc, vt, vn = w_in[c], w_out[t], w_out[neg]
                # d(−log σ(vc·vt))/d(vc·vt) = σ − 1;  d(−log σ(−vc·vn))/d(vc·vn) = σ(vc·vn)
                g_pos = torch.sigmoid((vc * vt).sum(-1)) - 1.0
                g_neg = torch.sigmoid((vn * vc[:, None, :]).sum(-1))
                grad_c = g_pos[:, None] * vt + torch.bmm(g_neg.unsqueeze(1), vn).squeeze(1)
                w_out.index_add_(0, t, (-rate * g_pos)[:, None] * vc)
                w_out.index_add_(0, neg.reshape(-1), ((-rate * g_neg)[..., None] * vc[:, None, :]).reshape(-1, dim))
                w_in.index_add_(0, c, -rate * grad_c)
        items, contexts = w_in.numpy(), w_out.numpy()
    finally:
        torch.set_num_threads(previous_threads)
    unseen = counts == 0
    items[unseen] = 0.0  # never seen: its random start means nothing
    contexts[unseen] = 0.0
    bias = prior * np.log(np.where(unseen, 1.0, noise))
    if unseen.any() and not unseen.all():
        bias[unseen] = bias[~unseen].min() - 1.0  # after every item somebody played, if ever
    bias = bias.astype(np.float32)
    users = _user_means(m, items, user_weight)
    params = dict(dim=dim, window=window, negatives=negatives, epochs=epochs, learning_rate=learning_rate, batch=batch,
                  prior=prior, user_weight=user_weight, seed=seed, sessions=sessions is not None)
    return Recommender("item2vec", m, _users_per_item(m), "dot", user_vectors=users, item_vectors=items,
                       context_vectors=contexts, item_bias=bias, params=params, fit_seconds=time.perf_counter() - started)


def _user_means(m: sparse.csr_matrix, items: np.ndarray, weight: str) -> np.ndarray:
    if weight not in ("plays", "log", "none"):
        raise RecsysError('user_weight must be "plays", "log" or "none"')
    w = m.copy().astype(np.float64)
    if weight == "log":
        w.data = np.log1p(w.data)
    elif weight == "none":
        w.data = np.ones_like(w.data)
    total = np.asarray(w.sum(axis=1)).ravel()
    w = sparse.diags(np.divide(1.0, total, out=np.zeros_like(total), where=total > 0)) @ w
    return np.asarray(w @ items.astype(np.float64), dtype=np.float32)


# ------------------------------------------------------------------------------------------ metrics


def _hits(recommended: np.ndarray, test_sets: Sequence, k: int):
    rec = np.asarray(recommended)
    if rec.ndim != 2 or len(rec) != len(test_sets):
        raise RecsysError("recommended must be one row per test set")
    for row, test in zip(rec[:, :k], test_sets):
        test = set(np.asarray(test).reshape(-1).tolist())
        if test:
            yield np.array([item in test for item in row.tolist()], dtype=bool), len(test)


def recall_at_k(recommended, test_sets: Sequence, k: int = 10) -> float:
    """Mean over users with a test set of (test items among the first k) / |test|; NaN with none."""
    values = [hits.sum() / size for hits, size in _hits(recommended, test_sets, k)]
    return float(np.mean(values)) if values else math.nan


def ndcg_at_k(recommended, test_sets: Sequence, k: int = 10) -> float:
    """Mean NDCG@k, binary relevance: Σ hit_r / log2(r + 1) over ranks r ≤ k, divided by the ideal
    Σ_{r ≤ min(|test|, k)} 1 / log2(r + 1); averaged over users with a test set."""
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    values = []
    for hits, size in _hits(recommended, test_sets, k):
        values.append(float(discount[:len(hits)][hits].sum() / discount[:min(size, k)].sum()))
    return float(np.mean(values)) if values else math.nan


# -------------------------------------------------------------------------------------------- split


def lastfm_split(frame, *, seed: int = 42, user: str = "userID", item: str = "artistID"):
    """Issue 8's fixed split: (train rows, test rows) of `frame`, both in the frame's own order.

    One numpy.random.default_rng(seed) for all users; users in ascending id; a user's n artist ids
    sorted ascending; if n ≥ 5, artist_ids[rng.permutation(n)[:ceil(0.2·n)]] are held out as test,
    the rest is train; a user with n < 5 is all train and draws nothing from the generator.
    """
    if frame.duplicated([user, item]).any():
        raise RecsysError("each (user, item) pair must appear once")
    rng = np.random.default_rng(seed)
    held_users, held_items = [], []
    by_user = frame.groupby(user, sort=True)[item]
    for uid, items in by_user:
        artist_ids = np.sort(items.to_numpy())
        n = len(artist_ids)
        if n >= 5:
            out = artist_ids[rng.permutation(n)[:math.ceil(0.2 * n)]]
            held_users.append(np.full(len(out), uid))
            held_items.append(out)
    held = set()
    if held_users:
        held = set(zip(np.concatenate(held_users).tolist(), np.concatenate(held_items).tolist()))
    is_test = np.fromiter(((u, i) in held for u, i in zip(frame[user].tolist(), frame[item].tolist())),
                          dtype=bool, count=len(frame))
    return frame[~is_test], frame[is_test]
