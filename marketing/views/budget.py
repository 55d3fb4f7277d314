"""Budget pages: mix datasets, their fitted marketing-mix models, the allocator's scenarios, and applying one.

The modelling and its numbers are marketing/mix.py and ml/mmm.py; these views fetch through the
access helpers, validate with marketing/budget_forms.py, call one action, and shape the stored
report into the page's figures and charts (formatted here, so the templates only lay out).
"""

from __future__ import annotations

import math

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRefresh

from accounts.access import viewer_required, writer_required

from .. import mix, mix_data
from ..access import get_dataset_for_user, get_mix_model_for_user, get_scenario_for_user
from ..budget_forms import AllocatorForm, ChannelMapForm, FitForm, PlatformForm, UploadForm
from ..models import BudgetScenario, Channel, MixDataset, MixModel
from .roi import money, percent

# One colour per channel, the same on every chart of a page; dark enough to read on white.
PALETTE = ["#5b2fd6", "#1f9d8b", "#f08c00", "#d6336c", "#2a5bd7", "#8f5a00", "#0b7285", "#a61e4d", "#5c940d", "#495057"]
INK, GREY, BASELINE = "#14213d", "#6b7280", "#adb5bd"
STATUS_BADGES = {"queued": "secondary", "running": "primary", "succeeded": "success", "failed": "danger"}
PER = {"day": "day", "week": "week", "month": "month"}
EXAMPLE = """date,tv_S,search_S,revenue,price
2024-01-01,1200,300,15400,9.99
2024-01-08,0,350,13900,9.99
2024-01-15,900,280,15100,8.99"""


def _colours(names: list[str]) -> dict[str, str]:
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}


def _round(values, digits: int = 2) -> list:
    return [None if v is None or not math.isfinite(v) else round(float(v), digits) for v in values]


def _number(x: float | None, digits: int = 1) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:,.{digits}f}"


def compact(x: float) -> str:
    """A large amount in a KPI card: 379.0 M, 14.5 k."""
    for size, suffix in ((1e9, "\u00a0bn"), (1e6, "\u00a0M"), (1e4, "\u00a0k")):
        if abs(x) >= size:
            return f"{x / size:,.1f}{suffix}"
    return f"{x:,.2f}"


def _ratio(x: float | None, digits: int = 3) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


class Units:
    """How a dataset's amounts read: spend is money per period; the outcome money (revenue) or a count."""

    def __init__(self, frequency: str, outcome_kind: str, outcome_name: str = "") -> None:
        self.per = PER.get(frequency, "period")
        self.revenue = outcome_kind == MixDataset.OutcomeKind.REVENUE
        self.outcome_name = outcome_name or ("revenue" if self.revenue else "outcomes")

    def outcome(self, x: float | None) -> str:
        return money(x) if self.revenue else _number(x)

    def efficiency(self, x: float | None) -> str:
        """ROI for revenue (a fraction, shown in %), CPA for counts (money per outcome)."""
        return percent(x, 0) if self.revenue else money(x)

    @property
    def efficiency_label(self) -> str:
        return "ROI" if self.revenue else "CPA"


# -- the overview ------------------------------------------------------------------------------------------


@require_GET
@viewer_required
def overview(request):
    if request.htmx:  # the datasets' pages
        return render(request, "marketing/budget.html#datasets", _overview(request))
    return render(request, "marketing/budget.html", _overview(request))


@require_POST
@writer_required
def upload(request):
    """Store an uploaded CSV as a dataset; a file with any problem stores nothing and lists every problem."""
    form = UploadForm(request.POST, request.FILES)
    problems, total = [], 0
    if form.is_valid():
        try:
            dataset = mix_data.import_csv(form.cleaned_data["file"], by=request.user, **form.options())
        except mix_data.MixDataError as exc:
            problems, total = exc.errors, exc.total
        else:
            messages.success(request, f"“{dataset.name}” stored: {dataset.periods} {PER[dataset.frequency]}s, "
                                      f"{len(dataset.channels)} channels. Fit a model on it below.")
            return redirect("budget:dataset", pk=dataset.pk)
    context = _overview(request, upload_form=form, upload_errors=problems, upload_error_total=total)
    return render(request, "marketing/budget.html", context, status=400)


@require_POST
@writer_required
def platform(request):
    """A dataset of the platform's own spend per channel and outcome per period."""
    form = PlatformForm(request.POST)
    if form.is_valid():
        d = form.cleaned_data
        try:
            dataset = mix.platform_dataset(start=d["start"], end=d["end"], frequency=d["frequency"], outcome=d["outcome"],
                                           by=request.user)
        except mix_data.MixDataError as exc:
            for e in exc.errors:
                form.add_error(e["column"] if e["column"] in form.fields else None, e["message"])
        else:
            messages.success(request, f"“{dataset.name}” built from the platform: {dataset.periods} periods, "
                                      f"{len(dataset.channels)} channels, linked to their platform channels.")
            return redirect("budget:dataset", pk=dataset.pk)
    return render(request, "marketing/budget.html", _overview(request, platform_form=form), status=400)


