"""A campaign's uplift model: who the ad persuades, learnt from its treated and control decisions.

Treated: the campaign's decisions that served one of its ads. Control: the decisions its control
group got (reason "control", `context.control.campaign` = the campaign; marketing/control.py).
The outcome is the campaign's goal within its attribution window, as for the response model; the
features are the customer's persona **as of the decision** (the same point-in-time assembly as
ml.automodel.assemble, with one stand-in ad, so only customer features remain). The pure learners
and metrics are ml/uplift.py: the S-, T-, X-learner and the class transformation (weighted for the
unequal arms a 10 % holdout makes) are all fitted on 70 % of the customers (stratified by arm and
outcome) and judged on the other 30 % by the Qini coefficient; the best is registered under
"uplift:campaign:N" with its uplift and Qini curves, AUUC and uplift@30 %.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable

import numpy as np
import pandas as pd
from django.conf import settings
from django.utils import timezone

from audiences.models import PersonaSnapshot
from ml import automodel, registry
from ml.models import ModelVersion

from . import rates
from .models import Ad, Campaign, Decision, Event

STAND_IN = 0  # the one "ad" of every row: uplift features are the customer's alone
CUSTOMER_NUMERIC = [c for c in automodel.NUMERIC if c != "ad_affinity"]
CUSTOMER_CATEGORICAL = [c for c in automodel.CATEGORICAL if c != "ad"]
MIN_PER_ARM = 50


def _number(value) -> float | None:
    """JSON has no NaN (PostgreSQL's jsonb refuses it): an undefined metric is None."""
    value = float(value)
    return None if not np.isfinite(value) else value


def uplift_key(campaign_id: int) -> str:
    return f"uplift:campaign:{campaign_id}"


@dataclass
class UpliftScorer:
    """A fitted uplift learner with the columns it was fitted on (one-hot levels seen at training)."""

    learner: object
    columns: list[str]
    levels: dict[str, list[str]] = field(default_factory=dict)

    def matrix(self, frame: pd.DataFrame) -> np.ndarray:
        parts = [frame[CUSTOMER_NUMERIC].astype(float).to_numpy()]
        for column, levels in self.levels.items():
            values = frame[column].astype(object).where(frame[column].notna(), None).to_numpy()
            parts.append(np.stack([(values == level) for level in levels], axis=1).astype(float) if levels
                         else np.zeros((len(frame), 0)))
        return np.hstack(parts)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return self.learner.predict(self.matrix(frame))


def _levels(frame: pd.DataFrame, top: int = 30) -> dict[str, list[str]]:
    """Per categorical column its most frequent levels (rarer ones set no column)."""
    return {c: [str(v) for v in frame[c].dropna().astype(str).value_counts().head(top).index] for c in CUSTOMER_CATEGORICAL}


def logs(campaign: Campaign, now: datetime) -> pd.DataFrame:
    """One row per treated or control decision whose window has closed: t, responded, and the customer's features then."""
    ad_ids = set(Ad.objects.filter(campaign=campaign).values_list("pk", flat=True))
    since = now - timedelta(days=settings.MODEL_HORIZON_DAYS)
    found = (Decision.objects.filter(created_at__gte=since, created_at__lte=now, placement__ads__campaign=campaign)
             .distinct().order_by("-created_at").values_list("id", "customer_id", "created_at", "chosen", "reason", "context")
             [: settings.MODEL_MAX_DECISIONS])
    rows = []
    for pk, customer, at, chosen, reason, context in found:
        held = (context or {}).get("control") or {}
        if reason == Decision.Reason.CONTROL and held.get("campaign") == campaign.pk:
            rows.append((str(pk), customer, at, 0))
        elif chosen and chosen[0] in ad_ids:
            rows.append((str(pk), customer, at, 1))
    arms = pd.DataFrame(rows, columns=["decision_id", "customer_id", "created_at", "t"])
    if arms.empty:
        return arms
    decisions = arms.assign(eligible=[[STAND_IN]] * len(arms), chosen=STAND_IN, propensity=1.0, reason="")
    answered = Event.objects.filter(campaign=campaign, type__in=rates.GOAL_EVENTS[campaign.goal], decision__isnull=False,
                                    occurred_at__gte=arms["created_at"].min())
    outcomes = pd.DataFrame([(str(d), STAND_IN, t) for d, t in answered.values_list("decision_id", "occurred_at")],
                            columns=["decision_id", "ad_id", "occurred_at"])
    customers = sorted(set(arms["customer_id"]))
    snaps = []
    for at in range(0, len(customers), 5000):
        snaps += [{"customer_id": c, "valid_from": v, **f} for c, v, f in PersonaSnapshot.objects.filter(
            customer_id__in=customers[at:at + 5000], valid_from__lte=now).values_list("customer_id", "valid_from", "features")]
    snapshots = pd.DataFrame(snaps, columns=["customer_id", "valid_from", *automodel.SNAPSHOT_COLUMNS])
    stand_in = pd.DataFrame([{"ad_id": STAND_IN, "tags": "", "genres": []}])
    rows = automodel.assemble(decisions, outcomes, snapshots, stand_in, window_seconds=campaign.attribution_minutes * 60, now=now)
    return rows.merge(arms[["decision_id", "t"]], on="decision_id")


def value_and_cost(campaign: Campaign, rows: pd.DataFrame) -> tuple[float, float]:
    """What one response is worth (the mean value of the campaign's answering events, 1 when they carry none)
    and what one contact costs (the mean serving cost of its ads' channels)."""
    from django.db.models import Avg

    from . import spend
    from .models import Channel

    value = Event.objects.filter(campaign=campaign, type__in=rates.GOAL_EVENTS[campaign.goal], value__gt=0).aggregate(
        v=Avg("value"))["v"]
    channels = Channel.objects.filter(placements__ads__campaign=campaign).distinct()
    costs = [float(spend.cost_of_serving(c)) for c in channels]
    return float(value) if value else 1.0, (sum(costs) / len(costs)) if costs else 0.0


def choose_persuadable(campaign: Campaign, scorer: UpliftScorer, rows: pd.DataFrame, now: datetime) -> dict:
    """Score every customer with a persona now, keep the persuadable (ml.uplift.select_persuadable), store them as
    the campaign's "Persuadable" audience — a list kept by this job, which decisions and delivery lists check."""
    from django.db import transaction

    from audiences.models import Audience, AudienceMember, Persona
    from audiences.personas import snapshot_of
    from ml import uplift

    from . import setup

    ids, frames = [], []
    stand_in = {"ad_id": STAND_IN, "tags": "", "genres": []}
    personas = Persona.objects.select_related("customer").order_by("customer_id")
    for start in range(0, personas.count(), 20_000):
        chunk = list(personas[start:start + 20_000])
        ids += [p.customer_id for p in chunk]
        frames.append(pd.DataFrame([automodel.features(snapshot_of(p, p.customer), stand_in, now) for p in chunk]))
    predicted = scorer.predict(pd.concat(frames, ignore_index=True)) if frames else np.empty(0)
    value, cost = value_and_cost(campaign, rows)
    target = float(campaign.target_cpa) if campaign.target_cpa is not None else None
    picked = uplift.select_persuadable(predicted, value=value, cost=cost, target_cpa=target)
    name = f"Persuadable: {campaign.name}"[:120]
    with transaction.atomic():
        audience = campaign.persuadable or Audience.objects.filter(name=name).first() or Audience.objects.create(
            name=name, kind=Audience.Kind.LIST,
            description=f"Kept by the uplift model of “{campaign.name}”: the customers it is predicted to persuade "
                        "while the incremental CPA stays under the campaign's target. Replaced at every uplift training.")
        AudienceMember.objects.filter(audience=audience).delete()
        chosen_ids = np.asarray(ids)[picked.include].tolist() if len(ids) else []
        AudienceMember.objects.bulk_create([AudienceMember(audience=audience, customer_id=c) for c in chosen_ids], batch_size=5000)
        Audience.objects.filter(pk=audience.pk).update(size=len(chosen_ids), size_at=now)
        Campaign.objects.filter(pk=campaign.pk).update(persuadable=audience)
        setup.changed()  # decisions hold the campaign in their set-up: its audience moved
    scored = len(ids)
    return {"audience": audience.pk, "scored": scored, "included": picked.customers,
            "share": picked.customers / scored if scored else 0.0, "threshold": picked.threshold,
            "predicted_incremental": picked.incremental, "predicted_incremental_cpa": picked.incremental_cpa,
            "predicted_incremental_profit": picked.incremental_profit, "value": value, "cost": cost, "target_cpa": target}


def build_uplift_model(campaign: Campaign, *, now: datetime | None = None, by=None,
                       progress: Callable[[float, str], None] | None = None, job_id: int | None = None) -> dict:
    """Fit every learner on 70 % of the campaign's treated and control decisions, register the best by Qini on the rest.

    With a job id, a retried job whose worker died after registering its model finishes that model
    (promotes it, chooses the persuadable customers) instead of registering a second one.
    """
    from sklearn.model_selection import train_test_split

    from ml import uplift

    now = now or timezone.now()
    report = progress or (lambda fraction, message: None)
    if job_id is not None:
        earlier = ModelVersion.objects.registered_by_job(uplift_key(campaign.pk), job_id)
        if earlier is not None:
            return _finish_uplift(campaign, earlier, now, report)
    report(0.05, "Loading treated and control decisions")
    rows = logs(campaign, now)
    treated = int(rows["t"].sum()) if len(rows) else 0
    control = len(rows) - treated
    if treated < MIN_PER_ARM or control < MIN_PER_ARM:
        raise automodel.NotEnoughData(f"{treated} treated and {control} control decisions with a known outcome; "
                                      f"at least {MIN_PER_ARM} of each are needed (is a control group set?).")
    y = rows["responded"].to_numpy(dtype=int)
    t = rows["t"].to_numpy(dtype=int)
    if y[t == 1].min() == y[t == 1].max() or y[t == 0].min() == y[t == 0].max():
        raise automodel.NotEnoughData("each arm needs both responses and non-responses to learn an uplift.")
    strata = t * 2 + y
    stratify = strata if np.bincount(strata).min() >= 2 else None
    train, test = train_test_split(np.arange(len(rows)), test_size=0.3, random_state=42, stratify=stratify)
    scorer = UpliftScorer(None, [], _levels(rows.iloc[train]))
    x = scorer.matrix(rows)
    results, learners = {}, {}
    for n, name in enumerate(uplift.LEARNERS):
        report(0.15 + 0.7 * n / len(uplift.LEARNERS), f"Fitting the {name.replace('_', ' ')}")
        learner = uplift.make_learner(name).fit(x[train], t[train], y[train])
        found = uplift.evaluate(y[test], learner.predict(x[test]), t[test])
        results[name] = {"qini": _number(found.qini), "uplift_auc": _number(found.uplift_auc),
                         "uplift_at_30": _number(found.uplift_at_k), "report": found}
        learners[name] = learner
    best = max(results, key=lambda k: (results[k]["qini"] if results[k]["qini"] is not None else -np.inf, k))
    chosen = results[best]["report"]
    scorer.learner = learners[best]
    metrics = {"qini": results[best]["qini"], "uplift_auc": results[best]["uplift_auc"],
               "uplift_at_30": results[best]["uplift_at_30"], "observed_uplift": _number(chosen.observed_uplift), "learner": best, "treated": treated, "control": control,
               "candidates": {k: {m: v for m, v in r.items() if m != "report"} for k, r in results.items()}}
    version = registry.register_candidate(
        uplift_key(campaign.pk), ModelVersion.Kind.XGBOOST, pickle.dumps(scorer, protocol=pickle.HIGHEST_PROTOCOL),
        suffix=".pkl", metrics=metrics, campaign_id=campaign.pk, by=by,
        report={"uplift": {name: [[float(a), _number(b)] for a, b in getattr(chosen, name)]
                           for name in ("uplift_curve", "qini_curve", "perfect_uplift_curve", "perfect_qini_curve")}
                | {"n": int(chosen.n), "n_treated": int(chosen.n_treated), "k": float(chosen.k)}},
        trained_on={"decisions": len(rows), "treated": treated, "control": control, "test_rows": len(test),
                    "until": now.isoformat(), "goal": campaign.goal, "campaign": campaign.name, "job": job_id},
        notes=f"{best.replace('_', ' ')} chosen by Qini on 30 % of the customers held out from training.",
    )
    # Uplift models are not gated off-policy: the holdout is itself a randomised experiment. The newest serves.
    registry.promote(version, by="uplift training")
    report(0.9, "Choosing the persuadable customers")
    chosen_set = choose_persuadable(campaign, scorer, rows, now)
    ModelVersion.objects.filter(pk=version.pk).update(metrics={**metrics, "targeting": chosen_set})
    metrics["targeting"] = chosen_set
    report(1.0, f"{best.replace('_', ' ')}: Qini {metrics['qini'] if metrics['qini'] is not None else float('nan'):.3f}")
    return {"version": version.pk, "number": version.version, "learner": best, "qini": metrics["qini"],
            "treated": treated, "control": control}


def _finish_uplift(campaign: Campaign, version: ModelVersion, now: datetime,
                   report: Callable[[float, str], None]) -> dict:
    """The rest of build_uplift_model for a model an earlier attempt of the same job registered."""
    from ml.serving import load

    metrics = dict(version.metrics)
    if version.status != ModelVersion.Status.CHAMPION:
        registry.promote(version, by="uplift training")
    if "targeting" not in metrics:
        report(0.9, "Choosing the persuadable customers (the model was registered by an earlier attempt)")
        scorer = load(version.kind, registry.artefact_path(version))
        metrics["targeting"] = choose_persuadable(campaign, scorer, logs(campaign, now), now)
        ModelVersion.objects.filter(pk=version.pk).update(metrics=metrics)
    report(1.0, f"v{version.version}: registered by an earlier attempt, finished")
    return {"version": version.pk, "number": version.version, "learner": metrics.get("learner"), "qini": metrics.get("qini"),
            "treated": metrics.get("treated"), "control": metrics.get("control")}
