from __future__ import annotations

import math
from datetime import datetime
from itertools import groupby

from django.apps import apps
from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count, Max, Q
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.text import slugify
from django.views.decorators.http import require_GET, require_POST

from accounts.access import viewer_required, writer_required

from . import registry
from .models import Job, ModelVersion


@require_GET
@viewer_required
def job_list(request):
    status = request.GET.get("status", "")
    jobs = Job.objects.select_related("created_by")
    if status in Job.Status.values:
        jobs = jobs.filter(status=status)
    page = Paginator(jobs, 25).get_page(request.GET.get("page"))
    counts = Job.objects.aggregate(
        running=Count("id", filter=Q(status=Job.Status.RUNNING)),
        queued=Count("id", filter=Q(status=Job.Status.QUEUED)),
        failed=Count("id", filter=Q(status=Job.Status.FAILED)),
        succeeded=Count("id", filter=Q(status=Job.Status.SUCCEEDED)),
    )
    context = {
        "page_obj": page,
        "counts": counts,
        "status": status,
        "statuses": Job.Status.choices,
        "live": any(not j.is_finished for j in page),
        "query": f"status={status}" if status else "",
        "target": "#jobs",
    }
    if request.htmx:
        return render(request, "ml/job_list.html#table", context)
    return render(request, "ml/job_list.html", context)


@require_GET
@viewer_required
def job_detail(request, pk: int):
    job = get_object_or_404(Job.objects.select_related("created_by"), pk=pk)
    context = {"job": job, "result": describe_result(job.result)}
    if request.htmx:
        return render(request, "ml/job_detail.html#card", context)
    return render(request, "ml/job_detail.html", context)


# Result keys whose value is a ModelVersion's id (or {"id": …}): shown as the model they name, linked.
MODEL_REFERENCES = ("version", "hit_model", "tagger")


def describe_result(result: dict) -> list[tuple[str, str, str]]:
    """A job's result as (label, text, link) lines an operator reads: "Segments: loyal 34 · casual 2", not a
    Python dict; a model the job registered reads "campaign:3 v2 (XGBoost)" and links to its page, not "57"."""

    def text(value, depth: int = 0) -> str:
        if isinstance(value, bool) or value is None:
            return {True: "yes", False: "no", None: "—"}[value]
        if isinstance(value, int):
            return f"{value:,}"
        if isinstance(value, float):
            return f"{value:,.3f}" if abs(value) < 1000 else f"{value:,.0f}"
        if isinstance(value, dict):
            if depth:
                return "…"
            return " · ".join(f"{k.replace('_', ' ')} {text(v, depth + 1)}" for k, v in value.items()) or "—"
        if isinstance(value, (list, tuple)):
            shown = ", ".join(text(v, depth + 1) for v in value[:10])
            return shown + (f" and {len(value) - 10:,} more" if len(value) > 10 else "") if value else "—"
        if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10] == "T":  # an ISO time
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                return value
            return date_format(timezone.localtime(moment) if timezone.is_aware(moment) else moment, "M j, Y, H:i")
        return str(value)

    def model_id(key: str, value) -> int | None:
        if key not in MODEL_REFERENCES:
            return None
        if isinstance(value, dict):
            value = value.get("id")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    ids = {found for key, value in result.items() if (found := model_id(key, value)) is not None}
    models = ModelVersion.objects.in_bulk(ids) if ids else {}
    lines = []
    for key, value in result.items():
        if key == "traceback" or (key in ("number", "kind") and model_id("version", result.get("version")) in models):
            continue  # the model's line already says its number and kind ("campaign:3 v2 (XGBoost)")
        label, found = METRIC_LABELS.get(key) or key.replace("_", " ").capitalize(), model_id(key, value)
        if key == "kind" and value in ModelVersion.Kind.values:  # "XGBoost", not the stored "xgboost"
            lines.append(("Model", ModelVersion.Kind(value).label, ""))
        elif found is None:
            lines.append((label, text(value), ""))
        elif found in models:
            version = models[found]
            lines.append((label, f"{version.key} v{version.version} ({version.get_kind_display()})",
                          reverse("models:detail", args=[found])))
        else:
            lines.append((label, f"model #{found}, no longer stored", ""))
    return lines


