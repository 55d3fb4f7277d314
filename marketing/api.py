"""The delivery API: decisions (scope `decisions`), events (`events:write`) and delivery lists (`delivery-lists:read`)."""

from __future__ import annotations

import re

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from django.db import transaction
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from rest_framework import serializers, status
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.response import Response
from django.utils import timezone
from rest_framework.views import APIView

from accounts.models import ApiClient
from accounts.permissions import ScopedAccess
from audiences.models import Customer

from . import delivery_lists, rows, setup
from .decisions import decide
from .models import Ad, Campaign, Decision, Event, Placement


class DecisionRequest(serializers.Serializer):
    customer = serializers.CharField(max_length=64, help_text="The customer's external id")
    placement = serializers.SlugField(max_length=60)
    context = serializers.DictField(required=False, default=dict, help_text="Anything about the request (device, screen …)")

    def validate_customer(self, value: str) -> Customer:
        customer = rows.customer_with_persona(value)  # with its persona: its segment and features rank the ads
        if customer is None:
            raise serializers.ValidationError(f"no customer with external id {value!r}")
        return customer

    def validate_placement(self, value: str) -> Placement:
        found = setup.setup_for(value)  # the placement's set-up, held in-process: no query
        if found is None:
            raise serializers.ValidationError(f"no placement {value!r}")
        return found.placement


AD_OUT = {
    "ad": serializers.IntegerField(), "campaign": serializers.IntegerField(), "creative": serializers.DictField(),
    "propensity": serializers.FloatField(), "reason": serializers.CharField(),
}


class DecisionCreate(APIView):
    """Which ads to show this customer on this placement now; what is served counts toward the caps at once."""

    scopes = {"POST": "decisions"}
    permission_classes = [ScopedAccess]

    @extend_schema(request=DecisionRequest, responses={201: inline_serializer(
        "DecisionOut", {"decision": serializers.UUIDField(), "ads": inline_serializer("ServedAdOut", AD_OUT, many=True)})})
    def post(self, request):
        given = DecisionRequest(data=request.data)
        given.is_valid(raise_exception=True)
        data = given.validated_data
        decision, ads = decide(data["customer"], data["placement"], context=data["context"])
        return Response({"decision": str(decision.pk), "ads": [_ad(decision, ad, slot) for slot, ad in enumerate(ads)]},
                        status=status.HTTP_201_CREATED)


def _ad(decision: Decision, ad, slot: int) -> dict:
    # The first slot's propensity is exact (see decisions._propensity); a later slot under
    # exploration is, like the first, one of the allowed ads drawn uniformly.
    if slot == 0:
        propensity = decision.propensity
    elif decision.reason == Decision.Reason.EXPLORE:
        propensity = 1.0 / max(len(decision.eligible), 1)
    else:
        propensity = 1.0
    creative = {"title": ad.title, "body": ad.body, "image_url": ad.image_url, "landing_url": ad.landing_url,
                "item": ad.promoted_item.external_id if ad.promoted_item_id else None, **(ad.payload or {})}
    if ad.dynamic_items:
        creative.update(dynamic_item(decision.customer_id, ad))
    return {"ad": ad.pk, "campaign": ad.campaign_id, "creative": creative, "propensity": propensity, "reason": decision.reason}


def dynamic_item(customer_id: int, ad) -> dict:
    """A dynamic creative's item: the customer's best recommended item of the ad's set (two indexed reads).

    Without a recommendation among the set, the promoted item if it is in the set, else the set's first.
    """
    from audiences.models import Item
    from audiences.recommend import best_item_for

    best = best_item_for(customer_id, ad.dynamic_items)
    reason = "recommended"
    if best is None:
        best = ad.promoted_item_id if ad.promoted_item_id in ad.dynamic_items else ad.dynamic_items[0]
        reason = "default"
    item = Item.objects.filter(pk=best).values("external_id", "title", "artist").first()
    if item is None:  # deleted from the catalogue since the ad was saved
        return {}
    return {"item": item["external_id"], "item_title": item["title"], "item_artist": item["artist"], "item_reason": reason}


MAX_EVENTS = 10_000
MAX_ID = 2**63 - 1  # ids are 64-bit: a larger number cannot be looked up (SQLite raises on it)


class EventIn(serializers.Serializer):
    id = serializers.CharField(max_length=100)
    type = serializers.ChoiceField(choices=Event.Type.choices)
    customer = serializers.CharField(max_length=64)
    decision = serializers.UUIDField(required=False, allow_null=True)
    ad = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=MAX_ID)
    value = serializers.DecimalField(max_digits=12, decimal_places=2, required=False, default=0, min_value=0)
    occurred_at = serializers.DateTimeField()


