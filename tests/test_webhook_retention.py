"""Kept webhook bodies: purged after the retention period, readable by operators until then."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client, override_settings
from django.utils import timezone

from messaging.models import DeferredStatus
from tests import meta_payloads as meta
from webhooks import retention
from webhooks.models import WebhookEvent
from webhooks.retention import webhook_events_purge
from webhooks.tasks import purge_webhook_events

pytestmark = pytest.mark.django_db


def kept(days_ago: float, body: str = "{}") -> WebhookEvent:
    event = WebhookEvent.objects.create(body=body, object_type="whatsapp_business_account")
    # `received_at` is set on insert; move it back the way time would have.
    WebhookEvent.objects.filter(pk=event.pk).update(
        received_at=timezone.now() - timedelta(days=days_ago)
    )
    return event


def remaining() -> set[int]:
    return set(WebhookEvent.objects.values_list("pk", flat=True))


def test_purging_deletes_only_events_older_than_the_given_days() -> None:
    old, older = kept(8), kept(30)
    recent, today = kept(6.9), kept(0)

    deleted = webhook_events_purge(older_than_days=7)

    assert deleted == 2
    assert remaining() == {recent.pk, today.pk}
    assert not {old.pk, older.pk} & remaining()


def test_purging_works_through_many_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retention, "PURGE_SLICE", 3)
    stale = [kept(20) for _ in range(8)]
    fresh = kept(1)

    assert webhook_events_purge(older_than_days=14) == len(stale)
    assert remaining() == {fresh.pk}


def test_purging_nothing_old_deletes_nothing() -> None:
    event = kept(1)

    assert webhook_events_purge(older_than_days=14) == 0
    assert remaining() == {event.pk}


def test_the_command_purges_by_the_days_it_is_given() -> None:
    kept(3)
    recent = kept(1)
    out = StringIO()

    call_command("purge_webhook_events", "--days", "2", stdout=out)

    assert remaining() == {recent.pk}
    assert "Deleted 1 webhook events older than 2 days." in out.getvalue()


def test_the_command_defaults_to_the_retention_setting() -> None:
    kept(20)
    recent = kept(10)

    # The default is read when the command's arguments are built, so the setting at call time.
    with override_settings(WEBHOOK_EVENT_RETENTION_DAYS=14):
        call_command("purge_webhook_events", stdout=StringIO())

    assert remaining() == {recent.pk}


@pytest.mark.parametrize(("days", "survivors"), [(14, {5, 10}), (7, {5}), (30, {5, 10, 20})])
def test_the_periodic_task_keeps_what_the_retention_setting_says(
    days: int, survivors: set[int]
) -> None:
    events = {age: kept(age) for age in (5, 10, 20)}

    with override_settings(WEBHOOK_EVENT_RETENTION_DAYS=days):
        deleted = purge_webhook_events()

    assert remaining() == {events[age].pk for age in survivors}
    assert deleted == 3 - len(survivors)


# --- the admin -----------------------------------------------------------------------------------


@pytest.fixture
def operator() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("ops", "ops@example.com", "x"))
    return client


def test_operators_see_the_kept_events_in_the_admin(operator: Client) -> None:
    body = meta.encode(meta.statuses_notification(meta.status("wamid.XYZ", "read", meta.T0)))
    event = kept(0, body.decode())

    changelist = operator.get("/admin/webhooks/webhookevent/")
    page = operator.get(f"/admin/webhooks/webhookevent/{event.pk}/change/")

    assert changelist.status_code == 200
    assert f"/admin/webhooks/webhookevent/{event.pk}/change/" in changelist.content.decode()
    assert page.status_code == 200
    html = page.content.decode()
    # Indented for reading, and escaped: a body is whatever Meta (or anyone signing) sent.
    assert "<pre>{\n  &quot;object&quot;: &quot;whatsapp_business_account&quot;" in html
    assert "&quot;wamid.XYZ&quot;" in html


def test_a_kept_body_that_is_not_json_is_shown_as_it_came(operator: Client) -> None:
    event = kept(0, "<script>alert(1)</script>")

    page = operator.get(f"/admin/webhooks/webhookevent/{event.pk}/change/")

    assert page.status_code == 200
    assert "<pre>&lt;script&gt;alert(1)&lt;/script&gt;</pre>" in page.content.decode()


def test_operators_can_search_the_kept_bodies(operator: Client) -> None:
    kept(0, '{"entry": "wamid.FINDME"}')
    kept(0, '{"entry": "wamid.OTHER"}')

    page = operator.get("/admin/webhooks/webhookevent/", {"q": "FINDME"})

    assert page.status_code == 200
    assert "1 result" in page.content.decode()


def test_kept_events_cannot_be_added_or_edited_in_the_admin(operator: Client) -> None:
    event = kept(0, "{}")

    assert operator.get("/admin/webhooks/webhookevent/add/").status_code == 403
    response = operator.post(
        f"/admin/webhooks/webhookevent/{event.pk}/change/", {"object_type": "page"}
    )
    assert response.status_code == 403
    event.refresh_from_db()
    assert event.object_type == "whatsapp_business_account"


# --- statuses kept for wamids no message recorded ------------------------------------------------


def deferred(hours_ago: float) -> DeferredStatus:
    row = DeferredStatus.objects.create(
        wamid=meta.new_wamid(), status="sent", occurred_at=timezone.now()
    )
    DeferredStatus.objects.filter(pk=row.pk).update(
        received_at=timezone.now() - timedelta(hours=hours_ago)
    )
    return row


def test_statuses_that_never_found_their_message_are_purged_after_their_retention() -> None:
    stale, older = deferred(49), deferred(24 * 30)
    fresh = deferred(1)

    with override_settings(DEFERRED_STATUS_RETENTION_HOURS=48):
        deleted = purge_webhook_events()

    assert deleted == 2
    assert set(DeferredStatus.objects.values_list("pk", flat=True)) == {fresh.pk}
    assert not DeferredStatus.objects.filter(pk__in=[stale.pk, older.pk]).exists()
