"""A campaign's own model: built from its logged decisions, gated off-policy, served by the decision engine.

Build (`build_model`, run by the Celery task `marketing.train_campaign_model`): the campaign's
logged decisions that were explored or model-ranked, the goal events that answered them, the
persona snapshots of their customers and the features of its ads are loaded here and handed to
the pure pipeline in ml.automodel (assemble → transform → criteria → candidates). The best
candidate is registered (ml.registry) with its metrics, importances and the variable exploration
report, then judged by the off-policy gate against the current champion (or, before the first
one, against serving at random): it is promoted only when the doubly robust estimate of its
value beats the incumbent's with 95 % confidence. Otherwise it stays a candidate, with the
gate's estimates shown on its page, and an operator may still promote it by hand.

When: as soon as an ad's exploration ends (rates.close_exploration), every RETRAIN_HOURS on
the beat schedule for every serving campaign with model-ranked ads, and on demand from the
campaign's page.

Online (`update_online`, every minute on the beat schedule): between retrains an FTRL-Proximal
correction of the champion (ml.automodel.Online: hashed tokens of the champion's own columns, the
champion's logit as a fixed offset) learns from each decision whose attribution window has closed,
so a drift (a tired creative, a segment that changed its mind) shows within minutes, not at the
next retrain. A new champion starts a new correction.

Serve (`scores`): the decision engine asks for each ad's predicted response for the customer
now; ads whose campaign has a champion are scored by it, in-process (ml.serving loads it once
per process and reloads it when the champion changes), from the same feature function the
training rows came from; the others keep the interim per-segment rates (rates.predict).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from audiences.models import Customer, Persona, PersonaSnapshot
from audiences.personas import snapshot_of
from ml import automodel, bandits, registry, serving
from ml.models import ModelVersion

from . import rates
from .models import Ad, Campaign, Decision, DeliveryPlan, Event

GATE = "the off-policy gate"
LEARNED = (Decision.Reason.EXPLORE, Decision.Reason.MODEL)


def model_key(campaign_id: int) -> str:
    return f"campaign:{campaign_id}"


def ad_features(ad: Ad) -> dict:
    """What a model knows of an ad: its id, its tags (promoted item's genres and moods, payload tags), its genres."""
    item = ad.promoted_item
    genres = [str(g).lower() for g in (item.genres if item else [])]
    tags = [*genres, *(str(m).lower() for m in (item.moods if item else []))]
    extra = (ad.payload or {}).get("tags") if isinstance(ad.payload, dict) else None
    if isinstance(extra, list):
        tags += [str(t).lower() for t in extra]
    elif isinstance(extra, str):
        tags += [t.strip().lower() for t in extra.split(",")]
    return {"ad_id": ad.pk, "tags": ", ".join(t for t in dict.fromkeys(tags) if t), "genres": genres}


# -- build -----------------------------------------------------------------------------------------------


def _logs(campaign: Campaign, now: datetime, after: datetime | None = None,
          ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """decisions, outcomes, snapshots, ads for ml.automodel.assemble (the newest MAX decisions of the horizon, after `after`)."""
    ads = list(Ad.objects.filter(campaign=campaign).select_related("promoted_item"))
    ad_ids = {a.pk for a in ads}
    placements = set(Ad.placements.through.objects.filter(ad_id__in=ad_ids).values_list("placement_id", flat=True))
    since = now - timedelta(days=settings.MODEL_HORIZON_DAYS)
    if after is not None:
        since = max(since, after + timedelta(microseconds=1))
    rows = (Decision.objects.filter(placement_id__in=placements, reason__in=LEARNED, created_at__gte=since, created_at__lte=now)
            .order_by("-created_at").values_list("id", "customer_id", "created_at", "eligible", "chosen", "propensity", "reason")
            [: settings.MODEL_MAX_DECISIONS])
    decisions = pd.DataFrame(
        [(str(i), c, t, e, ch[0], p, r) for i, c, t, e, ch, p, r in rows if ch and ch[0] in ad_ids],
        columns=["decision_id", "customer_id", "created_at", "eligible", "chosen", "propensity", "reason"])
    columns = ["decision_id", "ad_id", "occurred_at"]
    if decisions.empty:
        return decisions, pd.DataFrame(columns=columns), pd.DataFrame(), pd.DataFrame([ad_features(a) for a in ads])
    start = decisions["created_at"].min()
    outcomes = pd.DataFrame(
        [(str(d), a, t) for d, a, t in Event.objects.filter(
            campaign=campaign, type__in=rates.GOAL_EVENTS[campaign.goal], occurred_at__gte=start, decision__isnull=False)
         .values_list("decision_id", "ad_id", "occurred_at")], columns=columns)
    customers = sorted(set(decisions["customer_id"]))
    snaps = []
    for at in range(0, len(customers), 5000):
        part = customers[at:at + 5000]
        snaps += [{"customer_id": c, "valid_from": t, **f} for c, t, f in PersonaSnapshot.objects.filter(
            customer_id__in=part, valid_from__lte=now).values_list("customer_id", "valid_from", "features")]
    snapshots = pd.DataFrame(snaps, columns=["customer_id", "valid_from", *automodel.SNAPSHOT_COLUMNS])
    return decisions, outcomes, snapshots, pd.DataFrame([ad_features(a) for a in ads])


def epsilon_of(campaign: Campaign) -> float:
    """The exploration share its ads are served with (the largest of the plans that rank them)."""
    found = DeliveryPlan.objects.filter(Q(placement__ads__campaign=campaign)).values_list("epsilon", flat=True)
    return max(found, default=0.05)


def build_model(campaign: Campaign, *, now: datetime | None = None, by=None,
                progress: Callable[[float, str], None] | None = None, job_id: int | None = None) -> dict:
    """Train the campaign's next candidate, gate it against the champion, promote it if it is shown better.

    Raises automodel.NotEnoughData (with the counts) when the logs cannot train a model yet. With a
    job id, a retried job whose worker died after registering its candidate finishes that candidate
    (promotes it if its gate passed) instead of registering a second one.
    """
    now = now or timezone.now()
    report = progress or (lambda fraction, message: None)
    if job_id is not None:
        earlier = ModelVersion.objects.registered_by_job(model_key(campaign.pk), job_id)
        if earlier is not None:
            return _finish_registered(earlier, report)
    report(0.02, "Loading logged decisions, outcomes and persona snapshots")
    decisions, outcomes, snapshots, ads = _logs(campaign, now)
    window = campaign.attribution_minutes * 60
    report(0.1, f"Assembling {len(decisions):,} decisions")
    rows = automodel.assemble(decisions, outcomes, snapshots, ads, window_seconds=window, now=now)
    trained = automodel.train(rows, progress=lambda f, m: report(0.1 + 0.7 * f, m))
    key = model_key(campaign.pk)
    champion = ModelVersion.objects.champions().filter(key=key).first()
    report(0.85, "Estimating its value off-policy")
    validation = trained.validation.reset_index(drop=True)
    candidate_p = trained.scorer.predict(validation[automodel.FEATURES])
    incumbent_p = None
    if champion is not None:
        incumbent = serving.load(champion.kind, registry.artefact_path(champion))
        incumbent_p = incumbent.predict(validation[automodel.FEATURES])
    verdict = automodel.gate(validation, candidate_p, incumbent_p, epsilon=epsilon_of(campaign))
    verdict_dict = {
        "passed": verdict.passed, "reason": verdict.reason, "decisions": verdict.decisions,
        "incumbent": f"v{champion.version}" if champion else "random (no model yet)",
        "estimates": verdict.estimates, "difference": verdict.difference,
    }
    version = registry.register_candidate(
        key, trained.kind, pickle.dumps(trained.scorer, protocol=pickle.HIGHEST_PROTOCOL), suffix=".pkl",
        metrics={**trained.metrics, "candidates": trained.candidates, "gate": verdict_dict},
        features=trained.importances, parent=champion, report=trained.report,
        trained_on={"decisions": int(decisions.shape[0]), "rows": int(rows["served"].sum()) if len(rows) else 0,
                    "train_rows": trained.train_rows, "validation_rows": trained.validation_rows,
                    "attribution_minutes": campaign.attribution_minutes, "until": now.isoformat(),
                    "validation_from": trained.report["boundary"], "goal": campaign.goal, "campaign": campaign.name,
                    "ads": [int(a) for a in ads["ad_id"]], "job": job_id},
        notes=f"Trained on {trained.train_rows:,} decisions, validated on the next {trained.validation_rows:,}.",
        by=by, campaign_id=campaign.pk,
    )
    promoted = False
    if verdict.passed:
        registry.promote(version, by=GATE)
        promoted = True
    report(1.0, f"v{version.version} ({trained.kind}, AUC {trained.metrics['auc']:.3f}): "
                + ("promoted to champion" if promoted else "kept as a candidate"))
    return {"version": version.pk, "number": version.version, "kind": trained.kind, "auc": trained.metrics["auc"],
            "promoted": promoted, "gate": verdict.reason, "seconds": round(trained.seconds, 2)}


def _finish_registered(version: ModelVersion, report: Callable[[float, str], None]) -> dict:
    """The rest of build_model for a candidate an earlier attempt of the same job registered."""
    gate = version.metrics.get("gate", {})
    promoted = version.status == ModelVersion.Status.CHAMPION
    if gate.get("passed") and version.status == ModelVersion.Status.CANDIDATE:
        registry.promote(version, by=GATE)
        promoted = True
    report(1.0, f"v{version.version} ({version.kind}): registered by an earlier attempt, "
                + ("promoted to champion" if promoted else "kept as a candidate"))
    return {"version": version.pk, "number": version.version, "kind": version.kind, "auc": version.metrics.get("auc", 0.0),
            "promoted": promoted, "gate": gate.get("reason", ""), "seconds": 0.0}


def online_key(campaign_id: int) -> str:
    return f"{model_key(campaign_id)}:online"


def update_online(campaign: Campaign, *, now: datetime | None = None) -> dict:
    """Feed the champion's FTRL correction the decisions whose attribution window closed since its last update.

    One online version per batch champion (key "campaign:N:online", kind FTRL, parent the
    champion), rewritten in place; a new champion starts a fresh one from its training's end.
    Idempotent: the cursor (the latest decision learnt from) moves only with the artefact.
    """
    now = now or timezone.now()
    key = model_key(campaign.pk)
    champion = ModelVersion.objects.champions().filter(key=key).first()
    if champion is None:
        return {"skipped": "no champion"}
    online_version = ModelVersion.objects.champions().filter(key=online_key(campaign.pk)).first()
    if online_version is not None and online_version.parent_id == champion.pk:
        online = serving.load(online_version.kind, registry.artefact_path(online_version))
    else:
        # From where the batch model's data ended: its decisions whose window was still open were left out then.
        until = champion.trained_on.get("until")
        start = (datetime.fromisoformat(until) - timedelta(minutes=champion.trained_on.get("attribution_minutes", 0))
                 if until else None)
        online = automodel.Online(base=champion.pk, until=start.isoformat() if start else "")
        online_version = None
    after = datetime.fromisoformat(online.until) if online.until else None
    decisions, outcomes, snapshots, ads = _logs(campaign, now, after=after)
    rows = automodel.assemble(decisions, outcomes, snapshots, ads, window_seconds=campaign.attribution_minutes * 60, now=now)
    served = rows[rows["served"].astype(bool)] if len(rows) else rows
    if online_version is not None and served.empty:
        return {"events": 0, "version": online_version.pk}
    scorer = serving.load(champion.kind, registry.artefact_path(champion))
    if len(served):
        online.update(scorer, served[automodel.FEATURES].to_dict("records"), served["responded"].to_numpy())
        online.until = served["created_at"].max().isoformat()
    trained_on = {"events": int(online.ftrl.events_seen), "until": online.until, "base_version": champion.version,
                  "campaign": campaign.name}
    artefact = pickle.dumps(online, protocol=pickle.HIGHEST_PROTOCOL)
    if online_version is None:
        online_version = registry.register_candidate(
            online_key(campaign.pk), ModelVersion.Kind.FTRL, artefact, suffix=".pkl", parent=champion, trained_on=trained_on,
            notes=f"FTRL-Proximal correction of {key} v{champion.version}, updated every minute from the event stream.",
            campaign_id=campaign.pk)
        registry.promote(online_version, by="online updates")
    else:
        registry.rewrite(online_version, artefact, trained_on=trained_on)
    return {"events": int(len(served)), "version": online_version.pk, "seen": int(online.ftrl.events_seen)}


def campaigns_with_champions() -> list[int]:
    return sorted({int(k.split(":")[1]) for k in ModelVersion.objects.champions().filter(key__regex=r"^campaign:[0-9]+$")
                   .values_list("key", flat=True)})


def campaigns_to_train() -> list[int]:
    """Serving campaigns with an explored, model-ranked ad: those a scheduled retrain refreshes."""
    ranked = rates.ranked_ads()
    return sorted(set(Ad.objects.filter(pk__in=ranked, explored_at__isnull=False, campaign__status__in=Campaign.SERVING)
                      .values_list("campaign_id", flat=True)))


# -- serve -----------------------------------------------------------------------------------------------


def snapshot_now(customer: Customer) -> dict | None:
    """The customer's features now, as a snapshot would hold them (persona loaded with the customer if it was)."""
    try:
        persona = customer.persona
    except Persona.DoesNotExist:
        persona = None
    return snapshot_of(persona, customer)


@dataclass
class Variant:
    """One way of scoring a request's ads, and the share of requests it gets."""

    share: float
    scores: dict[int, float]
    label: str  # the model versions that scored, for the decision log


def variants(ads: Sequence[Ad], customer: Customer, now: datetime, segment: str) -> list[Variant]:
    """How this request's ads may be scored: the champions (with their online corrections), and a challenger.

    Ads of a campaign with a champion are scored by it; the rest by the interim rates. When a
    campaign has a challenger (its newest candidate, registered after the champion was promoted:
    one the gate could not yet show better), a second variant scores that campaign's ads with it,
    and the two share the traffic by Thompson sampling on the responses each has had since,
    the challenger never under CHALLENGER_FLOOR (one challenger per request: the first campaign's).
    """
    by_campaign: dict[int, list[Ad]] = {}
    for ad in ads:
        by_campaign.setdefault(ad.campaign_id, []).append(ad)
    out: dict[int, float] = {}
    labels = []
    leftover: list[Ad] = []
    snapshot = None
    contender = None
    for campaign_id, group in by_campaign.items():
        key = model_key(campaign_id)
        model = serving.champion(key)
        if model is None:
            leftover += group
            continue
        if snapshot is None:
            snapshot = snapshot_now(customer) or {}
        rows = [automodel.features(snapshot or None, ad_features(ad), now) for ad in group]
        p = model.predict(rows)
        label = f"{key} v{serving.champion_number(key)}"
        online = serving.champion(online_key(campaign_id))
        if online is not None and online.base == serving.champion_version_id(key):
            p = online.predict(model, rows, base=p)
            label += "+online"
        out.update({ad.pk: float(v) for ad, v in zip(group, p)})
        labels.append(label)
        if contender is None:
            found = serving.challenger(key)
            if found is not None:
                contender = (found, group, rows, label, f"{key} v{found.number}")
    if leftover:
        out.update(rates.predict(leftover, segment))
        labels.append(rates.MODEL_VERSION)
    champion = Variant(1.0, out, " + ".join(labels)[:40])
    if contender is None:
        return [champion]
    found, group, rows, champion_label, label = contender
    other = dict(out)
    other.update({ad.pk: float(v) for ad, v in zip(group, found.model.predict(rows))})
    share = challenger_share(found)
    champion.share = 1.0 - share
    return [champion, Variant(share, other, " + ".join(label if x == champion_label else x for x in labels)[:40])]


PRIOR_STRENGTH = 50  # pseudo-decisions of the versions' shared prior


def challenger_share(found: serving.Challenger) -> float:
    """The challenger's share of traffic: Thompson sampling between the two versions, within [floor, cap].

    Both versions start from the same prior (the champion's validation response rate, worth
    PRIOR_STRENGTH decisions), so the split follows only what each has earned since the
    challenger came. The cap keeps a version the gate could not show better from taking over
    before the gate promotes it; the floor keeps it learning. Memoised per counts.
    """
    counts = (found.champion_traffic, found.traffic)
    memo = getattr(found, "_share", None)
    if memo is not None and memo[0] == counts:
        return memo[1]
    a, b = 1 + PRIOR_STRENGTH * found.prior_rate, 1 + PRIOR_STRENGTH * (1 - found.prior_rate)
    arms = [bandits.Arm(name, r, s - r, a, b) for name, (s, r) in zip(("champion", "challenger"), counts)]
    shares = bandits.allocate(arms, floor=settings.CHALLENGER_FLOOR, rng=np.random.default_rng(0), draws=20_000)
    share = min(float(shares[1]), settings.CHALLENGER_CAP)
    found._share = (counts, share)
    return share


def scores(ads: Sequence[Ad], customer: Customer, now: datetime, segment: str) -> tuple[dict[int, float], str]:
    """Each ad's predicted response for this customer now by the champions (or the interim rates), and who said so."""
    first = variants(ads, customer, now, segment)[0]
    return first.scores, first.label


def record_traffic(now: datetime) -> int:
    """Count, per champion with a challenger, what each version served and how often it was answered since the challenger came.

    Called by the minute's refresh; the counts go to `metrics["traffic"]` of both versions, where
    serving reads them for the split (ml.serving.challenger).
    """
    counted = 0
    for campaign_id in campaigns_with_champions():
        key = model_key(campaign_id)
        champion = ModelVersion.objects.champions().filter(key=key).first()
        challenger = (ModelVersion.objects.candidates().filter(key=key, created_at__gt=champion.promoted_at)
                      .order_by("-version").first() if champion and champion.promoted_at else None)
        if challenger is None:
            continue
        campaign = Campaign.objects.get(pk=campaign_id)
        window = timedelta(minutes=campaign.attribution_minutes)
        logged = Decision.objects.filter(reason=Decision.Reason.MODEL, created_at__gte=challenger.created_at,
                                         created_at__lte=now - window, placement__ads__campaign=campaign).distinct()
        answered = set(Event.objects.filter(campaign=campaign, type__in=rates.GOAL_EVENTS[campaign.goal],
                                            occurred_at__gte=challenger.created_at, decision__isnull=False)
                       .values_list("decision_id", flat=True))
        for version in (champion, challenger):
            prefix = f"{key} v{version.version}"
            ids = [pk for pk, label in logged.values_list("pk", "model_version")
                   if label == prefix or label.startswith(prefix + "+") or label.startswith(prefix + " ")]
            traffic = {"served": len(ids), "responded": sum(1 for pk in ids if pk in answered), "at": now.isoformat()}
            ModelVersion.objects.filter(pk=version.pk).update(metrics={**version.metrics, "traffic": traffic})
        counted += 1
    return counted


def arm_strength(ads: Sequence[Ad]) -> dict[int, float]:
    """How sure the bandit is of each ad's prediction: its impressions so far, capped (see decisions.order)."""
    found = rates.rates_for([a.pk for a in ads])
    return {a.pk: float(min(found.get((a.pk, ""), (0, 0))[0], settings.BANDIT_MAX_STRENGTH)) for a in ads}

