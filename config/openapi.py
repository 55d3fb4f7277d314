"""The OpenAPI schema documents the errors every API view can answer, not only its success.

A client generated from the schema (or a fuzzer checking it) must know that any call may be
refused (401 no or revoked token, 403 missing scope or role, 429 over the client's rate), that
a path naming an object or a page cursor may be 404, and that a body or query may be 400.
"""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers

ErrorDetail = inline_serializer("ErrorDetail", {"detail": serializers.CharField()})

ERRORS = {
    "400": OpenApiResponse(OpenApiTypes.OBJECT, description="Bad input: each field with its reasons, or `detail`"),
    "401": OpenApiResponse(ErrorDetail, description="No token, or an unknown or revoked one"),
    "403": OpenApiResponse(ErrorDetail, description="The token lacks the scope, or the user the role"),
    "404": OpenApiResponse(ErrorDetail, description="No such object, or an invalid page cursor"),
    "429": OpenApiResponse(ErrorDetail, description="Over the client's requests per minute; see Retry-After"),
}


class ApiSchema(AutoSchema):
    def get_operation(self, *args, **kwargs):
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        where = {p["in"] for p in operation.get("parameters", [])}
        codes = ["401", "403", "429"]
        if self.method != "GET" or "query" in where:
            codes.append("400")
        if "path" in where or self._get_paginator():
            codes.append("404")  # a path naming an object, or a page's cursor
        responses = operation["responses"]
        for code in sorted(codes):
            responses.setdefault(code, self._get_response_for_code(ERRORS[code], code, direction="response"))
        return operation
