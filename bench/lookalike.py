"""Lookalike bench on real listening data: can `ml.lookalike` find the fans of an artist from the rest of their taste?

    .venv/bin/python bench/lookalike.py [--data DIR] [--artist NAME ...]

Data: HetRec 2011 Last.fm 2K (1,892 users, their 50 most played artists with play counts,
tags and friends), read from ../shared/data/hetrec2011-lastfm-2k (non-commercial licence:
read in place, never copied into the repository). Pure: no Django, no database.

Personas. Per user, the way `ml.personas` would see them: an artists map (play shares, top
10 kept), a genres map and a moods map (each artist's plays split evenly over its 3 most
used genre tags / 2 most used mood tags, shares, top 10 kept), the top artist and top genre,
total plays, number of artists, friends and tags applied.

Seed, for each artist X: "fans of X" = users with X among their played artists — a
realistic marketing case (a new release or a concert of X: find more people like X's
listeners). X must not leak into the features, so before the personas are built X's plays
(and the tags users put on X) are removed from every user. The data keeps each user's 50
most played artists, so a fan would then show 49 artists and a non-fan 50; to keep the count
from giving fans away, every user keeps at most 49 artists after X is removed.

Evaluation. A random 30 % of all users (fans and others, numpy seed 42) is held out before
training; `train` sees the other 70 % with their fan flags, `score` ranks the held-out users,
and lookalike_auc is the AUC of fan vs non-fan on that holdout (mean over the artists; per
artist too). recall/lift at p % use size_curve's definitions on the holdout: the share of
held-out fans scoring at least the top p % of held-out non-fans, and that share / (p/100).
For context: lookalike_oof_auc (the module's own out-of-fold estimate, what the operator
sees), curve_recall_* (size_curve's prediction of the same recall from the training
side), a logistic regression on the same features and ranking by total plays.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared/data/hetrec2011-lastfm-2k"
DEFAULT_ARTISTS = ("Rihanna", "Coldplay", "Muse", "Paramore", "Depeche Mode")
HOLDOUT = 0.3
HOLDOUT_SEED = 42
TOP_N = 10  # preferences kept per user, as PersonaSettings.top_n
MAX_ARTISTS = 49  # see the docstring: the data keeps 50 per user, one may be X
MOOD_TAGS = frozenset({
    "chillout", "chill", "mellow", "sad", "sexy", "beautiful", "epic", "catchy", "melancholy", "melancholic",
    "happy", "romantic", "energetic", "dark", "relax", "relaxing", "calm", "upbeat", "party", "atmospheric",
    "dreamy", "aggressive", "fun", "emotional", "chill out",
})
# Tags that say nothing about genre or mood: opinions, voices, countries.
NOT_GENRE_TAGS = frozenset({
    "seen live", "favorites", "favorite", "favourite", "favourites", "love", "awesome", "amazing", "cool", "<3",
    "love at first listen", "female vocalists", "male vocalists", "female vocalist", "male vocalist", "female",
    "male", "british", "american", "uk", "usa", "canadian", "german", "french", "japanese", "brazilian", "brasil",
    "swedish", "finnish", "polish", "spanish", "russian", "english", "australian", "irish", "cover", "covers",
    "best", "good", "great", "my favorite", "favorite artists", "all", "under 2000 listeners",
})
MIN_TAG_USES = 20


def load(data: Path) -> dict[str, pd.DataFrame]:
    read = dict(sep="\t")
    return {
        "plays": pd.read_csv(data / "user_artists.dat", **read),
        "artists": pd.read_csv(data / "artists.dat", quoting=3, **read),
        "tags": pd.read_csv(data / "tags.dat", encoding="latin-1", **read),
        "tagged": pd.read_csv(data / "user_taggedartists.dat", **read),
        "friends": pd.read_csv(data / "user_friends.dat", **read),
    }


def artist_labels(tables: dict[str, pd.DataFrame]) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
    """artist id -> its 3 most used genre tags and 2 most used mood tags (catalogue metadata)."""
    tagged = tables["tagged"].merge(tables["tags"], on="tagID")
    tagged["tag"] = tagged["tagValue"].str.strip().str.lower()
    uses = tagged["tag"].value_counts()
    tagged = tagged[tagged["tag"].map(uses) >= MIN_TAG_USES]
    counts = tagged.groupby(["artistID", "tag"]).size().rename("n").reset_index()
    counts = counts.sort_values(["artistID", "n", "tag"], ascending=[True, False, True])
    is_mood = counts["tag"].isin(MOOD_TAGS)
    is_genre = ~is_mood & ~counts["tag"].isin(NOT_GENRE_TAGS)
    genres = counts[is_genre].groupby("artistID")["tag"].apply(lambda s: s.head(3).tolist()).to_dict()
    moods = counts[is_mood].groupby("artistID")["tag"].apply(lambda s: s.head(2).tolist()).to_dict()
    return genres, moods


def personas(tables: dict[str, pd.DataFrame], labels, without_artist: int) -> pd.DataFrame:
    """One persona-like row per user, built as if `without_artist` did not exist."""
    genres_of, moods_of = labels
    names = tables["artists"].set_index("id")["name"]
    plays = tables["plays"][tables["plays"]["artistID"] != without_artist]
    plays = plays.sort_values(["userID", "weight", "artistID"], ascending=[True, False, True])
    plays = plays[plays.groupby("userID").cumcount() < MAX_ARTISTS]
    users = np.sort(tables["plays"]["userID"].unique())
    tagged = tables["tagged"][tables["tagged"]["artistID"] != without_artist]
    friends = tables["friends"].groupby("userID").size()

    def shares(frame: pd.DataFrame, key: str, weight: str) -> pd.Series:
        totals = frame.groupby(["userID", key])[weight].sum().rename("w").reset_index()
        totals["share"] = totals["w"] / totals.groupby("userID")["w"].transform("sum")
        totals = totals.sort_values(["userID", "share", key], ascending=[True, False, True])
        totals = totals[totals.groupby("userID").cumcount() < TOP_N]
        return totals.groupby("userID").apply(
            lambda g: dict(zip(g[key], g["share"].round(4))), include_groups=False
        )

    by_artist = plays.assign(artist=plays["artistID"].map(names).fillna("unknown"))
    frame = pd.DataFrame(index=pd.Index(users, name="userID"))
    frame["artists"] = shares(by_artist, "artist", "weight")
    for column, table in (("genres", genres_of), ("moods", moods_of)):
        exploded = plays.assign(label=plays["artistID"].map(table)).dropna(subset=["label"]).explode("label")
        # An artist's plays are split evenly over its labels, as personas split an item's weight.
        exploded["w"] = exploded["weight"] / exploded.groupby(["userID", "artistID"])["label"].transform("size")
        frame[column] = shares(exploded, "label", "w")
    for column in ("artists", "genres", "moods"):
        frame[column] = [cell if isinstance(cell, dict) else {} for cell in frame[column]]
    frame["top_artist"] = [max(cell, key=cell.get) if cell else "" for cell in frame["artists"]]
    frame["top_genre"] = [max(cell, key=cell.get) if cell else "" for cell in frame["genres"]]
    frame["total_plays"] = plays.groupby("userID")["weight"].sum().reindex(users).fillna(0).to_numpy(dtype=np.int64)
    frame["n_artists"] = plays.groupby("userID").size().reindex(users).fillna(0).to_numpy(dtype=np.int64)
    frame["friends"] = friends.reindex(users).fillna(0).to_numpy(dtype=np.int64)
    frame["tags_applied"] = tagged.groupby("userID").size().reindex(users).fillna(0).to_numpy(dtype=np.int64)
    return frame.reset_index().rename(columns={"userID": "customer_id"})


def holdout_recall(fan_scores: np.ndarray, other_scores: np.ndarray, pct: float) -> float:
    """Share of held-out fans scoring at least the top pct % of held-out non-fans (size_curve's rule)."""
    ranked = np.sort(other_scores)[::-1]
    threshold = ranked[max(1, int(round(pct / 100 * len(ranked)))) - 1]
    return float(np.mean(fan_scores >= threshold))


def evaluate(tables, labels, artist_id: int, holdout: np.ndarray) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import MaxAbsScaler

    from ml.lookalike import score, size_curve, train

    fans = set(tables["plays"].loc[tables["plays"]["artistID"] == artist_id, "userID"])
    frame = personas(tables, labels, without_artist=artist_id)
    name = tables["artists"].set_index("id").loc[artist_id, "name"]
    if any(name in cell for cell in frame["artists"]) or (frame["top_artist"] == name).any():
        sys.exit(f"error: {name} leaked into the personas its fans are to be found from")
    is_fan = frame["customer_id"].isin(fans).to_numpy()
    train_frame, test_frame = frame[~holdout], frame[holdout]
    train_fan, test_fan = is_fan[~holdout], is_fan[holdout]

    started = time.perf_counter()
    model, sampled, sampled_scores = train(train_frame, train_fan, random_state=0)
    train_s = time.perf_counter() - started
    nonseed = np.flatnonzero(~train_fan)
    rest = np.setdiff1d(nonseed, sampled)
    nonseed_scores = np.r_[sampled_scores, score(model, train_frame.iloc[rest])] if len(rest) else sampled_scores
    curve = {row["pct"]: row for row in size_curve(model, nonseed_scores, pcts=(5, 10))}

    started = time.perf_counter()
    test_scores = score(model, test_frame)
    score_s = time.perf_counter() - started

    # Baselines: a linear model on the very same features, and "heavy listeners first".
    encoder = model.encoder
    scaler = MaxAbsScaler().fit(encoder.transform(train_frame))
    logistic = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000)
    logistic.fit(scaler.transform(encoder.transform(train_frame)), train_fan)
    logistic_scores = logistic.predict_proba(scaler.transform(encoder.transform(test_frame)))[:, 1]

    fan_scores, other_scores = test_scores[test_fan], test_scores[~test_fan]
    result = {
        "seed_train": int(train_fan.sum()),
        "seed_holdout": int(test_fan.sum()),
        "auc": roc_auc_score(test_fan, test_scores),
        "oof_auc": model.holdout_auc,
        "baseline_logreg_auc": roc_auc_score(test_fan, logistic_scores),
        "baseline_total_plays_auc": roc_auc_score(test_fan, test_frame["total_plays"]),
        "train_s": train_s,
        "score_s": score_s,
        "top_features": ", ".join(f"{f['feature']} {f['importance']:.2f}" for f in model.top_features[:5]),
    }
    for pct in (5, 10):
        recall = holdout_recall(fan_scores, other_scores, pct)
        result[f"recall_at_{pct}pct"] = recall
        result[f"lift_at_{pct}pct"] = recall / (pct / 100)
        result[f"curve_recall_at_{pct}pct"] = curve[pct]["recall"]
    return result


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the hetrec2011-lastfm-2k folder")
    parser.add_argument("--artist", action="append", help=f"seed artist (repeatable; default: {', '.join(DEFAULT_ARTISTS)})")
    args = parser.parse_args()
    # Before scikit-learn or xgboost loads OpenMP (see ml/lookalike.py, "Threads").
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    sys.path.insert(0, str(ROOT))
    if not (args.data / "user_artists.dat").exists():
        sys.exit(f"error: {args.data} does not hold the HetRec 2011 Last.fm 2K files")

    started = time.perf_counter()
    tables = load(args.data)
    labels = artist_labels(tables)
    ids = tables["artists"].set_index("name")["id"]
    artists = args.artist or list(DEFAULT_ARTISTS)
    unknown = [a for a in artists if a not in ids.index]
    if unknown:
        sys.exit(f"error: no such artist in the data: {', '.join(unknown)}")
    users = np.sort(tables["plays"]["userID"].unique())
    rng = np.random.default_rng(HOLDOUT_SEED)
    holdout = np.zeros(len(users), dtype=bool)
    holdout[rng.choice(len(users), size=int(round(HOLDOUT * len(users))), replace=False)] = True

    results = {name: evaluate(tables, labels, int(ids[name]), holdout) for name in artists}
    print(f"dataset: hetrec2011-lastfm-2k ({len(users)} Last.fm users, {tables['plays']['artistID'].nunique()} artists; "
          f"{args.data})")
    print("seed: fans of an artist (users who played it), its plays and tags removed from every user before the "
          f"personas; artists: {', '.join(artists)}")
    print(f"holdout: {HOLDOUT:.0%} of all users, numpy seed {HOLDOUT_SEED} ({holdout.sum()} users)")
    for name, result in results.items():
        key = slug(name)
        print(f"seed_size_{key}: {result['seed_train'] + result['seed_holdout']} "
              f"({result['seed_train']} train, {result['seed_holdout']} holdout)")
        for figure in ("auc", "oof_auc", "baseline_logreg_auc", "baseline_total_plays_auc", "recall_at_5pct", "lift_at_5pct",
                       "recall_at_10pct", "lift_at_10pct", "curve_recall_at_10pct"):
            print(f"lookalike_{figure}_{key}: {result[figure]:.3f}")
        print(f"top_features_{key}: {result['top_features']}")
    mean = {figure: float(np.mean([r[figure] for r in results.values()])) for figure in next(iter(results.values()))
            if figure != "top_features"}
    print(f"lookalike_auc: {mean['auc']:.3f}")
    print(f"lookalike_oof_auc: {mean['oof_auc']:.3f}")
    print(f"baseline_logreg_auc: {mean['baseline_logreg_auc']:.3f}")
    print(f"baseline_total_plays_auc: {mean['baseline_total_plays_auc']:.3f}")
    for pct in (5, 10):
        print(f"recall_at_{pct}pct: {mean[f'recall_at_{pct}pct']:.3f}")
        print(f"lift_at_{pct}pct: {mean[f'lift_at_{pct}pct']:.2f}")
        print(f"curve_recall_at_{pct}pct: {mean[f'curve_recall_at_{pct}pct']:.3f}")
    print(f"train_seconds_mean: {mean['train_s']:.2f}")
    print(f"score_seconds_mean: {mean['score_s']:.3f}")
    print(f"seconds: {time.perf_counter() - started:.1f}")
    if not all(0.0 <= r["auc"] <= 1.0 for r in results.values()):
        sys.exit("error: an AUC outside [0, 1]")


if __name__ == "__main__":
    main()
