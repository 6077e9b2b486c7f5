"""Meta's marketing rules before a request: opted-out recipients, US numbers, the per-user
marketing cooldown (131049); and how Meta's 131050 and `user_preferences` fill the list."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from bulksend.drain import bulk_send_drain
from bulksend.models import BulkSend, BulkSendStatus
from bulksend.screening import Verdict, recipient_verdicts, send_recipients_cooling_down
from messaging.cooldown import CAPPED_CODE
from messaging.models import MarketingCooldown, Message, Suppression, SuppressionSource
from messaging.suppression import suppression_add
from meta_sandbox import SandboxThread
from templates_app.models import TemplateCategory
from tests.conftest import Tenant, clock_frozen
from tests.delivery_support import (
    ECOSYSTEM_HELD_BACK,
    ScriptedMeta,
    assert_counters_exact,
    delivery_redis_fixture,  # noqa: F401  (fixtures)
    drain_to_completion,
    received,
    sandbox_fixture,  # noqa: F401
    scripted_meta_fixture,  # noqa: F401
    send_bulk,
    wait_for,
    webhook_url_fixture,  # noqa: F401
    welcome_recipient,
)

pytestmark = pytest.mark.django_db(transaction=True)

LISTED = "+5491150000001"
US = "+14155552671"
CANADA = "+16135550123"
FREE = "+5491150000002"


def statuses(send_id: Any) -> dict[str, tuple[str, str | None]]:
    return {
        m.recipient_phone: (m.status, m.error_code)
        for m in Message.objects.filter(bulk_send_id=send_id)
    }


def test_a_marketing_send_fails_opted_out_and_us_recipients_without_asking_meta(
    tenant: Tenant, sandbox: SandboxThread
) -> None:
    suppression_add(organization=tenant.organization, phone=LISTED, source="api")
    recipients = [welcome_recipient(p, n) for n, p in enumerate([LISTED, US, CANADA, FREE])]
    send_id = send_bulk(tenant, recipients)["bulk_send_id"]

    bulk_send = drain_to_completion(send_id)

    assert statuses(send_id) == {
        LISTED: ("failed", "opted_out"),
        US: ("failed", "us_marketing_block"),
        CANADA: ("sent", None),
        FREE: ("sent", None),
    }
    assert sorted(m["to"] for m in received(sandbox).messages) == [CANADA[1:], FREE[1:]]
    assert bulk_send.status == BulkSendStatus.PARTIAL
    counts = assert_counters_exact(bulk_send)
    assert (counts["sent_count"], counts["failed_count"]) == (2, 2)


def test_a_utility_template_still_goes_to_opted_out_and_us_recipients(
    tenant: Tenant, sandbox: SandboxThread
) -> None:
    tenant.template.category = TemplateCategory.UTILITY
    tenant.template.save()
    suppression_add(organization=tenant.organization, phone=LISTED, source="api")
    send_id = send_bulk(tenant, [welcome_recipient(LISTED, 0), welcome_recipient(US, 1)])[
        "bulk_send_id"
    ]

    assert drain_to_completion(send_id).status == BulkSendStatus.COMPLETED
    assert statuses(send_id) == {LISTED: ("sent", None), US: ("sent", None)}


def test_metas_131050_lists_the_recipient_and_the_next_marketing_send_does_not_ask_meta(
    tenant: Tenant, sandbox: SandboxThread
) -> None:
    sandbox.control("config", {"recipient_errors": {LISTED[1:]: 131050}})
    first = send_bulk(tenant, [welcome_recipient(LISTED)])["bulk_send_id"]
    drain_to_completion(first)

    entry = Suppression.objects.get(organization=tenant.organization, phone=LISTED)
    assert entry.source == SuppressionSource.META_131050
    assert statuses(first) == {LISTED: ("failed", "131050")}
    second = send_bulk(tenant, [welcome_recipient(LISTED)])["bulk_send_id"]
    drain_to_completion(second)
    assert statuses(second) == {LISTED: ("failed", "opted_out")}
    assert sandbox.control("stats")["rejected_by_code"] == {"131050": 1}


def test_a_user_who_stops_marketing_in_whatsapp_is_listed_and_taken_off_when_they_resume(
    tenant: Tenant, sandbox: SandboxThread, webhook_url: str
) -> None:
    sandbox.control("config", {"webhook_url": webhook_url})
    number = tenant.number.phone_number_id
    listed = Suppression.objects.filter(organization=tenant.organization, phone=LISTED)

    answer = sandbox.control(
        "user_preferences", {"phone_number_id": number, "wa_id": LISTED[1:], "value": "stop"}
    )
    assert answer["webhook"] is True
    entry = wait_for(listed.first, timeout=30, what="the user_preferences webhook")
    assert entry.source == SuppressionSource.USER_PREFERENCES
    sandbox.control(
        "user_preferences", {"phone_number_id": number, "wa_id": LISTED[1:], "value": "resume"}
    )
    wait_for(lambda: not listed.exists(), timeout=30, what="the resume webhook")


def test_a_user_who_stopped_marketing_gets_131050_from_the_sandbox(
    tenant: Tenant, sandbox: SandboxThread
) -> None:
    sandbox.control(
        "user_preferences",
        {"phone_number_id": tenant.number.phone_number_id, "wa_id": FREE[1:], "value": "stop"},
    )
    send_id = send_bulk(tenant, [welcome_recipient(FREE)])["bulk_send_id"]
    drain_to_completion(send_id)
    assert statuses(send_id) == {FREE: ("failed", "131050")}


def test_131049_makes_the_recipient_wait_4_12_and_24_hours_then_fails_as_capped(
    tenant: Tenant, scripted_meta: ScriptedMeta
) -> None:
    scripted_meta.answer = lambda index, body: ECOSYSTEM_HELD_BACK
    send_id = send_bulk(tenant, [welcome_recipient(FREE)])["bulk_send_id"]
    bulk_send = BulkSend.objects.select_related("template").get(pk=send_id)
    message = Message.objects.filter(bulk_send_id=send_id)
    start = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    waits = []
    with clock_frozen(start) as clock:
        for _ in range(3):
            before = clock.current
            bulk_send_drain(send_id)
            waiting = message.get()
            assert (waiting.status, waiting.error_code) == ("pending", None)
            assert waiting.next_attempt_at is not None
            waits.append(round((waiting.next_attempt_at - before).total_seconds() / 3600))
            assert send_recipients_cooling_down(bulk_send, now=clock.current) == 1
            # Not claimed before its cooldown ends: nothing asked of Meta.
            asked = len(scripted_meta.requests)
            bulk_send_drain(send_id)
            assert len(scripted_meta.requests) == asked
            clock.current = waiting.next_attempt_at + timedelta(seconds=1)
        bulk_send_drain(send_id)

    assert waits == [4, 12, 24]
    capped = message.get()
    assert (capped.status, capped.error_code) == ("failed", CAPPED_CODE)
    assert capped.error_message.startswith("Capped by Meta")
    assert len(scripted_meta.requests) == 4
    assert MarketingCooldown.objects.get(phone=FREE).strikes == 4
    assert assert_counters_exact(bulk_send)["failed_count"] == 1


def test_the_dry_run_verdicts_name_each_held_recipient_by_index(tenant: Tenant) -> None:
    now = timezone.now()
    suppression_add(organization=tenant.organization, phone=LISTED, source="admin")
    MarketingCooldown.objects.create(
        business_account=tenant.account, phone=FREE, strikes=1, until=now + timedelta(hours=4)
    )
    phones = [CANADA, LISTED, US, FREE, "+5491150000009"]

    verdicts = recipient_verdicts(
        organization=tenant.organization, template=tenant.template, phones=phones, now=now
    )

    assert verdicts == {
        1: Verdict.OPTED_OUT,
        2: Verdict.US_MARKETING_BLOCK,
        3: Verdict.COOLING_DOWN,
    }
    later = now + timedelta(hours=5)
    assert (
        recipient_verdicts(
            organization=tenant.organization, template=tenant.template, phones=[FREE], now=later
        )
        == {}
    )
    tenant.template.category = TemplateCategory.AUTHENTICATION
    assert (
        recipient_verdicts(
            organization=tenant.organization, template=tenant.template, phones=phones, now=now
        )
        == {}
    )


def test_the_single_send_refuses_an_opted_out_or_us_recipient_and_writes_nothing(
    tenant: Tenant, sandbox: SandboxThread
) -> None:
    suppression_add(organization=tenant.organization, phone=LISTED, source="api")
    for phone, code in [(LISTED, "opted_out"), (US, "us_marketing_block")]:
        response = tenant.client.post(
            "/api/v1/meta-templates/send/",
            {
                "phone_number_id": tenant.number.phone_number_id,
                "template_name": "welcome_message",
                "recipient_phone": phone,
                "variables": {"name": "Ana", "code": "X"},
                "button_variables": {"button_0": "x"},
            },
            format="json",
        )
        assert response.status_code == 400, response.content
        assert response.json()["recipient_phone"][0].startswith(f"{code}: ")
    assert not Message.objects.exists()
    assert received(sandbox).messages == []
