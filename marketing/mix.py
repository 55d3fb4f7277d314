"""Budget optimisation across channels: fit a marketing-mix model on a dataset, allocate a budget, apply it.

The modelling is ml/mmm.py (pure); the series come from mix_data.py (an upload or the platform's own
spend and outcomes). Here: queue a fit as a Celery job with progress, keep its result, save
allocations as scenarios, and — after the operator confirms — turn a scenario into campaign daily
budgets.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from accounts import audit
from ml.models import Job, enqueue

from .models import Campaign, Channel, MixDataset, MixModel

DAYS_PER_PERIOD = {"day": 1.0, "week": 7.0, "month": 365.25 / 12}
# What an operator may choose for a fit; everything else keeps ml.mmm's defaults.
FIT_OPTIONS = {"adstock": ("geometric", "weibull"), "seasonality": (0, 1, 2, 3), "bootstrap": (0, 20, 40, 100)}


def series_of(dataset: MixDataset):
    """The dataset as ml.mmm's input."""
    from ml import mmm

    d = dataset.data
    return mmm.MixData(spend=d["spend"], outcome=d["outcome"], controls=d.get("controls") or {},
                       frequency=dataset.frequency, dates=d["dates"], outcome_kind=dataset.outcome_kind)


def check_fit_options(raw: dict) -> dict:
    """The choices of a fit, each checked against FIT_OPTIONS; a bad one names itself."""
    def number(key: str, default: int) -> int:
        value = raw.get(key)
        return default if value in (None, "") else int(value)

    options = {"adstock": raw.get("adstock") or "geometric", "seasonality": number("seasonality", 2),
               "bootstrap": number("bootstrap", 40)}
    for key, allowed in FIT_OPTIONS.items():
        if options[key] not in allowed:
            raise ValueError(f"{key}: choose one of {', '.join(map(str, allowed))}.")
    if raw.get("threshold") not in (None, ""):
        threshold = float(raw["threshold"])
        if threshold <= 0:
            raise ValueError("threshold: the plateau threshold must be above 0.")
        options["threshold"] = threshold
    return options


@transaction.atomic
def queue_fit(dataset: MixDataset, *, by, options: dict | None = None) -> MixModel:
    """A new numbered fit of the dataset, run by a Celery job on the ml queue; one already waiting is returned instead."""
    from .tasks import fit_mix_model

    MixDataset.objects.select_for_update().get(pk=dataset.pk)  # two clicks cannot number two fits alike
    waiting = dataset.models.filter(status__in=[MixModel.Status.QUEUED, MixModel.Status.RUNNING]).first()
    if waiting is not None:
        return waiting
    number = (dataset.models.aggregate(n=Max("number"))["n"] or 0) + 1
    job = Job.objects.create(kind="mix_model", title=f"Marketing-mix model: {dataset.name} (fit {number})", created_by=by)
    model = MixModel.objects.create(dataset=dataset, number=number, job=job, options=options or {}, created_by=by)
    enqueue(fit_mix_model, job, model.pk)
    return model


def fit(model: MixModel, progress=None) -> MixModel:
    """The job's body: fit, bootstrap, describe; the model row is written once, at the end (idempotent on retry)."""
    from ml import mmm

    MixModel.objects.filter(pk=model.pk).update(status=MixModel.Status.RUNNING)
    options = mmm.Options(**{k: v for k, v in model.options.items() if k in ("adstock", "seasonality", "bootstrap", "threshold")})
    try:
        params, metrics, report = mmm.run(series_of(model.dataset), options, progress)
    except mmm.MixError as exc:
        model.status, model.error, model.finished_at = MixModel.Status.FAILED, str(exc), timezone.now()
        model.save(update_fields=["status", "error", "finished_at"])
        raise
    model.params, model.metrics, model.report = params, metrics, report
    model.status, model.error, model.finished_at = MixModel.Status.SUCCEEDED, "", timezone.now()
    model.save(update_fields=["params", "metrics", "report", "status", "error", "finished_at"])
    return model


def latest_fit(dataset: MixDataset) -> MixModel | None:
    return dataset.models.filter(status=MixModel.Status.SUCCEEDED).order_by("-number").first()


# -- scenarios -------------------------------------------------------------------------------------------------


def allocate(model: MixModel, *, total: float, objective: str, target: float | None, bounds_mode: str,
             bounds: dict[str, tuple[float, float | None]]) -> dict:
    """The allocation of `total` per period under the bounds, as ml.mmm explains it (raises MixError when it cannot hold)."""
    from ml import mmm

    curves = mmm.Curves.from_params(model.params)
    current = model.params["current"]
    low, high = mmm.bounds_from(current, bounds_mode, bounds)
    return mmm.allocate(curves, total=total, low=low, high=high, current=current,
                        observed_max=model.params["observed_max"], objective=objective, target=target,
                        outcome_kind=model.params.get("outcome_kind", "revenue"))


