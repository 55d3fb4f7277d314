"""Campaign pages: the list with its figures, create and edit, the lifecycle, ads and frequency caps."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta
from decimal import Decimal
from urllib.parse import urlencode

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count, Max, Min, Q, Sum
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.access import viewer_required, writer_required
from accounts.models import AuditEntry

from ml.models import Job, ModelVersion

from .. import actions, delivery_lists, incrementality, learning, rates, spend
from ..access import get_ad_for_user, get_campaign_for_user, get_cap_for_user
from ..forms import AdForm, CampaignForm, CapForm
from ..models import Ad, Campaign, Channel, Decision, DeliveryBatch, FrequencyCap, Placement

STATUS_BADGES = {"draft": "secondary", "exploring": "info", "live": "success", "paused": "warning", "ended": "dark"}
# The button that moves a campaign to each status, and whether it asks first.
MOVES = {
    "exploring": ("Start exploring", "play-circle", ""),
    "live": ("Go live", "broadcast", ""),
    "paused": ("Pause", "pause-circle", ""),
    "ended": ("End", "stop-circle", "End this campaign? An ended campaign cannot be restarted."),
}


def _today_start():
    return timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)


@require_GET
@viewer_required
def campaign_list(request):
    q, status = request.GET.get("q", "").strip(), request.GET.get("status", "")
    campaigns = Campaign.objects.annotate(n_ads=Count("ads")).select_related("owner").order_by("-created_at", "name")
    if q:
        campaigns = campaigns.filter(name__icontains=q)
    if status in Campaign.Status.values:
        campaigns = campaigns.filter(status=status)
    page = Paginator(campaigns, 25).get_page(request.GET.get("page"))
    ids = [c.pk for c in page]
    today = timezone.localdate()
    totals, todays = spend.spent(ids, today)  # accrued by the cost model plus reported by ad platforms, as budgets count
    for c in page:
        c.spent, c.spent_today, c.badge = totals.get(c.pk) or 0, todays.get(c.pk) or 0, STATUS_BADGES[c.status]
    context = {"page_obj": page, "q": q, "status": status, "statuses": Campaign.Status.choices,
               "query": urlencode({k: v for k, v in {"q": q, "status": status}.items() if v}), "target": "#campaigns"}
    if request.htmx:
        return render(request, "marketing/campaign_list.html#table", context)
    spend_total, spend_today = spend.spent_overall(today)
    context["kpis"] = {
        "serving": Campaign.objects.filter(status__in=Campaign.SERVING).count(),
        "serving_sub": f"exploring or live, of {Campaign.objects.count():,} campaigns",
        "spend_today": spend_today,
        "spend_total": spend_total,
        "decisions_today": Decision.objects.filter(created_at__gte=_today_start()).count(),
    }
    return render(request, "marketing/campaign_list.html", context)


@require_http_methods(["GET", "POST"])
@writer_required
def campaign_edit(request, pk: int | None = None):
    campaign = get_campaign_for_user(request.user, pk, write=True) if pk else Campaign()
    form = CampaignForm(request.POST or None, instance=campaign)
    if request.method == "POST" and form.is_valid():
        if pk:
            campaign = actions.update_campaign(form.save(commit=False), by=request.user)
            messages.success(request, f"“{campaign.name}” saved.")
        else:
            campaign = actions.create_campaign(form.save(commit=False), by=request.user)
            messages.success(request, f"“{campaign.name}” created as a draft. Add its ads, then start exploring.")
        return redirect("campaigns:detail", pk=campaign.pk)
    return render(request, "marketing/campaign_form.html", {"form": form, "campaign": campaign},
                  status=400 if form.errors else 200)


@require_GET
@viewer_required
def campaign_detail(request, pk: int):
    campaign = get_campaign_for_user(request.user, pk)
    if request.htmx and request.GET.get("part") == "model":  # the model card polls while its training runs
        return render(request, "marketing/campaign_detail.html#model", _model_context(campaign))
    ads = list(campaign.ads.prefetch_related("placements__channel").select_related("promoted_item"))
    # Its rows and what list batches hold not yet written out as rows, per ad and day, in one statement.
    served_days = delivery_lists.served_per_ad_and_day(campaign.pk, [a.pk for a in ads])
    served = Counter()
    for ad_id, _, n in served_days:
        served[ad_id] += n
    now = timezone.now()
    ranked = rates.ranked_ads()
    for ad in ads:
        ad.ranked = ad.pk in ranked  # only ads a plan ranks by model explore first
        ad.served_count = served.get(ad.pk, 0)
        ad.explore_pct = min(100, round(100 * ad.served_count / campaign.explore_impressions))
        ad.explore_days_left = max(0, campaign.explore_days - (now - ad.created_at).days)
    caps = FrequencyCap.objects.filter(Q(campaign=campaign) | Q(ad__campaign=campaign)).select_related("ad", "campaign")
    totals, todays = spend.spent([campaign.pk], timezone.localdate())  # as its budgets count it
    spent, spent_today = totals.get(campaign.pk, Decimal(0)), todays.get(campaign.pk, Decimal(0))
    chart, served_14d = _daily_chart(campaign, served_days)
    moves = [(s, *MOVES[s]) for s in (Campaign.Status.EXPLORING, Campaign.Status.LIVE, Campaign.Status.PAUSED,
                                      Campaign.Status.ENDED) if campaign.can_move_to(s)]
    context = {**_model_context(campaign), "ads": ads, "caps": caps, "spent": spent, "spent_today": spent_today,
               "served_14d": served_14d, "chart": chart, "moves": moves, "badge": STATUS_BADGES[campaign.status],
               "explored": sum(1 for a in ads if a.ranked and a.explored_at), "explored_sub": _explored_sub(ads),
               "spent_sub": f"of {campaign.total_budget:,.2f}" if campaign.total_budget is not None else "no total budget",
               "today_sub": f"of {campaign.daily_budget:,.2f}" if campaign.daily_budget is not None else "no daily budget",
               "history": AuditEntry.objects.for_object("campaign", campaign.pk)[:8], **_lists_context(campaign, ads)}
    return render(request, "marketing/campaign_detail.html", context)


LIST_CHANNELS = (Channel.Kind.PUSH, Channel.Kind.EMAIL, Channel.Kind.SMS)


def _lists_context(campaign: Campaign, ads: list[Ad], shown: int = 10) -> dict:
    """The delivery lists external systems fetched for the campaign, newest first: batches, customers, cost, when.

    Customers are those reserved; `left_out` those the plan picked but a cap or the budget kept off the list.

    The card shows when the campaign has lists, or ads on a channel that is messaged from lists (push, e-mail, SMS)."""
    waiting = Q(pending_customers__isnull=False)  # reserved, not yet written out as served-ad rows (seconds, normally)
    found = list(DeliveryBatch.objects.filter(campaign=campaign).values("key", "placement_id")
                 .annotate(batches=Count("id"), picked=Sum("targeted"), customers=Sum("rows"),
                           first=Min("created_at"), last=Max("created_at"),
                           waiting=Sum("rows", filter=waiting), waiting_since=Min("created_at", filter=waiting))
                 .order_by("-last")[:shown])
    stale = timezone.now() - timedelta(minutes=2)
    placements = {p.pk: p for p in Placement.objects.filter(pk__in={f["placement_id"] for f in found}).select_related("channel")}
    for f in found:
        placement = placements[f["placement_id"]]
        f["placement"], f["cost"] = placement, spend.cost_of_serving(placement.channel) * (f["customers"] or 0)
        f["left_out"] = (f["picked"] or 0) - (f["customers"] or 0)
        f["stale"] = bool(f["waiting"]) and f["waiting_since"] < stale
    listed = bool(found) or any(p.channel.kind in LIST_CHANNELS for a in ads for p in a.placements.all())
    return {"lists": found, "lists_card": listed}


def _explored_sub(ads: list[Ad]) -> str:
    """Under "Ads explored": of how many (only ads a plan ranks by model explore; targeted ones need not)."""
    ranked = sum(1 for a in ads if a.ranked)
    if not ranked:
        return "no ad is ranked by model" if ads else "no ads yet"
    others = len(ads) - ranked
    return f"of {ranked} ranked by model" + (f", {others} targeted or by priority" if others else "")


def _model_context(campaign: Campaign) -> dict:
    """The campaign's model card: its champion, its latest versions, the latest training (polled while it runs)."""
    key = learning.model_key(campaign.pk)
    versions = list(ModelVersion.objects.filter(key=key).order_by("-version")[:5])
    uplift = ModelVersion.objects.champions().filter(key=incrementality.uplift_key(campaign.pk)).first()
    uplift_job = Job.objects.filter(kind="uplift_model", title=f"Uplift model for “{campaign.name}”").first()
    return {"campaign": campaign, "versions": versions, "model_job": campaign.model_job, "uplift": uplift,
            "uplift_job": uplift_job,
            "champion": ModelVersion.objects.champions().filter(key=key).first(),
            "ranked": Ad.objects.filter(campaign=campaign, pk__in=rates.ranked_ads()).exists()}


