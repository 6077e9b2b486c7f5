"""Middleware of the API: errors that escape a view, and request bodies."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from mindo.exceptions import (
    DATABASE_UNAVAILABLE_ERRORS,
    NOT_FOUND_BODY,
    SERVER_ERROR_BODY,
    UNAVAILABLE_BODY,
)
from mindo.request_body import request_is_chunked, stream_drain, wsgi_body_read

logger = logging.getLogger(__name__)

API_PREFIX = "/api/"
# How much of an unread body is drained, in API_MAX_BODY_BYTES (see ApiRequestBodyMiddleware).
DRAIN_LIMIT_FACTOR = 2
MALFORMED_CHUNKED_BODY = "Malformed chunked request body."


def api_error_response(
    request: HttpRequest, error: BaseException, *, log: bool = True
) -> JsonResponse:
    """503 while the database cannot be reached (the client may retry), 500 otherwise."""
    unavailable = isinstance(error, DATABASE_UNAVAILABLE_ERRORS)
    if log:
        logger.error("Unhandled error in %s", request.path, exc_info=error)
    if unavailable:
        return JsonResponse(UNAVAILABLE_BODY, status=503)
    return JsonResponse(SERVER_ERROR_BODY, status=500)


class ApiErrorMiddleware:
    """DRF views answer their own errors (mindo.exceptions.exception_handler); this catches what a
    plain Django view under /api/ raises, in DEBUG too, where Django's handler500 is not used, and
    answers an unknown path under /api/ with JSON in DEBUG too, where Django's handler404 is not
    used either (`./dev up` runs with DEBUG on)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            response.status_code == 404
            and request.path.startswith(API_PREFIX)
            and response.get("Content-Type", "").startswith("text/html")
        ):
            return JsonResponse(NOT_FOUND_BODY, status=404)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not request.path.startswith(API_PREFIX):
            return None
        return api_error_response(request, exception)


class ApiRequestBodyMiddleware:
    """Makes a chunked body readable, and reads what an early answer left of a body.

    1. A chunked body is read here (at most API_MAX_BODY_BYTES + 1 bytes) and handed on as if it
       had declared that length, so the parser sees it, or refuses it with 413 as too large.
    2. After the answer, what is left of the body is read and discarded, so a client whose body
       was refused before it was read (413, 401) receives the answer instead of a connection
       reset, for bodies up to twice API_MAX_BODY_BYTES. Past that the connection is closed
       unread: the client may see a reset, and the worker is not held by a huge upload.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith(API_PREFIX):
            return self.get_response(request)
        chunked = request_is_chunked(request.META)
        if chunked:
            try:
                body = wsgi_body_read(request.META, limit=settings.API_MAX_BODY_BYTES)
            # The server's own errors (gunicorn's for a bad chunk size, say) have no common base.
            except Exception as error:
                logger.info("Unreadable chunked body for %s: %r", request.path, error)
                return JsonResponse({"detail": MALFORMED_CHUNKED_BODY}, status=400)
            # What Django does itself once it has read `request.body`: a stream over the bytes.
            request._stream = io.BytesIO(body)
            request.META["CONTENT_LENGTH"] = str(len(body))
        response = self.get_response(request)
        unread = request.META["wsgi.input"] if chunked else request
        try:
            stream_drain(unread, DRAIN_LIMIT_FACTOR * settings.API_MAX_BODY_BYTES)
        except Exception as error:  # the client went away: the answer is all it would have got
            logger.info("Could not read the rest of the body for %s: %r", request.path, error)
        return response
