from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, F, Q, Sum
from django.db.models.functions import TruncWeek
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.access import viewer_required, writer_required

from . import actions
from . import insights, rules
from .forms import AudienceForm, ListAudienceForm, MappingForm, PersonaSettingsForm, UploadForm, parse_rule
from .imports import FIELDS
from .models import REVENUE_KINDS, Activity, ActivityKind, Audience, AudienceMember, Customer, DataImport, Persona, PersonaSettings, Segment

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
               "headers": sort_headers(sort, {"q": q, "segment": segment})}
    if request.htmx:
        return render(request, "audiences/customer_list.html#table", context)
    context["kpis"] = customer_kpis()
    context["settings"] = PersonaSettings.load()
    return render(request, "audiences/customer_list.html", context)


def sort_headers(sort: str, params: dict) -> list[dict]:
    """Column headers whose links toggle the sort, keeping the search and filter."""
    headers = []
    for label, key, css, desc_first in CUSTOMER_COLUMNS:
        active = key is not None and sort.lstrip("-") == key
        desc = active and sort.startswith("-")
        if key is None:
            url = ""
        else:
            next_sort = (key if desc else "-" + key) if active else ("-" + key if desc_first else key)
            url = "?" + urlencode({k: v for k, v in {**params, "sort": next_sort}.items() if v})
        headers.append({"label": label, "url": url, "css": css, "active": active, "desc": desc})
    return headers


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
        "attributes": [(k, ", ".join(map(str, v)) if isinstance(v, list) else v) for k, v in customer.attributes.items()],
        "persona": persona,
        "recent": recent,
        "chart": activity_chart(customer),
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
        actions.update_persona_settings(form.save(commit=False), fields=list(form.changed_data) or ["half_life_days"])
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


# -- imports -------------------------------------------------------------------------------------


@require_GET
@viewer_required
def import_list(request):
    imports = DataImport.objects.select_related("job", "created_by")
    page = Paginator(imports, 20).get_page(request.GET.get("page"))
    return render(request, "audiences/import_list.html", {"page_obj": page, "query": "", "target": "#imports"})


@require_http_methods(["GET", "POST"])
@writer_required
def import_new(request):
    form = UploadForm(request.POST or None, request.FILES or None, initial={"kind": request.GET.get("kind", "customers")})
    if getattr(request, "upload_refused", None):
        form.add_error("file", request.upload_refused)
    if request.method == "POST" and form.is_valid():
        try:
            data_import = actions.receive_upload(form.cleaned_data["file"], form.cleaned_data["kind"], by=request.user)
        except actions.ImportRejected as exc:
            form.add_error("file", str(exc))
        else:
            return redirect("imports:detail", pk=data_import.pk)
    return render(request, "audiences/import_new.html", {"form": form, "field_groups": list(FIELDS.items())}, status=400 if form.errors else 200)


@require_http_methods(["GET", "POST"])
@viewer_required
def import_detail(request, pk: int):
    data_import = get_object_or_404(DataImport.objects.select_related("job"), pk=pk)
    if request.method == "POST":
        return _start_import(request, data_import)
    form = MappingForm(data_import=data_import) if data_import.status == DataImport.Status.MAPPING else None
    context = {"imp": data_import, "form": form, "job": data_import.job}
    if request.htmx:
        return render(request, "audiences/import_detail.html#status", context)
    return render(request, "audiences/import_detail.html", context)


@writer_required
def _start_import(request, data_import: DataImport):
    if data_import.status != DataImport.Status.MAPPING:
        messages.warning(request, "This file has already been sent for import.")
        return redirect("imports:detail", pk=data_import.pk)
    form = MappingForm(request.POST, data_import=data_import)
    if form.is_valid():
        try:
            actions.queue_import(data_import, form.mapping(), by=request.user,
                                 keep_extra=form.cleaned_data.get("keep_extra", False))
        except actions.ImportRejected as exc:
            messages.warning(request, str(exc))
            return redirect("imports:detail", pk=data_import.pk)
        except ValueError as exc:
            for name, reason in exc.args[0].items():
                form.add_error(name if name in form.fields else None, reason)
        else:
            return redirect("imports:detail", pk=data_import.pk)
    return render(request, "audiences/import_detail.html", {"imp": data_import, "form": form, "job": None}, status=400)


