"""The service's URLs plus plain views and a middleware that fail (tests/test_api_errors.py)."""

from __future__ import annotations

from collections.abc import Callable

from django.db import OperationalError
from django.http import HttpRequest, HttpResponse
from django.urls import path

from mindo.urls import handler404, handler500
from mindo.urls import urlpatterns as service_urlpatterns

FAILING_HEADER = "HTTP_X_TEST_FAIL_IN_MIDDLEWARE"


def broken_view(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("a bug in a plain view")


def database_down_view(request: HttpRequest) -> HttpResponse:
    raise OperationalError("connection refused")


class FailingMiddleware:
    """Raises before any view when a request carries FAILING_HEADER: only handler500 sees it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        failure = request.META.get(FAILING_HEADER)
        if failure == "database":
            raise OperationalError("connection refused")
        if failure:
            raise RuntimeError("a bug in a middleware")
        return self.get_response(request)


urlpatterns = [
    path("api/v1/test/broken/", broken_view),
    path("api/v1/test/database-down/", database_down_view),
    path("elsewhere/broken/", broken_view),
    *service_urlpatterns,
]

__all__ = ["handler404", "handler500", "urlpatterns"]
