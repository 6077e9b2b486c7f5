"""Whatever order, duplication and batching Meta's statuses arrive in, each message ends at the
furthest status of its history, at Meta's times, and every counter equals a recount."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from django.db import transaction
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bulksend.lifecycle import sends_counters_apply, sends_statuses_apply
from bulksend.models import BulkSend, BulkSendStatus
from messaging.models import DeferredStatus, Message
from messaging.status import statuses_apply_deferred
from meta.webhook_payload import payload_read
from tests import meta_payloads as meta
from tests.conftest import Tenant
from webhooks.processing import status_events

# Histories Meta can produce for a message it accepted: a prefix of sent, delivered, read (read
# may come without delivered), or a failure before delivery.
HISTORIES = [
    ("sent",),
    ("sent", "delivered"),
    ("sent", "delivered", "read"),
    ("sent", "read"),
    ("sent", "failed"),
    ("failed",),
]
RANK = {"sent": 1, "delivered": 2, "read": 3}
# Meta's time of each kind of status, in seconds after the acceptance (T0).
OFFSET = {"sent": 0, "delivered": 10, "read": 20, "failed": 15}

PROPERTY_SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@dataclass(frozen=True)
class Event:
    index: int  # which message
    kind: str

    def meta_status(self, wamid: str, message_id: int) -> dict[str, Any]:
        # `read` statuses carry no conversation; the others alternate extras with the message.
        return meta.status(
            wamid,
            self.kind,
            meta.T0 + OFFSET[self.kind] + self.index,
            message_id=message_id if self.index % 2 else None,
        )


@contextmanager
def rolled_back() -> Iterator[None]:
    """Each example runs in a transaction of its own and leaves nothing for the next."""
    with transaction.atomic():
        yield
        transaction.set_rollback(True)


def furthest(history: tuple[str, ...]) -> str:
    if "failed" in history:
        return "failed"
    return max(history, key=RANK.__getitem__)


def time_of(kind: str, index: int) -> datetime:
    return meta.at(meta.T0 + OFFSET[kind] + index)


def expected_delivered_at(
    history: tuple[str, ...], index: int, applied: list[set[str]]
) -> datetime | None:
    """The first batch that brought `delivered` or `read` sets it: `delivered`'s own time if that
    batch held it, else `read`'s (a later `delivered` never rewrites it)."""
    for kinds in applied:
        if "delivered" in kinds:
            return time_of("delivered", index)
        if "read" in kinds:
            return time_of("read", index)
    return None


def events_of(histories: list[tuple[str, ...]], data: st.DataObject) -> list[Event]:
    """All the events, shuffled together, some delivered two or three times."""
    events = [Event(index, kind) for index, history in enumerate(histories) for kind in history]
    copies = data.draw(st.lists(st.integers(1, 3), min_size=len(events), max_size=len(events)))
    repeated = [event for event, n in zip(events, copies, strict=True) for _ in range(n)]
    return data.draw(st.permutations(repeated))


def batches_of(events: list[Event], data: st.DataObject) -> list[list[Event]]:
    batches, rest = [], list(events)
    while rest:
        size = data.draw(st.integers(1, 6))
        batches.append(rest[:size])
        rest = rest[size:]
    return batches


def apply_batch(
    batch: list[Event], messages: list[Message], wamids: list[str], *, via_http: bool
) -> None:
    statuses = [e.meta_status(wamids[e.index], messages[e.index].pk) for e in batch]
    document = meta.statuses_notification(*statuses)
    if via_http:
        response = meta.post(Client(raise_request_exception=False), document)
        assert response.status_code == 200, response.content
    else:
        # The same reading the endpoint does, without the HTTP round trip.
        sends_statuses_apply(status_events(payload_read(document)))