def _overview(request, *, upload_form=None, upload_errors=(), upload_error_total=0, platform_form=None) -> dict:
    datasets = MixDataset.objects.select_related("created_by").defer("data").annotate(
        n_fits=Count("models", filter=Q(models__status=MixModel.Status.SUCCEEDED))).order_by("-created_at", "-id")
    page = Paginator(datasets, 25).get_page(request.GET.get("page"))
    latest, fitting = {}, {}  # each dataset's latest fitted model, and its fit under way (shown until one is fitted)
    for model in (MixModel.objects.filter(dataset__in=[d.pk for d in page], status__in=[
            MixModel.Status.SUCCEEDED, MixModel.Status.QUEUED, MixModel.Status.RUNNING])
            .only("pk", "dataset_id", "number", "status", "metrics").order_by("-number")):
        (latest if model.status == MixModel.Status.SUCCEEDED else fitting).setdefault(model.dataset_id, model)
    for d in page:
        d.latest = latest.get(d.pk)
        d.fitting = fitting.get(d.pk)
    gains = [(pk, name, g) for pk, name, g in BudgetScenario.objects.values_list("pk", "name", "result__gain_pct")
             if isinstance(g, (int, float)) and math.isfinite(g)]
    best = max(gains, key=lambda x: x[2], default=None)
    fitted = MixModel.objects.filter(status=MixModel.Status.SUCCEEDED).count()
    kpis = [
        {"label": "Datasets", "value": f"{page.paginator.count:,}", "icon": "table", "sub": "uploaded or from the platform"},
        {"label": "Fitted models", "value": f"{fitted:,}", "icon": "cpu",
         "sub": f"{MixModel.objects.filter(status__in=[MixModel.Status.QUEUED, MixModel.Status.RUNNING]).count()} fitting now"},
        {"label": "Scenarios", "value": f"{BudgetScenario.objects.count():,}", "icon": "sliders",
         "sub": f"{BudgetScenario.objects.exclude(applied_at=None).count()} applied"},
        {"label": "Best predicted gain", "value": f"{best[2]:+,.1f}\u00a0%" if best else "—", "icon": "graph-up-arrow",
         "sub": best[1] if best else "no scenario yet", "url": reverse("budget:scenario", args=[best[0]]) if best else ""},
    ]
    return {"section": "budget", "page_obj": page, "kpis": kpis, "example": EXAMPLE,
            "upload_form": upload_form or UploadForm(), "upload_errors": upload_errors,
            "upload_error_total": upload_error_total, "platform_form": platform_form or PlatformForm(),
            "has_channels": Channel.objects.exists()}


# -- a dataset ---------------------------------------------------------------------------------------------


@require_GET
@viewer_required
def dataset_detail(request, pk: int):
    dataset = get_dataset_for_user(request.user, pk)
    if request.htmx and request.GET.get("part") == "fits":  # the fits list polls while a fit is queued or running
        return render(request, "marketing/budget_dataset.html#fits", _fits(dataset))
    return render(request, "marketing/budget_dataset.html", _dataset_page(dataset))


@require_POST
@writer_required
def dataset_fit(request, pk: int):
    """Queue a fit of the dataset (one already waiting is kept instead)."""
    dataset = get_dataset_for_user(request.user, pk, write=True)
    form = FitForm(request.POST)
    if form.is_valid():
        try:
            options = mix.check_fit_options(form.options())
        except ValueError as exc:
            form.add_error(None, str(exc))
        else:
            waiting = dataset.models.filter(status__in=[MixModel.Status.QUEUED, MixModel.Status.RUNNING]).exists()
            model = mix.queue_fit(dataset, by=request.user, options=options)
            if waiting:
                messages.info(request, f"Fit {model.number} is still under way: follow it below; queue another when it is done.")
            else:
                messages.success(request, f"Fit {model.number} queued: its progress shows below, and on the Jobs page.")
            return redirect("budget:dataset", pk=dataset.pk)
    return render(request, "marketing/budget_dataset.html", _dataset_page(dataset, fit_form=form), status=400)


@require_POST
@writer_required
def dataset_channels(request, pk: int):
    """Link the dataset's spend columns to platform channels."""
    dataset = get_dataset_for_user(request.user, pk, write=True)
    form = ChannelMapForm(dataset, request.POST)
    if form.is_valid():
        mix.link_channels(dataset, form.mapping())
        linked = len(dataset.channel_map)
        messages.success(request, f"{linked} of {len(dataset.channels)} spend columns linked to platform channels.")
        return redirect("budget:dataset", pk=dataset.pk)
    return render(request, "marketing/budget_dataset.html", _dataset_page(dataset, map_form=form), status=400)


