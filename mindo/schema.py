"""Error bodies shared by the OpenAPI descriptions of the endpoints."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import inline_serializer
from rest_framework import serializers


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    """Describes `X-API-Key` in the OpenAPI document, so Swagger UI can send it."""

    target_class = "mindo.authentication.ApiKeyAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "apiKey", "in": "header", "name": "X-API-Key"}


ERROR_BODY = inline_serializer("Error", fields={"error": serializers.CharField()})
DETAIL_BODY = inline_serializer("Detail", fields={"detail": serializers.CharField()})
