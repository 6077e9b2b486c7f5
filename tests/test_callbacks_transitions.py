"""Every transition a message or a send makes is told to the customer, whichever path made it:
the drain's settles (sent, Meta's refusals), Meta's webhooks before and after the drain recorded
the wamid, the reaper's unknown outcomes, a single send's short path, Meta's halts. Over any
interleaving of them, the `message.status` and `bulk_send.status` events received are exactly the
transitions the rows made, one event each."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import transaction
from django.test import Client
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from bulksend.lifecycle import (
    batch_settle,
    bulk_send_start,
    sends_halt_for_templates,
    sends_leases_reap,
    single_sent_settle,
)
from bulksend.models import BulkSend, BulkSendStatus
from callbacks.delivery import callbacks_deliver
from callbacks.models import CallbackEvent
from messaging.delivery import DeliveryResult, Settle, messages_claim
from messaging.models import Message, MessageStatus
from tests import factories
from tests import meta_payloads as meta
from tests.callback_receiver import CallbackReceiver
from tests.conftest import Tenant
from tests.test_callbacks_events import subscribe
from tests.test_single_settle import single_message
from tests.test_webhook_properties import HISTORIES, OFFSET, PROPERTY_SETTINGS, rolled_back

EVENT_TYPES = ["message.status", "bulk_send.status"]
REFUSED_CODE = "131026"


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    started = CallbackReceiver().start()
    yield started
    started.stop()


def message_transitions(receiver: CallbackReceiver) -> list[tuple[int, str, str]]:
    return sorted(
        (e["data"]["message_id"], e["data"]["previous_status"], e["data"]["status"])
        for e in receiver.events("message.status")
    )


def send_transitions(receiver: CallbackReceiver) -> list[tuple[str, str, str]]:
    return sorted(
        (e["data"]["bulk_send_id"], e["data"]["previous_status"], e["data"]["status"])
        for e in receiver.events("bulk_send.status")
    )


class Ledger:
    """The transitions the rows really made, read from the database around each transaction."""

    def __init__(self, bulk_send_ids: list[uuid.UUID]) -> None:
        self.bulk_send_ids = bulk_send_ids
        self.messages: list[tuple[int, str, str]] = []
        self.sends: list[tuple[str, str, str]] = []
        self._messages_before, self._sends_before = self._read()

    def _read(self) -> tuple[dict[int, str], dict[str, str]]:
        messages = dict(
            Message.objects.filter(bulk_send_id__in=self.bulk_send_ids).values_list("pk", "status")
        )
        sends = {
            str(pk): status
            for pk, status in BulkSend.objects.filter(pk__in=self.bulk_send_ids).values_list(
                "pk", "status"
            )
        }
        return messages, sends

    def note(self) -> None:
        """Record what the last transaction changed."""
        messages, sends = self._read()
        reported = {"sent", "delivered", "read", "failed"}
        for pk, status in messages.items():
            old = self._messages_before.get(pk)
            if old is not None and status != old and status in reported:
                self.messages.append((pk, old, status))
        for pk, status in sends.items():
            if status != self._sends_before[pk]:
                self.sends.append((pk, self._sends_before[pk], status))
        self._messages_before, self._sends_before = messages, sends


def running_send(tenant: Tenant) -> BulkSend:
    return factories.make_bulk_send(
        tenant.number, tenant.template, status=BulkSendStatus.PROCESSING, started_at=meta.at(0)
    )


def post_statuses(statuses: list[dict[str, Any]]) -> None:
    document = meta.statuses_notification(*statuses)
    assert meta.post(Client(raise_request_exception=False), document).status_code == 200


# What the drain's attempt of a message came to, and whether Meta took it (its webhooks come).
DRAIN_OUTCOMES = [
    ("sent", True),
    ("failed", False),
    ("uncertain", True),  # the answer was lost, Meta has it: its webhooks settle it
    ("uncertain", False),  # never reached Meta: the reaper ends it as unknown, or retries it
]


@pytest.mark.django_db
@PROPERTY_SETTINGS
@given(
    plans=st.lists(
        st.tuples(st.sampled_from(DRAIN_OUTCOMES), st.sampled_from(HISTORIES)),
        min_size=1,
        max_size=6,
    ),
    data=st.data(),
)
def test_over_drain_outcomes_and_shuffled_webhooks_the_events_are_the_transitions(
    tenant: Tenant, receiver: CallbackReceiver, plans: list[Any], data: st.DataObject
) -> None:
    with rolled_back():
        receiver.received.clear()
        subscribe(tenant, receiver, EVENT_TYPES, batch=data.draw(st.booleans()))
        bulk_send = factories.make_bulk_send(
            tenant.number, tenant.template, status=BulkSendStatus.QUEUED
        )
        for _ in plans:
            factories.make_message(bulk_send)
        ledger = Ledger([bulk_send.pk])
        now = timezone.now()
        with transaction.atomic():
            bulk_send_start(bulk_send.pk)
        ledger.note()
        with transaction.atomic():
            claimed = messages_claim(
                bulk_send_id=bulk_send.pk, limit=len(plans), lease_seconds=60, now=now
            )
        ledger.note()
        wamids = [meta.new_wamid() for _ in plans]

        # Steps: a drain settle per message, Meta's statuses of the messages Meta took, shuffled.
        steps: list[tuple[str, int, str]] = []
        for index, ((outcome, taken), history) in enumerate(plans):
            steps.append(("settle", index, outcome))
            if taken:
                steps.extend(("webhook", index, kind) for kind in history if outcome != "failed")
        steps = data.draw(st.permutations(steps))
        while steps:
            size = data.draw(st.integers(1, 4))
            batch, steps = steps[:size], steps[size:]
            settles = [step for step in batch if step[0] == "settle"]
            statuses = [
                meta.status(
                    wamids[index],
                    kind,
                    meta.T0 + OFFSET[kind] + index,
                    message_id=claimed[index].id,
                )
                for _, index, kind in batch
                if _ == "webhook"
            ]
            if settles:
                batch_settle([result_of(claimed[i], o, wamids[i]) for _, i, o in settles], now=now)
                ledger.note()
            if statuses:
                post_statuses(statuses)
                ledger.note()
        sends_leases_reap(
            grace_seconds=30,
            max_attempts=1,
            now=now + timedelta(days=1),
            unknown_after_seconds=3600,
        )
        ledger.note()

        report = callbacks_deliver(budget_seconds=0)

        assert report.failed == report.retried == 0
        assert receiver.bad_signatures == 0
        assert message_transitions(receiver) == sorted(ledger.messages)
        assert send_transitions(receiver) == sorted(ledger.sends)
        assert len(set(receiver.ids())) == len(receiver.ids())
        assert not Message.objects.filter(bulk_send=bulk_send, status="sending").exists()


def result_of(claimed: Any, outcome: str, wamid: str) -> DeliveryResult:
    if outcome == "sent":
        return DeliveryResult(claimed.id, Settle.SENT, wamid=wamid)
    if outcome == "failed":
        return DeliveryResult(
            claimed.id, Settle.FAILED, error_code=REFUSED_CODE, error_message="Undeliverable"
        )
    return DeliveryResult(claimed.id, Settle.UNCERTAIN)


def test_a_failure_the_drain_settles_reaches_the_customer_with_metas_error(
    tenant: Tenant, receiver: CallbackReceiver
) -> None:
    subscribe(tenant, receiver, EVENT_TYPES)
    bulk_send = running_send(tenant)
    message = factories.make_message(bulk_send)
    now = timezone.now()
    with transaction.atomic():
        [claimed] = messages_claim(bulk_send_id=bulk_send.pk, limit=1, lease_seconds=60, now=now)
    result = DeliveryResult(
        claimed.id, Settle.FAILED, error_code=REFUSED_CODE, error_message="Message undeliverable"
    )

    batch_settle([result], now=now)
    callbacks_deliver(budget_seconds=0)

    [event] = receiver.events("message.status")
    assert event["data"]["message_id"] == message.pk
    assert (event["data"]["previous_status"], event["data"]["status"]) == ("sending", "failed")
    assert event["data"]["wamid"] is None
    assert event["data"]["error"] == {"code": REFUSED_CODE, "message": "Message undeliverable"}
    # (PostgreSQL writes the microseconds without their trailing zeros: compare moments.)
    assert datetime.fromisoformat(event["data"]["timestamp"]) == now
    [finished] = receiver.events("bulk_send.status")
    assert (finished["data"]["status"], finished["data"]["failed_count"]) == ("FAILED", 1)


def test_the_reapers_unknown_outcome_reaches_the_customer(
    tenant: Tenant, receiver: CallbackReceiver
) -> None:
    subscribe(tenant, receiver, EVENT_TYPES)
    bulk_send = running_send(tenant)
    now = timezone.now()
    message = factories.make_message(
        bulk_send, status=MessageStatus.SENDING, attempts=1, lease_expires_at=now
    )

    sends_leases_reap(
        grace_seconds=30,
        max_attempts=3,
        now=now + timedelta(hours=2),
        unknown_after_seconds=3600,
    )
    callbacks_deliver(budget_seconds=0)

    [event] = receiver.events("message.status")
    assert event["data"]["message_id"] == message.pk
    assert event["data"]["status"] == "failed"
    assert event["data"]["error"]["code"] == "unknown_outcome"
    [finished] = receiver.events("bulk_send.status")
    assert (finished["data"]["previous_status"], finished["data"]["status"]) == (
        "PROCESSING",
        "FAILED",
    )


def test_a_single_send_tells_its_sent_and_its_completion(
    tenant: Tenant, receiver: CallbackReceiver
) -> None:
    subscribe(tenant, receiver, EVENT_TYPES)
    _, message = single_message(tenant)
    wamid = meta.new_wamid()

    single_sent_settle(message_id=message.pk, wamid=wamid, now=timezone.now())
    callbacks_deliver(budget_seconds=0)

    [event] = receiver.events("message.status")
    assert (event["data"]["message_id"], event["data"]["wamid"]) == (message.pk, wamid)
    assert (event["data"]["previous_status"], event["data"]["status"]) == ("sending", "sent")
    [finished] = receiver.events("bulk_send.status")
    assert (finished["data"]["previous_status"], finished["data"]["status"]) == (
        "PROCESSING",
        "COMPLETED",
    )
    assert finished["data"]["sent_count"] == 1


def test_a_single_send_without_an_endpoint_records_nothing(tenant: Tenant) -> None:
    bulk_send, message = single_message(tenant)

    single_sent_settle(message_id=message.pk, wamid=meta.new_wamid(), now=timezone.now())

    assert not CallbackEvent.objects.exists()
    assert BulkSend.objects.get(pk=bulk_send.pk).status == BulkSendStatus.COMPLETED


def test_metas_template_halt_tells_each_halted_send(
    tenant: Tenant, receiver: CallbackReceiver
) -> None:
    subscribe(tenant, receiver, EVENT_TYPES)
    running = running_send(tenant)
    factories.make_message(running)
    queued = factories.make_bulk_send(tenant.number, tenant.template)
    factories.make_message(queued)

    assert sends_halt_for_templates([tenant.template], status="PAUSED") == 2
    callbacks_deliver(budget_seconds=0)

    events = {e["data"]["bulk_send_id"]: e["data"] for e in receiver.events("bulk_send.status")}
    assert set(events) == {str(running.pk), str(queued.pk)}
    assert (events[str(running.pk)]["previous_status"], events[str(running.pk)]["status"]) == (
        "PROCESSING",
        "FAILED",
    )
    assert events[str(queued.pk)]["previous_status"] == "QUEUED"
    assert all(data["halted"] for data in events.values())
    assert "PAUSED" in events[str(running.pk)]["status_reason"]
