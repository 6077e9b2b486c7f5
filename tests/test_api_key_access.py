"""Which key may call which endpoint: every API view found by walking the URL resolver, so a view
added anywhere is checked without being listed here.

A missing or unknown key gets the contract's missing-key 401; an expired or revoked one
`{"error": "API Key expirada"}`; a key without the view's `required_scope` a 403
`{"error": "API Key no tiene acceso a este recurso"}`; a key with only that scope gets past the
check (to whatever the view answers its placeholder path).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import override_settings
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient, APIRequestFactory
from rest_framework.views import APIView

from bulksend.models import BulkSend
from messaging.models import Message
from mindo import api_keys
from mindo.api_keys import api_key_create, api_key_generate
from mindo.models import ApiKeyScope, Organization
from tests import factories
from tests.conftest import Tenant, TickingClock

UNAUTHENTICATED = {"error": "Este endpoint requiere autenticacion con API Key (header X-API-Key)"}
EXPIRED = {"error": "API Key expirada"}
NO_SCOPE = {"error": "API Key no tiene acceso a este recurso"}
# The API's public documentation, served to anyone: no key, so no scope.
PUBLIC_API_VIEWS = {"schema", "swagger-ui"}
# A value for each path converter, so that every path resolves (to an unknown object).
CONVERTER_SAMPLES = {"int": "1", "uuid": "00000000-0000-0000-0000-000000000000"}
FROZEN_AT = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class ApiEndpoint:
    path: str
    method: str
    view: type[APIView]

    def __str__(self) -> str:
        return f"{self.method.upper()} {self.path}"


def _walk(patterns: list[Any], prefix: str = "") -> list[tuple[str, URLPattern]]:
    found: list[tuple[str, URLPattern]] = []
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            found.extend(_walk(pattern.url_patterns, route))
        else:
            found.append((route, pattern))
    return found


def _path_of(route: str) -> str:
    sample = re.sub(
        r"<(?:(\w+):)?\w+>", lambda match: CONVERTER_SAMPLES.get(match.group(1), "x1"), route
    )
    return "/" + sample.lstrip("^").rstrip("$")


def api_views() -> list[tuple[str, str | None, Any]]:
    """(path, url name, view class or None) of every URL under /api/ but the public docs."""
    views = []
    for route, pattern in _walk(get_resolver().url_patterns):
        path = _path_of(route)
        if path.startswith("/api/") and pattern.name not in PUBLIC_API_VIEWS:
            views.append((path, pattern.name, getattr(pattern.callback, "view_class", None)))
    return views


def api_endpoints() -> list[ApiEndpoint]:
    endpoints = []
    for path, _name, view in api_views():
        if view is None or not issubclass(view, APIView):
            continue
        for method in ("get", "post", "put", "patch", "delete"):
            if hasattr(view, method):
                endpoints.append(ApiEndpoint(path, method, view))
    return endpoints


ENDPOINTS = api_endpoints()


def request(client: APIClient, endpoint: ApiEndpoint) -> Any:
    return getattr(client, endpoint.method)(endpoint.path, {}, format="json")


def client_with(raw_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw_key)
    return client


def key_for(tenant: Tenant, **fields: Any) -> str:
    _, raw_key = api_key_create(
        organization=tenant.organization, user=tenant.api_key.user, name="scoped", **fields
    )
    return raw_key


def nothing_written(tenant: Tenant) -> bool:
    return not BulkSend.objects.exists() and not Message.objects.exists()


# --- every view declares its scope ---------------------------------------------------------------


def test_every_api_view_declares_a_valid_required_scope() -> None:
    views = api_views()
    assert len(ENDPOINTS) >= 6, "the walk found too few endpoints to be walking the resolver"
    missing = [
        f"{path} ({name}): {getattr(view, 'required_scope', None)!r}"
        for path, name, view in views
        if view is None
        or not issubclass(view, APIView)
        or getattr(view, "required_scope", None) not in ApiKeyScope.values
    ]
    assert missing == [], (
        "Every view under /api/ is a DRF view with required_scope = one of "
        f"{ApiKeyScope.values}: {missing}"
    )


def test_the_walk_finds_the_known_endpoints() -> None:
    found = {str(endpoint) for endpoint in ENDPOINTS}
    assert {
        "POST /api/v1/meta-templates/send-bulk/",
        "GET /api/v1/meta-templates/bulk-sends/",
        "GET /api/v1/business-info/",
    } <= found


def test_a_view_without_a_scope_refuses_every_key(tenant: Tenant) -> None:
    class Unscoped(APIView):
        def get(self, request: Any) -> Any:
            raise AssertionError("a view without a scope must not run")

    django_request = APIRequestFactory().get("/api/v1/unscoped/", HTTP_X_API_KEY=tenant.raw_key)
    response = Unscoped.as_view()(django_request)

    assert response.status_code == 500
    assert response.data == {"error": "Error interno del servidor"}


# --- each kind of key on every endpoint ---------------------------------------------------------


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_a_missing_key_gets_the_missing_key_401(
    anonymous_client: APIClient, tenant: Tenant, endpoint: ApiEndpoint
) -> None:
    response = request(anonymous_client, endpoint)

    assert (response.status_code, response.json()) == (401, UNAUTHENTICATED)
    assert nothing_written(tenant)


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_an_unknown_key_gets_the_missing_key_401(tenant: Tenant, endpoint: ApiEndpoint) -> None:
    response = request(client_with(api_key_generate()), endpoint)

    assert (response.status_code, response.json()) == (401, UNAUTHENTICATED)
    assert nothing_written(tenant)


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_an_expired_key_gets_api_key_expirada(
    frozen_now: TickingClock, tenant: Tenant, endpoint: ApiEndpoint
) -> None:
    raw_key = key_for(tenant, expires_at=FROZEN_AT)  # the frozen clock reads just after it

    response = request(client_with(raw_key), endpoint)

    assert (response.status_code, response.json()) == (401, EXPIRED)
    assert response["WWW-Authenticate"] == "X-API-Key"
    assert nothing_written(tenant)


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_a_revoked_key_gets_api_key_expirada(tenant: Tenant, endpoint: ApiEndpoint) -> None:
    tenant.api_key.revoke()

    response = request(tenant.client, endpoint)

    assert (response.status_code, response.json()) == (401, EXPIRED)
    assert nothing_written(tenant)


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_a_key_without_the_views_scope_gets_403(tenant: Tenant, endpoint: ApiEndpoint) -> None:
    others = [scope for scope in ApiKeyScope.values if scope != endpoint.view.required_scope]

    response = request(client_with(key_for(tenant, scopes=others)), endpoint)

    assert (response.status_code, response.json()) == (403, NO_SCOPE)
    assert nothing_written(tenant)


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_a_key_with_only_the_views_scope_gets_past_the_check(
    tenant: Tenant, endpoint: ApiEndpoint
) -> None:
    raw_key = key_for(tenant, scopes=[endpoint.view.required_scope])

    response = request(client_with(raw_key), endpoint)

    assert response.status_code != 401
    assert response.json() != NO_SCOPE


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_a_key_that_has_not_expired_yet_gets_past_the_check(
    frozen_now: TickingClock, tenant: Tenant, endpoint: ApiEndpoint
) -> None:
    raw_key = key_for(tenant, expires_at=FROZEN_AT + timedelta(seconds=1))

    response = request(client_with(raw_key), endpoint)

    assert response.status_code != 401


# --- expiry against the clock, cache or not ------------------------------------------------------

BULK_SENDS_URL = "/api/v1/meta-templates/bulk-sends/"


@override_settings(API_KEY_CACHE_SECONDS=300)
def test_a_cached_key_stops_at_its_expiry_to_the_microsecond(
    frozen_now: TickingClock, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api_keys, "cache_clock", lambda: 1_000.0)  # the cache never lapses
    expires_at = FROZEN_AT + timedelta(minutes=10)
    client = client_with(key_for(tenant, expires_at=expires_at))
    assert client.get(BULK_SENDS_URL).status_code == 200

    frozen_now.current = expires_at - timedelta(milliseconds=1)
    before = client.get(BULK_SENDS_URL)
    frozen_now.current = expires_at
    after = client.get(BULK_SENDS_URL)

    assert before.status_code == 200
    assert (after.status_code, after.json()) == (401, EXPIRED)


def test_a_revoked_key_is_told_apart_from_an_unknown_one_but_a_deactivated_users_is_not(
    tenant: Tenant,
) -> None:
    user = tenant.api_key.user
    user.is_active = False
    user.save(update_fields=["is_active"])
    tenant.api_key.revoke()

    response = tenant.client.get(BULK_SENDS_URL)

    assert (response.status_code, response.json()) == (401, UNAUTHENTICATED)


# --- organizations -------------------------------------------------------------------------------


def test_a_scoped_key_reads_only_its_own_organization(tenant: Tenant, other_tenant: Tenant) -> None:
    Organization.objects.filter(pk=other_tenant.organization.pk).update(email="other@example.com")
    account_only = client_with(key_for(tenant, scopes=["account"]))

    body = account_only.get("/api/v1/business-info/").json()
    refused = account_only.get(BULK_SENDS_URL)

    assert (body["id"], body["email"]) == (tenant.organization.pk, "")
    assert (refused.status_code, refused.json()) == (403, NO_SCOPE)


def test_another_organizations_key_with_every_scope_sees_none_of_ours(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    factories.make_bulk_send(tenant.number, tenant.template)

    body = other_tenant.client.get("/api/v1/business-info/").json()

    assert body["id"] == other_tenant.organization.pk
    assert other_tenant.client.get(BULK_SENDS_URL).json()["count"] == 0
    assert tenant.client.get(BULK_SENDS_URL).json()["count"] == 1