def save_scenario(model: MixModel, *, name: str, total: float, objective: str, target: float | None,
                  bounds_mode: str, bounds: dict, by):
    """Allocate and keep the result as a scenario to compare and apply; nothing is saved when it cannot hold."""
    from .models import BudgetScenario

    result = allocate(model, total=total, objective=objective, target=target, bounds_mode=bounds_mode, bounds=bounds)
    with transaction.atomic():
        scenario = BudgetScenario.objects.create(model=model, name=name, total=total, objective=objective, target=target,
                                                 bounds_mode=bounds_mode, bounds={k: list(v) for k, v in bounds.items()},
                                                 result=result, created_by=by)
        audit.record("scenario.create", scenario, by=by, label=name, changes={
            "total": [None, total], "objective": [None, objective], "model": [None, str(model)]})
    return scenario


# -- applying a scenario to campaign budgets --------------------------------------------------------------------


@dataclass
class BudgetChange:
    campaign: Campaign
    channels: list[str]
    before: float | None
    after: float
    note: str = ""


def campaigns_on(channel_id: int) -> list[Campaign]:
    """Campaigns not ended whose ads serve on a placement of the channel."""
    return list(Campaign.objects.exclude(status=Campaign.Status.ENDED)
                .filter(ads__placements__channel_id=channel_id).distinct().order_by("name"))


def plan_application(scenario) -> tuple[list[BudgetChange], list[str]]:
    """What applying the scenario would set: each mapped channel's new spend per day, split over its campaigns.

    A channel's daily amount is split in proportion to its campaigns' current daily budgets (equally
    when any has none); a campaign on several channels adds its shares. Columns not linked to a
    platform channel, and channels without campaigns, are listed as skipped.
    """
    dataset = scenario.model.dataset
    per_day = DAYS_PER_PERIOD[dataset.frequency]
    changes: dict[int, BudgetChange] = {}
    skipped = []
    for row in scenario.result["channels"]:
        channel_id = dataset.channel_map.get(row["name"])
        if not channel_id:
            skipped.append(f"{row['name']}: not linked to a platform channel")
            continue
        campaigns = campaigns_on(int(channel_id))
        if not campaigns:
            channel = Channel.objects.filter(pk=channel_id).first()
            skipped.append(f"{row['name']}: no campaign serves on {channel.name if channel else 'that channel'}")
            continue
        daily = row["to"] / per_day
        budgets = [float(c.daily_budget) if c.daily_budget else 0.0 for c in campaigns]
        weights = budgets if all(budgets) else [1.0] * len(campaigns)
        for campaign, weight in zip(campaigns, weights):
            change = changes.setdefault(campaign.pk, BudgetChange(
                campaign, [], float(campaign.daily_budget) if campaign.daily_budget is not None else None, 0.0))
            change.channels.append(row["name"])
            change.after += daily * weight / sum(weights)
    for change in changes.values():
        change.after = round(change.after, 2)
        total = change.campaign.total_budget
        if total is not None and change.after > float(total):
            change.note = f"capped at the total budget ({float(total):,.2f})"
            change.after = float(total)
    return sorted(changes.values(), key=lambda c: c.campaign.name), skipped


@transaction.atomic
def apply_scenario(scenario, *, by) -> list[BudgetChange]:
    """Set the campaigns' daily budgets as planned, and record what was set on the scenario and in the audit log."""
    from decimal import Decimal

    changes, _ = plan_application(scenario)
    for change in changes:
        campaign = Campaign.objects.select_for_update().get(pk=change.campaign.pk)
        before = audit.plain(campaign.daily_budget)
        campaign.daily_budget = Decimal(str(change.after))
        campaign.save(update_fields=["daily_budget"])
        audit.record("budget.apply", campaign, by=by, object_type="campaign", note=f"scenario “{scenario.name}”",
                     changes={"daily_budget": [before, audit.plain(campaign.daily_budget)]})
    scenario.applied = [{"campaign": c.campaign.pk, "name": c.campaign.name, "from": c.before, "to": c.after,
                         "channels": c.channels, "note": c.note} for c in changes]
    scenario.applied_at, scenario.applied_by = timezone.now(), by
    scenario.save(update_fields=["applied", "applied_at", "applied_by"])
    return changes


def platform_dataset(*, start: date, end: date, frequency: str, outcome: str, by) -> MixDataset:
    """A dataset of the platform's own spend per channel and outcome per period, linked to its channels."""
    from .mix_data import platform_series, store_dataset

    series = platform_series(start=start, end=end, frequency=frequency, outcome=outcome)
    first, last = series.dates[0], series.dates[-1]  # weekly series keep whole weeks only: name what they hold
    name = f"Platform {outcome}, {frequency}ly, {first:%d %b %Y} – {last:%d %b %Y}".replace("dayly", "daily")
    return store_dataset(series, name=name, source=MixDataset.Source.PLATFORM, by=by,
                                  channel_map=getattr(series, "channel_ids", None))


# Added for the budget pages (marketing/views/budget.py): the dataset's channel links, the one write they make outside this module.
def link_channels(dataset: MixDataset, mapping: dict[str, int]) -> MixDataset:
    """Link spend columns to platform channels (what applying a scenario sets); columns not given are unlinked."""
    dataset.channel_map = {column: int(pk) for column, pk in mapping.items() if column in dataset.channels}
    dataset.save(update_fields=["channel_map"])
    return dataset
