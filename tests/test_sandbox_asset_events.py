"""The sandbox produces each of Meta's webhooks about templates, numbers and accounts
(`POST /_sandbox/events/...`), signed as Meta signs; the service, behind a live server, ends in
the state each one describes. Its status webhooks carry Meta's `pricing`, which the messages
keep."""

from __future__ import annotations

import urllib.error
from typing import Any

import orjson
import pytest

from bulksend.lifecycle import bulk_send_resume
from bulksend.models import BulkSend, BulkSendStatus
from messaging.models import Message, MessageStatus
from meta_sandbox import SandboxThread
from templates_app.models import AccountEvent, MessageTemplate, PhoneNumber
from tests import factories
from tests.conftest import Tenant
from tests.delivery_support import (  # noqa: F401 (fixtures)
    delivery_redis_fixture,
    drain_to_completion,
    sandbox_fixture,
    send_bulk,
    wait_for,
    webhook_url_fixture,
    welcome_recipients,
)
from webhooks.processing import webhook_events_apply_pending

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def posting(sandbox: SandboxThread, webhook_url: str) -> SandboxThread:
    """The sandbox, posting its webhooks to the live server's endpoint."""
    sandbox.control("config", {"webhook_url": webhook_url})
    return sandbox


def sandbox_event(sandbox: SandboxThread, name: str, body: dict[str, Any]) -> dict[str, Any]:
    """Have the sandbox post one event and wait until the service has applied it: the endpoint
    answered once the body was stored, and the applier runs after the answer."""
    answer: dict[str, Any] = sandbox.control(f"events/{name}", body)
    assert answer["status"] == 200, answer
    webhook_events_apply_pending(wait=True)
    return answer


def running_send(tenant: Tenant) -> BulkSend:
    bulk_send = factories.make_bulk_send(
        tenant.number, tenant.template, status=BulkSendStatus.PROCESSING
    )
    factories.make_message(bulk_send)
    return bulk_send


def fresh(row: Any) -> Any:
    row.refresh_from_db()
    return row


def template_ref(template: MessageTemplate) -> dict[str, str]:
    return {
        "waba_id": template.business_account.waba_id,
        "name": template.name,
        "language": template.language,
    }


def test_a_template_paused_by_the_sandbox_halts_its_send_until_reinstated(
    tenant: Tenant, posting: SandboxThread
) -> None:
    bulk_send = running_send(tenant)

    answer = sandbox_event(
        posting,
        "template-status",
        {**template_ref(tenant.template), "event": "PAUSED", "title": "FIRST_PAUSE"},
    )

    assert answer["field"] == "message_template_status_update"
    assert fresh(tenant.template).status == "PAUSED"
    halted = fresh(bulk_send)
    assert halted.status == BulkSendStatus.FAILED
    assert "FIRST_PAUSE" in halted.status_reason
    assert bulk_send_resume(bulk_send=halted) is False

    sandbox_event(
        posting, "template-status", {**template_ref(tenant.template), "event": "REINSTATED"}
    )

    assert fresh(tenant.template).status == "APPROVED"
    assert bulk_send_resume(bulk_send=halted) is True
    assert fresh(bulk_send).status == BulkSendStatus.PROCESSING


def test_a_template_quality_update_from_the_sandbox_is_kept(
    tenant: Tenant, posting: SandboxThread
) -> None:
    sandbox_event(posting, "template-quality", {**template_ref(tenant.template), "score": "RED"})

    assert fresh(tenant.template).quality_score == "RED"


def test_a_number_flagged_by_the_sandbox_turns_red_and_halts_its_send(
    tenant: Tenant, posting: SandboxThread
) -> None:
    bulk_send = running_send(tenant)

    sandbox_event(
        posting,
        "number-quality",
        {"phone_number_id": tenant.number.phone_number_id, "event": "FLAGGED"},
    )

    assert fresh(tenant.number).quality_rating == "RED"
    assert fresh(bulk_send).halted_at is not None


