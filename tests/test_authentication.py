"""The X-API-Key header on every endpoint of the contract."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from rest_framework.test import APIClient

from bulksend.models import BulkSend
from mindo.api_keys import api_key_authenticate, api_key_generate
from mindo.models import ApiKey, Membership
from tests import factories
from tests.conftest import Tenant

UNAUTHENTICATED = {"error": "Este endpoint requiere autenticacion con API Key (header X-API-Key)"}
EXPIRED = {"error": "API Key expirada"}

SEND_BODY = {
    "phone_number_id": "813497231850626",
    "template_name": "welcome_message",
    "recipients": [
        {
            "phone": "+5491112345678",
            "variables": {"name": "Juan", "code": "A"},
            "button_variables": {"button_0": "A"},
        }
    ],
}


def call(client: APIClient, endpoint: str, bulk_send: BulkSend) -> Any:
    base = "/api/v1/meta-templates"
    if endpoint == "send-bulk":
        return client.post(f"{base}/send-bulk/", SEND_BODY, format="json")
    paths = {
        "list": f"{base}/bulk-sends/",
        "detail": f"{base}/bulk-sends/{bulk_send.pk}/",
        "messages": f"{base}/bulk-sends/{bulk_send.pk}/messages/",
        "message": f"{base}/messages/wamid.HBgNNTQ5MTEyMzQ1Njc4FQIAERgSQjVBN0YzRjQ2NzFCNDVBNQA=/",
    }
    return client.get(paths[endpoint])


ENDPOINTS = ["send-bulk", "list", "detail", "messages", "message"]


@pytest.fixture
def bulk_send(tenant: Tenant) -> BulkSend:
    bulk_send = factories.make_bulk_send(tenant.number, tenant.template)
    factories.make_message(
        bulk_send,
        status="sent",
        wamid="wamid.HBgNNTQ5MTEyMzQ1Njc4FQIAERgSQjVBN0YzRjQ2NzFCNDVBNQA=",
        sent_at=timezone.now(),
        variables={"name": "Juan", "code": "A"},
    )
    return bulk_send


def client_with(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=key)
    return client


def assert_unauthenticated(response: Any) -> None:
    assert response.status_code == 401
    assert response.json() == UNAUTHENTICATED


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_it_answers_401_without_the_header(
    anonymous_client: APIClient, bulk_send: BulkSend, endpoint: str
) -> None:
    assert_unauthenticated(call(anonymous_client, endpoint, bulk_send))
    assert BulkSend.objects.count() == 1


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_it_answers_401_for_an_unknown_key(bulk_send: BulkSend, endpoint: str) -> None:
    assert_unauthenticated(call(client_with(api_key_generate()), endpoint, bulk_send))
    assert BulkSend.objects.count() == 1


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize(
    "key",
    [
        "mindo_xxxxxxxxxxxxxxxxxxxxxxxx",
        "mindo_short",
        "not-a-mindo-key-at-all-000000",
        "Bearer mindo_xxxxxxxxxxxxxxxxxxxxxxxx",
        "mindo_xxxxxxxxxxxxxxxxxxxxxxxxx",
        "mindo_xxxxxxxxxxxxxxxxxxxx!xxx",
        "   ",
    ],
)
def test_it_answers_401_for_a_malformed_key(bulk_send: BulkSend, endpoint: str, key: str) -> None:
    assert_unauthenticated(call(client_with(key), endpoint, bulk_send))


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_it_answers_401_api_key_expirada_for_a_revoked_key(
    tenant: Tenant, bulk_send: BulkSend, endpoint: str
) -> None:
    tenant.api_key.revoke()

    response = call(tenant.client, endpoint, bulk_send)

    assert response.status_code == 401
    assert response.json() == EXPIRED
    assert response["WWW-Authenticate"] == "X-API-Key"
    assert BulkSend.objects.count() == 1


def deactivate_user(tenant: Tenant, other_tenant: Tenant) -> None:
    User.objects.filter(pk=tenant.api_key.user_id).update(is_active=False)


def remove_membership(tenant: Tenant, other_tenant: Tenant) -> None:
    Membership.objects.filter(user_id=tenant.api_key.user_id).delete()


def move_membership(tenant: Tenant, other_tenant: Tenant) -> None:
    Membership.objects.filter(user_id=tenant.api_key.user_id).update(
        organization=other_tenant.organization
    )


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("lose_user", [deactivate_user, remove_membership, move_membership])
def test_it_answers_401_for_a_key_whose_user_is_inactive_or_left_its_organization(
    tenant: Tenant,
    other_tenant: Tenant,
    bulk_send: BulkSend,
    endpoint: str,
    lose_user: Callable[[Tenant, Tenant], None],
) -> None:
    lose_user(tenant, other_tenant)

    assert_unauthenticated(call(tenant.client, endpoint, bulk_send))
    assert BulkSend.objects.count() == 1


def test_it_checks_a_key_its_user_and_the_membership_in_one_query(
    tenant: Tenant, django_assert_num_queries: Any
) -> None:
    # A key used just now is not written again (see the last_used_at tests below).
    ApiKey.objects.filter(pk=tenant.api_key.pk).update(last_used_at=timezone.now())

    with django_assert_num_queries(1):
        assert api_key_authenticate(tenant.raw_key) == tenant.api_key


def test_it_answers_401_for_a_key_that_differs_only_after_its_lookup_prefix(
    tenant: Tenant, bulk_send: BulkSend
) -> None:
    # Same `mindo_` + 8 characters, so the same lookup row, but not the same secret.
    last = "A" if tenant.raw_key[-1] != "A" else "B"
    forged = tenant.raw_key[:-1] + last

    assert_unauthenticated(call(client_with(forged), "detail", bulk_send))


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_it_answers_with_a_valid_key(tenant: Tenant, bulk_send: BulkSend, endpoint: str) -> None:
    response = call(tenant.client, endpoint, bulk_send)

    assert response.status_code == (202 if endpoint == "send-bulk" else 200), response.content


def test_it_accepts_the_header_name_in_any_case(tenant: Tenant, bulk_send: BulkSend) -> None:
    response = APIClient().get(
        "/api/v1/meta-templates/bulk-sends/", headers={"x-api-key": tenant.raw_key}
    )

    assert response.status_code == 200


def test_it_answers_401_before_reading_a_bad_body(anonymous_client: APIClient) -> None:
    response = anonymous_client.post(
        "/api/v1/meta-templates/send-bulk/", "{not json", content_type="application/json"
    )

    assert_unauthenticated(response)


def test_it_names_the_header_in_www_authenticate(anonymous_client: APIClient) -> None:
    response = anonymous_client.get("/api/v1/meta-templates/bulk-sends/")

    assert response["WWW-Authenticate"] == "X-API-Key"


def test_it_ignores_a_session_login(tenant: Tenant, bulk_send: BulkSend) -> None:
    client = APIClient()
    client.force_login(tenant.api_key.user)

    assert_unauthenticated(client.get("/api/v1/meta-templates/bulk-sends/"))


def test_it_keeps_other_keys_of_the_organization_working_after_a_revocation(
    tenant: Tenant, bulk_send: BulkSend
) -> None:
    _second, raw_second = factories.make_api_key(tenant.organization)
    tenant.api_key.revoke()

    assert call(client_with(raw_second), "detail", bulk_send).status_code == 200


# --- last_used_at -----------------------------------------------------------------------------


def test_it_records_when_a_key_was_first_used(tenant: Tenant) -> None:
    assert tenant.api_key.last_used_at is None
    before = timezone.now()

    tenant.client.get("/api/v1/meta-templates/bulk-sends/")

    tenant.api_key.refresh_from_db()
    assert tenant.api_key.last_used_at is not None
    assert before <= tenant.api_key.last_used_at <= timezone.now()


def test_it_refreshes_last_used_at_once_the_resolution_has_passed(tenant: Tenant) -> None:
    long_ago = timezone.now() - timedelta(hours=2)
    ApiKey.objects.filter(pk=tenant.api_key.pk).update(last_used_at=long_ago)

    tenant.client.get("/api/v1/meta-templates/bulk-sends/")

    tenant.api_key.refresh_from_db()
    assert tenant.api_key.last_used_at > long_ago + timedelta(hours=1)


def test_it_does_not_rewrite_last_used_at_on_every_request(tenant: Tenant) -> None:
    recent = timezone.now() - timedelta(seconds=5)
    ApiKey.objects.filter(pk=tenant.api_key.pk).update(last_used_at=recent)

    tenant.client.get("/api/v1/meta-templates/bulk-sends/")

    tenant.api_key.refresh_from_db()
    assert tenant.api_key.last_used_at == recent


def test_it_does_not_touch_a_revoked_key(tenant: Tenant) -> None:
    tenant.api_key.revoke()

    tenant.client.get("/api/v1/meta-templates/bulk-sends/")

    tenant.api_key.refresh_from_db()
    assert tenant.api_key.last_used_at is None


def test_it_stores_only_a_hash_of_the_key(tenant: Tenant) -> None:
    stored = ApiKey.objects.filter(pk=tenant.api_key.pk).values().get()

    assert all(tenant.raw_key not in str(value) for value in stored.values())
    assert tenant.raw_key[6:] not in stored["key_hash"]
