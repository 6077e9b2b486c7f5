"""A drain sends batch N+1 while it settles batch N and claims N+2, and loses none of its
guarantees for it: a halt, a cancel or a failed settle leave the batch claimed next unsent.

The drains here run in the test process against a scripted Graph API, unpaced, one request at a
time (DELIVERY_CONCURRENCY 1), so that the scripted answers say exactly what has gone out. Where
a test needs the drain at a given step, Meta's answer waits for that step to show in the database:
a drain that did the steps one after the other would never get there, and the test would fail.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings

from bulksend import drain
from bulksend.conversion import cancelled_messages_convert
from bulksend.drain import bulk_send_drain
from bulksend.lifecycle import bulk_send_cancel
from bulksend.models import BulkSend, BulkSendStatus
from bulksend.stopping import STOP_POLL_SECONDS
from messaging.models import Message, MessageStatus, message_id_from_callback_data
from meta.graph import GraphConfig
from tests.conftest import Tenant
from tests.delivery_support import (
    ACCOUNT_BLOCKED,
    UNDELIVERABLE,
    Answer,
    ScriptedMeta,
    assert_counters_exact,
    delivery_redis_fixture,  # noqa: F401  (fixtures)
    meta_error,
    scripted_meta_fixture,  # noqa: F401
    send_bulk,
    wait_for,
    welcome_recipients,
)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("one_request_at_a_time"),
]

BATCH = 10  # the number's rate is 5/s: a batch is two seconds' worth
RECIPIENTS = 3 * BATCH
TRANSIENT = meta_error(500, 131000, "(#131000) Something went wrong", "Something went wrong")


@pytest.fixture
def one_request_at_a_time(tenant: Tenant) -> Any:
    tenant.number.throughput_per_second = BATCH // 2
    tenant.number.save()
    with override_settings(DELIVERY_PACING=False, DELIVERY_CONCURRENCY=1):
        yield


def off_meta_loop(work: Callable[[], Any]) -> Any:
    """Run `work` in a thread of its own and return its result: Meta's answers are decided in an
    event loop, where the ORM may not be used. The thread's connection is closed after it."""
    results: list[Any] = []

    def run() -> None:
        try:
            results.append(work())
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(60)
    assert results, "the database step of Meta's answer failed or hung"
    return results[0]


def wait_until_claimed(bulk_send_id: str, count: int) -> None:
    """From Meta's answer: until the drain holds `count` of the send's messages."""

    def held() -> int:
        return Message.objects.filter(
            bulk_send_id=bulk_send_id, status=MessageStatus.SENDING
        ).count()

    off_meta_loop(lambda: wait_for(lambda: held() == count, timeout=30, what=f"{count} claimed"))


def messages_by_status(bulk_send_id: str) -> dict[str, list[Message]]:
    by_status: dict[str, list[Message]] = {}
    for message in Message.objects.filter(bulk_send_id=bulk_send_id).order_by("id"):
        by_status.setdefault(message.status, []).append(message)
    return by_status


def requested_ids(meta: ScriptedMeta) -> list[int]:
    return [
        int(message_id_from_callback_data(body["biz_opaque_callback_data"]) or 0)
        for body in meta.requests
    ]


def test_the_next_batch_is_claimed_and_sent_while_the_last_is_settled(
    tenant: Tenant, scripted_meta: ScriptedMeta, monkeypatch: pytest.MonkeyPatch
) -> None:
    accepted = send_bulk(tenant, welcome_recipients(RECIPIENTS))
    send_id = accepted["bulk_send_id"]
    second_batch_out = threading.Event()

    def answer(index: int, body: dict[str, Any]) -> Answer | None:
        if index == BATCH - 1:
            # The last answer of batch 1 waits for batch 2 to be claimed.
            wait_until_claimed(send_id, 2 * BATCH)
        if index == BATCH:
            second_batch_out.set()
        return None

    settle = drain.batch_settle
    settled_first = threading.Event()

    def settle_after_the_next_batch_left(*args: Any, **kwargs: Any) -> dict[str, int]:
        if not settled_first.is_set():
            settled_first.set()
            # Batch 1 is settled only once batch 2's first request has reached Meta.
            assert second_batch_out.wait(30), "batch 2 was not sent while batch 1 was settled"
        return settle(*args, **kwargs)

    scripted_meta.answer = answer
    monkeypatch.setattr(drain, "batch_settle", settle_after_the_next_batch_left)

    report = bulk_send_drain(uuid.UUID(send_id))

    assert (report.batches, report.outcomes) == (3, {"sent": RECIPIENTS})
    bulk_send = BulkSend.objects.get(pk=send_id)
    assert bulk_send.status == BulkSendStatus.COMPLETED
    ids = requested_ids(scripted_meta)
    assert ids == sorted(set(ids))  # each once, oldest first
    assert assert_counters_exact(bulk_send)["sent_count"] == RECIPIENTS


