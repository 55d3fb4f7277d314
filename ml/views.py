from __future__ import annotations

from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from accounts.access import viewer_required

from .models import Job


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


@require_GET
@viewer_required
def model_list(request):
    return render(request, "ml/model_list.html", {"jobs": Job.objects.filter(kind="personas")[:5]})
