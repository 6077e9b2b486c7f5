"""Status webhooks move messages forward at Meta's times and keep every send's counters exact."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction
from django.test import Client

from bulksend.lifecycle import sends_counters_apply
from bulksend.models import BulkSend, BulkSendStatus
from messaging.models import Contact, DeferredStatus, Message, MessageStatus
from messaging.status import statuses_apply_deferred
from tests import factories
from tests import meta_payloads as meta
from tests.conftest import Tenant
from webhooks.models import WebhookEvent

T0 = meta.T0


@pytest.fixture
def client() -> Client:
    return Client(raise_request_exception=False)


def post_statuses(client: Client, *statuses: dict[str, Any]) -> WebhookEvent:
    response = meta.post(client, meta.statuses_notification(*statuses))
    assert response.status_code == 200, response.content
    return WebhookEvent.objects.get(pk=response.json()["event_id"])


def sent_send(tenant: Tenant, count: int = 1, **fields: Any) -> tuple[BulkSend, list[Message]]:
    return meta.send_with_messages(tenant.number, tenant.template, count, **fields)


def wamid_of(message: Message) -> str:
    assert message.wamid is not None
    return message.wamid


# --- one status at a time ------------------------------------------------------------------------

# What each status does to a `sent` message: its status, the times it sets, the counters it moves.
MOVES = {
    "delivered": (
        MessageStatus.DELIVERED,
        {"delivered_at": T0 + 5},
        {"delivered_count": 1},
    ),
    "read": (
        MessageStatus.READ,
        {"delivered_at": T0 + 5, "read_at": T0 + 5},
        {"delivered_count": 1, "read_count": 1},
    ),
    "failed": (
        MessageStatus.FAILED,
        {"failed_at": T0 + 5},
        {"sent_count": -1, "failed_count": 1},
    ),
}
EXTRAS = {
    "bare": {"conversation": False, "pricing": False},
    "billing": {"conversation": True, "pricing": True},
    "callback-data": {"with_callback": True},
    "everything": {"conversation": True, "pricing": True, "with_callback": True},
}


@pytest.mark.parametrize("extras", EXTRAS.values(), ids=EXTRAS.keys())
@pytest.mark.parametrize("kind", MOVES.keys())
def test_a_status_moves_a_sent_message_at_metas_time(
    client: Client, tenant: Tenant, kind: str, extras: dict[str, Any]
) -> None:
    bulk_send, [message, *_others] = sent_send(tenant, 3)
    before = meta.assert_counters_exact(bulk_send)
    options = dict(extras)
    if options.pop("with_callback", False):
        options["message_id"] = message.pk

    event = post_statuses(client, meta.status(wamid_of(message), kind, T0 + 5, **options))

    status, times, deltas = MOVES[kind]
    message.refresh_from_db()
    assert message.status == status
    assert message.sent_at == meta.at(T0)  # the acceptance time stays
    for field, seconds in times.items():
        assert getattr(message, field) == meta.at(seconds), field
    after = meta.assert_counters_exact(bulk_send)
    assert {k: after[k] - before[k] for k in after if after[k] != before[k]} == deltas
    assert (event.status_events, event.messages_changed, event.deferred) == (1, 1, 0)
    assert event.outcome["counters"] == {
        str(bulk_send.pk): {
            name: deltas.get(f"{name}_count", 0)
            for name in ("sent", "delivered", "read", "failed", "cancelled", "pending")
        }
    }


@pytest.mark.parametrize("extras", EXTRAS.values(), ids=EXTRAS.keys())
def test_a_sent_status_settles_a_message_whose_wamid_was_never_recorded(
    client: Client, tenant: Tenant, extras: dict[str, Any]
) -> None:
    # The worker died between Meta's answer and its commit: the message is still `sending`.
    bulk_send, [message] = sent_send(tenant, status=MessageStatus.SENDING)
    wamid = meta.new_wamid()

    post_statuses(
        client,
        meta.status(
            wamid,
            "sent",
            T0 + 1,
            conversation=extras.get("conversation"),
            pricing=extras.get("pricing"),
            message_id=message.pk,
        ),
    )

    message.refresh_from_db()
    assert (message.status, message.wamid, message.sent_at) == ("sent", wamid, meta.at(T0 + 1))
    counters = meta.assert_counters_exact(bulk_send)
    assert (counters["pending_count"], counters["sent_count"]) == (0, 1)


def test_a_sent_status_for_a_sent_message_changes_nothing(client: Client, tenant: Tenant) -> None:
    bulk_send, [message] = sent_send(tenant)
    before = meta.assert_counters_exact(bulk_send)

    event = post_statuses(client, meta.status(wamid_of(message), "sent", T0 + 9))

    message.refresh_from_db()
    assert (message.status, message.sent_at) == ("sent", meta.at(T0))
    assert meta.assert_counters_exact(bulk_send) == before
    assert event.messages_changed == 0


def test_read_without_delivered_sets_both(client: Client, tenant: Tenant) -> None:
    bulk_send, [message] = sent_send(tenant)

    post_statuses(client, meta.status(wamid_of(message), "read", T0 + 30))

    message.refresh_from_db()
    assert message.status == MessageStatus.READ
    assert message.delivered_at == message.read_at == meta.at(T0 + 30)
    counters = meta.assert_counters_exact(bulk_send)
    assert (counters["sent_count"], counters["delivered_count"], counters["read_count"]) == (
        1,
        1,
        1,
    )


def test_delivered_and_read_in_one_body_keep_their_own_times(
    client: Client, tenant: Tenant
) -> None:
    bulk_send, [message] = sent_send(tenant)
    wamid = wamid_of(message)

    # Meta does not promise order, even inside one body.
    post_statuses(
        client, meta.status(wamid, "read", T0 + 30), meta.status(wamid, "delivered", T0 + 9)
    )

    message.refresh_from_db()
    assert (message.status, message.delivered_at, message.read_at) == (
        "read",
        meta.at(T0 + 9),
        meta.at(T0 + 30),
    )
    meta.assert_counters_exact(bulk_send)


def test_a_duplicate_status_is_a_no_op(client: Client, tenant: Tenant) -> None:
    bulk_send, [message] = sent_send(tenant)
    delivered = meta.status(wamid_of(message), "delivered", T0 + 5)
    first = post_statuses(client, delivered)
    counters = meta.assert_counters_exact(bulk_send)

    second = post_statuses(client, delivered)

    assert (first.messages_changed, second.messages_changed) == (1, 0)
    assert second.outcome["counters"] == {}
    assert meta.assert_counters_exact(bulk_send) == counters
    message.refresh_from_db()
    assert message.delivered_at == meta.at(T0 + 5)


def test_a_late_delivered_after_read_changes_nothing(client: Client, tenant: Tenant) -> None:
    bulk_send, [message] = sent_send(tenant)
    post_statuses(client, meta.status(wamid_of(message), "read", T0 + 30))
    counters = meta.assert_counters_exact(bulk_send)

    late = post_statuses(client, meta.status(wamid_of(message), "delivered", T0 + 10))

    message.refresh_from_db()
    assert (message.status, message.delivered_at, message.read_at) == (
        "read",
        meta.at(T0 + 30),
        meta.at(T0 + 30),
    )
    assert late.messages_changed == 0
    assert meta.assert_counters_exact(bulk_send) == counters


def test_a_late_failed_after_delivered_changes_nothing(client: Client, tenant: Tenant) -> None:
    bulk_send, [message] = sent_send(tenant)
    post_statuses(client, meta.status(wamid_of(message), "delivered", T0 + 5))

    post_statuses(client, meta.status(wamid_of(message), "failed", T0 + 6))

    message.refresh_from_db()
    assert (message.status, message.failed_at, message.error_code) == ("delivered", None, None)
    meta.assert_counters_exact(bulk_send)


def test_failed_is_final(client: Client, tenant: Tenant) -> None:
    bulk_send, [message] = sent_send(tenant)
    post_statuses(client, meta.status(wamid_of(message), "failed", T0 + 5))

    post_statuses(
        client,
        meta.status(wamid_of(message), "delivered", T0 + 6),
        meta.status(wamid_of(message), "read", T0 + 7),
    )

    message.refresh_from_db()
    assert (message.status, message.delivered_at, message.read_at) == ("failed", None, None)
    assert meta.assert_counters_exact(bulk_send)["failed_count"] == 1


# --- failures ------------------------------------------------------------------------------------


def test_a_failure_keeps_metas_error_and_turns_a_completed_send_partial(
    client: Client, tenant: Tenant
) -> None:
    bulk_send, [failing, _fine] = sent_send(tenant, 2)
    BulkSend.objects.filter(pk=bulk_send.pk).update(status=BulkSendStatus.COMPLETED)

    post_statuses(client, meta.status(wamid_of(failing), "failed", T0 + 42))

    failing.refresh_from_db()
    assert (failing.status, failing.failed_at, failing.error_code) == (
        "failed",
        meta.at(T0 + 42),
        "131026",
    )
    assert meta.UNDELIVERABLE_TITLE in (failing.error_message or "")
    assert meta.UNDELIVERABLE_DETAILS in (failing.error_message or "")
    bulk_send.refresh_from_db()
    assert bulk_send.status == BulkSendStatus.PARTIAL
    counters = meta.assert_counters_exact(bulk_send)
    assert (counters["sent_count"], counters["failed_count"]) == (1, 1)


def test_a_completed_send_whose_every_message_fails_becomes_failed(
    client: Client, tenant: Tenant
) -> None:
    bulk_send, messages = sent_send(tenant, 2)
    BulkSend.objects.filter(pk=bulk_send.pk).update(status=BulkSendStatus.COMPLETED)

    post_statuses(client, *(meta.status(wamid_of(m), "failed", T0 + 3) for m in messages))

    bulk_send.refresh_from_db()
    assert bulk_send.status == BulkSendStatus.FAILED
    assert meta.assert_counters_exact(bulk_send)["failed_count"] == 2


def test_a_failure_leaves_a_processing_send_processing(client: Client, tenant: Tenant) -> None:
    bulk_send, [message] = sent_send(tenant, status=MessageStatus.SENT)
    factories.make_message(bulk_send, status=MessageStatus.PENDING)
    BulkSend.objects.filter(pk=bulk_send.pk).update(status=BulkSendStatus.PROCESSING)

    post_statuses(client, meta.status(wamid_of(message), "failed", T0 + 3))

    bulk_send.refresh_from_db()
    assert bulk_send.status == BulkSendStatus.PROCESSING
    meta.assert_counters_exact(bulk_send)


def test_a_failure_without_errors_fails_the_message_without_a_code(
    client: Client, tenant: Tenant
) -> None:
    bulk_send, [message] = sent_send(tenant)

    post_statuses(client, meta.status(wamid_of(message), "failed", T0 + 3, errors=[]))

    message.refresh_from_db()
    assert (message.status, message.error_code, message.error_message) == ("failed", None, None)
    meta.assert_counters_exact(bulk_send)


# --- wamids not recorded yet ---------------------------------------------------------------------


def record_wamid(message: Message, wamid: str) -> None:
    """What the sender does once Meta's answer is committed: the wamid, then the kept events."""
    with transaction.atomic():
        Message.objects.filter(pk=message.pk).update(wamid=wamid)
        sends_counters_apply(statuses_apply_deferred([wamid]).counters)


