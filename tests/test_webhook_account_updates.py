"""Template, phone-number and business-account changes Meta announces by webhook."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from templates_app.models import MessageTemplate, PhoneNumber
from tests import factories
from tests import meta_payloads as meta
from tests.conftest import Tenant, make_tenant
from tests.meta_payloads import fresh, post_changes


@pytest.fixture
def client() -> Client:
    return Client(raise_request_exception=False)


# --- message_template_status_update --------------------------------------------------------------


@pytest.mark.parametrize("event", ["REJECTED", "PAUSED", "DISABLED", "APPROVED"])
def test_a_template_status_update_found_by_metas_id_sets_the_status(
    client: Client, tenant: Tenant, event: str
) -> None:
    template = factories.make_template(
        tenant.account, name="promo_otono", meta_template_id="1689556908129832", status="PENDING"
    )

    outcome = post_changes(
        client,
        tenant.account,
        # The id is how Meta names it; a name from before a rename must not matter.
        meta.template_status_change(
            event, name="old_name", language="es_AR", template_id=1689556908129832
        ),
    )

    assert fresh(template).status == event
    assert fresh(tenant.template).status == "APPROVED"
    assert outcome.outcome["templates_changed"] == 1


def test_a_template_status_update_finds_the_template_by_name_and_language_in_that_account(
    client: Client, tenant: Tenant, other_tenant: Tenant
) -> None:
    spanish = tenant.template  # welcome_message, es
    english = factories.make_template(tenant.account, name="welcome_message", language="en_US")

    post_changes(
        client,
        tenant.account,
        meta.template_status_change("REJECTED", name="welcome_message", language="es", reason="X"),
    )

    assert fresh(spanish).status == "REJECTED"
    assert fresh(english).status == "APPROVED"
    # Same name and language in another account: another template.
    assert fresh(other_tenant.template).status == "APPROVED"


def test_a_template_status_update_for_another_account_changes_nothing_here(
    client: Client, tenant: Tenant
) -> None:
    stranger = factories.make_account(factories.make_organization())

    post_changes(
        client,
        stranger,
        meta.template_status_change("PAUSED", name="welcome_message", language="es"),
    )

    assert fresh(tenant.template).status == "APPROVED"


@pytest.mark.parametrize("event", ["FLAGGED", "SOMETHING_NEW", ""])
def test_a_template_event_that_is_not_a_status_changes_nothing(
    client: Client, tenant: Tenant, event: str
) -> None:
    outcome = post_changes(
        client,
        tenant.account,
        meta.template_status_change(event, name="welcome_message", language="es"),
    )

    assert fresh(tenant.template).status == "APPROVED"
    assert outcome.outcome["templates_changed"] == 0


def test_a_repeated_template_status_update_changes_nothing_the_second_time(
    client: Client, tenant: Tenant
) -> None:
    change = meta.template_status_change("PAUSED", name="welcome_message", language="es")
    first = post_changes(client, tenant.account, change)

    second = post_changes(client, tenant.account, change)

    assert (first.outcome["templates_changed"], second.outcome["templates_changed"]) == (1, 0)
    assert fresh(tenant.template).status == "PAUSED"


# --- phone_number_quality_update -----------------------------------------------------------------


def test_a_flagged_number_turns_red_and_takes_the_new_tier(client: Client, tenant: Tenant) -> None:
    # The number is stored as "+54 9 223 675-0780"; Meta names it by its digits.
    post_changes(
        client,
        tenant.account,
        meta.quality_change(
            "FLAGGED", display_phone_number="5492236750780", current_limit="TIER_10K"
        ),
    )

    number = fresh(tenant.number)
    assert (number.quality_rating, number.messaging_limit_tier) == ("RED", "TIER_10K")


def test_an_unflagged_number_turns_green_again(client: Client, tenant: Tenant) -> None:
    PhoneNumber.objects.filter(pk=tenant.number.pk).update(quality_rating="RED")

    post_changes(client, tenant.account, meta.quality_change("UNFLAGGED", current_limit="TIER_1K"))

    number = fresh(tenant.number)
    assert (number.quality_rating, number.messaging_limit_tier) == ("GREEN", "TIER_1K")


@pytest.mark.parametrize(("event", "limit"), [("UPGRADE", "TIER_100K"), ("DOWNGRADE", "TIER_250")])
def test_a_tier_change_keeps_the_quality_and_sets_the_tier(
    client: Client, tenant: Tenant, event: str, limit: str
) -> None:
    PhoneNumber.objects.filter(pk=tenant.number.pk).update(quality_rating="YELLOW")

    post_changes(client, tenant.account, meta.quality_change(event, current_limit=limit))

    number = fresh(tenant.number)
    assert (number.quality_rating, number.messaging_limit_tier) == ("YELLOW", limit)


def test_a_quality_update_reaches_only_the_number_it_names(client: Client, tenant: Tenant) -> None:
    sibling = factories.make_number(tenant.account, display_phone_number="+54 9 11 5555-0000")
    elsewhere = make_tenant("Elsewhere").number  # same display number, another account

    post_changes(client, tenant.account, meta.quality_change("FLAGGED"))

    assert fresh(tenant.number).quality_rating == "RED"
    assert fresh(sibling).quality_rating == "GREEN"
    assert (fresh(elsewhere).quality_rating, fresh(elsewhere).messaging_limit_tier) == (
        "GREEN",
        "TIER_1000",
    )


def test_a_quality_update_with_the_portfolio_limit_sets_the_accounts_tier(
    client: Client, tenant: Tenant
) -> None:
    post_changes(
        client,
        tenant.account,
        meta.quality_change("UPGRADE", current_limit="TIER_10K", portfolio_limit=10000),
    )

    assert fresh(tenant.account).messaging_limit_tier == "TIER_10K"
    assert fresh(tenant.number).messaging_limit_tier == "TIER_10K"


def test_a_quality_update_with_the_portfolio_tier_as_meta_spells_it_sets_the_accounts_tier(
    client: Client, tenant: Tenant
) -> None:
    # Meta's reference types `max_daily_conversations_per_business` in this webhook as a String
    # holding a tier name (TIER_2K, TIER_10K, TIER_UNLIMITED...).
    post_changes(
        client,
        tenant.account,
        meta.quality_change("UPGRADE", current_limit="TIER_10K", portfolio_limit="TIER_10K"),
    )

    assert fresh(tenant.account).messaging_limit_tier == "TIER_10K"


@pytest.mark.parametrize("limit", ["TIER_NOT_SET", "TIER_HUGE", "", None, 10000])
def test_an_unknown_tier_changes_nothing(client: Client, tenant: Tenant, limit: Any) -> None:
    outcome = post_changes(
        client,
        tenant.account,
        meta.quality_change("ONBOARDING", current_limit=limit, portfolio_limit="TIER_NOT_SET"),
    )

    number, account = fresh(tenant.number), fresh(tenant.account)
    assert (number.quality_rating, number.messaging_limit_tier) == ("GREEN", "TIER_1000")
    assert account.messaging_limit_tier == "TIER_1000"
    assert outcome.outcome["numbers_or_accounts_changed"] == 0


# --- business_capability_update ------------------------------------------------------------------


def test_a_capability_update_sets_the_portfolios_tier_and_no_longer_a_per_phone_one(
    client: Client, tenant: Tenant, other_tenant: Tenant
) -> None:
    # `max_daily_conversation_per_phone` is gone since February 2026: one still sent is ignored.
    sibling = factories.make_number(tenant.account, display_phone_number="+54 9 11 5555-0000")

    post_changes(
        client, tenant.account, meta.capability_change(per_phone=10000, per_business=10000)
    )

    assert fresh(tenant.number).messaging_limit_tier == "TIER_1000"
    assert fresh(sibling).messaging_limit_tier == "TIER_1000"
    assert fresh(tenant.account).messaging_limit_tier == "TIER_10K"
    assert fresh(other_tenant.number).messaging_limit_tier == "TIER_1000"
    assert fresh(other_tenant.account).messaging_limit_tier == "TIER_1000"


@pytest.mark.parametrize(
    ("limit", "tier"),
    [
        (2000, "TIER_2K"),
        (250, "TIER_250"),
        (100000, "TIER_100K"),
        ("TIER_UNLIMITED", "TIER_UNLIMITED"),
    ],
)
def test_a_capability_update_of_the_portfolio_alone_sets_the_accounts_tier(
    client: Client, tenant: Tenant, limit: Any, tier: str
) -> None:
    post_changes(client, tenant.account, meta.capability_change(per_business=limit))

    assert fresh(tenant.account).messaging_limit_tier == tier
    assert fresh(tenant.number).messaging_limit_tier == "TIER_1000"


@pytest.mark.parametrize("limit", [-1, "-1"], ids=["minus-1", "minus-1-as-text"])
def test_a_capability_update_of_minus_one_makes_the_portfolio_unlimited(
    client: Client, tenant: Tenant, limit: Any
) -> None:
    # Meta's reference: "A value of -1 indicates unlimited messaging" for this field.
    post_changes(client, tenant.account, meta.capability_change(per_business=limit))

    assert fresh(tenant.account).messaging_limit_tier == "TIER_UNLIMITED"


@pytest.mark.parametrize(
    ("limit", "change"),
    [
        pytest.param(-250, lambda limit: meta.capability_change(per_business=limit), id="cap-250"),
        *(
            pytest.param(
                limit,
                lambda limit: meta.quality_change(
                    "UPGRADE", current_limit=None, portfolio_limit=limit
                ),
                id=f"quality{limit}",
            )
            for limit in (-1, -250, "-1")
        ),
    ],
)
def test_a_negative_portfolio_limit_is_refused_and_leaves_the_tier_as_it_was(
    client: Client, tenant: Tenant, limit: Any, change: Any
) -> None:
    outcome = post_changes(client, tenant.account, change(limit))

    assert fresh(tenant.account).messaging_limit_tier == "TIER_1000"
    assert fresh(tenant.number).messaging_limit_tier == "TIER_1000"
    assert outcome.outcome["numbers_or_accounts_changed"] == 0


def test_account_changes_and_statuses_in_one_body_all_apply(client: Client, tenant: Tenant) -> None:
    bulk_send, [message] = meta.send_with_messages(tenant.number, tenant.template, 1)
    assert message.wamid is not None

    event = post_changes(
        client,
        tenant.account,
        meta.messages_change([meta.status(message.wamid, "read", meta.T0 + 5)]),
        meta.template_status_change("PAUSED", name="welcome_message", language="es"),
        meta.quality_change("FLAGGED", current_limit="TIER_250"),
        meta.capability_change(per_business=2000),
    )

    assert fresh(message).status == "read"
    assert fresh(tenant.template).status == "PAUSED"
    assert fresh(tenant.number).quality_rating == "RED"
    assert fresh(tenant.account).messaging_limit_tier == "TIER_2K"
    assert event.fields == (
        "business_capability_update,message_template_status_update,messages,"
        "phone_number_quality_update"
    )
    meta.assert_counters_exact(bulk_send)


@pytest.mark.parametrize(
    ("waba_id", "change"),
    [
        pytest.param(
            None,
            meta.template_status_change("PAUSED", name="welcome\u0000message"),
            id="template-name",
        ),
        pytest.param(
            "102290129340398\u0000",
            meta.template_status_change("PAUSED", name="welcome_message"),
            id="waba-id-template",
        ),
        pytest.param("102290129340398\u0000", meta.quality_change("FLAGGED"), id="waba-id-quality"),
        pytest.param(
            "102290129340398\u0000", meta.capability_change(per_business=2000), id="waba-id-limit"
        ),
    ],
)
def test_a_nul_character_in_an_account_change_is_acknowledged_and_changes_nothing(
    client: Client, tenant: Tenant, waba_id: str | None, change: dict[str, Any]
) -> None:
    document = meta.notification(meta.entry(change, waba_id=waba_id or tenant.account.waba_id))

    response = meta.post(client, document)

    assert response.status_code == 200
    assert fresh(tenant.template).status == "APPROVED"
    assert fresh(tenant.number).quality_rating == "GREEN"
    assert fresh(tenant.account).messaging_limit_tier == "TIER_1000"


def test_a_template_update_never_touches_another_accounts_template_by_id(
    client: Client, tenant: Tenant, other_tenant: Tenant
) -> None:
    MessageTemplate.objects.filter(pk=other_tenant.template.pk).update(meta_template_id="777")

    post_changes(
        client,
        tenant.account,
        meta.template_status_change("DISABLED", name="nothing_here", template_id=777),
    )

    assert fresh(other_tenant.template).status == "APPROVED"


def test_a_reinstated_template_can_be_sent_again(client: Client, tenant: Tenant) -> None:
    post_changes(
        client,
        tenant.account,
        meta.template_status_change("PAUSED", name="welcome_message", language="es"),
    )

    post_changes(
        client,
        tenant.account,
        meta.template_status_change("REINSTATED", name="welcome_message", language="es"),
    )

    assert fresh(tenant.template).status == "APPROVED"