# Known metrics, in the order they are shown: (key in ModelVersion.metrics, label, decimals).
# The model list shows the first four as columns; a version's page shows all that are present.
METRICS = [("auc", "AUC", 3), ("log_loss", "Log loss", 3), ("rmse", "RMSE", 3),
           ("calibration_error", "Calibration error", 3)]
MORE_METRICS = [("qini", "Qini coefficient", 3), ("uplift_auc", "Uplift AUC", 3), ("uplift_at_30", "Uplift at 30 %", 3),
                ("observed_uplift", "Average effect", 3), ("base_rate", "Base rate", 3), ("mean_prediction", "Mean prediction", 3),
                ("train_seconds", "Training seconds", 2),
                ("recall10", "Recall@10", 3), ("ndcg10", "NDCG@10", 3), ("popularity_recall10", "Popularity recall@10", 3),
                ("popularity_ndcg10", "Popularity NDCG@10", 3), ("customers", "Customers", 0), ("items", "Items", 0),
                ("mape_ratio_vs_naive_d7", "MAPE vs naive, day 7", 3), ("mape_d7", "MAPE, day 7", 3),
                ("coverage_d7", "80 % interval coverage, day 7", 2), ("mape_d30", "MAPE, day 30", 3),
                ("spearman", "Spearman correlation", 3), ("auc_top_quartile", "AUC, top quartile", 3), ("mae", "MAE", 3),
                ("genre_accuracy", "Genre accuracy", 3), ("mood_accuracy", "Mood accuracy", 3),
                ("genre_majority_accuracy", "Genre accuracy, majority class", 3)]
LIST_COLUMNS = 4  # headline metrics the model list shows per subject
METRIC_LABELS = {key: label for key, label, _ in METRICS + MORE_METRICS}  # "AUC", not "Auc", in a job's result
CANDIDATE_COLUMNS = [("auc", "AUC"), ("log_loss", "Log loss"), ("rmse", "RMSE"),
                     ("calibration_error", "Calibration error"), ("train_seconds", "Training seconds")]
GATE_METHODS = [("ipw", "IPW"), ("snipw", "Self-normalised IPW"), ("dr", "Doubly robust")]
CRITERIA_COLUMNS = [("information_gain", "Information gain"), ("gain_ratio", "Gain ratio"),
                    ("gini_gain", "Gini gain"), ("symmetric_uncertainty", "Symmetric uncertainty"),
                    ("response_rate_spread", "Rate spread")]
SHARE_COLOUR, RATE_COLOUR, DIAGONAL_COLOUR = "#5b2fd6", "#f08c00", "#6b7280"


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _metric_rows(metrics: dict) -> list[tuple[str, float, int]]:
    """(label, value, decimals): known metrics first, in a fixed order, then any other numbers the trainer
    recorded. Strings and nested results (the candidates, the gate) have panels of their own."""
    known = METRICS + MORE_METRICS
    rows = [(label, metrics[name], digits) for name, label, digits in known if _is_number(metrics.get(name))]
    names = {name for name, _, _ in known}
    return rows + [(name.replace("_", " ").capitalize(), value, 3) for name, value in metrics.items()
                   if name not in names and _is_number(value)]


UPLIFT_COLUMNS = [("qini", "Qini coefficient"), ("uplift_auc", "Uplift AUC"), ("uplift_at_30", "Uplift at 30 %")]
LEARNER_LABELS = {"s_learner": "S-learner", "t_learner": "T-learner", "x_learner": "X-learner",
                  "class_transformation": "Class transformation"}


