"""POST /api/v1/meta-templates/bulk-sends/{id}/retry/ and the admin's "retry failed": a new send,
linked both ways, of exactly the recipients the scope chooses, with their frozen variables, and
never a second message to anyone a send of the chain reached."""

from __future__ import annotations

import itertools
import threading
import uuid
from typing import Any

import psycopg
import pytest
from django.db import connection
from django.db.models import Count, Q
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.response import Response

from bulksend.lifecycle import bulk_send_halt
from bulksend.models import BulkSend, BulkSendKind, BulkSendStatus
from bulksend.retry import CHAIN_LOCK_CLASS, NOTHING_TO_RETRY, RetryScope, bulk_send_retry
from messaging.models import Message, MessageStatus
from mindo.errors import ConflictError
from mindo.models import IdempotencyKey
from tests import factories
from tests.conftest import Tenant, make_tenant
from tests.delivery_support import sessions_waiting_on_locks, wait_for

RETRY_URL = "/api/v1/meta-templates/bulk-sends/{}/retry/"
SEND_BULK_URL = "/api/v1/meta-templates/send-bulk/"
DETAIL_URL = "/api/v1/meta-templates/bulk-sends/{}/"
CHANGELIST = reverse("admin:bulksend_bulksend_changelist")
REACHED = (MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ)

_phones = itertools.count(10_000_000)


def phone() -> str:
    return f"+54911{next(_phones):08d}"


def variables(name: str) -> dict[str, str]:
    return {"name": name, "code": f"C-{name}"}


def make_send(
    tenant: Tenant,
    outcomes: list[tuple[str, str | None]],
    *,
    finished: bool = True,
    **fields: Any,
) -> tuple[BulkSend, list[Message]]:
    """A send whose messages ended as `outcomes` (status, error code): finished (PARTIAL, with
    `completed_at`) or still PROCESSING. A message that reached Meta has its wamid and sent_at,
    a failed one with code "after-sent" too (Meta failed it after taking it)."""
    if finished:
        fields.setdefault("status", BulkSendStatus.PARTIAL)
        fields.setdefault("completed_at", timezone.now())
    else:
        fields.setdefault("status", BulkSendStatus.PROCESSING)
    bulk_send = factories.make_bulk_send(tenant.number, tenant.template, **fields)
    messages = []
    for index, (status, code) in enumerate(outcomes):
        extra: dict[str, Any] = {
            "variables": variables(f"n{index}"),
            "button_variables": {"button_0": f"b{index}"},
        }
        if status in REACHED or code == "after-sent":
            extra.update(sent_at=timezone.now(), wamid=f"wamid.{uuid.uuid4().hex}")
        if status == MessageStatus.FAILED:
            extra.update(error_code=code, error_message="refused", failed_at=timezone.now())
        messages.append(factories.make_message(bulk_send, status=status, **extra))
    bulk_send.refresh_from_db()
    return bulk_send, messages


def retry(tenant: Tenant, bulk_send: BulkSend, body: dict[str, Any], **headers: str) -> Response:
    response: Response = tenant.client.post(
        RETRY_URL.format(bulk_send.pk), body, format="json", **headers
    )
    return response


def send_bulk_answer(tenant: Tenant) -> dict[str, Any]:
    """A 202 of send-bulk, whose shape a retry's answer has (and `retry_of`)."""
    recipient = {
        "phone": phone(),
        "variables": variables("x"),
        "button_variables": {"button_0": "b"},
    }
    body = {
        "phone_number_id": tenant.number.phone_number_id,
        "template_name": tenant.template.name,
        "recipients": [recipient],
    }
    answer: dict[str, Any] = tenant.client.post(SEND_BULK_URL, body, format="json").json()
    return answer


def messages_of(send_id: Any) -> dict[str, Message]:
    return {m.recipient_phone: m for m in Message.objects.filter(bulk_send_id=send_id)}


