"""Redis Cluster (REDIS_CLUSTER): the limiter, the stop and liveness marks and the API's throttling
on a real cluster the test starts (tests.redis_cluster), and the key rule that makes the limiter's
script legal there: every key one command touches hashes to one slot.

The limiter runs on a clock the test moves (as in tests/test_ratelimit.py): the figures are
counts of permits on the limiter's own time, not durations.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
import redis
from django.conf import settings
from django.test import override_settings
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from redis.crc import key_slot

from bulksend import liveness
from bulksend.liveness import drain_alive_clear, drain_alive_mark, drain_is_alive
from bulksend.stopping import send_stop_clear, send_stop_is_set, send_stop_keys, send_stop_mark
from messaging.ratelimit import (
    AsyncPacer,
    LimiterStopped,
    LimiterUnavailable,
    RateLimiter,
    get_rate_limiter,
)
from mindo import throttling
from mindo.health import redis_check
from tests.delivery_support import delivery_redis_fixture, wait_for  # noqa: F401
from tests.redis_cluster import PrivateCluster, private_cluster_fixture  # noqa: F401  (fixture)
from tests.test_ratelimit import MICROS, ManualClock, max_in_any_window
from tests.test_redis_outage import pacer_waits_through_a_restart, run_catching

NUMBERS = [f"1{index:05d}" for index in range(48)]
SECONDS = 2


def _forget_process_clients() -> None:
    """The process keeps one client per kind: made again on the settings of the moment."""
    get_rate_limiter.cache_clear()
    liveness.redis_client.cache_clear()
    throttling._counter.cache_clear()


@pytest.fixture
def on_cluster(private_cluster: PrivateCluster) -> Iterator[PrivateCluster]:
    """This process's limiter, marks and throttling on the test's cluster."""
    _forget_process_clients()
    try:
        with override_settings(REDIS_URL=private_cluster.url, REDIS_CLUSTER=True):
            yield private_cluster
    finally:
        _forget_process_clients()


# --- the key rule --------------------------------------------------------------------------------


def keys_used_together(number: str, send: str) -> list[str]:
    """What the limiter's script touches for a permit of `send` on `number`, on a cluster."""
    limiter = RateLimiter(redis.Redis(), legacy_keys=False)  # no call made: only its key names
    with override_settings(REDIS_CLUSTER=True):
        return [*limiter.rate_keys(number), *send_stop_keys(send, number)]


@hypothesis_settings(max_examples=200, deadline=None)
@given(number=st.text("0123456789", min_size=1, max_size=20), send=st.uuids())
def test_a_numbers_rate_key_and_its_sends_stop_marks_hash_to_one_slot(
    number: str, send: uuid.UUID
) -> None:
    keys = keys_used_together(number, str(send))

    assert len(keys) == 2
    assert {key_slot(key.encode()) for key in keys} == {key_slot(number.encode())}


def test_redis_itself_puts_a_numbers_keys_in_one_slot_and_numbers_apart(
    private_cluster: PrivateCluster,
) -> None:
    node = private_cluster.nodes[0].client()
    slots_of_numbers = set()
    for number in NUMBERS[:12]:
        keys = keys_used_together(number, str(uuid.uuid4()))
        slots = {node.execute_command("CLUSTER", "KEYSLOT", key) for key in keys}
        assert len(slots) == 1, keys
        slots_of_numbers |= slots
    node.close()
    # The numbers spread over the slots (and so over the nodes): not all behind one tag.
    assert len(slots_of_numbers) > 6


# --- the limiter ---------------------------------------------------------------------------------


