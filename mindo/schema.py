"""Error bodies shared by the OpenAPI descriptions of the endpoints."""

from __future__ import annotations

from drf_spectacular.utils import inline_serializer
from rest_framework import serializers

ERROR_BODY = inline_serializer("Error", fields={"error": serializers.CharField()})
DETAIL_BODY = inline_serializer("Detail", fields={"detail": serializers.CharField()})
