"""`Idempotency-Key` on send-bulk/ and send/ (mindo.idempotency): a repeated request gets the first
answer and creates nothing; another request with the key is a 409; keys are the organization's
and live 24 hours."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from bulksend.models import BulkSend
from messaging.models import Message
from mindo.idempotency import (
    IN_PROGRESS,
    KEY_TOO_LONG,
    OTHER_REQUEST,
    REPLAYED_HEADER,
    idempotency_keys_purge,
)
from mindo.models import IdempotencyKey
from mindo.tasks import purge_idempotency_keys
from tests.conftest import Tenant, TickingClock, make_tenant
from tests.delivery_support import (
    ScriptedMeta,
    delivery_redis_fixture,  # noqa: F401
    meta_error,
    scripted_meta_fixture,  # noqa: F401
    sessions_waiting_on_locks,
    wait_for,
)
from tests.test_send_bulk import REQUEST, URL
from tests.test_send_message import SEND_URL, request_body

KEY = "5b0d9d1e-6d1a-4c4e-9a57-7a3f1e0c2b11"


def send_bulk(tenant: Tenant, body: dict[str, Any] | None = None, key: str | None = KEY) -> Any:
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    return tenant.client.post(URL, body or REQUEST, format="json", **headers)


def send_one(tenant: Tenant, key: str = KEY, **fields: Any) -> Any:
    body = request_body(tenant, **fields)
    return tenant.client.post(SEND_URL, body, format="json", HTTP_IDEMPOTENCY_KEY=key)


# --- send-bulk/ ----------------------------------------------------------------------------------


def test_a_repeated_send_bulk_gets_the_first_answer_and_creates_nothing(tenant: Tenant) -> None:
    first = send_bulk(tenant)
    again = send_bulk(tenant)

    assert first.status_code == again.status_code == 202
    assert again.content == first.content
    assert again[REPLAYED_HEADER] == "true"
    assert not first.has_header(REPLAYED_HEADER)
    assert BulkSend.objects.count() == 1
    assert Message.objects.count() == 3


def test_a_replay_is_the_first_answers_bytes_in_its_key_order_and_spanish_text(
    tenant: Tenant,
) -> None:
    tenant.number.verified_name = "Clínica Ñandú — Peña"
    tenant.number.save(update_fields=["verified_name"])

    first = send_bulk(tenant)
    again = send_bulk(tenant)

    assert again.content == first.content
    assert again["Content-Type"] == first["Content-Type"] == "application/json"
    assert "Clínica Ñandú — Peña".encode() in again.content
    # The serializer's order, not jsonb's (shorter keys first), which put `status` first.
    assert next(iter(json.loads(again.content))) == "bulk_send_id"


def test_the_same_key_with_another_body_is_a_409(tenant: Tenant) -> None:
    send_bulk(tenant)
    other = {**REQUEST, "recipients": REQUEST["recipients"][:1]}

    response = send_bulk(tenant, other)

    assert (response.status_code, response.json()) == (409, {"error": OTHER_REQUEST})
    assert BulkSend.objects.count() == 1


def test_the_same_key_on_another_endpoint_is_a_409(
    tenant: Tenant, scripted_meta: ScriptedMeta
) -> None:
    send_bulk(tenant)

    response = send_one(tenant)

    assert (response.status_code, response.json()) == (409, {"error": OTHER_REQUEST})
    assert scripted_meta.requests == []


def test_without_a_key_every_request_creates_its_send(tenant: Tenant) -> None:
    send_bulk(tenant, key=None)
    send_bulk(tenant, key=None)

    assert BulkSend.objects.count() == 2
    assert not IdempotencyKey.objects.exists()


def test_keys_belong_to_the_organization(tenant: Tenant, other_tenant: Tenant) -> None:
    mine = send_bulk(tenant)
    theirs = send_bulk(
        other_tenant, {**REQUEST, "phone_number_id": other_tenant.number.phone_number_id}
    )

    assert mine.status_code == theirs.status_code == 202
    assert mine.json()["bulk_send_id"] != theirs.json()["bulk_send_id"]
    assert not theirs.has_header(REPLAYED_HEADER)


def test_a_request_refused_for_its_fields_keeps_no_answer(tenant: Tenant) -> None:
    broken = {**REQUEST, "recipients": [{**REQUEST["recipients"][0], "phone": "12345"}]}

    refused = send_bulk(tenant, broken)
    fixed = send_bulk(tenant)

    assert refused.status_code == 400
    assert fixed.status_code == 202
    assert not fixed.has_header(REPLAYED_HEADER)
    assert BulkSend.objects.count() == 1


def test_a_refusal_after_the_request_began_is_kept_and_given_again(tenant: Tenant) -> None:
    unknown = {**REQUEST, "template_name": "no_such_template"}

    first = send_bulk(tenant, unknown)
    again = send_bulk(tenant, unknown)

    assert first.status_code == again.status_code == 404
    assert again.content == first.content
    assert again[REPLAYED_HEADER] == "true"


@pytest.mark.parametrize("key", ["", "   "])
def test_a_blank_key_is_a_400_naming_the_header(tenant: Tenant, key: str) -> None:
    response = send_bulk(tenant, key=key)

    assert response.status_code == 400
    assert list(response.json()) == ["Idempotency-Key"]
    assert not BulkSend.objects.exists()


def test_a_key_longer_than_255_characters_is_a_400(tenant: Tenant) -> None:
    too_long = send_bulk(tenant, key="k" * 256)
    longest = send_bulk(tenant, key="k" * 255)

    assert (too_long.status_code, too_long.json()) == (400, {"Idempotency-Key": [KEY_TOO_LONG]})
    assert longest.status_code == 202
    assert BulkSend.objects.count() == 1


def test_a_key_is_forgotten_after_24_hours(tenant: Tenant, frozen_now: TickingClock) -> None:
    first = send_bulk(tenant)
    frozen_now.current += timedelta(hours=23, minutes=59)
    within = send_bulk(tenant)
    frozen_now.current += timedelta(minutes=2)
    after = send_bulk(tenant)

    assert within.json()["bulk_send_id"] == first.json()["bulk_send_id"]
    assert after.status_code == 202
    assert after.json()["bulk_send_id"] != first.json()["bulk_send_id"]
    assert BulkSend.objects.count() == 2


def test_the_purge_deletes_only_expired_keys(tenant: Tenant, frozen_now: TickingClock) -> None:
    send_bulk(tenant, key="old")
    frozen_now.current += timedelta(hours=12)
    send_bulk(tenant, key="recent")
    frozen_now.current += timedelta(hours=12, minutes=1)

    assert idempotency_keys_purge() == 1
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["recent"]


# --- two requests with one key at once -----------------------------------------------------------


def _fingerprint_of_request(tenant: Tenant) -> str:
    """The fingerprint the view computes for `send_bulk(tenant)`, read from a kept claim."""
    response = send_bulk(tenant, key="probe")
    assert response.status_code == 202
    probe = IdempotencyKey.objects.get(key="probe")
    BulkSend.objects.filter(pk=response.json()["bulk_send_id"]).delete()
    probe.delete()
    return probe.fingerprint


def _claim_uncommitted(organization_id: int, fingerprint: str) -> psycopg.Connection[Any]:
    """Another request's claim of KEY, inside a transaction it has not committed yet."""
    other = psycopg.connect(**connection.get_connection_params())
    other.execute(
        "INSERT INTO mindo_idempotencykey (organization_id, key, fingerprint, created_at) "
        "VALUES (%s, %s, %s, now())",
        [organization_id, KEY, fingerprint],
    )
    return other