def _candidate_columns(metrics: dict) -> list[tuple[str, str]]:
    """An uplift model's candidates are learners judged by Qini; a response model's, kinds judged by AUC."""
    return UPLIFT_COLUMNS if "learner" in metrics else CANDIDATE_COLUMNS


def _candidate_rows(metrics: dict) -> list[dict]:
    """Every candidate kind trained for this version with its validation metrics, the chosen one marked."""
    candidates = metrics.get("candidates")
    if not isinstance(candidates, dict):
        return []
    labels = {**dict(ModelVersion.Kind.choices), **LEARNER_LABELS}
    chosen = metrics.get("learner") or metrics.get("candidate")
    return [{"kind": kind, "label": labels.get(kind, kind), "chosen": kind == chosen,
             "values": [values.get(name) if _is_number(values.get(name)) else None for name, _ in _candidate_columns(metrics)]}
            for kind, values in candidates.items() if isinstance(values, dict)]


def _uplift_charts(report: dict) -> dict | None:
    """Qini and uplift curves of an uplift model on its held-out customers, with the perfect and the random ones."""
    found = report.get("uplift") if isinstance(report, dict) else None
    if not isinstance(found, dict):
        return None

    def chart(name: str, perfect: str, title: str) -> dict | None:
        points = [{"x": x, "y": y} for x, y in found.get(name) or [] if _is_number(x) and _is_number(y)]
        best = [{"x": x, "y": y} for x, y in found.get(perfect) or [] if _is_number(x) and _is_number(y)]
        if not points:
            return None
        end = points[-1]
        return {"type": "scatter", "data": {"datasets": [
            {"label": "This model", "data": points, "showLine": True, "color": SHARE_COLOUR, "borderWidth": 2, "pointRadius": 0},
            {"label": "Perfect ranking", "data": best, "showLine": True, "color": RATE_COLOUR, "borderWidth": 1, "pointRadius": 0},
            {"label": "Random targeting", "data": [{"x": 0, "y": 0}, end], "showLine": True, "color": DIAGONAL_COLOUR,
             "borderWidth": 1, "borderDash": [5, 5], "pointRadius": 0},
        ]}, "options": {"scales": {"x": {"min": 0, "title": {"display": True, "text": "customers targeted, best first"}},
                                   "y": {"title": {"display": True, "text": title}}}}}

    return {"qini": chart("qini_curve", "perfect_qini_curve", "incremental responders (Qini)"),
            "uplift": chart("uplift_curve", "perfect_uplift_curve", "incremental responses (uplift)"),
            "n": found.get("n"), "n_treated": found.get("n_treated")}


def _estimate(value) -> dict | None:
    """One off-policy estimate as the page shows it, or None when the gate could not compute it."""
    if not isinstance(value, dict) or not _is_number(value.get("value")):
        return None
    return {k: value.get(k) for k in ("value", "low", "high", "n", "effective_sample_size")}


def _gate_panel(metrics: dict) -> dict | None:
    """The off-policy gate's verdict with its estimates per method, or None for a version that was not gated."""
    gate = metrics.get("gate")
    if not isinstance(gate, dict) or not gate:
        return None
    estimates = gate.get("estimates") if isinstance(gate.get("estimates"), dict) else {}
    rows = [{"method": method, "label": label,
             "estimates": [_estimate((estimates.get(policy) or {}).get(method)) for policy in ("candidate", "incumbent")]}
            for method, label in GATE_METHODS]
    return {"passed": bool(gate.get("passed")), "reason": gate.get("reason", ""), "decisions": gate.get("decisions"),
            "incumbent": gate.get("incumbent") or "", "rows": [r for r in rows if any(r["estimates"])],
            "difference": _estimate(gate.get("difference"))}


def _percent(values) -> list[float | None]:
    return [round(100 * float(v), 2) if _is_number(v) else None for v in values]


