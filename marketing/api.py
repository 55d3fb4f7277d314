"""The delivery API: decisions for external systems (scope `decisions`)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import ScopedAccess
from audiences.models import Customer

from .decisions import decide
from .models import Decision, Placement


class DecisionRequest(serializers.Serializer):
    customer = serializers.CharField(max_length=64, help_text="The customer's external id")
    placement = serializers.SlugField(max_length=60)
    context = serializers.DictField(required=False, default=dict, help_text="Anything about the request (device, screen …)")

    def validate_customer(self, value: str) -> Customer:
        customer = Customer.objects.filter(external_id=value).first()
        if customer is None:
            raise serializers.ValidationError(f"no customer with external id {value!r}")
        return customer

    def validate_placement(self, value: str) -> Placement:
        placement = Placement.objects.select_related("channel").filter(slug=value).first()
        if placement is None:
            raise serializers.ValidationError(f"no placement {value!r}")
        return placement


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
    return {"ad": ad.pk, "campaign": ad.campaign_id, "creative": creative, "propensity": propensity, "reason": decision.reason}
