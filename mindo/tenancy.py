from __future__ import annotations

from rest_framework.request import Request

from mindo.models import ApiKey, Organization


def request_api_key(request: Request) -> ApiKey:
    """The API key that authenticated `request` (views of the public API require one)."""
    api_key = request.auth
    assert isinstance(api_key, ApiKey), "views of the public API require X-API-Key authentication"
    return api_key


def request_organization(request: Request) -> Organization:
    return request_api_key(request).organization
