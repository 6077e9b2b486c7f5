"""Redis goes away mid-send and comes back: the send finishes soon after, nothing lost or sent
twice.

Real Celery workers and beat run against a Redis of the test's own (broker, limiter and drain
liveness all on it); the test kills that Redis while a drain is pacing a batch, keeps it down for
a while and starts it again, empty, on the same port. Either the drain waits for Redis (the
outage is shorter than DELIVERY_REDIS_WAIT_SECONDS) or it gives back at once what it had not
handed to Meta and ends, and beat's reaper wakes the send when Redis is back. Leases and the grace
are ten minutes here: a send that finishes within the test's deadline did not wait them out.

On Redis Cluster (as deployed at scale) the limiter and the marks are on a cluster of the test's
own and the broker on a plain Redis; the node serving the number's slot is the one killed.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from django.conf import settings

from bulksend.models import BulkSend, BulkSendStatus
from messaging.models import Message
from messaging.ratelimit import RateLimiter
from tests.conftest import Tenant
from tests.delivery_support import (
    QUEUE_KEY,
    SandboxProcess,
    assert_counters_exact,
    delivery_redis_fixture,  # noqa: F401  (fixtures)
    process_env,
    sandbox_process_fixture,  # noqa: F401
    send_bulk,
    wait_for,
    welcome_recipients,
)
from tests.redis_cluster import PrivateCluster, private_cluster_fixture  # noqa: F401
from tests.redis_server import PrivateRedis, private_redis_fixture  # noqa: F401
from tests.test_drain_workers import CeleryWorker, assert_each_sent_exactly_once

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

# Long enough that waiting them out would miss the deadline below by minutes.
LEASE_SECONDS = 600
GRACE_SECONDS = 600
RECIPIENTS = 300
RATE = 50  # six seconds of sending
# How long Redis stays down: the outage the issue was found with, not a wait for work.
OUTAGE_SECONDS = 15.0
# From Redis's return to the end of the send; the send needs about 5 s of it.
FINISH_DEADLINE = 120.0
LOG_TAIL = 3000


class CeleryBeat(CeleryWorker):
    """`celery beat`, its schedule file in the test's directory; watched and killed like a
    worker."""

    ready_line = "beat: Starting..."

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.name = "beat"
        self.log_path = log_dir / "beat.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    *("-m", "celery", "-A", "mindo", "beat"),
                    *("--schedule", str(log_dir / "beat-schedule"), "--loglevel", "INFO"),
                ],
                cwd=settings.BASE_DIR,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )


@pytest.mark.parametrize("redis_wait", ["rides_out", "gives_back"])
def test_a_send_finishes_soon_after_redis_returns_with_nothing_lost_or_sent_twice(
    redis_wait: str,
    tenant: Tenant,
    sandbox_process: SandboxProcess,
    private_redis: PrivateRedis,
    delivery_redis: redis.Redis,
    tmp_path: Path,
) -> None:
    # tests.settings points REDIS_URL and CELERY_BROKER_URL at TEST_REDIS_URL.
    env = {
        "TEST_REDIS_URL": private_redis.url,
        "DELIVERY_REDIS_WAIT_SECONDS": "60" if redis_wait == "rides_out" else "3",
    }
    logs = send_through_an_outage(
        tenant, sandbox_process, delivery_redis, tmp_path, env=env, away=private_redis
    )
    if redis_wait == "gives_back":
        # The drain ended while the broker was away too: its wake-up was lost, not its send.
        assert "Cannot wake send" in logs


def test_a_send_on_redis_cluster_finishes_soon_after_a_node_restarts(
    tenant: Tenant,
    sandbox_process: SandboxProcess,
    private_redis: PrivateRedis,
    private_cluster: PrivateCluster,
    delivery_redis: redis.Redis,
    tmp_path: Path,
) -> None:
    """As deployed at scale: the limiter and the marks on Redis Cluster, the broker on a plain
    Redis of its own; the node that serves the number's slot (its rate key and the send's stop
    mark) is killed mid-send and started again, empty."""
    (rate_key,) = RateLimiter(private_cluster.client()).rate_keys(tenant.number.phone_number_id)
    owner = private_cluster.client().get_node_from_key(rate_key)
    node = next(node for node in private_cluster.nodes if node.port == owner.port)
    env = {
        "TEST_REDIS_URL": private_cluster.url,
        "TEST_CELERY_BROKER_URL": private_redis.url,
        "REDIS_CLUSTER": "true",
        "DELIVERY_REDIS_WAIT_SECONDS": "60",
    }
    send_through_an_outage(
        tenant,
        sandbox_process,
        delivery_redis,
        tmp_path,
        env=env,
        away=node,
        back=private_cluster.wait_until_served,
    )


def send_through_an_outage(
    tenant: Tenant,
    sandbox_process: SandboxProcess,
    delivery_redis: redis.Redis,
    tmp_path: Path,
    *,
    env: dict[str, str],
    away: PrivateRedis,
    back: Callable[[], None] = lambda: None,
) -> str:
    """Workers and beat on `env`'s Redis; `away` is killed while a drain paces the send and
    started again (then `back()`) OUTAGE_SECONDS later; the send must finish with every message
    sent exactly once, on its first attempt. Returns the processes' logs."""
    tenant.number.throughput_per_second = RATE
    tenant.number.save()
    env = {
        **process_env(),
        "META_GRAPH_URL": sandbox_process.url,
        "DELIVERY_PACING": "true",
        "DELIVERY_LEASE_SECONDS": str(LEASE_SECONDS),
        "DELIVERY_CALLBACK_GRACE_SECONDS": str(GRACE_SECONDS),
        "DELIVERY_DRAIN_SECONDS": "10",
        "REAPER_INTERVAL_SECONDS": "1",
        "CELERY_TASK_ALWAYS_EAGER": "false",
        **env,
    }
    workers = [CeleryWorker(name, env, tmp_path) for name in ("first", "second")]
    beat = CeleryBeat(env, tmp_path)

    def logs() -> str:
        return "\n".join([beat.log(), *(worker.log() for worker in workers)])

    def log_tails() -> str:
        """For a failure's message: the end of each process's log."""
        return "\n...\n".join(
            log[-LOG_TAIL:] for log in [beat.log(), *(worker.log() for worker in workers)]
        )

    try:
        for worker in workers:
            worker.wait_ready()
        beat.wait_ready()

        # The API publishes its wake-up on the test's own broker, which these workers do not
        # read: beat's reaper, on the private Redis, finds the send and wakes it.
        accepted = send_bulk(tenant, welcome_recipients(RECIPIENTS))
        delivery_redis.delete(QUEUE_KEY)
        wait_for(
            lambda: sandbox_process.control("stats")["accepted"] >= RATE,
            timeout=60,
            what="the send to be under way",
        )
        away.stop()
        sent_before_the_outage = sandbox_process.control("stats")["accepted"]
        time.sleep(OUTAGE_SECONDS)
        away.start()
        back()
        returned_at = time.monotonic()

        def finished() -> BulkSend | None:
            bulk_send = BulkSend.objects.get(pk=accepted["bulk_send_id"])
            return None if bulk_send.is_active else bulk_send

        try:
            bulk_send = wait_for(
                finished,
                timeout=FINISH_DEADLINE,
                interval=0.2,
                what="the send to finish after Redis came back",
            )
        except AssertionError as error:
            raise AssertionError(f"{error}\n{log_tails()}") from None
        # A figure for the README, not an assertion: it depends on the machine.
        finished_after = time.monotonic() - returned_at
        print(f"\nThe send finished {finished_after:.1f} s after Redis came back")
    finally:
        beat.kill()
        for worker in workers:
            worker.kill()

    assert sent_before_the_outage < RECIPIENTS
    assert bulk_send.status == BulkSendStatus.COMPLETED, log_tails()
    assert_each_sent_exactly_once(sandbox_process, bulk_send)
    counts = assert_counters_exact(bulk_send)
    assert (counts["total_recipients"], counts["sent_count"]) == (RECIPIENTS, RECIPIENTS)
    assert (counts["pending_count"], counts["failed_count"]) == (0, 0)
    # What the drain held when Redis went away was given back untried: every message went out
    # on its first attempt.
    assert set(Message.objects.filter(bulk_send=bulk_send).values_list("attempts", flat=True)) == {
        1
    }
    return logs()
