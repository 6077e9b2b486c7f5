"""Draining sends to the Meta sandbox: what goes out, exactly once, at the number's pace."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import override_settings

from bulksend.drain import bulk_send_drain
from bulksend.models import BulkSend, BulkSendStatus
from messaging.models import Message, MessageStatus, callback_data_for
from meta_sandbox import SandboxThread
from tests import factories
from tests.conftest import Tenant
from tests.delivery_support import (
    ORDER_COMPONENTS,
    SEND_BULK_URL,
    RecordingLimiter,
    assert_counters_exact,
    delivery_redis_fixture,  # noqa: F401  (fixtures)
    drain_to_completion,
    in_threads,
    max_in_one_second,
    permits_forfeited,
    received,
    recording_limiter_fixture,  # noqa: F401
    sandbox_fixture,  # noqa: F401
    sandbox_publish,
    send_bulk,
    wait_for,
    webhook_url_fixture,  # noqa: F401
    welcome_recipients,
)

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_send_drains_to_completed_with_every_message_sent_once(
    tenant: Tenant, sandbox: SandboxThread
) -> None:
    accepted = send_bulk(tenant, welcome_recipients(40))

    bulk_send = drain_to_completion(accepted["bulk_send_id"])

    assert bulk_send.status == BulkSendStatus.COMPLETED
    assert bulk_send.started_at is not None
    assert bulk_send.completed_at is not None
    assert bulk_send.created_at <= bulk_send.started_at <= bulk_send.completed_at
    assert assert_counters_exact(bulk_send) == {
        "total_recipients": 40,
        "pending_count": 0,
        "sent_count": 40,
        "delivered_count": 0,
        "read_count": 0,
        "failed_count": 0,
        "cancelled_count": 0,
    }
    record = received(sandbox)
    assert record.duplicates == []
    assert len(record.messages) == 40
    by_id = record.by_message_id
    for message in Message.objects.filter(bulk_send=bulk_send):
        assert message.status == MessageStatus.SENT
        assert message.wamid == by_id[message.pk]["wamid"]
        assert message.sent_at is not None
        assert message.attempts == 1


def test_a_named_template_goes_out_with_parameter_names_and_its_url_button(
    tenant: Tenant, sandbox: SandboxThread
) -> None:
    accepted = send_bulk(
        tenant,
        [
            {
                "phone": "+5491150000001",
                "variables": {"name": "Juan Perez", "code": "ABC123"},
                "button_variables": {"button_0": "ABC-123"},
            },
            {
                "phone": "+5491150000002",
                "variables": {"code": "DEF456", "name": "Maria Garcia"},
                "button_variables": {"button_0": "DEF-456"},
            },
        ],
    )

    drain_to_completion(accepted["bulk_send_id"])

    ids = {
        m.recipient_phone: m.pk for m in Message.objects.filter(bulk_send=accepted["bulk_send_id"])
    }
    bodies = {m["to"]: m["request_body"] for m in received(sandbox).messages}
    assert bodies == {
        "5491150000001": welcome_body(
            "5491150000001", ids["+5491150000001"], "Juan Perez", "ABC123", "ABC-123"
        ),
        "5491150000002": welcome_body(
            "5491150000002", ids["+5491150000002"], "Maria Garcia", "DEF456", "DEF-456"
        ),
    }


def test_numeric_variables_reach_the_message_and_meta_as_the_client_wrote_them(
    tenant: Tenant, sandbox: SandboxThread
) -> None:
    # Written out by hand: an encoder would already spell 10.50 as 10.5 before the service.
    numbers = (
        '{"name": 12345678901234567890123, "code": 10.50}, "button_variables": {"button_0": 1e3}'
    )
    body = (
        f'{{"phone_number_id": "{tenant.number.phone_number_id}", '
        '"template_name": "welcome_message", "language": "es", '
        f'"recipients": [{{"phone": "+5491150000001", "variables": {numbers}}}]}}'
    )

    response = tenant.client.post(SEND_BULK_URL, body, content_type="application/json")

    assert response.status_code == 202, response.content
    message = Message.objects.get(bulk_send=response.json()["bulk_send_id"])
    assert message.variables == {"name": "12345678901234567890123", "code": "10.50"}
    assert message.button_variables == {"button_0": "1e3"}
    drain_to_completion(response.json()["bulk_send_id"])
    [sent] = received(sandbox).messages
    components = sent["request_body"]["template"]["components"]
    assert [p["text"] for c in components for p in c["parameters"]] == [
        "12345678901234567890123",
        "10.50",
        "1e3",
    ]


def welcome_body(to: str, message_id: int, name: str, code: str, url_suffix: str) -> Any:
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "template",
        "template": {
            "name": "welcome_message",
            "language": {"code": "es"},
            "components": [
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "parameter_name": "name", "text": name},
                        {"type": "text", "parameter_name": "code", "text": code},
                    ],
                },
                {
                    "type": "button",
                    "sub_type": "url",
                    "index": "0",
                    "parameters": [{"type": "text", "text": url_suffix}],
                },
            ],
        },
        "biz_opaque_callback_data": callback_data_for(message_id),
    }


def test_a_positional_template_goes_out_with_its_header_quick_reply_and_copy_code(
    tenant: Tenant, sandbox: SandboxThread
) -> None:
    factories.make_template(tenant.account, name="order_update", components=ORDER_COMPONENTS)
    sandbox_publish(sandbox.url)
    accepted = send_bulk(
        tenant,
        [
            {
                "phone": "+5491150000003",
                "variables": {"1": "Juan", "2": "lunes"},
                "button_variables": {"button_0": "gracias-juan", "button_1": "SAVE10"},
            }
        ],
        template_name="order_update",
    )

    bulk_send = drain_to_completion(accepted["bulk_send_id"])

    assert bulk_send.status == BulkSendStatus.COMPLETED
    message = Message.objects.get(bulk_send=bulk_send)
    [sent] = received(sandbox).messages
    assert sent["request_body"] == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "5491150000003",
        "type": "template",
        "template": {
            "name": "order_update",
            "language": {"code": "es"},
            "components": [
                {"type": "header", "parameters": [{"type": "text", "text": "Juan"}]},
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "text": "Juan"},
                        {"type": "text", "text": "lunes"},
                    ],
                },
                {
                    "type": "button",
                    "sub_type": "quick_reply",
                    "index": "0",
                    "parameters": [{"type": "payload", "payload": "gracias-juan"}],
                },
                {
                    "type": "button",
                    "sub_type": "copy_code",
                    "index": "1",
                    "parameters": [{"type": "coupon_code", "coupon_code": "SAVE10"}],
                },
            ],
        },
        "biz_opaque_callback_data": callback_data_for(message.pk),
    }
    assert message.wamid == sent["wamid"]


def test_status_webhooks_move_messages_to_delivered_and_read_and_the_counters_follow(
    tenant: Tenant, sandbox: SandboxThread, webhook_url: str
) -> None:
    sandbox.control("config", {"webhook_url": webhook_url, "read_share": 1.0})
    accepted = send_bulk(tenant, welcome_recipients(20))

    bulk_send = drain_to_completion(accepted["bulk_send_id"])
    wait_for(
        lambda: BulkSend.objects.get(pk=bulk_send.pk).read_count == 20,
        timeout=60,
        what="every message to be read",
    )

    assert assert_counters_exact(bulk_send) == {
        "total_recipients": 20,
        "pending_count": 0,
        "sent_count": 20,
        "delivered_count": 20,
        "read_count": 20,
        "failed_count": 0,
        "cancelled_count": 0,
    }
    assert bulk_send.status == BulkSendStatus.COMPLETED
    wamids = {m["wamid"] for m in received(sandbox).messages}
    for message in Message.objects.filter(bulk_send=bulk_send):
        assert message.status == MessageStatus.READ
        assert message.wamid in wamids
        assert message.sent_at is not None
        assert message.delivered_at is not None
        assert message.read_at is not None
        assert message.delivered_at <= message.read_at


@override_settings(DELIVERY_BATCH_SIZE=10)
def test_two_drains_of_one_send_at_once_never_send_a_message_twice(
    tenant: Tenant, sandbox: SandboxThread
) -> None:
    # Paced at 100/s in batches of 10, each drain waits for its permits while the other claims.
    tenant.number.throughput_per_second = 100
    tenant.number.save()
    accepted = send_bulk(tenant, welcome_recipients(120))
    send_id = accepted["bulk_send_id"]

    reports = in_threads(lambda: bulk_send_drain(send_id), lambda: bulk_send_drain(send_id))

    assert [report.outcomes.get("sent", 0) > 0 for report in reports] == [True, True]
    assert sum(report.outcomes.get("sent", 0) for report in reports) == 120
    record = received(sandbox)
    assert record.duplicates == []
    assert len(record.messages) == 120
    bulk_send = BulkSend.objects.get(pk=send_id)
    assert bulk_send.status == BulkSendStatus.COMPLETED
    assert assert_counters_exact(bulk_send)["sent_count"] == 120


def test_two_drains_on_one_number_never_exceed_its_rate_in_any_second(
    tenant: Tenant, sandbox: SandboxThread, recording_limiter: RecordingLimiter
) -> None:
    tenant.number.throughput_per_second = 20
    tenant.number.save()
    first = send_bulk(tenant, welcome_recipients(30))
    second = send_bulk(tenant, welcome_recipients(30, start=30))
    forfeited = permits_forfeited()

    finished = in_threads(
        lambda: drain_to_completion(first["bulk_send_id"], timeout=120),
        lambda: drain_to_completion(second["bulk_send_id"], timeout=120),
    )

    assert [send.status for send in finished] == [BulkSendStatus.COMPLETED] * 2
    record = received(sandbox, tenant.number.phone_number_id)
    assert len(record.messages) == 60
    assert record.duplicates == []
    # One permit per message (and one for each a late worker forfeited: its slot was taken),
    # never more than the rate in any second of the slots' clock.
    assert len(recording_limiter.permits) == 60 + permits_forfeited() - forfeited
    assert max_in_one_second(recording_limiter.permits) <= 20


def test_the_estimate_is_the_pacing_and_the_drain_never_beats_it(
    tenant: Tenant, sandbox: SandboxThread, recording_limiter: RecordingLimiter
) -> None:
    tenant.number.throughput_per_second = 50
    tenant.number.save()
    accepted = send_bulk(tenant, welcome_recipients(200))
    forfeited = permits_forfeited()

    bulk_send = drain_to_completion(accepted["bulk_send_id"], timeout=120)

    assert bulk_send.status == BulkSendStatus.COMPLETED
    # 200 messages at 50 per second: 4 s, rounded up to a hundredth of a minute.
    assert accepted["estimated_time_minutes"] == 0.07
    # The limiter spread the 200 permits over at least the estimate's 4 s, less a fifth: the
    # estimate is no promise the pacing cannot keep. (How much longer a busy machine takes to
    # use them is its speed, not the estimate's.)
    permits = sorted(recording_limiter.permits)
    assert len(permits) == 200 + permits_forfeited() - forfeited
    assert permits[-1] - permits[0] >= 0.8 * accepted["estimated_time_minutes"] * 60
    assert max_in_one_second(permits) <= 50
