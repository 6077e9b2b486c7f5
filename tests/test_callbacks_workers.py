"""A real Celery worker of the `callbacks` queue killed mid-delivery loses no event: another
worker delivers every one at least once, and what a receiver gets twice is the same event (the
same `id`, the same body).

The receiver holds the requests open once their events are recorded, so the kill lands while
the worker waits for its answers (no sleep decides it); the events it had claimed come due again
when their lease ends, and the new worker posts them again. The test plays beat: it publishes a
delivery run whenever the queue is empty.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import redis
from django.test import Client

from callbacks.models import CallbackEvent, WebhookEndpoint
from callbacks.signing import secret_generate
from callbacks.tasks import QUEUE, deliver_callbacks
from tests import meta_payloads as meta
from tests.callback_receiver import CallbackReceiver
from tests.conftest import Tenant
from tests.delivery_support import (
    delivery_redis_fixture,  # noqa: F401  (fixtures)
    process_env,
    wait_for,
)
from tests.test_drain_workers import CeleryWorker

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

EVENTS = 12
LEASE_SECONDS = 2
# Longer than the test: the doomed worker must still be waiting for its answers when killed.
DOOMED_TIMEOUT_SECONDS = 600
# What a killed worker leaves in the broker: the queue and its unacknowledged task.
BROKER_KEYS = (QUEUE, "unacked", "unacked_index", "unacked_mutex")


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    started = CallbackReceiver().start()
    yield started
    started.stop()


@pytest.fixture
def workers(delivery_redis: redis.Redis, tmp_path: Path) -> Iterator[list[CeleryWorker]]:
    """Workers started by the test; all killed at the end, and the broker emptied."""
    delivery_redis.delete(*BROKER_KEYS)
    started: list[CeleryWorker] = []
    try:
        yield started
    finally:
        for worker in started:
            worker.kill()
        delivery_redis.delete(*BROKER_KEYS)


def start(name: str, tmp_path: Path, workers: list[CeleryWorker], **env: str) -> CeleryWorker:
    worker = CeleryWorker(
        name,
        {
            **process_env(),
            "CELERY_TASK_ALWAYS_EAGER": "false",
            "CALLBACKS_LEASE_SECONDS": str(LEASE_SECONDS),
            "CALLBACKS_POLL_SECONDS": "3600",  # no beat here: the test publishes the runs
            **env,
        },
        tmp_path,
        queue=QUEUE,
    )
    workers.append(worker)
    worker.wait_ready()
    return worker


def beat(client: redis.Redis) -> None:
    """A delivery run on the queue, unless one is waiting there already."""
    if not client.llen(QUEUE):
        deliver_callbacks.apply_async()


def test_a_worker_killed_mid_delivery_loses_no_event_and_repeats_only_the_same_ids(
    tenant: Tenant,
    receiver: CallbackReceiver,
    delivery_redis: redis.Redis,
    workers: list[CeleryWorker],
    tmp_path: Path,
) -> None:
    endpoint = WebhookEndpoint.objects.create(
        organization=tenant.organization,
        url=receiver.url,
        events=["message.status"],
        secret=secret_generate(),
    )
    receiver.secrets.append(endpoint.secret)
    _, messages = meta.send_with_messages(tenant.number, tenant.template, EVENTS)
    document = meta.statuses_notification(
        *(meta.status(m.wamid or "", "delivered", meta.T0 + 10) for m in messages)
    )
    assert meta.post(Client(), document).status_code == 200
    outbox = {str(pk) for pk in CallbackEvent.objects.values_list("pk", flat=True)}
    assert len(outbox) == EVENTS

    receiver.hold()
    doomed = start(
        "doomed", tmp_path, workers, CALLBACKS_TIMEOUT_SECONDS=str(DOOMED_TIMEOUT_SECONDS)
    )
    beat(delivery_redis)
    wait_for(receiver.arrived.is_set, timeout=120, what="the doomed worker's first request")
    doomed.kill()
    held = set(receiver.ids())
    assert held, "the kill landed before any request"
    # Killed mid-request: nothing it posted was settled.
    assert not CallbackEvent.objects.filter(delivered_at__isnull=False).exists()
    receiver.release()

    start("survivor", tmp_path, workers)

    def all_delivered() -> bool:
        beat(delivery_redis)
        return not CallbackEvent.objects.filter(delivered_at__isnull=True).exists()

    wait_for(all_delivered, timeout=180, interval=0.2, what="every event delivered")

    received = receiver.events()
    ids = Counter(event["id"] for event in received)
    assert set(ids) == outbox  # each at least once, nothing else
    assert held <= {event_id for event_id, n in ids.items() if n > 1}  # sent again after the kill
    bodies = {event["id"]: orjson.dumps(event) for event in received}
    assert all(orjson.dumps(event) == bodies[event["id"]] for event in received)
    assert receiver.bad_signatures == 0
