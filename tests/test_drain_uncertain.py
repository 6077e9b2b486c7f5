"""A message Meta may have taken (its answer never came) is never sent twice on a guess.

It is sent again only when Meta's status webhooks for its number have come in for the grace past
the moment it was handed over without naming it; with no such evidence it waits, up to a
ceiling, and then ends as `unknown_outcome` (or goes out again when resending is chosen).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from bulksend.drain import bulk_send_drain
from bulksend.models import BulkSend, BulkSendStatus
from bulksend.reaper import bulk_sends_reap
from messaging.models import Message, MessageStatus
from meta_sandbox import SandboxThread
from tests import meta_payloads as meta
from tests.conftest import Tenant
from tests.delivery_support import (
    assert_counters_exact,
    delivery_redis_fixture,  # noqa: F401  (fixtures)
    drain_to_completion,
    received,
    sandbox_fixture,  # noqa: F401
    send_bulk,
    wait_for,
    webhook_url_fixture,  # noqa: F401
    welcome_recipients,
)
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db(transaction=True)

GRACE = 1


def messages_of(bulk_send_id: Any) -> list[Message]:
    return list(Message.objects.filter(bulk_send_id=bulk_send_id).order_by("id"))


def statuses_of(bulk_send_id: Any) -> set[str]:
    return {message.status for message in messages_of(bulk_send_id)}


def meta_status_arrives(tenant: Tenant, stamped: Any) -> None:
    """A status webhook for another message of the same number, stamped at `stamped`: Meta's
    stream has come that far for this number."""
    document = meta.notification(
        meta.entry(
            meta.messages_change(
                [meta.status(meta.new_wamid(), "delivered", int(stamped.timestamp()))],
                phone_number_id=tenant.number.phone_number_id,
            ),
            waba_id=tenant.account.waba_id,
        )
    )
    assert meta.post(Client(), document).status_code == 200


@override_settings(DELIVERY_CALLBACK_GRACE_SECONDS=GRACE)
def test_dropped_answers_whose_webhooks_come_late_are_never_sent_twice(
    tenant: Tenant, sandbox: SandboxThread, webhook_url: str
) -> None:
    # A fifth of the answers are lost after Meta took the message, and every webhook comes three
    # times the grace late: a resend on the grace alone would duplicate each lost answer.
    sandbox.control(
        "config",
        {"drop_share": 0.2, "webhook_delay": 3.0 * GRACE, "webhook_url": webhook_url},
    )
    send_id = send_bulk(tenant, welcome_recipients(40))["bulk_send_id"]

    def finished() -> bool:
        # The workers and beat, as often as the test polls.
        bulk_send_drain(send_id)
        bulk_sends_reap(now=timezone.now())
        return not BulkSend.objects.get(pk=send_id).is_active

    wait_for(finished, timeout=120, what="the send to finish")

    record = received(sandbox)
    assert record.duplicates == []
    assert set(record.per_message().values()) == {1}
    assert len(record.messages) == 40
    assert sandbox.control("stats")["faults"]["drop"] > 0
    bulk_send = BulkSend.objects.get(pk=send_id)
    assert bulk_send.status == BulkSendStatus.COMPLETED
    assert assert_counters_exact(bulk_send)["sent_count"] == 40
    # The late `delivered` webhooks are still on their way: this test ends once they are applied,
    # so none lands in the next test's database.
    wait_for(
        lambda: sandbox.control("stats")["pending_webhooks"] == 0
        and not WebhookEvent.objects.filter(processed_at__isnull=True).exists(),
        timeout=120,
        what="the late webhooks to be applied",
    )


@override_settings(DELIVERY_CALLBACK_GRACE_SECONDS=GRACE)
def test_an_unanswered_message_goes_out_again_once_metas_webhooks_pass_it_by(
    tenant: Tenant, sandbox: SandboxThread
) -> None:
    # No answer and nothing recorded: Meta never took these.
    sandbox.control("config", {"timeout_share": 1.0, "timeout_seconds": 0.1})
    send_id = send_bulk(tenant, welcome_recipients(3))["bulk_send_id"]
    assert bulk_send_drain(send_id).outcomes == {"uncertain": 3}
    # As if handed over a minute ago: Meta's stamps of the minute since are all in the past.
    handed_over = timezone.now() - timedelta(minutes=1)
    Message.objects.filter(bulk_send_id=send_id).update(lease_expires_at=handed_over)

    # Long past the grace, but no webhook came for the number: they wait.
    assert bulk_sends_reap(now=handed_over + timedelta(minutes=10)) == []
    assert statuses_of(send_id) == {MessageStatus.SENDING}
    # Meta's stream reaches the moment they were handed over, not yet the grace past it.
    meta_status_arrives(tenant, handed_over)
    assert bulk_sends_reap(now=handed_over + timedelta(minutes=10)) == []
    # Now it has come the grace past them without naming them: Meta did not take them.
    meta_status_arrives(tenant, handed_over + timedelta(seconds=GRACE + 1))
    assert bulk_sends_reap(now=handed_over + timedelta(minutes=10)) == [send_id]
    assert statuses_of(send_id) == {MessageStatus.PENDING}

    sandbox.control("config", {"timeout_share": 0.0})
    bulk_send = drain_to_completion(send_id)

    assert bulk_send.status == BulkSendStatus.COMPLETED
    assert set(received(sandbox).per_message().values()) == {1}
    assert {m.attempts for m in messages_of(send_id)} == {2}
    assert assert_counters_exact(bulk_send)["sent_count"] == 3


def test_another_numbers_webhooks_are_no_evidence(
    tenant: Tenant, other_tenant: Tenant, sandbox: SandboxThread
) -> None:
    sandbox.control("config", {"drop_share": 1.0})
    send_id = send_bulk(tenant, welcome_recipients(2))["bulk_send_id"]
    bulk_send_drain(send_id)
    handed_over = timezone.now()

    meta_status_arrives(other_tenant, handed_over + timedelta(hours=1))

    assert bulk_sends_reap(now=handed_over + timedelta(minutes=10)) == []
    assert statuses_of(send_id) == {MessageStatus.SENDING}


@override_settings(DELIVERY_UNKNOWN_AFTER_SECONDS=600)
def test_with_no_webhook_at_all_an_unanswered_message_ends_unknown_and_is_not_resent(
    tenant: Tenant, sandbox: SandboxThread
) -> None:
    sandbox.control("config", {"drop_share": 1.0})
    send_id = send_bulk(tenant, welcome_recipients(2))["bulk_send_id"]
    bulk_send_drain(send_id)
    handed_over = timezone.now()

    assert bulk_sends_reap(now=handed_over + timedelta(seconds=599)) == []
    assert statuses_of(send_id) == {MessageStatus.SENDING}
    bulk_sends_reap(now=handed_over + timedelta(seconds=601))

    for message in messages_of(send_id):
        assert (message.status, message.error_code) == (MessageStatus.FAILED, "unknown_outcome")
        assert "may have been delivered" in (message.error_message or "")
    bulk_send = BulkSend.objects.get(pk=send_id)
    assert bulk_send.status == BulkSendStatus.FAILED
    assert assert_counters_exact(bulk_send)["failed_count"] == 2
    assert bulk_send_drain(send_id).batches == 0
    assert set(received(sandbox).per_message().values()) == {1}


@override_settings(
    DELIVERY_UNKNOWN_AFTER_SECONDS=600, DELIVERY_RESEND_UNKNOWN=True, DELIVERY_MAX_ATTEMPTS=2
)
def test_resending_unknowns_when_chosen_stays_within_the_attempts(
    tenant: Tenant, sandbox: SandboxThread
) -> None:
    sandbox.control("config", {"drop_share": 1.0})
    send_id = send_bulk(tenant, welcome_recipients(2))["bulk_send_id"]

    # Beat and the workers, each round past the ceiling, more rounds than the attempts allow.
    for round_ in range(1, 5):
        bulk_send_drain(send_id)
        bulk_sends_reap(now=timezone.now() + timedelta(seconds=601 * round_))

    assert set(received(sandbox).per_message().values()) == {2}
    for message in messages_of(send_id):
        assert (message.status, message.error_code) == (MessageStatus.FAILED, "no_answer")
    assert assert_counters_exact(BulkSend.objects.get(pk=send_id))["failed_count"] == 2
