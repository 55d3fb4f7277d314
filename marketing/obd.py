"""The Open Bandit Dataset (ZOZOTOWN) as decisions and events, so the off-policy gate can be checked on real logs.

    manage.py import_obd [--campaign all] [--policies random,bts] [--limit N] [--data-dir PATH]

Data: ../shared/data/open-bandit-dataset (Saito et al., NeurIPS 2021 Datasets & Benchmarks), one
CSV per behaviour policy and campaign (`random/all/all.csv`, `bts/all/all.csv`), one row per
impression: the item the policy showed at one of the widget's three positions, the click, the
policy's probability of that item at that position, four hashed user features and a sparse
user-item affinity.

How the log maps onto our models:

- Placements: three, `obd-pos-1` … `obd-pos-3`, one slot each, on the channel "Open Bandit Dataset
  (ZOZOTOWN)". Each row is an impression at one position with a propensity *for that position*, and
  rows carry no view id that would tie the three positions of one widget view together (timestamps
  are all distinct). One 3-slot placement would need a decision per view with three chosen ads and
  one propensity for the first slot; OBD has neither, so a one-slot placement per position is what
  the log actually records: a decision there has one chosen ad and its propensity is exactly the
  logged `propensity_score` (upstream: `action_prob`). Estimators that pool positions (as OBP does)
  take all three placements.
- Campaigns: one per behaviour policy ("OBD random", "OBD BTS"; other OBD campaigns get a suffix,
  e.g. "OBD BTS (men)"), created *ended* so they never serve live traffic, with the goal "click".
- Ads: one per item and campaign (80 for `all`), named "item 07", linked to the three placements,
  with the item's features in `payload` (`obd_item_id`, `item_feature_0..3`). Each policy's file
  hashes the categorical item features with its own salt, so each campaign keeps its own.
- Customers: OBD has no user ids. A customer stands for a user *context*: external id
  "obd-" + a hash of the four user features (about 250 distinct in 10,000 rows), the features in
  `attributes`. The hashes are the same in both policies' files, so one context is one customer
  across logs. They are not people: nothing per-person (caps, history) is meaningful for them.
- Decisions: one per row, id a UUID5 of (campaign, policy, row index) so a re-run finds it; reason
  "explore" for the uniform-random policy, "model" for BTS (model_version "obd-bts"); `eligible` =
  every ad of the campaign (both policies chose among all items); `chosen` = [the item's ad];
  `propensity` = the logged probability; `context` = position, user features, the non-zero
  affinities, and `obd` (campaign, policy, row, item) so a reader can select one log;
  `created_at` = the row's timestamp.
- Events: one "click" per clicked row, source "obd", key "<campaign>/<policy>/<row>" (unique with
  the source, so a replay adds nothing), tied to the decision, ad and campaign, at the impression's
  time (the log has no separate click time). No spend is accrued: these are not our clicks.
- ServedAd: none. ServedAd is the ledger frequency caps count (and the served counts of the
  campaign pages and the interim response rates); a week of 2019 impressions served by somebody
  else's widget must not count toward any live cap — a lifetime service-level cap would count
  them — nor show up as our deliveries. The decision log is what off-policy evaluation reads.

Writes are bulk inserts in chunks, each chunk one transaction (its decisions with their click
events), existing rows found by their deterministic keys first, so a second run inserts nothing.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone as dt_timezone
import os
from pathlib import Path

import pandas as pd
from django.db import transaction

from audiences.models import Customer

from .models import Ad, Campaign, Channel, Decision, Event, Placement

# The shared data sets lie beside the checkout (../shared/data); ENCORE_SHARED_DATA names them elsewhere.
DEFAULT_DATA_DIR = Path(os.environ.get("ENCORE_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data") \
    / "open-bandit-dataset"
CHANNEL_NAME = "Open Bandit Dataset (ZOZOTOWN)"
POSITIONS = (1, 2, 3)  # left, center, right of the recommendation widget
POLICIES = {"random": "random", "bts": "BTS"}  # file folder -> campaign label
EVENT_SOURCE = "obd"
USER_FEATURES = [f"user_feature_{i}" for i in range(4)]
CHUNK = 2000
# The sample's week (README: 2019-11-24 to 2019-11-30 UTC), the flight of the imported campaigns.
FLIGHT = (datetime(2019, 11, 24, tzinfo=dt_timezone.utc), datetime(2019, 12, 1, tzinfo=dt_timezone.utc))
_NAMESPACE = uuid.UUID("6f1c3f4e-0b1d-4e55-9a4c-0bd0bd0bd000")


@dataclass(frozen=True)
class Imported:
    """What one policy's import did, and what the database now holds for that log."""

    policy: str
    rows: int  # rows read from the CSV
    new_decisions: int
    new_events: int
    decisions: int  # stored for this campaign and policy, after the import
    events: int

    @property
    def click_rate(self) -> float:
        return self.events / self.decisions if self.decisions else 0.0