def _fits(dataset: MixDataset) -> dict:
    fits = list(dataset.models.select_related("job", "created_by").defer("params", "report"))
    for f in fits:
        f.badge = STATUS_BADGES[f.status]
        f.waiting = f.status in (MixModel.Status.QUEUED, MixModel.Status.RUNNING)
        f.options_text = _options(f.options)
    return {"dataset": dataset, "fits": fits, "live": any(f.waiting for f in fits)}


def _dataset_page(dataset: MixDataset, *, fit_form=None, map_form=None) -> dict:
    data, units = dataset.data, Units(dataset.frequency, dataset.outcome_kind, dataset.outcome_name)
    colours = _colours(dataset.channels)
    spend = {c: data["spend"][c] for c in dataset.channels}
    summary = []
    for c in dataset.channels:
        values = spend[c]
        summary.append({"name": c, "colour": colours[c], "total": money(sum(values)), "mean": money(sum(values) / len(values)),
                        "max": money(max(values)), "active": sum(1 for v in values if v > 0), "link": dataset.channel_map.get(c)})
    channel_names = dict(Channel.objects.filter(pk__in=[int(v) for v in dataset.channel_map.values()]).values_list("pk", "name"))
    for row in summary:
        row["channel"] = channel_names.get(int(row["link"])) if row["link"] else None
    controls = [{"name": name, "min": _number(min(v), 2), "mean": _number(sum(v) / len(v), 2), "max": _number(max(v), 2)}
                for name, v in (data.get("controls") or {}).items()]
    chart = {
        "type": "bar",
        "data": {"labels": data["dates"], "datasets": [
            {"label": units.outcome_name, "data": _round(data["outcome"]), "type": "line", "yAxisID": "y1", "color": INK,
             "pointRadius": 0, "borderWidth": 2, "order": 0},
            *[{"label": c, "data": _round(spend[c]), "stack": "spend", "yAxisID": "y", "color": colours[c], "order": 1}
              for c in dataset.channels],
        ]},
        "options": {"interaction": {"mode": "index", "intersect": False}, "scales": {
            "x": {"stacked": True},
            "y": {"stacked": True, "beginAtZero": True, "position": "left", "title": {"display": True, "text": f"Spend per {units.per}"}},
            "y1": {"beginAtZero": True, "position": "right", "grid": {"drawOnChartArea": False},
                   "title": {"display": True, "text": f"{units.outcome_name} per {units.per}"}}}},
    }
    return {"section": "budget", **_fits(dataset), "units": units, "chart": chart, "summary": summary, "controls": controls,
            "total_spend": compact(sum(sum(v) for v in spend.values())), "total_outcome": compact(sum(data["outcome"])),
            "fit_form": fit_form or FitForm(), "map_form": map_form or ChannelMapForm(dataset)}


# -- a fitted model ----------------------------------------------------------------------------------------


@require_GET
@viewer_required
def model_detail(request, pk: int):
    model = get_mix_model_for_user(request.user, pk)
    if request.htmx and request.GET.get("part") == "progress":
        if model.status in (MixModel.Status.SUCCEEDED, MixModel.Status.FAILED):
            return HttpResponseClientRefresh()  # the whole page changes: the report or the error
        return render(request, "marketing/budget_model.html#progress", {"model": model})
    threshold, error = _threshold(request.GET.get("threshold"), model)
    context = _model_page(model, threshold=threshold, threshold_error=error)
    return render(request, "marketing/budget_model.html", context, status=400 if error else 200)


@require_POST
@writer_required
def model_allocate(request, pk: int):
    """Allocate a total budget with the model and keep it as a scenario; a budget that cannot hold says why."""
    from ml.mmm import MixError

    model = get_mix_model_for_user(request.user, pk, write=True)
    if model.status != MixModel.Status.SUCCEEDED:
        messages.error(request, "This fit has no curves to allocate with: wait for it to finish, or fit again.")
        return redirect("budget:model", pk=model.pk)
    form = AllocatorForm(model, request.POST)
    if form.is_valid():
        try:
            scenario = mix.save_scenario(model, by=request.user, **form.scenario())
        except MixError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Scenario “{scenario.name}” saved.")
            return redirect("budget:scenario", pk=scenario.pk)
    context = _model_page(model, threshold=model.report.get("threshold"), allocator=form)
    return render(request, "marketing/budget_model.html", context, status=400)


def _threshold(raw: str | None, model: MixModel) -> tuple[float | None, str]:
    default = model.report.get("threshold")
    if raw in (None, ""):
        return default, ""
    try:
        value = float(raw)
    except ValueError:
        return default, f"“{raw[:20]}” is not a number."
    if not math.isfinite(value) or value <= 0:
        return default, "The threshold must be a number above 0."
    return value, ""