def test_a_retry_of_the_failed_sends_them_again_with_the_variables_they_had(
    tenant: Tenant,
) -> None:
    original, messages = make_send(
        tenant,
        [
            (MessageStatus.READ, None),
            (MessageStatus.DELIVERED, None),
            (MessageStatus.FAILED, "131026"),
            (MessageStatus.FAILED, "131047"),
            (MessageStatus.FAILED, "after-sent"),
            (MessageStatus.CANCELLED, None),
        ],
    )

    response = retry(tenant, original, {"scope": "failed"})

    assert response.status_code == 202, response.json()
    body = response.json()
    assert set(body) == {*send_bulk_answer(tenant), "retry_of"}
    assert body["retry_of"] == str(original.pk)
    assert (body["status"], body["total_recipients"], body["unique_recipients"]) == ("queued", 2, 2)
    assert body["quota_info"]["quota_needed"] == 2
    retry_send = BulkSend.objects.get(pk=body["bulk_send_id"])
    assert retry_send.retry_of_id == original.pk
    assert (retry_send.status, retry_send.pending_count) == (BulkSendStatus.QUEUED, 2)
    assert retry_send.organization_id == tenant.organization.pk
    copied = messages_of(retry_send.pk)
    assert set(copied) == {messages[2].recipient_phone, messages[3].recipient_phone}
    for source in messages[2:4]:
        again = copied[source.recipient_phone]
        assert (again.status, again.attempts, again.wamid) == (MessageStatus.PENDING, 0, None)
        assert again.variables == source.variables
        assert again.button_variables == source.button_variables


def test_both_status_bodies_show_the_link(tenant: Tenant) -> None:
    original, _ = make_send(tenant, [(MessageStatus.FAILED, "131026")])
    plain, _ = make_send(tenant, [(MessageStatus.SENT, None)])
    retry_id = retry(tenant, original, {"scope": "failed"}).json()["bulk_send_id"]

    original_body = tenant.client.get(DETAIL_URL.format(original.pk)).json()
    retry_body = tenant.client.get(DETAIL_URL.format(retry_id)).json()
    plain_body = tenant.client.get(DETAIL_URL.format(plain.pk)).json()

    assert original_body["retries"] == [retry_id]
    assert "retry_of" not in original_body
    assert retry_body["retry_of"] == str(original.pk)
    assert "retries" not in retry_body
    assert not {"retry_of", "retries"} & set(plain_body)


def test_error_codes_narrow_the_failed_ones(tenant: Tenant) -> None:
    original, messages = make_send(
        tenant,
        [
            (MessageStatus.FAILED, "131026"),
            (MessageStatus.FAILED, "131047"),
            (MessageStatus.FAILED, "opted_out"),
        ],
    )

    response = retry(tenant, original, {"scope": "failed", "error_codes": [131026, "opted_out"]})

    assert response.status_code == 202, response.json()
    assert set(messages_of(response.json()["bulk_send_id"])) == {
        messages[0].recipient_phone,
        messages[2].recipient_phone,
    }


@pytest.mark.parametrize(
    ("scope", "expected"),
    [("pending", [1, 2]), ("all_unsent", [0, 1, 2]), ("failed", [0])],
)
def test_the_scopes_of_a_cancelled_send(tenant: Tenant, scope: str, expected: list[int]) -> None:
    original, messages = make_send(
        tenant,
        [
            (MessageStatus.FAILED, "131026"),
            (MessageStatus.CANCELLED, None),
            (MessageStatus.PENDING, None),  # came back from flight after the cancel
            (MessageStatus.SENDING, None),  # may be with Meta
            (MessageStatus.SENT, None),
        ],
        status=BulkSendStatus.CANCELLED,
    )

    response = retry(tenant, original, {"scope": scope})

    assert response.status_code == 202, response.json()
    assert set(messages_of(response.json()["bulk_send_id"])) == {
        messages[index].recipient_phone for index in expected
    }


@pytest.mark.parametrize("scope", ["pending", "all_unsent"])
def test_unsent_ones_of_a_running_send_are_refused(tenant: Tenant, scope: str) -> None:
    running, _ = make_send(
        tenant, [(MessageStatus.PENDING, None), (MessageStatus.FAILED, "131026")], finished=False
    )

    response = retry(tenant, running, {"scope": scope})

    assert response.status_code == 409
    assert "cancelelo o espere" in response.json()["error"]
    assert not BulkSend.objects.filter(retry_of=running).exists()
    assert Message.objects.filter(bulk_send=running, status=MessageStatus.PENDING).count() == 1


def test_the_failed_ones_of_a_running_send_can_be_retried(tenant: Tenant) -> None:
    running, messages = make_send(
        tenant, [(MessageStatus.PENDING, None), (MessageStatus.FAILED, "131026")], finished=False
    )

    response = retry(tenant, running, {"scope": "failed"})

    assert response.status_code == 202
    assert set(messages_of(response.json()["bulk_send_id"])) == {messages[1].recipient_phone}


def test_a_halted_send_gives_up_its_pending_ones_to_the_retry(tenant: Tenant) -> None:
    halted, messages = make_send(
        tenant, [(MessageStatus.PENDING, None), (MessageStatus.SENT, None)], finished=False
    )
    assert bulk_send_halt(halted.pk, code="190", text="Invalid OAuth access token")

    response = retry(tenant, halted, {"scope": "pending"})

    assert response.status_code == 202, response.json()
    assert set(messages_of(response.json()["bulk_send_id"])) == {messages[0].recipient_phone}
    halted.refresh_from_db()
    assert (halted.status, halted.pending_count, halted.cancelled_count) == (
        BulkSendStatus.CANCELLED,
        0,
        1,
    )


