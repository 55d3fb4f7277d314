"""The product's URLs plus `POST /bench/baseline`, the floor bench/decisions.py compares decisions with.

The baseline goes through the same middleware, authentication (Bearer token), scope check
(`decisions`), throttle, request parsing and JSON rendering as `POST /api/v1/decisions`, then does
one indexed lookup of the customer. Only bench.bench_settings routes here; the product never does.
"""

from django.urls import path
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import ScopedAccess
from audiences.models import Customer
from config.urls import urlpatterns as product_urlpatterns


class Baseline(APIView):
    """One indexed lookup of the customer named in a decision request, returned as JSON."""

    scopes = {"POST": "decisions"}
    permission_classes = [ScopedAccess]

    def post(self, request):
        external_id = request.data.get("customer") if isinstance(request.data, dict) else None
        customer = Customer.objects.filter(external_id=external_id).values("id", "external_id").first()
        if customer is None:
            return Response({"customer": ["no such customer"]}, status=status.HTTP_400_BAD_REQUEST)
        return Response(customer)


urlpatterns = [*product_urlpatterns, path("bench/baseline", Baseline.as_view(), name="bench-baseline")]