def _variable_chart(labels: list[str], shares, rates, *, ordered: bool) -> dict:
    """Bars: the share of rows in each bin or level; line: its response rate, on a second axis.

    Levels of a category have no order, so their rates are points, not a line through them."""
    return {
        "type": "bar",
        "data": {"labels": labels, "datasets": [
            {"type": "line", "label": "Response rate (%)", "data": _percent(rates), "yAxisID": "rate",
             "color": RATE_COLOUR, "pointRadius": 3 if ordered else 5, "showLine": ordered, "borderWidth": 2, "order": 0,
             "cubicInterpolationMode": "monotone"},
            {"label": "Rows (%)", "data": _percent(shares), "yAxisID": "share", "color": SHARE_COLOUR,
             "backgroundColor": SHARE_COLOUR + "55", "order": 1},
        ]},
        "options": {
            "interaction": {"mode": "index", "intersect": False},
            "scales": {
                "share": {"position": "left", "beginAtZero": True, "title": {"display": True, "text": "% of rows"}},
                "rate": {"position": "right", "beginAtZero": True, "grid": {"drawOnChartArea": False},
                         "title": {"display": True, "text": "response rate %"}},
            },
        },
    }


def _curve_chart(curve_label: str, points: list[dict], diagonal_label: str, x_title: str, y_title: str,
                 *, top: float = 1.0, point_radius: int = 0) -> dict:
    """A curve over the unit square (or [0, top]) with the diagonal a useless or perfect model would draw."""
    return {
        "type": "scatter",
        "data": {"datasets": [
            # monotone: app.js gives every line a tension, which would overshoot between these points
            {"label": curve_label, "data": points, "showLine": True, "color": SHARE_COLOUR, "borderWidth": 2,
             "pointRadius": point_radius, "cubicInterpolationMode": "monotone"},
            {"label": diagonal_label, "data": [{"x": 0, "y": 0}, {"x": top, "y": top}], "showLine": True,
             "color": DIAGONAL_COLOUR, "borderWidth": 1, "borderDash": [5, 5]},
        ]},
        "options": {"scales": {
            "x": {"min": 0, "max": top, "title": {"display": True, "text": x_title}},
            "y": {"min": 0, "max": top, "title": {"display": True, "text": y_title}},
        }},
    }