def stamps_of_every_number(limiter: RateLimiter, clock: ManualClock) -> dict[str, list[int]]:
    """Ask for permits of every number, each at its own rate, for SECONDS of the limiter's time,
    always at the moment the number's next permit conforms; the moments permits were granted."""
    rates = {number: 10 + 10 * (index % 5) for index, number in enumerate(NUMBERS)}
    due = dict.fromkeys(NUMBERS, clock.micros)
    stamps: dict[str, list[int]] = {number: [] for number in NUMBERS}
    end = clock.micros + SECONDS * MICROS
    while min(due.values()) < end:
        clock.micros = min(due.values())
        for number in [number for number, moment in due.items() if moment == clock.micros]:
            grant = limiter.acquire(number, rates[number], n=rates[number])
            stamps[number].extend([clock.micros] * grant.granted)
            due[number] = clock.micros + max(round(grant.retry_after * MICROS), 1)
    return stamps


def test_the_cluster_grants_exactly_the_rate_of_each_number_across_slots(
    private_cluster: PrivateCluster,
) -> None:
    prefix = f"test:rate:{uuid.uuid4().hex}:"
    clock = ManualClock()
    on_cluster = stamps_of_every_number(
        RateLimiter(private_cluster.client(), prefix=prefix, clock=clock), clock
    )
    plain = redis.Redis.from_url(settings.REDIS_URL)
    try:
        clock = ManualClock()
        on_plain = stamps_of_every_number(RateLimiter(plain, prefix=prefix, clock=clock), clock)
    finally:
        for key in plain.scan_iter(f"{prefix}*"):
            plain.delete(key)
        plain.close()

    for index, number in enumerate(NUMBERS):
        rate = 10 + 10 * (index % 5)
        stamps = on_cluster[number]
        first_second = [stamp for stamp in stamps if stamp < stamps[0] + MICROS]
        # The rate in the first second, never more in any second, as on a single Redis.
        assert len(first_second) == rate, number
        assert max_in_any_window(stamps) <= rate, number
    assert on_cluster == on_plain


def test_a_send_stop_mark_refuses_permits_of_its_number_and_no_other_send(
    on_cluster: PrivateCluster,
) -> None:
    number = NUMBERS[0]
    stopped, running = str(uuid.uuid4()), str(uuid.uuid4())
    limiter = get_rate_limiter()
    assert limiter.rate_keys(number) == [f"mindo:rate:{{{number}}}"]  # no legacy key on a cluster

    assert send_stop_mark(stopped, number, why="paused")
    assert send_stop_is_set(stopped, number)
    with pytest.raises(LimiterStopped):
        limiter.acquire(number, 10, 1, stop_keys=send_stop_keys(stopped, number))
    assert limiter.acquire(number, 10, 1, stop_keys=send_stop_keys(running, number)).granted == 1

    send_stop_clear(stopped, number)
    assert not send_stop_is_set(stopped, number)
    # No longer refused: at most waits for the number's next permit, a tenth of a second apart.
    grant = limiter.acquire(number, 10, 1, stop_keys=send_stop_keys(stopped, number))
    assert grant.granted == 1 or 0 < grant.retry_after <= 0.1


def test_liveness_marks_and_throttling_counts_live_on_the_cluster(
    on_cluster: PrivateCluster,
) -> None:
    send = str(uuid.uuid4())
    assert drain_alive_mark(send)
    assert drain_is_alive(send)
    drain_alive_clear(send)
    assert not drain_is_alive(send)

    key = throttling.throttle_key(throttling.READ_SCOPE, 1, int(uuid.uuid4().int % 10**9))
    assert [throttling._count(key, 60) for _ in range(3)] == [1, 2, 3]
    client = on_cluster.client()
    assert 0 < int(client.ttl(key)) <= 60
    client.close()


# --- a node restarts -----------------------------------------------------------------------------


def test_the_pacer_waits_for_a_restarted_node_and_takes_its_permit_once_it_is_back(
    on_cluster: PrivateCluster, caplog: pytest.LogCaptureFixture
) -> None:
    number = NUMBERS[1]
    limiter = get_rate_limiter()
    (rate_key,) = limiter.rate_keys(number)
    assert limiter.acquire(number, 10, 1).granted == 1
    owner = on_cluster.client().get_node_from_key(rate_key)
    node = next(node for node in on_cluster.nodes if node.port == owner.port)
    pacer = AsyncPacer(limiter, number, 10, redis_wait=120, stop_keys=send_stop_keys("s", number))

    pacer_waits_through_a_restart(pacer, node, caplog, back=on_cluster.wait_until_served)

    # Restarted empty: the schedule starts afresh, from the permit the pacer just took.
    assert on_cluster.client().exists(rate_key) == 1