def test_a_status_for_an_unknown_wamid_is_kept_and_applied_once_the_wamid_is_recorded(
    client: Client, tenant: Tenant
) -> None:
    bulk_send, [message] = sent_send(tenant, wamids=False)
    wamid = meta.new_wamid()

    early = post_statuses(client, meta.status(wamid, "delivered", T0 + 5))

    assert (early.deferred, early.messages_changed) == (1, 0)
    kept = DeferredStatus.objects.get()
    assert (kept.wamid, kept.status, kept.occurred_at) == (wamid, "delivered", meta.at(T0 + 5))
    message.refresh_from_db()
    assert message.status == MessageStatus.SENT

    record_wamid(message, wamid)

    message.refresh_from_db()
    assert (message.status, message.delivered_at) == ("delivered", meta.at(T0 + 5))
    assert not DeferredStatus.objects.exists()
    assert meta.assert_counters_exact(bulk_send)["delivered_count"] == 1


def test_kept_statuses_of_one_wamid_apply_together_in_meta_order(
    client: Client, tenant: Tenant
) -> None:
    bulk_send, [message] = sent_send(tenant, wamids=False)
    wamid = meta.new_wamid()
    post_statuses(client, meta.status(wamid, "read", T0 + 20))
    post_statuses(client, meta.status(wamid, "delivered", T0 + 10))
    post_statuses(client, meta.status(wamid, "read", T0 + 20))

    record_wamid(message, wamid)

    message.refresh_from_db()
    assert (message.status, message.delivered_at, message.read_at) == (
        "read",
        meta.at(T0 + 10),
        meta.at(T0 + 20),
    )
    assert not DeferredStatus.objects.exists()
    counters = meta.assert_counters_exact(bulk_send)
    assert (counters["delivered_count"], counters["read_count"]) == (1, 1)


