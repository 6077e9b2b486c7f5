"""Property: whatever mix of Meta's error codes a send's messages get, once the drain settles
every message is sent, failed with a code, or pending for a reason (its send paused or halted,
or its recipient cooling down), and the send's counters equal a recount."""

from __future__ import annotations

import time
import uuid

import pytest
from django.test import override_settings
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bulksend.drain import bulk_send_drain
from bulksend.models import BulkSend
from messaging.models import Message, MessageStatus
from meta.error_codes import ERROR_CODES
from meta_sandbox import SandboxThread
from tests.conftest import Tenant
from tests.delivery_support import (
    assert_counters_exact,
    delivery_redis_fixture,  # noqa: F401  (fixtures)
    sandbox_fixture,  # noqa: F401
    send_bulk,
    welcome_recipient,
)

pytestmark = pytest.mark.django_db(transaction=True)

# An answer per recipient: accepted (None) or one of the table's codes.
answers = st.lists(
    st.none() | st.sampled_from(sorted(ERROR_CODES, key=int)), min_size=1, max_size=6
)


def drain_until_settled(send_id: uuid.UUID) -> None:
    """Drain as workers would until nothing is due within a few seconds (retries are quick
    here; cooldowns are hours away) or the send stopped."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        report = bulk_send_drain(send_id)
        if report.halted or not BulkSend.objects.get(pk=send_id).is_active:
            return
        wake = report.next_wake_at
        if wake is None or (wake - timezone.now()).total_seconds() > 5:
            return
        time.sleep(0.05)
    raise AssertionError(f"send {send_id} did not settle")


@override_settings(DELIVERY_RETRY_BASE_SECONDS=0.01, DELIVERY_RETRY_MAX_SECONDS=0.05)
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(mix=answers, batch=st.integers(min_value=0, max_value=999))
def test_every_message_ends_sent_failed_or_pending_for_a_reason_and_counters_recount(
    tenant: Tenant, sandbox: SandboxThread, mix: list[str | None], batch: int
) -> None:
    phones = [f"+549116{batch:03d}{n:04d}" for n in range(len(mix))]
    sandbox.control(
        "config",
        {"recipient_errors": {p[1:]: int(c) for p, c in zip(phones, mix, strict=True) if c}},
    )
    send_id = uuid.UUID(
        send_bulk(tenant, [welcome_recipient(p, n) for n, p in enumerate(phones)])["bulk_send_id"]
    )

    drain_until_settled(send_id)

    bulk_send = BulkSend.objects.get(pk=send_id)
    now = timezone.now()
    for message in Message.objects.filter(bulk_send_id=send_id):
        if message.status == MessageStatus.SENT:
            assert message.wamid
        elif message.status == MessageStatus.FAILED:
            assert message.error_code
        else:
            assert message.status == MessageStatus.PENDING, message
            stopped = bulk_send.halted_at is not None
            cooling = message.next_attempt_at is not None and message.next_attempt_at > now
            assert stopped or cooling, (message, message.next_attempt_at)
    assert_counters_exact(bulk_send)