@require_GET
@viewer_required
def import_errors(request, pk: int):
    data_import = get_object_or_404(DataImport, pk=pk)
    if not data_import.error_report:
        raise Http404("This import has no rejected rows.")
    return FileResponse(data_import.error_report.open("rb"), as_attachment=True, filename=f"import-{pk}-errors.csv")


@require_GET
@viewer_required
def audience_list(request):
    audiences = Audience.objects.select_related("created_by")
    total = Customer.objects.count()
    return render(request, "audiences/audience_list.html", {"audiences": audiences, "customers": total})


@require_http_methods(["GET", "POST"])
@writer_required
def audience_edit(request, pk: int | None = None):
    audience = get_object_or_404(Audience, pk=pk) if pk else Audience()
    if audience.kind == Audience.Kind.LIST:
        messages.info(request, "An uploaded list changes by uploading a new list.")
        return redirect("audiences:detail", pk=audience.pk)
    form = AudienceForm(request.POST or None, instance=audience)
    if request.method == "POST" and form.is_valid():
        audience = actions.save_audience(form.save(commit=False), by=request.user)
        messages.success(request, f"“{audience.name}” saved: {audience.size:,} customers today.")
        return redirect("audiences:detail", pk=audience.pk)
    context = {"form": form, "audience": audience, "fields": rules.FIELDS, "kinds": list(rules.KINDS)}
    return render(request, "audiences/audience_form.html", context, status=400 if form.errors else 200)


@require_POST
@writer_required
def audience_preview(request):
    """The live size while a rule is edited (htmx, debounced): the count, or where the rule is wrong."""
    context = {"total": Customer.objects.count()}
    try:
        pk = int(request.POST.get("pk") or 0) or None
        rule = parse_rule(request.POST.get("rule", ""), audience_id=pk)
    except (ValidationError, ValueError) as exc:
        context["error"] = " ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
    else:
        context["size"] = Customer.objects.filter(rules.compile_rule(rule, Audience.rule_of)).count()
        context["share"] = 100 * context["size"] / context["total"] if context["total"] else 0
    return render(request, "audiences/audience_form.html#preview", context)


@require_http_methods(["GET", "POST"])
@writer_required
def audience_upload(request):
    form = ListAudienceForm(request.POST or None, request.FILES or None)
    if getattr(request, "upload_refused", None):
        form.add_error("file", request.upload_refused)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        audience, unknown = actions.create_list_audience(name=data["name"], description=data["description"],
                                                         upload=data["file"], by=request.user)
        messages.success(request, f"“{audience.name}”: {audience.size:,} customers.")
        if unknown:
            shown = ", ".join(unknown[:20]) + (" …" if len(unknown) > 20 else "")
            messages.warning(request, f"{len(unknown):,} ids are not customers and were left out: {shown}")
        return redirect("audiences:detail", pk=audience.pk)
    return render(request, "audiences/audience_upload.html", {"form": form}, status=400 if form.errors else 200)


@require_POST
@writer_required
def audience_refresh(request, pk: int):
    audience = actions.refresh_membership(get_object_or_404(Audience, pk=pk))
    messages.success(request, f"Membership refreshed: {audience.size:,} customers.")
    return redirect("audiences:detail", pk=audience.pk)


@require_GET
@viewer_required
def audience_detail(request, pk: int):
    audience = get_object_or_404(Audience, pk=pk)
    members = Customer.objects.in_snapshot(audience).select_related("persona").order_by("external_id")
    page = Paginator(members, 25).get_page(request.GET.get("page"))
    total = Customer.objects.count()
    outline = rules.outline(audience.rule) if audience.kind == Audience.Kind.RULES else None
    context = {"audience": audience, "page_obj": page, "outline": outline, "total": total,
               "insights": insights.compare(Customer.objects.in_snapshot(audience)),
               "share": 100 * (audience.size or 0) / total if total else 0, "query": "", "target": "#members"}
    return render(request, "audiences/audience_detail.html", context)


@require_GET
@viewer_required
def audience_why(request, pk: int, customer_pk: int):
    audience = get_object_or_404(Audience, pk=pk)
    customer = get_object_or_404(Customer, pk=customer_pk)
    why = rules.explain(audience.rule, customer, Audience.rule_of)
    return render(request, "audiences/audience_why.html", {"audience": audience, "customer": customer, "why": why})
