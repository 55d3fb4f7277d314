"""Online logistic regression: FTRL-Proximal on hashed features, updated from the event stream.

Pure numpy (no Django, no scikit-learn at import): the decision engine scores with
`predict_proba` in-process, and the event consumer calls `update` with each mini-batch of
outcomes between the scheduled retrains. `to_bytes` / `from_bytes` store the state as an
artefact; the model also pickles.

The algorithm is McMahan et al. 2013, "Ad Click Prediction: a View from the Trenches",
Algorithm 1: per coordinate i it keeps z_i (the accumulated gradient, corrected so the
weight is a proximal step) and n_i (the sum of squared gradients), and derives the weight
lazily:

    w_i = 0                                                        if |z_i| <= l1
    w_i = -(z_i - sign(z_i) * l1) / ((beta + sqrt(n_i)) / alpha + l2)  otherwise

so L1 gives exact zeros (a sparse model), and each coordinate has its own learning rate
alpha / (beta + sqrt(n_i)): rare features keep learning fast, frequent ones settle.

Mini-batches. Exact FTRL is sequential: each event sees the weights its predecessors left.
`update` computes the weights once per batch, predicts every event of the batch with them
(those predictions are returned: progressive validation comes for free), sums each
coordinate's gradients over the batch and adds the per-event squared gradients to n — the
same n the sequential algorithm would reach, so the learning rates shrink at the same pace.
With a batch of one it is exactly Algorithm 1; larger batches trade a little exactness for
numpy speed (see bench/ftrl.py for both).

Features. An event is a list of tokens: a string ("genre=rock", "seg=fan^ad=42") is a
binary feature, a (name, value) pair a numeric one (a string value becomes "name=value"
with value 1). Tokens are hashed into 2**bits buckets: CRC-32 of the UTF-8 bytes (stable
across processes and machines, unlike Python's salted `hash()`), then murmur3's 32-bit
finaliser vectorised over the batch so the low bits we keep are well mixed. The CRC of a
token is cached, so a steady vocabulary costs one dict lookup per token. Collisions are
the usual price of hashing; 2**20 buckets keep them rare for tens of thousands of tokens.
A bias term is always present (kept outside the buckets, free of L1).
"""

from __future__ import annotations

import io
import json
import zlib
from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np

Token = Union[str, tuple[str, float]]
Event = Sequence[Token]

_CACHE_LIMIT = 2_000_000  # tokens; past this the cache restarts (ids, free text) rather than grow forever


class _NotAString(Exception):
    pass


class _TokenCodes(dict):
    """token -> CRC-32 (seeded), computed on first sight; raises for non-strings so the caller can take the slow path."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.seed = seed

    def __missing__(self, token: object) -> int:
        if type(token) is not str:
            raise _NotAString
        if len(self) >= _CACHE_LIMIT:
            self.clear()
        code = self[token] = zlib.crc32(token.encode(), self.seed)
        return code


def _fmix32(codes: np.ndarray) -> np.ndarray:
    """murmur3's finaliser: every input bit affects every output bit, so `& mask` keeps good buckets."""
    h = codes.astype(np.uint32, copy=True)
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> np.uint32(16)
    return h


@dataclass(frozen=True)
class HashedBatch:
    """A mini-batch in CSR form: event e's features are indices[indptr[e]:indptr[e+1]] with their values."""

    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray | None  # None: every value is 1 (binary features, the common case)

    def __len__(self) -> int:
        return len(self.indptr) - 1


class Hashing:
    """Tokens -> bucket indices in [0, 2**bits). Same tokens, same buckets, in any process."""

    def __init__(self, bits: int = 20, seed: int = 0) -> None:
        if not 1 <= bits <= 31:
            raise ValueError("bits must be between 1 and 31")
        self.bits = bits
        self.seed = seed
        self._mask = np.uint32((1 << bits) - 1)
        self._codes = _TokenCodes(seed)

    def buckets(self, tokens: Sequence[str]) -> np.ndarray:
        """The bucket of each string token."""
        codes = self._codes
        return self._bucket(np.fromiter((codes[t] for t in tokens), dtype=np.uint32, count=len(tokens)))

    def transform(self, batch: Sequence[Event] | HashedBatch) -> HashedBatch:
        """Hash a batch of events (lists of tokens); a HashedBatch passes through."""
        if isinstance(batch, HashedBatch):
            return batch
        lengths = np.fromiter(map(len, batch), dtype=np.int64, count=len(batch))
        indptr = np.zeros(len(batch) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        codes = self._codes
        try:  # fast path: every token a string, one dict lookup each
            flat = [codes[t] for event in batch for t in event]
            return HashedBatch(indptr, self._bucket(np.array(flat, dtype=np.uint32)), None)
        except _NotAString:
            pass
        flat, values = [], []
        for event in batch:
            for token in event:
                if type(token) is str:
                    flat.append(codes[token])
                    values.append(1.0)
                    continue
                name, value = token
                if isinstance(value, str):
                    flat.append(codes[f"{name}={value}"])
                    values.append(1.0)
                else:
                    flat.append(codes[name])
                    values.append(float(value))
        return HashedBatch(indptr, self._bucket(np.array(flat, dtype=np.uint32)), np.array(values, dtype=np.float64))

    def _bucket(self, codes: np.ndarray) -> np.ndarray:
        return (_fmix32(codes) & self._mask).astype(np.intp)

    def __getstate__(self) -> dict:
        return {"bits": self.bits, "seed": self.seed}  # the cache rebuilds itself

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["bits"], state["seed"])


def _sigmoid(margin: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(margin, -35.0, 35.0)))


