"""`GET /api/v1/business-accounts/`: the key's company, accounts, numbers with quota, templates."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from bulksend.models import BulkSendStatus
from bulksend.quota import quota_for_send
from messaging.models import MessageStatus
from mindo.api_keys import api_key_create
from tests import factories
from tests.conftest import Tenant, TickingClock

URL = "/api/v1/business-accounts/"

# The contract's example body, verbatim.
SPEC_EXAMPLE: dict[str, Any] = {
    "companyName": "Mi Empresa SRL",
    "apiKeyName": "Production API Key",
    "businessAccounts": [
        {
            "businessAccountId": 1,
            "businessName": "Mi Empresa WhatsApp Business",
            "phoneNumbers": [
                {
                    "id": 123,
                    "phoneNumberId": "813497231850626",
                    "displayPhoneNumber": "+54 9 223 675-0780",
                    "verifiedName": "Mi Empresa",
                    "isPrimary": True,
                    "messagingLimitTier": "TIER_1000",
                    "quota": {
                        "dailyLimit": 1000,
                        "uniqueNumbersSent24h": 45,
                        "remaining": 955,
                        "usagePercentage": 4.5,
                        "canSend": True,
                    },
                }
            ],
            "templates": [
                {
                    "name": "welcome_message",
                    "language": "es",
                    "category": "MARKETING",
                    "variables": [
                        {
                            "name": "customer_name",
                            "type": "TEXT",
                            "position": 1,
                            "isRequired": True,
                            "component": "BODY",
                        }
                    ],
                },
                {
                    "name": "order_confirmation",
                    "language": "es",
                    "category": "TRANSACTIONAL",
                    "variables": [
                        {
                            "name": "order_id",
                            "type": "TEXT",
                            "position": 1,
                            "isRequired": True,
                            "component": "BODY",
                        },
                        {
                            "name": "total_amount",
                            "type": "CURRENCY",
                            "position": 2,
                            "isRequired": True,
                            "component": "BODY",
                        },
                        {
                            "name": "delivery_date",
                            "type": "DATE_TIME",
                            "position": 3,
                            "isRequired": True,
                            "component": "BODY",
                        },
                    ],
                },
            ],
        }
    ],
}


def shape(value: Any) -> Any:
    """Keys in order and JSON types, with lists read through their first item."""
    if isinstance(value, dict):
        return [(key, shape(item)) for key, item in value.items()]
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return (
        "number"
        if isinstance(value, int | float) and not isinstance(value, bool)
        else type(value).__name__
    )


def mi_empresa(sent_24h: int = 45) -> tuple[APIClient, dict[str, Any]]:
    """The example's company, with `sent_24h` recipients in its window; the expected body."""
    organization = factories.make_organization("Mi Empresa SRL")
    user = factories.make_user(organization)
    _, raw_key = api_key_create(organization=organization, user=user, name="Production API Key")
    account = factories.make_account(organization, name="Mi Empresa WhatsApp Business")
    number = factories.make_number(
        account, phone_number_id="813497231850626", verified_name="Mi Empresa"
    )
    factories.make_template(
        account,
        name="welcome_message",
        components=[{"type": "BODY", "text": "Hola {{customer_name}}"}],
    )
    factories.make_template(
        account,
        name="order_confirmation",
        category="UTILITY",
        components=[
            {
                "type": "BODY",
                "text": "Pedido {{order_id}} por {{total_amount}}, llega el {{delivery_date}}.",
            }
        ],
        variable_types={"total_amount": "CURRENCY", "delivery_date": "DATE_TIME"},
    )
    send = factories.make_bulk_send(number, account.templates.get(name="welcome_message"))
    sent_at = timezone.now() - timedelta(hours=1)
    for n in range(sent_24h):
        factories.make_message(send, phone=f"+5491160{n:06d}", status="sent", sent_at=sent_at)
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw_key)
    # The example's values, but for our ids, this window and Meta's categories (UTILITY);
    # templates come by name, so order_confirmation first.
    expected = copy.deepcopy(SPEC_EXAMPLE)
    expected_account = expected["businessAccounts"][0]
    expected_account["businessAccountId"] = account.pk
    expected_number = expected_account["phoneNumbers"][0]
    expected_number["id"] = number.pk
    expected_number["quota"].update(
        uniqueNumbersSent24h=sent_24h, remaining=1000 - sent_24h, usagePercentage=sent_24h / 10
    )
    welcome, order = expected_account["templates"]
    expected_account["templates"] = [{**order, "category": "UTILITY"}, welcome]
    return client, expected