def _model_page(model: MixModel, *, threshold: float | None, threshold_error: str = "", allocator=None) -> dict:
    dataset = model.dataset
    context = {"section": "budget", "model": model, "dataset": dataset, "badge": STATUS_BADGES[model.status],
               "units": Units(dataset.frequency, dataset.outcome_kind, dataset.outcome_name),
               "options": _options(model.options)}
    if model.status != MixModel.Status.SUCCEEDED:
        return context
    context.update(present_model(model, threshold))
    context.update(threshold_error=threshold_error, threshold_input=threshold,
                   allocator=allocator or AllocatorForm(model),
                   scenarios=list(model.scenarios.select_related("created_by").defer("result")),
                   scenario_gains=dict(model.scenarios.values_list("pk", "result__gain_pct")))
    for s in context["scenarios"]:
        gain = context["scenario_gains"].get(s.pk)
        s.gain = f"{gain:+,.1f}\u00a0%" if isinstance(gain, (int, float)) else "—"
        s.total_text = money(s.total)
    return context


def _options(options: dict) -> str:
    parts = [f"{options.get('adstock', 'geometric')} adstock", f"seasonality {options.get('seasonality', 2)}",
             f"{options.get('bootstrap', 40)} bootstrap refits"]
    if options.get("threshold") is not None:
        parts.append(f"plateau threshold {options['threshold']:g}")
    return ", ".join(parts)


def present_model(model: MixModel, threshold: float | None) -> dict:
    """The report as the page's figures, table and charts, with the plateau at `threshold` recomputed from the curves."""
    from ml import mmm

    report, metrics = model.report, model.metrics
    units = Units(report["frequency"], report["outcome_kind"], model.dataset.outcome_name)
    channels = report["channels"]
    names = [c["name"] for c in channels]
    colours = _colours(names)
    curves = mmm.Curves.from_params(model.params)
    threshold = threshold if threshold is not None else report.get("threshold") or 1.0
    rows, curve_charts = [], []
    for c in channels:
        name = c["name"]
        upto = max(2 * c["observed_max"], 1.5 * c["current"])
        plateau = curves.plateau(name, threshold, upto * 2)
        carry = c["carryover"]
        rows.append({
            "name": name, "colour": colours[name], "spend": money(c["spend"]),
            "contribution": units.outcome(c["contribution"]), "contribution_interval": _pair(c["contribution_interval"], units.outcome),
            "share": percent(c.get("share"), 0),
            "efficiency": units.efficiency(_efficiency(c["roas"], units)),
            "efficiency_interval": _pair(_efficiency_interval(c["roas_interval"], units), units.efficiency),
            "current": money(c["current"]), "observed_max": money(c["observed_max"]),
            "marginal": _marginal_text(c["mroas"], units),
            "marginal_interval": _pair(_marginal_interval(c["mroas_interval"], units), lambda v: _marginal_format(v, units)),
            "plateau": money(plateau) if plateau is not None else None,
            "plateau_beyond": plateau is not None and plateau > upto,
            "past_plateau": plateau is not None and c["current"] >= plateau,
            "half_life": carry["half_life"], "mean_lag": _number(carry["mean_lag"], 1),
        })
        curve_charts.append({"name": name, "id": f"curve-{len(curve_charts)}",
                             "chart": _curve_chart(c, plateau, curves, colours[name], units)})
    holdout = metrics.get("holdout_periods") or 0
    kpis = [
        {"label": "Holdout R²", "value": _ratio(metrics.get("r2_holdout")), "icon": "bullseye",
         "sub": f"on the last {holdout} {units.per}s, not fitted"},
        {"label": "Holdout NRMSE", "value": _ratio(metrics.get("nrmse_holdout")), "icon": "rulers", "sub": "error ÷ range of the outcome; lower is better"},
        {"label": "Holdout MAPE", "value": percent(metrics.get("mape_holdout"), 1), "icon": "percent", "sub": "mean absolute % error"},
        {"label": "R² on every period", "value": _ratio(metrics.get("r2_all")), "icon": "graph-up",
         "sub": f"fitted on {metrics.get('fit_periods', 0)}, held out {holdout}, then refitted on all"},
    ]
    return {
        "kpis": kpis, "rows": rows, "curve_charts": curve_charts, "threshold": threshold, "colours": colours,
        "baseline_share": percent(report.get("baseline_share"), 0), "recent_periods": report.get("recent_periods"),
        "current_total": money(sum(report["current"].values())), "has_band": bool(model.params.get("draws")),
        "charts": {"fit": _fit_chart(report, holdout, units), "contributions": _contribution_chart(report, colours, units),
                   "efficiency": _interval_chart(names, [_efficiency(c["roas"], units) for c in channels],
                                                 [_efficiency_interval(c["roas_interval"], units) for c in channels],
                                                 units, "ROI, %" if units.revenue else "CPA", scale=100 if units.revenue else 1),
                   "marginal": _interval_chart(names, [_marginal(c["mroas"], units) for c in channels],
                                               [_marginal_interval(c["mroas_interval"], units) for c in channels], units,
                                               "marginal ROI, %" if units.revenue else "cost of one more outcome",
                                               scale=100 if units.revenue else 1, reference=_marginal(threshold, units)),
                   "carryover": _carryover_chart(channels, colours, units)},
    }


