"""Auto-modelling: logged decisions → training rows → candidate models → the best one, with its report.

Pure pandas/numpy/scikit-learn/xgboost (no Django). marketing/tasks.py loads the campaign's
decisions, outcomes, persona snapshots and ads, and calls, in order:

1. `assemble` — one row per logged decision and eligible ad: the customer's persona features
   **as of the decision time** (the latest snapshot taken at or before it, never a later one),
   the ad's features, whether that ad was the one served, and for the served ad whether the
   customer responded (the campaign's goal) within the attribution window. Decisions whose
   window has not closed yet are left out: their outcome is not known.
2. `train` — time-based validation (the latest `validation_share` of decisions by time are held
   out), criteria ranking (ml/criteria.py), the transform (ml/transform.py) fitted on the
   training rows, and the candidates xgboost, logistic regression and GBDT+LR, judged on the
   held-out rows by AUC (then log loss); RMSE and calibration are reported too. The best one
   becomes a `Scorer`, with feature importances and the variable exploration report.
3. `gate` — off-policy estimates (ml/ope.py: IPW, self-normalised IPW, doubly robust) of the
   candidate's policy and of the incumbent's on the held-out logged decisions, and whether the
   candidate beats it: the doubly robust difference must be above zero with 95 % confidence.

The feature function `features` is the one place a (customer, ad) pair becomes model input,
used for training rows and for serving alike, so the two cannot drift apart.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Sequence

import numpy as np
import pandas as pd

from . import criteria, ope
from .transform import FeatureTransform, RowEncoder, bins_report

NUMERIC = ["age", "plays_7d", "plays_30d", "activities_30d", "purchases_90d", "spend_90d", "days_inactive", "ad_affinity"]
CATEGORICAL = ["ad", "segment", "gender", "region", "city_tier", "subscriber", "top_genre", "top_mood", "top_language"]
TEXT = ["ad_tags"]
# The model is one per campaign, over all its ads: crosses with the ad let each ad have its own audience.
CROSSES = [("ad", "segment"), ("ad", "top_genre"), ("ad", "age"), ("ad", "subscriber"), ("ad", "ad_affinity"),
           ("ad", "days_inactive"), ("ad", "region")]
FEATURES = [*NUMERIC, *CATEGORICAL, *TEXT]
# Snapshot columns `features` reads (besides the genres map).
SNAPSHOT_COLUMNS = ["birth_year", "gender", "region", "city_tier", "is_subscriber", "segment", "top_genre", "top_mood",
                    "top_language", "plays_7d", "plays_30d", "activities_30d", "purchases_90d", "spend_90d",
                    "last_active_at", "genres"]
CANDIDATES = ("xgboost", "logistic", "gbdt_lr")


class NotEnoughData(ValueError):
    """Too few logged decisions or responses to train and validate a model; the message says which."""


def _text(value) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return None
    text = str(value).strip()
    return text or None


def _number(value) -> float:
    if value is None or value is pd.NaT:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def features(snapshot: dict | None, ad: dict, at: datetime) -> dict[str, Any]:
    """The model input of one customer (their persona snapshot valid at `at`) and one ad.

    `snapshot` holds SNAPSHOT_COLUMNS (None: nothing known of the customer then); `ad` holds
    `ad_id`, `tags` (comma-separated) and `genres` (a list). Categorical values are text, so
    training frames and serving dicts encode identically.
    """
    s = snapshot or {}
    genres = s.get("genres") or {}
    ad_genres = ad.get("genres") or []
    birth_year = _number(s.get("birth_year"))
    last_active = s.get("last_active_at")
    inactive = math.nan
    if last_active is not None and last_active is not pd.NaT and not (isinstance(last_active, float) and math.isnan(last_active)):
        inactive = max((pd.Timestamp(at) - pd.Timestamp(last_active)).total_seconds() / 86400.0, 0.0)
    subscriber = s.get("is_subscriber")
    tier = _number(s.get("city_tier"))
    return {
        "age": at.year - birth_year if not math.isnan(birth_year) else math.nan,
        "plays_7d": _number(s.get("plays_7d")),
        "plays_30d": _number(s.get("plays_30d")),
        "activities_30d": _number(s.get("activities_30d")),
        "purchases_90d": _number(s.get("purchases_90d")),
        "spend_90d": _number(s.get("spend_90d")),
        "days_inactive": inactive,
        "ad_affinity": float(sum(float(genres.get(g, 0.0)) for g in ad_genres)) if snapshot else math.nan,
        "ad": str(ad["ad_id"]),
        "segment": _text(s.get("segment")),
        "gender": _text(s.get("gender")),
        "region": _text(s.get("region")),
        "city_tier": None if math.isnan(tier) else str(int(tier)),
        "subscriber": None if subscriber is None or not snapshot else ("yes" if subscriber else "no"),
        "top_genre": _text(s.get("top_genre")),
        "top_mood": _text(s.get("top_mood")),
        "top_language": _text(s.get("top_language")),
        "ad_tags": _text(ad.get("tags")),
    }


def assemble(decisions: pd.DataFrame, outcomes: pd.DataFrame, snapshots: pd.DataFrame, ads: pd.DataFrame, *,
             window_seconds: float, now: datetime) -> pd.DataFrame:
    """One row per (logged decision, eligible ad of the model's ads), with features as of the decision.

    decisions: decision_id, customer_id, created_at, eligible (ad ids), chosen (the ad served first,
    or None), propensity, reason. outcomes: decision_id, ad_id, occurred_at (goal events).
    snapshots: customer_id, valid_from and SNAPSHOT_COLUMNS. ads: ad_id, tags, genres — the ads the
    model ranks; other ads of a decision's eligible set are dropped from its rows.
    Columns out: decision_id, customer_id, created_at, ad_id, served (bool), responded (0/1 for
    the served ad, NaN for the others), propensity, n_eligible, reason, then FEATURES.
    """
    columns = ["decision_id", "customer_id", "created_at", "ad_id", "served", "responded", "propensity", "n_eligible",
               "reason", *FEATURES]
    if decisions.empty:
        return pd.DataFrame(columns=columns)
    cutoff = pd.Timestamp(now) - pd.Timedelta(seconds=window_seconds)
    logged = decisions[pd.to_datetime(decisions["created_at"], utc=True) <= cutoff].copy()
    if logged.empty:
        return pd.DataFrame(columns=columns)
    logged["created_at"] = pd.to_datetime(logged["created_at"], utc=True)
    logged = logged.sort_values("created_at", kind="mergesort").reset_index(drop=True)

    # Point in time: the snapshot valid at the decision is the latest one at or before it.
    snaps = snapshots.copy()
    if snaps.empty:
        snaps = pd.DataFrame(columns=["customer_id", "valid_from", *SNAPSHOT_COLUMNS])
    snaps["valid_from"] = pd.to_datetime(snaps["valid_from"], utc=True)
    snaps = snaps.sort_values("valid_from", kind="mergesort")
    snaps["_has"] = True
    logged["customer_id"] = logged["customer_id"].astype(np.int64)
    snaps["customer_id"] = snaps["customer_id"].astype(np.int64)
    joined = pd.merge_asof(logged, snaps, left_on="created_at", right_on="valid_from", by="customer_id",
                           direction="backward", allow_exact_matches=True)

    responded: dict[tuple[str, int], bool] = {}
    if not outcomes.empty:
        found = outcomes.merge(logged[["decision_id", "created_at"]], on="decision_id", how="inner")
        found["occurred_at"] = pd.to_datetime(found["occurred_at"], utc=True)
        inside = (found["occurred_at"] >= found["created_at"]) & (
            found["occurred_at"] <= found["created_at"] + pd.Timedelta(seconds=window_seconds))
        for decision_id, ad_id in found.loc[inside, ["decision_id", "ad_id"]].itertuples(index=False):
            responded[(str(decision_id), int(ad_id))] = True

    by_ad = {int(row["ad_id"]): row for row in ads.to_dict("records")}
    records = []
    for row in joined.to_dict("records"):
        eligible = [int(a) for a in (row["eligible"] or []) if int(a) in by_ad]
        if not eligible:
            continue
        snapshot = {c: row.get(c) for c in SNAPSHOT_COLUMNS} if row.get("_has") is True else None
        chosen = row["chosen"]
        chosen = int(chosen) if chosen is not None and not (isinstance(chosen, float) and math.isnan(chosen)) else None
        at = row["created_at"].to_pydatetime()
        for ad_id in eligible:
            served = ad_id == chosen
            records.append({
                "decision_id": str(row["decision_id"]), "customer_id": int(row["customer_id"]), "created_at": row["created_at"],
                "ad_id": ad_id, "served": served,
                "responded": float(responded.get((str(row["decision_id"]), ad_id), False)) if served else math.nan,
                "propensity": float(row["propensity"]), "n_eligible": len(row["eligible"] or []), "reason": row["reason"],
                **features(snapshot, by_ad[ad_id], at),
            })
    return pd.DataFrame.from_records(records, columns=columns)


# -- the scorer ------------------------------------------------------------------------------------------


def _sigmoid(margin: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(margin, -35.0, 35.0)))


@dataclass
class Scorer:
    """A trained model with its transform: P(response) for feature dicts or frames, fast for a few rows.

    kind: "logistic" (coef, intercept), "xgboost" (a Booster) or "gbdt_lr" (a Booster of leaves,
    the leaf columns, then coef and intercept over [leaves, features]).
    """

    kind: str
    transform: FeatureTransform
    coef: np.ndarray | None = None
    intercept: float = 0.0
    booster: Any = None
    leaf_offsets: np.ndarray | None = None  # gbdt_lr: column of leaf 0 of each tree
    leaf_columns: list[dict[int, int]] | None = None  # gbdt_lr: per tree, leaf id → column
    _encoder: RowEncoder | None = field(default=None, init=False, repr=False)
    _fast: Any = field(default=None, init=False, repr=False)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_encoder"] = None
        state["_fast"] = None
        state.pop("_names_cache", None)
        if self.booster is not None:
            state["booster"] = bytes(self.booster.save_raw("ubj"))
        return state

    def __setstate__(self, state: dict) -> None:
        booster = state.get("booster")
        if isinstance(booster, (bytes, bytearray)):
            import xgboost

            loaded = xgboost.Booster()
            loaded.load_model(bytearray(booster))
            loaded.set_param({"nthread": 1})  # scoring a few rows: threads cost more than they save
            state["booster"] = loaded
        self.__dict__.update(state)

    def _names(self) -> list[str]:
        names = self.__dict__.get("_names_cache")
        if names is None:
            names = self.__dict__["_names_cache"] = self.transform.get_feature_names()
        return names

    @property
    def encoder(self) -> RowEncoder:
        if self._encoder is None:
            self._encoder = RowEncoder(self.transform)
        return self._encoder

    def predict_matrix(self, x) -> np.ndarray:
        from scipy import sparse

        if self.kind == "logistic":
            return _sigmoid(np.asarray(x @ self.coef).ravel() + self.intercept)
        if self.kind == "xgboost":
            return np.asarray(self.booster.inplace_predict(x), dtype=np.float64).ravel()
        if self.kind == "gbdt_lr":
            import xgboost

            leaves = np.asarray(self.booster.predict(xgboost.DMatrix(x), pred_leaf=True), dtype=np.int64).reshape(x.shape[0], -1)
            rows, cols = [], []
            for i in range(leaves.shape[0]):
                for t in range(leaves.shape[1]):
                    col = self.leaf_columns[t].get(int(leaves[i, t]))
                    if col is not None:
                        rows.append(i)
                        cols.append(col)
            width = sum(len(c) for c in self.leaf_columns)
            onehot = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(x.shape[0], width))
            return _sigmoid(np.asarray(sparse.hstack([onehot, x], format="csr") @ self.coef).ravel() + self.intercept)
        raise ValueError(f"unknown scorer kind {self.kind!r}")

    def predict(self, rows: Sequence[dict] | pd.DataFrame) -> np.ndarray:
        """P(response) per row: dicts from `features` (serving), or a frame of FEATURES (training, reports).

        Dicts take the serving path: the encoder's cells, then plain Python over the weights and
        the trees walked as arrays (`_Forest`, compiled once per process), which for the handful
        of ads of a request is several times faster than building a matrix for scikit-learn or
        xgboost. A test checks both paths agree.
        """
        if isinstance(rows, pd.DataFrame):
            return self.predict_matrix(self.transform.transform(rows))
        if not rows:
            return np.empty(0)
        if self._fast is None:
            self._fast = _compile(self)
        weights, forest, base, offset = self._fast
        encoder = self.encoder
        cells = [encoder.cells(row) for row in rows]
        margin = np.full(len(rows), base, dtype=np.float64)
        if forest is not None:
            margin += forest.leaf_sums(cells)
        if weights:  # logistic, or gbdt_lr's weights of the features after its leaf columns
            margin += [sum(weights[offset + i] * v for i, v in row.items()) for row in cells]
        return _sigmoid(margin)


@dataclass(frozen=True)
class _Forest:
    """A booster's trees as flat arrays, walked for all rows and trees at once (a few numpy takes per level).

    Node n of tree t sits at t × size + n: `feature` (at a leaf, the extra always-missing column),
    `split`, and `child` at 3 × that position + 0 (value < split), 1 (otherwise) or 2 (the row does
    not set the column, as in a sparse matrix), as a flat position again; a leaf points to itself, so
    walking `depth` levels leaves every row at its leaf. `leaf` is what a leaf adds to the margin:
    its value (xgboost) or the weight of its one-hot column (gbdt_lr).
    """

    feature: np.ndarray
    split: np.ndarray
    child: np.ndarray
    leaf: np.ndarray
    roots: np.ndarray
    depth: int
    width: int

    def leaf_sums(self, cells: Sequence[dict[int, float]]) -> np.ndarray:
        stride = self.width + 1  # the extra column: what a leaf's feature reads
        x = np.full(len(cells) * stride, np.nan)
        for r, row in enumerate(cells):
            x[[r * stride + i for i in row]] = list(row.values())
        node = np.tile(self.roots, (len(cells), 1))
        offset = (np.arange(len(cells)) * stride)[:, None]
        for _ in range(self.depth):
            value = x.take(offset + self.feature.take(node))
            branch = (value >= self.split.take(node)).view(np.int8) + np.isnan(value).view(np.int8) * 2
            node = self.child.take(node * 3 + branch)
        return self.leaf.take(node).sum(axis=1)


def _compile(scorer: Scorer) -> tuple:
    """(weights as a list, the trees as a _Forest or None, base margin, offset of the feature weights) for `predict` on dicts."""
    weights = scorer.coef.tolist() if scorer.coef is not None else []
    if scorer.booster is None:
        return weights, None, scorer.intercept, 0
    import json

    frame = scorer.booster.trees_to_dataframe()
    trees = []
    for _, tree in frame.groupby("Tree", sort=True):
        nodes = {}
        for row in tree.itertuples(index=False):
            if row.Feature == "Leaf":
                nodes[int(row.Node)] = (None, float(row.Gain), int(row.Node))
            else:
                child = {k: int(str(v).split("-")[1]) for k, v in (("yes", row.Yes), ("no", row.No), ("missing", row.Missing))}
                nodes[int(row.Node)] = (int(str(row.Feature)[1:]), float(row.Split), child["yes"], child["no"], child["missing"])
        trees.append(nodes)
    width = scorer.encoder.width
    size = max(max(nodes) for nodes in trees) + 1
    feature, split, leaf = np.full(len(trees) * size, width, dtype=np.intp), np.zeros(len(trees) * size), np.zeros(len(trees) * size)
    child = np.repeat(np.arange(len(trees) * size), 3)  # unused slots and leaves point to themselves
    for t, nodes in enumerate(trees):
        at = t * size
        for n, node in nodes.items():
            if node[0] is None:
                leaf[at + n] = node[1] if scorer.kind != "gbdt_lr" else weights[scorer.leaf_columns[t][node[2]]]
            else:
                feature[at + n], split[at + n] = node[0], node[1]
                child[3 * (at + n):3 * (at + n) + 3] = at + node[2], at + node[3], at + node[4]
    depth = max(_depth(nodes, 0) for nodes in trees)
    forest = _Forest(feature, split, child, leaf, np.arange(len(trees)) * size, depth, width)
    if scorer.kind == "gbdt_lr":
        return weights, forest, scorer.intercept, len(weights) - width
    raw = str(json.loads(scorer.booster.save_config())["learner"]["learner_model_param"]["base_score"])
    base_score = float(raw.strip("[]").split(",")[0])  # "0.16" in xgboost 2, "[1.6E-1]" (a vector) in 3
    return [], forest, math.log(base_score / (1.0 - base_score)), 0


def _depth(nodes: dict, n: int) -> int:
    node = nodes[n]
    return 0 if node[0] is None else 1 + max(_depth(nodes, child) for child in node[2:5])


# -- online updates between retrains --------------------------------------------------------------------


@dataclass
class Online:
    """FTRL-Proximal on hashed features, learning a correction on top of a batch model between its retrains.

    Each row's tokens are the names of the batch model's non-zero columns (its bins, categories,
    crosses and tags: "ad × segment = 3 × loyal", ("ad_tags: k-pop", 0.7)), and the batch model's
    logit is a fixed offset: a fresh Online predicts exactly what the batch model does, and the
    weights move only as the event stream shows where it is off (a new trend, a drifting segment).
    `base` is the batch version it corrects; a new champion starts a new Online.
    """

    base: int
    ftrl: Any = None
    until: str = ""  # the latest decision time learnt from (ISO), the cursor of the next update

    def __post_init__(self) -> None:
        if self.ftrl is None:
            from .ftrl import FTRL

            # A slow rate and a light L1: the many tokens every row of an ad shares move together, and a fast
            # rate overshoots along them (bench and test: alpha 0.05 put a 0.30 group at 0.41).
            self.ftrl = FTRL(bits=18, alpha=0.01, beta=1.0, l1=0.1, l2=1.0)

    @staticmethod
    def tokens(scorer: Scorer, rows: Sequence[dict]) -> list[list]:
        names = scorer._names()
        encoder = scorer.encoder
        return [[names[i] if v == 1.0 else (names[i], v) for i, v in encoder.cells(row).items()] for row in rows]

    def predict(self, scorer: Scorer, rows: Sequence[dict], base: np.ndarray | None = None) -> np.ndarray:
        p = scorer.predict(rows) if base is None else base
        return self.ftrl.predict_proba(self.tokens(scorer, rows), offset=_logit(p))

    # Mini-batches of FTRL sum the gradients of a batch computed with the same weights: with few distinct
    # rows (a campaign's handful of ads and segments) big batches overshoot, small ones track the stream.
    BATCH = 20

    def update(self, scorer: Scorer, rows: Sequence[dict], y: np.ndarray) -> np.ndarray:
        """Learn from rows with outcomes, in order; returns the predictions made before learning from each."""
        tokens, y = self.tokens(scorer, rows), np.asarray(y, dtype=np.float64)
        offset = _logit(scorer.predict(rows))
        out = [self.ftrl.update(tokens[at:at + self.BATCH], y[at:at + self.BATCH], offset=offset[at:at + self.BATCH])
               for at in range(0, len(tokens), self.BATCH)]
        return np.concatenate(out) if out else np.empty(0)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


# -- training --------------------------------------------------------------------------------------------


@dataclass
class Trained:
    """The best candidate and everything the registry and the report page show about it."""

    scorer: Scorer
    kind: str
    metrics: dict
    candidates: dict[str, dict]
    importances: list[dict]
    report: dict
    train_rows: int
    validation_rows: int
    validation: pd.DataFrame  # the held-out rows (all eligible ads), for the gate
    seconds: float


def split_by_time(served: pd.DataFrame, validation_share: float) -> tuple[pd.DataFrame, pd.DataFrame, pd.Timestamp]:
    """Earlier decisions train, the latest `validation_share` of them validate (no decision on both sides)."""
    ordered = served.sort_values(["created_at", "decision_id"], kind="mergesort")
    cut = int(round(len(ordered) * (1.0 - validation_share)))
    cut = min(max(cut, 1), len(ordered) - 1)
    boundary = ordered["created_at"].iloc[cut]
    return ordered[ordered["created_at"] < boundary], ordered[ordered["created_at"] >= boundary], boundary


def calibration(y: np.ndarray, p: np.ndarray, bins: int = 10) -> dict:
    """Reliability by quantile bins of the prediction, and the expected calibration error."""
    order = np.argsort(p, kind="mergesort")
    groups = [g for g in np.array_split(order, min(bins, len(order))) if len(g)]
    points = [{"predicted": float(p[g].mean()), "observed": float(y[g].mean()), "count": int(len(g))} for g in groups]
    ece = float(sum(abs(pt["predicted"] - pt["observed"]) * pt["count"] for pt in points) / max(len(y), 1))
    return {"points": points, "ece": ece}


def _metrics(y: np.ndarray, p: np.ndarray) -> dict:
    from sklearn.metrics import log_loss, roc_auc_score

    p = np.clip(p, 1e-6, 1 - 1e-6)
    return {
        "auc": float(roc_auc_score(y, p)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "rmse": float(np.sqrt(np.mean((p - y) ** 2))),
        "calibration_error": calibration(y, p)["ece"],
        "base_rate": float(y.mean()),
        "mean_prediction": float(p.mean()),
    }


def _roc(y: np.ndarray, p: np.ndarray, points: int = 60) -> list[dict]:
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(y, p)
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(points, len(fpr))).round().astype(int))
    return [{"fpr": float(fpr[i]), "tpr": float(tpr[i])} for i in keep]


def _fit(kind: str, x_train, y_train, seed: int, transform: FeatureTransform) -> Scorer:
    from scipy import sparse

    if kind == "logistic":
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(max_iter=2000, C=0.5).fit(x_train, y_train)
        return Scorer("logistic", transform, coef=model.coef_.ravel().astype(np.float64), intercept=float(model.intercept_[0]))
    import xgboost

    if kind == "xgboost":
        model = xgboost.XGBClassifier(n_estimators=200, max_depth=4, learning_rate=0.05, subsample=0.8,
                                      colsample_bytree=0.8, min_child_weight=2, n_jobs=2, eval_metric="logloss",
                                      random_state=seed)
        model.fit(x_train, y_train)
        return Scorer("xgboost", transform, booster=model.get_booster())
    if kind == "gbdt_lr":
        from sklearn.linear_model import LogisticRegression

        # He et al. (2014): the forest learns on one half, the regression on the other half's leaves (honest leaves).
        half = max(x_train.shape[0] // 2, 1)
        forest = xgboost.XGBClassifier(n_estimators=40, max_depth=3, learning_rate=0.1, n_jobs=2, eval_metric="logloss",
                                       random_state=seed)
        forest.fit(x_train[:half], y_train[:half])
        booster = forest.get_booster()
        leaves = np.asarray(booster.predict(xgboost.DMatrix(x_train), pred_leaf=True), dtype=np.int64).reshape(x_train.shape[0], -1)
        columns, offset = [], 0
        for t in range(leaves.shape[1]):
            ids = sorted({int(v) for v in leaves[:, t]})
            columns.append({leaf: offset + i for i, leaf in enumerate(ids)})
            offset += len(ids)
        scorer = Scorer("gbdt_lr", transform, booster=booster, leaf_columns=columns)
        rows = np.repeat(np.arange(x_train.shape[0]), leaves.shape[1])
        cols = [columns[t][int(leaves[i, t])] for i in range(leaves.shape[0]) for t in range(leaves.shape[1])]
        onehot = sparse.csr_matrix((np.ones(len(cols)), (rows, cols)), shape=(x_train.shape[0], offset))
        stacked = sparse.hstack([onehot, x_train], format="csr")
        model = LogisticRegression(max_iter=2000, C=0.5).fit(stacked[half:], y_train[half:])
        scorer.coef = model.coef_.ravel().astype(np.float64)
        scorer.intercept = float(model.intercept_[0])
        return scorer
    raise ValueError(f"unknown candidate {kind!r}; known: {', '.join(CANDIDATES)}")


def _source(name: str, columns: Sequence[str]) -> str:
    """The input feature a transformed column comes from ("ad × segment = 3 × loyal" → "ad × segment")."""
    for column in sorted(columns, key=len, reverse=True):
        if name.startswith(f"{column} = ") or name.startswith(f"{column} in ") or name.startswith(f"{column}: "):
            return column
    return name


def importances(scorer: Scorer, x, names: list[str]) -> list[dict]:
    """Per input feature (crosses count as features), its share of the model's reliance, most important first.

    Linear parts: |coefficient| × the column's standard deviation on the training rows, so a
    rare column with a big weight does not outrank a common one. Trees: total gain per column.
    """
    inputs = [*FEATURES, *(f"{a} × {b}" for a, b in CROSSES)]
    raw = np.zeros(len(names))
    if scorer.coef is not None:
        coef = scorer.coef[-len(names):]
        mean = np.asarray(x.mean(axis=0)).ravel()
        sq = np.asarray(x.multiply(x).mean(axis=0)).ravel()
        raw += np.abs(coef) * np.sqrt(np.maximum(sq - mean ** 2, 0.0))
    if scorer.booster is not None:
        gains = scorer.booster.get_score(importance_type="total_gain")
        tree = np.zeros(len(names))
        for key, gain in gains.items():
            index = int(key[1:]) if key.startswith("f") and key[1:].isdigit() else None
            if index is not None and index < len(names):
                tree[index] += gain
        if tree.sum() > 0:
            raw = raw / raw.sum() + tree / tree.sum() if raw.sum() > 0 else tree
    totals: dict[str, float] = {}
    for name, value in zip(names, raw):
        source = _source(name, inputs)
        totals[source] = totals.get(source, 0.0) + float(value)
    total = sum(totals.values()) or 1.0
    ranked = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))
    return [{"name": k, "importance": v / total} for k, v in ranked if v > 0]


def _levels_report(frame: pd.DataFrame, y: np.ndarray, columns: Sequence[str], top: int = 12) -> list[dict]:
    """Per categorical feature, its most frequent levels with their share and response rate."""
    out = []
    n = len(frame)
    for column in columns:
        labels = frame[column].fillna("(missing)").astype(str)
        table = pd.DataFrame({"label": labels, "y": y}).groupby("label")["y"].agg(["count", "sum"])
        table = table.sort_values("count", ascending=False).head(top)
        out.append({"feature": column, "levels": [
            {"label": label, "count": int(r["count"]), "share": float(r["count"] / n), "response_rate": float(r["sum"] / r["count"])}
            for label, r in table.iterrows()]})
    return out


def fit_candidates(transform: FeatureTransform, x_train, y_train: np.ndarray, x_valid, y_valid: np.ndarray, *,
                   candidates: Sequence[str] = CANDIDATES, seed: int = 42, progress=None,
                   ) -> tuple[str, dict[str, dict], dict[str, Scorer]]:
    """Fit each candidate on the training matrix, judge it on the validation one; the best by AUC (then log loss).

    Returns (best kind, metrics per kind, scorer per kind). `train` calls it on the time split
    of a campaign's decisions; bench/hillstrom_response.py on a stratified split of a real data set.
    """
    report = progress or (lambda fraction, message: None)
    results: dict[str, dict] = {}
    scorers: dict[str, Scorer] = {}
    for n, kind in enumerate(candidates):
        report(n / len(candidates), f"Training {kind}")
        began = time.perf_counter()
        scorer = _fit(kind, x_train, np.asarray(y_train).astype(int), seed, transform)
        p = scorer.predict_matrix(x_valid)
        results[kind] = {**_metrics(np.asarray(y_valid, dtype=np.float64), p), "train_seconds": round(time.perf_counter() - began, 2)}
        scorers[kind] = scorer
    best = max(results, key=lambda k: (round(results[k]["auc"], 4), -results[k]["log_loss"]))
    return best, results, scorers


def train(rows: pd.DataFrame, *, candidates: Sequence[str] = CANDIDATES, validation_share: float = 0.2,
          min_rows: int = 200, min_responses: int = 10, seed: int = 42, progress=None) -> Trained:
    """Train every candidate on the earlier served rows, judge them on the later ones, keep the best."""
    started = time.perf_counter()
    report_progress = progress or (lambda fraction, message: None)
    served = rows[rows["served"].astype(bool)].copy()
    if len(served) < min_rows:
        raise NotEnoughData(f"{len(served)} served decisions with a known outcome; at least {min_rows} are needed.")
    train_rows, valid_rows, boundary = split_by_time(served, validation_share)
    y_train = train_rows["responded"].to_numpy(dtype=np.float64)
    y_valid = valid_rows["responded"].to_numpy(dtype=np.float64)
    for label, y in (("training", y_train), ("validation", y_valid)):
        if y.sum() < min_responses / (4 if label == "validation" else 1) or (len(y) - y.sum()) < 1:
            raise NotEnoughData(f"The {label} period has {int(y.sum())} responses in {len(y)} decisions; "
                                f"a model needs both responses and non-responses (at least {min_responses} responses).")
    report_progress(0.1, "Ranking features")
    ranking = criteria.rank(train_rows[FEATURES], y_train)
    transform = FeatureTransform(numeric=NUMERIC, categorical=CATEGORICAL, crosses=CROSSES, text=TEXT)
    x_train = transform.fit_transform(train_rows[FEATURES])
    x_valid = transform.transform(valid_rows[FEATURES])
    names = transform.get_feature_names()
    best, results, scorers = fit_candidates(transform, x_train, y_train, x_valid, y_valid, candidates=candidates, seed=seed,
                                            progress=lambda f, m: report_progress(0.2 + 0.6 * f, m))
    scorer = scorers[best]
    p_valid = scorer.predict_matrix(x_valid)
    report_progress(0.85, "Writing the variable exploration report")
    bins = bins_report(train_rows[NUMERIC], y_train, transform=transform)
    report = {
        "criteria": ranking.replace({np.nan: None}).to_dict("records"),
        "bins": [{"feature": f, "bins": g.drop(columns=["feature"]).replace({np.nan: None}).to_dict("records")}
                 for f, g in bins.groupby("feature", sort=False)],
        "levels": _levels_report(train_rows, y_train, [c for c in CATEGORICAL]),
        "roc": _roc(y_valid, p_valid),
        "calibration": calibration(y_valid, p_valid)["points"],
        "boundary": boundary.isoformat(),
    }
    metrics = {**results[best], "candidate": best}
    validation = rows[rows["decision_id"].isin(set(valid_rows["decision_id"]))].copy()
    return Trained(scorer, best, metrics, results, importances(scorer, x_train, names), report,
                   len(train_rows), len(valid_rows), validation, time.perf_counter() - started)


# -- the off-policy gate ---------------------------------------------------------------------------------


@dataclass
class GateResult:
    estimates: dict[str, dict]  # "candidate" / "incumbent" → method → {value, low, high, …}
    difference: dict  # doubly robust candidate − incumbent, with its interval
    passed: bool
    decisions: int
    reason: str


def _greedy(frame: pd.DataFrame, score: str, epsilon: float) -> np.ndarray:
    """π(a | x) per row: ε uniform over the decision's rows plus 1 − ε on its best-scored ad (lowest ad id on ties)."""
    n = frame.groupby("decision_id")["ad_id"].transform("size").to_numpy(dtype=np.float64)
    ordered = frame.sort_values(["decision_id", score, "ad_id"], ascending=[True, False, True], kind="mergesort")
    best = ordered.groupby("decision_id").head(1).index
    top = np.zeros(len(frame))
    top[frame.index.get_indexer(best)] = 1.0
    return epsilon / n + (1.0 - epsilon) * top


def gate(rows: pd.DataFrame, candidate: np.ndarray, incumbent: np.ndarray | None, *, epsilon: float = 0.0,
         level: float = 0.95) -> GateResult:
    """Does the candidate's policy beat the incumbent's on these logged decisions?

    rows: assembled rows (every eligible ad of each decision) of decisions the logging policy
    randomised (propensity < 1). candidate / incumbent: their predicted response per row; an
    incumbent of None is uniform random (what serves before any model). Both policies are
    evaluated as served: greedy on their scores with an ε share uniform. The doubly robust
    estimate uses the candidate's predictions as its reward model (they were not trained on
    these rows: the gate runs on the held-out period). Passed: the lower end of the
    one-sided `level` interval of the doubly robust difference is above zero.
    """
    frame = rows.reset_index(drop=True).copy()
    frame["_candidate"] = np.asarray(candidate, dtype=np.float64)
    if incumbent is not None:
        frame["_incumbent"] = np.asarray(incumbent, dtype=np.float64)
    # Only decisions where the served ad is one of the model's ads and the logging policy had a choice.
    has_served = frame.groupby("decision_id")["served"].transform("any")
    frame = frame[has_served & (frame["propensity"] < 1.0) & (frame["propensity"] > 0.0)].reset_index(drop=True)
    decisions = frame["decision_id"].nunique()
    if decisions < 30:
        empty = {"value": None}
        return GateResult({"candidate": {"dr": empty}, "incumbent": {"dr": empty}}, {}, False, decisions,
                          f"Only {decisions} randomised decisions in the validation period; the gate needs 30.")
    pi_c = _greedy(frame, "_candidate", epsilon)
    if incumbent is None:
        pi_i = 1.0 / frame.groupby("decision_id")["ad_id"].transform("size").to_numpy(dtype=np.float64)
    else:
        pi_i = _greedy(frame, "_incumbent", epsilon)
    # Per decision: the served row carries reward and propensity; DR sums π·q̂ over the decision's rows.
    frame["_pc"], frame["_pi"] = pi_c, pi_i
    served = frame[frame["served"].astype(bool)]
    r = served["responded"].to_numpy(dtype=np.float64)
    mu = served["propensity"].to_numpy(dtype=np.float64)
    direct_c = (frame["_pc"] * frame["_candidate"]).groupby(frame["decision_id"]).sum()
    direct_i = (frame["_pi"] * frame["_candidate"]).groupby(frame["decision_id"]).sum()
    ids = served["decision_id"]
    q_served = served["_candidate"].to_numpy(dtype=np.float64)
    estimates = {}
    terms = {}
    for name, pi_served, direct in (("candidate", served["_pc"].to_numpy(), direct_c), ("incumbent", served["_pi"].to_numpy(), direct_i)):
        d = direct.reindex(ids).to_numpy(dtype=np.float64)
        w = pi_served / mu
        terms[name] = d + w * (r - q_served)
        # ml.ope takes per-row target probabilities; DR gets a one-column matrix whose "direct" part is precomputed.
        estimates[name] = {
            "ipw": _asdict(ope.ipw(r, mu, pi_served, level=level)),
            "snipw": _asdict(ope.snipw(r, mu, pi_served, level=level)) if pi_served.sum() > 0 else {"value": None},
            "dr": _asdict(_mean_interval("dr", terms[name], w, level)),
        }
    diff = _mean_interval("dr_difference", terms["candidate"] - terms["incumbent"], np.ones(len(r)), 2 * level - 1)
    passed = diff.low > 0
    reason = (f"The candidate's doubly robust value beats the incumbent's by {diff.value:.4f} "
              f"(lower bound {diff.low:.4f} > 0)." if passed else
              f"Not shown better: the doubly robust difference is {diff.value:.4f} with lower bound {diff.low:.4f} ≤ 0.")
    return GateResult(estimates, _asdict(diff), bool(passed), int(decisions), reason)


def _mean_interval(method: str, terms: np.ndarray, w: np.ndarray, level: float) -> ope.Estimate:
    from statistics import NormalDist

    n = len(terms)
    value = float(terms.mean())
    stderr = float(terms.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    ess = float(w.sum() ** 2 / (w ** 2).sum()) if (w ** 2).sum() > 0 else 0.0
    return ope.Estimate(method, value, value - z * stderr, value + z * stderr, n, ess, stderr)


def _asdict(estimate: ope.Estimate) -> dict:
    return {"value": estimate.value, "low": estimate.low, "high": estimate.high, "n": estimate.n,
            "effective_sample_size": estimate.effective_sample_size, "stderr": estimate.stderr}
