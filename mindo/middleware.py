"""JSON, never an HTML page, for errors that escape a view under /api/ outside DRF."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

from mindo.exceptions import DATABASE_UNAVAILABLE_ERRORS, SERVER_ERROR_BODY, UNAVAILABLE_BODY

logger = logging.getLogger(__name__)

API_PREFIX = "/api/"


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
    plain Django view under /api/ raises, in DEBUG too, where Django's handler500 is not used."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not request.path.startswith(API_PREFIX):
            return None
        return api_error_response(request, exception)
