"""The single send's two large statements are prepared statements on a kept connection (planned
once, not at every send), and never behind a pooler in transaction mode, where a statement
prepared on one server connection would be missing on the next."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test import override_settings

from messaging.models import Message, MessageStatus
from mindo.prepared import prepared_cursor
from tests.conftest import Tenant
from tests.delivery_support import (
    ScriptedMeta,
    delivery_redis_fixture,  # noqa: F401  (fixtures)
    scripted_meta_fixture,  # noqa: F401
)

pytestmark = pytest.mark.django_db

SEND_URL = "/api/v1/meta-templates/send/"
PROBE = "SELECT %s::int + 40 AS probe_of_prepared_statements"


def prepared() -> list[str]:
    """The statements prepared on this connection."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


def run_probe(times: int) -> list[Any]:
    answers = []
    for value in range(times):
        with prepared_cursor() as cursor:
            cursor.execute(PROBE, [value])
            answers.append(cursor.fetchone()[0])
    return answers


def test_a_statement_run_again_on_a_connection_is_prepared_once() -> None:
    assert run_probe(4) == [40, 41, 42, 43]

    assert [s for s in prepared() if "probe_of_prepared_statements" in s] == [
        "SELECT $1::int + 40 AS probe_of_prepared_statements"
    ]


@override_settings(DATABASE_POOLING="transaction")
def test_behind_a_transaction_pooler_nothing_is_prepared() -> None:
    assert run_probe(4) == [40, 41, 42, 43]

    assert not [s for s in prepared() if "probe_of_prepared_statements" in s]


def test_single_sends_run_their_write_and_settle_as_prepared_statements(
    tenant: Tenant, scripted_meta: ScriptedMeta
) -> None:
    body = {
        "phone_number_id": tenant.number.phone_number_id,
        "template_name": "welcome_message",
        "language": "es",
        "variables": {"name": "Juan Perez", "code": "ABC123"},
        "button_variables": {"button_0": "ABC-123"},
    }
    for n in range(3):
        answer = tenant.client.post(
            SEND_URL, {**body, "recipient_phone": f"+549111234567{n}"}, format="json"
        )
        assert answer.status_code == 200, answer.content

    statements = [" ".join(statement.split()) for statement in prepared()]
    assert any(s.startswith("WITH list AS") for s in statements), statements  # the write
    assert any(s.startswith("WITH old AS") for s in statements), statements  # the settle
    assert Message.objects.filter(status=MessageStatus.SENT).count() == 3
