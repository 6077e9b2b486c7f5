"""Meta's rules the first pass at them left out: a `failed` status with 131049 starts the
recipient's cooldown; a webhook body too large for one transaction applies opt-outs as a small
one does; the sandbox refuses a paused or disabled template with Meta's own codes; 2635 halts."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from messaging.cooldown import COOLDOWN_STEPS
from messaging.models import MarketingCooldown, Message, Suppression, SuppressionSource
from meta.error_codes import ERROR_CODES, ErrorClass
from meta_sandbox import SandboxThread
from tests import meta_payloads as meta
from tests.conftest import Tenant
from tests.test_sandbox import CATALOG, config, error_of, send, welcome
from webhooks import processing
from webhooks.models import WebhookEvent

USER = "AR.1502576394655843"


def failed(message: Message, code: int, seconds: int = 5) -> dict[str, Any]:
    errors = [meta.error(code, "Held back", "Meta held it back.")]
    return meta.status(
        message.wamid or "",
        "failed",
        meta.T0 + seconds,
        recipient_id=message.recipient[1:],
        errors=errors,
    )


@pytest.mark.django_db
def test_a_failed_status_with_131049_starts_the_recipients_cooldown(
    client: Client, tenant: Tenant
) -> None:
    _, [held, other] = meta.send_with_messages(tenant.number, tenant.template, 2)

    event = meta.post_changes(
        client, tenant.account, meta.messages_change([failed(held, 131049), failed(other, 131026)])
    )

    [cooldown] = MarketingCooldown.objects.all()
    assert (cooldown.phone, cooldown.strikes) == (held.recipient_phone, 1)
    assert cooldown.business_account_id == tenant.account.pk
    assert cooldown.until == event.received_at + COOLDOWN_STEPS[0]
    # The message itself stays failed with Meta's code: status never moves back.
    assert (meta.fresh(held).status, meta.fresh(held).error_code) == ("failed", "131049")


@pytest.mark.django_db
def test_a_131049_status_for_a_message_to_a_user_id_cools_that_user_id(
    client: Client, tenant: Tenant
) -> None:
    _, [message] = meta.send_with_messages(tenant.number, tenant.template, 1)
    Message.objects.filter(pk=message.pk).update(recipient_phone=None, recipient_user_id=USER)
    status = failed(message, 131049)
    del status["recipient_id"]
    status["recipient_user_id"] = USER

    meta.post_changes(client, tenant.account, meta.messages_change([status]))

    assert list(MarketingCooldown.objects.values_list("phone", flat=True)) == [USER]


@pytest.fixture
def small_slices(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """Bodies of more than 2 statuses take the large-body path, a slice of 2 per transaction."""
    monkeypatch.setattr(processing, "STATUS_SLICE", 2)
    return 2


@pytest.mark.django_db
def test_a_large_body_puts_131050_recipients_on_the_list_and_cools_131049_ones(
    client: Client, tenant: Tenant, small_slices: int
) -> None:
    _, messages = meta.send_with_messages(tenant.number, tenant.template, 5)
    opted_out, held = messages[0], messages[4]
    statuses = [failed(opted_out, 131050)]
    statuses += [meta.status(m.wamid or "", "delivered", meta.T0 + 5) for m in messages[1:4]]
    statuses.append(failed(held, 131049))
    assert len(statuses) > small_slices

    event = meta.post_changes(client, tenant.account, meta.messages_change(statuses))

    assert WebhookEvent.objects.get(pk=event.pk).error == ""
    [entry] = Suppression.objects.filter(organization=tenant.organization)
    assert (entry.phone, entry.source) == (opted_out.recipient_phone, SuppressionSource.META_131050)
    assert list(MarketingCooldown.objects.values_list("phone", flat=True)) == [held.recipient_phone]


@pytest.mark.django_db
def test_a_large_body_applies_user_preferences_too(
    client: Client, tenant: Tenant, small_slices: int
) -> None:
    _, messages = meta.send_with_messages(tenant.number, tenant.template, 3)
    statuses = [meta.status(m.wamid or "", "delivered", meta.T0 + 5) for m in messages]
    preferences = {
        "field": "user_preferences",
        "value": {
            "messaging_product": "whatsapp",
            "metadata": {"phone_number_id": tenant.number.phone_number_id},
            "user_preferences": [
                {
                    "user_id": USER,
                    "category": "marketing_messages",
                    "value": "stop",
                    "detail": "User requested to stop marketing messages",
                    "timestamp": meta.T0,
                }
            ],
        },
    }

    meta.post_changes(client, tenant.account, meta.messages_change(statuses), preferences)

    assert list(Suppression.objects.values_list("phone", flat=True)) == [USER]


# --- the sandbox and Meta's template refusals ---------------------------------------------------


def _with_refused_templates() -> dict[str, Any]:
    catalog = copy.deepcopy(CATALOG)
    [welcome_template] = [
        t for t in catalog["accounts"][0]["templates"] if t["name"] == "welcome_message"
    ]
    for name, status in (("paused_offer", "PAUSED"), ("disabled_offer", "DISABLED")):
        catalog["accounts"][0]["templates"].append(
            {**welcome_template, "id": f"9{len(name)}{status}", "name": name, "status": status}
        )
    return catalog


@pytest.fixture(scope="module")
def refusing_sandbox() -> Iterator[SandboxThread]:
    with SandboxThread(config(catalog=_with_refused_templates())) as running:
        yield running


@pytest.mark.parametrize(
    ("template", "code", "title"),
    [
        ("paused_offer", 132015, "Template is Paused"),
        ("disabled_offer", 132016, "Template is Disabled"),
    ],
)
def test_the_sandbox_refuses_a_paused_or_disabled_template_with_metas_code(
    refusing_sandbox: SandboxThread, template: str, code: int, title: str
) -> None:
    body = welcome()
    body["template"]["name"] = template

    response = send(refusing_sandbox, body)

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == code
    assert title in error["message"]


def test_the_sandbox_takes_a_user_id_in_recipient_and_answers_with_it(
    refusing_sandbox: SandboxThread,
) -> None:
    body = welcome()
    del body["to"]
    body["recipient"] = USER

    answer = send(refusing_sandbox, body)

    assert answer.status_code == 200, answer.text
    assert answer.json()["contacts"] == [{"input": USER, "user_id": USER}]
    body["recipient"] = "not-a-user-id"
    refused = send(refusing_sandbox, body)
    assert error_of(refused)["code"] == 100


def test_a_deprecated_graph_version_halts_the_send() -> None:
    # Every request at that version fails alike: an operator must move the version.
    assert ERROR_CODES["2635"].error_class is ErrorClass.HALT