def test_a_halt_in_one_batch_stops_sending_at_once_and_gives_the_next_batch_back_untried(
    tenant: Tenant, scripted_meta: ScriptedMeta
) -> None:
    accepted = send_bulk(tenant, welcome_recipients(RECIPIENTS))
    send_id = accepted["bulk_send_id"]

    def answer(index: int, body: dict[str, Any]) -> Answer | None:
        if index < 3:
            return None
        # Blocked only once the drain holds batch 2 as well.
        wait_until_claimed(send_id, 2 * BATCH)
        return ACCOUNT_BLOCKED

    scripted_meta.answer = answer

    report = bulk_send_drain(uuid.UUID(send_id))

    assert report.halted == "368"
    # Nothing went out after Meta's 368: not the rest of batch 1, nothing of batch 2.
    assert len(scripted_meta.requests) == 4
    by_status = messages_by_status(send_id)
    assert len(by_status[MessageStatus.SENT]) == 3
    pending = by_status[MessageStatus.PENDING]
    assert len(pending) == RECIPIENTS - 3
    # The blocked one, the untried rest of batch 1, batch 2: back untried, due at once.
    assert {(m.attempts, m.next_attempt_at, m.lease_expires_at) for m in pending} == {
        (0, None, None)
    }
    assert set(by_status) == {MessageStatus.SENT, MessageStatus.PENDING}
    bulk_send = BulkSend.objects.get(pk=send_id)
    assert bulk_send.status == BulkSendStatus.PARTIAL
    assert "368" in bulk_send.status_reason
    assert assert_counters_exact(bulk_send)["pending_count"] == RECIPIENTS - 3


def test_a_cancel_while_a_batch_is_sent_stops_it_and_leaves_the_batch_claimed_next_unsent(
    tenant: Tenant, scripted_meta: ScriptedMeta
) -> None:
    accepted = send_bulk(tenant, welcome_recipients(RECIPIENTS))
    send_id = accepted["bulk_send_id"]
    # The requests Meta had got when the cancel returned: nothing may come after them.
    at_the_answer: list[int] = []
    cancelling: list[threading.Thread] = []

    def cancel() -> None:
        try:
            bulk_send_cancel(bulk_send=BulkSend.objects.get(pk=send_id))
            at_the_answer.append(len(scripted_meta.requests))
        finally:
            connection.close()

    def answer(index: int, body: dict[str, Any]) -> Answer | None:
        if index == 5:
            asked = time.monotonic()  # the sender read the stop mark before this request
            wait_until_claimed(send_id, 2 * BATCH)
            # The cancel waits for this batch to stop, so it cannot be waited for here: only
            # until it committed.
            cancelling.append(threading.Thread(target=cancel, daemon=True))
            cancelling[0].start()
            off_meta_loop(
                lambda: wait_for(
                    BulkSend.objects.filter(pk=send_id, status=BulkSendStatus.CANCELLED).exists,
                    timeout=30,
                    what="the cancel to commit",
                )
            )
            # Unpaced, the sender reads the mark at most every STOP_POLL_SECONDS: answered no
            # sooner, the next request reads it afresh.
            wait_for(
                lambda: time.monotonic() - asked > STOP_POLL_SECONDS,
                timeout=30,
                what="the sender's last reading of the mark to age",
            )
        return None

    scripted_meta.answer = answer

    bulk_send_drain(uuid.UUID(send_id))
    cancelling[0].join(60)

    # The batch in flight stopped before its next request (the send's stop mark), the one
    # claimed next never went out, and nothing went out after the cancel returned.
    assert at_the_answer == [len(scripted_meta.requests)]
    assert len(scripted_meta.requests) == 6
    sent = len(scripted_meta.requests)
    bulk_send = BulkSend.objects.get(pk=send_id)
    assert bulk_send.status == BulkSendStatus.CANCELLED
    counts = assert_counters_exact(bulk_send)
    assert (counts["sent_count"], counts["cancelled_count"], counts["pending_count"]) == (
        sent,
        RECIPIENTS - sent,
        0,
    )
    # The rows as the task the cancel woke leaves them (bulksend.conversion).
    cancelled_messages_convert(uuid.UUID(send_id))
    cancelled = messages_by_status(send_id)[MessageStatus.CANCELLED]
    assert {m.attempts for m in cancelled} == {0}


