"""Media headers and typed variables: what a send must give, what Meta (the sandbox) receives."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from io import StringIO
from typing import Any

import orjson
import pytest
import requests
from django.core.management import CommandError, call_command
from django.test import override_settings
from rest_framework.test import APIClient

from bulksend.models import BulkSend
from messaging.models import Message
from meta.graph_version import GRAPH_VERSION
from meta.parameters import NO_CURRENCY_CODE, NOT_AN_AMOUNT, NOT_HTTPS_URL, typed_parameter
from meta_sandbox import SandboxConfig, SandboxThread
from tests import factories
from tests.conftest import Tenant
from tests.delivery_support import (
    SEND_BULK_URL,
    delivery_redis_fixture,  # noqa: F401  (fixtures)
    drain_to_completion,
    received,
    sandbox_fixture,  # noqa: F401
    sandbox_publish,
    send_bulk,
)

ORDER_CONFIRMATION = [
    {"type": "HEADER", "format": "DOCUMENT"},
    {
        "type": "BODY",
        "text": "Pedido {{order_id}}: total {{total_amount}}, llega el {{delivery_date}}.",
    },
]
ORDER_TYPES = {"total_amount": "CURRENCY", "delivery_date": "DATE_TIME"}
PHOTO_OFFER = [
    {"type": "HEADER", "format": "IMAGE"},
    {"type": "BODY", "text": "Hola {{1}}, hoy {{2}} de descuento."},
]


def order_variables(**changes: Any) -> dict[str, Any]:
    return {
        "header_document": "https://cdn.example/facturas/F-0001%20A.pdf",
        "order_id": "A-1",
        "total_amount": "ARS 1,250.50",
        "delivery_date": "25 de noviembre",
        **changes,
    }


def order_template(tenant: Tenant, **fields: Any) -> None:
    factories.make_template(
        tenant.account,
        name="order_confirmation",
        components=ORDER_CONFIRMATION,
        variable_types=ORDER_TYPES,
        category="UTILITY",
        **fields,
    )


def post(tenant: Tenant, template_name: str, recipients: list[dict[str, Any]]) -> Any:
    return tenant.client.post(
        SEND_BULK_URL,
        {
            "phone_number_id": tenant.number.phone_number_id,
            "template_name": template_name,
            "language": "es",
            "recipients": recipients,
        },
        format="json",
    )


# --- what Meta receives --------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_document_header_currency_and_date_go_to_meta_as_its_typed_parameters(
    tenant: Tenant, sandbox: SandboxThread
) -> None:
    order_template(tenant)
    sandbox_publish(sandbox.url)
    accepted = send_bulk(
        tenant,
        [{"phone": "+5491150000001", "variables": order_variables()}],
        template_name="order_confirmation",
    )

    drain_to_completion(accepted["bulk_send_id"])

    [message] = received(sandbox).messages
    assert message["request_body"]["template"]["components"] == [
        {
            "type": "header",
            "parameters": [
                {
                    "type": "document",
                    "document": {
                        "link": "https://cdn.example/facturas/F-0001%20A.pdf",
                        "filename": "F-0001 A.pdf",
                    },
                }
            ],
        },
        {
            "type": "body",
            "parameters": [
                {"type": "text", "parameter_name": "order_id", "text": "A-1"},
                {
                    "type": "currency",
                    "parameter_name": "total_amount",
                    "currency": {
                        "fallback_value": "ARS 1,250.50",
                        "code": "ARS",
                        "amount_1000": 1250500,
                    },
                },
                {
                    "type": "date_time",
                    "parameter_name": "delivery_date",
                    "date_time": {"fallback_value": "25 de noviembre"},
                },
            ],
        },
    ]
    assert Message.objects.get().status == "sent"


@pytest.mark.django_db(transaction=True)
def test_an_image_header_of_a_positional_template_goes_as_metas_image_parameter(
    tenant: Tenant, sandbox: SandboxThread
) -> None:
    factories.make_template(
        tenant.account,
        name="photo_offer",
        components=PHOTO_OFFER,
        variable_types={"2": "CURRENCY"},
        currency_code="USD",
    )
    sandbox_publish(sandbox.url)
    variables = {"header_image": "https://cdn.example/a.jpg", "1": "Ana", "2": "$15"}
    accepted = send_bulk(
        tenant, [{"phone": "+5491150000001", "variables": variables}], template_name="photo_offer"
    )

    drain_to_completion(accepted["bulk_send_id"])

    [message] = received(sandbox).messages
    assert message["request_body"]["template"]["components"] == [
        {
            "type": "header",
            "parameters": [{"type": "image", "image": {"link": "https://cdn.example/a.jpg"}}],
        },
        {
            "type": "body",
            "parameters": [
                {"type": "text", "text": "Ana"},
                {
                    "type": "currency",
                    "currency": {"fallback_value": "$15", "code": "USD", "amount_1000": 15000},
                },
            ],
        },
    ]


@pytest.mark.django_db(transaction=True)
def test_demos_media_template_goes_to_the_sandbox_as_metas_media_parameter(
    delivery_redis: Any,
) -> None:
    config = SandboxConfig(rate_per_number=0, webhook_url=None, seed=7)
    with SandboxThread(config) as running, override_settings(META_GRAPH_URL=running.url):
        stdout = StringIO()
        call_command("demo", "--org", "Acme", "--json", stdout=stdout, stderr=StringIO())
        demo = json.loads(stdout.getvalue())
        client = APIClient()
        client.credentials(HTTP_X_API_KEY=demo["api_key"])
        variables = {
            "header_image": "https://cdn.example/launch.png",
            "name": "Ana",
            "product": "Mindo Pro",
            "launch_date": "1 de diciembre",
            "price": "1500",
        }
        accepted = client.post(
            SEND_BULK_URL,
            {
                "phone_number_id": demo["phone_number_id"],
                "template_name": "product_launch",
                "language": "es",
                "recipients": [{"phone": "+5491150000001", "variables": variables}],
            },
            format="json",
        )
        assert accepted.status_code == 202, accepted.content
        drain_to_completion(accepted.json()["bulk_send_id"])
        [message] = received(running).messages

    header, body = message["request_body"]["template"]["components"]
    assert header == {
        "type": "header",
        "parameters": [{"type": "image", "image": {"link": "https://cdn.example/launch.png"}}],
    }
    assert body["parameters"][-1] == {
        "type": "currency",
        "parameter_name": "price",
        "currency": {"fallback_value": "1500", "code": "ARS", "amount_1000": 1500000},
    }


# --- what a send must give ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "link",
    ["http://cdn.example/f.pdf", "ftp://cdn.example/f.pdf", "cdn.example/f.pdf", "https://", "x"],
)
def test_a_media_variable_that_is_not_an_https_url_is_a_400_naming_it(
    tenant: Tenant, link: str
) -> None:
    order_template(tenant)
    good = {"phone": "+5491150000001", "variables": order_variables()}
    bad = {"phone": "+5491150000002", "variables": order_variables(header_document=link)}

    response = post(tenant, "order_confirmation", [good, bad])

    assert response.status_code == 400
    assert response.json() == {
        "recipients": {"1": {"variables": {"header_document": [NOT_HTTPS_URL]}}}
    }
    assert not BulkSend.objects.exists()
    assert not Message.objects.exists()


@pytest.mark.parametrize("amount", ["mil pesos", "12,50", "1.2345", "-5", "ARS 10 USD", "", "1e3"])
def test_a_currency_that_is_not_an_amount_is_a_400_naming_it(tenant: Tenant, amount: str) -> None:
    order_template(tenant)
    recipient = {"phone": "+5491150000001", "variables": order_variables(total_amount=amount)}

    response = post(tenant, "order_confirmation", [recipient])

    assert response.status_code == 400
    errors = response.json()["recipients"]["0"]["variables"]
    if amount == "":  # blank, refused before its type is looked at
        assert errors == {"total_amount": ["This field may not be blank."]}
    else:
        assert errors == {"total_amount": [NOT_AN_AMOUNT]}
    assert not BulkSend.objects.exists()


def test_a_currency_without_a_code_needs_the_templates_default(tenant: Tenant) -> None:
    order_template(tenant)
    recipient = {"phone": "+5491150000001", "variables": order_variables(total_amount="1250.50")}

    response = post(tenant, "order_confirmation", [recipient])

    assert response.status_code == 400
    assert response.json() == {
        "recipients": {"0": {"variables": {"total_amount": [NO_CURRENCY_CODE]}}}
    }

    factories.make_template(
        tenant.account,
        name="order_confirmation",
        language="en",
        components=ORDER_CONFIRMATION,
        variable_types=ORDER_TYPES,
        currency_code="ARS",
    )
    accepted = tenant.client.post(
        SEND_BULK_URL,
        {
            "phone_number_id": tenant.number.phone_number_id,
            "template_name": "order_confirmation",
            "language": "en",
            "recipients": [recipient],
        },
        format="json",
    )
    assert accepted.status_code == 202, accepted.content


def test_a_media_template_needs_its_media_variable(tenant: Tenant) -> None:
    order_template(tenant)
    variables = order_variables()
    del variables["header_document"]

    response = post(
        tenant, "order_confirmation", [{"phone": "+5491150000001", "variables": variables}]
    )

    assert response.status_code == 400
    assert response.json()["recipients"]["0"]["variables"] == [
        "Missing variable(s) for template 'order_confirmation': header_document."
    ]


@pytest.mark.parametrize(
    ("value", "code", "amount_1000"),
    [
        ("1250.50", "EUR", 1250500),
        ("$1,250.00", "EUR", 1250000),
        ("USD 0.999", "USD", 999),
        ("7 BRL", "BRL", 7000),
        ("1234567", "EUR", 1234567000),
    ],
)
def test_currency_amounts_are_read_in_thousandths(value: str, code: str, amount_1000: int) -> None:
    assert typed_parameter("CURRENCY", value, currency_code="EUR")["currency"] == {
        "fallback_value": value,
        "code": code,
        "amount_1000": amount_1000,
    }


# --- the sandbox checks them by Meta's rules ----------------------------------------------------

WABA = "300000000000001"
NUMBER = "310000000000001"
TOKEN = "typed-test-token"
CATALOG = {
    "accounts": [
        {
            "waba_id": WABA,
            "access_token": TOKEN,
            "phone_numbers": [{"phone_number_id": NUMBER, "display_phone_number": "+54 9 11"}],
            "templates": [
                {
                    "id": "1",
                    "name": "order_confirmation",
                    "language": "es",
                    "category": "UTILITY",
                    "status": "APPROVED",
                    "components": ORDER_CONFIRMATION,
                }
            ],
        }
    ]
}


@pytest.fixture(name="catalog_sandbox")
def catalog_sandbox_fixture() -> Iterator[SandboxThread]:
    with SandboxThread(SandboxConfig(catalog=CATALOG, seed=7, app_secret="x" * 32)) as running:
        yield running


def order_send(header: dict[str, Any], total: dict[str, Any], date: dict[str, Any]) -> bytes:
    return orjson.dumps(
        {
            "messaging_product": "whatsapp",
            "to": "5491150000001",
            "type": "template",
            "template": {
                "name": "order_confirmation",
                "language": {"code": "es"},
                "components": [
                    {"type": "header", "parameters": [header]},
                    {
                        "type": "body",
                        "parameters": [
                            {"type": "text", "parameter_name": "order_id", "text": "A-1"},
                            {"parameter_name": "total_amount", **total},
                            {"parameter_name": "delivery_date", **date},
                        ],
                    },
                ],
            },
        }
    )


DOCUMENT = {
    "type": "document",
    "document": {"link": "https://x.example/f.pdf", "filename": "f.pdf"},
}
TOTAL = {
    "type": "currency",
    "currency": {"fallback_value": "$1", "code": "ARS", "amount_1000": 1000},
}
DATE = {"type": "date_time", "date_time": {"fallback_value": "lunes"}}


def without(parameter: dict[str, Any], kind: str, field: str) -> dict[str, Any]:
    return {**parameter, kind: {k: v for k, v in parameter[kind].items() if k != field}}


def changed(parameter: dict[str, Any], kind: str, **fields: Any) -> dict[str, Any]:
    return {**parameter, kind: {**parameter[kind], **fields}}


@pytest.mark.parametrize(
    ("header", "total", "date", "code"),
    [
        (DOCUMENT, TOTAL, DATE, None),
        (DOCUMENT, without(TOTAL, "currency", "code"), DATE, 131008),
        (DOCUMENT, without(TOTAL, "currency", "amount_1000"), DATE, 131008),
        (DOCUMENT, without(TOTAL, "currency", "fallback_value"), DATE, 131008),
        (DOCUMENT, changed(TOTAL, "currency", amount_1000="1000"), DATE, 131009),
        (DOCUMENT, changed(TOTAL, "currency", code="pesos"), DATE, 131009),
        (DOCUMENT, {"type": "currency"}, DATE, 131008),
        (DOCUMENT, TOTAL, without(DATE, "date_time", "fallback_value"), 131008),
        (DOCUMENT, TOTAL, changed(DATE, "date_time", fallback_value=5), 131009),
        (changed(DOCUMENT, "document", link="ftp://x.example/f.pdf"), TOTAL, DATE, 131009),
        (changed(DOCUMENT, "document", filename=7), TOTAL, DATE, 131009),
        ({"type": "image", "image": {"link": "https://x.example/a.jpg"}}, TOTAL, DATE, 131009),
    ],
)
def test_the_sandbox_checks_typed_and_media_parameters_by_metas_rules(
    catalog_sandbox: SandboxThread,
    header: dict[str, Any],
    total: dict[str, Any],
    date: dict[str, Any],
    code: int | None,
) -> None:
    response = requests.post(
        f"{catalog_sandbox.url}/{GRAPH_VERSION}/{NUMBER}/messages",
        data=order_send(header, total, date),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        timeout=10,
    )

    if code is None:
        assert response.status_code == 200, response.text
    else:
        assert response.status_code == 400
        assert response.json()["error"]["code"] == code


# --- how an operator types a template ------------------------------------------------------------


def test_register_template_sets_variable_types_and_the_currency(tenant: Tenant) -> None:
    args = [
        "register_template",
        *("--waba-id", tenant.account.waba_id, "--name", "order_confirmation"),
        *("--components", json.dumps(ORDER_CONFIRMATION)),
    ]
    stdout = StringIO()

    call_command(
        *args,
        "--variable-types",
        json.dumps(ORDER_TYPES),
        "--currency-code",
        "ARS",
        stdout=stdout,
    )
    call_command(*args, stdout=StringIO())  # left out: kept

    template = tenant.account.templates.get(name="order_confirmation")
    assert (template.variable_types, template.currency_code) == (ORDER_TYPES, "ARS")
    assert "total_amount (CURRENCY)" in stdout.getvalue()
    assert "header_document (DOCUMENT)" in stdout.getvalue()


@pytest.mark.parametrize(
    ("types", "problem"),
    [
        ({"total": "CURRENCY"}, "no placeholder {{total}}"),
        ({"total_amount": "IMAGE"}, "Unknown variable type 'IMAGE'"),
        (["CURRENCY"], "JSON object"),
    ],
)
def test_register_template_refuses_types_the_template_cannot_take(
    tenant: Tenant, types: Any, problem: str
) -> None:
    with pytest.raises(CommandError, match=re.escape(problem)):
        call_command(
            "register_template",
            *("--waba-id", tenant.account.waba_id, "--name", "order_confirmation"),
            *("--components", json.dumps(ORDER_CONFIRMATION)),
            *("--variable-types", json.dumps(types)),
            stdout=StringIO(),
        )
