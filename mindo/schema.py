"""The OpenAPI description shared by the endpoints: the key scheme, error bodies, and the
answers of the key check."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    inline_serializer,
)
from rest_framework import serializers

from mindo.api_keys import API_KEY_EXPIRED
from mindo.exceptions import UNAUTHENTICATED_BODY
from mindo.permissions import API_KEY_SCOPE_DENIED


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    """Describes `X-API-Key` in the OpenAPI document, so Swagger UI can send it."""

    target_class = "mindo.authentication.ApiKeyAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "apiKey", "in": "header", "name": "X-API-Key"}


ERROR_BODY = inline_serializer("Error", fields={"error": serializers.CharField()})
DETAIL_BODY = inline_serializer("Detail", fields={"detail": serializers.CharField()})


def _error_example(name: str, message: str, code: str) -> OpenApiExample:
    return OpenApiExample(name, value={"error": message}, status_codes=[code], response_only=True)


# The 401 of every key-authenticated endpoint: no key or an unknown one, or an expired one.
UNAUTHENTICATED_RESPONSE = OpenApiResponse(
    response=ERROR_BODY,
    description=(
        "No `X-API-Key`, or an unknown one (or one whose user left the organization); or a key "
        "that has expired or was revoked."
    ),
    examples=[
        _error_example("Missing or unknown key", UNAUTHENTICATED_BODY["error"], "401"),
        _error_example("Expired or revoked key", API_KEY_EXPIRED, "401"),
    ],
)


def forbidden_response(scope: str, also: str | None) -> OpenApiResponse:
    """The 403 of a view requiring `scope`; `also` describes the view's own 403, if it has one."""
    description = f"The API key lacks the `{scope}` scope."
    if also:
        description = f"{description} {also}"
    return OpenApiResponse(
        response=ERROR_BODY,
        description=description,
        examples=[_error_example("Key without the scope", API_KEY_SCOPE_DENIED, "403")],
    )


class ApiKeyAutoSchema(AutoSchema):
    """Adds the 401 and 403 answers of the key check to every view that declares
    `required_scope`, so no view has to repeat them (and none can forget them).

    It extends the response bodies rather than `get_response_serializers`, which `extend_schema`
    replaces outright on the views that declare their responses.
    """

    def _get_response_bodies(self, direction: Any = "response") -> Any:
        responses = super()._get_response_bodies(direction)
        scope = getattr(self.view, "required_scope", None)
        if scope is None:
            return responses
        own_forbidden = responses.get("403")
        also = None
        if own_forbidden is not None:
            also = own_forbidden.get("description") or (
                "Or what was asked for belongs to another organization."
            )
        for code, answer in (
            ("401", UNAUTHENTICATED_RESPONSE),
            ("403", forbidden_response(str(scope), also)),
        ):
            responses[code] = self._get_response_for_code(answer, code, direction=direction)
        return responses


IDEMPOTENCY_KEY_PARAMETER = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description=(
        "Up to 255 characters, unique per request you mean (a UUID). Sent again with the same "
        "request within 24 h, the first answer comes back (same status, same ids, header "
        "`Idempotent-Replayed: true`) and nothing is created twice; with another request, 409. "
        "A request refused for its fields (400), throttled (429) or failed on our side (5xx) "
        "keeps nothing: the key may be used again."
    ),
)
