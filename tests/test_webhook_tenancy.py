"""A status webhook changes only the messages of the number it names, found by data we signed."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from messaging.models import (
    CALLBACK_DATA_PREFIX,
    Message,
    MessageStatus,
    callback_data_for,
    message_id_from_callback_data,
)
from tests import meta_payloads as meta
from tests.conftest import Tenant

T0 = meta.T0


@pytest.fixture
def client() -> Client:
    return Client(raise_request_exception=False)


def post_from(client: Client, phone_number_id: str, *statuses: dict[str, Any]) -> None:
    document = meta.notification(
        meta.entry(meta.messages_change(statuses, phone_number_id=phone_number_id))
    )
    response = meta.post(client, document)
    assert response.status_code == 200, response.content


@pytest.mark.parametrize("kind", ["sent", "failed"])
def test_another_organizations_number_cannot_settle_our_message_by_its_callback_data(
    client: Client, tenant: Tenant, other_tenant: Tenant, kind: str
) -> None:
    bulk_send, [message] = meta.send_with_messages(
        tenant.number, tenant.template, 1, status=MessageStatus.SENDING
    )
    before = meta.assert_counters_exact(bulk_send)

    forged = meta.status(meta.new_wamid(), kind, T0, message_id=message.pk)
    post_from(client, other_tenant.number.phone_number_id, forged)

    message.refresh_from_db()
    assert (message.status, message.wamid) == (MessageStatus.SENDING, None)
    assert meta.assert_counters_exact(bulk_send) == before


def test_another_organizations_number_cannot_move_our_message_by_its_wamid(
    client: Client, tenant: Tenant, other_tenant: Tenant
) -> None:
    bulk_send, [message] = meta.send_with_messages(tenant.number, tenant.template, 1)
    before = meta.assert_counters_exact(bulk_send)

    post_from(client, other_tenant.number.phone_number_id, meta.status(message.wamid, "read", T0))

    message.refresh_from_db()
    assert message.status == MessageStatus.SENT
    assert message.read_at is None
    assert meta.assert_counters_exact(bulk_send) == before


def test_a_status_without_the_number_it_is_about_changes_nothing(
    client: Client, tenant: Tenant
) -> None:
    _send, [message] = meta.send_with_messages(tenant.number, tenant.template, 1)
    change = meta.messages_change([meta.status(message.wamid, "delivered", T0)])
    del change["value"]["metadata"]
    response = meta.post(client, meta.notification(meta.entry(change)))
    assert response.status_code == 200

    message.refresh_from_db()
    assert message.status == MessageStatus.SENT


def test_the_owning_number_settles_its_message_by_callback_data(
    client: Client, tenant: Tenant
) -> None:
    bulk_send, [message] = meta.send_with_messages(
        tenant.number, tenant.template, 1, status=MessageStatus.SENDING
    )
    wamid = meta.new_wamid()

    post_from(
        client, tenant.number.phone_number_id, meta.status(wamid, "sent", T0, message_id=message.pk)
    )

    message.refresh_from_db()
    assert (message.status, message.wamid) == (MessageStatus.SENT, wamid)
    meta.assert_counters_exact(bulk_send)


@pytest.mark.parametrize(
    "callback_data",
    [
        pytest.param(lambda pk: f"{CALLBACK_DATA_PREFIX}{pk}", id="sequential-id-unsigned"),
        pytest.param(lambda pk: f"{CALLBACK_DATA_PREFIX}{pk}:{'0' * 32}", id="wrong-mac"),
        pytest.param(
            lambda pk: callback_data_for(pk + 1).replace(str(pk + 1), str(pk), 1),
            id="another-messages-mac",
        ),
    ],
)
def test_guessed_callback_data_finds_no_message(
    client: Client, tenant: Tenant, callback_data: Any
) -> None:
    bulk_send, [message] = meta.send_with_messages(
        tenant.number, tenant.template, 1, status=MessageStatus.SENDING
    )

    guessed = meta.status(meta.new_wamid(), "sent", T0, callback_data=callback_data(message.pk))
    post_from(client, tenant.number.phone_number_id, guessed)

    message.refresh_from_db()
    assert (message.status, message.wamid) == (MessageStatus.SENDING, None)
    assert Message.objects.filter(bulk_send=bulk_send, status=MessageStatus.SENT).count() == 0


def test_callback_data_names_its_message_and_nothing_else() -> None:
    data = callback_data_for(42)
    assert message_id_from_callback_data(data) == 42
    assert message_id_from_callback_data(data + "0") is None
    assert message_id_from_callback_data(data.upper()) is None
    assert len(data) <= 512  # Meta's limit for biz_opaque_callback_data
