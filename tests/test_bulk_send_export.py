"""GET /api/v1/meta-templates/bulk-sends/{bulk_send_id}/messages/export/: a send's messages as
CSV, streamed out of PostgreSQL (bulksend.export)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import orjson
import pytest
from django.db import connection
from django.test import Client
from psycopg.pq import TransactionStatus

from bulksend.export import CHUNK_BYTES
from bulksend.models import BulkSend, BulkSendKind
from messaging.models import Message, MessageStatus
from tests import factories
from tests.conftest import Tenant

ADMIN_SENDS = "/admin/bulksend/bulksend/"
HEADER = [
    "message_id",
    "phone",
    "status",
    "wamid",
    "variables",
    "button_variables",
    "attempts",
    "created_at",
    "sent_at",
    "delivered_at",
    "read_at",
    "failed_at",
    "error_code",
    "error_message",
    "pricing_category",
    "pricing_type",
    "user_id",
]


def url(bulk_send_id: object, query: str = "") -> str:
    return f"/api/v1/meta-templates/bulk-sends/{bulk_send_id}/messages/export/{query}"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def exported(tenant: Tenant, bulk_send: BulkSend, query: str = "") -> list[dict[str, str]]:
    response = tenant.client.get(url(bulk_send.pk, query))
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    text = b"".join(response.streaming_content).decode()
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == HEADER
    return [dict(zip(HEADER, row, strict=True)) for row in rows[1:]]


@pytest.fixture
def bulk_send(tenant: Tenant) -> BulkSend:
    return factories.make_bulk_send(tenant.number, tenant.template)


def test_every_message_is_a_row_with_its_values(tenant: Tenant, bulk_send: BulkSend) -> None:
    read = factories.make_message(
        bulk_send,
        phone="+5491187654321",
        status=MessageStatus.READ,
        wamid="wamid.HBgLNTU0MTE2NzU0Nzg1FQIAERgT",
        variables={"name": "María García", "code": "DEF456"},
        button_variables={"button_0": "DEF456"},
        attempts=1,
        sent_at=at("2025-11-16T21:30:18"),
        delivered_at=at("2025-11-16T21:30:23"),
        read_at=at("2025-11-16T21:31:00.250000"),
        pricing_category="marketing",
        pricing_type="regular",
    )
    failed = factories.make_message(
        bulk_send,
        phone="+5491112345678",
        status=MessageStatus.FAILED,
        attempts=2,
        failed_at=at("2025-11-16T21:30:40"),
        error_code="131026",
        # Commas, quotes and a line break: the file must keep them inside one cell.
        error_message='Message undeliverable: "receiver", not on\nWhatsApp',
    )

    rows = exported(tenant, bulk_send)

    assert [row["message_id"] for row in rows] == [str(read.pk), str(failed.pk)]
    first, second = rows
    assert first["phone"] == "+5491187654321"
    assert (first["status"], first["wamid"], first["attempts"]) == (
        "read",
        "wamid.HBgLNTU0MTE2NzU0Nzg1FQIAERgT",
        "1",
    )
    assert orjson.loads(first["variables"]) == {"name": "María García", "code": "DEF456"}
    assert orjson.loads(first["button_variables"]) == {"button_0": "DEF456"}
    assert first["sent_at"] == "2025-11-16T21:30:18.000000Z"
    assert datetime.fromisoformat(first["read_at"]) == at("2025-11-16T21:31:00.250000")
    read.refresh_from_db()
    assert datetime.fromisoformat(first["created_at"]) == read.created_at
    assert (first["failed_at"], first["error_code"], first["error_message"]) == ("", "", "")
    assert (first["pricing_category"], first["pricing_type"]) == ("marketing", "regular")
    assert (second["pricing_category"], second["pricing_type"]) == ("", "")
    assert (second["status"], second["wamid"], second["sent_at"]) == ("failed", "", "")
    assert second["failed_at"] == "2025-11-16T21:30:40.000000Z"
    assert second["error_code"] == "131026"
    assert second["error_message"] == 'Message undeliverable: "receiver", not on\nWhatsApp'


def test_a_message_a_worker_holds_is_pending_as_everywhere_in_the_api(
    tenant: Tenant, bulk_send: BulkSend
) -> None:
    claimed = factories.make_message(bulk_send, status=MessageStatus.SENDING)
    waiting = factories.make_message(bulk_send, status=MessageStatus.PENDING)
    factories.make_message(bulk_send, status=MessageStatus.FAILED, error_code="131026")

    all_rows = exported(tenant, bulk_send)
    pending = exported(tenant, bulk_send, "?status=pending")
    failed = exported(tenant, bulk_send, "?status=failed")

    assert [row["status"] for row in all_rows] == ["pending", "pending", "failed"]
    assert [row["message_id"] for row in pending] == [str(claimed.pk), str(waiting.pk)]
    assert [row["status"] for row in failed] == ["failed"]


def test_an_empty_status_filters_nothing_and_an_unknown_one_names_the_field(
    tenant: Tenant, bulk_send: BulkSend
) -> None:
    factories.make_message(bulk_send, status=MessageStatus.SENT, wamid="wamid.A")

    assert len(exported(tenant, bulk_send, "?status=")) == 1
    response = tenant.client.get(url(bulk_send.pk, "?status=queued"))

    assert response.status_code == 400
    assert list(response.json()) == ["status"]


def test_the_file_is_named_after_the_send_and_its_filter(
    tenant: Tenant, bulk_send: BulkSend
) -> None:
    everything = tenant.client.get(url(bulk_send.pk))
    failed = tenant.client.get(url(bulk_send.pk, "?status=failed"))

    assert everything["Content-Disposition"] == (
        f'attachment; filename="bulk-send-{bulk_send.pk}-messages.csv"'
    )
    assert failed["Content-Disposition"] == (
        f'attachment; filename="bulk-send-{bulk_send.pk}-messages-failed.csv"'
    )
    assert b"".join(failed.streaming_content).decode().splitlines() == [",".join(HEADER)]


def test_a_large_send_streams_in_chunks_with_every_row_once(
    tenant: Tenant, bulk_send: BulkSend
) -> None:
    account_id = tenant.number.business_account_id
    Message.objects.bulk_create(
        Message(
            bulk_send=bulk_send,
            business_account_id=account_id,
            recipient_phone=f"+54911{index:08d}",
            variables={"name": f"Cliente {index}", "code": f"C{index:06d}"},
        )
        for index in range(5_000)
    )

    response = tenant.client.get(url(bulk_send.pk))
    chunks = list(response.streaming_content)

    assert response.streaming
    assert len(chunks) > 1
    # Each chunk stops growing at the first row past the chunk size.
    assert all(len(chunk) < CHUNK_BYTES + 1_000 for chunk in chunks)
    rows = list(csv.reader(io.StringIO(b"".join(chunks).decode(), newline="")))[1:]
    assert [row[1] for row in rows] == [f"+54911{index:08d}" for index in range(5_000)]


@pytest.mark.django_db(transaction=True)
def test_a_client_that_leaves_mid_file_frees_the_connection() -> None:
    from tests.conftest import make_tenant

    tenant = make_tenant("Mindo")
    bulk_send = factories.make_bulk_send(tenant.number, tenant.template)
    Message.objects.bulk_create(
        Message(
            bulk_send=bulk_send,
            business_account_id=tenant.number.business_account_id,
            recipient_phone=f"+54911{index:08d}",
        )
        for index in range(5_000)
    )
    response = tenant.client.get(url(bulk_send.pk))
    stream = iter(response.streaming_content)
    next(stream)

    response.close()  # what the server does when the client is gone

    # The COPY is over: the same connection answers the next query.
    assert Message.objects.filter(bulk_send=bulk_send).count() == 5_000
    raw = connection.connection
    assert raw is not None
    assert raw.info.transaction_status == TransactionStatus.IDLE


def test_another_organizations_send_and_a_single_send_are_not_found(
    tenant: Tenant, other_tenant: Tenant, bulk_send: BulkSend
) -> None:
    factories.make_message(bulk_send)
    single = factories.make_bulk_send(tenant.number, tenant.template, kind=BulkSendKind.SINGLE)

    assert other_tenant.client.get(url(bulk_send.pk)).status_code == 404
    assert tenant.client.get(url(single.pk)).status_code == 404
    assert tenant.client.get(url("not-a-uuid")).status_code == 404


def test_the_admin_downloads_one_sends_file_and_asks_to_choose_among_several(
    admin_client: Client, tenant: Tenant, bulk_send: BulkSend
) -> None:
    factories.make_message(bulk_send, status=MessageStatus.SENT, wamid="wamid.A")
    factories.make_message(bulk_send, status=MessageStatus.FAILED, error_code="131026")
    other = factories.make_bulk_send(tenant.number, tenant.template)

    one = admin_client.post(
        ADMIN_SENDS, {"action": "export_messages", "_selected_action": [bulk_send.pk]}
    )
    two = admin_client.post(
        ADMIN_SENDS,
        {"action": "export_messages", "_selected_action": [bulk_send.pk, other.pk]},
        follow=True,
    )

    rows = list(csv.reader(io.StringIO(b"".join(one.streaming_content).decode(), newline="")))
    assert rows[0] == HEADER
    assert [row[2] for row in rows[1:]] == ["sent", "failed"]
    assert not two.streaming
    assert "Select one send to export." in two.content.decode()