def _exploration(report: dict, *, sort: str, auc) -> dict | None:
    """The variable exploration report: criteria per variable, a chart per variable, ROC and calibration."""
    if not isinstance(report, dict) or not report:
        return None
    criteria = [c for c in report.get("criteria") or [] if isinstance(c, dict) and c.get("feature")]
    rank = {c["feature"]: n for n, c in enumerate(criteria, 1)}
    variables, ids = [], set()
    for kind, key, parts in (("numeric", "bins", "bins"), ("categorical", "levels", "levels")):
        for entry in report.get(key) or []:
            rows = [r for r in (entry.get(parts) if isinstance(entry, dict) else None) or [] if isinstance(r, dict)]
            if not rows:
                continue
            name = str(entry.get("feature", "?"))
            slug = f"var-{slugify(name) or 'feature'}"
            slug = slug if slug not in ids else f"{slug}-{len(ids)}"
            ids.add(slug)
            labels = [str(r.get("label", "")) for r in rows]
            chart = _variable_chart(labels, [r.get("share") for r in rows], [r.get("response_rate") for r in rows],
                                    ordered=kind == "numeric")
            table = [{"label": label, "count": r.get("count"), "share": share, "rate": rate} for label, r, share, rate
                     in zip(labels, rows, chart["data"]["datasets"][1]["data"], chart["data"]["datasets"][0]["data"])]
            variables.append({"name": name, "id": slug, "chart_id": f"{slug}-chart", "kind": kind, "table": table,
                              "chart": chart, "rank": rank.get(name)})
    variables.sort(key=lambda v: (v["rank"] is None, v["rank"] or 0))
    constant = [v["name"] for v in variables if len(v["table"]) < 2]
    anchors = {v["name"]: v["id"] for v in variables if len(v["table"]) >= 2}
    criteria = [{**c, "rank": n, "anchor": anchors.get(c["feature"]),
                 "values": [c.get(name) if _is_number(c.get(name)) else None for name, _ in CRITERIA_COLUMNS]}
                for n, c in enumerate(criteria, 1)]
    if sort in dict(CRITERIA_COLUMNS):
        criteria.sort(key=lambda c: (not _is_number(c.get(sort)), -(c.get(sort) or 0)))
    roc = [{"x": p["fpr"], "y": p["tpr"]} for p in report.get("roc") or []
           if isinstance(p, dict) and _is_number(p.get("fpr")) and _is_number(p.get("tpr"))]
    calibration = [p for p in report.get("calibration") or []
                   if isinstance(p, dict) and _is_number(p.get("predicted")) and _is_number(p.get("observed"))]
    top = max([0.05, *(max(p["predicted"], p["observed"]) for p in calibration)])
    top = min(1.0, math.ceil(top * 20) / 20)  # the next 5 %: small rates get the whole chart, not a corner
    roc_label = f"ROC (AUC {auc:.3f})" if _is_number(auc) else "ROC"
    return {
        "criteria": criteria, "variables": [v for v in variables if len(v["table"]) >= 2], "constant": constant,
        "boundary": _moment(report.get("boundary")),
        "roc": _curve_chart(roc_label, roc, "Random ranking", "false positive rate", "true positive rate") if roc else None,
        "calibration": _curve_chart(
            "Observed rate per prediction group", [{"x": p["predicted"], "y": p["observed"]} for p in calibration],
            "Perfect calibration", "mean predicted rate", "observed response rate", top=top, point_radius=3,
        ) if calibration else None,
        "calibration_points": calibration,
    }


def _moment(value) -> datetime | None:
    """An ISO timestamp stored in JSON, as a datetime the template can localise (None if it is not one)."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _trained_on_rows(trained_on: dict) -> list[dict]:
    """What the version was trained on, each value shown for what it is: counts, moments, lists, words."""
    rows = []
    for key, value in trained_on.items():
        row = {"label": key.replace("_", " "), "value": value, "kind": "text"}
        if _is_number(value):
            row["kind"] = "number"
        elif isinstance(value, (list, tuple)):
            shown = ", ".join(str(v) for v in value[:20])
            row["value"] = f"{shown}, … ({len(value)} in all)" if len(value) > 20 else (shown or "none")
        elif isinstance(value, dict):
            row["value"] = ", ".join(f"{k}: {v}" for k, v in value.items()) or "none"
        elif _moment(value) is not None and len(value) >= 10:
            row.update(value=_moment(value), kind="moment")
        rows.append(row)
    return rows


GENRE_COLOURS = ["#5b2fd6", "#1f9d8b", "#f08c00", "#d6336c", "#2a5bd7", "#94d82d", "#845ef7", "#e8590c", "#0c8599", "#c2255c"]
OTHER_COLOUR = "#adb5bd"


def _place_customer(version: ModelVersion, projection: dict, raw: str) -> dict | None:
    """Where a customer (by numeric id, as stored in the artefact) falls on the map; None when unknown.

    ml does not import audiences, so the customer is looked up in the artefact's own ids only.
    """
    import numpy as np

    try:
        customer_id = int(raw)
    except (TypeError, ValueError):
        return None
    try:
        with np.load(registry.artefact_path(version)) as npz:
            ids, users = npz["customer_ids"], npz["user_vectors"]
            row = np.flatnonzero(ids == customer_id)
            if not len(row) or not users.shape[1]:
                return None
            vector = users[row[0]].astype(np.float64)
    except (OSError, KeyError, ValueError):
        return None
    x, y = (vector - np.asarray(projection["mean"])) @ np.asarray(projection["components"]).T
    return {"x": float(x), "y": float(y), "id": customer_id}


def _recsys_panel(version: ModelVersion, customer: str) -> dict | None:
    """A recommender's embedding map: items on two PCA axes coloured by genre (top 10), a customer placed on it."""
    if not version.key.startswith("recsys:"):
        return None
    found = (version.report or {}).get("map") or {}
    points = [p for p in found.get("points") or [] if isinstance(p, dict) and _is_number(p.get("x")) and _is_number(p.get("y"))]
    projection = found.get("projection")
    counts: dict[str, int] = {}
    for p in points:
        counts[str(p.get("genre") or "—")] = counts.get(str(p.get("genre") or "—"), 0) + 1
    top = [g for g, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:10]]
    def point(p: dict) -> dict:  # "name": the tooltip says which item a dot is (static/js/app.js)
        name = " — ".join(str(v) for v in (p.get("title"), p.get("artist")) if v)
        return {"x": p["x"], "y": p["y"], "name": name} if name else {"x": p["x"], "y": p["y"]}

    datasets = [{"label": genre, "color": GENRE_COLOURS[n], "pointRadius": 3,
                 "data": [point(p) for p in points if str(p.get("genre") or "—") == genre]}
                for n, genre in enumerate(top)]
    others = [point(p) for p in points if str(p.get("genre") or "—") not in top]
    if others:
        datasets.append({"label": "other genres", "color": OTHER_COLOUR, "pointRadius": 2, "data": others})
    placed = _place_customer(version, projection, customer) if customer and projection else None
    if placed:
        datasets.insert(0, {"label": f"customer {placed['id']}", "color": "#212529", "pointRadius": 9,
                            "pointStyle": "crossRot", "borderWidth": 3, "data": [{"x": placed["x"], "y": placed["y"]}]})
    chart = {"type": "scatter", "data": {"datasets": datasets},
             "options": {"scales": {"x": {"title": {"display": True, "text": "first principal axis"}},
                                    "y": {"title": {"display": True, "text": "second principal axis"}}}}}
    return {"chart": chart if points else None, "points": len(points), "genres": top, "customer": customer,
            "placed": placed, "can_place": projection is not None}