@pytest.mark.django_db
def test_the_body_is_the_examples_key_for_key_with_its_types(frozen_now: TickingClock) -> None:
    client, expected = mi_empresa(sent_24h=45)

    response = client.get(URL)

    assert response.status_code == 200
    body = response.json()
    assert shape(body) == shape(SPEC_EXAMPLE)
    assert body == expected
    assert body["businessAccounts"][0]["phoneNumbers"][0]["quota"]["usagePercentage"] == 4.5


@pytest.mark.django_db
def test_it_answers_without_the_trailing_slash_too(frozen_now: TickingClock) -> None:
    client, expected = mi_empresa(sent_24h=0)

    assert client.get(URL.rstrip("/")).json() == expected


@pytest.mark.django_db
def test_quota_is_the_portfolios_24h_window_as_send_bulk_counts_it(
    tenant: Tenant, frozen_now: TickingClock
) -> None:
    now = timezone.now()
    second = factories.make_number(tenant.account, phone_number_id="813497231850627")
    done = factories.make_bulk_send(tenant.number, tenant.template, status=BulkSendStatus.COMPLETED)
    for n in range(3):  # sent an hour ago: in the window
        factories.make_message(
            done,
            phone=f"+549116000000{n}",
            status=MessageStatus.DELIVERED,
            sent_at=now - timedelta(hours=1),
        )
    # the same recipient in another send, and one sent 25 hours ago: no new place
    earlier = factories.make_bulk_send(
        tenant.number, tenant.template, status=BulkSendStatus.COMPLETED
    )
    for phone, hours in (("+5491160000000", 2), ("+5491160000009", 25)):
        factories.make_message(
            earlier, phone=phone, status=MessageStatus.READ, sent_at=now - timedelta(hours=hours)
        )
    waiting = factories.make_bulk_send(second, tenant.template, status=BulkSendStatus.PROCESSING)
    factories.make_message(waiting, phone="+5491160000005")  # waits: holds a place

    response = tenant.client.get(URL)

    [account] = response.json()["businessAccounts"]
    quotas = [number["quota"] for number in account["phoneNumbers"]]
    assert (
        quotas
        == [
            {
                "dailyLimit": 1000,
                "uniqueNumbersSent24h": 4,
                "remaining": 996,
                "usagePercentage": 0.4,
                "canSend": True,
            }
        ]
        * 2
    )
    # What send-bulk would report for a new recipient: the same room.
    fresh = factories.make_bulk_send(tenant.number, tenant.template)
    factories.make_message(fresh, phone="+5491160000077")
    info = quota_for_send(bulk_send=fresh, account=tenant.account, now=timezone.now())
    assert info.quota_available == quotas[0]["remaining"] - 1


@pytest.mark.django_db
def test_a_full_window_cannot_send_and_an_unlimited_tier_has_no_limit(tenant: Tenant) -> None:
    tenant.account.messaging_limit_tier = "TIER_250"
    tenant.account.save()
    send = factories.make_bulk_send(tenant.number, tenant.template)
    for n in range(250):
        factories.make_message(send, phone=f"+5491160{n:06d}")

    full = tenant.client.get(URL).json()["businessAccounts"][0]["phoneNumbers"][0]["quota"]
    tenant.account.messaging_limit_tier = "TIER_UNLIMITED"
    tenant.account.save()
    unlimited = tenant.client.get(URL).json()["businessAccounts"][0]["phoneNumbers"][0]["quota"]

    assert full == {
        "dailyLimit": 250,
        "uniqueNumbersSent24h": 250,
        "remaining": 0,
        "usagePercentage": 100.0,
        "canSend": False,
    }
    assert unlimited == {
        "dailyLimit": None,
        "uniqueNumbersSent24h": 250,
        "remaining": None,
        "usagePercentage": None,
        "canSend": True,
    }


@pytest.mark.django_db
def test_the_primary_number_is_the_marked_one_else_the_oldest(tenant: Tenant) -> None:
    second = factories.make_number(tenant.account)
    other_account = factories.make_account(tenant.organization, name="Second WABA")
    third = factories.make_number(other_account)
    fourth = factories.make_number(other_account, is_primary=True)

    accounts = tenant.client.get(URL).json()["businessAccounts"]

    primary = {
        number["id"]: number["isPrimary"]
        for account in accounts
        for number in account["phoneNumbers"]
    }
    assert primary == {tenant.number.pk: True, second.pk: False, third.pk: False, fourth.pk: True}
    assert [account["businessName"] for account in accounts] == ["Test WABA", "Second WABA"]


@pytest.mark.django_db
def test_only_approved_templates_are_listed(tenant: Tenant) -> None:
    for status in ("PENDING", "REJECTED", "PAUSED", "DISABLED"):
        factories.make_template(tenant.account, name=f"t_{status.lower()}", status=status)
    factories.make_template(tenant.account, name="welcome_message", language="en")

    [account] = tenant.client.get(URL).json()["businessAccounts"]

    assert [(t["name"], t["language"]) for t in account["templates"]] == [
        ("welcome_message", "en"),
        ("welcome_message", "es"),
    ]


