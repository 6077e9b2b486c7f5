"""A JSON parser that is fast on large sends and refuses oversized bodies before reading them.

A chunked body reaches it sized by mindo.middleware.ApiRequestBodyMiddleware, and whatever it
leaves unread is drained there, so the client receives the 413 rather than a reset.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO, Any

import orjson
from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser

from mindo.exceptions import RequestTooLarge


def _too_large() -> RequestTooLarge:
    limit = settings.API_MAX_BODY_BYTES
    return RequestTooLarge(f"El cuerpo de la solicitud supera el maximo de {limit} bytes")


class BoundedJSONParser(BaseParser):
    media_type = "application/json"

    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        limit = settings.API_MAX_BODY_BYTES
        request = (parser_context or {}).get("request")
        declared = request.META.get("CONTENT_LENGTH") if request is not None else None
        if declared and declared.isdigit() and int(declared) > limit:
            raise _too_large()
        # Reading one byte past the limit tells a chunked body that is too large from one that fits.
        body = stream.read(limit + 1)
        if len(body) > limit:
            raise _too_large()
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as error:
            raise ParseError(f"JSON parse error - {error}") from error