def assert_final_state(
    bulk_send: BulkSend,
    histories: list[tuple[str, ...]],
    applied: list[list[set[str]]],
) -> None:
    messages = list(Message.objects.filter(bulk_send=bulk_send).order_by("id"))
    for index, (message, history) in enumerate(zip(messages, histories, strict=True)):
        final = furthest(history)
        assert message.status == final, (index, history)
        assert message.sent_at == meta.at(meta.T0)
        if final == "failed":
            assert message.failed_at == time_of("failed", index)
            assert message.error_code == str(meta.UNDELIVERABLE_CODE)
            assert (message.delivered_at, message.read_at) == (None, None)
            continue
        assert (message.failed_at, message.error_code) == (None, None)
        assert message.delivered_at == expected_delivered_at(history, index, applied[index])
        assert message.read_at == (time_of("read", index) if final == "read" else None)
    counters = meta.assert_counters_exact(bulk_send)
    failed = counters["failed_count"]
    bulk_send.refresh_from_db()
    if failed == len(histories):
        assert bulk_send.status == BulkSendStatus.FAILED
    elif failed:
        assert bulk_send.status == BulkSendStatus.PARTIAL
    else:
        assert bulk_send.status == BulkSendStatus.COMPLETED


def completed_send(tenant: Tenant, count: int, *, wamids: bool) -> tuple[BulkSend, list[Message]]:
    bulk_send, messages = meta.send_with_messages(
        tenant.number, tenant.template, count, wamids=wamids
    )
    BulkSend.objects.filter(pk=bulk_send.pk).update(status=BulkSendStatus.COMPLETED)
    return bulk_send, messages


@pytest.mark.django_db
@PROPERTY_SETTINGS
@given(histories=st.lists(st.sampled_from(HISTORIES), min_size=1, max_size=8), data=st.data())
def test_any_arrival_order_ends_at_the_furthest_status_with_exact_counters(
    tenant: Tenant, histories: list[tuple[str, ...]], data: st.DataObject
) -> None:
    with rolled_back():
        bulk_send, messages = completed_send(tenant, len(histories), wamids=True)
        wamids = [m.wamid or "" for m in messages]
        applied: list[list[set[str]]] = [[] for _ in histories]
        for batch in batches_of(events_of(histories, data), data):
            apply_batch(batch, messages, wamids, via_http=data.draw(st.booleans()))
            for index in {e.index for e in batch}:
                applied[index].append({e.kind for e in batch if e.index == index})
            meta.assert_counters_exact(bulk_send)

        assert_final_state(bulk_send, histories, applied)


@pytest.mark.django_db
@PROPERTY_SETTINGS
@given(histories=st.lists(st.sampled_from(HISTORIES), min_size=1, max_size=8), data=st.data())
def test_statuses_that_arrive_before_the_wamid_apply_once_it_is_recorded(
    tenant: Tenant, histories: list[tuple[str, ...]], data: st.DataObject
) -> None:
    with rolled_back():
        bulk_send, messages = completed_send(tenant, len(histories), wamids=False)
        wamids = [meta.new_wamid() for _ in messages]
        batches = batches_of(events_of(histories, data), data)
        # Each message's wamid is recorded before some batch (or after the last one).
        recorded_before = [data.draw(st.integers(0, len(batches))) for _ in messages]
        waiting: list[set[str]] = [set() for _ in histories]
        applied: list[list[set[str]]] = [[] for _ in histories]

        def record(position: int) -> None:
            for index, moment in enumerate(recorded_before):
                if moment == position:
                    with transaction.atomic():
                        Message.objects.filter(pk=messages[index].pk).update(wamid=wamids[index])
                        sends_counters_apply(statuses_apply_deferred([wamids[index]]).counters)
                    if waiting[index]:
                        applied[index].append(waiting[index])

        for position, batch in enumerate(batches):
            record(position)
            apply_batch(batch, messages, wamids, via_http=data.draw(st.booleans()))
            for index in {e.index for e in batch}:
                kinds = {e.kind for e in batch if e.index == index}
                if recorded_before[index] <= position:
                    applied[index].append(kinds)
                elif index % 2:
                    # Odd messages' events carry our callback data: the first one finds its
                    # message without the wamid and records it.
                    recorded_before[index] = position
                    applied[index].append(kinds)
                else:
                    waiting[index] |= kinds
            meta.assert_counters_exact(bulk_send)
        record(len(batches))

        assert_final_state(bulk_send, histories, applied)
        assert not DeferredStatus.objects.exists()