def _daily_chart(campaign: Campaign, served_days: list[tuple[int, date, int]], days: int = 14) -> tuple[dict, int]:
    """Spend and served ads per day over the last `days` days (a bar and a line on two axes).

    `served_days`: (ad, local day, served) of the campaign's ads (delivery_lists.served_per_ad_and_day)."""
    today = timezone.localdate()
    first = today - timedelta(days=days - 1)
    per_day = spend.spent_per_day(campaign.pk, first)
    served = Counter()
    for _, day, n in served_days:
        if day >= first:
            served[day] += n
    labels = [first + timedelta(days=i) for i in range(days)]
    chart = {
        "type": "bar",
        "data": {"labels": [d.strftime("%b %d") for d in labels], "datasets": [
            {"label": "Spend", "data": [float(per_day.get(d, 0)) for d in labels], "yAxisID": "y", "color": "#1f9d8b"},
            {"label": "Ads served", "data": [served.get(d, 0) for d in labels], "type": "line", "yAxisID": "y1",
             "color": "#5b2fd6", "pointRadius": 2},
        ]},
        "options": {"scales": {"y": {"beginAtZero": True, "position": "left", "title": {"display": True, "text": "Spend"}},
                               "y1": {"beginAtZero": True, "position": "right", "grid": {"drawOnChartArea": False},
                                      "title": {"display": True, "text": "Ads served"}}}},
    }
    return chart, sum(served.values())