@pytest.mark.django_db
def test_a_key_sees_only_its_organization(tenant: Tenant, other_tenant: Tenant) -> None:
    factories.make_template(other_tenant.account, name="their_secret_template")
    send = factories.make_bulk_send(other_tenant.number, other_tenant.template)
    factories.make_message(send, phone="+5491160000001")

    mine = tenant.client.get(URL).json()
    theirs = other_tenant.client.get(URL).json()

    assert mine["companyName"] == "Mindo"
    assert [a["businessAccountId"] for a in mine["businessAccounts"]] == [tenant.account.pk]
    assert [n["id"] for n in mine["businessAccounts"][0]["phoneNumbers"]] == [tenant.number.pk]
    assert [t["name"] for t in mine["businessAccounts"][0]["templates"]] == ["welcome_message"]
    assert mine["businessAccounts"][0]["phoneNumbers"][0]["quota"]["uniqueNumbersSent24h"] == 0
    assert [a["businessAccountId"] for a in theirs["businessAccounts"]] == [other_tenant.account.pk]
    assert theirs["businessAccounts"][0]["phoneNumbers"][0]["quota"]["uniqueNumbersSent24h"] == 1


@pytest.mark.django_db
def test_media_headers_and_positional_variables_are_listed_with_their_types(
    tenant: Tenant,
) -> None:
    factories.make_template(
        tenant.account,
        name="photo_offer",
        components=[
            {"type": "HEADER", "format": "VIDEO"},
            {"type": "BODY", "text": "Hola {{1}}, hoy {{3}} por {{2}}."},
        ],
        variable_types={"2": "CURRENCY", "3": "DATE_TIME"},
    )
    factories.make_template(
        tenant.account,
        name="shipping",
        components=[
            {"type": "HEADER", "format": "TEXT", "text": "Envio {{1}}"},
            {"type": "BODY", "text": "Llega {{1}}"},
        ],
    )

    templates = tenant.client.get(URL).json()["businessAccounts"][0]["templates"]

    def listed(name: str) -> list[tuple[str, str, int, str]]:
        [template] = [t for t in templates if t["name"] == name]
        return [
            (v["name"], v["type"], v["position"], v["component"]) for v in template["variables"]
        ]

    assert listed("photo_offer") == [
        ("header_video", "VIDEO", 1, "HEADER"),
        ("1", "TEXT", 1, "BODY"),
        ("2", "CURRENCY", 2, "BODY"),
        ("3", "DATE_TIME", 3, "BODY"),
    ]
    assert listed("shipping") == [("1", "TEXT", 1, "HEADER"), ("1", "TEXT", 1, "BODY")]
    assert listed("welcome_message") == [("name", "TEXT", 1, "BODY"), ("code", "TEXT", 2, "BODY")]


@pytest.mark.django_db
def test_the_query_count_does_not_grow_with_numbers_and_templates(
    tenant: Tenant, django_assert_max_num_queries: Any
) -> None:
    for n in range(5):
        factories.make_number(tenant.account)
        factories.make_template(tenant.account, name=f"extra_{n}")

    with django_assert_max_num_queries(8):
        assert tenant.client.get(URL).status_code == 200


def schema_shape(schema: dict[str, Any], node: dict[str, Any]) -> Any:
    """The keys a schema node describes, in the same form as `shape` without the types."""
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    if node.get("type") == "array":
        return [schema_shape(schema, node["items"])]
    if "properties" in node:
        return [(key, schema_shape(schema, item)) for key, item in node["properties"].items()]
    return None


def keys_only(value: Any) -> Any:
    if isinstance(value, list) and value and isinstance(value[0], tuple):
        return [(key, keys_only(item)) for key, item in value]
    if isinstance(value, list):
        return [keys_only(item) for item in value]
    return None


@pytest.mark.django_db
def test_the_openapi_document_describes_the_examples_keys(client: Any) -> None:
    schema = client.get("/api/schema/?format=json").json()
    ok = schema["paths"]["/api/v1/business-accounts/"]["get"]["responses"]["200"]

    described = schema_shape(schema, ok["content"]["application/json"]["schema"])

    assert described == keys_only(shape(SPEC_EXAMPLE))


def test_it_needs_an_api_key(anonymous_client: APIClient) -> None:
    response = anonymous_client.get(URL)

    assert response.status_code == 401
    assert response.json() == {
        "error": "Este endpoint requiere autenticacion con API Key (header X-API-Key)"
    }
