"""GET /api/v1/meta-templates/bulk-sends/{bulk_send_id}/: the status of one send."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from bulksend.models import BulkSend, BulkSendStatus
from tests import factories
from tests.conftest import Tenant
from tests.spec_shapes import DETAIL_KEYS


def url(bulk_send_id: object) -> str:
    return f"/api/v1/meta-templates/bulk-sends/{bulk_send_id}/"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def detail(tenant: Tenant, bulk_send: BulkSend) -> dict[str, Any]:
    response = tenant.client.get(url(bulk_send.pk))
    assert response.status_code == 200, response.content
    return response.json()


def with_messages(bulk_send: BulkSend, counts: dict[str, int]) -> BulkSend:
    for status, count in counts.items():
        for _ in range(count):
            unsent = ("pending", "sending", "failed", "cancelled")
            sent_at = None if status in unsent else timezone.now()
            factories.make_message(bulk_send, status=status, sent_at=sent_at)
    bulk_send.refresh_from_db()
    return bulk_send


def test_it_answers_the_spec_completed_example(tenant: Tenant) -> None:
    user = tenant.api_key.user
    bulk_send = factories.make_bulk_send(
        tenant.number, tenant.template, created_by=user, estimated_time_minutes=0.4
    )
    with_messages(bulk_send, {"read": 1, "delivered": 1, "sent": 1})
    BulkSend.objects.filter(pk=bulk_send.pk).update(
        status=BulkSendStatus.COMPLETED,
        created_at=at("2025-11-16T21:30:00"),
        started_at=at("2025-11-16T21:30:05"),
        completed_at=at("2025-11-16T21:30:28"),
    )

    body = detail(tenant, bulk_send)

    assert body == {
        "id": str(bulk_send.pk),
        "status": "COMPLETED",
        "template": {
            "id": tenant.template.pk,
            "template_name": "welcome_message",
            "language": "es",
            "status": "APPROVED",
        },
        "phone_number": {
            "id": tenant.number.pk,
            "display_phone_number": "+54 9 223 675-0780",
            "verified_name": "Mindo Software",
        },
        "total_recipients": 3,
        "sent_count": 3,
        "delivered_count": 2,
        "read_count": 1,
        "failed_count": 0,
        "pending_count": 0,
        "progress_percentage": 100.0,
        "estimated_time_minutes": 0.4,
        "started_at": "2025-11-16T21:30:05Z",
        "completed_at": "2025-11-16T21:30:28Z",
        "created_at": "2025-11-16T21:30:00Z",
        "created_by": {
            "id": user.pk,
            "email": user.email,
            "first_name": "John",
            "last_name": "Doe",
        },
    }
    assert sorted(body) == sorted(DETAIL_KEYS)


def test_it_answers_the_spec_in_progress_example_counters(tenant: Tenant) -> None:
    bulk_send = factories.make_bulk_send(
        tenant.number,
        tenant.template,
        created_by=tenant.api_key.user,
        status=BulkSendStatus.PROCESSING,
        started_at=timezone.now(),
    )
    with_messages(
        bulk_send,
        {"sent": 15, "delivered": 20, "read": 10, "failed": 2, "pending": 50, "sending": 3},
    )

    body = detail(tenant, bulk_send)

    assert {key: body[key] for key in DETAIL_KEYS[4:11]} == {
        "total_recipients": 100,
        "sent_count": 45,
        "delivered_count": 30,
        "read_count": 10,
        "failed_count": 2,
        "pending_count": 53,
        "progress_percentage": 47.0,
    }
    assert body["status"] == "PROCESSING"
    assert body["completed_at"] is None
    assert isinstance(body["progress_percentage"], float)
    assert isinstance(body["estimated_time_minutes"], float)


def test_it_answers_a_just_created_send_with_nulls_for_its_moments(tenant: Tenant) -> None:
    created = tenant.client.post(
        "/api/v1/meta-templates/send-bulk/",
        {
            "phone_number_id": tenant.number.phone_number_id,
            "template_name": "welcome_message",
            "recipients": [
                {
                    "phone": phone,
                    "variables": {"name": "Juan", "code": "A"},
                    "button_variables": {"button_0": "A"},
                }
                for phone in ("+5491112345678", "+5491187654321", "+5491155667788")
            ],
        },
        format="json",
    ).json()

    response = tenant.client.get(url(created["bulk_send_id"]))

    assert response.status_code == 200
    body = response.json()
    assert list(body) == DETAIL_KEYS
    assert body["id"] == created["bulk_send_id"]
    assert body["status"] == "QUEUED"
    assert (body["total_recipients"], body["pending_count"], body["sent_count"]) == (3, 3, 0)
    assert body["progress_percentage"] == 0.0
    assert body["estimated_time_minutes"] == created["estimated_time_minutes"]
    assert (body["started_at"], body["completed_at"]) == (None, None)
    assert body["created_at"] == created["created_at"]
    user = tenant.api_key.user
    assert body["created_by"] == {
        "id": user.pk,
        "email": user.email,
        "first_name": user.first_name,
        "last_name": user.last_name,
    }


def test_it_recomputes_the_estimate_from_what_is_left_while_active(tenant: Tenant) -> None:
    number = factories.make_number(tenant.account, throughput_per_second=10)
    bulk_send = factories.make_bulk_send(
        number, tenant.template, status=BulkSendStatus.PROCESSING, estimated_time_minutes=99.0
    )
    with_messages(bulk_send, {"sent": 5, "pending": 600})

    # 600 pending at 10 per second: one minute.
    assert detail(tenant, bulk_send)["estimated_time_minutes"] == 1.0


def test_it_keeps_the_accepted_estimate_once_the_send_is_over(tenant: Tenant) -> None:
    bulk_send = factories.make_bulk_send(
        tenant.number, tenant.template, status=BulkSendStatus.PARTIAL, estimated_time_minutes=2.1
    )
    with_messages(bulk_send, {"read": 2, "failed": 1})

    body = detail(tenant, bulk_send)

    assert body["estimated_time_minutes"] == 2.1
    assert (body["status"], body["failed_count"], body["progress_percentage"]) == (
        "PARTIAL",
        1,
        100.0,
    )


def test_it_shows_null_creator_when_the_user_is_gone(tenant: Tenant) -> None:
    bulk_send = factories.make_bulk_send(tenant.number, tenant.template, created_by=None)

    assert detail(tenant, bulk_send)["created_by"] is None


def test_it_reports_cancelled_sends_and_their_counters(tenant: Tenant) -> None:
    bulk_send = factories.make_bulk_send(
        tenant.number,
        tenant.template,
        status=BulkSendStatus.CANCELLED,
        completed_at=timezone.now() - timedelta(minutes=1),
    )
    with_messages(bulk_send, {"sent": 1, "cancelled": 3})

    body = detail(tenant, bulk_send)

    assert body["status"] == "CANCELLED"
    assert body["total_recipients"] == 4
    assert (body["sent_count"], body["pending_count"]) == (1, 0)
    assert body["progress_percentage"] == 25.0


@pytest.mark.parametrize(
    "bulk_send_id",
    [
        "a3f2b8c9-4d5e-6f7a-8b9c-0d1e2f3a4b5c",
        "nope",
        "123",
        "a3f2b8c9-4d5e-6f7a-8b9c",
        "a3f2b8c9-4d5e-6f7a-8b9c-0d1e2f3a4b5cff",
        "%20",
    ],
)
def test_it_answers_404_for_an_unknown_or_malformed_id(tenant: Tenant, bulk_send_id: str) -> None:
    factories.make_bulk_send(tenant.number, tenant.template)

    response = tenant.client.get(url(bulk_send_id))

    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


def test_it_finds_a_send_by_its_id_in_any_case(tenant: Tenant) -> None:
    bulk_send = factories.make_bulk_send(tenant.number, tenant.template)

    response = tenant.client.get(url(str(bulk_send.pk).upper()))

    assert response.status_code == 200
    assert response.json()["id"] == str(bulk_send.pk)


def test_it_answers_404_for_another_organizations_send(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    theirs = factories.make_bulk_send(other_tenant.number, other_tenant.template)

    response = tenant.client.get(url(theirs.pk))

    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


def test_it_answers_a_json_404_for_an_unknown_path_below_a_send(tenant: Tenant) -> None:
    bulk_send = factories.make_bulk_send(tenant.number, tenant.template)

    response = tenant.client.get(f"{url(bulk_send.pk)}recipients/")

    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


def test_it_answers_404_for_a_random_uuid(tenant: Tenant) -> None:
    response = tenant.client.get(url(uuid.uuid4()))

    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


def test_the_status_of_an_active_send_takes_two_queries(
    tenant: Tenant, django_assert_max_num_queries: Any
) -> None:
    # The key; the send with its template, number, creator and what is queued ahead of it.
    bulk_send = factories.make_bulk_send(
        tenant.number, tenant.template, status=BulkSendStatus.PROCESSING
    )
    with_messages(bulk_send, {"sent": 2, "pending": 3})
    detail(tenant, bulk_send)  # the key's `last_used_at` is written once, on first use

    with django_assert_max_num_queries(2):
        body = detail(tenant, bulk_send)

    assert body["pending_count"] == 3
