"""Requests the database cannot answer right now get 503 + Retry-After, not a 500."""

from __future__ import annotations

import logging

from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
SCHEMA_ERRORS = ("no such table", "no such column", "near ")


class DatabaseUnavailableMiddleware:
    """A lost or refused database connection (restart, failover, too many connections) is temporary: say so.

    Clients and load balancers retry a 503 with Retry-After; a 500 reads as a bug. Each failed
    request's connection is discarded by Django's request_finished handler (unusable after an
    error), and CONN_HEALTH_CHECKS reconnects on the next request, so the service recovers by itself.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, (OperationalError, InterfaceError)):
            return None
        if str(exception).startswith(SCHEMA_ERRORS):  # SQLite says this of a missing migration: a bug, not an outage
            return None
        log.warning("database unavailable for %s %s: %s", request.method, request.path, str(exception).strip()[:200])
        detail = "The database is unavailable for a moment; try again shortly."
        if request.path.startswith("/api/"):
            response = JsonResponse({"detail": detail}, status=503)
        else:
            response = HttpResponse(detail, status=503, content_type="text/plain; charset=utf-8")
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