def test_asked_again_while_unfinished_it_answers_the_same_retry(tenant: Tenant) -> None:
    original, _ = make_send(
        tenant, [(MessageStatus.FAILED, "131026"), (MessageStatus.FAILED, "131047")]
    )
    first = retry(tenant, original, {"scope": "failed"})

    again = retry(tenant, original, {"scope": "failed", "error_codes": ["131026"]})

    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["bulk_send_id"] == first.json()["bulk_send_id"]
    assert again.json()["total_recipients"] == 2
    assert BulkSend.objects.filter(retry_of=original).count() == 1


def test_once_the_retry_finished_a_new_one_takes_only_who_it_did_not_reach(
    tenant: Tenant,
) -> None:
    original, messages = make_send(
        tenant, [(MessageStatus.FAILED, "131026"), (MessageStatus.FAILED, "131026")]
    )
    first_id = retry(tenant, original, {"scope": "failed"}).json()["bulk_send_id"]
    reached, missed = (messages_of(first_id)[m.recipient_phone] for m in messages)
    settle(reached, MessageStatus.DELIVERED)
    settle(missed, MessageStatus.FAILED)

    second = retry(tenant, original, {"scope": "failed"})

    assert second.status_code == 202
    assert set(messages_of(second.json()["bulk_send_id"])) == {missed.recipient_phone}
    assert tenant.client.get(DETAIL_URL.format(original.pk)).json()["retries"] == [
        first_id,
        second.json()["bulk_send_id"],
    ]


def test_a_recipient_known_by_user_id_is_never_retried_once_reached(tenant: Tenant) -> None:
    original, messages = make_send(
        tenant, [(MessageStatus.FAILED, "131026"), (MessageStatus.FAILED, "131026")]
    )
    user_ids = ["AR.1502576394655843", "AR.1502576394655844"]
    for message, user_id in zip(messages, user_ids, strict=True):
        Message.objects.filter(pk=message.pk).update(
            recipient_phone=None, recipient_user_id=user_id
        )
    first_id = retry(tenant, original, {"scope": "failed"}).json()["bulk_send_id"]
    copies = {m.recipient_user_id: m for m in Message.objects.filter(bulk_send_id=first_id)}
    assert set(copies) == set(user_ids)
    assert {m.recipient_phone for m in copies.values()} == {None}
    settle(copies[user_ids[0]], MessageStatus.DELIVERED)
    settle(copies[user_ids[1]], MessageStatus.FAILED)

    second = retry(tenant, original, {"scope": "failed"})

    assert second.status_code == 202
    assert set(
        Message.objects.filter(bulk_send_id=second.json()["bulk_send_id"]).values_list(
            "recipient_user_id", flat=True
        )
    ) == {user_ids[1]}


def test_nobody_to_retry_is_a_409_that_creates_nothing(tenant: Tenant) -> None:
    original, _ = make_send(tenant, [(MessageStatus.SENT, None), (MessageStatus.CANCELLED, None)])

    response = retry(tenant, original, {"scope": "failed"})

    assert response.status_code == 409
    assert response.json() == {"error": NOTHING_TO_RETRY}
    assert not BulkSend.objects.filter(retry_of=original).exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "scope"),
        ({"scope": "everything"}, "scope"),
        ({"scope": "pending", "error_codes": ["131026"]}, "error_codes"),
        ({"scope": "failed", "error_codes": []}, "error_codes"),
        ({"scope": "failed", "error_codes": "131026"}, "error_codes"),
        ({"scope": "failed", "error_codes": ["x" * 40]}, "error_codes"),
    ],
)
def test_a_refused_field_is_named(tenant: Tenant, body: dict[str, Any], field: str) -> None:
    original, _ = make_send(tenant, [(MessageStatus.FAILED, "131026")])

    response = retry(tenant, original, body)

    assert response.status_code == 400
    assert list(response.json()) == [field]


