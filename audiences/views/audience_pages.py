"""Audience pages: list, rule editor with live size, uploaded lists, detail, why in/out."""

from __future__ import annotations


from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.access import viewer_required, writer_required

from .. import actions, insights, rules
from ..forms import AudienceForm, ListAudienceForm, parse_rule
from ..models import Audience, Customer

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