# --- a deploy mid-send, on a plain Redis ---------------------------------------------------------


def test_on_a_plain_redis_old_and_new_workers_share_one_schedule_and_every_stop_mark(
    delivery_redis: redis.Redis,
) -> None:
    """Workers of the version before the hash tags (untagged keys) and of this one, side by side
    during a rolling deploy: neither takes a permit the other already took, and each stops on
    the other's mark."""
    _forget_process_clients()
    number, send = f"legacy{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    clock = ManualClock()
    new = RateLimiter(delivery_redis, clock=clock, legacy_keys=True)
    old_rate_key, old_stop_key = f"mindo:rate:{number}", f"bulksend:stopped:{send}"
    try:
        # An old worker took the number's next second (as its script wrote it: untagged).
        delivery_redis.set(old_rate_key, f"{clock.micros + MICROS:.3f}")
        assert new.acquire(number, 10, 1).granted == 0
        clock.advance(1)
        assert new.acquire(number, 10, 1).granted == 1
        # ... and the new worker's permit is in the untagged key too, for the old workers.
        assert float(delivery_redis.get(old_rate_key) or 0) > clock.micros

        # An old web server paused the send: only the untagged mark.
        delivery_redis.set(old_stop_key, "paused")
        assert send_stop_is_set(send, number)
        with pytest.raises(LimiterStopped):
            new.acquire(number, 10, 1, stop_keys=send_stop_keys(send, number))
        delivery_redis.delete(old_stop_key)

        # A new web server's mark is also the untagged one an old worker reads.
        assert send_stop_mark(send, number, why="paused")
        assert delivery_redis.get(old_stop_key) == b"paused"
        send_stop_clear(send, number)
        assert not delivery_redis.exists(old_stop_key, *send_stop_keys(send, number))
    finally:
        delivery_redis.delete(old_rate_key, old_stop_key, *new.rate_keys(number))


def test_the_service_refuses_a_cluster_without_a_broker_of_its_own() -> None:
    # Empty, as a copied .env may leave it: the broker would follow REDIS_URL to the cluster.
    env = {**os.environ, "CELERY_BROKER_URL": "", "REDIS_CLUSTER": "true"}
    env["REDIS_URL"] = "redis://127.0.0.1:7000"
    run = subprocess.run(
        [sys.executable, "-c", "import mindo.settings"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert run.returncode != 0
    assert "REDIS_CLUSTER needs CELERY_BROKER_URL" in run.stderr


def test_a_process_that_starts_while_the_cluster_is_away_waits_for_it_like_any_outage(
    on_cluster: PrivateCluster,
) -> None:
    """The process's clients are made on their first command: made while no node answers, the
    limiter gives up only past its bound (LimiterUnavailable, as for a Redis that went away), the
    marks count as absent, throttling lets requests through, and all work once the nodes are
    back."""
    number, send = NUMBERS[2], str(uuid.uuid4())
    on_cluster.stop()
    _forget_process_clients()
    limiter = get_rate_limiter()
    pacer = AsyncPacer(limiter, number, 10, redis_wait=0.3)

    assert isinstance(run_catching(pacer.wait()), LimiterUnavailable)
    assert not drain_alive_mark(send)
    assert not drain_is_alive(send)
    assert not send_stop_mark(send, number, why="paused")

    for node in on_cluster.nodes:
        node.start()
    on_cluster.wait_until_served()

    assert run_catching(pacer.wait()) is None
    assert drain_alive_mark(send)
    assert drain_is_alive(send)


def test_readiness_asks_the_cluster(on_cluster: PrivateCluster) -> None:
    assert redis_check()
    on_cluster.nodes[0].stop()

    assert not redis_check()  # a primary is away: its slots are not served