def _pair(interval, form) -> str:
    if not interval or any(v is None or not math.isfinite(v) for v in interval):
        return ""
    return f"{form(interval[0])} to {form(interval[1])}"


def _efficiency(roas: float | None, units: Units) -> float | None:
    """ROI = ROAS − 1 for revenue; CPA = spend ÷ outcomes = 1 ÷ ROAS for counts."""
    if roas is None:
        return None
    if units.revenue:
        return roas - 1
    return 1 / roas if roas > 0 else None


def _efficiency_interval(interval, units: Units) -> list | None:
    if not interval:
        return None
    if units.revenue:
        return [interval[0] - 1, interval[1] - 1]
    return [1 / interval[1], 1 / interval[0]] if interval[0] > 0 else None


def _marginal(m: float | None, units: Units) -> float | None:
    """Marginal ROI (mROAS − 1) for revenue; the cost of one more outcome (1 ÷ marginal outcomes per unit) for counts."""
    if m is None:
        return None
    if units.revenue:
        return m - 1
    return 1 / m if m > 1e-12 else None


def _marginal_interval(interval, units: Units) -> list | None:
    if not interval:
        return None
    if units.revenue:
        return [interval[0] - 1, interval[1] - 1]
    return [1 / interval[1], 1 / interval[0]] if interval[0] > 1e-12 else None


def _marginal_format(v: float | None, units: Units) -> str:
    return percent(v, 0) if units.revenue else money(v)


def _marginal_text(m: float, units: Units) -> str:
    value = _marginal(m, units)
    return _marginal_format(value, units) if value is not None else "no return"


def _fit_chart(report: dict, holdout: int, units: Units) -> dict:
    actual, fitted = report["actual"], report["fitted"]
    n = len(actual)
    top = max(max(actual), max(fitted)) * 1.05 if n else 1
    return {"type": "line", "data": {"labels": report["dates"], "datasets": [
        {"label": "Actual", "data": _round(actual), "color": INK, "borderWidth": 2},
        {"label": "Fitted", "data": _round(fitted), "color": PALETTE[0], "borderWidth": 2, "borderDash": [5, 3]},
        # The holdout weeks as a shaded band: a stepped line at the top, filled down to the axis.
        {"label": "Holdout (scored, not fitted by the validation fit)", "data": [None] * (n - holdout) + [round(top, 2)] * holdout,
         "color": GREY, "backgroundColor": "#6b72801f", "borderColor": "transparent", "fill": "origin", "stepped": True},
    ]}, "options": {"interaction": {"mode": "index", "intersect": False},
                    "scales": {"y": {"title": {"display": True, "text": f"{units.outcome_name} per {units.per}"}}}}}


def _contribution_chart(report: dict, colours: dict, units: Units) -> dict:
    datasets = [{"label": "Baseline (trend, season, controls)", "data": _round(report["baseline"]), "color": BASELINE,
                 "backgroundColor": BASELINE + "cc", "borderColor": "transparent", "fill": "origin"}]
    for name, values in report["media"].items():
        datasets.append({"label": name, "data": _round(values), "color": colours[name], "backgroundColor": colours[name] + "b3",
                         "borderColor": "transparent", "fill": "-1"})
    return {"type": "line", "data": {"labels": report["dates"], "datasets": datasets},
            "options": {"interaction": {"mode": "index", "intersect": False},
                        "scales": {"y": {"stacked": True, "beginAtZero": True, "title": {"display": True, "text": f"{units.outcome_name} per {units.per}"}}}}}


def _interval_chart(names: list[str], values: list, intervals: list, units: Units, title: str, *, scale: float,
                    reference: float | None = None) -> dict:
    """A point at each estimate and a floating bar over its 90 % interval (error bars in Chart.js, as on the ROI page)."""
    datasets = [{"label": "Estimate", "data": [None if v is None else round(scale * v, 2) for v in values], "type": "line",
                 "showLine": False, "pointRadius": 7, "pointStyle": "rectRot", "color": INK}]
    if any(intervals):
        datasets.append({"label": "90 % bootstrap interval", "barPercentage": 0.35, "color": "#b197fc",
                         "data": [None if i is None else [round(scale * i[0], 2), round(scale * i[1], 2)] for i in intervals]})
    if reference is not None:
        datasets.append({"label": "Plateau threshold", "data": [round(scale * reference, 2)] * len(names), "type": "line",
                         "color": "#d6336c", "borderDash": [6, 4], "borderWidth": 1, "pointRadius": 0})
    return {"type": "bar", "data": {"labels": names, "datasets": datasets},
            "options": {"scales": {"y": {"title": {"display": True, "text": title}}}}}


