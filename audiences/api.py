"""REST API v1 for customers, the catalogue, activities and jobs.

Batch writes go through the same parser as file imports, so an API client gets
the same per-item errors (by index) and the same idempotent upserts.
"""

from __future__ import annotations

import pandas as pd
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema, inline_serializer
from rest_framework import generics, serializers, status
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import ApiClient
from accounts.permissions import ScopedAccess
from ml.models import Job

from . import imports
from .models import Audience, Customer, ImportKind, Item, Persona

MAX_BATCH = 10_000


class PersonaSerializer(serializers.ModelSerializer):
    class Meta:
        model = Persona
        exclude = ["customer"]


class CustomerSerializer(serializers.ModelSerializer):
    persona = PersonaSerializer(read_only=True, allow_null=True)  # null until personas are first built

    class Meta:
        model = Customer
        fields = ["external_id", "birth_year", "gender", "region", "city_tier", "signup_date", "is_subscriber",
                  "attributes", "created_at", "updated_at", "persona"]


class ItemSerializer(serializers.ModelSerializer):
    class Meta:
        model = Item
        fields = ["external_id", "kind", "title", "artist", "genres", "language", "moods", "release_date", "price",
                  "attributes", "updated_at"]


class ById(CursorPagination):
    ordering = "id"
    page_size = 100
    max_page_size = 1000
    page_size_query_param = "page_size"


BatchResult = inline_serializer(
    "BatchResult",
    {
        "accepted": serializers.IntegerField(),
        "created": serializers.IntegerField(),
        "rejected": serializers.ListField(child=inline_serializer("RejectedItem", {
            "index": serializers.IntegerField(), "field": serializers.CharField(),
            "value": serializers.CharField(), "reason": serializers.CharField(),
        })),
    },
)

# Only bad items: the batch result; not a batch at all (or too long): a `detail`.
BatchRefused = PolymorphicProxySerializer(
    component_name="BatchRefused", resource_type_field_name=None,
    serializers=[BatchResult, inline_serializer("BatchError", {"detail": serializers.CharField()})])


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        import json

        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def load_batch(kind: str, items) -> tuple[dict, int]:
    """Validate and upsert a JSON batch; bad items are reported by index, good ones are kept."""
    if not isinstance(items, list):
        return {"detail": "Send a JSON array of objects (or {\"items\": [...]})."}, status.HTTP_400_BAD_REQUEST
    if len(items) > MAX_BATCH:
        return {"detail": f"A batch holds at most {MAX_BATCH:,} items; this one has {len(items):,}."}, status.HTTP_400_BAD_REQUEST
    if not items:
        return {"accepted": 0, "created": 0, "rejected": []}, status.HTTP_200_OK
    known = {f.name for f in imports.FIELDS[kind]}
    rejected = []
    rows = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            rejected.append({"index": index, "field": "", "value": _cell(item)[:80], "reason": "not a JSON object"})
            rows.append({})
            continue
        unknown = sorted(set(item) - known)
        if unknown:
            rejected.append({"index": index, "field": unknown[0], "value": _cell(item[unknown[0]])[:80],
                             "reason": f"unknown field (known: {', '.join(sorted(known))})"})
            rows.append({})
            continue
        rows.append({k: _cell(v) for k, v in item.items()})
    # Items that send the same fields are loaded together, each group mapping only its own
    # fields, so a field an item leaves out keeps its stored value.
    groups: dict[frozenset, list[int]] = {}
    bad_index = {r["index"] for r in rejected}
    for index, row in enumerate(rows):
        if index not in bad_index:
            groups.setdefault(frozenset(row), []).append(index)
    accepted = created = 0
    ids = imports.KnownIds()
    for fields, indexes in groups.items():
        columns = sorted(fields)
        frame = pd.DataFrame([rows[i] for i in indexes], columns=columns, dtype=object).astype(str)
        frame.index = pd.Index([i + 2 for i in indexes])  # spreadsheet-style rows, as in file imports
        result = imports.load_chunk(kind, frame, {name: name for name in columns}, keep_extra=False, ids=ids)
        accepted += result.ok
        created += result.created
        for errors in result.errors:
            for e in errors.to_dict("records"):
                rejected.append({"index": int(e["row"]) - 2, "field": e["column"], "value": e["value"], "reason": e["reason"]})
    rejected.sort(key=lambda r: r["index"])
    body = {"accepted": accepted, "created": created, "rejected": rejected}
    return body, (status.HTTP_200_OK if accepted or not rejected else status.HTTP_400_BAD_REQUEST)


class BatchUpsert:
    kind: str

    @extend_schema(request={"application/json": {"type": "array", "items": {"type": "object"}}},
                   responses={200: BatchResult, 400: BatchRefused})
    def post(self, request):
        items = request.data.get("items") if isinstance(request.data, dict) else request.data
        body, code = load_batch(self.kind, items)
        return Response(body, status=code)


class CustomerList(BatchUpsert, generics.ListAPIView):
    """List customers (cursor-paginated) or upsert a batch of them by external_id."""

    scopes = {"GET": "customers:read", "POST": "customers:write"}
    permission_classes = [ScopedAccess]
    serializer_class = CustomerSerializer
    pagination_class = ById
    queryset = Customer.objects.select_related("persona")
    kind = ImportKind.CUSTOMERS


