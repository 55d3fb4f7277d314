"""Delivery set-up: channels, placements, their delivery plans, and the simulate panel (what a customer would get, and why)."""

from __future__ import annotations

from django.contrib import messages
from django.db.models import Count
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from accounts.access import viewer_required, writer_required
from audiences.models import Customer

from .. import actions, decisions
from ..access import get_channel_for_user, get_placement_for_user
from ..forms import ChannelForm, PlacementForm, PlanForm, RuleFormSet, SimulateForm
from ..models import Ad, Campaign, Channel, Decision, DeliveryPlan, FrequencyCap, Placement, PlanRule


@require_GET
@viewer_required
def delivery(request):
    channels = Channel.objects.annotate(n_placements=Count("placements"))
    placements = list(Placement.objects.select_related("channel", "plan").annotate(n_ads=Count("ads")))
    plans = {p.pk: p for p in DeliveryPlan.objects.prefetch_related("rules__audience", "rules__ads", "rest_ads")}
    for placement in placements:
        plan = getattr(placement, "plan", None)
        placement.summary = plan_summary(plans[plan.pk]) if plan else None
    caps = FrequencyCap.objects.select_related("ad__campaign", "campaign", "placement", "channel").order_by("level", "pk")
    planned = sum(1 for p in placements if p.summary)
    planned_note = ("no placement yet" if not placements else "every placement" if planned == len(placements)
                    else "the others serve every ad by priority")
    context = {"channels": channels, "placements": placements, "caps": caps, "planned": planned, "planned_note": planned_note}
    return render(request, "marketing/delivery.html", context)


def plan_summary(plan: DeliveryPlan) -> list[str]:
    """The plan in a few words per line, for the overview."""
    lines = []
    for n, rule in enumerate(plan.rules.all(), 1):
        ads = ", ".join(a.name for a in rule.ads.all())
        gets = ads if rule.mode == "one" else f"{ads}, ranked by model"
        lines.append(f"{n}. {rule.audience.name} → {gets}")
    rest = {"priority": "by priority", "model": "ranked by model", "nothing": "nothing"}[plan.rest]
    named = ", ".join(a.name for a in plan.rest_ads.all())
    lines.append(f"Everyone else: {named + ' ' if named and plan.rest != 'nothing' else ''}{rest}")
    return lines


@require_http_methods(["GET", "POST"])
@writer_required
def channel_edit(request, pk: int | None = None):
    channel = get_channel_for_user(request.user, pk, write=True) if pk else Channel()
    form = ChannelForm(request.POST or None, instance=channel)
    if request.method == "POST" and form.is_valid():
        channel = actions.save_channel(form.save(commit=False), by=request.user)
        messages.success(request, f"Channel “{channel.name}” saved.")
        return redirect("campaigns:delivery")
    return render(request, "marketing/simple_form.html", {
        "form": form, "title": f"Channel “{channel.name}”" if pk else "New channel", "submit": "Save the channel",
        "intro": "Where ads reach people (an app push, a banner, the player, e-mail …) and what reaching them costs."},
        status=400 if form.errors else 200)


@require_http_methods(["GET", "POST"])
@writer_required
def placement_edit(request, pk: int | None = None):
    placement = get_placement_for_user(request.user, pk, write=True) if pk else Placement()
    form = PlacementForm(request.POST or None, instance=placement)
    if request.method == "POST" and form.is_valid():
        placement = actions.save_placement(form.save(commit=False), by=request.user)
        messages.success(request, f"Placement “{placement.slug}” saved. Give it a delivery plan to say who gets which ad.")
        return redirect("campaigns:delivery")
    if not Channel.objects.exists():
        form.fields["channel"].help_text = "No channels yet: add a channel first."
    return render(request, "marketing/simple_form.html", {
        "form": form, "title": f"Placement “{placement.slug}”" if pk else "New placement", "submit": "Save the placement",
        "intro": "A slot in the product that asks for ads, such as the home banner or the player's pre-roll."},
        status=400 if form.errors else 200)