def test_a_settle_that_fails_ends_the_drain_and_settles_or_gives_back_everything_after_it(
    tenant: Tenant, scripted_meta: ScriptedMeta, monkeypatch: pytest.MonkeyPatch
) -> None:
    accepted = send_bulk(tenant, welcome_recipients(RECIPIENTS))
    send_id = accepted["bulk_send_id"]
    settle = drain.batch_settle
    calls: list[int] = []

    def settle_failing_first(*args: Any, **kwargs: Any) -> dict[str, int]:
        calls.append(len(args[0]))
        if len(calls) == 1:
            raise RuntimeError("the database went away")
        return settle(*args, **kwargs)

    monkeypatch.setattr(drain, "batch_settle", settle_failing_first)

    with pytest.raises(RuntimeError, match="went away"):
        bulk_send_drain(uuid.UUID(send_id))

    ids = requested_ids(scripted_meta)
    assert ids == sorted(set(ids))
    first_batch = ids[:BATCH]
    by_status = messages_by_status(send_id)
    # Batch 1's settle failed: its messages stay with their leases, for the reaper.
    assert [m.pk for m in by_status[MessageStatus.SENDING]] == first_batch
    # What went out after it is settled by Meta's answers, the rest is back untried.
    assert [m.pk for m in by_status[MessageStatus.SENT]] == ids[BATCH:]
    pending = by_status.get(MessageStatus.PENDING, [])
    assert len(pending) == RECIPIENTS - len(ids)
    assert {m.attempts for m in pending} <= {0}
    assert calls[0] == BATCH
    assert_counters_exact(BulkSend.objects.get(pk=send_id))


def test_each_batch_logs_one_line_with_the_send_the_number_its_outcomes_and_rate(
    tenant: Tenant, scripted_meta: ScriptedMeta, caplog: pytest.LogCaptureFixture
) -> None:
    accepted = send_bulk(tenant, welcome_recipients(RECIPIENTS))
    send_id = accepted["bulk_send_id"]
    answers: dict[int, Answer] = {1: UNDELIVERABLE, 2: TRANSIENT, 12: UNDELIVERABLE}
    scripted_meta.answer = answers_by_index(answers)

    with caplog.at_level(logging.INFO, logger="bulksend.drain"):
        report = bulk_send_drain(uuid.UUID(send_id))

    lines = [r for r in caplog.records if r.name == "bulksend.drain" and r.levelname == "INFO"]
    assert len(lines) == report.batches == 3  # the retry is due a second later or more
    number = tenant.number.phone_number_id
    outcomes = [
        (r.bulk_send_id, r.phone_number_id, r.sent, r.failed, r.retried)  # type: ignore[attr-defined]
        for r in lines
    ]
    assert outcomes == [
        (send_id, number, BATCH - 2, 1, 1),
        (send_id, number, BATCH - 1, 1, 0),
        (send_id, number, BATCH, 0, 0),
    ]
    for record in lines:
        message = record.getMessage()
        assert message.startswith(f"Send {send_id}, number {number}: ")
        assert record.rate > 0  # type: ignore[attr-defined]
        assert f"{record.rate:.1f} requests/s" in message  # type: ignore[attr-defined]
        # Unpaced: no permit, none forfeited or paid for late.
        assert (record.forfeited, record.paid_late) == (0, 0)  # type: ignore[attr-defined]
        assert message.endswith("0 permits forfeited, 0 paid late")