def _curve_chart(c: dict, plateau: float | None, curves, colour: str, units: Units) -> dict:
    """Response per period against spend per period: the curve (dashed past the most ever spent), its band, the markers."""
    name, curve, observed = c["name"], c["curve"], c["observed_max"]
    xs, ys = curve["x"], curve["y"]
    points = [{"x": round(x, 2), "y": round(y, 2)} for x, y in zip(xs, ys)]
    seen = [p for x, p in zip(xs, points) if x <= observed]
    beyond = [p for x, p in zip(xs, points) if x >= observed]
    if seen and beyond and seen[-1]["x"] < observed:  # join the two parts at the most ever spent
        joint = {"x": round(observed, 2), "y": round(float(curves.response(name, observed)), 2)}
        seen.append(joint)
        beyond.insert(0, joint)
    top = max([*ys, *(curve["high"] or [])] or [1.0]) * 1.05
    datasets = []
    if curve.get("low") and curve.get("high"):
        datasets += [
            {"label": "90 % band, low", "data": [{"x": round(x, 2), "y": round(y, 2)} for x, y in zip(xs, curve["low"])],
             "showLine": True, "color": colour, "backgroundColor": "transparent", "borderColor": "transparent", "pointRadius": 0},
            {"label": "90 % band", "data": [{"x": round(x, 2), "y": round(y, 2)} for x, y in zip(xs, curve["high"])],
             "showLine": True, "color": colour, "backgroundColor": colour + "26", "borderColor": "transparent", "fill": "-1", "pointRadius": 0},
        ]
    datasets += [
        {"label": "Response within observed spend", "data": seen, "showLine": True, "color": colour, "borderWidth": 2.5,
         "backgroundColor": "transparent"},
        {"label": "Extrapolated beyond the most ever spent", "data": beyond, "showLine": True, "color": colour, "borderWidth": 2,
         "borderDash": [6, 4], "backgroundColor": "transparent"},
        {"label": "Most ever spent", "data": [{"x": round(observed, 2), "y": 0}, {"x": round(observed, 2), "y": round(top, 2)}],
         "showLine": True, "color": GREY, "borderWidth": 1, "borderDash": [2, 3], "backgroundColor": "transparent"},
        {"label": "Current spend", "data": [{"x": round(c["current"], 2), "y": round(float(curves.response(name, c["current"])), 2)}],
         "pointRadius": 7, "pointStyle": "circle", "color": INK, "backgroundColor": INK},
    ]
    if plateau is not None and plateau <= xs[-1]:
        datasets.append({"label": "Plateau", "data": [{"x": round(plateau, 2), "y": round(float(curves.response(name, plateau)), 2)}],
                         "pointRadius": 9, "pointStyle": "triangle", "color": "#d6336c", "backgroundColor": "#d6336c"})
    return {"type": "scatter", "data": {"datasets": datasets}, "options": {
        "plugins": {"legend": {"display": False}},
        "scales": {"x": {"min": 0, "title": {"display": True, "text": f"spend per {units.per}"}},
                   "y": {"min": 0, "title": {"display": True, "text": f"{units.outcome_name} per {units.per}"}}}}}


def _carryover_chart(channels: list[dict], colours: dict, units: Units) -> dict:
    """Bars per lag and channel, up to the last lag where some channel still shows half a percent of its effect."""
    lags = max(len(c["carryover"]["weights"]) for c in channels)
    while lags > 2 and all(len(c["carryover"]["weights"]) < lags or c["carryover"]["weights"][lags - 1] < 0.005 for c in channels):
        lags -= 1
    return {"type": "bar", "data": {
        "labels": ["same " + units.per if i == 0 else f"+{i}" for i in range(lags)],
        "datasets": [{"label": c["name"], "color": colours[c["name"]],
                      "data": ([round(100 * w, 2) for w in c["carryover"]["weights"]] + [None] * lags)[:lags]}
                     for c in channels]},
        "options": {"scales": {"y": {"beginAtZero": True, "title": {"display": True, "text": "% of the effect"}},
                               "x": {"title": {"display": True, "text": f"{units.per}s after the spend"}}}}}


# -- scenarios ---------------------------------------------------------------------------------------------


@require_GET
@viewer_required
def scenario_detail(request, pk: int):
    scenario = get_scenario_for_user(request.user, pk)
    return render(request, "marketing/budget_scenario.html", {"section": "budget", **present_scenario(scenario)})


