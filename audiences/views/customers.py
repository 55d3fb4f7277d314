"""Customer pages and persona settings."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlencode

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count, F, Q, Sum
from django.db.models.functions import TruncWeek
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.access import viewer_required, writer_required

from .. import actions, recommend
from ..forms import PersonaSettingsForm
from ..models import REVENUE_KINDS, Activity, ActivityKind, Audience, AudienceMember, Customer, Persona, PersonaSettings, Segment
from .tables import sort_headers

CUSTOMER_COLUMNS = [
    # (label, sort key or None, css, first click sorts descending)
    ("Customer", "id", "", False),
    ("Age", "age", "", False),
    ("Gender", None, "", False),
    ("Region", "region", "", False),
    ("Tier", None, "", False),
    ("Segment", "segment", "", False),
    ("Top genre", None, "", False),
    ("Plays 30d", "plays", "text-end", True),
    ("Spend 90d", "spend", "text-end", True),
    ("Last active", "active", "", True),
]

CUSTOMER_SORTS = {
    "id": "external_id",
    "age": "-birth_year",
    "region": "region",
    "segment": "persona__segment",
    "plays": "persona__plays_30d",
    "spend": "persona__spend_90d",
    "active": "persona__last_active_at",
}


def customer_kpis() -> dict:
    week_ago = timezone.now() - timedelta(days=7)
    totals = Customer.objects.aggregate(total=Count("id"), subscribers=Count("id", filter=Q(is_subscriber=True)))
    segments = dict(Persona.objects.values_list("segment").annotate(n=Count("customer")).order_by())
    active = Persona.objects.filter(last_active_at__gte=week_ago).count()
    total = totals["total"] or 0
    return {
        "total": total,
        "subscribers": totals["subscribers"],
        "subscriber_pct": 100 * totals["subscribers"] / total if total else 0,
        "active_7d": active,
        "active_pct": 100 * active / total if total else 0,
        "segments": [(s.label, segments.get(s.value, 0)) for s in Segment],
    }


@require_GET
@viewer_required
def customer_list(request):
    q = request.GET.get("q", "").strip()
    segment = request.GET.get("segment", "")
    sort = request.GET.get("sort", "id")
    order = CUSTOMER_SORTS.get(sort.lstrip("-"), "external_id")
    if sort.startswith("-"):
        order = order[1:] if order.startswith("-") else "-" + order
    customers = Customer.objects.search(q).select_related("persona")
    if segment in Segment.values:
        customers = customers.filter(persona__segment=segment)
    field = order.lstrip("-")
    customers = customers.order_by(F(field).desc(nulls_last=True) if order.startswith("-") else F(field).asc(nulls_last=True), "id")
    page = Paginator(customers, 25).get_page(request.GET.get("page"))
    query = urlencode({k: v for k, v in {"q": q, "segment": segment, "sort": sort}.items() if v})
    context = {"page_obj": page, "q": q, "segment": segment, "sort": sort, "query": query, "segments": Segment.choices,
               "headers": sort_headers(sort, {"q": q, "segment": segment}, CUSTOMER_COLUMNS)}
    if request.htmx:
        return render(request, "audiences/customer_list.html#table", context)
    context["kpis"] = customer_kpis()
    context["settings"] = PersonaSettings.load()
    return render(request, "audiences/customer_list.html", context)


def activity_chart(customer: Customer, weeks: int = 26) -> dict:
    """Weekly plays, other engagement and purchases: weeks read better than sparse days."""
    today = timezone.now().date()
    first = today - timedelta(days=today.weekday(), weeks=weeks - 1)
    rows = (
        Activity.objects.filter(customer=customer, occurred_at__date__gte=first)
        .annotate(week=TruncWeek("occurred_at"))
        .values("week", "kind")
        .annotate(n=Count("id"))
        .order_by()
    )
    starts = [first + timedelta(weeks=i) for i in range(weeks)]
    series = {name: dict.fromkeys(starts, 0) for name in ("Plays", "Other engagement", "Purchases")}
    for row in rows:
        kind = row["kind"]
        name = "Plays" if kind == ActivityKind.PLAY else "Purchases" if kind in REVENUE_KINDS else "Other engagement"
        week = row["week"].date() if hasattr(row["week"], "date") else row["week"]
        if week in series[name]:
            series[name][week] += row["n"]
    return {
        "type": "bar",
        "data": {
            "labels": [d.strftime("%b %d") for d in starts],
            "datasets": [{"label": k, "data": list(v.values())} for k, v in series.items()],
        },
        "options": {"scales": {"x": {"stacked": True}, "y": {"stacked": True, "beginAtZero": True, "ticks": {"precision": 0}}}},
    }


def _prefs(mapping: dict) -> list[tuple[str, float]]:
    return sorted(((k, float(v)) for k, v in (mapping or {}).items()), key=lambda kv: -kv[1])[:8]


@require_GET
@viewer_required
def customer_detail(request, pk: int):
    customer = get_object_or_404(Customer.objects.select_related("persona"), pk=pk)
    persona = getattr(customer, "persona", None)
    recent = (
        Activity.objects.filter(customer=customer).select_related("item").order_by("-occurred_at")[:25]
    )
    # From the materialised snapshots: one query, not one rule evaluation per audience.
    member_of = set(AudienceMember.objects.filter(customer=customer).values_list("audience_id", flat=True))
    memberships = [(audience, audience.pk in member_of) for audience in Audience.objects.all()[:20]]
    context = {
        "customer": customer,
        "memberships": memberships,
        "attributes": [(k, k.replace("_", " ").capitalize(), ", ".join(map(str, v)) if isinstance(v, list) else v)
                       for k, v in customer.attributes.items()],  # the imported key, and it as a label
        "persona": persona,
        "recent": recent,
        "chart": activity_chart(customer),
        "recommended": recommend.customer_card(customer),
        "preferences": [
            ("Artists", _prefs(persona.artists)),
            ("Genres", _prefs(persona.genres)),
            ("Languages", _prefs(persona.languages)),
            ("Moods", _prefs(persona.moods)),
        ] if persona else [],
    }
    return render(request, "audiences/customer_detail.html", context)


def segment_summary() -> list[dict]:
    """Customers and share of 90-day revenue per segment: how the thresholds cut the base today."""
    rows = {r["segment"]: r for r in Persona.objects.values("segment").annotate(n=Count("customer"), revenue=Sum("spend_90d")).order_by()}
    total = sum(float(r["revenue"] or 0) for r in rows.values()) or 1.0
    customers = sum(r["n"] for r in rows.values()) or 1
    return [
        {"label": s.label, "value": s.value, "customers": rows.get(s.value, {}).get("n", 0),
         "customer_pct": 100 * rows.get(s.value, {}).get("n", 0) / customers,
         "revenue_pct": 100 * float(rows.get(s.value, {}).get("revenue") or 0) / total}
        for s in Segment
    ]


@require_http_methods(["GET", "POST"])
@viewer_required
def persona_settings(request):
    settings_obj = PersonaSettings.load()
    if request.method == "POST":
        # Reading is for everyone; changing the parameters is for marketers and admins.
        return _save_persona_settings(request, settings_obj)
    return render(request, "audiences/persona_settings.html", {"form": PersonaSettingsForm(instance=settings_obj),
                                                               "settings": settings_obj, "segments": segment_summary()})


@writer_required
def _save_persona_settings(request, settings_obj):
    form = PersonaSettingsForm(request.POST, instance=settings_obj)
    if form.is_valid():
        actions.update_persona_settings(form.save(commit=False), fields=list(form.changed_data) or ["half_life_days"], by=request.user)
        messages.success(request, "Persona settings saved. Rebuild the personas to apply them to everyone.")
        return redirect("customers:persona_settings")
    return render(request, "audiences/persona_settings.html", {"form": form, "settings": settings_obj, "segments": segment_summary()},
                  status=400)


@require_POST
@writer_required
def persona_rebuild(request):
    full = request.POST.get("full") == "1"
    job = actions.queue_persona_build(full=full, by=request.user)
    messages.info(request, "Persona build queued; its progress is below.")
    return redirect("jobs:detail", pk=job.pk)
