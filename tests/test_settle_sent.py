"""A drain's `sent` answers, recorded by `statuses_apply_sent`, do to the messages, the kept
statuses and the counters exactly what the same `sent` events do through `statuses_apply`."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from bulksend.models import BulkSend, BulkSendStatus
from messaging.models import DeferredStatus, Message, MessageStatus
from messaging.status import StatusEvent, StatusOutcome, statuses_apply, statuses_apply_sent
from tests import factories
from tests.conftest import Tenant

pytestmark = pytest.mark.django_db


class Rollback(Exception):
    """Ends a scenario's transaction, so the other path meets the same rows."""


def scenario(tenant: Tenant, now: datetime) -> tuple[BulkSend, list[tuple[int, str]]]:
    """Messages in every state a drain's `sent` answer may meet, and the (id, wamid) pairs."""
    send = factories.make_bulk_send(
        tenant.number, tenant.template, status=BulkSendStatus.PROCESSING
    )
    sending = [factories.make_message(send, status=MessageStatus.SENDING) for _ in range(3)]
    # Meta's webhook came first: delivered already, with its wamid.
    delivered = factories.make_message(
        send,
        status=MessageStatus.DELIVERED,
        wamid="wamid.DELIVERED",
        sent_at=now - timedelta(seconds=2),
        delivered_at=now - timedelta(seconds=1),
    )
    # A `read` was kept for a wamid no message had yet.
    DeferredStatus.objects.create(
        wamid="wamid.KEPT", status=MessageStatus.READ, occurred_at=now - timedelta(seconds=1)
    )
    # Another message holds the wamid already: the answer may not take it.
    holder = factories.make_message(
        send, status=MessageStatus.SENT, wamid="wamid.TAKEN", sent_at=now - timedelta(seconds=3)
    )
    factories.make_message(send, status=MessageStatus.PENDING)  # no answer for it
    pairs = [
        (sending[0].pk, "wamid.FRESH"),
        (sending[1].pk, "wamid.KEPT"),
        (sending[2].pk, "wamid.TAKEN"),
        (delivered.pk, "wamid.DELIVERED"),
        (holder.pk + 1_000_000, "wamid.NOBODY"),  # no such message: kept
    ]
    return send, pairs


def state(send: BulkSend, outcome: StatusOutcome) -> dict[str, Any]:
    rows = Message.objects.filter(bulk_send=send).order_by("id")
    send.refresh_from_db()
    return {
        "messages": list(
            rows.values_list("id", "status", "wamid", "sent_at", "delivered_at", "read_at")
        ),
        "kept": sorted(DeferredStatus.objects.values_list("wamid", "status", "message_ref")),
        "outcome": (
            outcome.events,
            outcome.messages_changed,
            outcome.deferred,
            outcome.counters,
            outcome.changes,
            outcome.deferred_wamids,
            outcome.moves,
        ),
    }


def applied(tenant: Tenant, through_events: bool) -> dict[str, Any]:
    now = timezone.now()
    result: dict[str, Any] = {}
    try:
        with transaction.atomic():
            send, pairs = scenario(tenant, now)
            if through_events:
                outcome = statuses_apply(
                    [
                        StatusEvent(wamid, MessageStatus.SENT, now, message_ref=message_id)
                        for message_id, wamid in pairs
                    ]
                )
            else:
                outcome = statuses_apply_sent(pairs, occurred_at=now)
            result = state(send, outcome)
            first = Message.objects.filter(bulk_send=send).order_by("id").first()
            assert first is not None
            result["first_id"] = first.pk
            raise Rollback
    except Rollback:
        pass
    # Ids and times differ between the two runs: make them relative to each run's own.
    offset = result.pop("first_id")
    result["messages"] = [
        (message_id - offset, status, wamid, *(t is not None for t in times))
        for message_id, status, wamid, *times in result["messages"]
    ]
    events, changed, deferred, counters, changes, deferred_wamids, moves = result["outcome"]
    result["outcome"] = (
        events,
        changed,
        deferred,
        list(counters.values()),
        sorted((wamid, old, new) for wamid, (_, old, new) in changes.items()),
        deferred_wamids,
        sorted((message_id - offset, old, new) for message_id, (_, old, new) in moves.items()),
    )
    result["kept"] = [(wamid, status, ref is not None) for wamid, status, ref in result["kept"]]
    return result


def test_sent_answers_settle_as_the_same_sent_events_do(tenant: Tenant) -> None:
    by_events = applied(tenant, through_events=True)
    by_pairs = applied(tenant, through_events=False)

    assert by_pairs == by_events
    statuses = {wamid: status for _, status, wamid, *_ in by_pairs["messages"]}
    # What the scenario is there to show: each case went its own way.
    assert statuses["wamid.FRESH"] == MessageStatus.SENT
    assert statuses["wamid.KEPT"] == MessageStatus.READ  # the kept read applied at once
    assert statuses["wamid.DELIVERED"] == MessageStatus.DELIVERED
    assert [wamid for wamid, *_ in by_pairs["kept"]] == ["wamid.NOBODY"]
    assert by_pairs["outcome"][2] == 1  # deferred


def test_no_answers_change_nothing(tenant: Tenant) -> None:
    with transaction.atomic():
        outcome = statuses_apply_sent([], occurred_at=timezone.now())
    assert (outcome.events, outcome.messages_changed, outcome.counters) == (0, 0, {})