def test_a_kept_status_applies_when_a_later_one_names_its_message(
    client: Client, tenant: Tenant
) -> None:
    bulk_send, [message] = sent_send(tenant, status=MessageStatus.SENDING)
    wamid = meta.new_wamid()
    post_statuses(client, meta.status(wamid, "delivered", T0 + 8))

    # `sent` carries our callback data: it records the wamid, and the kept `delivered` follows.
    event = post_statuses(client, meta.status(wamid, "sent", T0 + 2, message_id=message.pk))

    message.refresh_from_db()
    assert (message.status, message.wamid) == ("delivered", wamid)
    assert (message.sent_at, message.delivered_at) == (meta.at(T0 + 2), meta.at(T0 + 8))
    # One message, moved twice in one go: by the `sent`, then by the kept `delivered`.
    assert event.messages_changed == 1
    assert event.outcome["counters"][str(message.bulk_send_id)] == {
        "sent": 1,
        "delivered": 1,
        "read": 0,
        "failed": 0,
        "cancelled": 0,
        "pending": -1,
    }
    assert not DeferredStatus.objects.exists()
    counters = meta.assert_counters_exact(bulk_send)
    assert (counters["pending_count"], counters["sent_count"], counters["delivered_count"]) == (
        0,
        1,
        1,
    )


