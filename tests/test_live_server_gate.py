"""The live server's gate: a test can know that the webhook's after-answer work is done."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import requests

from messaging.models import MessageStatus
from tests import meta_payloads as meta
from tests.conftest import Tenant
from tests.live_server_gate import live_server_gate
from webhooks import views

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_server_is_idle_only_once_the_after_answer_applier_is_done(
    tenant: Tenant, live_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    bulk_send, [message] = meta.send_with_messages(tenant.number, tenant.template, 1)
    assert message.wamid is not None
    answered = threading.Event()
    apply = views.webhook_events_apply_pending

    def apply_once_the_client_has_its_answer() -> int:
        # A busy machine: the applier runs only after the client has gone on.
        answered.wait(timeout=60)
        return apply()

    monkeypatch.setattr(views, "webhook_events_apply_pending", apply_once_the_client_has_its_answer)
    body = meta.encode(meta.statuses_notification(meta.status(message.wamid, "read", meta.T0 + 5)))

    response = requests.post(
        f"{live_server.url}{meta.WEBHOOK_PATH}",
        data=body,
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": meta.signature(body)},
        timeout=60,
    )
    message.refresh_from_db()
    still_sent = message.status
    answered.set()
    live_server_gate(live_server).wait_until_idle()
    message.refresh_from_db()

    assert response.status_code == 200
    assert still_sent == MessageStatus.SENT
    assert message.status == MessageStatus.READ
    assert meta.assert_counters_exact(bulk_send)["read_count"] == 1


def test_a_closed_gate_answers_503_without_touching_the_database(live_server: Any) -> None:
    gate = live_server_gate(live_server)
    gate.wait_until_idle(close=True)
    try:
        response = requests.post(f"{live_server.url}{meta.WEBHOOK_PATH}", data=b"{}", timeout=60)
    finally:
        gate.open()

    assert (response.status_code, response.json()) == (503, {"error": "The test is over"})