@require_GET
@viewer_required
def model_list(request):
    versions = list(ModelVersion.objects.order_by("key", "-version"))
    keys = [{"key": key, "versions": list(rows)} for key, rows in groupby(versions, key=lambda v: v.key)]
    for group in keys:  # each subject's own key figures: a recommender has no AUC, a campaign model no recall
        group["metric_names"] = _headline_metrics(group["versions"])
        for v in group["versions"]:
            v.metric_cells = [(v.metrics.get(name) if _is_number(v.metrics.get(name)) else None, digits)
                              for name, _, digits in group["metric_names"]]
    # A campaign's models name it; versions that did not record its name (trained outside the normal flow) look it up.
    # By app label, not by import: ml stays below marketing.
    campaign_ids = {group["versions"][0].campaign_id for group in keys} - {None}
    campaigns = dict(apps.get_model("marketing", "Campaign").objects.filter(pk__in=campaign_ids).values_list("pk", "name"))
    for group in keys:
        latest = group["versions"][0]
        group["champion"] = next((v for v in group["versions"] if v.status == ModelVersion.Status.CHAMPION), None)
        group["subject"] = campaigns.get(latest.campaign_id) or latest.trained_on.get("campaign") or ""
        group["subject_link"] = reverse("campaigns:detail", args=[latest.campaign_id]) if latest.campaign_id in campaigns else ""
    counts = ModelVersion.objects.aggregate(
        champions=Count("id", filter=Q(status=ModelVersion.Status.CHAMPION)),
        candidates=Count("id", filter=Q(status=ModelVersion.Status.CANDIDATE)),
        last_trained=Max("created_at"),
    )
    return render(request, "ml/model_list.html", {"keys": keys, "counts": counts})