def campaign_name(campaign: str, policy: str) -> str:
    return f"OBD {POLICIES[policy]}" if campaign == "all" else f"OBD {POLICIES[policy]} ({campaign})"


def decision_id(campaign: str, policy: str, row: int) -> uuid.UUID:
    """The same row of the same log always gets the same decision id (what makes a re-run a no-op)."""
    return uuid.uuid5(_NAMESPACE, f"{campaign}/{policy}/{row}")


def event_key(campaign: str, policy: str, row: int) -> str:
    return f"{campaign}/{policy}/{row}"


def customer_key(features: list[str]) -> str:
    """A user context's customer: OBD has no user ids, only hashed features."""
    return "obd-" + hashlib.sha1("|".join(features).encode()).hexdigest()[:32]


def read_log(data_dir: Path, campaign: str, policy: str, limit: int | None = None) -> pd.DataFrame:
    """The first `limit` rows of one policy's log (all rows when None), indexed by the file's row index."""
    frame = pd.read_csv(data_dir / policy / campaign / f"{campaign}.csv", index_col=0, nrows=limit)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    return frame


def read_items(data_dir: Path, campaign: str, policy: str) -> pd.DataFrame:
    return pd.read_csv(data_dir / policy / campaign / "item_context.csv", index_col=0)


def ensure_placements() -> list[Placement]:
    """The channel and the widget's three positions, each a one-slot placement."""
    channel, _ = Channel.objects.get_or_create(
        name=CHANNEL_NAME, defaults={"kind": Channel.Kind.BANNER, "cost_model": Channel.CostModel.CPM, "unit_cost": 0})
    return [Placement.objects.get_or_create(
        slug=f"obd-pos-{position}",
        defaults={"name": f"OBD widget, position {position} ({['left', 'center', 'right'][position - 1]})",
                  "channel": channel, "slots": 1})[0] for position in POSITIONS]


def ensure_campaign(campaign: str, policy: str, items: pd.DataFrame, placements: list[Placement]) -> tuple[Campaign, dict[int, int]]:
    """The policy's ended campaign and one ad per item; returns the campaign and {item id: ad id}."""
    record, _ = Campaign.objects.get_or_create(
        name=campaign_name(campaign, policy),
        defaults={"status": Campaign.Status.ENDED, "goal": Campaign.Goal.CLICK,
                  "starts_at": FLIGHT[0], "ends_at": FLIGHT[1]})
    payloads = {int(row["item_id"]): _item_payload(row) for row in items.to_dict("records")}
    names = {item: f"item {item:02d}" for item in payloads}
    have = dict(Ad.objects.filter(campaign=record, name__in=names.values()).values_list("name", "pk"))
    missing = [Ad(campaign=record, name=name, title=f"OBD item {item}", status=Ad.Status.ACTIVE, payload=payloads[item])
               for item, name in names.items() if name not in have]
    if missing:
        Ad.objects.bulk_create(missing)
        have = dict(Ad.objects.filter(campaign=record, name__in=names.values()).values_list("name", "pk"))
        Through = Ad.placements.through
        Through.objects.bulk_create([Through(ad_id=have[ad.name], placement_id=p.pk) for ad in missing for p in placements],
                                    ignore_conflicts=True)
    return record, {item: have[name] for item, name in names.items()}


def _item_payload(row: dict) -> dict:
    features = {name: float(value) if name == "item_feature_0" else str(value)
                for name, value in row.items() if name.startswith("item_feature_")}
    return {"obd_item_id": int(row["item_id"]), **features}


def ensure_customers(frames: list[pd.DataFrame]) -> dict[str, int]:
    """One customer per distinct user context in the logs; returns {external id: pk}."""
    contexts = pd.concat([f[USER_FEATURES] for f in frames]).drop_duplicates()
    wanted = {customer_key(list(row)): list(row) for row in contexts.itertuples(index=False, name=None)}
    have = dict(Customer.objects.filter(external_id__in=wanted).values_list("external_id", "pk"))
    new = [Customer(external_id=key, attributes={"source": "obd", "obd_user_features": features})
           for key, features in wanted.items() if key not in have]
    if new:
        Customer.objects.bulk_create(new, ignore_conflicts=True, batch_size=CHUNK)
        have = dict(Customer.objects.filter(external_id__in=wanted).values_list("external_id", "pk"))
    return have


