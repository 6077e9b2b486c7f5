"""A client controls a send through the API: cancel, pause and resume (POST bulk-sends/{id}/...),
each answering the send's status body; the admin's actions call the same lifecycle functions.

What a worker in the middle of a batch does meanwhile is in tests/test_control_workers.py."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis
from django.contrib.auth.models import User
from django.test import Client

from bulksend import stopping
from bulksend.drain import bulk_send_drain
from bulksend.lifecycle import PAUSED_REASON, bulk_send_halt
from bulksend.models import BulkSend, BulkSendStatus
from bulksend.quota import queued_ahead
from bulksend.stopping import send_stop_keys
from callbacks.models import CallbackEvent, WebhookEndpoint
from callbacks.signing import secret_generate
from messaging.models import Message, MessageStatus
from messaging.ratelimit import LimiterStopped, RateLimiter
from meta_sandbox.server import SandboxThread
from mindo.models import ApiKeyScope
from templates_app.models import TemplateStatus
from tests.conftest import Tenant
from tests.delivery_support import (
    QUEUE_KEY,
    assert_counters_exact,
    delivery_redis_fixture,  # noqa: F401  (fixtures)
    drain_to_completion,
    queued_drains,
    received,
    sandbox_fixture,  # noqa: F401
    send_bulk,
    welcome_recipients,
)
from tests.test_lifecycle import CHANGELIST, make_halted_send, make_send

pytestmark = pytest.mark.usefixtures("delivery_redis")

DETAIL_URL = "/api/v1/meta-templates/bulk-sends/{}/"
CONTROL_URL = "/api/v1/meta-templates/bulk-sends/{}/{}/"


def control(tenant: Tenant, bulk_send_id: object, action: str) -> Any:
    return tenant.client.post(CONTROL_URL.format(bulk_send_id, action))


def detail(tenant: Tenant, bulk_send_id: object) -> dict[str, Any]:
    response = tenant.client.get(DETAIL_URL.format(bulk_send_id))
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def ok(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.content
    body: dict[str, Any] = response.json()
    return body


def fresh(bulk_send: BulkSend) -> BulkSend:
    return BulkSend.objects.get(pk=bulk_send.pk)


def stop_keys(bulk_send: BulkSend) -> tuple[str, ...]:
    return send_stop_keys(bulk_send.pk, bulk_send.phone_number.phone_number_id)


# --- cancel --------------------------------------------------------------------------------------


def test_cancel_cancels_what_is_pending_and_answers_the_status_body(
    tenant: Tenant, delivery_redis: redis.Redis
) -> None:
    bulk_send = make_send(tenant, {"pending": 3, "sent": 2, "failed": 1})

    body = ok(control(tenant, bulk_send.pk, "cancel"))

    assert body == detail(tenant, bulk_send.pk)
    assert (body["status"], body["status_reason"]) == ("CANCELLED", "Cancelled by an operator.")
    assert (body["pending_count"], body["sent_count"], body["failed_count"]) == (0, 2, 1)
    assert body["completed_at"] is not None
    assert assert_counters_exact(fresh(bulk_send))["cancelled_count"] == 3
    # The workers in the middle of a batch of it stop before their next request.
    assert delivery_redis.exists(*stop_keys(bulk_send)) == len(stop_keys(bulk_send))


def test_cancelling_twice_answers_the_same_as_once(tenant: Tenant) -> None:
    bulk_send = make_send(tenant, {"pending": 2}, status=BulkSendStatus.QUEUED)

    first = ok(control(tenant, bulk_send.pk, "cancel"))
    again = ok(control(tenant, bulk_send.pk, "cancel"))

    assert again == first
    assert assert_counters_exact(fresh(bulk_send))["cancelled_count"] == 2


@pytest.mark.parametrize(
    "status", [BulkSendStatus.COMPLETED, BulkSendStatus.PARTIAL, BulkSendStatus.FAILED]
)
def test_cancelling_a_finished_send_is_a_conflict(tenant: Tenant, status: str) -> None:
    bulk_send = make_send(tenant, {"sent": 1, "failed": 1}, status=status)
    BulkSend.objects.filter(pk=bulk_send.pk).update(completed_at=bulk_send.created_at)

    response = control(tenant, bulk_send.pk, "cancel")

    assert response.status_code == 409
    assert response.json() == {"error": f"El envio ya finalizo ({status}) y no se puede cancelar"}
    assert fresh(bulk_send).status == status


def test_a_send_with_a_message_in_flight_is_cancelled_and_that_message_settles_as_meta_says(
    tenant: Tenant,
) -> None:
    # A message a drain that died handed over: no drain holds the send (no mark in Redis), so the
    # cancel does not wait for its lease; Meta's answer settles it later.
    bulk_send = make_send(tenant, {"pending": 2, "sending": 1})

    body = ok(control(tenant, bulk_send.pk, "cancel"))

    assert (body["status"], body["pending_count"]) == ("CANCELLED", 1)
    in_flight = Message.objects.get(bulk_send=bulk_send, status=MessageStatus.SENDING)
    assert in_flight.lease_expires_at is not None
    assert assert_counters_exact(fresh(bulk_send))["cancelled_count"] == 2


# --- pause and resume ----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [BulkSendStatus.QUEUED, BulkSendStatus.PROCESSING])
def test_a_paused_send_keeps_its_status_and_its_pending_messages(
    tenant: Tenant, delivery_redis: redis.Redis, status: str
) -> None:
    bulk_send = make_send(tenant, {"pending": 3, "sent": 1}, status=status)

    body = ok(control(tenant, bulk_send.pk, "pause"))

    assert body == detail(tenant, bulk_send.pk)
    assert (body["status"], body["status_reason"]) == (status, PAUSED_REASON)
    assert body["paused_at"] is not None
    assert body["pending_count"] == 3
    assert delivery_redis.exists(*stop_keys(bulk_send)) == len(stop_keys(bulk_send))
    # Pausing again changes nothing, not even the moment.
    assert ok(control(tenant, bulk_send.pk, "pause")) == body
    assert assert_counters_exact(fresh(bulk_send))["pending_count"] == 3


def test_resuming_a_paused_send_clears_the_pause_and_wakes_the_workers(
    tenant: Tenant,
    delivery_redis: redis.Redis,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    delivery_redis.delete(QUEUE_KEY)
    bulk_send = make_send(tenant, {"pending": 3})
    ok(control(tenant, bulk_send.pk, "pause"))

    with django_capture_on_commit_callbacks(execute=True):
        body = ok(control(tenant, bulk_send.pk, "resume"))

    assert body["status"] == "PROCESSING"
    assert "paused_at" not in body
    assert "status_reason" not in body
    assert not delivery_redis.exists(*stop_keys(bulk_send))
    assert queued_drains(delivery_redis) == [str(bulk_send.pk)]
    # Resuming a running send answers the same, and wakes nobody.
    delivery_redis.delete(QUEUE_KEY)
    with django_capture_on_commit_callbacks(execute=True):
        assert ok(control(tenant, bulk_send.pk, "resume")) == body
    assert queued_drains(delivery_redis) == []


@pytest.mark.parametrize("action", ["pause", "resume"])
def test_pausing_or_resuming_a_finished_or_cancelled_send_is_a_conflict(
    tenant: Tenant, action: str
) -> None:
    finished = make_send(tenant, {"sent": 1}, status=BulkSendStatus.COMPLETED)
    BulkSend.objects.filter(pk=finished.pk).update(completed_at=finished.created_at)
    cancelled = make_send(tenant, {"pending": 1})
    ok(control(tenant, cancelled.pk, "cancel"))
    verb = {"pause": "pausar", "resume": "reanudar"}[action]

    refused_finished = control(tenant, finished.pk, action)
    refused_cancelled = control(tenant, cancelled.pk, action)

    assert (refused_finished.status_code, refused_cancelled.status_code) == (409, 409)
    assert refused_finished.json() == {
        "error": f"El envio ya finalizo (COMPLETED) y no se puede {verb}"
    }
    assert refused_cancelled.json() == {"error": f"El envio fue cancelado y no se puede {verb}"}


def test_a_paused_send_can_be_cancelled(tenant: Tenant) -> None:
    bulk_send = make_send(tenant, {"pending": 2, "sent": 1})
    ok(control(tenant, bulk_send.pk, "pause"))

    body = ok(control(tenant, bulk_send.pk, "cancel"))

    assert body["status"] == "CANCELLED"
    assert "paused_at" not in body
    assert assert_counters_exact(fresh(bulk_send))["cancelled_count"] == 2


def test_resume_restarts_a_send_meta_halted_once_the_cause_is_fixed(
    tenant: Tenant,
    delivery_redis: redis.Redis,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    delivery_redis.delete(QUEUE_KEY)
    bulk_send = make_halted_send(tenant, sent=1)
    tenant.template.status = TemplateStatus.PAUSED
    tenant.template.save()

    refused = control(tenant, bulk_send.pk, "resume")

    assert refused.status_code == 409
    assert refused.json() == {
        "error": "Meta still has the template welcome_message (es) PAUSED: resume once it is "
        "approved again."
    }
    assert fresh(bulk_send).halted_at is not None
    # Pausing a halted send is refused too: it is not sending.
    assert control(tenant, bulk_send.pk, "pause").status_code == 409

    tenant.template.status = TemplateStatus.APPROVED
    tenant.template.save()
    with django_capture_on_commit_callbacks(execute=True):
        body = ok(control(tenant, bulk_send.pk, "resume"))

    assert (body["status"], body["pending_count"]) == ("PROCESSING", 3)
    assert "status_reason" not in body
    assert queued_drains(delivery_redis) == [str(bulk_send.pk)]
    delivery_redis.delete(QUEUE_KEY)


def test_resume_refuses_while_redis_cannot_clear_the_stop_mark(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    bulk_send = make_send(tenant, {"pending": 2})
    ok(control(tenant, bulk_send.pk, "pause"))
    away = redis.Redis(port=1, socket_connect_timeout=0.2, socket_timeout=0.2)
    monkeypatch.setattr(stopping, "redis_client", lambda: away)

    response = control(tenant, bulk_send.pk, "resume")

    assert response.status_code == 503
    assert response.json() == {
        "error": "Servicio no disponible temporalmente. Intente nuevamente en unos segundos."
    }
    assert fresh(bulk_send).paused_at is not None


def test_pause_with_redis_away_still_holds_the_send(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The mark cannot be set: the database says paused, which every drain reads before a batch.
    bulk_send = make_send(tenant, {"pending": 2})
    away = redis.Redis(port=1, socket_connect_timeout=0.2, socket_timeout=0.2)
    monkeypatch.setattr(stopping, "redis_client", lambda: away)

    body = ok(control(tenant, bulk_send.pk, "pause"))

    assert body["status_reason"] == PAUSED_REASON
    assert fresh(bulk_send).paused_at is not None


# --- who may, and the events --------------------------------------------------------------------


@pytest.mark.parametrize("action", ["cancel", "pause", "resume"])
def test_another_organizations_send_or_an_unknown_one_is_not_found(
    tenant: Tenant, other_tenant: Tenant, action: str
) -> None:
    theirs = make_send(other_tenant, {"pending": 1})

    for bulk_send_id in (theirs.pk, uuid.uuid4(), "not-an-id"):
        response = control(tenant, bulk_send_id, action)
        assert response.status_code == 404, (bulk_send_id, response.content)

    assert fresh(theirs).status == BulkSendStatus.PROCESSING
    assert fresh(theirs).paused_at is None


def test_a_key_without_the_send_scope_may_not_control_a_send(tenant: Tenant) -> None:
    tenant.api_key.scopes = [ApiKeyScope.READ]
    tenant.api_key.save()
    bulk_send = make_send(tenant, {"pending": 1})

    for action in ("cancel", "pause", "resume"):
        assert control(tenant, bulk_send.pk, action).status_code == 403

    assert fresh(bulk_send).status == BulkSendStatus.PROCESSING


def test_each_change_reaches_the_customer_as_a_bulk_send_status_event(tenant: Tenant) -> None:
    WebhookEndpoint.objects.create(
        organization=tenant.organization,
        url="http://127.0.0.1:9899/hook",
        events=["bulk_send.status"],
        secret=secret_generate(),
    )
    bulk_send = make_send(tenant, {"pending": 2})

    for action in ("pause", "pause", "resume", "resume", "cancel", "cancel"):
        ok(control(tenant, bulk_send.pk, action))

    events = CallbackEvent.objects.filter(type="bulk_send.status").order_by("created_at", "id")
    bodies = [(e.body["status"], e.body["status_reason"]) for e in events]
    # Once per change, none for the repeated calls.
    assert sorted(bodies) == sorted(
        [
            ("PROCESSING", PAUSED_REASON),
            ("PROCESSING", ""),
            ("CANCELLED", "Cancelled by an operator."),
        ]
    )


def test_a_paused_send_does_not_hold_the_estimate_of_the_sends_after_it(tenant: Tenant) -> None:
    earlier = make_send(tenant, {"pending": 5})
    later = make_send(tenant, {"pending": 1})
    assert queued_ahead(later) == 5

    ok(control(tenant, earlier.pk, "pause"))

    assert queued_ahead(fresh(later)) == 0


# --- drains and the admin -----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_no_drain_sends_for_a_paused_send_until_it_is_resumed(
    tenant: Tenant, sandbox: SandboxThread
) -> None:
    accepted = send_bulk(tenant, welcome_recipients(5))
    bulk_send_id = accepted["bulk_send_id"]
    ok(control(tenant, bulk_send_id, "pause"))

    report = bulk_send_drain(uuid.UUID(bulk_send_id))

    assert (report.batches, report.next_wake_at) == (0, None)
    assert received(sandbox).messages == []
    paused = BulkSend.objects.get(pk=bulk_send_id)
    assert (paused.status, paused.pending_count) == (BulkSendStatus.QUEUED, 5)

    ok(control(tenant, bulk_send_id, "resume"))
    finished = drain_to_completion(bulk_send_id)

    assert finished.status == BulkSendStatus.COMPLETED
    assert len(received(sandbox).messages) == 5
    assert assert_counters_exact(finished)["sent_count"] == 5


def test_the_limiter_refuses_permits_while_the_stop_key_is_set(
    delivery_redis: redis.Redis,
) -> None:
    limiter = RateLimiter(delivery_redis, prefix="test:control:")
    stop_key = "test:control:stopped"
    (number_key,) = limiter.rate_keys("number")
    delivery_redis.delete(stop_key, number_key)
    delivery_redis.set(stop_key, "paused")

    with pytest.raises(LimiterStopped):
        limiter.acquire("number", 10, 5, stop_keys=[stop_key])
    # Refused permits took nothing from the number's schedule.
    assert not delivery_redis.exists(number_key)

    delivery_redis.delete(stop_key)
    assert limiter.acquire("number", 10, 1, stop_keys=[stop_key]).granted == 1
    delivery_redis.delete(number_key)


def run_action(action: str, *sends: BulkSend) -> str:
    operator = Client()
    user = User.objects.filter(username="ops").first()
    operator.force_login(user or User.objects.create_superuser("ops", "ops@example.com", "x"))
    response = operator.post(
        CHANGELIST,
        {"action": action, "_selected_action": [str(send.pk) for send in sends]},
        follow=True,
    )
    assert response.status_code == 200
    return response.content.decode()


def test_an_operator_pauses_and_resumes_sends_from_the_admin(
    tenant: Tenant,
    delivery_redis: redis.Redis,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    running = make_send(tenant, {"pending": 2})
    finished = make_send(tenant, {"sent": 1}, status=BulkSendStatus.COMPLETED)
    BulkSend.objects.filter(pk=finished.pk).update(completed_at=finished.created_at)

    text = run_action("pause_sends", running, finished)

    assert "Paused 1 sends." in text
    assert f"Not paused {finished.pk}: El envio ya finalizo (COMPLETED)" in text
    assert fresh(running).paused_at is not None

    delivery_redis.delete(QUEUE_KEY)
    with django_capture_on_commit_callbacks(execute=True):
        text = run_action("resume_sends", running)

    assert "Resumed 1 sends." in text
    assert fresh(running).paused_at is None
    assert queued_drains(delivery_redis) == [str(running.pk)]
    delivery_redis.delete(QUEUE_KEY)


def test_a_send_halted_while_paused_resumes_from_both(tenant: Tenant) -> None:
    bulk_send = make_send(tenant, {"pending": 2, "sent": 1})
    ok(control(tenant, bulk_send.pk, "pause"))
    assert bulk_send_halt(bulk_send.pk, code="190", text="Invalid OAuth access token")

    body = ok(control(tenant, bulk_send.pk, "resume"))

    assert body["status"] == "PROCESSING"
    assert "paused_at" not in body
    assert "status_reason" not in body
