"""A webhook body that cannot be applied is put aside with its error; the bodies after it go on.

Posted through the WSGI application gunicorn serves (the fast path), outside any test
transaction, so the applier runs as in production: after the answer, a slice per transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from messaging.models import DeferredStatus, MessageStatus
from meta.webhook_payload import TemplateStatusChange
from templates_app import meta_updates
from templates_app.models import PhoneNumber, WhatsAppBusinessAccount
from tests import meta_payloads as meta
from tests.conftest import Tenant
from tests.test_webhook_fast_path import call
from webhooks import processing
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db(transaction=True)


def post(document: Any) -> int:
    body = meta.encode(document)
    status, answer, _log = call(body, meta.signature(body))
    assert status.startswith("200"), answer
    return int(answer["event_id"])


def post_a_normal_status(tenant: Tenant) -> Any:
    _send, (message,) = meta.send_with_messages(tenant.number, tenant.template, 1)
    post(meta.statuses_notification(meta.status(message.wamid, "delivered", meta.T0 + 1)))
    return message


def assert_applied(message: Any) -> None:
    # The backstop beat runs, once: whatever the answering process left is applied now.
    processing.webhook_events_apply_pending(wait=True)
    message.refresh_from_db()
    assert message.status == MessageStatus.DELIVERED
    assert not WebhookEvent.objects.filter(processed_at__isnull=True).exists()


def test_a_tier_no_column_can_hold_changes_nothing_and_the_next_status_applies(
    tenant: Tenant,
) -> None:
    poison = meta.notification(
        meta.entry(
            meta.quality_change(
                "UPGRADE",
                display_phone_number=tenant.number.display_phone_number,
                current_limit="TIER_" + "9" * 40,
                portfolio_limit="9" * 20,
            ),
            waba_id=tenant.account.waba_id,
        )
    )
    number_before = PhoneNumber.objects.get(pk=tenant.number.pk).messaging_limit_tier
    account_before = WhatsAppBusinessAccount.objects.get(pk=tenant.account.pk).messaging_limit_tier
    assert len(meta.encode(poison)) < 400

    poison_id = post(poison)
    message = post_a_normal_status(tenant)

    assert_applied(message)
    assert PhoneNumber.objects.get(pk=tenant.number.pk).messaging_limit_tier == number_before
    account = WhatsAppBusinessAccount.objects.get(pk=tenant.account.pk)
    assert account.messaging_limit_tier == account_before
    assert WebhookEvent.objects.get(pk=poison_id).error == ""


def test_thirty_thousand_statuses_for_unknown_wamids_are_kept_and_the_next_status_applies(
    tenant: Tenant,
) -> None:
    count = 30_000
    statuses = [
        {
            "id": f"wamid.unknown{n}",
            "status": "sent",
            "timestamp": str(meta.T0),
            "recipient_id": "1",
        }
        for n in range(count)
    ]
    big = post(meta.statuses_notification(*statuses))
    message = post_a_normal_status(tenant)

    assert_applied(message)
    event = WebhookEvent.objects.get(pk=big)
    assert (event.error, event.status_events, event.deferred) == ("", count, count)
    assert DeferredStatus.objects.count() == count


@pytest.fixture
def failing_template_update(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A template update that fails inside the database (as a bug or a bad value would), for a
    template called `poison`: the applier must survive what validation did not foresee."""
    real = meta_updates.template_status_update

    def update(change: TemplateStatusChange) -> int:
        if change.name == "poison":
            from django.db import connection

            with connection.cursor() as cursor:
                cursor.execute("SELECT 1 / 0")
        return real(change)

    monkeypatch.setattr(meta_updates, "template_status_update", update)
    return "poison"


def test_a_body_that_fails_is_quarantined_and_the_rest_go_on(
    tenant: Tenant, failing_template_update: str
) -> None:
    poison = meta.notification(
        meta.entry(meta.template_status_change("PAUSED", name=failing_template_update))
    )
    poison_id = post(poison)
    message = post_a_normal_status(tenant)

    assert_applied(message)
    quarantined = WebhookEvent.objects.get(pk=poison_id)
    assert quarantined.processed_at is not None
    assert "division by zero" in quarantined.error
    assert quarantined.quarantined


def test_an_operator_replays_a_quarantined_body_from_the_admin(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = tenant.template.name
    real = meta_updates.template_status_update

    def broken(change: TemplateStatusChange) -> int:
        raise ValueError("the cause an operator fixes")

    monkeypatch.setattr(meta_updates, "template_status_update", broken)
    event_id = post(
        meta.notification(
            meta.entry(
                meta.template_status_change("PAUSED", name=name, language=tenant.template.language),
                waba_id=tenant.account.waba_id,
            )
        )
    )
    processing.webhook_events_apply_pending(wait=True)
    assert WebhookEvent.objects.get(pk=event_id).quarantined

    monkeypatch.setattr(meta_updates, "template_status_update", real)
    admin = User.objects.create_superuser("operator", "op@example.com", "pw")
    browser = Client()
    browser.force_login(admin)
    listing = browser.get("/admin/webhooks/webhookevent/?quarantined=yes")
    assert listing.status_code == 200
    assert f"/admin/webhooks/webhookevent/{event_id}/change/" in listing.content.decode()

    response = browser.post(
        "/admin/webhooks/webhookevent/",
        {"action": "replay", "_selected_action": [str(event_id)]},
    )

    assert response.status_code == 302
    event = WebhookEvent.objects.get(pk=event_id)
    assert (event.error, event.processed_at is not None) == ("", True)
    tenant.template.refresh_from_db()
    assert tenant.template.status == "PAUSED"
