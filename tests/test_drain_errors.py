"""Meta's errors by class, through the sandbox (or a scripted Graph API for the codes the sandbox
does not produce): fail the message, retry it with backoff, defer it, halt the send, reconcile a
send whose answer was lost."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import redis
from django.test import override_settings
from django.utils import timezone

from bulksend.drain import bulk_send_drain
from bulksend.lifecycle import bulk_send_resume
from bulksend.models import BulkSend, BulkSendStatus
from bulksend.reaper import bulk_sends_reap
from bulksend.sending import RATE_LIMIT_PAUSE_SECONDS
from messaging.models import Message, MessageStatus, callback_data_for
from messaging.ratelimit import KEY_PREFIX
from meta_sandbox import SandboxThread
from tests import factories
from tests.conftest import Tenant, clock_frozen
from tests.delivery_support import (
    ACCOUNT_BLOCKED,
    ECOSYSTEM_HELD_BACK,
    UNDELIVERABLE,
    ScriptedMeta,
    WebhookHold,
    assert_counters_exact,
    delivery_redis_fixture,  # noqa: F401  (fixtures)
    drain_to_completion,
    received,
    sandbox_fixture,  # noqa: F401
    scripted_meta_fixture,  # noqa: F401
    send_bulk,
    wait_for,
    webhook_hold_fixture,  # noqa: F401
    webhook_url_fixture,  # noqa: F401
    welcome_recipients,
)

pytestmark = pytest.mark.django_db(transaction=True)

DETAIL_URL = "/api/v1/meta-templates/bulk-sends/{}/"


def messages_of(bulk_send_id: Any) -> list[Message]:
    return list(Message.objects.filter(bulk_send_id=bulk_send_id).order_by("id"))


# --- failing the message -------------------------------------------------------------------


def test_an_undeliverable_recipient_fails_with_metas_error_and_the_send_ends_partial(
    tenant: Tenant, scripted_meta: ScriptedMeta
) -> None:
    scripted_meta.answer = lambda index, body: (
        UNDELIVERABLE if body["to"] == "5491150000001" else None
    )
    accepted = send_bulk(tenant, welcome_recipients(3))

    bulk_send = drain_to_completion(accepted["bulk_send_id"])

    assert bulk_send.status == BulkSendStatus.PARTIAL
    assert bulk_send.completed_at is not None
    failed = Message.objects.get(bulk_send=bulk_send, recipient_phone="+5491150000001")
    assert failed.status == MessageStatus.FAILED
    assert failed.error_code == "131026"
    assert failed.error_message == "(#131026) Message Undeliverable.: Message Undeliverable."
    assert failed.failed_at is not None
    assert failed.attempts == 1
    counts = assert_counters_exact(bulk_send)
    assert (counts["sent_count"], counts["failed_count"], counts["pending_count"]) == (2, 1, 0)
    assert len(scripted_meta.requests) == 3
    assert scripted_meta.authorizations == ["Bearer test-token"] * 3


def test_a_failed_status_webhook_fails_a_sent_message_and_turns_the_send_partial(
    tenant: Tenant, sandbox: SandboxThread, webhook_url: str
) -> None:
    sandbox.control(
        "config", {"webhook_url": webhook_url, "fail_suffix": "9999", "delivered_after": 0.5}
    )
    recipients = welcome_recipients(3)
    recipients[1]["phone"] = "+5491150009999"
    accepted = send_bulk(tenant, recipients)

    bulk_send = drain_to_completion(accepted["bulk_send_id"])
    # Usually COMPLETED first, then PARTIAL; a failure that beats the drain's own settling
    # ends it PARTIAL at once. Either way the counters stay exact.
    wait_for(
        lambda: BulkSend.objects.get(pk=bulk_send.pk).status == BulkSendStatus.PARTIAL,
        timeout=60,
        what="the failure webhook",
    )

    failed = Message.objects.get(bulk_send=bulk_send, recipient_phone="+5491150009999")
    assert failed.status == MessageStatus.FAILED
    assert failed.error_code == "131026"
    assert failed.error_message == "Message undeliverable: Message Undeliverable."
    assert failed.wamid is not None
    counts = assert_counters_exact(bulk_send)
    assert (counts["sent_count"], counts["failed_count"]) == (2, 1)


def test_a_template_meta_does_not_know_fails_every_message_with_132001(
    tenant: Tenant, sandbox: SandboxThread
) -> None:
    # Created after the sandbox read its catalog: approved here, unknown to Meta.
    factories.make_template(
        tenant.account, name="retired_offer", components=[{"type": "BODY", "text": "Hola {{name}}"}]
    )
    accepted = send_bulk(
        tenant,
        [{"phone": f"+549115000000{n}", "variables": {"name": "Ana"}} for n in range(3)],
        template_name="retired_offer",
    )

    bulk_send = drain_to_completion(accepted["bulk_send_id"])

    assert bulk_send.status == BulkSendStatus.FAILED
    for message in messages_of(bulk_send.pk):
        assert message.status == MessageStatus.FAILED
        assert message.error_code == "132001"
        assert message.error_message == (
            "(#132001) Template name does not exist in the translation: "
            "template name (retired_offer) does not exist in es"
        )
        assert message.attempts == 1
    assert assert_counters_exact(bulk_send)["failed_count"] == 3
    assert sandbox.control("stats")["rejected_by_code"] == {"132001": 3}


# --- retrying with backoff -------------------------------------------------------------------

TRANSIENT = [
    pytest.param(
        {"error_share": 1.0},
        "131000",
        "(#131000) Something went wrong: "
        "Message failed to send due to an unknown error. Please try again.",
        id="131000",
    ),
    pytest.param(
        {"http_5xx_share": 1.0}, "http_502", "HTTP 502 Bad Gateway from the Graph API", id="502"
    ),
]


@pytest.mark.parametrize(("fault", "code", "text"), TRANSIENT)
@override_settings(DELIVERY_RETRY_BASE_SECONDS=0.5, DELIVERY_MAX_ATTEMPTS=5)
def test_a_transient_error_is_retried_after_a_backoff_until_it_goes_through(
    tenant: Tenant, sandbox: SandboxThread, fault: dict[str, Any], code: str, text: str
) -> None:
    sandbox.control("config", fault)
    accepted = send_bulk(tenant, welcome_recipients(4))
    send_id = accepted["bulk_send_id"]

    # The drain takes no time on this clock: however slow the machine, no backoff runs out
    # during it, so no message is retried before the test looks.
    with clock_frozen():
        before = timezone.now()
        report = bulk_send_drain(send_id)
        after = timezone.now()

    # The first attempt's backoff is between the base and twice the base.
    retry_times = []
    for message in messages_of(send_id):
        assert message.status == MessageStatus.PENDING
        assert message.attempts == 1
        assert message.error_code is None
        assert message.next_attempt_at is not None
        assert before + timedelta(seconds=0.5) <= message.next_attempt_at
        assert message.next_attempt_at <= after + timedelta(seconds=1.0)
        retry_times.append(message.next_attempt_at)
    assert report.next_wake_at == min(retry_times)
    bulk_send = BulkSend.objects.get(pk=send_id)
    assert bulk_send.status == BulkSendStatus.PROCESSING
    assert assert_counters_exact(bulk_send)["pending_count"] == 4
    assert sandbox.control("stats")["rejected_by_code"] == {code: 4}

    sandbox.control("config", {"error_share": 0.0, "http_5xx_share": 0.0})
    bulk_send = drain_to_completion(send_id)

    assert bulk_send.status == BulkSendStatus.COMPLETED
    assert {(m.status, m.attempts) for m in messages_of(send_id)} == {(MessageStatus.SENT, 2)}
    record = received(sandbox)
    assert len(record.messages) == 4
    assert record.duplicates == []


@pytest.mark.parametrize(("fault", "code", "text"), TRANSIENT)
@override_settings(DELIVERY_RETRY_BASE_SECONDS=0.01, DELIVERY_MAX_ATTEMPTS=3)
def test_a_transient_error_fails_the_message_with_the_last_error_after_the_last_attempt(
    tenant: Tenant, sandbox: SandboxThread, fault: dict[str, Any], code: str, text: str
) -> None:
    sandbox.control("config", fault)
    accepted = send_bulk(tenant, welcome_recipients(2))

    bulk_send = drain_to_completion(accepted["bulk_send_id"])

    assert bulk_send.status == BulkSendStatus.FAILED
    for message in messages_of(bulk_send.pk):
        assert (message.status, message.attempts) == (MessageStatus.FAILED, 3)
        assert (message.error_code, message.error_message) == (code, text)
    assert assert_counters_exact(bulk_send)["failed_count"] == 2
    assert sandbox.control("stats")["rejected_by_code"] == {code: 6}


@override_settings(DELIVERY_RETRY_BASE_SECONDS=0.2, DELIVERY_MAX_ATTEMPTS=10)
def test_a_rate_limit_hit_is_retried_and_slows_the_number_down_for_every_worker(
    tenant: Tenant, sandbox: SandboxThread, delivery_redis: redis.Redis
) -> None:
    # Meta lets 5 a second through where the number's row says 50.
    sandbox.control("config", {"rate_per_number": 5})
    tenant.number.throughput_per_second = 50
    tenant.number.save()
    accepted = send_bulk(tenant, welcome_recipients(10))
    number = tenant.number.phone_number_id

    seconds, microseconds = delivery_redis.time()
    with clock_frozen():  # no retry falls due during the drain, however slow the machine
        report = bulk_send_drain(accepted["bulk_send_id"])

    assert report.outcomes == {"sent": 5, "retry": 5}
    # The shared limiter gives no permit to anyone for a second from the 130429 (which came
    # after `seconds` on Redis's clock, the limiter's).
    next_permit = float(delivery_redis.get(f"{KEY_PREFIX}{{{number}}}") or 0)
    assert next_permit - (seconds * 1_000_000 + microseconds) >= RATE_LIMIT_PAUSE_SECONDS * 1e6

    bulk_send = drain_to_completion(accepted["bulk_send_id"])

    assert bulk_send.status == BulkSendStatus.COMPLETED
    stats = sandbox.control("stats")
    assert stats["rejected_by_code"]["130429"] >= 5
    assert stats["max_sends_in_one_second"][number] <= 5
    record = received(sandbox)
    assert len(record.messages) == 10
    assert record.duplicates == []
    assert assert_counters_exact(bulk_send)["sent_count"] == 10


# --- deferring ----------------------------------------------------------------------------------


def test_a_message_meta_holds_back_for_engagement_waits_for_its_recipients_cooldown(
    tenant: Tenant, scripted_meta: ScriptedMeta
) -> None:
    scripted_meta.answer = lambda index, body: ECOSYSTEM_HELD_BACK
    accepted = send_bulk(tenant, welcome_recipients(2))

    before = timezone.now()
    report = bulk_send_drain(accepted["bulk_send_id"])
    after = timezone.now()
    again = bulk_send_drain(accepted["bulk_send_id"])

    for message in messages_of(accepted["bulk_send_id"]):
        assert (message.status, message.attempts, message.error_code) == (
            MessageStatus.PENDING,
            1,
            None,
        )
        assert message.next_attempt_at is not None
        assert before + timedelta(hours=4) <= message.next_attempt_at <= after + timedelta(hours=4)
    assert report.next_wake_at is not None
    assert report.next_wake_at >= before + timedelta(hours=4)
    assert again.batches == 0
    assert len(scripted_meta.requests) == 2
    bulk_send = BulkSend.objects.get(pk=accepted["bulk_send_id"])
    assert bulk_send.status == BulkSendStatus.PROCESSING
    assert assert_counters_exact(bulk_send)["pending_count"] == 2


# --- halting the send ---------------------------------------------------------------------------


def test_an_invalid_token_halts_the_send_until_an_operator_resumes_it(
    tenant: Tenant, sandbox: SandboxThread
) -> None:
    tenant.account.access_token = "revoked-token"
    tenant.account.save()
    accepted = send_bulk(tenant, welcome_recipients(5))
    send_id = accepted["bulk_send_id"]

    report = bulk_send_drain(send_id)

    assert report.halted == "190"
    bulk_send = BulkSend.objects.get(pk=send_id)
    assert bulk_send.status == BulkSendStatus.FAILED
    assert "190" in bulk_send.status_reason
    assert bulk_send.completed_at is None
    assert bulk_send.halted_at is not None
    assert "190" in bulk_send.halt_reason
    for message in messages_of(send_id):
        assert (message.status, message.attempts, message.error_code) == (
            MessageStatus.PENDING,
            0,
            None,
        )
    counts = assert_counters_exact(bulk_send)
    assert (counts["pending_count"], counts["failed_count"]) == (5, 0)
    assert sandbox.control("stats")["accepted"] == 0
    body = tenant.client.get(DETAIL_URL.format(send_id)).json()
    assert body["status"] == "FAILED"
    assert "190" in body["status_reason"]
    # Halted is not active: the reaper leaves it to the operator.
    assert send_id not in bulk_sends_reap(now=timezone.now())

    tenant.account.access_token = "test-token"
    tenant.account.save()
    assert bulk_send_resume(bulk_send=bulk_send) is True
    bulk_send = drain_to_completion(send_id)

    assert bulk_send.status == BulkSendStatus.COMPLETED
    assert bulk_send.status_reason == ""
    assert "status_reason" not in tenant.client.get(DETAIL_URL.format(send_id)).json()
    record = received(sandbox)
    assert len(record.messages) == 5
    assert record.duplicates == []
    assert assert_counters_exact(bulk_send)["sent_count"] == 5


def test_a_blocked_account_halts_the_send_after_what_went_out_and_resumes_without_repeats(
    tenant: Tenant, scripted_meta: ScriptedMeta
) -> None:
    scripted_meta.answer = lambda index, body: None if index < 3 else ACCOUNT_BLOCKED
    accepted = send_bulk(tenant, welcome_recipients(10))
    send_id = accepted["bulk_send_id"]

    report = bulk_send_drain(send_id)

    assert report.halted == "368"
    bulk_send = BulkSend.objects.get(pk=send_id)
    assert bulk_send.status == BulkSendStatus.PARTIAL
    assert "368" in bulk_send.status_reason
    counts = assert_counters_exact(bulk_send)
    assert (counts["sent_count"], counts["pending_count"], counts["failed_count"]) == (3, 7, 0)
    body = tenant.client.get(DETAIL_URL.format(send_id)).json()
    assert (body["status"], "368" in body["status_reason"]) == ("PARTIAL", True)

    scripted_meta.answer = lambda index, body: None
    assert bulk_send_resume(bulk_send=bulk_send) is True
    bulk_send = drain_to_completion(send_id)

    assert bulk_send.status == BulkSendStatus.COMPLETED
    callbacks = scripted_meta.accepted_callbacks()
    assert len(callbacks) == 10
    assert len(set(callbacks)) == 10
    # The first drain sent 3 and then at least the request Meta blocked; none after the block
    # was answered (see the test below), and the resumed drain the 7 left.
    assert 11 <= len(scripted_meta.requests) <= 17
    wamids = {callback: wamid for wamid, callback in _accepted_pairs(scripted_meta)}
    for message in messages_of(send_id):
        assert message.status == MessageStatus.SENT
        assert message.wamid == wamids[callback_data_for(message.pk)]


def _accepted_pairs(meta: ScriptedMeta) -> list[tuple[str, str]]:
    return [(wamid, body["biz_opaque_callback_data"]) for wamid, body in meta.accepted]


# --- an answer lost after Meta accepted ---------------------------------------------------------


def test_an_accepted_send_whose_answer_was_lost_waits_for_its_sent_webhook(
    tenant: Tenant, sandbox: SandboxThread, webhook_hold: WebhookHold, webhook_url: str
) -> None:
    sandbox.control(
        "config", {"drop_share": 1.0, "webhook_url": webhook_hold.url, "delivered_share": 0.0}
    )
    accepted = send_bulk(tenant, welcome_recipients(3))
    send_id = accepted["bulk_send_id"]

    report = bulk_send_drain(send_id)

    assert report.outcomes == {"uncertain": 3}
    for message in messages_of(send_id):
        assert (message.status, message.wamid, message.attempts) == (
            MessageStatus.SENDING,
            None,
            1,
        )
    assert BulkSend.objects.get(pk=send_id).status == BulkSendStatus.PROCESSING
    # Within the grace the reaper leaves them with Meta.
    bulk_sends_reap(now=timezone.now())
    assert {m.status for m in messages_of(send_id)} == {MessageStatus.SENDING}

    wait_for(lambda: len(webhook_hold.statuses()) == 3, what="the three `sent` webhooks")
    webhook_hold.release(webhook_url)
    # The endpoint applies what it stored right after its answer.
    wait_for(
        lambda: {m.status for m in messages_of(send_id)} == {MessageStatus.SENT},
        what="the `sent` webhooks to be applied",
    )

    wamids = {
        item["biz_opaque_callback_data"]: item["wamid"] for item in received(sandbox).messages
    }
    for message in messages_of(send_id):
        assert message.status == MessageStatus.SENT
        assert message.wamid == wamids[callback_data_for(message.pk)]
    # Long after the grace, nothing is handed back, and the send is finished.
    later = timezone.now() + timedelta(hours=1)
    assert bulk_sends_reap(now=later) == []
    bulk_send = BulkSend.objects.get(pk=send_id)
    assert bulk_send.status == BulkSendStatus.COMPLETED
    assert bulk_send_drain(send_id).batches == 0
    record = received(sandbox)
    assert len(record.messages) == 3
    assert record.duplicates == []
    assert assert_counters_exact(bulk_send)["sent_count"] == 3
