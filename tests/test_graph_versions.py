"""Graph API versions: the service calls Meta's current one unless `META_GRAPH_VERSION` pins
another; the sandbox serves only the versions Meta serves on its date, with each version's
fields; `sync_numbers` takes the portfolio's messaging limit from whichever field it gets."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from django.conf import settings
from django.test import override_settings

from meta.graph_version import GRAPH_VERSION
from meta_sandbox import SandboxConfig, SandboxThread
from templates_app.models import PhoneNumber
from templates_app.sync import sync_numbers
from tests.conftest import Tenant

TOKEN = "versions-test-token"
WABA = "102290129340398"
TIMEOUT = 10.0
# Meta's changelog: v20.0 served until September 24, 2026, v21.0 until January 21, 2027.
TODAY = "2026-11-30"


def catalog(*, portfolio_limit: str | None) -> dict[str, Any]:
    account: dict[str, Any] = {
        "waba_id": WABA,
        "access_token": TOKEN,
        "phone_numbers": [
            {
                "phone_number_id": "813497231850626",
                "display_phone_number": "+54 9 223 675-0780",
                "messaging_limit_tier": "TIER_1K",
            },
            {
                "phone_number_id": "813497231850627",
                "display_phone_number": "+54 9 223 675-0781",
                "messaging_limit_tier": "TIER_10K",
            },
        ],
    }
    if portfolio_limit:
        account["messaging_limit"] = portfolio_limit
    return {"accounts": [account]}


@pytest.fixture
def sandbox() -> Iterator[SandboxThread]:
    config = SandboxConfig(catalog=catalog(portfolio_limit="TIER_100K"), graph_date=TODAY)
    with SandboxThread(config) as running:
        yield running


def numbers(sandbox: SandboxThread, version: str, fields: str | None = None) -> requests.Response:
    return requests.get(
        f"{sandbox.url}/{version}/{WABA}/phone_numbers",
        params={"fields": fields} if fields else None,
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=TIMEOUT,
    )


# --- the version the service calls -----------------------------------------------------------


def test_the_service_calls_metas_current_version_unless_pinned() -> None:
    assert GRAPH_VERSION == "v27.0"  # November 4, 2026
    assert settings.META_GRAPH_VERSION == GRAPH_VERSION


def test_the_sandbox_serves_the_services_version(sandbox: SandboxThread) -> None:
    assert numbers(sandbox, settings.META_GRAPH_VERSION).status_code == 200


# --- versions Meta no longer serves ----------------------------------------------------------


def test_a_version_past_its_end_is_refused_with_metas_deprecation_error(
    sandbox: SandboxThread,
) -> None:
    response = numbers(sandbox, "v20.0")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == 2635
    assert error["type"] == "OAuthException"
    assert error["message"] == (
        "(#2635) You are calling a deprecated version of the Graph API. "
        "Please update to the latest version: v27.0."
    )
    assert error["fbtrace_id"]


def test_a_version_is_served_until_its_last_day_and_refused_on_it() -> None:
    document = catalog(portfolio_limit=None)
    with SandboxThread(SandboxConfig(catalog=document, graph_date="2027-01-20")) as sandbox:
        assert numbers(sandbox, "v21.0").status_code == 200
        sandbox.control("config", {"graph_date": "2027-01-21"})
        refused = numbers(sandbox, "v21.0")

    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == 2635


def test_a_send_with_an_expired_version_is_refused_before_anything_is_checked(
    sandbox: SandboxThread,
) -> None:
    response = requests.post(
        f"{sandbox.url}/v19.0/813497231850626/messages", json={}, timeout=TIMEOUT
    )

    assert response.json()["error"]["code"] == 2635
    assert sandbox.control("stats")["accepted"] == 0


def test_a_version_meta_never_released_is_an_unknown_path(sandbox: SandboxThread) -> None:
    response = numbers(sandbox, "v28.0")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == 2500


# --- each version's fields -------------------------------------------------------------------


def test_since_v24_a_number_carries_the_portfolios_limit_and_not_its_own_tier(
    sandbox: SandboxThread,
) -> None:
    for version in ("v24.0", "v27.0"):
        listed = numbers(sandbox, version).json()["data"]

        assert [n["whatsapp_business_manager_messaging_limit"] for n in listed] == [
            "TIER_100K",
            "TIER_100K",
        ]
        assert all("messaging_limit_tier" not in n for n in listed)


def test_before_v24_a_number_carries_its_own_deprecated_tier(sandbox: SandboxThread) -> None:
    listed = numbers(sandbox, "v23.0").json()["data"]

    assert [n["messaging_limit_tier"] for n in listed] == ["TIER_1K", "TIER_10K"]
    assert all("whatsapp_business_manager_messaging_limit" not in n for n in listed)


def test_only_the_fields_asked_for_are_answered(sandbox: SandboxThread) -> None:
    listed = numbers(sandbox, "v27.0", fields="quality_rating").json()["data"]

    assert listed[0] == {"id": "813497231850626", "quality_rating": "GREEN"}


# --- sync_numbers -----------------------------------------------------------------------------


def sync(tenant: Tenant, sandbox: SandboxThread, version: str) -> str:
    tenant.account.waba_id = WABA
    tenant.account.access_token = TOKEN
    tenant.account.save()
    with override_settings(META_GRAPH_URL=sandbox.url, META_GRAPH_VERSION=version):
        sync_numbers(tenant.account)
    tenant.account.refresh_from_db()
    return tenant.account.messaging_limit_tier


def tiers(tenant: Tenant) -> dict[str, str]:
    return dict(
        PhoneNumber.objects.filter(business_account=tenant.account).values_list(
            "phone_number_id", "messaging_limit_tier"
        )
    )


def test_sync_takes_the_portfolios_tier_from_the_current_field(
    tenant: Tenant, sandbox: SandboxThread
) -> None:
    assert sync(tenant, sandbox, GRAPH_VERSION) == "TIER_100K"
    assert tiers(tenant)["813497231850627"] == "TIER_100K"


def test_sync_with_a_pinned_older_version_falls_back_to_the_numbers_highest_tier(
    tenant: Tenant, sandbox: SandboxThread
) -> None:
    assert sync(tenant, sandbox, "v23.0") == "TIER_10K"
    assert tiers(tenant)["813497231850626"] == "TIER_1K"
    assert tiers(tenant)["813497231850627"] == "TIER_10K"


def test_a_portfolio_without_a_limit_of_its_own_has_its_numbers_highest(tenant: Tenant) -> None:
    config = SandboxConfig(catalog=catalog(portfolio_limit=None), graph_date=TODAY)
    with SandboxThread(config) as sandbox:
        assert sync(tenant, sandbox, GRAPH_VERSION) == "TIER_10K"


def test_a_portfolio_limit_set_by_meta_reaches_the_account_on_the_next_sync(
    tenant: Tenant, sandbox: SandboxThread
) -> None:
    sync(tenant, sandbox, GRAPH_VERSION)
    sandbox.control(
        "accounts", {"waba_id": WABA, "access_token": TOKEN, "messaging_limit": "TIER_UNLIMITED"}
    )

    assert sync(tenant, sandbox, GRAPH_VERSION) == "TIER_UNLIMITED"
    assert tenant.account.quota_total is None
