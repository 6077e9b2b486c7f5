"""Meta's events about a send's template, number or account halt it for an operator, and the
events that undo them let the operator resume it (signed bodies through the webhook endpoint)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from bulksend.lifecycle import bulk_send_resume, bulk_send_resume_blocker
from bulksend.models import BulkSend, BulkSendStatus
from messaging.models import Message, MessageStatus
from templates_app.meta_updates import account_restriction_lift
from templates_app.models import (
    AccountEvent,
    MessageTemplate,
    PhoneNumber,
    WhatsAppBusinessAccount,
)
from tests import factories
from tests import meta_payloads as meta
from tests.conftest import Tenant
from tests.meta_payloads import fresh, post_changes


@pytest.fixture
def client() -> Client:
    return Client(raise_request_exception=False)


def running_send(
    tenant: Tenant,
    *,
    sent: int = 2,
    pending: int = 3,
    status: str = BulkSendStatus.PROCESSING,
    template: MessageTemplate | None = None,
    number: PhoneNumber | None = None,
) -> BulkSend:
    """A send in `status` (PROCESSING by default) with `sent` messages out and `pending`
    untried, counters exact."""
    bulk_send = factories.make_bulk_send(
        number or tenant.number, template or tenant.template, status=status
    )
    for _ in range(sent):
        factories.make_message(bulk_send, status=MessageStatus.SENT, wamid=meta.new_wamid())
    for _ in range(pending):
        factories.make_message(bulk_send)
    return fresh(bulk_send)


def account_update(event: str, **value: Any) -> dict[str, Any]:
    return {"field": "account_update", "value": {"event": event, **value}}


def restriction(*kinds: str) -> dict[str, Any]:
    expiration = "2026-12-01T10:00:00+0000"
    return account_update(
        "ACCOUNT_RESTRICTION",
        restriction_info=[{"restriction_type": kind, "expiration": expiration} for kind in kinds],
    )


def pause(reason: str = "NONE", **other: str) -> dict[str, Any]:
    change = meta.template_status_change(
        "PAUSED", name="welcome_message", language="es", reason=reason
    )
    if other:
        change["value"]["other_info"] = other
    return change


# --- templates ---------------------------------------------------------------------------------


def test_a_paused_template_halts_its_running_and_queued_sends_with_metas_reason(
    client: Client, tenant: Tenant
) -> None:
    running = running_send(tenant)
    queued = running_send(tenant, sent=0, status=BulkSendStatus.QUEUED)
    other_template = factories.make_template(tenant.account, name="other_promo")
    elsewhere = running_send(tenant, template=other_template)
    finished = running_send(tenant, pending=0, status=BulkSendStatus.COMPLETED)

    event = post_changes(
        client,
        tenant.account,
        pause("LOW_QUALITY", title="FIRST_PAUSE", description="Paused for 3 hours"),
    )

    running, queued = fresh(running), fresh(queued)
    assert (running.status, queued.status) == (BulkSendStatus.PARTIAL, BulkSendStatus.FAILED)
    for halted in (running, queued):
        assert halted.halted_at is not None
        assert halted.completed_at is None
        assert halted.status_reason == halted.halt_reason
        assert "welcome_message (es)" in halted.status_reason
        assert "PAUSED" in halted.status_reason
        assert "LOW_QUALITY: FIRST_PAUSE: Paused for 3 hours" in halted.status_reason
        meta.assert_counters_exact(halted)
    # Untried messages wait for the resume.
    assert Message.objects.filter(bulk_send=running, status=MessageStatus.PENDING).count() == 3
    assert fresh(elsewhere).status == BulkSendStatus.PROCESSING
    assert fresh(finished).status == BulkSendStatus.COMPLETED
    assert event.outcome["sends_halted"] == 2


@pytest.mark.parametrize("event", ["PAUSED", "DISABLED"])
def test_a_send_is_not_resumed_while_meta_refuses_its_template(
    client: Client, tenant: Tenant, event: str
) -> None:
    bulk_send = running_send(tenant)
    post_changes(
        client,
        tenant.account,
        meta.template_status_change(event, name="welcome_message", language="es"),
    )

    assert bulk_send_resume(bulk_send=bulk_send) is False
    blocker = bulk_send_resume_blocker(bulk_send)
    assert blocker is not None
    assert event in blocker
    assert fresh(bulk_send).halted_at is not None


@pytest.mark.parametrize("event", ["APPROVED", "REINSTATED"])
def test_an_approved_template_again_lets_the_operator_resume(
    client: Client, tenant: Tenant, event: str
) -> None:
    queued = running_send(tenant, sent=0, status=BulkSendStatus.QUEUED)
    post_changes(client, tenant.account, pause())
    post_changes(
        client,
        tenant.account,
        meta.template_status_change(event, name="welcome_message", language="es"),
    )

    assert fresh(tenant.template).status == "APPROVED"
    assert bulk_send_resume_blocker(queued) is None
    assert bulk_send_resume(bulk_send=queued) is True
    resumed = fresh(queued)
    assert (resumed.status, resumed.halted_at, resumed.status_reason) == (
        BulkSendStatus.PROCESSING,
        None,
        "",
    )
    # Halted before a worker started it: it counts as started from its resume.
    assert resumed.started_at is not None


def test_a_repeated_pause_halts_nothing_more(client: Client, tenant: Tenant) -> None:
    bulk_send = running_send(tenant)
    post_changes(client, tenant.account, pause())
    halted_at = fresh(bulk_send).halted_at

    second = post_changes(client, tenant.account, pause())

    assert fresh(bulk_send).halted_at == halted_at
    assert "sends_halted" not in second.outcome


def test_a_pause_in_another_account_halts_nothing_here(
    client: Client, tenant: Tenant, other_tenant: Tenant
) -> None:
    bulk_send = running_send(tenant)

    post_changes(client, other_tenant.account, pause())

    assert fresh(bulk_send).status == BulkSendStatus.PROCESSING
    assert fresh(other_tenant.template).status == "PAUSED"


def test_a_template_quality_update_is_kept_on_the_template(client: Client, tenant: Tenant) -> None:
    change = {
        "field": "message_template_quality_update",
        "value": {
            "previous_quality_score": "GREEN",
            "new_quality_score": "YELLOW",
            "message_template_id": 0,
            "message_template_name": "welcome_message",
            "message_template_language": "es",
        },
    }

    event = post_changes(client, tenant.account, change)

    template = fresh(tenant.template)
    assert (template.quality_score, template.status) == ("YELLOW", "APPROVED")
    assert template.quality_updated_at is not None
    assert event.outcome["templates_changed"] == 1


def test_a_quality_score_meta_does_not_define_changes_nothing(
    client: Client, tenant: Tenant
) -> None:
    change = {
        "field": "message_template_quality_update",
        "value": {"new_quality_score": "PURPLE", "message_template_name": "welcome_message"},
    }

    post_changes(client, tenant.account, change)

    assert fresh(tenant.template).quality_score == ""


# --- numbers -----------------------------------------------------------------------------------


def test_a_flagged_number_halts_its_sends_and_turns_red(client: Client, tenant: Tenant) -> None:
    bulk_send = running_send(tenant)
    sibling = factories.make_number(tenant.account, display_phone_number="+54 9 11 5555-0000")
    sibling_send = running_send(tenant, number=sibling)

    post_changes(client, tenant.account, meta.quality_change("FLAGGED", current_limit=None))

    number = fresh(tenant.number)
    assert number.quality_rating == "RED"
    assert number.quality_updated_at is not None
    halted = fresh(bulk_send)
    assert halted.halted_at is not None
    assert "FLAGGED" in halted.status_reason
    assert "+54 9 223 675-0780" in halted.status_reason
    assert fresh(sibling_send).halted_at is None
    # Quality is no refusal from Meta: the operator may resume at once.
    assert bulk_send_resume(bulk_send=halted) is True


def test_a_throughput_upgrade_raises_the_numbers_rate_and_leaves_its_tier(
    client: Client, tenant: Tenant
) -> None:
    post_changes(
        client,
        tenant.account,
        meta.quality_change("THROUGHPUT_UPGRADE", current_limit="TIER_UNLIMITED", old_limit=None),
    )

    number = fresh(tenant.number)
    assert (number.throughput_per_second, number.messaging_limit_tier) == (1000, "TIER_1000")
    assert number.quality_rating == "GREEN"


# --- accounts ----------------------------------------------------------------------------------


def test_a_restricted_account_halts_every_numbers_sends_until_meta_lifts_it(
    client: Client, tenant: Tenant, other_tenant: Tenant
) -> None:
    sibling = factories.make_number(tenant.account, display_phone_number="+54 9 11 5555-0000")
    first, second = running_send(tenant), running_send(tenant, number=sibling)
    unrelated = running_send(other_tenant)

    post_changes(client, tenant.account, restriction("RESTRICTED_BIZ_INITIATED_MESSAGING"))

    for bulk_send in (fresh(first), fresh(second)):
        assert bulk_send.halted_at is not None
        assert "RESTRICTED_BIZ_INITIATED_MESSAGING" in bulk_send.status_reason
        assert bulk_send_resume(bulk_send=bulk_send) is False
    assert fresh(unrelated).halted_at is None
    kept = AccountEvent.objects.get(business_account=tenant.account)
    assert (kept.event, kept.sends_halted, kept.lifted) == ("ACCOUNT_RESTRICTION", 2, False)
    assert fresh(tenant.account).is_restricted

    post_changes(client, tenant.account, account_update("ACCOUNT_RECONNECTED"))

    assert not fresh(tenant.account).is_restricted
    assert bulk_send_resume(bulk_send=fresh(first)) is True


def test_a_disabled_account_halts_and_its_reinstatement_lifts(
    client: Client, tenant: Tenant
) -> None:
    bulk_send = running_send(tenant)

    post_changes(
        client,
        tenant.account,
        account_update("DISABLED_UPDATE", ban_info={"waba_ban_state": "DISABLE"}),
    )
    assert "disabled" in fresh(bulk_send).status_reason
    assert "still restricted" in (bulk_send_resume_blocker(bulk_send) or "")

    post_changes(
        client,
        tenant.account,
        account_update("DISABLED_UPDATE", ban_info={"waba_ban_state": "REINSTATE"}),
    )

    assert bulk_send_resume_blocker(bulk_send) is None
    lifted = AccountEvent.objects.filter(business_account=tenant.account, lifted=True)
    assert lifted.count() == 1


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(restriction("RESTRICTED_ADD_PHONE_NUMBER_ACTION"), id="add-number-only"),
        pytest.param(
            account_update("DISABLED_UPDATE", ban_info={"waba_ban_state": "SCHEDULE_FOR_DISABLE"}),
            id="scheduled-disable",
        ),
        pytest.param(account_update("VERIFIED_ACCOUNT"), id="verified"),
    ],
)
def test_an_account_update_that_does_not_stop_templates_is_kept_and_halts_nothing(
    client: Client, tenant: Tenant, change: dict[str, Any]
) -> None:
    bulk_send = running_send(tenant)

    post_changes(client, tenant.account, change)

    assert fresh(bulk_send).halted_at is None
    assert not fresh(tenant.account).is_restricted
    assert AccountEvent.objects.filter(business_account=tenant.account).count() == 1


def test_an_account_update_posted_again_changes_nothing_the_second_time(
    client: Client, tenant: Tenant
) -> None:
    post_changes(client, tenant.account, restriction())
    # The operator releases the account; then Meta's retry of the same event comes.
    account_restriction_lift(account_id=tenant.account.pk)

    post_changes(client, tenant.account, restriction())

    assert not fresh(tenant.account).is_restricted
    assert AccountEvent.objects.filter(business_account=tenant.account).count() == 1
    # A new event (another moment) is another restriction.
    later = meta.entry(restriction(), waba_id=tenant.account.waba_id)
    later["time"] += 3600
    assert meta.post(client, meta.notification(later)).status_code == 200
    assert fresh(tenant.account).is_restricted
    assert AccountEvent.objects.filter(business_account=tenant.account).count() == 2


def test_an_account_alert_is_kept_for_the_operators(client: Client, tenant: Tenant) -> None:
    alert = {
        "field": "account_alerts",
        "value": {
            "entity_type": "BUSINESS",
            "entity_id": "506914307656634",
            "alert_info": {
                "alert_severity": "WARNING",
                "alert_status": "ACTIVE",
                "alert_type": "INCREASED_CAPABILITIES_ELIGIBILITY_DEFERRED",
                "alert_description": "Additional verification is required\u0000.",
            },
        },
    }

    event = post_changes(client, tenant.account, alert)

    kept = AccountEvent.objects.get(business_account=tenant.account)
    assert (kept.field, kept.event, kept.severity) == (
        "account_alerts",
        "INCREASED_CAPABILITIES_ELIGIBILITY_DEFERRED",
        "WARNING",
    )
    assert "Additional verification is required." in kept.summary
    assert event.outcome["account_events"] == 1


def test_an_account_event_for_an_account_we_do_not_have_is_dropped(
    client: Client, tenant: Tenant
) -> None:
    stranger = WhatsAppBusinessAccount(waba_id="999999999")

    post_changes(client, stranger, restriction())

    assert AccountEvent.objects.count() == 0
    assert not fresh(tenant.account).is_restricted


# --- the admin ---------------------------------------------------------------------------------


@pytest.fixture
def operator_client(tenant: Tenant) -> Client:
    user = get_user_model().objects.create_superuser("operator", "op@example.com", "pw")
    admin = Client()
    admin.force_login(user)
    return admin


def test_the_admin_says_why_it_does_not_resume_a_send_of_a_paused_template(
    client: Client, tenant: Tenant, operator_client: Client
) -> None:
    bulk_send = running_send(tenant)
    post_changes(client, tenant.account, pause())

    response = operator_client.post(
        "/admin/bulksend/bulksend/",
        {"action": "resume_sends", "_selected_action": [str(bulk_send.pk)]},
        follow=True,
    )

    text = response.content.decode()
    assert "Not resumed" in text
    assert "welcome_message (es) PAUSED" in text
    assert fresh(bulk_send).halted_at is not None


def test_the_admin_lists_account_events_by_account(
    client: Client, tenant: Tenant, other_tenant: Tenant, operator_client: Client
) -> None:
    post_changes(client, tenant.account, restriction())
    post_changes(client, other_tenant.account, account_update("ACCOUNT_VIOLATION"))

    response = operator_client.get(
        "/admin/templates_app/accountevent/",
        {"business_account__id__exact": tenant.account.pk},
    )

    text = response.content.decode()
    assert response.status_code == 200
    assert "ACCOUNT_RESTRICTION" in text
    assert "ACCOUNT_VIOLATION" not in text


def test_the_admin_shows_a_numbers_throughput_after_an_upgrade(
    client: Client, tenant: Tenant, operator_client: Client
) -> None:
    post_changes(
        client,
        tenant.account,
        meta.quality_change("THROUGHPUT_UPGRADE", current_limit="TIER_UNLIMITED", old_limit=None),
    )

    assert PhoneNumber.objects.get(pk=tenant.number.pk).throughput_per_second == 1000
    response = operator_client.get(f"/admin/templates_app/phonenumber/{tenant.number.pk}/change/")
    assert response.status_code == 200
