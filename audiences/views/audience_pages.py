"""Audience pages: list, rule editor with live size, uploaded lists, detail, why in/out."""

from __future__ import annotations

import json

from django.contrib import messages
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.access import viewer_required, writer_required

from .. import actions, builder, insights, lookalikes, rules
from ..forms import RULE_EXAMPLE, AudienceForm, ListAudienceForm
from ..models import Audience, Customer


@require_GET
@viewer_required
def audience_list(request):
    audiences = Audience.objects.select_related("created_by", "lookalike__job")
    total = Customer.objects.count()
    return render(request, "audiences/audience_list.html", {"audiences": audiences, "customers": total})


@require_http_methods(["GET", "POST"])
@writer_required
def audience_edit(request, pk: int | None = None):
    audience = get_object_or_404(Audience, pk=pk) if pk else Audience()
    if audience.kind == Audience.Kind.LIST:
        messages.info(request, "An uploaded list changes by uploading a new list.")
        return redirect("audiences:detail", pk=audience.pk)
    if audience.kind == Audience.Kind.LOOKALIKE:
        messages.info(request, "A lookalike changes by choosing its size or retraining it.")
        return redirect("audiences:detail", pk=audience.pk)
    data, tree, problem = None, builder.as_tree(audience.rule if audience.pk else json.loads(RULE_EXAMPLE)), None
    if request.method == "POST":
        data = request.POST.copy()
        try:
            tree = builder.read(request.POST)
            data["rule"] = json.dumps(tree)
        except builder.BuilderError as exc:
            problem = str(exc)
            tree = _last_good_tree(request.POST.get("tree", ""))
    form = AudienceForm(data, instance=audience)
    if problem:
        form.add_error("rule", problem)
    if request.method == "POST" and form.is_valid():
        audience = actions.save_audience(form.save(commit=False), by=request.user)
        messages.success(request, f"“{audience.name}” saved: {audience.size:,} customers today.")
        return redirect("audiences:detail", pk=audience.pk)
    # The autocompletion lists sit outside the builder's partial: the full page only.
    context = {"form": form, "audience": audience, "suggestions": builder.suggestions(), **_builder_context(tree, audience.pk)}
    if problem:
        context.update(rule_text=request.POST.get("rule", ""), json_open=True)
    return render(request, "audiences/audience_form.html", context, status=400 if form.errors else 200)


def _builder_context(tree: dict, audience_id: int | None, problem: str | None = None) -> dict:
    error = builder.check(tree, audience_id)
    return {"builder": builder.view(tree, error, audience_id), "tree_json": json.dumps(tree, indent=2),
            "rule_problem": problem or (f"{error.path}: {error.reason}" if error else None), "audience_pk": audience_id}


@require_POST
@writer_required
def audience_builder(request):
    """One builder edit (htmx): read the page's tree, apply the action, draw the builder again."""
    pk = _int(request.POST.get("pk"))
    try:
        tree = builder.read(request.POST)
        problem = None
    except builder.BuilderError as exc:
        # Keep the last good tree, and give the operator's JSON back with the error, to fix it there.
        tree, problem = _last_good_tree(request.POST.get("tree", "")), str(exc)
    tree = builder.edit(tree, request.POST.get("action", ""), request.POST.get("path", ""))
    context = _builder_context(tree, pk, problem)
    if problem:
        context.update(rule_text=request.POST.get("rule", ""), json_open=True)
    response = render(request, "audiences/audience_form.html#builder", context)
    response["HX-Trigger-After-Settle"] = "rule-changed"
    return response


def _int(text) -> int | None:
    try:
        return int(text) or None
    except (TypeError, ValueError):
        return None


def _last_good_tree(text: str) -> dict:
    try:
        return builder._shaped(json.loads(text))
    except (ValueError, RecursionError, builder.BuilderError):
        return {"all": []}


@require_POST
@writer_required
def audience_preview(request):
    """The live size (or, with part=insights, the comparison with the base) while a rule is edited (htmx, debounced)."""
    part = "insights" if request.POST.get("part") == "insights" else "preview"
    context = {"total": Customer.objects.count()}
    try:
        rule = builder.read(request.POST)
        rules.validate(rule, Audience.rule_of, audience_id=_int(request.POST.get("pk")))
    except (builder.BuilderError, rules.RuleError) as exc:
        context["error"] = str(exc)
    else:
        members = Customer.objects.filter(rules.compile_rule(rule, Audience.rule_of))
        if part == "insights":  # nobody selected: nothing to compare (empty charts would say nothing)
            context["insights"] = insights.compare(members) if members.exists() else None
            context["nobody"] = context["insights"] is None
        else:
            context["size"] = members.count()
            context["share"] = 100 * context["size"] / context["total"] if context["total"] else 0
    return render(request, f"audiences/audience_form.html#{part}", context)


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
    audience = get_object_or_404(Audience, pk=pk)
    if audience.kind == Audience.Kind.LOOKALIKE:
        actions.queue_lookalike_training(audience.lookalike, by=request.user)
        messages.info(request, "Retraining on the seed as it is now; this page follows its progress.")
    else:
        audience = actions.refresh_audience(audience, by=request.user)
        messages.success(request, f"Membership refreshed: {audience.size:,} customers.")
    return redirect("audiences:detail", pk=audience.pk)


@require_GET
@viewer_required
def audience_detail(request, pk: int):
    audience = get_object_or_404(Audience.objects.select_related("lookalike__seed", "lookalike__job"), pk=pk)
    lookalike = getattr(audience, "lookalike", None) if audience.kind == Audience.Kind.LOOKALIKE else None
    if request.htmx and lookalike and request.GET.get("part") == "training":
        return _training_status(request, lookalike)
    if request.htmx and lookalike and request.GET.get("part") == "sizing":
        context = {"audience": audience, "lookalike": lookalike, **lookalikes.page_context(lookalike, request.GET.get("pct"))}
        return render(request, "audiences/lookalike_panel.html#sizing", context)
    members = Customer.objects.in_snapshot(audience).select_related("persona")
    if lookalike:
        members = lookalikes.ranked(members, lookalike)
    page = Paginator(members.order_by("rank", "pk") if lookalike else members.order_by("external_id"), 25).get_page(request.GET.get("page"))
    total = Customer.objects.count()
    outline = rules.outline(audience.rule) if audience.kind == Audience.Kind.RULES else None
    context = {"audience": audience, "page_obj": page, "outline": outline, "total": total, "lookalike": lookalike,
               "insights": insights.compare(Customer.objects.in_snapshot(audience)),
               "share": 100 * (audience.size or 0) / total if total else 0, "query": "", "target": "#members"}
    if lookalike:
        context.update(lookalikes.page_context(lookalike, request.GET.get("pct")))
    return render(request, "audiences/audience_detail.html", context)


def _training_status(request, lookalike):
    """The inline progress of a training lookalike; once it is done the page reloads to show the results."""
    response = render(request, "audiences/lookalike_panel.html#training", {"lookalike": lookalike, "job": lookalike.job})
    if lookalike.job is None or lookalike.job.is_finished:
        response["HX-Refresh"] = "true"
    return response


@require_GET
@viewer_required
def audience_why(request, pk: int, customer_pk: int):
    audience = get_object_or_404(Audience, pk=pk)
    customer = get_object_or_404(Customer, pk=customer_pk)
    why = rules.explain_membership(audience, customer)
    return render(request, "audiences/audience_why.html", {"audience": audience, "customer": customer, "why": why})
