"""API key scopes: each view of the public API names the scope a key needs to call it."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from rest_framework import status
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from mindo.exceptions import ContractError
from mindo.models import ApiKey, ApiKeyScope

API_KEY_SCOPE_DENIED = "API Key no tiene acceso a este recurso"


def view_required_scope(view: Any) -> str:
    """The scope `view` declares in `required_scope`; ImproperlyConfigured when it declares none
    or an unknown one, so a view added without one refuses every key (answered as a 500 and
    logged) rather than letting any key in."""
    scope = getattr(view, "required_scope", None)
    if scope not in ApiKeyScope.values:
        raise ImproperlyConfigured(
            f"{type(view).__name__} must declare required_scope, one of "
            f"{', '.join(ApiKeyScope.values)}; it has {scope!r}."
        )
    return str(scope)


class ApiKeyScopePermission(BasePermission):
    """403 `{"error": "API Key no tiene acceso a este recurso"}` for a key without the view's
    `required_scope`. Runs after IsAuthenticated, so a request without a key is its 401."""

    def has_permission(self, request: Request, view: Any) -> bool:
        scope = view_required_scope(view)
        api_key = request.auth
        if isinstance(api_key, ApiKey) and not api_key.allows(scope):
            raise ContractError(API_KEY_SCOPE_DENIED, status.HTTP_403_FORBIDDEN)
        return True
