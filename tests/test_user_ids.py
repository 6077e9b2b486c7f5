"""Business-scoped user ids (Meta, since April 2026): a recipient given by `user_id` instead of a
phone, through send-bulk (JSON and CSV) and the single send to the sandbox and back through its
webhooks; webhooks that name users by user id (inbound messages, opt-outs); the contact lookup by
user id; dedup and the quota window with either."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import transaction
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bulksend.models import BulkSendStatus
from bulksend.recipients import Recipient, deduplicate
from callbacks.models import CallbackEvent, WebhookEndpoint
from callbacks.signing import secret_generate
from messaging.models import Contact, InboundMessage, Message, Suppression
from messaging.suppression import suppression_add
from meta_sandbox import SandboxThread
from tests import meta_payloads as meta
from tests.conftest import Tenant
from tests.delivery_support import (
    assert_counters_exact,
    delivery_redis_fixture,  # noqa: F401  (fixtures)
    drain_to_completion,
    received,
    sandbox_fixture,  # noqa: F401
    send_bulk,
    wait_for,
    webhook_url_fixture,  # noqa: F401
    welcome_recipient,
)

USER = "AR.1502576394655843"
OTHER_USER = "US.ENT.11815799212886844830"
PHONE = "+5491150000001"
SEND_BULK_URL = "/api/v1/meta-templates/send-bulk/"
SEND_URL = "/api/v1/meta-templates/send/"
LOOKUP_URL = "/api/v1/contact-lookup/"


def by_user_id(user_id: str, n: int = 0) -> dict[str, Any]:
    recipient = welcome_recipient(PHONE, n)
    del recipient["phone"]
    return {"user_id": user_id, **recipient}


def refused(tenant: Tenant, recipients: list[Any]) -> Any:
    response = tenant.client.post(
        SEND_BULK_URL,
        {
            "phone_number_id": tenant.number.phone_number_id,
            "template_name": "welcome_message",
            "recipients": recipients,
        },
        format="json",
    )
    assert response.status_code == 400, response.content
    return response.json()


def inbound_from(sender: str | None, user_id: str | None, moment: datetime) -> dict[str, Any]:
    """A user's text as Meta posts it since 2026: `from` (the phone, when Meta shares it) and
    `from_user_id`."""
    message: dict[str, Any] = {
        "id": meta.new_wamid(),
        "timestamp": meta.unix(moment),
        "type": "text",
        "text": {"body": "Hola"},
    }
    if sender is not None:
        message["from"] = sender
    if user_id is not None:
        message["from_user_id"] = user_id
    return message


def post_inbound(client: Client, message: dict[str, Any]) -> None:
    contact = {"profile": {"name": "Juan"}, "user_id": message.get("from_user_id")}
    if "from" in message:
        contact["wa_id"] = message["from"]
    change = meta.messages_change()
    change["value"].update(contacts=[contact], messages=[message])
    response = meta.post(client, meta.notification(meta.entry(change)))
    assert response.status_code == 200, response.content


def lookup(tenant: Tenant, **query: str) -> dict[str, Any]:
    response = tenant.client.get(LOOKUP_URL, query)
    assert response.status_code == 200, response.content
    body: dict[str, Any] = response.json()
    return body


# --- the recipient's shape ----------------------------------------------------------------------


@pytest.mark.django_db
def test_a_recipient_takes_a_phone_or_a_user_id_never_both_and_errors_name_the_index(
    tenant: Tenant,
) -> None:
    both = {**by_user_id(USER), "phone": PHONE}
    bad = by_user_id("not a user id")
    null = by_user_id(USER) | {"user_id": None}

    errors = refused(tenant, [by_user_id(USER), both, bad, null])["recipients"]

    assert set(errors) == {"1", "2", "3"}
    assert errors["1"] == {
        "non_field_errors": ["Give the recipient's phone or its user_id, not both."]
    }
    assert errors["2"]["user_id"][0].startswith("Enter a valid business-scoped user id")
    assert errors["3"] == {"user_id": ["This field may not be null."]}


@pytest.mark.django_db
def test_a_user_id_counts_once_and_is_not_a_phone(tenant: Tenant) -> None:
    body = send_bulk(
        tenant,
        [
            by_user_id(USER, 0),
            by_user_id(USER, 1),
            welcome_recipient(PHONE, 2),
            by_user_id(OTHER_USER, 3),
        ],
    )

    assert (body["total_recipients"], body["unique_recipients"]) == (4, 3)
    rows = Message.objects.filter(bulk_send_id=body["bulk_send_id"])
    assert sorted((m.recipient_phone or "", m.recipient_user_id or "") for m in rows) == [
        ("", USER),
        ("", OTHER_USER),
        (PHONE, ""),
    ]
    # The first occurrence's variables are kept.
    assert rows.get(recipient_user_id=USER).variables["name"] == "Cliente 0"


@pytest.mark.django_db
def test_a_user_id_whose_contact_has_the_phone_is_that_phone_once(tenant: Tenant) -> None:
    Contact.objects.create(organization=tenant.organization, phone=PHONE, user_id=USER)

    body = send_bulk(tenant, [welcome_recipient(PHONE, 0), by_user_id(USER, 1)])

    assert body["unique_recipients"] == 1
    [message] = Message.objects.filter(bulk_send_id=body["bulk_send_id"])
    assert (message.recipient_phone, message.recipient_user_id) == (PHONE, None)


@pytest.mark.django_db
def test_a_csv_may_name_recipients_by_user_id(tenant: Tenant) -> None:
    csv = f"phone,user_id,name,code,button_0\n{PHONE},,Ana,A-1,r1\n,{USER},Juan,J-2,r2\n,,X,Y,z\n"
    response = tenant.client.post(
        f"{SEND_BULK_URL}?phone_number_id={tenant.number.phone_number_id}"
        "&template_name=welcome_message",
        data=csv.encode(),
        content_type="text/csv",
    )

    assert response.status_code == 400
    assert response.json()["recipients"] == {"line 4": {"phone": ["This field is required."]}}

    fixed = csv.replace(",,X,Y,z\n", "")
    response = tenant.client.post(
        f"{SEND_BULK_URL}?phone_number_id={tenant.number.phone_number_id}"
        "&template_name=welcome_message",
        data=fixed.encode(),
        content_type="text/csv",
    )
    assert response.status_code == 202, response.content
    users = Message.objects.filter(bulk_send_id=response.json()["bulk_send_id"])
    assert sorted(m.recipient for m in users) == sorted([PHONE, USER])


@pytest.mark.django_db
def test_user_id_recipients_take_their_places_in_the_quota_window(tenant: Tenant) -> None:
    first = send_bulk(tenant, [by_user_id(USER, 0), welcome_recipient(PHONE, 1)])

    second = send_bulk(tenant, [by_user_id(USER, 0), by_user_id(OTHER_USER, 1)])

    assert first["quota_info"]["quota_needed"] == 2
    # The first send's two recipients hold places; of the second's, only the new user id needs one.
    quota = second["quota_info"]
    assert quota["quota_needed"] == 1
    assert quota["quota_available"] == quota["quota_total"] - 3


# --- to Meta and back ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_send_to_a_user_id_goes_in_metas_recipient_field_and_its_statuses_apply(
    tenant: Tenant, sandbox: SandboxThread, webhook_url: str
) -> None:
    sandbox.control("config", {"webhook_url": webhook_url})
    send_id = send_bulk(tenant, [by_user_id(USER), welcome_recipient(PHONE, 1)])["bulk_send_id"]

    bulk_send = drain_to_completion(send_id)

    bodies = {m["to"]: m["request_body"] for m in received(sandbox).messages}
    assert "to" not in bodies[USER]
    assert bodies[USER]["recipient"] == USER
    assert bodies[PHONE[1:]]["to"] == PHONE[1:]
    assert "recipient" not in bodies[PHONE[1:]]
    assert bulk_send.status == BulkSendStatus.COMPLETED
    message = Message.objects.get(bulk_send_id=send_id, recipient_user_id=USER)
    # The sandbox's delivered webhook names the user by `recipient_user_id` only.
    wait_for(
        lambda: Message.objects.filter(pk=message.pk, status="delivered").exists(),
        timeout=30,
        what="the delivered webhook",
    )
    assert_counters_exact(bulk_send)

    listed = tenant.client.get(f"/api/v1/meta-templates/bulk-sends/{send_id}/messages/").json()
    rows = {row["recipient_phone"]: row for row in listed["results"]}
    assert rows[None]["recipient_user_id"] == USER
    assert "recipient_user_id" not in rows[PHONE]
    exported = tenant.client.get(f"/api/v1/meta-templates/bulk-sends/{send_id}/messages/export/")
    rows_out = b"".join(exported.streaming_content).decode().splitlines()
    assert rows_out[0].endswith(",user_id")
    assert sorted(line.rsplit(",", 1)[1] for line in rows_out[1:]) == ["", USER]
    wamid = Message.objects.get(pk=message.pk).wamid
    found = tenant.client.get(f"/api/v1/meta-templates/messages/{wamid}/").json()
    assert found["recipient"]["phone"] is None
    assert found["recipient"]["user_id"] == USER
    assert found["recipient"]["contact_id"] == Contact.objects.get(user_id=USER).pk


@pytest.mark.django_db(transaction=True)
def test_the_single_send_takes_a_recipient_user_id(tenant: Tenant, sandbox: SandboxThread) -> None:
    response = tenant.client.post(
        SEND_URL,
        {
            "phone_number_id": tenant.number.phone_number_id,
            "template_name": "welcome_message",
            "recipient_user_id": USER,
            "variables": {"name": "Juan", "code": "C-1"},
            "button_variables": {"button_0": "r"},
        },
        format="json",
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["recipient_phone"], body["recipient_user_id"]) == (None, USER)
    assert list(body)[-1] == "recipient_user_id"
    [sent] = received(sandbox).messages
    assert sent["request_body"]["recipient"] == USER
    both = tenant.client.post(
        SEND_URL,
        {
            "phone_number_id": tenant.number.phone_number_id,
            "template_name": "welcome_message",
            "recipient_phone": PHONE,
            "recipient_user_id": USER,
        },
        format="json",
    )
    assert both.status_code == 400
    assert "not both" in both.json()["non_field_errors"][0]


@pytest.mark.django_db(transaction=True)
def test_a_user_who_stopped_marketing_by_user_id_gets_no_marketing_to_that_id(
    tenant: Tenant, sandbox: SandboxThread, webhook_url: str
) -> None:
    sandbox.control("config", {"webhook_url": webhook_url})
    sandbox.control(
        "user_preferences",
        {"phone_number_id": tenant.number.phone_number_id, "user_id": USER, "value": "stop"},
    )
    listed = Suppression.objects.filter(organization=tenant.organization, phone=USER)
    wait_for(listed.exists, timeout=30, what="the user_preferences webhook")

    send_id = send_bulk(tenant, [by_user_id(USER), welcome_recipient(PHONE, 1)])["bulk_send_id"]
    drain_to_completion(send_id)

    message = Message.objects.get(bulk_send_id=send_id, recipient_user_id=USER)
    assert (message.status, message.error_code) == ("failed", "opted_out")
    assert [m["to"] for m in received(sandbox).messages] == [PHONE[1:]]


@pytest.mark.django_db
def test_a_suppressed_or_us_user_id_fails_a_marketing_send_without_asking_meta(
    tenant: Tenant,
) -> None:
    from bulksend.screening import Verdict, recipient_verdicts

    suppression_add(organization=tenant.organization, phone=USER, source="api")

    verdicts = recipient_verdicts(
        organization=tenant.organization,
        template=tenant.template,
        phones=[USER, "US.13491208655302741918", "BR.1"],
        now=timezone.now(),
    )

    assert verdicts == {0: Verdict.OPTED_OUT, 1: Verdict.US_MARKETING_BLOCK}


# --- webhooks that name users by user id --------------------------------------------------------


@pytest.mark.django_db
def test_a_message_with_only_a_user_id_opens_the_window_of_the_contact_it_belongs_to(
    client: Client, tenant: Tenant
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    Contact.objects.create(organization=tenant.organization, phone=PHONE)
    # Meta names the user by both once: the contact learns its user id...
    post_inbound(client, inbound_from(PHONE[1:], USER, now - timedelta(hours=30)))
    assert Contact.objects.get(phone=PHONE).user_id == USER

    # ...so a later message carrying only the id is that contact's, and opens its window.
    post_inbound(client, inbound_from(None, USER, now - timedelta(minutes=5)))

    latest = InboundMessage.objects.order_by("-sent_at").first()
    assert latest is not None
    assert (latest.from_phone, latest.from_user_id) == (PHONE, USER)
    by_phone = lookup(tenant, phone=PHONE)
    assert (by_phone["sessionWindowActive"], by_phone["contact"]["userId"]) == (True, USER)
    assert lookup(tenant, user_id=USER) == by_phone
    assert Contact.objects.filter(organization=tenant.organization).count() == 1


@pytest.mark.django_db
def test_a_user_known_only_by_user_id_becomes_a_contact_the_lookup_finds_by_it(
    client: Client, tenant: Tenant
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    assert lookup(tenant, user_id=USER)["found"] is False

    post_inbound(client, inbound_from(None, USER, now - timedelta(minutes=5)))

    body = lookup(tenant, user_id=USER)
    assert body["found"] is True
    assert (body["contact"]["phone"], body["contact"]["userId"]) == (None, USER)
    assert (body["hasReplied"], body["sessionWindowActive"]) == (True, True)
    # Later Meta names both: the contact learns its phone.
    post_inbound(client, inbound_from(PHONE[1:], USER, now))
    assert Contact.objects.get(user_id=USER).phone == PHONE


@pytest.mark.django_db
def test_a_status_naming_phone_and_user_id_teaches_the_contact_its_user_id(
    client: Client, tenant: Tenant
) -> None:
    _, [message] = meta.send_with_messages(tenant.number, tenant.template, 1)
    Contact.objects.create(organization=tenant.organization, phone=message.recipient_phone)
    status = meta.status(
        message.wamid or "", "delivered", meta.T0 + 5, recipient_id=message.recipient[1:]
    )
    status["recipient_user_id"] = USER

    meta.post_changes(client, tenant.account, meta.messages_change([status]))

    assert Contact.objects.get(phone=message.recipient_phone).user_id == USER
    assert meta.fresh(message).status == "delivered"


# --- dedup, as a property -----------------------------------------------------------------------

PHONES = ["+5491150000001", "+5491150000002", "+5491150000003"]
USER_IDS = ["AR.1", "AR.2", "US.3"]


@given(
    keys=st.lists(st.sampled_from(PHONES + USER_IDS), min_size=1, max_size=12),
    known=st.dictionaries(st.sampled_from(USER_IDS), st.sampled_from(PHONES)),
)
def test_dedup_keeps_the_first_recipient_of_each_person_whatever_the_order(
    keys: list[str], known: dict[str, str]
) -> None:
    recipients = [
        Recipient(
            phone=key if key.startswith("+") else None,
            variables={"n": str(n)},
            button_variables={},
            user_id=None if key.startswith("+") else key,
        )
        for n, key in enumerate(keys)
    ]

    kept = deduplicate(recipients, known)

    def person(key: str) -> str:
        return known.get(key, key)

    people = [person(recipient.key) for recipient in kept]
    assert len(people) == len(set(people))
    assert set(people) == {person(key) for key in keys}
    # Each person's first recipient, in the order given.
    firsts = [n for n, key in enumerate(keys) if person(key) not in map(person, keys[:n])]
    assert [int(recipient.variables["n"]) for recipient in kept] == firsts


@pytest.mark.django_db
def test_a_status_callback_of_a_message_to_a_user_id_names_it(
    client: Client, tenant: Tenant
) -> None:
    WebhookEndpoint.objects.create(
        organization=tenant.organization,
        url="https://customer.example/hooks",
        events=["message.status"],
        secret=secret_generate(),
    )
    _, [to_user, to_phone] = meta.send_with_messages(tenant.number, tenant.template, 2)
    Message.objects.filter(pk=to_user.pk).update(recipient_phone=None, recipient_user_id=USER)
    statuses = [meta.status(m.wamid or "", "delivered", meta.T0 + 5) for m in (to_user, to_phone)]

    meta.post_changes(client, tenant.account, meta.messages_change(statuses))

    bodies = {event.body["message_id"]: event.body for event in CallbackEvent.objects.all()}
    assert (bodies[to_user.pk]["phone"], bodies[to_user.pk]["user_id"]) == (None, USER)
    assert "user_id" not in bodies[to_phone.pk]


@pytest.mark.django_db
def test_a_client_lists_finds_and_removes_a_user_id_on_the_suppression_list(
    tenant: Tenant,
) -> None:
    added = tenant.client.post("/api/v1/suppressions/", {"phone": USER}, format="json")
    found = tenant.client.get("/api/v1/suppressions/", {"phone": USER})
    removed = tenant.client.delete(f"/api/v1/suppressions/{USER}/")

    assert added.status_code == 201, added.content
    assert added.json()["phone"] == USER
    assert [entry["phone"] for entry in found.json()["results"]] == [USER]
    assert removed.status_code == 204
    assert not Suppression.objects.exists()
    refused = tenant.client.post("/api/v1/suppressions/", {"phone": "AR."}, format="json")
    assert refused.status_code == 400


@pytest.mark.django_db
def test_a_reply_named_by_user_id_alone_counts_once_the_contact_has_its_phone(
    client: Client, tenant: Tenant
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    post_inbound(client, inbound_from(None, USER, now - timedelta(minutes=5)))
    # The phone comes later, on an older message (Meta's webhooks may arrive out of order).
    post_inbound(client, inbound_from(PHONE[1:], USER, now - timedelta(hours=30)))

    body = lookup(tenant, phone=PHONE)

    assert body["contact"]["userId"] == USER
    assert body["sessionWindowActive"] is True
    assert lookup(tenant, user_id=USER) == body


# --- webhooks in any order, as a property -------------------------------------------------------


@pytest.mark.django_db
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    events=st.lists(
        st.tuples(st.booleans(), st.integers(min_value=1, max_value=600)),
        min_size=1,
        max_size=6,
        unique_by=lambda event: event[1],
    ).filter(lambda events: any(with_phone for with_phone, _ in events))
)
def test_one_person_is_one_contact_whatever_order_metas_webhooks_name_them_in(
    client: Client, tenant: Tenant, events: list[tuple[bool, int]]
) -> None:
    """Meta's 2026 message webhooks always carry the user id and, for a user it shares the
    phone of, the phone: in any order, the person ends as one contact with both, and the lookup
    by either finds the same latest reply."""
    now = datetime.now(UTC).replace(microsecond=0)
    with transaction.atomic():
        for with_phone, minutes_ago in events:
            sender = PHONE[1:] if with_phone else None
            post_inbound(client, inbound_from(sender, USER, now - timedelta(minutes=minutes_ago)))

        [contact] = Contact.objects.filter(organization=tenant.organization)
        by_phone, by_user_id = lookup(tenant, phone=PHONE), lookup(tenant, user_id=USER)
        latest = now - timedelta(minutes=min(minutes for _, minutes in events))
        transaction.set_rollback(True)

    assert (contact.phone, contact.user_id) == (PHONE, USER)
    assert by_phone == by_user_id
    assert by_phone["lastReplyAt"] == latest.isoformat().replace("+00:00", "Z")
