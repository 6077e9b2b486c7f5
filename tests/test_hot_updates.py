"""Meta's status webhooks update a message in place (HOT: no index entry written), the phase the
indexes read follows the status, and the drain's claim and the reaper still read an index."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from bulksend.window_sql import QUOTA_SQL, window_params, window_sql
from messaging.models import Message, MessagePhase, MessageStatus
from tests import factories
from tests import meta_payloads as meta
from tests.conftest import Tenant
from tests.plans import drain_statements, messages_indexes_only, plan_indexes

pytestmark = pytest.mark.django_db


def updates_of_messages() -> tuple[int, int]:
    """(updates, HOT updates) of the messages table in this transaction so far."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables WHERE relname = %s",
            [Message._meta.db_table],
        )
        row = cursor.fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def post(client: Client, *statuses: dict[str, Any]) -> None:
    response = meta.post(client, meta.statuses_notification(*statuses))
    assert response.status_code == 200, response.content


@pytest.mark.parametrize(
    "kinds",
    [("delivered",), ("delivered", "read"), ("read",), ("failed",), ("delivered", "failed")],
)
def test_status_webhooks_after_sent_update_messages_in_place(
    client: Client, tenant: Tenant, kinds: tuple[str, ...]
) -> None:
    bulk_send, messages = meta.send_with_messages(tenant.number, tenant.template, 3)
    before = updates_of_messages()

    for step, kind in enumerate(kinds, start=1):
        post(client, *(meta.status(m.wamid or "", kind, meta.T0 + step) for m in messages))

    updates, hot = (now - then for now, then in zip(updates_of_messages(), before, strict=True))
    assert updates >= len(messages)
    assert hot == updates
    meta.assert_counters_exact(bulk_send)


@pytest.mark.parametrize(
    ("status", "has_wamid", "phase"),
    [
        (MessageStatus.PENDING, False, MessagePhase.OPEN),
        (MessageStatus.SENDING, False, MessagePhase.OPEN),
        (MessageStatus.SENT, True, MessagePhase.HANDED),
        (MessageStatus.SENT, False, MessagePhase.HANDED),
        (MessageStatus.DELIVERED, True, MessagePhase.HANDED),
        (MessageStatus.READ, True, MessagePhase.HANDED),
        (MessageStatus.FAILED, True, MessagePhase.HANDED),
        (MessageStatus.FAILED, False, MessagePhase.CLOSED),
        (MessageStatus.CANCELLED, False, MessagePhase.CLOSED),
    ],
)
def test_the_phase_follows_the_status_and_the_wamid(
    tenant: Tenant, status: str, has_wamid: bool, phase: MessagePhase
) -> None:
    bulk_send = factories.make_bulk_send(tenant.number, tenant.template)
    message = factories.make_message(
        bulk_send, status=status, wamid=meta.new_wamid() if has_wamid else None
    )

    assert Message.objects.values_list("phase", flat=True).get(pk=message.pk) == phase


def test_the_claim_and_the_reaper_read_their_indexes(tenant: Tenant) -> None:
    bulk_send = factories.make_bulk_send(tenant.number, tenant.template)
    statements = drain_statements(bulk_send.pk, timezone.now())
    [claim, *reaper] = statements.values()

    assert "message_send_phase_id" in plan_indexes(*claim, seqscan=False)
    for statement in reaper:
        assert plan_indexes(*statement, seqscan=False) == {"message_open_lease"}


def quota_statement(tenant: Tenant, statement: str) -> tuple[str, dict[str, Any]]:
    bulk_send = factories.make_bulk_send(tenant.number, tenant.template)
    params = window_params(account_id=tenant.number.business_account_id, now=timezone.now())
    params.update(send=bulk_send.pk, number=tenant.number.pk, claimed=[0], phones=["+1"])
    return window_sql(statement), params


def test_the_quota_reads_a_sends_unsent_messages_by_phase(tenant: Tenant) -> None:
    statement = quota_statement(tenant, QUOTA_SQL)
    messages_indexes_only("message_send_phase_id")

    assert "message_send_phase_id" in plan_indexes(*statement, seqscan=False)