def test_another_organizations_send_or_a_single_send_is_not_found(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    theirs, _ = make_send(other_tenant, [(MessageStatus.FAILED, "131026")])
    single, _ = make_send(tenant, [(MessageStatus.FAILED, "131026")], kind=BulkSendKind.SINGLE)

    for bulk_send in (theirs, single):
        response = retry(tenant, bulk_send, {"scope": "failed"})
        assert response.status_code == 404
        assert not BulkSend.objects.filter(retry_of=bulk_send).exists()
    assert retry(tenant, theirs, {"scope": "failed"}).json() == {"detail": "Not found."}
    assert tenant.client.post(RETRY_URL.format("nope"), {"scope": "failed"}).status_code == 404


def test_a_read_only_key_may_not_retry(tenant: Tenant) -> None:
    original, _ = make_send(tenant, [(MessageStatus.FAILED, "131026")])
    tenant.api_key.scopes = ["read"]
    tenant.api_key.save()

    assert retry(tenant, original, {"scope": "failed"}).status_code == 403


def test_an_idempotency_key_replays_the_first_answer(tenant: Tenant) -> None:
    original, _ = make_send(tenant, [(MessageStatus.FAILED, "131026")])
    first = retry(tenant, original, {"scope": "failed"}, HTTP_IDEMPOTENCY_KEY="retry-1")
    # The retry finishes: without the key, asking again would make a new one.
    settle(Message.objects.get(bulk_send_id=first.json()["bulk_send_id"]), MessageStatus.FAILED)

    replay = retry(tenant, original, {"scope": "failed"}, HTTP_IDEMPOTENCY_KEY="retry-1")
    other_body = retry(tenant, original, {"scope": "all_unsent"}, HTTP_IDEMPOTENCY_KEY="retry-1")

    assert (first.status_code, replay.status_code) == (202, 202)
    assert replay.content == first.content
    assert replay["Idempotent-Replayed"] == "true"
    assert other_body.status_code == 409
    assert BulkSend.objects.filter(retry_of=original).count() == 1


def test_a_refused_retry_keeps_no_idempotency_key(tenant: Tenant) -> None:
    original, _ = make_send(tenant, [(MessageStatus.FAILED, "131026")])

    assert retry(tenant, original, {"scope": "x"}, HTTP_IDEMPOTENCY_KEY="k").status_code == 400
    assert not IdempotencyKey.objects.filter(key="k").exists()


def test_the_admin_action_retries_the_failed_ones(admin_client: Client, tenant: Tenant) -> None:
    with_failures, messages = make_send(
        tenant, [(MessageStatus.FAILED, "131026"), (MessageStatus.SENT, None)]
    )
    all_sent, _ = make_send(tenant, [(MessageStatus.SENT, None)])

    response = admin_client.post(
        CHANGELIST,
        {"action": "retry_failed", "_selected_action": [str(with_failures.pk), str(all_sent.pk)]},
        follow=True,
    )

    assert response.status_code == 200
    [made] = BulkSend.objects.filter(retry_of=with_failures)
    assert set(messages_of(made.pk)) == {messages[0].recipient_phone}
    assert not BulkSend.objects.filter(retry_of=all_sent).exists()
    shown = [str(message) for message in response.context["messages"]]
    assert any(f"as {made.pk}" in text for text in shown), shown
    assert any(NOTHING_TO_RETRY in text for text in shown), shown


# --- never twice, across a chain of retries ---------------------------------------------------


def settle(message: Message, status: str) -> None:
    """Give `message` an outcome as the drain and Meta's webhooks would, and finish its send when
    nothing is left pending (counters recounted, as the lifecycle keeps them)."""
    fields: dict[str, Any] = {"status": status}
    if status in REACHED:
        fields.update(sent_at=timezone.now(), wamid=f"wamid.{uuid.uuid4().hex}")
    Message.objects.filter(pk=message.pk).update(**fields)
    recount(message.bulk_send_id)


def recount(bulk_send_id: Any) -> None:
    counts = Message.objects.filter(bulk_send_id=bulk_send_id).aggregate(
        pending=Count("id", filter=Q(status__in=[MessageStatus.PENDING, MessageStatus.SENDING])),
        sent=Count("id", filter=Q(status__in=REACHED)),
        delivered=Count("id", filter=Q(status__in=[MessageStatus.DELIVERED, MessageStatus.READ])),
        read=Count("id", filter=Q(status=MessageStatus.READ)),
        failed=Count("id", filter=Q(status=MessageStatus.FAILED)),
        cancelled=Count("id", filter=Q(status=MessageStatus.CANCELLED)),
    )
    finished = counts["pending"] == 0
    BulkSend.objects.filter(pk=bulk_send_id).update(
        **{f"{name}_count": value for name, value in counts.items()},
        completed_at=timezone.now() if finished else None,
        status=BulkSendStatus.PARTIAL if finished else BulkSendStatus.PROCESSING,
    )


OUTCOMES = st.sampled_from(
    [
        MessageStatus.SENT,
        MessageStatus.DELIVERED,
        MessageStatus.READ,
        MessageStatus.FAILED,
        "failed-after-sent",
        MessageStatus.PENDING,  # still to go: the retry is unfinished
        MessageStatus.CANCELLED,
    ]
)


def reach_counts(phones: list[str]) -> dict[str, int]:
    """How many messages that reached Meta, or may still go out, each phone has in all sends."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT recipient_phone, count(*) FROM {Message._meta.db_table}
                 WHERE recipient_phone = ANY(%s)
                   AND (status NOT IN ('failed', 'cancelled') OR sent_at IS NOT NULL)
                 GROUP BY recipient_phone""",
            [phones],
        )
        return dict(cursor.fetchall())