def test_a_throughput_upgrade_from_the_sandbox_raises_the_numbers_rate(
    tenant: Tenant, posting: SandboxThread
) -> None:
    sandbox_event(posting, "throughput-upgrade", {"phone_number_id": tenant.number.phone_number_id})

    number = PhoneNumber.objects.get(pk=tenant.number.pk)
    assert (number.throughput_per_second, number.messaging_limit_tier) == (1000, "TIER_1000")


@pytest.mark.parametrize(("limit", "tier"), [(10000, "TIER_10K"), (-1, "TIER_UNLIMITED")])
def test_a_capability_update_from_the_sandbox_sets_the_portfolios_tier(
    tenant: Tenant, posting: SandboxThread, limit: int, tier: str
) -> None:
    sandbox_event(
        posting,
        "capability",
        {"waba_id": tenant.account.waba_id, "max_daily_conversations_per_business": limit},
    )

    assert fresh(tenant.account).messaging_limit_tier == tier


def test_an_account_restricted_by_the_sandbox_halts_its_sends_and_alerts_are_kept(
    tenant: Tenant, posting: SandboxThread
) -> None:
    bulk_send = running_send(tenant)

    sandbox_event(
        posting,
        "account-update",
        {
            "waba_id": tenant.account.waba_id,
            "event": "ACCOUNT_RESTRICTION",
            "restrictions": ["RESTRICTED_BIZ_INITIATED_MESSAGING"],
        },
    )
    sandbox_event(
        posting,
        "account-alert",
        {"waba_id": tenant.account.waba_id, "alert_type": "OBA_REJECTED", "severity": "CRITICAL"},
    )

    assert fresh(bulk_send).halted_at is not None
    events = AccountEvent.objects.filter(business_account=tenant.account).order_by("id")
    assert [(e.field, e.event) for e in events] == [
        ("account_update", "ACCOUNT_RESTRICTION"),
        ("account_alerts", "OBA_REJECTED"),
    ]


def _refusal(sandbox: SandboxThread, name: str, body: dict[str, Any]) -> tuple[int, str]:
    with pytest.raises(urllib.error.HTTPError) as refused:
        sandbox.control(f"events/{name}", body)
    return refused.value.code, orjson.loads(refused.value.read())["error"]


def test_the_sandbox_names_what_is_missing_and_needs_a_webhook_url(
    tenant: Tenant, sandbox: SandboxThread, webhook_url: str
) -> None:
    code, error = _refusal(sandbox, "capability", {"waba_id": tenant.account.waba_id})
    assert code == 409
    assert "webhook_url" in error

    sandbox.control("config", {"webhook_url": webhook_url})
    code, error = _refusal(sandbox, "capability", {"waba_id": tenant.account.waba_id})
    assert code == 400
    assert "max_daily_conversations_per_business" in error
    code, error = _refusal(sandbox, "number-quality", {"phone_number_id": "1", "event": "FLAGGED"})
    assert (code, "phone_number_id" in error) == (400, True)


def test_the_sandboxs_status_webhooks_carry_pricing_that_the_messages_keep(
    tenant: Tenant, posting: SandboxThread
) -> None:
    accepted = send_bulk(tenant, welcome_recipients(5))
    drain_to_completion(accepted["bulk_send_id"])

    def priced() -> bool:
        webhook_events_apply_pending(wait=True)
        messages = Message.objects.filter(bulk_send_id=accepted["bulk_send_id"])
        return all(m.pricing_category for m in messages)

    wait_for(priced, what="the sandbox's status webhooks")
    for message in Message.objects.filter(bulk_send_id=accepted["bulk_send_id"]):
        assert message.status in (MessageStatus.SENT, MessageStatus.DELIVERED)
        assert (message.pricing_model, message.pricing_category, message.pricing_type) == (
            "PMP",
            "marketing",
            "regular",
        )