def import_log(log: pd.DataFrame, *, campaign: str, policy: str, record: Campaign, ads: dict[int, int],
               placements: list[Placement], customers: dict[str, int]) -> tuple[int, int]:
    """Insert the log's missing decisions and click events in chunks; returns (new decisions, new events)."""
    by_position = dict(zip(POSITIONS, (p.pk for p in placements)))
    eligible = sorted(ads.values())
    reason, version = (Decision.Reason.EXPLORE, "") if policy == "random" else (Decision.Reason.MODEL, f"obd-{policy}")
    affinity_columns = [c for c in log.columns if c.startswith("user-item_affinity_")]
    new_decisions = new_events = 0
    for start in range(0, len(log), CHUNK):
        chunk = log.iloc[start:start + CHUNK]
        affinities = chunk[affinity_columns].to_numpy()
        decisions, events = [], []
        for i, (row, r) in enumerate(zip(chunk.index, chunk.itertuples(index=False))):
            row = int(row)
            features = [getattr(r, name) for name in USER_FEATURES]
            customer = customers[customer_key(features)]
            item, position = int(r.item_id), int(r.position)
            at = r.timestamp.to_pydatetime()
            did = decision_id(campaign, policy, row)
            decisions.append(Decision(
                id=did, customer_id=customer, placement_id=by_position[position], eligible=eligible,
                chosen=[ads[item]], reason=reason, propensity=float(r.propensity_score), model_version=version,
                created_at=at, context={
                    "position": position, "user_features": features,
                    "affinity": {str(j): float(v) for j, v in enumerate(affinities[i]) if v},
                    "obd": {"campaign": campaign, "policy": policy, "row": row, "item": item}}))
            if r.click:
                events.append(Event(source=EVENT_SOURCE, key=event_key(campaign, policy, row), type=Event.Type.CLICK,
                                    customer_id=customer, decision_id=did, ad_id=ads[item], campaign=record,
                                    occurred_at=at))
        with transaction.atomic():
            seen = set(Decision.objects.filter(pk__in=[d.id for d in decisions]).values_list("pk", flat=True))
            fresh = [d for d in decisions if d.id not in seen]
            Decision.objects.bulk_create(fresh, ignore_conflicts=True, batch_size=CHUNK)
            if events:
                known = set(Event.objects.filter(source=EVENT_SOURCE, key__in=[e.key for e in events])
                            .values_list("key", flat=True))
                unknown = [e for e in events if e.key not in known]
                Event.objects.bulk_create(unknown, ignore_conflicts=True)
                new_events += len(unknown)
        new_decisions += len(fresh)
    return new_decisions, new_events


def logged_decisions(campaign: str, policy: str):
    """The stored decisions of one OBD log (one behaviour policy of one campaign)."""
    return Decision.objects.filter(placement__slug__startswith="obd-pos-",
                                   context__obd__campaign=campaign, context__obd__policy=policy)


def import_obd(*, campaign: str = "all", policies: tuple[str, ...] = ("random", "bts"), limit: int | None = None,
               data_dir: Path = DEFAULT_DATA_DIR) -> list[Imported]:
    """Import the first `limit` rows (all when None) of each policy's log of one OBD campaign; idempotent."""
    unknown = set(policies) - set(POLICIES)
    if unknown:
        raise ValueError(f"Unknown OBD policies: {', '.join(sorted(unknown))} (known: {', '.join(POLICIES)}).")
    logs = {policy: read_log(data_dir, campaign, policy, limit) for policy in policies}
    placements = ensure_placements()
    customers = ensure_customers(list(logs.values()))
    results = []
    for policy, log in logs.items():
        record, ads = ensure_campaign(campaign, policy, read_items(data_dir, campaign, policy), placements)
        new_decisions, new_events = import_log(log, campaign=campaign, policy=policy, record=record, ads=ads,
                                               placements=placements, customers=customers)
        results.append(Imported(
            policy=policy, rows=len(log), new_decisions=new_decisions, new_events=new_events,
            decisions=logged_decisions(campaign, policy).count(),
            events=Event.objects.filter(source=EVENT_SOURCE, campaign=record, type=Event.Type.CLICK).count()))
    return results