def _post_in_thread(tenant: Tenant, answers: list[Any]) -> threading.Thread:
    def post() -> None:
        try:
            answers.append(send_bulk(tenant))
        finally:
            connection.close()

    thread = threading.Thread(target=post)
    thread.start()
    return thread


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("first_request_ends", ["committed", "rolled back"])
def test_a_second_request_waits_for_the_first_and_follows_its_outcome(
    first_request_ends: str,
) -> None:
    tenant = make_tenant("Mindo", phone_number_id=REQUEST["phone_number_id"])
    first = _claim_uncommitted(tenant.organization.pk, _fingerprint_of_request(tenant))
    answers: list[Any] = []
    try:
        thread = _post_in_thread(tenant, answers)
        wait_for(
            sessions_waiting_on_locks, timeout=30, what="the second request to wait for the key"
        )
        if first_request_ends == "committed":
            # The first request's answer, kept with its claim as the view keeps it.
            first.execute(
                "UPDATE mindo_idempotencykey SET status_code = 202, "
                "content_type = 'application/json', body = %s WHERE key = %s",
                [b'{"bulk_send_id":"first"}', KEY],
            )
            first.commit()
        else:
            first.rollback()
        thread.join(60)
    finally:
        first.close()

    [answer] = answers
    assert answer.status_code == 202
    if first_request_ends == "committed":
        assert answer.json() == {"bulk_send_id": "first"}
        assert answer[REPLAYED_HEADER] == "true"
        assert not BulkSend.objects.exists()
    else:
        assert answer.json()["bulk_send_id"] == str(BulkSend.objects.get().pk)


