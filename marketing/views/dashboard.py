"""The dashboard."""

from __future__ import annotations

from datetime import timedelta

from django.core.cache import cache
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from accounts.access import viewer_required
from audiences.models import REVENUE_KINDS, Activity, ActivityKind, Persona
from audiences.views import customer_kpis
from ml.models import Job


def activity_trend(days: int = 30) -> dict:
    """Daily plays, listeners (customers who played) and revenue; cached for a minute: it scans a month of activity."""
    key = f"dashboard:trend:{days}"
    if (cached := cache.get(key)) is not None:
        return cached
    since = (timezone.now() - timedelta(days=days)).replace(hour=0, minute=0, second=0, microsecond=0)
    rows = (
        Activity.objects.filter(occurred_at__gte=since)
        .annotate(day=TruncDate("occurred_at"))
        .values("day")
        .annotate(
            plays=Count("id", filter=Q(kind=ActivityKind.PLAY)),
            listeners=Count("customer", distinct=True, filter=Q(kind=ActivityKind.PLAY)),  # who played, not any activity
            revenue=Sum("value", filter=Q(kind__in=REVENUE_KINDS)),
        )
        .order_by("day")
    )
    rows = list(rows)
    trend = {
        "days": [r["day"].strftime("%b %d") for r in rows],
        "plays": [r["plays"] for r in rows],
        "listeners": [r["listeners"] for r in rows],
        "revenue": [float(r["revenue"] or 0) for r in rows],
    }
    cache.set(key, trend, 60)
    return trend


@require_GET
@viewer_required
def dashboard(request):
    kpis = customer_kpis()
    trend = activity_trend()
    top_genres = list(
        Persona.objects.exclude(top_genre="").values_list("top_genre").annotate(n=Count("customer")).order_by("-n")[:8]
    )
    charts = {
        "trend": {
            "type": "line",
            "data": {"labels": trend["days"], "datasets": [
                {"label": "Plays", "data": trend["plays"], "fill": True},
                {"label": "Listeners", "data": trend["listeners"]},
            ]},
            "options": {"scales": {"y": {"beginAtZero": True}}},
        },
        "revenue": {
            "type": "bar",
            "data": {"labels": trend["days"], "datasets": [{"label": "Revenue", "data": trend["revenue"], "color": "#1f9d8b"}]},
            "options": {"scales": {"y": {"beginAtZero": True}}},
        },
        "segments": {
            "type": "doughnut",
            "data": {"labels": [s for s, _ in kpis["segments"]], "datasets": [{"label": "Customers", "data": [n for _, n in kpis["segments"]]}]},
        },
        "genres": {
            "type": "bar",
            "data": {"labels": [g for g, _ in top_genres], "datasets": [{"label": "Customers whose top genre it is", "data": [n for _, n in top_genres]}]},
            "options": {"indexAxis": "y"},
        },
    }
    context = {
        "kpis": kpis,
        "charts": charts,
        "plays_30d": sum(trend["plays"]),
        "revenue_30d": sum(trend["revenue"]),
        "jobs": Job.objects.select_related("created_by")[:5],
    }
    return render(request, "marketing/dashboard.html", context)

