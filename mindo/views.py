from __future__ import annotations

import sys

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import page_not_found
from django.views.defaults import server_error as django_server_error

from mindo.exceptions import SERVER_ERROR_BODY
from mindo.middleware import API_PREFIX, api_error_response


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """API clients get the contract's JSON 404 for any unknown path, never an HTML page."""
    if request.path.startswith(API_PREFIX):
        return JsonResponse({"detail": "Not found."}, status=404)
    return page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    """JSON for API clients when an error escapes everything else (a middleware's, say)."""
    if not request.path.startswith(API_PREFIX):
        return django_server_error(request)
    # Django calls this while handling the exception, so it is still at hand; Django logs it.
    error = sys.exc_info()[1]
    if error is None:
        return JsonResponse(SERVER_ERROR_BODY, status=500)
    return api_error_response(request, error, log=False)
