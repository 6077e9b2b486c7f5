"""A single send's `sent` is settled by its own short path (bulksend.lifecycle.single_sent_settle):
whatever Meta's webhooks said first, it leaves the message, its send and the kept statuses exactly
as the batch settle a worker uses does. And the whole send stays a few statements."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bulksend.lifecycle import batch_settle_outcome, sends_statuses_apply, single_sent_settle
from bulksend.models import BulkSend, BulkSendKind, BulkSendStatus
from messaging.delivery import DeliveryResult, Settle
from messaging.models import DeferredStatus, Message, MessageStatus
from messaging.status import StatusEvent
from tests import factories
from tests.conftest import Tenant
from tests.delivery_support import (
    ScriptedMeta,
    assert_counters_exact,
    delivery_redis_fixture,  # noqa: F401  (fixtures)
    scripted_meta_fixture,  # noqa: F401
)

SEND_URL = "/api/v1/meta-templates/send/"
T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)

# Meta's webhooks before the settle: a status, found by our callback data or by the wamid only
# (kept until the wamid is recorded), with its minute after T0.
EARLIER = st.lists(
    st.tuples(
        st.sampled_from(["sent", "delivered", "read", "failed"]),
        st.booleans(),
        st.integers(min_value=0, max_value=5),
    ),
    max_size=4,
)


def single_message(tenant: Tenant) -> tuple[BulkSend, Message]:
    send = factories.make_bulk_send(
        tenant.number,
        tenant.template,
        kind=BulkSendKind.SINGLE,
        status=BulkSendStatus.PROCESSING,
        started_at=T0,
    )
    message = factories.make_message(
        send, status=MessageStatus.SENDING, attempts=1, lease_expires_at=T0 + timedelta(minutes=5)
    )
    return send, message


def webhooks(tenant: Tenant, message: Message, wamid: str, earlier: list[Any]) -> None:
    for status, by_ref, minute in earlier:
        failed = status == "failed"
        event = StatusEvent(
            wamid=wamid,
            status=status,
            occurred_at=T0 + timedelta(minutes=minute),
            error_code="131026" if failed else None,
            error_message="Message undeliverable" if failed else None,
            message_ref=message.pk if by_ref else None,
            phone_number_id=tenant.number.phone_number_id,
        )
        sends_statuses_apply([event])


def state(send: BulkSend, message: Message, wamid: str) -> dict[str, Any]:
    message.refresh_from_db()
    counters = assert_counters_exact(send)
    return {
        "counters": counters,
        "send_status": send.status,
        "finished": send.completed_at is not None,
        "message": [
            message.status,
            message.wamid == wamid,
            message.sent_at,
            message.delivered_at,
            message.read_at,
            message.failed_at,
            message.error_code,
        ],
        "kept": DeferredStatus.objects.filter(wamid=wamid).count(),
    }


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(earlier=EARLIER)
def test_the_short_path_settles_as_the_batch_settle_does(
    tenant: Tenant, earlier: list[Any]
) -> None:
    settled_at = T0 + timedelta(minutes=3)
    outcomes = []
    for path in ("short", "batch"):
        send, message = single_message(tenant)
        wamid = f"wamid.{path}.{message.pk}"
        webhooks(tenant, message, wamid, earlier)
        if path == "short":
            settled = single_sent_settle(message_id=message.pk, wamid=wamid, now=settled_at)
        else:
            result = DeliveryResult(message.pk, Settle.SENT, wamid=wamid)
            settled = batch_settle_outcome([result], now=settled_at, durable=False)
        outcomes.append((state(send, message, wamid), settled.counters.get(str(send.pk), {})))
    (short, short_moved), (batch, batch_moved) = outcomes

    assert short == batch
    assert {k: v for k, v in short_moved.items() if v} == {
        k: v for k, v in batch_moved.items() if v
    }


def test_a_fresh_message_is_sent_and_its_send_completed(tenant: Tenant) -> None:
    send, message = single_message(tenant)

    settled = single_sent_settle(message_id=message.pk, wamid="wamid.fresh", now=T0)

    message.refresh_from_db()
    assert (message.status, message.wamid, message.sent_at) == ("sent", "wamid.fresh", T0)
    assert_counters_exact(send)
    assert (send.sent_count, send.pending_count) == (1, 0)
    assert (send.status, send.completed_at) == (BulkSendStatus.COMPLETED, T0)
    assert settled.counters[str(send.pk)]["sent"] == 1


def test_a_read_kept_for_the_wamid_is_applied_when_it_is_recorded(tenant: Tenant) -> None:
    send, message = single_message(tenant)
    webhooks(tenant, message, "wamid.kept", [("read", False, 2)])
    assert DeferredStatus.objects.filter(wamid="wamid.kept").count() == 1

    single_sent_settle(message_id=message.pk, wamid="wamid.kept", now=T0)

    message.refresh_from_db()
    assert message.status == MessageStatus.READ
    assert message.read_at == T0 + timedelta(minutes=2)
    assert DeferredStatus.objects.filter(wamid="wamid.kept").count() == 0
    assert_counters_exact(send)
    assert (send.sent_count, send.delivered_count, send.read_count) == (1, 1, 1)


def test_a_sent_marketing_single_send_makes_five_statements_once_its_key_is_trusted(
    tenant: Tenant, scripted_meta: ScriptedMeta
) -> None:
    # Unlimited: the quota gate has nothing to ask (a limited one adds its lock and count).
    tenant.account.messaging_limit_tier = "TIER_UNLIMITED"
    tenant.account.save(update_fields=["messaging_limit_tier"])
    body = {
        "phone_number_id": tenant.number.phone_number_id,
        "template_name": "welcome_message",
        "language": "es",
        "recipient_phone": "+5491112345678",
        "variables": {"name": "Juan Perez", "code": "ABC123"},
        "button_variables": {"button_0": "ABC-123"},
    }
    first = tenant.client.post(SEND_URL, body, format="json")  # the key is checked and trusted
    assert first.status_code == 200, first.content

    with CaptureQueriesContext(connection) as queries:
        again = tenant.client.post(
            SEND_URL, {**body, "recipient_phone": "+5491112345679"}, format="json"
        )

    assert again.status_code == 200, again.content
    # The number and template; the recipient's opt-out and cooldown (a MARKETING template); the
    # send, its message and contact; the wamid's lock; the settle (the test's own transaction
    # adds savepoints, which production's transactions do not).
    statements = [q["sql"] for q in queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))]
    assert len(statements) == 5, [sql[:80] for sql in statements]
    assert Message.objects.filter(status=MessageStatus.SENT).count() == 2