class FTRL:
    """FTRL-Proximal logistic regression over 2**bits hashed features (plus a bias).

    alpha, beta: the per-coordinate learning rate alpha / (beta + sqrt(n_i)); McMahan et al.
    found beta = 1 good enough and alpha worth tuning (0.05-0.5 for click data).
    l1: strength of the sparsity-inducing penalty (weights with |z| <= l1 are exactly 0).
    l2: ridge penalty; shrinks weights without zeroing them.
    """

    def __init__(self, bits: int = 20, alpha: float = 0.1, beta: float = 1.0, l1: float = 1.0, l2: float = 1.0,
                 seed: int = 0) -> None:
        if alpha <= 0 or beta < 0 or l1 < 0 or l2 < 0:
            raise ValueError("alpha must be positive; beta, l1 and l2 non-negative")
        self.alpha, self.beta, self.l1, self.l2 = float(alpha), float(beta), float(l1), float(l2)
        self.hashing = Hashing(bits, seed)
        size = 1 << bits
        self.z = np.zeros(size + 1)  # the last slot is the bias
        self.n = np.zeros(size + 1)
        self.events_seen = 0

    @property
    def bits(self) -> int:
        return self.hashing.bits

    def weights(self) -> np.ndarray:
        """The current weight of every bucket (the bias is `bias_weight`)."""
        return self._weights(self.z[:-1], self.n[:-1], self.l1)

    @property
    def bias_weight(self) -> float:
        return float(self._weights(self.z[-1:], self.n[-1:], 0.0)[0])

    def _weights(self, z: np.ndarray, n: np.ndarray, l1: float) -> np.ndarray:
        shrunk = np.sign(z) * np.maximum(np.abs(z) - l1, 0.0)
        return -shrunk / ((self.beta + np.sqrt(n)) / self.alpha + self.l2)

    def predict_proba(self, batch: Sequence[Event] | HashedBatch, offset: np.ndarray | None = None) -> np.ndarray:
        """P(y = 1) for each event of the batch.

        `offset`: a fixed margin per event added to the model's (e.g. a batch model's logit), so the
        weights learn a correction on top of it — xgboost's base_margin, for FTRL.
        """
        hashed = self.hashing.transform(batch)
        uniq, inv = np.unique(hashed.indices, return_inverse=True)
        w = self._weights(self.z[uniq], self.n[uniq], self.l1)
        return _sigmoid(self._margins(hashed, w[inv]) + (0.0 if offset is None else np.asarray(offset, dtype=np.float64)))

    def update(self, batch: Sequence[Event] | HashedBatch, y: Sequence[float] | np.ndarray,
               offset: np.ndarray | None = None) -> np.ndarray:
        """Learn from one mini-batch of outcomes; returns the predictions made *before* learning from it."""
        hashed = self.hashing.transform(batch)
        y = np.asarray(y, dtype=np.float64)
        if y.shape != (len(hashed),):
            raise ValueError(f"expected {len(hashed)} outcomes, got shape {y.shape}")
        uniq, inv = np.unique(hashed.indices, return_inverse=True)
        z, n = self.z[uniq], self.n[uniq]
        w = self._weights(z, n, self.l1)
        p = _sigmoid(self._margins(hashed, w[inv]) + (0.0 if offset is None else np.asarray(offset, dtype=np.float64)))

        residual = p - y  # d(log loss)/d(margin), per event
        g = np.repeat(residual, np.diff(hashed.indptr))
        if hashed.values is not None:
            g *= hashed.values
        grad = np.bincount(inv, weights=g, minlength=len(uniq))
        grad2 = np.bincount(inv, weights=g * g, minlength=len(uniq))
        sigma = (np.sqrt(n + grad2) - np.sqrt(n)) / self.alpha
        self.z[uniq] = z + grad - sigma * w
        self.n[uniq] = n + grad2

        zb, nb = self.z[-1], self.n[-1]
        wb = self._weights(self.z[-1:], self.n[-1:], 0.0)[0]
        gb, gb2 = residual.sum(), residual @ residual
        self.z[-1] = zb + gb - (np.sqrt(nb + gb2) - np.sqrt(nb)) / self.alpha * wb
        self.n[-1] = nb + gb2
        self.events_seen += len(y)
        return p

    def _margins(self, hashed: HashedBatch, w_per_entry: np.ndarray) -> np.ndarray:
        contrib = w_per_entry if hashed.values is None else w_per_entry * hashed.values
        # Cumulative sums differenced at row boundaries: one pass, empty events allowed.
        cumulative = np.concatenate(([0.0], np.cumsum(contrib)))
        bias = self._weights(self.z[-1:], self.n[-1:], 0.0)[0]
        return cumulative[hashed.indptr[1:]] - cumulative[hashed.indptr[:-1]] + bias

    # -- storage ------------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """A compressed .npz: z, n and the hyper-parameters (untouched buckets compress to almost nothing)."""
        params = {"bits": self.bits, "seed": self.hashing.seed, "alpha": self.alpha, "beta": self.beta,
                  "l1": self.l1, "l2": self.l2, "events_seen": self.events_seen}
        buffer = io.BytesIO()
        np.savez_compressed(buffer, z=self.z, n=self.n, params=np.array(json.dumps(params)))
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> FTRL:
        with np.load(io.BytesIO(data), allow_pickle=False) as stored:
            params = json.loads(str(stored["params"]))
            events_seen = params.pop("events_seen")
            model = cls(**params)
            model.z[:] = stored["z"]
            model.n[:] = stored["n"]
        model.events_seen = events_seen
        return model
