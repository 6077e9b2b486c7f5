"""Redis away or refusing, piece by piece: the pacer waits for it, a batch it cuts short gives
back at once what it did not send, the reaper keeps going, and a drain's liveness mark is a short
heartbeat.

Each test that takes Redis away does it to a redis-server of its own (tests.redis_server); the
drains here run in the test process and send to a scripted Graph API.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
import redis
from django.test import override_settings
from django.utils import timezone

from bulksend import liveness
from bulksend.drain import bulk_send_drain
from bulksend.liveness import ALIVE_KEY, ALIVE_SECONDS, drain_alive_mark
from bulksend.models import BulkSend, BulkSendStatus
from bulksend.reaper import bulk_sends_reap
from messaging.models import Message, MessageStatus, message_id_from_callback_data
from messaging.ratelimit import AsyncPacer, LimiterUnavailable, RateLimiter, get_rate_limiter
from tests.conftest import Tenant
from tests.delivery_support import (
    RecordingLimiter,
    ScriptedMeta,
    assert_counters_exact,
    delivery_redis_fixture,  # noqa: F401  (fixtures)
    drain_to_completion,
    permits_forfeited,
    scripted_meta_fixture,  # noqa: F401
    send_bulk,
    wait_for,
    welcome_recipients,
)
from tests.redis_server import PrivateRedis, private_redis_fixture  # noqa: F401
from tests.test_ratelimit import MICROS, max_in_any_window

pytestmark = pytest.mark.django_db(transaction=True)

RATE = 20  # a batch is 40 messages, two seconds of sending


def _forget_process_clients() -> None:
    """The limiter and the liveness marks keep one client per process: start afresh."""
    get_rate_limiter.cache_clear()
    liveness.redis_client.cache_clear()


@pytest.fixture
def on_private_redis(private_redis: PrivateRedis) -> Iterator[PrivateRedis]:
    """The limiter and the liveness marks of this process on the test's own Redis."""
    _forget_process_clients()
    try:
        with override_settings(REDIS_URL=private_redis.url):
            yield private_redis
    finally:
        _forget_process_clients()


def run_catching(coroutine: Coroutine[Any, Any, object]) -> BaseException | None:
    try:
        asyncio.run(coroutine)
    except BaseException as error:
        return error
    return None


def message_ids(meta: ScriptedMeta) -> list[int]:
    return [int(message_id_from_callback_data(c) or 0) for c in meta.accepted_callbacks()]


# --- the pacer -----------------------------------------------------------------------------------


def pacer_waits_through_a_restart(
    pacer: AsyncPacer,
    away: PrivateRedis,
    caplog: pytest.LogCaptureFixture,
    *,
    back: Callable[[], None] = lambda: None,
) -> None:
    """`away` is killed; a worker waits on `pacer`, which meets the outage and must keep waiting;
    `away` is started again (then `back()`), and the worker gets its permit."""
    caplog.set_level(logging.WARNING, logger="messaging.ratelimit")
    away.stop()
    outcome: list[BaseException | None] = []
    waiting = threading.Thread(target=lambda: outcome.append(run_catching(pacer.wait())))
    waiting.start()

    wait_for(
        lambda: outcome or "Redis is unreachable" in caplog.text,
        timeout=60,
        what="the pacer to meet the stopped Redis",
    )
    assert outcome == [], "the pacer gave up instead of waiting for Redis"
    away.start()
    back()
    waiting.join(timeout=120)

    assert outcome == [None]
    assert "Redis answers again" in caplog.text