@require_POST
@writer_required
def campaign_status(request, pk: int):
    campaign = get_campaign_for_user(request.user, pk, write=True)
    try:
        campaign = actions.move_campaign(campaign, request.POST.get("status", ""), by=request.user)
    except actions.Refused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"“{campaign.name}” is now {campaign.get_status_display().lower()}.")
    return redirect("campaigns:detail", pk=campaign.pk)


@require_POST
@writer_required
def campaign_train(request, pk: int):
    campaign = get_campaign_for_user(request.user, pk, write=True)
    job = actions.queue_model_training(campaign, by=request.user)
    messages.success(request, f"Training the model of “{campaign.name}”: follow it below or on the Jobs page (job {job.pk}).")
    return redirect("campaigns:detail", pk=campaign.pk)


@require_POST
@writer_required
def campaign_train_uplift(request, pk: int):
    campaign = get_campaign_for_user(request.user, pk, write=True)
    job = actions.queue_uplift_training(campaign, by=request.user)
    messages.success(request, f"Training the uplift model of “{campaign.name}” (job {job.pk}).")
    return redirect("campaigns:detail", pk=campaign.pk)


@require_http_methods(["GET", "POST"])
@writer_required
def ad_edit(request, pk: int | None = None, campaign_pk: int | None = None):
    ad = get_ad_for_user(request.user, pk, write=True) if pk else Ad(campaign=get_campaign_for_user(request.user, campaign_pk, write=True))
    form = AdForm(request.POST or None, instance=ad)
    if request.method == "POST" and form.is_valid():
        ad = form.save(commit=False)
        ad.promoted_item = form.cleaned_data["promoted_item"]
        ad.dynamic_items = form.cleaned_data["dynamic_items"]
        actions.save_ad(ad, form.cleaned_data["placements"], by=request.user)
        messages.success(request, f"Ad “{ad.name}” saved.")
        return redirect("campaigns:detail", pk=ad.campaign_id)
    return render(request, "marketing/ad_form.html", {"form": form, "ad": ad, "campaign": ad.campaign},
                  status=400 if form.errors else 200)


CAP_TARGETS = ("ad", "campaign", "placement", "channel")


@require_http_methods(["GET", "POST"])
@writer_required
def cap_new(request):
    initial = {k: request.GET[k] for k in ("level", *CAP_TARGETS) if request.GET.get(k, "").isalnum()}
    form = CapForm(request.POST or None, initial=initial)
    back = _back(request)
    if request.method == "POST" and form.is_valid():
        cap = actions.add_cap(form.save(commit=False), by=request.user)
        messages.success(request, f"Cap added: {cap}.")
        return redirect(back)
    return render(request, "marketing/cap_form.html", {"form": form, "back": back}, status=400 if form.errors else 200)


@require_POST
@writer_required
def cap_delete(request, pk: int):
    cap = get_cap_for_user(request.user, pk, write=True)
    described = str(cap)
    actions.remove_cap(cap, by=request.user)
    messages.success(request, f"Cap removed: {described}.")
    return redirect(_back(request))


def _back(request) -> str:
    """Where a cap form returns to: the page that sent the operator (same site only), else the delivery set-up."""
    url = request.POST.get("next") or request.GET.get("next") or ""
    if url and url_has_allowed_host_and_scheme(url, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return url
    return reverse("campaigns:delivery")