class CustomerDetail(generics.RetrieveAPIView):
    """One customer with their persona, by external id."""

    scopes = {"GET": "customers:read"}
    permission_classes = [ScopedAccess]
    serializer_class = CustomerSerializer
    queryset = Customer.objects.select_related("persona")
    lookup_field = "external_id"


class ItemList(BatchUpsert, generics.ListAPIView):
    """List catalogue items or upsert a batch of them by external_id."""

    scopes = {"GET": "catalogue:read", "POST": "catalogue:write"}
    permission_classes = [ScopedAccess]
    serializer_class = ItemSerializer
    pagination_class = ById
    queryset = Item.objects.all()
    kind = ImportKind.ITEMS


class ActivityBatch(BatchUpsert, APIView):
    """Post a batch of activities; idempotent by event id (or natural key)."""

    scopes = {"POST": "activities:write"}
    permission_classes = [ScopedAccess]
    kind = ImportKind.ACTIVITIES


class JobSerializer(serializers.ModelSerializer):
    class Meta:
        model = Job
        fields = ["id", "kind", "title", "status", "progress", "message", "error", "created_at", "started_at", "finished_at"]

    def to_representation(self, job):
        data = super().to_representation(job)
        request = self.context.get("request")
        if request is not None and isinstance(request.auth, ApiClient) and data["error"]:
            data["error"] = "The job failed; the team sees why on its Jobs page."
        return data


class JobDetail(generics.RetrieveAPIView):
    """Progress of a background job.

    Operators start jobs (no API call does); a token with `jobs:read` may watch any of them, as the
    team's Jobs page does, but an exception's text is an internal detail: a client sees that a job
    failed, and its message, not why.
    """

    scopes = {"GET": "jobs:read"}
    permission_classes = [ScopedAccess]
    serializer_class = JobSerializer
    queryset = Job.objects.all()


class AudienceSerializer(serializers.ModelSerializer):
    class Meta:
        model = Audience
        fields = ["id", "name", "description", "kind", "rule", "size", "size_at", "updated_at"]


class AudienceList(generics.ListAPIView):
    """Audiences with their rules and last counted size."""

    scopes = {"GET": "audiences:read"}
    permission_classes = [ScopedAccess]
    serializer_class = AudienceSerializer
    pagination_class = ById
    queryset = Audience.objects.all()


class MemberSerializer(serializers.ModelSerializer):
    class Meta:
        model = Customer
        fields = ["external_id"]


class AudienceMembers(generics.ListAPIView):
    """The audience's members now (cursor-paginated external ids), computed by its one SQL query."""

    scopes = {"GET": "audiences:read"}
    permission_classes = [ScopedAccess]
    serializer_class = MemberSerializer
    pagination_class = ById

    def get_queryset(self):
        audience = generics.get_object_or_404(Audience, pk=self.kwargs["pk"])
        return Customer.objects.in_audience(audience).only("id", "external_id")


class AudienceMembersStream(APIView):
    """Every member's external id, streamed as NDJSON (one {"cursor": …, "external_id": …} per line).

    For exports of any size: rows are read with a server-side cursor in chunks, nothing is held
    in memory, and the first bytes leave before the last rows are read. Lines come in a stable
    order; `?after=<cursor>` resumes after the last line received (a keyset, so members who
    joined or left meanwhile shift nothing).
    """

    scopes = {"GET": "audiences:read"}
    permission_classes = [ScopedAccess]

    @extend_schema(responses={(200, "application/x-ndjson"): inline_serializer(
        "MemberLine", {"cursor": serializers.IntegerField(), "external_id": serializers.CharField()})})
    def get(self, request, pk: int):
        import json

        from django.http import StreamingHttpResponse

        audience = generics.get_object_or_404(Audience, pk=pk)
        try:
            after = int(request.query_params.get("after", 0))
        except ValueError:
            after = -1
        if not 0 <= after < 2**63:
            return Response({"after": "must be a cursor from an earlier line (a whole number)"}, status=status.HTTP_400_BAD_REQUEST)
        rows = Customer.objects.in_audience(audience).filter(pk__gt=after).order_by("pk").values_list("pk", "external_id")

        def lines():
            for cursor, external_id in rows.iterator(chunk_size=5000):
                yield json.dumps({"cursor": cursor, "external_id": external_id}) + "\n"

        return StreamingHttpResponse(lines(), content_type="application/x-ndjson")


class AudienceWhy(APIView):
    """For one customer: is it in the audience, and which conditions held."""

    scopes = {"GET": "audiences:read"}
    permission_classes = [ScopedAccess]

    @extend_schema(responses={200: inline_serializer("Why", {"member": serializers.BooleanField(), "why": serializers.JSONField()})})
    def get(self, request, pk: int, external_id: str):
        from .rules import explain_membership

        audience = generics.get_object_or_404(Audience, pk=pk)
        customer = generics.get_object_or_404(Customer, external_id=external_id)
        why = explain_membership(audience, customer)
        return Response({"audience": audience.pk, "customer": customer.external_id, "member": why["held"], "why": why})
