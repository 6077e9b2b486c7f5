"""`/api/v1/webhook-endpoints/`: registering, listing, deleting, rotating, the delivery log."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from callbacks.models import CallbackEvent, DeliveryAttempt, WebhookEndpoint
from callbacks.store import endpoint_secrets
from mindo.models import ApiKeyScope
from tests.conftest import Tenant

URL = "/api/v1/webhook-endpoints/"
RECEIVER = "http://127.0.0.1:9899/hooks"


def register(tenant: Tenant, **fields: object) -> dict[str, object]:
    body = {"url": RECEIVER, "events": ["message.status", "bulk_send.status"], **fields}
    response = tenant.client.post(URL, body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_it_registers_an_endpoint_and_shows_its_secret_once(tenant: Tenant) -> None:
    created = register(tenant)

    assert str(created["secret"]).startswith("whsec_")
    assert created["events"] == ["bulk_send.status", "message.status"]
    assert created["enabled"] is True
    endpoint = WebhookEndpoint.objects.get(pk=created["id"])
    assert endpoint.organization == tenant.organization
    assert endpoint.secret == created["secret"]
    listed = tenant.client.get(URL).json()
    assert [item["id"] for item in listed] == [created["id"]]
    assert "secret" not in listed[0]
    assert "secret" not in tenant.client.get(f"{URL}{created['id']}/").json()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"events": ["message.status"]}, "url"),
        ({"url": "ftp://example.com/x", "events": ["message.status"]}, "url"),
        ({"url": "not a url", "events": ["message.status"]}, "url"),
        ({"url": RECEIVER, "events": []}, "events"),
        ({"url": RECEIVER, "events": ["message.everything"]}, "events"),
        ({"url": RECEIVER}, "events"),
    ],
)
def test_it_refuses_a_bad_registration_naming_the_field(
    tenant: Tenant, body: dict[str, object], field: str
) -> None:
    response = tenant.client.post(URL, body, format="json")

    assert response.status_code == 400
    assert field in response.json()
    assert not WebhookEndpoint.objects.exists()


def test_another_organizations_endpoint_is_a_404(tenant: Tenant, other_tenant: Tenant) -> None:
    created = register(tenant)

    for path in ("", "deliveries/"):
        response = other_tenant.client.get(f"{URL}{created['id']}/{path}")
        assert response.status_code == 404
        assert response.json() == {"error": "Endpoint no encontrado"}
    assert other_tenant.client.delete(f"{URL}{created['id']}/").status_code == 404
    assert other_tenant.client.post(f"{URL}{created['id']}/test/").status_code == 404
    assert other_tenant.client.get(URL).json() == []
    assert WebhookEndpoint.objects.filter(pk=created["id"]).exists()


def test_it_deletes_an_endpoint_with_its_outbox(tenant: Tenant) -> None:
    created = register(tenant)
    tenant.client.post(f"{URL}{created['id']}/test/")

    assert tenant.client.delete(f"{URL}{created['id']}/").status_code == 204

    assert not WebhookEndpoint.objects.exists()
    assert not CallbackEvent.objects.exists()


def test_rotating_keeps_the_old_secret_signing_for_a_day(tenant: Tenant) -> None:
    created = register(tenant)

    response = tenant.client.post(f"{URL}{created['id']}/rotate-secret/")

    assert response.status_code == 200
    new_secret = response.json()["secret"]
    assert new_secret != created["secret"]
    endpoint = WebhookEndpoint.objects.get(pk=created["id"])
    now = timezone.now()
    assert endpoint_secrets(endpoint, now=now) == [new_secret, created["secret"]]
    assert endpoint_secrets(endpoint, now=now + timedelta(hours=24, seconds=1)) == [new_secret]


def test_a_key_without_the_webhooks_scope_gets_403(tenant: Tenant) -> None:
    tenant.api_key.scopes = [scope for scope in ApiKeyScope.values if scope != "webhooks"]
    tenant.api_key.save()

    response = tenant.client.get(URL)

    assert response.status_code == 403
    assert response.json() == {"error": "API Key no tiene acceso a este recurso"}


def test_the_test_event_is_queued_for_the_endpoint(tenant: Tenant) -> None:
    created = register(tenant, events=["template.status"])

    response = tenant.client.post(f"{URL}{created['id']}/test/")

    assert response.status_code == 202
    event = CallbackEvent.objects.get(pk=response.json()["event_id"])
    assert (event.type, str(event.endpoint_id)) == ("endpoint.test", created["id"])


def test_the_delivery_log_lists_attempts_newest_first(tenant: Tenant) -> None:
    created = register(tenant)
    endpoint = WebhookEndpoint.objects.get(pk=created["id"])
    for status_code in (500, 200):
        DeliveryAttempt.objects.create(
            endpoint=endpoint,
            event_ids=[],
            attempted_at=timezone.now(),
            status_code=status_code,
            latency_ms=3,
            outcome="delivered" if status_code == 200 else "retry",
        )

    page = tenant.client.get(f"{URL}{created['id']}/deliveries/").json()

    assert page["count"] == 2
    assert [row["status_code"] for row in page["results"]] == [200, 500]


def test_replay_needs_an_event_or_a_time(tenant: Tenant) -> None:
    created = register(tenant)

    response = tenant.client.post(f"{URL}{created['id']}/replay/", {}, format="json")

    assert response.status_code == 400
    assert "event_id" in response.json()