def test_callback_data_never_takes_a_message_that_has_another_wamid(
    client: Client, tenant: Tenant
) -> None:
    bulk_send, [message] = sent_send(tenant)
    stranger = meta.new_wamid()

    event = post_statuses(client, meta.status(stranger, "read", T0 + 5, message_id=message.pk))

    message.refresh_from_db()
    assert (message.status, message.wamid != stranger) == ("sent", True)
    assert event.deferred == 1
    meta.assert_counters_exact(bulk_send)


# --- many at once --------------------------------------------------------------------------------


def test_one_body_with_many_entries_changes_and_statuses_applies_them_all(
    client: Client, tenant: Tenant
) -> None:
    first, first_messages = sent_send(tenant, 3)
    second, second_messages = sent_send(tenant, 3)
    other = factories.make_account(tenant.organization)
    other_number = factories.make_number(other)
    third, third_messages = meta.send_with_messages(other_number, factories.make_template(other), 2)
    a, b, c = (wamid_of(m) for m in first_messages)
    d, e, f = (wamid_of(m) for m in second_messages)
    g, h = (wamid_of(m) for m in third_messages)
    document = meta.notification(
        meta.entry(
            meta.messages_change(
                [meta.status(a, "delivered", T0 + 1), meta.status(d, "read", T0 + 2)]
            ),
            meta.messages_change(
                [meta.status(b, "failed", T0 + 3), meta.status(a, "read", T0 + 4)]
            ),
        ),
        meta.entry(
            meta.messages_change(
                [meta.status(g, "read", T0 + 5), meta.status(h, "delivered", T0 + 6)],
                phone_number_id=other_number.phone_number_id,
            ),
            waba_id=other.waba_id,
        ),
        meta.entry(meta.messages_change([meta.status(e, "delivered", T0 + 7)])),
    )

    response = meta.post(client, document)

    assert response.status_code == 200
    statuses = dict(Message.objects.values_list("wamid", "status"))
    assert statuses == {
        a: "read",
        b: "failed",
        c: "sent",
        d: "read",
        e: "delivered",
        f: "sent",
        g: "read",
        h: "delivered",
    }
    event = WebhookEvent.objects.get()
    assert (event.status_events, event.messages_changed) == (7, 6)
    assert set(event.outcome["counters"]) == {str(s.pk) for s in (first, second, third)}
    for bulk_send in (first, second, third):
        meta.assert_counters_exact(bulk_send)