def check_items(items, serializer: type[serializers.Serializer], name: str, limit: int) -> tuple[list, list, dict | None]:
    """A batch item by item: (good [(index, data)], rejected [{index, field, value, reason}], None), or an error body."""
    if not isinstance(items, list):
        return [], [], {"detail": f'Send {{"{name}": [...]}}.'}
    if len(items) > limit:
        return [], [], {"detail": f"A batch holds at most {limit:,} {name}; this one has {len(items):,}."}
    rejected, good = [], []
    for index, item in enumerate(items):
        given = serializer(data=item if isinstance(item, dict) else {})
        if not isinstance(item, dict):
            rejected.append({"index": index, "field": "", "value": str(item)[:80], "reason": "not a JSON object"})
        elif not given.is_valid():
            field, reasons = next(iter(given.errors.items()))
            reasons = reasons if isinstance(reasons, list) else [reasons]
            rejected.append({"index": index, "field": "" if field == "non_field_errors" else field,
                             "value": str(item.get(field, ""))[:80], "reason": " ".join(map(str, reasons))})
        else:
            good.append((index, given.validated_data))
    return good, rejected, None


def record_events(items, *, source: str) -> tuple[dict, int]:
    """Validate a batch item by item, keep the good ones (once per event id), report the bad by index and field."""
    good, rejected, error = check_items(items, EventIn, "events", MAX_EVENTS)
    if error:
        return error, status.HTTP_400_BAD_REQUEST
    customers = dict(Customer.objects.filter(external_id__in={d["customer"] for _, d in good}).values_list("external_id", "pk"))
    ads = dict(Ad.objects.filter(pk__in={d["ad"] for _, d in good if d.get("ad")}).values_list("pk", "campaign_id"))
    # A decision's campaign for events without an ad: a control decision withheld one (outcomes must still compare).
    # Any client may name any decision (the app asks, another system reports), but only for the customer it was
    # made for and an ad it served: otherwise an event would credit a campaign with someone else's response.
    decisions, decided = {}, {}
    for pk, context, customer_id, chosen in Decision.objects.filter(
            pk__in={d["decision"] for _, d in good if d.get("decision")}).values_list("pk", "context", "customer_id", "chosen"):
        decisions[pk] = ((context or {}).get("control") or {}).get("campaign")
        decided[pk] = (customer_id, chosen or [])
    rows = []
    for index, data in good:
        problem = None
        if data["customer"] not in customers:
            problem = ("customer", data["customer"], "no customer with this external id")
        elif data.get("ad") and data["ad"] not in ads:
            problem = ("ad", data["ad"], "no ad with this id")
        elif data.get("decision") and data["decision"] not in decisions:
            problem = ("decision", data["decision"], "no decision with this id")
        elif data.get("decision") and decided[data["decision"]][0] != customers[data["customer"]]:
            problem = ("decision", data["decision"], "this decision was made for another customer")
        elif data.get("decision") and data.get("ad") and data["ad"] not in decided[data["decision"]][1]:
            problem = ("ad", data["ad"], "this decision did not serve this ad")
        if problem:
            rejected.append({"index": index, "field": problem[0], "value": str(problem[1]), "reason": problem[2]})
            continue
        rows.append(Event(source=source, key=data["id"], type=data["type"], customer_id=customers[data["customer"]],
                          decision_id=data.get("decision"), ad_id=data.get("ad"),
                          campaign_id=ads.get(data.get("ad")) or decisions.get(data.get("decision")),
                          value=data["value"], occurred_at=data["occurred_at"]))
    unique = list({row.key: row for row in rows}.values())  # a batch repeating an id counts it once
    with transaction.atomic():
        existing = set(Event.objects.filter(source=source, key__in=[r.key for r in unique]).values_list("key", flat=True))
        new = [r for r in unique if r.key not in existing]
        Event.objects.bulk_create(new, ignore_conflicts=True, batch_size=2000)
        _accrue_event_costs(new)
    rejected.sort(key=lambda r: r["index"])
    body = {"accepted": len(rows), "created": len(unique) - len(existing), "rejected": rejected}
    return body, (status.HTTP_200_OK if rows or not rejected else status.HTTP_400_BAD_REQUEST)