def test_the_pacer_waits_for_redis_and_takes_its_permit_once_redis_is_back(
    private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    limiter = RateLimiter(private_redis.client(), prefix=f"test:rate:{uuid.uuid4().hex}:")
    pacer = AsyncPacer(limiter, "number", 10, redis_wait=120)

    pacer_waits_through_a_restart(pacer, private_redis, caplog)


def test_the_pacer_gives_every_waiter_up_once_redis_stays_away_past_its_bound(
    private_redis: PrivateRedis,
) -> None:
    limiter = RateLimiter(private_redis.client(), prefix=f"test:rate:{uuid.uuid4().hex}:")
    pacer = AsyncPacer(limiter, "number", 10, redis_wait=0.3)
    private_redis.stop()

    async def three_waiters() -> list[BaseException | None]:
        return await asyncio.gather(*(pacer.wait() for _ in range(3)), return_exceptions=True)

    answers = asyncio.run(three_waiters())

    assert [type(answer) for answer in answers] == [LimiterUnavailable] * 3


# --- a batch cut short ---------------------------------------------------------------------------


def assert_given_back_untried(bulk_send_id: str, meta: ScriptedMeta) -> int:
    """What Meta accepted is sent; everything else is pending again, untried; returns how many
    were sent."""
    sent = message_ids(meta)
    messages = list(Message.objects.filter(bulk_send_id=bulk_send_id))
    for message in messages:
        if message.pk in sent:
            assert (message.status, message.attempts) == (MessageStatus.SENT, 1)
        else:
            assert (message.status, message.attempts) == (MessageStatus.PENDING, 0), message.pk
            assert (message.lease_expires_at, message.next_attempt_at) == (None, None)
    counts = assert_counters_exact(BulkSend.objects.get(pk=bulk_send_id))
    assert (counts["sent_count"], counts["pending_count"]) == (len(sent), len(messages) - len(sent))
    return len(sent)


def assert_finishes_with_each_sent_once(bulk_send_id: str, meta: ScriptedMeta) -> None:
    bulk_send = drain_to_completion(bulk_send_id, timeout=60)
    assert bulk_send.status == BulkSendStatus.COMPLETED
    ids = message_ids(meta)
    assert sorted(ids) == sorted(set(ids))
    assert set(ids) == set(
        Message.objects.filter(bulk_send_id=bulk_send_id).values_list("pk", flat=True)
    )
    attempts = Message.objects.filter(bulk_send_id=bulk_send_id).values_list("attempts", flat=True)
    assert set(attempts) == {1}
    assert assert_counters_exact(bulk_send)["sent_count"] == len(ids)


@override_settings(DELIVERY_PACING=True, DELIVERY_REDIS_WAIT_SECONDS=0)
def test_a_batch_redis_leaves_gives_back_at_once_what_it_did_not_send(
    tenant: Tenant, scripted_meta: ScriptedMeta, on_private_redis: PrivateRedis
) -> None:
    tenant.number.throughput_per_second = RATE
    tenant.number.save()

    def answer(index: int, body: dict[str, Any]) -> None:
        if index == 9:
            on_private_redis.stop()  # mid-batch: 40 claimed, 10 sent

    scripted_meta.answer = answer
    accepted = send_bulk(tenant, welcome_recipients(2 * RATE))
    send_id = accepted["bulk_send_id"]

    report = bulk_send_drain(uuid.UUID(send_id))

    assert report.more_work
    sent = assert_given_back_untried(send_id, scripted_meta)
    assert 10 <= sent < 2 * RATE
    on_private_redis.start()
    assert_finishes_with_each_sent_once(send_id, scripted_meta)


@override_settings(DELIVERY_PACING=True)
def test_a_batch_redis_refuses_mid_way_gives_back_at_once_what_it_did_not_send(
    tenant: Tenant, scripted_meta: ScriptedMeta, on_private_redis: PrivateRedis
) -> None:
    tenant.number.throughput_per_second = RATE
    tenant.number.save()
    admin = on_private_redis.client()

    def answer(index: int, body: dict[str, Any]) -> None:
        if index == 9:
            # Out of memory (no eviction): Redis answers, and refuses every write.
            admin.config_set("maxmemory", 1)

    scripted_meta.answer = answer
    accepted = send_bulk(tenant, welcome_recipients(2 * RATE))
    send_id = accepted["bulk_send_id"]

    raised: Exception | None = None
    try:
        bulk_send_drain(uuid.UUID(send_id))
    except Exception as error:
        raised = error

    sent = assert_given_back_untried(send_id, scripted_meta)
    assert 10 <= sent < 2 * RATE
    # Not an error to wait out: the drain fails with Redis's own word, for the task's log.
    assert isinstance(raised, redis.ResponseError), raised
    admin.config_set("maxmemory", 0)
    assert_finishes_with_each_sent_once(send_id, scripted_meta)


@override_settings(DELIVERY_PACING=True, DELIVERY_REDIS_WAIT_SECONDS=120)
def test_a_batch_rides_out_a_redis_restart_within_the_rate_and_loses_no_message(
    tenant: Tenant,
    scripted_meta: ScriptedMeta,
    on_private_redis: PrivateRedis,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Redis is killed mid-batch and started again, empty, once the pacer has met the outage:
    the batch goes on where it stopped, and the permits granted after the restart (on the
    limiter's own clock, Redis's) share no one-second window with those before it beyond the
    rate, though the restarted Redis forgot them."""
    caplog.set_level(logging.WARNING, logger="messaging.ratelimit")
    tenant.number.throughput_per_second = RATE
    tenant.number.save()
    limiter = RecordingLimiter(on_private_redis.client())
    monkeypatch.setattr("bulksend.drain.get_rate_limiter", lambda: limiter)
    restarts: list[int] = []

    def restart_once_the_pacer_waits() -> None:
        wait_for(
            lambda: "Redis is unreachable" in caplog.text,
            timeout=60,
            what="the pacer to meet the stopped Redis",
        )
        on_private_redis.start()
        restarts.append(len(limiter.permits))

    def answer(index: int, body: dict[str, Any]) -> None:
        if index == 9:
            on_private_redis.stop()
            threading.Thread(target=restart_once_the_pacer_waits, daemon=True).start()

    scripted_meta.answer = answer
    accepted = send_bulk(tenant, welcome_recipients(2 * RATE))
    send_id = accepted["bulk_send_id"]
    forfeited = permits_forfeited()

    bulk_send_drain(uuid.UUID(send_id))
    assert_finishes_with_each_sent_once(send_id, scripted_meta)

    assert len(restarts) == 1
    assert 10 <= restarts[0] < 2 * RATE, restarts
    assert "Redis answers again" in caplog.text
    stamps = [round(seconds * MICROS) for seconds in limiter.permits]
    assert len(stamps) == 2 * RATE + permits_forfeited() - forfeited
    assert max_in_any_window(stamps) <= RATE


# --- the reaper and liveness ---------------------------------------------------------------------


def test_the_reaper_wakes_a_send_whose_liveness_redis_cannot_tell(
    tenant: Tenant, on_private_redis: PrivateRedis
) -> None:
    accepted = send_bulk(tenant, welcome_recipients(2))
    drain_alive_mark(accepted["bulk_send_id"])
    on_private_redis.stop()

    woken = bulk_sends_reap(now=timezone.now())

    # A second drain of a live send is safe (claims skip what another holds); none is not.
    assert woken == [accepted["bulk_send_id"]]


def test_a_drain_keeps_a_short_mark_renewed_while_its_batch_is_sent(
    tenant: Tenant,
    scripted_meta: ScriptedMeta,
    delivery_redis: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(liveness, "HEARTBEAT_SECONDS", 0.1)
    tenant.number.throughput_per_second = RATE
    tenant.number.save()
    accepted = send_bulk(tenant, welcome_recipients(2 * RATE))
    key = ALIVE_KEY.format(accepted["bulk_send_id"])
    seen: dict[str, int] = {}

    def answer(index: int, body: dict[str, Any]) -> None:
        if index == 5:
            seen["ttl_early"] = int(delivery_redis.pttl(key))
            # As a restarted Redis would, without the mark: the heartbeat writes it again.
            delivery_redis.delete(key)
        elif index == 2 * RATE - 1:
            seen["ttl_late"] = int(delivery_redis.pttl(key))

    scripted_meta.answer = answer

    with override_settings(DELIVERY_PACING=True):
        bulk_send_drain(uuid.UUID(accepted["bulk_send_id"]))

    assert 0 < seen["ttl_early"] <= ALIVE_SECONDS * 1000
    assert 0 < seen["ttl_late"] <= ALIVE_SECONDS * 1000
    # Cleared when the drain ends: the reaper need not wait for it to expire.
    assert not delivery_redis.exists(key)
