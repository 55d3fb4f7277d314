"""The decision log: what each request was served and why, newest first, with the last day's mix by reason."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlencode

from django.db.models import Avg, Count
from django.db.models.functions import TruncHour
from django.shortcuts import render
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_GET

from accounts.access import viewer_required

from ..models import Ad, Decision, Placement

PAGE = 50
REASON_BADGES = {"targeted": "primary", "model": "success", "explore": "info", "priority": "secondary",
                 "control": "warning", "none": "light"}
REASON_COLOURS = {"targeted": "#3b5bdb", "model": "#1f9d8b", "explore": "#4dabf7", "priority": "#868e96",
                  "control": "#f59f00", "none": "#dee2e6"}


def _filtered(request) -> tuple[dict, "Decision.objects"]:
    given = {k: request.GET.get(k, "").strip() for k in ("placement", "reason", "customer")}
    decisions = Decision.objects.all()
    if given["placement"]:
        decisions = decisions.filter(placement__slug=given["placement"])
    if given["reason"] in Decision.Reason.values:
        decisions = decisions.filter(reason=given["reason"])
    if given["customer"]:
        decisions = decisions.filter(customer__external_id=given["customer"])
    return given, decisions


@require_GET
@viewer_required
def decision_log(request):
    given, decisions = _filtered(request)
    hours = _last_hours()
    day = decisions.filter(created_at__gte=hours[0])
    mix = dict(day.values_list("reason").annotate(n=Count("id")).values_list("reason", "n"))
    total = sum(mix.values())
    kpis = {
        "total": total,
        # A control decision serves nothing either: its customer was held out.
        "served": total - mix.get("none", 0) - mix.get("control", 0),
        "explore": mix.get("explore", 0) / total if total else None,
        "propensity": day.exclude(reason__in=["none", "control"]).aggregate(p=Avg("propensity"))["p"],
    }
    # Keyset pagination on time: the log grows by the second, so page numbers would shift under the reader.
    before = parse_datetime(request.GET.get("before", "") or "")
    page = decisions.filter(created_at__lt=before) if before else decisions
    rows = list(page.select_related("customer", "placement", "rule__audience").order_by("-created_at")[:PAGE + 1])
    more, rows = len(rows) > PAGE, rows[:PAGE]
    names = dict(Ad.objects.filter(pk__in={pk for d in rows for pk in d.chosen}).values_list("pk", "name"))
    for d in rows:
        d.ads = [(pk, names.get(pk, f"ad {pk}")) for pk in d.chosen]
        d.badge = REASON_BADGES.get(d.reason, "light")
    query = {k: v for k, v in given.items() if v}
    context = {
        "rows": rows, "kpis": kpis, "given": given, "reasons": Decision.Reason.choices,
        "placements": Placement.objects.values_list("slug", "name"),
        "older": urlencode({**query, "before": rows[-1].created_at.isoformat()}) if more else "",
        "newest": urlencode(query), "paged": bool(before), "chart": _chart(day, hours),
    }
    if request.htmx:
        return render(request, "marketing/decision_log.html#table", context)
    return render(request, "marketing/decision_log.html", context)


def _last_hours(n: int = 24) -> list:
    """The starts of the last `n` clock hours, this one included (the log's "last 24 hours")."""
    this = timezone.localtime().replace(minute=0, second=0, microsecond=0)
    return [this - timedelta(hours=n - 1 - i) for i in range(n)]


def _chart(day, hours: list) -> dict:
    """Decisions per hour over the last day, stacked by reason; every hour has its bar, quiet ones at zero."""
    rows = day.annotate(hour=TruncHour("created_at")).values("hour", "reason").annotate(n=Count("id")).order_by("hour")
    counts = {(r["hour"], r["reason"]): r["n"] for r in rows}
    present = [r for r in Decision.Reason.values if any(reason == r for _, reason in counts)]
    return {
        "type": "bar",
        "data": {"labels": [timezone.localtime(h).strftime("%H:00") for h in hours],
                 "datasets": [{"label": Decision.Reason(r).label, "data": [counts.get((h, r), 0) for h in hours],
                               "color": REASON_COLOURS[r]} for r in present]},
        "options": {"scales": {"x": {"stacked": True}, "y": {"stacked": True, "beginAtZero": True}}},
    }



