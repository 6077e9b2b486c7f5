"""GET /api/v1/meta-templates/bulk-sends/: items, order, filters and pagination."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from bulksend.models import BulkSend, BulkSendStatus
from messaging.models import MessageStatus
from templates_app.models import MessageTemplate
from tests import factories
from tests.conftest import Tenant
from tests.spec_shapes import SEND_LIST_ITEM_KEYS

URL = "/api/v1/meta-templates/bulk-sends/"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def make_send(
    tenant: Tenant,
    *,
    created_at: str | None = None,
    template: MessageTemplate | None = None,
    **fields: Any,
) -> BulkSend:
    bulk_send = factories.make_bulk_send(tenant.number, template or tenant.template, **fields)
    if created_at is not None:
        BulkSend.objects.filter(pk=bulk_send.pk).update(created_at=at(created_at))
        bulk_send.refresh_from_db()
    return bulk_send


def listed(tenant: Tenant, query: str = "") -> dict[str, Any]:
    response = tenant.client.get(f"{URL}{query}")
    assert response.status_code == 200, response.content
    return response.json()


def ids(body: dict[str, Any]) -> list[str]:
    return [item["id"] for item in body["results"]]


def test_it_lists_a_send_with_exactly_the_spec_item(tenant: Tenant) -> None:
    bulk_send = make_send(tenant, created_at="2025-11-16T21:30:00")
    for status in (MessageStatus.READ, MessageStatus.DELIVERED, MessageStatus.SENT):
        factories.make_message(bulk_send, status=status, sent_at=timezone.now())
    BulkSend.objects.filter(pk=bulk_send.pk).update(
        status=BulkSendStatus.COMPLETED, completed_at=at("2025-11-16T21:30:28")
    )

    body = listed(tenant)

    assert body == {
        "count": 1,
        "next": None,
        "previous": None,
        "results": [
            {
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
                "created_at": "2025-11-16T21:30:00Z",
                "completed_at": "2025-11-16T21:30:28Z",
            }
        ],
    }
    assert list(body["results"][0]) == SEND_LIST_ITEM_KEYS
    assert isinstance(body["results"][0]["progress_percentage"], float)


def test_it_shows_progress_as_a_float_for_a_send_under_way(tenant: Tenant) -> None:
    bulk_send = make_send(tenant, status=BulkSendStatus.PROCESSING)
    factories.make_message(bulk_send, status=MessageStatus.SENT)
    factories.make_message(bulk_send, status=MessageStatus.FAILED)
    factories.make_message(bulk_send, status=MessageStatus.PENDING)

    item = listed(tenant)["results"][0]

    assert item["progress_percentage"] == 66.67
    assert (item["sent_count"], item["failed_count"], item["pending_count"]) == (1, 1, 1)
    assert item["completed_at"] is None


def test_it_shows_zero_progress_for_a_send_without_recipients_yet(tenant: Tenant) -> None:
    make_send(tenant)

    item = listed(tenant)["results"][0]

    assert item["progress_percentage"] == 0.0
    assert isinstance(item["progress_percentage"], float)


def test_it_lists_an_empty_page_when_there_are_no_sends(tenant: Tenant) -> None:
    assert listed(tenant) == {"count": 0, "next": None, "previous": None, "results": []}


def test_it_lists_the_newest_first(tenant: Tenant) -> None:
    middle = make_send(tenant, created_at="2025-11-15T14:00:00")
    newest = make_send(tenant, created_at="2025-11-16T21:30:00")
    oldest = make_send(tenant, created_at="2025-10-01T08:00:00")

    assert ids(listed(tenant)) == [str(newest.pk), str(middle.pk), str(oldest.pk)]


def test_it_lists_a_send_created_through_the_api(tenant: Tenant) -> None:
    body = {
        "phone_number_id": tenant.number.phone_number_id,
        "template_name": "welcome_message",
        "recipients": [
            {
                "phone": "+5491112345678",
                "variables": {"name": "Juan", "code": "A"},
                "button_variables": {"button_0": "A"},
            }
        ],
    }
    created = tenant.client.post("/api/v1/meta-templates/send-bulk/", body, format="json").json()

    item = listed(tenant)["results"][0]

    assert item["id"] == created["bulk_send_id"]
    assert item["status"] == "QUEUED"
    assert (item["total_recipients"], item["pending_count"]) == (1, 1)
    assert item["created_at"] == created["created_at"]


# --- Filters ----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [s.value for s in BulkSendStatus])
def test_it_filters_by_status(tenant: Tenant, status: str) -> None:
    sends = {s.value: make_send(tenant, status=s.value) for s in BulkSendStatus}

    body = listed(tenant, f"?status={status}")

    assert ids(body) == [str(sends[status].pk)]
    assert body["count"] == 1


def test_it_filters_by_template_id(tenant: Tenant) -> None:
    order = factories.make_template(
        tenant.account, name="order_confirmation", components=[{"type": "BODY", "text": "Ok"}]
    )
    welcome = make_send(tenant)
    confirmation = make_send(tenant, template=order)

    assert ids(listed(tenant, f"?template={order.pk}")) == [str(confirmation.pk)]
    assert ids(listed(tenant, f"?template={tenant.template.pk}")) == [str(welcome.pk)]
    assert listed(tenant, f"?template={order.pk + 1000}")["count"] == 0


def test_it_filters_by_creation_days_both_bounds_included(tenant: Tenant) -> None:
    make_send(tenant, created_at="2025-10-31T23:59:59.999999")
    first = make_send(tenant, created_at="2025-11-01T00:00:00")
    middle = make_send(tenant, created_at="2025-11-15T12:00:00")
    last = make_send(tenant, created_at="2025-11-16T23:59:59.999999")
    make_send(tenant, created_at="2025-11-17T00:00:00")

    body = listed(tenant, "?created_after=2025-11-01&created_before=2025-11-16")

    assert ids(body) == [str(last.pk), str(middle.pk), str(first.pk)]
    assert body["count"] == 3


def test_it_filters_by_one_creation_bound(tenant: Tenant) -> None:
    old = make_send(tenant, created_at="2025-10-31T10:00:00")
    new = make_send(tenant, created_at="2025-11-01T10:00:00")

    assert ids(listed(tenant, "?created_after=2025-11-01")) == [str(new.pk)]
    assert ids(listed(tenant, "?created_before=2025-10-31")) == [str(old.pk)]


def test_it_lists_one_day_when_both_bounds_are_that_day(tenant: Tenant) -> None:
    make_send(tenant, created_at="2025-11-15T23:59:59")
    day = make_send(tenant, created_at="2025-11-16T12:00:00")
    make_send(tenant, created_at="2025-11-17T00:00:01")

    assert ids(listed(tenant, "?created_after=2025-11-16&created_before=2025-11-16")) == [
        str(day.pk)
    ]


def test_it_combines_the_filters_of_the_spec_example(tenant: Tenant) -> None:
    welcome = make_send(tenant, created_at="2025-11-16T21:30:00", status="COMPLETED")
    order = make_send(tenant, created_at="2025-11-15T14:00:00", status="COMPLETED")
    make_send(tenant, created_at="2025-11-16T10:00:00", status="PARTIAL")
    make_send(tenant, created_at="2025-10-20T10:00:00", status="COMPLETED")

    body = listed(tenant, "?status=COMPLETED&created_after=2025-11-01&page=1&page_size=10")

    assert body["count"] == 2
    assert (body["next"], body["previous"]) == (None, None)
    assert ids(body) == [str(welcome.pk), str(order.pk)]


def test_it_combines_status_and_template(tenant: Tenant) -> None:
    order = factories.make_template(
        tenant.account, name="order_confirmation", components=[{"type": "BODY", "text": "Ok"}]
    )
    wanted = make_send(tenant, template=order, status="FAILED")
    make_send(tenant, template=order, status="COMPLETED")
    make_send(tenant, status="FAILED")

    assert ids(listed(tenant, f"?status=FAILED&template={order.pk}")) == [str(wanted.pk)]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=DONE", "status"),
        ("status=completed", "status"),
        ("template=welcome_message", "template"),
        ("created_after=2025-13-01", "created_after"),
        ("created_after=16/11/2025", "created_after"),
        ("created_before=yesterday", "created_before"),
    ],
)
def test_it_rejects_an_invalid_filter_value_naming_the_filter(
    tenant: Tenant, query: str, field: str
) -> None:
    make_send(tenant)

    response = tenant.client.get(f"{URL}?{query}")

    assert response.status_code == 400
    body = response.json()
    assert list(body) == [field]
    assert isinstance(body[field], list)
    assert body[field]


def test_it_takes_the_last_day_of_the_calendar_as_created_before(tenant: Tenant) -> None:
    bulk_send = make_send(tenant)

    body = listed(tenant, "?created_after=0001-01-01&created_before=9999-12-31")

    assert ids(body) == [str(bulk_send.pk)]


def test_it_ignores_empty_filter_values(tenant: Tenant) -> None:
    bulk_send = make_send(tenant)

    body = listed(tenant, "?status=&template=&created_after=&created_before=")

    assert ids(body) == [str(bulk_send.pk)]


# --- Pagination -------------------------------------------------------------------------------


def make_sends(tenant: Tenant, count: int) -> list[BulkSend]:
    """`count` sends, newest first, one minute apart."""
    now = timezone.now()
    sends = BulkSend.objects.bulk_create(
        BulkSend(
            organization=tenant.organization,
            phone_number=tenant.number,
            template=tenant.template,
        )
        for _ in range(count)
    )
    for minutes, bulk_send in enumerate(sends):
        bulk_send.created_at = now - timedelta(minutes=minutes)
    BulkSend.objects.bulk_update(sends, ["created_at"])
    return sends


def test_it_pages_by_20_by_default(tenant: Tenant) -> None:
    sends = make_sends(tenant, 21)

    first = listed(tenant)
    second = listed(tenant, "?page=2")

    assert first["count"] == 21
    assert ids(first) == [str(s.pk) for s in sends[:20]]
    assert first["next"] == "http://testserver/api/v1/meta-templates/bulk-sends/?page=2"
    assert first["previous"] is None
    assert ids(second) == [str(sends[20].pk)]
    assert second["next"] is None
    assert second["previous"] == "http://testserver/api/v1/meta-templates/bulk-sends/"


def test_it_pages_by_the_page_size_asked_with_absolute_links(tenant: Tenant) -> None:
    sends = make_sends(tenant, 7)

    body = listed(tenant, "?page=2&page_size=3")

    assert body["count"] == 7
    assert ids(body) == [str(s.pk) for s in sends[3:6]]
    assert body["next"] == "http://testserver/api/v1/meta-templates/bulk-sends/?page=3&page_size=3"
    assert body["previous"] == "http://testserver/api/v1/meta-templates/bulk-sends/?page_size=3"


def test_its_links_keep_the_filters(tenant: Tenant) -> None:
    make_sends(tenant, 3)

    body = listed(tenant, "?status=QUEUED&page_size=1&page=2")

    assert body["next"] == (
        "http://testserver/api/v1/meta-templates/bulk-sends/?page=3&page_size=1&status=QUEUED"
    )
    assert body["previous"] == (
        "http://testserver/api/v1/meta-templates/bulk-sends/?page_size=1&status=QUEUED"
    )


def test_it_caps_the_page_size_at_100(tenant: Tenant) -> None:
    make_sends(tenant, 101)

    body = listed(tenant, "?page_size=1000")

    assert len(body["results"]) == 100
    assert body["count"] == 101
    assert body["next"] == (
        "http://testserver/api/v1/meta-templates/bulk-sends/?page=2&page_size=1000"
    )


def test_it_uses_the_default_page_size_for_an_empty_one(tenant: Tenant) -> None:
    make_sends(tenant, 21)

    assert len(listed(tenant, "?page_size=&page=")["results"]) == 20


# A page or page size that is not a positive whole number is a 400 (tests/test_query_params.py).
@pytest.mark.parametrize("page", ["3", "9223372036854775807"])
def test_it_answers_404_for_a_page_out_of_range(tenant: Tenant, page: str) -> None:
    make_sends(tenant, 3)

    response = tenant.client.get(f"{URL}?page={page}&page_size=2")

    assert response.status_code == 404
    assert response.json() == {"detail": "Invalid page."}


def test_it_answers_the_last_page_for_page_last(tenant: Tenant) -> None:
    sends = make_sends(tenant, 3)

    assert ids(listed(tenant, "?page=last&page_size=2")) == [str(sends[2].pk)]


def test_a_page_of_sends_takes_three_queries(
    tenant: Tenant, django_assert_max_num_queries: Any
) -> None:
    # The key, the count, the page with each send's template and number: nothing per send.
    for _ in range(3):
        make_send(tenant, status=BulkSendStatus.PROCESSING)
    listed(tenant)  # the key's `last_used_at` is written once, on first use

    with django_assert_max_num_queries(3):
        body = listed(tenant)

    assert body["count"] == 3
