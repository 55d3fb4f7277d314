from __future__ import annotations

from datetime import datetime
from itertools import groupby

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count, Max, Q
from django.shortcuts import get_object_or_404, redirect, render
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
    context = {"job": job, "result": {k: v for k, v in job.result.items() if k != "traceback"}}
    if request.htmx:
        return render(request, "ml/job_detail.html#card", context)
    return render(request, "ml/job_detail.html", context)


METRICS = [("auc", "AUC", 3), ("log_loss", "Log loss", 3), ("rmse", "RMSE", 3), ("calibration", "Calibration", 3)]


def _metric_rows(metrics: dict) -> list[tuple[str, object]]:
    """Known metrics first, in a fixed order, then any other numbers the trainer recorded."""
    known = [(label, metrics[name]) for name, label, _ in METRICS if name in metrics]
    others = [(name, value) for name, value in metrics.items() if name not in {m[0] for m in METRICS}]
    return known + others


@require_GET
@viewer_required
def model_list(request):
    versions = list(ModelVersion.objects.order_by("key", "-version"))
    for v in versions:
        v.metric_cells = [v.metrics.get(name) for name, _, _ in METRICS]
    keys = [{"key": key, "versions": list(rows)} for key, rows in groupby(versions, key=lambda v: v.key)]
    for group in keys:
        group["champion"] = next((v for v in group["versions"] if v.status == ModelVersion.Status.CHAMPION), None)
    counts = ModelVersion.objects.aggregate(
        champions=Count("id", filter=Q(status=ModelVersion.Status.CHAMPION)),
        candidates=Count("id", filter=Q(status=ModelVersion.Status.CANDIDATE)),
        last_trained=Max("created_at"),
    )
    return render(request, "ml/model_list.html", {"keys": keys, "counts": counts, "metric_names": METRICS})


@require_GET
@viewer_required
def model_detail(request, pk: int):
    version = get_object_or_404(ModelVersion.objects.select_related("parent"), pk=pk)
    features = sorted(version.features, key=lambda f: -float(f.get("importance") or 0))[:25]
    chart = {
        "type": "bar",
        "data": {"labels": [f.get("name", "?") for f in features],
                 "datasets": [{"label": "Importance", "data": [round(float(f.get("importance") or 0), 4) for f in features]}]},
        "options": {"indexAxis": "y", "scales": {"x": {"beginAtZero": True, "title": {"display": True, "text": "importance"}}}},
    }
    siblings = ModelVersion.objects.filter(key=version.key)
    can_roll_back = version.status == ModelVersion.Status.CHAMPION and siblings.filter(
        status=ModelVersion.Status.RETIRED, promoted_at__isnull=False, rolled_back_at__isnull=True).exists()
    return render(request, "ml/model_detail.html", {
        "version": version, "metrics": _metric_rows(version.metrics), "features": features, "chart": chart,
        "children": version.children.order_by("version"), "path": registry.artefact_path(version),
        "champion": siblings.champions().first(), "can_roll_back": can_roll_back,
        "history": [{**e, "at": datetime.fromisoformat(e["at"])} for e in reversed(version.history) if e.get("at")],
    })


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
