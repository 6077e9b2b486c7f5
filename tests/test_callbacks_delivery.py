"""Delivering the outbox to a real receiver: signatures, retries after 500s, timeouts and refused
connections, failures at once, giving up and disabling, batches, rotation and replay.

Each run is `callbacks_deliver` in this process against a receiver thread; retries come due at
once (a backoff base of a millisecond), so the tests wait for outcomes, never for time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

import pytest
from django.test import override_settings
from django.utils import timezone

from callbacks.delivery import callbacks_deliver
from callbacks.endpoints import endpoint_rotate_secret, endpoint_test_event
from callbacks.models import CallbackEvent, DeliveryAttempt, WebhookEndpoint
from callbacks.signing import secret_generate
from tests.callback_receiver import CallbackReceiver
from tests.conftest import Tenant
from tests.delivery_support import wait_for

FAST_RETRIES = {"CALLBACKS_RETRY_BASE_SECONDS": 0.001, "CALLBACKS_RETRY_MAX_SECONDS": 0.001}


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    started = CallbackReceiver().start()
    yield started
    started.stop()


@pytest.fixture(autouse=True)
def fast_retries() -> Iterator[None]:
    with override_settings(**FAST_RETRIES):
        yield


def endpoint_for(
    tenant: Tenant, receiver: CallbackReceiver, *, batch: bool = False, url: str | None = None
) -> WebhookEndpoint:
    endpoint = WebhookEndpoint.objects.create(
        organization=tenant.organization,
        url=url or receiver.url,
        events=["message.status"],
        batch_events=batch,
        secret=secret_generate(),
    )
    receiver.secrets = [endpoint.secret]
    return endpoint


def queue_test_event(tenant: Tenant, endpoint: WebhookEndpoint) -> CallbackEvent:
    return endpoint_test_event(organization=tenant.organization, endpoint_id=str(endpoint.pk))


def deliver_until(condition: object, *, what: str) -> None:
    def delivered() -> bool:
        callbacks_deliver(budget_seconds=0)
        return bool(condition())  # type: ignore[operator]

    wait_for(delivered, timeout=60, interval=0.01, what=what)


def test_it_delivers_a_signed_event_and_logs_the_attempt(
    tenant: Tenant, receiver: CallbackReceiver
) -> None:
    endpoint = endpoint_for(tenant, receiver)
    event = queue_test_event(tenant, endpoint)

    report = callbacks_deliver(budget_seconds=0)

    assert report.delivered == 1
    [received] = receiver.events()
    assert received["id"] == str(event.pk)
    assert received["type"] == "endpoint.test"
    assert received["data"]["endpoint_id"] == str(endpoint.pk)
    assert received["created_at"]
    assert receiver.bad_signatures == 0
    event.refresh_from_db()
    assert event.delivered_at is not None
    assert event.attempts == 1
    [attempt] = DeliveryAttempt.objects.filter(endpoint=endpoint)
    assert (attempt.status_code, attempt.outcome) == (200, "delivered")
    assert attempt.response_excerpt == '{"ok":true}'
    assert attempt.event_ids == [event.pk]


def test_it_retries_after_500s_until_a_2xx(tenant: Tenant, receiver: CallbackReceiver) -> None:
    endpoint = endpoint_for(tenant, receiver)
    event = queue_test_event(tenant, endpoint)
    receiver.answers = deque([500, 503])

    deliver_until(lambda: receiver.events(), what="the event after two 5xx")

    event.refresh_from_db()
    assert event.delivered_at is not None
    assert event.attempts == 3
    log = DeliveryAttempt.objects.filter(endpoint=endpoint).order_by("id")
    assert [attempt.status_code for attempt in log] == [500, 503, 200]
    assert receiver.ids() == [str(event.pk)]


def test_it_retries_a_timeout_and_the_receiver_sees_the_same_id_again(
    tenant: Tenant, receiver: CallbackReceiver
) -> None:
    endpoint = endpoint_for(tenant, receiver)
    event = queue_test_event(tenant, endpoint)
    receiver.delay = 1.0

    with override_settings(CALLBACKS_TIMEOUT_SECONDS=0.2):
        report = callbacks_deliver(budget_seconds=0)
    assert report.retried == 1
    receiver.delay = 0
    deliver_until(lambda: CallbackEvent.objects.get(pk=event.pk).delivered_at, what="delivery")

    first = DeliveryAttempt.objects.filter(endpoint=endpoint).order_by("id").first()
    assert first is not None
    assert first.status_code is None
    assert "Timed out" in first.error
    # The slow answer may have been recorded too: a duplicate, with the same id.
    assert set(receiver.ids()) == {str(event.pk)}


def test_a_receiver_down_then_up_gets_every_event(
    tenant: Tenant, receiver: CallbackReceiver
) -> None:
    endpoint = endpoint_for(tenant, receiver)
    events = [queue_test_event(tenant, endpoint) for _ in range(5)]
    receiver.stop()

    report = callbacks_deliver(budget_seconds=0)

    assert report.delivered == 0
    assert CallbackEvent.objects.filter(delivered_at__isnull=True, failed_at=None).count() == 5
    refused = DeliveryAttempt.objects.filter(endpoint=endpoint)
    # The first refused connection stops the round for this endpoint: the others wait.
    assert refused.count() >= 1
    assert all("Connect" in attempt.error for attempt in refused)
    endpoint.refresh_from_db()
    assert endpoint.failing_since is not None
    receiver.start()
    deliver_until(lambda: len(set(receiver.ids())) == 5, what="five events once up")

    assert set(receiver.ids()) == {str(event.pk) for event in events}
    endpoint.refresh_from_db()
    assert endpoint.failing_since is None


@pytest.mark.parametrize("status_code", [400, 404, 410, 302])
def test_a_refusal_fails_the_event_at_once(
    tenant: Tenant, receiver: CallbackReceiver, status_code: int
) -> None:
    endpoint = endpoint_for(tenant, receiver)
    event = queue_test_event(tenant, endpoint)
    receiver.answers = deque([status_code])

    callbacks_deliver(budget_seconds=0)
    callbacks_deliver(budget_seconds=0)

    event.refresh_from_db()
    assert event.failed_at is not None
    assert event.attempts == 1
    assert event.last_error == f"HTTP {status_code}"
    assert receiver.requests == 1


@pytest.mark.parametrize("status_code", [408, 429])
def test_408_and_429_are_retried(
    tenant: Tenant, receiver: CallbackReceiver, status_code: int
) -> None:
    endpoint = endpoint_for(tenant, receiver)
    queue_test_event(tenant, endpoint)
    receiver.answers = deque([status_code])

    deliver_until(lambda: receiver.events(), what="the event after a retry")

    assert receiver.requests == 2


def test_after_the_retry_window_the_event_fails_and_the_endpoint_is_disabled(
    tenant: Tenant, receiver: CallbackReceiver
) -> None:
    endpoint = endpoint_for(tenant, receiver)
    event = queue_test_event(tenant, endpoint)
    receiver.answers = deque([500])

    with override_settings(CALLBACKS_RETRY_FOR_SECONDS=0):
        callbacks_deliver(budget_seconds=0)

    event.refresh_from_db()
    assert event.failed_at is not None
    assert event.last_error.startswith("Gave up after retrying: HTTP 500")
    endpoint.refresh_from_db()
    assert endpoint.enabled is False
    assert "every delivery failed since" in endpoint.disabled_reason
    assert "HTTP 500" in endpoint.disabled_reason
    # A disabled endpoint gets nothing more until an operator enables it.
    queue_test_event(tenant, endpoint)
    assert callbacks_deliver(budget_seconds=0).posts == 0


def test_an_endpoint_that_opted_in_gets_batches(tenant: Tenant, receiver: CallbackReceiver) -> None:
    endpoint = endpoint_for(tenant, receiver, batch=True)
    events = [queue_test_event(tenant, endpoint) for _ in range(7)]

    with override_settings(CALLBACKS_BATCH_SIZE=5):
        callbacks_deliver(budget_seconds=0)

    assert receiver.requests == 2
    assert {item.batch for item in receiver.received} == {True}
    assert sorted(receiver.ids()) == sorted(str(event.pk) for event in events)
    sizes = sorted(len(a.event_ids) for a in DeliveryAttempt.objects.filter(endpoint=endpoint))
    assert sizes == [2, 5]


def test_during_a_rotation_both_secrets_verify(tenant: Tenant, receiver: CallbackReceiver) -> None:
    endpoint = endpoint_for(tenant, receiver)
    old_secret = endpoint.secret
    rotated = endpoint_rotate_secret(organization=tenant.organization, endpoint_id=str(endpoint.pk))
    queue_test_event(tenant, endpoint)

    receiver.secrets = [old_secret]  # a receiver that has not switched yet
    callbacks_deliver(budget_seconds=0)
    receiver.secrets = [rotated.secret]  # and one that has
    queue_test_event(tenant, endpoint)
    callbacks_deliver(budget_seconds=0)

    assert receiver.bad_signatures == 0
    assert len(receiver.events()) == 2
    assert all(item.signature.count("v1=") == 2 for item in receiver.received)


def test_a_failed_event_is_replayed_with_its_id(tenant: Tenant, receiver: CallbackReceiver) -> None:
    endpoint = endpoint_for(tenant, receiver)
    event = queue_test_event(tenant, endpoint)
    receiver.answers = deque([410])
    callbacks_deliver(budget_seconds=0)

    response = tenant.client.post(
        f"/api/v1/webhook-endpoints/{endpoint.pk}/replay/",
        {"since": (timezone.now() - timezone.timedelta(hours=1)).isoformat()},
        format="json",
    )
    assert response.json() == {"replayed": 1}
    callbacks_deliver(budget_seconds=0)

    assert receiver.ids() == [str(event.pk)]


def test_a_dead_endpoint_does_not_hold_back_another(
    tenant: Tenant, other_tenant: Tenant, receiver: CallbackReceiver
) -> None:
    dead = CallbackReceiver().start()
    dead_endpoint = endpoint_for(other_tenant, dead)
    dead.stop()
    endpoint = endpoint_for(tenant, receiver)
    for _ in range(3):
        queue_test_event(other_tenant, dead_endpoint)
        queue_test_event(tenant, endpoint)

    report = callbacks_deliver(budget_seconds=0)

    assert report.delivered == 3
    assert len(receiver.events()) == 3
    assert CallbackEvent.objects.filter(endpoint=dead_endpoint, delivered_at=None).count() == 3