@settings(
    max_examples=25,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    size=st.integers(min_value=1, max_value=6),
    rounds=st.lists(
        st.tuples(
            st.sampled_from(list(RetryScope)),
            st.integers(min_value=0, max_value=10),  # which send of the chain is retried
            st.lists(OUTCOMES, min_size=6, max_size=6),  # what becomes of its messages
        ),
        min_size=1,
        max_size=6,
    ),
    first_outcomes=st.lists(OUTCOMES, min_size=6, max_size=6),
)
def test_no_recipient_gets_two_messages_across_a_chain_of_retries(
    tenant: Tenant,
    size: int,
    rounds: list[tuple[RetryScope, int, list[str]]],
    first_outcomes: list[str],
) -> None:
    """Whatever the outcomes, the scopes and which send of the chain is retried: each recipient
    has at most one message that reached Meta or may still go out, and a retry's messages carry
    the first send's variables."""
    outcomes = [
        (MessageStatus.FAILED, "after-sent") if status == "failed-after-sent" else (status, "1")
        for status in first_outcomes[:size]
    ]
    # A message still pending in a finished send cannot be: the first send is finished unless
    # one is pending.
    still_pending = any(status == MessageStatus.PENDING for status, _ in outcomes)
    first, first_messages = make_send(tenant, outcomes, finished=not still_pending)
    phones = [m.recipient_phone for m in first_messages]
    chain = [first]
    for scope, pick, later in rounds:
        source = chain[pick % len(chain)]
        source.refresh_from_db()
        try:
            outcome = bulk_send_retry(bulk_send=source, created_by=None, scope=scope)
        except ConflictError:  # a 409 (nothing to retry, still running) is an answer
            continue
        made = outcome.accepted.bulk_send
        if not outcome.created:
            continue
        chain.append(made)
        assert max(reach_counts(phones).values()) <= 1
        for message, status in zip(Message.objects.filter(bulk_send=made), later, strict=False):
            index = phones.index(message.recipient_phone)
            assert message.variables == variables(f"n{index}")
            if status == "failed-after-sent":
                Message.objects.filter(pk=message.pk).update(
                    sent_at=timezone.now(), wamid=f"wamid.{uuid.uuid4().hex}"
                )
                status = MessageStatus.FAILED
            settle(message, status)
        assert max(reach_counts(phones).values(), default=0) <= 1


# --- concurrent retries -----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_retries_asked_at_once_make_one_and_answer_it_to_both() -> None:
    """Two retries of a chain wait for its lock (held here, as by a retry being made); once it
    is free, one makes the retry and the other answers it, never a second copy."""
    tenant = make_tenant("Mindo")
    original, messages = make_send(
        tenant, [(MessageStatus.FAILED, "131026"), (MessageStatus.FAILED, "131047")]
    )
    holder = psycopg.connect(**connection.get_connection_params())
    holder.execute(
        "SELECT pg_advisory_xact_lock(%s, hashtext(%s::text))", [CHAIN_LOCK_CLASS, original.pk]
    )
    outcomes: list[Any] = []

    def ask() -> None:
        try:
            source = BulkSend.objects.get(pk=original.pk)
            outcomes.append(
                bulk_send_retry(bulk_send=source, created_by=None, scope=RetryScope.FAILED)
            )
        finally:
            connection.close()

    threads = [threading.Thread(target=ask) for _ in range(2)]
    try:
        for thread in threads:
            thread.start()
        wait_for(lambda: sessions_waiting_on_locks() >= 2, timeout=60, what="both retries to wait")
    finally:
        holder.rollback()
        holder.close()
    for thread in threads:
        thread.join(60)

    [made] = BulkSend.objects.filter(retry_of=original)
    assert sorted(outcome.created for outcome in outcomes) == [False, True]
    assert {outcome.accepted.bulk_send.pk for outcome in outcomes} == {made.pk}
    assert set(messages_of(made.pk)) == {m.recipient_phone for m in messages}