def _accrue_event_costs(events: list[Event]) -> None:
    """Clicks on CPC channels and conversions on CPA channels cost their unit (the channel of the decision served)."""
    from . import spend

    paid = [e for e in events if e.decision_id and e.campaign_id and e.type in ("click", "conversion")]
    if not paid:
        return
    channels = {d.pk: d.placement.channel for d in Decision.objects.filter(pk__in={e.decision_id for e in paid})
                .select_related("placement__channel")}
    for event in paid:
        if event.decision_id in channels:
            spend.accrue(event.campaign_id, spend.cost_of_event(channels[event.decision_id], event.type), event.occurred_at,
                         spend.shard_of(event.customer_id))


class EventBatch(APIView):
    """Post a batch of events; idempotent by event id; each bad item is reported by index and field, good items are kept."""

    scopes = {"POST": "events:write"}
    permission_classes = [ScopedAccess]

    @extend_schema(request=inline_serializer("EventBatchIn", {"events": EventIn(many=True)}),
                   responses={200: inline_serializer("EventBatchOut", {
                       "accepted": serializers.IntegerField(), "created": serializers.IntegerField(),
                       "rejected": serializers.ListField(child=serializers.DictField())})})
    def post(self, request):
        items = request.data.get("events") if isinstance(request.data, dict) else None
        source = f"client:{request.auth.pk}" if isinstance(request.auth, ApiClient) else f"user:{request.user.pk}"
        body, code = record_events(items, source=source)
        return Response(body, status=code)


MAX_SPEND = 10_000


class SpendIn(serializers.Serializer):
    day = serializers.DateField(help_text="The day the money was spent (YYYY-MM-DD)")
    channel = serializers.CharField(max_length=80, required=False, help_text="The channel's id or name")
    campaign = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID, help_text="The campaign's id")
    amount = serializers.DecimalField(max_digits=14, decimal_places=2, min_value=0)

    def validate_day(self, value):
        if value > timezone.localdate():
            raise serializers.ValidationError("is in the future: send spend for days that have happened")
        return value

    def validate(self, data):
        if not data.get("channel") and not data.get("campaign"):
            raise serializers.ValidationError("name a channel, a campaign, or both")
        return data


def record_spend(items, *, source: str) -> tuple[dict, int]:
    """Daily spend from external platforms: good items kept, bad ones reported; a repost of a day and scope replaces it."""
    from .models import Channel, ExternalSpend

    good, rejected, error = check_items(items, SpendIn, "spend", MAX_SPEND)
    if error:
        return error, status.HTTP_400_BAD_REQUEST
    channels = {str(pk): pk for pk in Channel.objects.values_list("pk", flat=True)}
    channels.update({name.lower(): pk for pk, name in Channel.objects.values_list("pk", "name")})
    campaigns = set(Campaign.objects.filter(pk__in={d["campaign"] for _, d in good if d.get("campaign")}).values_list("pk", flat=True))
    rows, accepted = {}, 0
    for index, data in good:
        channel = channels.get(str(data.get("channel", "")).strip().lower()) if data.get("channel") else None
        if data.get("channel") and channel is None:
            rejected.append({"index": index, "field": "channel", "value": str(data["channel"])[:80], "reason": "no channel with this id or name"})
            continue
        if data.get("campaign") and data["campaign"] not in campaigns:
            rejected.append({"index": index, "field": "campaign", "value": str(data["campaign"]), "reason": "no campaign with this id"})
            continue
        scope = "/".join(part for part in (f"channel:{channel}" if channel else "",
                                           f"campaign:{data['campaign']}" if data.get("campaign") else "") if part)
        rows[(data["day"], scope)] = ExternalSpend(source=source, day=data["day"], channel_id=channel,
                                                   campaign_id=data.get("campaign"), scope=scope, amount=data["amount"])
        accepted += 1
    with transaction.atomic():
        existing = set(ExternalSpend.objects.filter(source=source, day__in={d for d, _ in rows}, scope__in={s for _, s in rows})
                       .values_list("day", "scope"))
        ExternalSpend.objects.bulk_create(list(rows.values()), update_conflicts=True, unique_fields=["source", "day", "scope"],
                                          update_fields=["amount", "updated_at"])
    rejected.sort(key=lambda r: r["index"])
    body = {"accepted": accepted, "created": sum(1 for key in rows if key not in existing),
            "replaced": sum(1 for key in rows if key in existing), "rejected": rejected}
    return body, (status.HTTP_200_OK if rows or not rejected else status.HTTP_400_BAD_REQUEST)