@require_http_methods(["GET", "POST"])
@writer_required
def scenario_apply(request, pk: int):
    """GET: what applying would set, to confirm; POST: set the campaigns' daily budgets."""
    scenario = get_scenario_for_user(request.user, pk, write=True)
    changes, skipped = mix.plan_application(scenario)
    if request.method == "POST":
        if not changes:
            messages.error(request, "Nothing to apply: no spend column of this scenario is linked to a channel with campaigns. "
                                    "Link them on the dataset's page.")
            return redirect("budget:scenario", pk=scenario.pk)
        applied = mix.apply_scenario(scenario, by=request.user)
        messages.success(request, f"Daily budgets set on {len(applied)} campaign{'s' if len(applied) != 1 else ''}.")
        return redirect("budget:scenario", pk=scenario.pk)
    rows = [{"campaign": c.campaign, "channels": ", ".join(c.channels), "before": money(c.before) if c.before is not None else "no daily budget",
             "after": money(c.after), "note": c.note,
             "change": percent((c.after - c.before) / c.before, 0) if c.before else "—"} for c in changes]
    return render(request, "marketing/budget_apply.html", {
        "section": "budget", "scenario": scenario, "dataset": scenario.model.dataset, "rows": rows, "skipped": skipped,
        "per_day": mix.DAYS_PER_PERIOD[scenario.model.dataset.frequency], "units": Units(scenario.model.dataset.frequency, "")})


def present_scenario(scenario: BudgetScenario) -> dict:
    r = scenario.result
    dataset = scenario.model.dataset
    units = Units(dataset.frequency, dataset.outcome_kind, dataset.outcome_name)
    relative = scenario.bounds_mode == BudgetScenario.BoundsMode.RELATIVE
    rows = []
    for c in r["channels"]:
        entered = scenario.bounds.get(c["name"])
        rows.append({
            "name": c["name"], "from": money(c["from"]), "to": money(c["to"]),
            "change": "—" if c["change_pct"] is None else f"{c['change_pct']:+,.0f}\u00a0%",
            "up": c["change"] > 0.005 * max(c["from"], 1e-9), "down": c["change"] < -0.005 * max(c["from"], 1e-9), "bounds": f"{money(c['low'])} to {money(c['high'])}",
            "entered": f"{entered[0]:g}–{entered[1]:g} %" if relative and entered else "",
            "response_from": units.outcome(c["response_from"]), "response_to": units.outcome(c["response_to"]),
            "marginal_from": _ratio(c["mroas_from"]), "marginal_to": _ratio(c["mroas_to"]),
            "why": c["why"], "warning": c["warning"]})
    interval = r.get("gain_pct_interval")
    names = [c["name"] for c in r["channels"]]
    kpis = [
        {"label": f"Spend per {units.per}", "value": money(r["spent"]), "icon": "wallet2", "sub": f"now {money(r['current_total'])}"},
        {"label": f"Media {units.outcome_name} per {units.per}", "value": units.outcome(r["response_after"]), "icon": "cash-coin",
         "sub": f"now {units.outcome(r['response_before'])}"},
        {"label": "Predicted gain", "value": "—" if r["gain_pct"] is None else f"{r['gain_pct']:+,.1f}\u00a0%", "icon": "graph-up-arrow",
         "sub": f"90 % interval {interval[0]:+,.1f} to {interval[1]:+,.1f} %" if interval else "no bootstrap interval"},
        {"label": f"Media {units.efficiency_label}", "value": units.efficiency(r["efficiency_after"]), "icon": "speedometer2",
         "sub": f"now {units.efficiency(r['efficiency_before'])}"},
    ]
    target = ""
    if scenario.objective == BudgetScenario.Objective.EFFICIENCY and scenario.target is not None:
        target = f"ROI at least {percent(scenario.target, 0)}" if units.revenue else f"CPA at most {money(scenario.target)}"
    applied = [{"name": a["name"], "from": money(a["from"]) if a["from"] is not None else "no daily budget", "to": money(a["to"])}
               for a in scenario.applied]
    return {"scenario": scenario, "applied": applied, "result": r, "model": scenario.model, "dataset": dataset, "units": units, "rows": rows,
            "kpis": kpis, "target": target, "warnings": r.get("warnings") or [],
            "siblings": scenario.model.scenarios.exclude(pk=scenario.pk).values_list("pk", "name")[:20],
            "charts": {"spend": _spend_chart(r, names, units), "frontier": _frontier_chart(r, units)}}


def _spend_chart(r: dict, names: list[str], units: Units) -> dict:
    return {"type": "bar", "data": {"labels": names, "datasets": [
        {"label": "Current", "data": _round([c["from"] for c in r["channels"]]), "color": GREY},
        {"label": "Proposed", "data": _round([c["to"] for c in r["channels"]]), "color": PALETTE[0]},
        {"label": "Allowed range", "data": [[round(c["low"], 2), round(c["high"], 2)] for c in r["channels"]], "color": "#d0bfff"},
    ]}, "options": {"scales": {"y": {"beginAtZero": True, "title": {"display": True, "text": f"spend per {units.per}"}}}}}