def _headline_metrics(versions: list[ModelVersion]) -> list[tuple[str, str, int]]:
    """The first LIST_COLUMNS known metrics any of the versions recorded (campaign models: AUC, log loss, RMSE,
    calibration error); a subject with none of them: AUC … as columns of dashes."""
    recorded = {name for v in versions for name, value in (v.metrics or {}).items() if _is_number(value)}
    found = [m for m in METRICS + MORE_METRICS if m[0] in recorded]
    return found[:LIST_COLUMNS] or METRICS


@require_GET
@viewer_required
def model_detail(request, pk: int):
    version = get_object_or_404(ModelVersion.objects.select_related("parent"), pk=pk)
    features = sorted(version.features, key=lambda f: -float(f.get("importance") or 0))[:25]
    chart = {
        "type": "bar",
        "data": {"labels": [f.get("name", "?") for f in features],
                 "datasets": [{"label": "Importance", "data": [round(float(f.get("importance") or 0), 4) for f in features]}]},
        "options": {"indexAxis": "y", "scales": {"x": {"beginAtZero": True, "title": {"display": True, "text": "importance"}},
                                                 "y": {"ticks": {"autoSkip": False}}}},
    }
    siblings = ModelVersion.objects.filter(key=version.key)
    can_roll_back = version.status == ModelVersion.Status.CHAMPION and siblings.filter(
        status=ModelVersion.Status.RETIRED, promoted_at__isnull=False, rolled_back_at__isnull=True).exists()
    sort = request.GET.get("sort", "")
    recsys = _recsys_panel(version, request.GET.get("customer", "").strip())
    return render(request, "ml/model_detail.html", {
        "recsys": recsys,
        "version": version, "metrics": _metric_rows(version.metrics), "features": features, "chart": chart,
        "chart_height": max(200, 60 + 18 * len(features)),  # every feature gets a readable row
        "candidates": _candidate_rows(version.metrics), "candidate_columns": _candidate_columns(version.metrics),
        "uplift": _uplift_charts(version.report),
        "gate": _gate_panel(version.metrics),
        "exploration": _exploration({k: v for k, v in (version.report or {}).items() if k not in ("uplift", "map")}, sort=sort,
                                    auc=version.metrics.get("auc")),
        "criteria_columns": CRITERIA_COLUMNS, "sort": sort if sort in dict(CRITERIA_COLUMNS) else "",
        "trained_on": _trained_on_rows(version.trained_on),
        "children": version.children.order_by("version"), "path": registry.artefact_path(version),
        "champion": siblings.champions().first(), "can_roll_back": can_roll_back,
        "history": [{**e, "at": datetime.fromisoformat(e["at"])} for e in reversed(version.history) if e.get("at")],
    })


@require_POST
@writer_required
def build_recommendations(request):
    """Queue the recommender build; the task lives in audiences, which ml must not import, so it is sent by name."""
    from celery import current_app
    from .models import send_on_commit

    job = Job.objects.create(kind="recommendations", title="Recommendations", created_by=request.user)
    send_on_commit(job, lambda: current_app.send_task("audiences.build_recommendations", args=[job.pk]))
    messages.info(request, "Recommendations build queued; its progress is below.")
    return redirect("jobs:detail", pk=job.pk)


@require_POST
@writer_required
def model_promote(request, pk: int):
    version = get_object_or_404(ModelVersion, pk=pk)
    try:
        registry.promote(version, by=request.user)
    except registry.Refused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Version {version.version} of {version.key} is now the champion.")
    return redirect("models:detail", pk=version.pk)


@require_POST
@writer_required
def model_roll_back(request, pk: int):
    version = get_object_or_404(ModelVersion, pk=pk)
    try:
        restored = registry.roll_back(version.key, by=request.user)
    except registry.Refused as exc:
        messages.error(request, str(exc))
        return redirect("models:detail", pk=version.pk)
    messages.success(request, f"Rolled back: version {restored.version} of {restored.key} is the champion again.")
    return redirect("models:detail", pk=restored.pk)
