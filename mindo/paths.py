"""Requests answered differently from what the URL configuration alone would do.

- The operators' endpoints (health probes, metrics) are answered first, whatever the Host:
  orchestrators and Prometheus reach a process by its IP address, which DJANGO_ALLOWED_HOSTS
  rightly does not list, and Django's host check (in CommonMiddleware) would answer them 400.
  None of them builds a URL from the Host, which is what that check protects.
- API paths answer with or without their trailing slash.

The contract writes `POST /api/v1/meta-templates/send-bulk/`; clients often drop the slash.
Django's APPEND_SLASH would answer such a request with a redirect, which clients follow with a GET
(a 405 for a POST endpoint) and which could never carry a POST body anyway. Instead, an API path
that does not resolve but does with a slash is served as if the client had written it: the URL
configuration, and so the OpenAPI document, keep only the canonical paths.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.urls import get_urlconf, is_valid_path

from mindo import health, metrics
from mindo.middleware import API_PREFIX

OPERATOR_PATHS: dict[str, Callable[[HttpRequest], HttpResponse]] = {
    "/healthz": health.healthz,
    "/readyz": health.readyz,
    "/metrics": metrics.metrics_view,
}


class OperatorPathsMiddleware:
    """Answers the operators' endpoints before any other middleware sees the request."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        view = OPERATOR_PATHS.get(request.path_info)
        if view is not None:
            return view(request)
        return self.get_response(request)


class ApiSlashMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path_info = request.path_info
        if (
            path_info.startswith(API_PREFIX)
            and not path_info.endswith("/")
            and not is_valid_path(path_info, get_urlconf())
            and is_valid_path(f"{path_info}/", get_urlconf())
        ):
            request.path_info = f"{path_info}/"
            request.path = f"{request.path}/"
            request.META["PATH_INFO"] = request.path_info
        return self.get_response(request)