def _frontier_chart(r: dict, units: Units) -> dict:
    return {"type": "scatter", "data": {"datasets": [
        {"label": "Best response for each total", "data": [{"x": round(p["spend"], 2), "y": round(p["response"], 2)} for p in r["frontier"]],
         "showLine": True, "color": PALETTE[0], "borderWidth": 2, "pointRadius": 0, "backgroundColor": "transparent"},
        {"label": "Current", "data": [{"x": round(r["current_total"], 2), "y": round(r["response_before"], 2)}],
         "pointRadius": 7, "pointStyle": "circle", "color": INK, "backgroundColor": INK},
        {"label": "Proposed", "data": [{"x": round(r["spent"], 2), "y": round(r["response_after"], 2)}],
         "pointRadius": 9, "pointStyle": "triangle", "color": "#d6336c", "backgroundColor": "#d6336c"},
    ]}, "options": {"scales": {"x": {"title": {"display": True, "text": f"total spend per {units.per}"}},
                               "y": {"title": {"display": True, "text": f"media {units.outcome_name} per {units.per}"}}}}}


@require_GET
@viewer_required
def compare(request):
    """Scenarios side by side: a column each, a row per total and per channel (blank where a scenario has no such channel)."""
    raw = request.GET.getlist("ids")
    context = {"section": "budget", "error": "", "columns": [], "rows": [], "chart": None}
    try:
        ids = list(dict.fromkeys(int(x) for x in raw))
    except ValueError:
        context["error"] = "The scenarios to compare are given by their numbers (ids=1&ids=2)."
        return render(request, "marketing/budget_compare.html", context, status=400)
    found = {s.pk: s for s in BudgetScenario.objects.filter(pk__in=ids).select_related("model__dataset")}
    missing = [i for i in ids if i not in found]
    if missing:
        context["error"] = (f"No scenario {', '.join(map(str, missing))}: it was deleted, or the link is wrong.")
        return render(request, "marketing/budget_compare.html", context, status=404)
    scenarios = [found[i] for i in ids]
    context.update(_comparison(scenarios))
    return render(request, "marketing/budget_compare.html", context)


def _comparison(scenarios: list[BudgetScenario]) -> dict:
    if not scenarios:
        return {}
    names = list(dict.fromkeys(c["name"] for s in scenarios for c in s.result["channels"]))
    columns = []
    for s in scenarios:
        dataset = s.model.dataset
        units = Units(dataset.frequency, dataset.outcome_kind, dataset.outcome_name)
        per = {c["name"]: c for c in s.result["channels"]}
        columns.append({"scenario": s, "units": units, "per": per})
    r = [c["scenario"].result for c in columns]

    def row(label: str, values: list[str], *, strong: bool = False) -> dict:
        return {"label": label, "values": values, "strong": strong}

    pers = {c["units"].per for c in columns}
    per = pers.pop() if len(pers) == 1 else "period"
    rows = [
        row("Dataset · fit", [f"{c['scenario'].model.dataset.name} · fit {c['scenario'].model.number}" for c in columns]),
        row("Objective", [c["scenario"].get_objective_display() for c in columns]),
        row(f"Budget per {per}", [money(x["total"]) for x in r]),
        row(f"Spend per {per}", [money(x["spent"]) for x in r], strong=True),
        row("Media response now", [c["units"].outcome(x["response_before"]) for c, x in zip(columns, r)]),
        row("Media response proposed", [c["units"].outcome(x["response_after"]) for c, x in zip(columns, r)], strong=True),
        row("Predicted gain", ["—" if x["gain_pct"] is None else f"{x['gain_pct']:+,.1f}\u00a0%" for x in r], strong=True),
        row("Efficiency proposed", [f"{c['units'].efficiency_label} {c['units'].efficiency(x['efficiency_after'])}" for c, x in zip(columns, r)]),
        row("Warnings", [str(len(x.get("warnings") or [])) for x in r]),
    ]
    channel_rows = []
    for name in names:
        values = []
        for c in columns:
            ch = c["per"].get(name)
            values.append("" if ch is None else money(ch["to"]) + ("" if ch["change_pct"] is None else f" ({ch['change_pct']:+,.0f}\u00a0%)"))
        channel_rows.append(row(name, values))
    datasets = []
    same_dataset = len({s.model.dataset_id for s in scenarios}) == 1
    if same_dataset:
        first = columns[0]["per"]
        datasets.append({"label": "Current", "color": GREY, "data": _round([first[n]["from"] if n in first else None for n in names])})
    for i, c in enumerate(columns):
        datasets.append({"label": c["scenario"].name, "color": PALETTE[i % len(PALETTE)],
                         "data": _round([c["per"][n]["to"] if n in c["per"] else None for n in names])})
    chart = {"type": "bar", "data": {"labels": names, "datasets": datasets},
             "options": {"scales": {"y": {"beginAtZero": True, "title": {"display": True, "text": f"spend per {per}"}}}}}
    return {"columns": columns, "per": per, "rows": rows, "channel_rows": channel_rows, "chart": chart, "same_dataset": same_dataset,
            "updated": timezone.localtime()}