# --- send/ ---------------------------------------------------------------------------------------


def test_a_repeated_single_send_reaches_meta_once(
    tenant: Tenant, scripted_meta: ScriptedMeta
) -> None:
    first = send_one(tenant)
    again = send_one(tenant)

    assert first.status_code == again.status_code == 200
    assert again.content == first.content
    assert again["Content-Type"] == first["Content-Type"]
    assert again[REPLAYED_HEADER] == "true"
    assert len(scripted_meta.accepted) == 1
    assert Message.objects.count() == 1


def test_a_single_send_in_progress_answers_409_without_calling_meta(
    tenant: Tenant, scripted_meta: ScriptedMeta
) -> None:
    send_one(tenant, key="probe")
    fingerprint = IdempotencyKey.objects.get(key="probe").fingerprint
    IdempotencyKey.objects.filter(key="probe").update(key=KEY, status_code=None, body=None)

    response = send_one(tenant)

    assert (response.status_code, response.json()) == (409, {"error": IN_PROGRESS})
    assert IdempotencyKey.objects.get(key=KEY).fingerprint == fingerprint
    assert len(scripted_meta.requests) == 1  # the probe's


def test_a_single_send_meta_failed_may_be_tried_again_with_its_key(
    tenant: Tenant, scripted_meta: ScriptedMeta
) -> None:
    failing = meta_error(500, 131000, "(#131000) Something went wrong", "Something went wrong")
    scripted_meta.answer = lambda index, body: failing

    failed = send_one(tenant)
    scripted_meta.answer = lambda index, body: None
    retried = send_one(tenant)

    assert failed.status_code == 502
    assert retried.status_code == 200
    assert not retried.has_header(REPLAYED_HEADER)
    assert len(scripted_meta.accepted) == 1


def test_beats_hourly_task_purges_expired_keys(tenant: Tenant, frozen_now: TickingClock) -> None:
    send_bulk(tenant)
    frozen_now.current += timedelta(hours=25)

    assert settings.CELERY_BEAT_SCHEDULE["purge-idempotency-keys"]["task"] == (
        purge_idempotency_keys.name
    )
    assert purge_idempotency_keys() == 1
    assert not IdempotencyKey.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_an_answer_kept_before_bytes_were_kept_replays_as_json_rendered() -> None:
    before, after = (
        ("mindo", "0004_api_key_scope_webhooks"),
        ("mindo", "0005_idempotency_answer_bytes"),
    )
    tenant = make_tenant("Mindo", phone_number_id=REQUEST["phone_number_id"])
    fingerprint = _fingerprint_of_request(tenant)
    executor = MigrationExecutor(connection)
    try:
        executor.migrate([before])
        old_state = executor.loader.project_state([before]).apps
        old_state.get_model("mindo", "IdempotencyKey").objects.create(
            organization_id=tenant.organization.pk,
            key=KEY,
            fingerprint=fingerprint,
            status_code=202,
            body={"bulk_send_id": "first", "verified_name": "Clínica Ñandú"},
            created_at=timezone.now(),
        )

        executor = MigrationExecutor(connection)
        executor.migrate([after])
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())

    again = send_bulk(tenant)

    assert (again.status_code, again["Content-Type"]) == (202, "application/json")
    assert again.content == '{"bulk_send_id":"first","verified_name":"Clínica Ñandú"}'.encode()
    assert again[REPLAYED_HEADER] == "true"
    assert not BulkSend.objects.exists()