def answers_by_index(answers: dict[int, Answer]) -> Callable[[int, dict[str, Any]], Answer | None]:
    return lambda index, body: answers.get(index)


def held_until_the_next_batch_arrives(
    send_id: str, then: Answer | None, arrived: list[bool]
) -> Callable[[int, dict[str, Any]], Any]:
    """Meta's answers for two requests in flight at once: batch 1's last message is answered
    (with `then`) only once a message of batch 2 has reached Meta, which happens only if the
    drain sends batch 2 while batch 1's last answer is still awaited. `arrived` says which."""
    ids = list(
        Message.objects.filter(bulk_send_id=send_id).order_by("id").values_list("id", flat=True)
    )
    last_of_first, second = ids[BATCH - 1], set(ids[BATCH : 2 * BATCH])
    second_arrived = asyncio.Event()

    async def answer(index: int, body: dict[str, Any]) -> Answer | None:
        message_id = message_id_from_callback_data(body["biz_opaque_callback_data"])
        if message_id in second:
            second_arrived.set()
            return then
        if message_id == last_of_first:
            try:
                # Not longer: the drain's client gives up on the request after its timeout.
                await asyncio.wait_for(second_arrived.wait(), GraphConfig().timeout_seconds / 2)
                arrived.append(True)
            except TimeoutError:
                arrived.append(False)
            return then
        return None

    return answer


def test_the_next_batch_takes_the_connections_the_last_requests_of_a_batch_free(
    tenant: Tenant, scripted_meta: ScriptedMeta
) -> None:
    accepted = send_bulk(tenant, welcome_recipients(RECIPIENTS))
    send_id = accepted["bulk_send_id"]
    arrived: list[bool] = []
    scripted_meta.answer = held_until_the_next_batch_arrives(send_id, None, arrived)

    with override_settings(DELIVERY_CONCURRENCY=2):
        report = bulk_send_drain(uuid.UUID(send_id))

    assert arrived == [True], "batch 2 waited for the last answer of batch 1"
    assert (report.batches, report.outcomes) == (3, {"sent": RECIPIENTS})
    ids = requested_ids(scripted_meta)
    assert len(set(ids)) == len(ids) == RECIPIENTS  # each once
    bulk_send = BulkSend.objects.get(pk=send_id)
    assert bulk_send.status == BulkSendStatus.COMPLETED
    assert assert_counters_exact(bulk_send)["sent_count"] == RECIPIENTS


def test_a_halt_among_a_batchs_last_answers_stops_the_batch_already_handed_over(
    tenant: Tenant, scripted_meta: ScriptedMeta
) -> None:
    accepted = send_bulk(tenant, welcome_recipients(RECIPIENTS))
    send_id = accepted["bulk_send_id"]
    arrived: list[bool] = []
    # Batch 1's last request and batch 2's first, both in flight, are both refused: 368.
    scripted_meta.answer = held_until_the_next_batch_arrives(send_id, ACCOUNT_BLOCKED, arrived)

    with override_settings(DELIVERY_CONCURRENCY=2):
        report = bulk_send_drain(uuid.UUID(send_id))

    assert arrived == [True]
    assert report.halted == "368"
    # The two connections held those two requests: nothing else left once Meta said 368.
    assert len(scripted_meta.requests) == BATCH + 1
    by_status = messages_by_status(send_id)
    assert set(by_status) == {MessageStatus.SENT, MessageStatus.PENDING}
    assert len(by_status[MessageStatus.SENT]) == BATCH - 1
    pending = by_status[MessageStatus.PENDING]
    assert len(pending) == RECIPIENTS - (BATCH - 1)
    # The two refused, the untried rest of batch 2 and batch 3: back untried, due at once.
    assert {(m.attempts, m.next_attempt_at, m.lease_expires_at) for m in pending} == {
        (0, None, None)
    }
    bulk_send = BulkSend.objects.get(pk=send_id)
    assert bulk_send.status == BulkSendStatus.PARTIAL
    assert "368" in bulk_send.status_reason
    assert assert_counters_exact(bulk_send)["pending_count"] == RECIPIENTS - (BATCH - 1)