class SpendBatch(APIView):
    """Post daily spend per channel and/or campaign from external platforms (ad networks, paid social).

    Idempotent per day and channel (or campaign): a platform restating a day sends it again and the
    amount is replaced, not added. A campaign's spend counts toward its budgets and its ROI.
    """

    scopes = {"POST": "spend:write"}
    permission_classes = [ScopedAccess]

    @extend_schema(request=inline_serializer("SpendBatchIn", {"spend": SpendIn(many=True)}),
                   responses={200: inline_serializer("SpendBatchOut", {
                       "accepted": serializers.IntegerField(), "created": serializers.IntegerField(),
                       "replaced": serializers.IntegerField(), "rejected": serializers.ListField(child=serializers.DictField())})})
    def post(self, request):
        items = request.data.get("spend") if isinstance(request.data, dict) else None
        source = f"client:{request.auth.pk}" if isinstance(request.auth, ApiClient) else f"user:{request.user.pk}"
        body, code = record_spend(items, source=source)
        return Response(body, status=code)


LIST_KEY = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")


class DeliveryListQuery(serializers.Serializer):
    placement = serializers.SlugField(required=False, help_text="Needed when the campaign has ads on several placements")
    list = serializers.RegexField(LIST_KEY, required=False, help_text=(
        "The list's name, e.g. 2026-11-23-evening (default: today's date). Fetching a batch of the same list "
        "again replays it: caps are reserved once per batch."), error_messages={"invalid": "letters, digits and . _ : - only"})
    after = serializers.IntegerField(required=False, default=0, min_value=0, max_value=MAX_ID, help_text="Resume after this cursor (a row's `cursor`)")
    size = serializers.IntegerField(required=False, default=10_000, min_value=1, max_value=delivery_lists.MAX_BATCH,
                                    help_text="Customers per batch")
    batches = serializers.IntegerField(required=False, min_value=1, max_value=1_000_000, help_text="Stop after this many batches (default: the whole list)")
    format = serializers.ChoiceField(choices=["csv", "ndjson"], required=False, default="csv")


class StreamNegotiation(DefaultContentNegotiation):
    """The list picks CSV or NDJSON itself (`format`, or the Accept header); DRF renders only the JSON errors."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class DeliveryListView(APIView):
    """The customers to message now for a push or e-mail campaign, streamed in batches.

    Each row names the customer, the ad, its batch, and the cursor to resume after that batch.
    Fetching a batch reserves the customers' frequency caps (and spends the budget) once; a
    second fetch of the same list from the same cursor replays the same rows and reserves nothing.
    """

    scopes = {"GET": "delivery-lists:read"}
    permission_classes = [ScopedAccess]
    content_negotiation_class = StreamNegotiation

    @extend_schema(
        parameters=[OpenApiParameter(n, location=OpenApiParameter.QUERY, required=False, description=str(f.help_text or ""),
                                     type=str if n in ("placement", "list", "format") else int)
                    for n, f in DeliveryListQuery().fields.items()],
        responses={(200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="customer,ad,batch,cursor"),
                   (200, "application/x-ndjson"): OpenApiResponse(OpenApiTypes.STR, description='{"customer", "ad", "batch", "cursor"} per line'),
                   400: OpenApiResponse(description="The field and the reason")})
    def get(self, request, pk: int):
        campaign = get_object_or_404(Campaign, pk=pk)
        query = request.query_params.copy()
        if "format" not in query and "application/x-ndjson" in request.headers.get("Accept", ""):
            query["format"] = "ndjson"
        given = DeliveryListQuery(data=query)
        given.is_valid(raise_exception=True)
        q = given.validated_data
        key = q.get("list") or timezone.localdate().isoformat()
        try:
            placement = delivery_lists.check_request(campaign, q.get("placement"))
            delivery_lists.check_cursor(campaign, placement, key, q["after"])
        except delivery_lists.ListError as error:
            return Response({error.field: [str(error)]}, status=status.HTTP_400_BAD_REQUEST)
        body = delivery_lists.stream(campaign, placement, key, q["after"], q["size"], q.get("batches"), fmt=q["format"])
        ndjson = q["format"] == "ndjson"
        response = StreamingHttpResponse(body, content_type="application/x-ndjson" if ndjson else "text/csv; charset=utf-8")
        if not ndjson:
            response["Content-Disposition"] = f'attachment; filename="campaign-{campaign.pk}-{key}.csv"'
        response["X-List"] = key
        return response