@require_http_methods(["GET", "POST"])
@writer_required
def plan_edit(request, pk: int):
    """A placement's plan: rules in order (add, remove, renumber), then everyone else."""
    placement = get_placement_for_user(request.user, pk, write=True)
    plan = DeliveryPlan.objects.filter(placement=placement).first() or DeliveryPlan(placement=placement)
    data = request.POST.copy() if request.method == "POST" else None
    adding = data is not None and "add_rule" in data
    if adding:  # one more empty rule row, nothing saved yet
        key = "rules-TOTAL_FORMS"
        n = int(data.get(key) or 0)
        data[key] = str(n + 1)
        # The new row holds its defaults, so it counts as untouched and is not judged (no "required" before any input).
        data.setdefault(f"rules-{n}-mode", PlanRule.Mode.ONE_AD)
    form = PlanForm(data, instance=plan, placement=placement)
    rules = RuleFormSet(data, instance=plan, prefix="rules", form_kwargs={"placement": placement})
    if data is not None and not adding and form.is_valid() and rules.is_valid():
        kept = [(f.save(commit=False), list(f.cleaned_data["ads"])) for f in rules.ordered_forms]
        removed = [f.instance for f in rules.deleted_forms if f.instance.pk]
        actions.save_plan(form.save(commit=False), form.cleaned_data["rest_ads"], kept, removed, by=request.user)
        messages.success(request, f"The plan of “{placement.slug}” is saved. Try it on a customer below.")
        return redirect("campaigns:plan", pk=placement.pk)
    context = {"placement": placement, "form": form, "rules": rules, "n_ads": Ad.objects.filter(placements=placement).count(),
               "adding": adding}
    invalid = data is not None and not adding
    return render(request, "marketing/plan_form.html", context, status=400 if invalid else 200)


@require_GET
@viewer_required
def simulate(request):
    form = SimulateForm(request.GET if "customer" in request.GET else None, initial={"placement": request.GET.get("placement")})
    context = {"form": form, "why": None}
    if form.is_bound and form.is_valid():
        context.update(explain(decisions.simulate(form.cleaned_data["customer"], form.cleaned_data["placement"])))
    if request.htmx:
        return render(request, "marketing/simulate.html#result", context)
    return render(request, "marketing/simulate.html", context, status=400 if form.errors else 200)


def explain(why: decisions.Why) -> dict:
    """The simulate panel's rows: every ad the route offered, with its score, cap and slot, in the policy's order."""
    policy, route = why.policy, why.route
    blocked = {b.ad: b.reason for b in why.blocked}
    eligible = {a.pk for a in why.eligible}
    slots = {a.pk: n for n, a in enumerate(why.would_serve, 1)}
    ordered = list(policy.ordered) + [a for a in route.ads if a.pk in policy.unfit]
    rows = [{"ad": ad, "slot": slots.get(ad.pk), "score": policy.scores.get(ad.pk), "unfit": ad.pk in policy.unfit,
             "blocked": blocked.get(ad.pk), "eligible": ad.pk in eligible} for ad in ordered]
    budget = [(c, route.out_of_budget[c.pk]) for c in Campaign.objects.filter(pk__in=route.out_of_budget)]
    if policy.reason == Decision.Reason.EXPLORE and not policy.scores:
        new = [a.name for a in route.ads if a.explored_at is None]
        branch = f"Exploring: {', '.join(new)} {'is' if len(new) == 1 else 'are'} still new, so the order is uniformly random."
    elif policy.reason == Decision.Reason.EXPLORE:
        branch = f"Exploring at random this time: a share ε = {policy.epsilon:g} of model-ranked traffic keeps exploring."
    elif policy.reason == Decision.Reason.MODEL:
        branch = (f"Ranked by the model ({policy.model_version}): highest predicted response first; "
                  f"a share ε = {policy.epsilon:g} of requests would explore instead.")
    elif policy.reason == Decision.Reason.PRIORITY:
        branch = "By priority: the highest priority first, ties shared at random."
    else:
        branch = "Targeted: the rule's one specified ad."
    threshold = route.plan.fit_threshold if route.plan else None
    return {"why": why, "rows": rows, "budget": budget, "branch": branch, "threshold": threshold,
            "segment": decisions.segment_of(why.customer)}


@require_GET
@viewer_required
def simulate_customers(request):
    """Suggestions for the customer box (htmx): up to ten customers whose id or region contains the text."""
    q = request.GET.get("customer", "").strip()
    customers = Customer.objects.search(q).order_by("external_id")[:10] if len(q) >= 2 else []
    return render(request, "marketing/simulate.html#options", {"options": customers})