def test_inbound_user_messages_next_to_statuses_are_accepted(
    client: Client, tenant: Tenant
) -> None:
    bulk_send, [message] = sent_send(tenant)
    change = meta.messages_change(
        [meta.status(wamid_of(message), "read", T0 + 9)],
        messages=[meta.inbound_text(text="Gracias!")],
    )

    response = meta.post(client, meta.notification(meta.entry(change)))

    assert response.status_code == 200
    assert WebhookEvent.objects.get().outcome["inbound_messages"] == 1
    message.refresh_from_db()
    assert message.status == MessageStatus.READ
    meta.assert_counters_exact(bulk_send)


def test_a_body_with_only_inbound_messages_changes_no_message(
    client: Client, tenant: Tenant
) -> None:
    bulk_send, _ = sent_send(tenant)
    change = meta.messages_change(messages=[meta.inbound_text()])

    response = meta.post(client, meta.notification(meta.entry(change)))

    assert response.status_code == 200
    assert WebhookEvent.objects.get().messages_changed == 0
    assert meta.assert_counters_exact(bulk_send)["sent_count"] == 1


# --- what clients see afterwards -----------------------------------------------------------------


def test_the_api_shows_metas_times_and_the_error_after_the_webhooks(
    client: Client, tenant: Tenant
) -> None:
    bulk_send, [read, failed, untouched] = sent_send(tenant, 3)
    contact = Contact.objects.create(
        organization=tenant.organization, phone=read.recipient_phone, name="Juan Perez"
    )
    post_statuses(
        client,
        meta.status(wamid_of(read), "delivered", T0 + 10),
        meta.status(wamid_of(read), "read", T0 + 70),
        meta.status(wamid_of(failed), "failed", T0 + 15),
    )

    lookup = tenant.client.get(f"/api/v1/meta-templates/messages/{wamid_of(read)}/")

    assert lookup.status_code == 200, lookup.content
    body = lookup.json()
    assert body["delivery_status"] == {
        "current": "read",
        "sent_at": "2023-11-14T22:13:20Z",
        "delivered_at": "2023-11-14T22:13:30Z",
        "read_at": "2023-11-14T22:14:30Z",
        "failed_at": None,
        "error_code": None,
        "error_message": None,
    }
    assert body["recipient"] == {
        "phone": read.recipient_phone,
        "contact_name": "Juan Perez",
        "contact_id": contact.pk,
    }
    assert body["meta_message_id"] == wamid_of(read)

    failure = tenant.client.get(f"/api/v1/meta-templates/messages/{wamid_of(failed)}/").json()
    assert failure["delivery_status"]["current"] == "failed"
    assert failure["delivery_status"]["failed_at"] == "2023-11-14T22:13:35Z"
    assert failure["delivery_status"]["error_code"] == "131026"
    assert meta.UNDELIVERABLE_DETAILS in failure["delivery_status"]["error_message"]
    assert failure["recipient"]["contact_name"] is None

    page = tenant.client.get(f"/api/v1/meta-templates/bulk-sends/{bulk_send.pk}/messages/")
    by_status = {
        status: tenant.client.get(
            f"/api/v1/meta-templates/bulk-sends/{bulk_send.pk}/messages/", {"status": status}
        ).json()
        for status in ("read", "failed", "sent", "delivered")
    }
    assert page.json()["count"] == 3
    assert [m["meta_message_id"] for m in by_status["read"]["results"]] == [wamid_of(read)]
    assert by_status["read"]["results"][0]["read_at"] == "2023-11-14T22:14:30Z"
    assert [m["id"] for m in by_status["failed"]["results"]] == [failed.pk]
    assert [m["id"] for m in by_status["sent"]["results"]] == [untouched.pk]
    assert by_status["delivered"]["count"] == 0

    detail = tenant.client.get(f"/api/v1/meta-templates/bulk-sends/{bulk_send.pk}/").json()
    assert {
        k: detail[k]
        for k in (
            "total_recipients",
            "sent_count",
            "delivered_count",
            "read_count",
            "failed_count",
            "pending_count",
            "progress_percentage",
        )
    } == {
        "total_recipients": 3,
        "sent_count": 2,
        "delivered_count": 1,
        "read_count": 1,
        "failed_count": 1,
        "pending_count": 0,
        "progress_percentage": 100.0,
    }
    meta.assert_counters_exact(bulk_send)
