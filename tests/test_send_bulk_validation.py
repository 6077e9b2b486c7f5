"""POST /api/v1/meta-templates/send-bulk/ with bad input: each refused, and nothing stored."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.test import RequestFactory, override_settings
from rest_framework.test import APIClient

from bulksend.models import BulkSend
from messaging.models import Message
from mindo.exceptions import RequestTooLarge
from mindo.parsers import BoundedJSONParser
from tests import factories
from tests.conftest import Tenant

URL = "/api/v1/meta-templates/send-bulk/"
NUMBER_ID = "813497231850626"

INVALID_PHONE = (
    "Enter a valid phone number in international E.164 format, with `+` and no spaces "
    "(e.g. +5491112345678)."
)
ONE_BUTTON_VARIABLE = "A button takes exactly 1 variable: URL buttons only support 1 variable."


def recipient(phone: str = "+5491112345678", **fields: Any) -> dict[str, Any]:
    """A recipient of the welcome template that is valid unless `fields` say otherwise."""
    return {
        "phone": phone,
        "variables": {"name": "Juan Perez", "code": "ABC123"},
        "button_variables": {"button_0": "ABC-123"},
        **fields,
    }


def payload(*recipients: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "phone_number_id": NUMBER_ID,
        "template_name": "welcome_message",
        "recipients": list(recipients) or [recipient()],
        **fields,
    }


def phones(count: int) -> list[str]:
    return [f"+54911{10_000_000 + n:08d}" for n in range(count)]


def assert_nothing_created() -> None:
    assert BulkSend.objects.count() == 0
    assert Message.objects.count() == 0


def refused(client: APIClient, body: Any, status: int = 400) -> Any:
    response = client.post(URL, body, format="json")
    assert response.status_code == status, response.content
    assert_nothing_created()
    return response.json()


# --- The body as a whole ----------------------------------------------------------------------


def test_it_rejects_a_body_that_is_not_json(tenant: Tenant) -> None:
    response = tenant.client.post(URL, '{"phone_number_id": ', content_type="application/json")

    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"detail"}
    assert body["detail"].startswith("JSON parse error - ")
    assert_nothing_created()


@pytest.mark.parametrize(
    ("body", "type_name"),
    [([payload()], "list"), ("send it", "str"), (42, "int")],
)
def test_it_rejects_a_json_body_that_is_not_an_object(
    tenant: Tenant, body: Any, type_name: str
) -> None:
    response = tenant.client.post(URL, json.dumps(body), content_type="application/json")

    assert response.status_code == 400
    assert response.json() == {
        "non_field_errors": [f"Invalid data. Expected a dictionary, but got {type_name}."]
    }
    assert_nothing_created()


def test_it_rejects_a_json_null_body(tenant: Tenant) -> None:
    response = tenant.client.post(URL, "null", content_type="application/json")

    assert response.status_code == 400
    assert response.json() == {"non_field_errors": ["No data provided"]}
    assert_nothing_created()


def test_it_names_every_missing_field_like_the_spec_example(tenant: Tenant) -> None:
    assert refused(tenant.client, {}) == {
        "phone_number_id": ["This field is required."],
        "template_name": ["This field is required."],
        "recipients": ["This field is required."],
    }


def test_it_answers_the_spec_validation_example_for_two_missing_fields(tenant: Tenant) -> None:
    body = {"template_name": "welcome_message"}

    assert refused(tenant.client, body) == {
        "phone_number_id": ["This field is required."],
        "recipients": ["This field is required."],
    }


@pytest.mark.parametrize("field", ["phone_number_id", "template_name", "language"])
def test_it_rejects_a_blank_top_level_field(tenant: Tenant, field: str) -> None:
    assert refused(tenant.client, payload(**{field: ""})) == {
        field: ["This field may not be blank."]
    }


def test_it_rejects_an_oversized_body_with_413(tenant: Tenant) -> None:
    with override_settings(API_MAX_BODY_BYTES=200):
        body = refused(tenant.client, payload(*[recipient(p) for p in phones(3)]), status=413)

    assert body == {"error": "El cuerpo de la solicitud supera el maximo de 200 bytes"}


@pytest.mark.parametrize(("spare", "status"), [(0, 202), (-1, 413)])
def test_it_takes_a_body_of_exactly_the_size_limit_and_not_a_byte_more(
    tenant: Tenant, spare: int, status: int
) -> None:
    text = json.dumps(payload())

    with override_settings(API_MAX_BODY_BYTES=len(text.encode()) + spare):
        response = tenant.client.post(URL, text, content_type="application/json")

    assert response.status_code == status, response.content


def test_it_refuses_a_body_of_undeclared_length_that_runs_past_the_limit() -> None:
    # A chunked upload declares no length: the parser must stop reading past the limit.
    request = RequestFactory().post(URL, b"", content_type="application/json")
    request.META.pop("CONTENT_LENGTH", None)
    stream = io.BytesIO(json.dumps(payload()).encode())

    with override_settings(API_MAX_BODY_BYTES=50), pytest.raises(RequestTooLarge):
        BoundedJSONParser().parse(stream, "application/json", {"request": request})


# --- recipients -------------------------------------------------------------------------------


def test_it_rejects_empty_recipients_with_the_spec_error(tenant: Tenant) -> None:
    assert refused(tenant.client, payload(recipients=[])) == {
        "error": "recipients es requerido y no puede estar vacio"
    }


def test_it_reports_empty_recipients_among_other_field_errors(tenant: Tenant) -> None:
    body = {"template_name": "welcome_message", "recipients": []}

    assert refused(tenant.client, body) == {
        "phone_number_id": ["This field is required."],
        "recipients": ["recipients es requerido y no puede estar vacio"],
    }


@pytest.mark.parametrize(
    ("value", "type_name"),
    [({"phone": "+5491112345678"}, "dict"), ("+5491112345678", "str"), (3, "int")],
)
def test_it_rejects_recipients_that_are_not_a_list(
    tenant: Tenant, value: Any, type_name: str
) -> None:
    assert refused(tenant.client, payload(recipients=value)) == {
        "recipients": [f'Expected a list of items but got type "{type_name}".']
    }


def test_it_rejects_more_recipients_than_the_maximum(tenant: Tenant) -> None:
    with override_settings(BULK_SEND_MAX_RECIPIENTS=5):
        body = refused(tenant.client, payload(*[recipient(p) for p in phones(6)]))

    assert body == {"recipients": ["Ensure this field has no more than 5 elements."]}


def test_it_accepts_exactly_the_maximum_of_recipients(tenant: Tenant) -> None:
    with override_settings(BULK_SEND_MAX_RECIPIENTS=5):
        response = tenant.client.post(
            URL, payload(*[recipient(p) for p in phones(5)]), format="json"
        )

    assert response.status_code == 202, response.content


def test_it_counts_duplicates_against_the_maximum(tenant: Tenant) -> None:
    with override_settings(BULK_SEND_MAX_RECIPIENTS=5):
        body = refused(tenant.client, payload(*[recipient()] * 6))

    assert body == {"recipients": ["Ensure this field has no more than 5 elements."]}


@pytest.mark.parametrize("item", ["+5491112345678", 5491112345678, None, ["+5491112345678"]])
def test_it_rejects_a_recipient_that_is_not_an_object(tenant: Tenant, item: Any) -> None:
    body = refused(tenant.client, payload(recipient(), item))

    assert body == {
        "recipients": {
            "1": {
                "non_field_errors": [
                    f"Invalid data. Expected a dictionary, but got {type(item).__name__}."
                ]
            }
        }
    }


def test_it_rejects_a_recipient_without_phone(tenant: Tenant) -> None:
    item = recipient()
    del item["phone"]

    assert refused(tenant.client, payload(item)) == {
        "recipients": {"0": {"phone": ["This field is required."]}}
    }


@pytest.mark.parametrize(
    ("phone", "error"),
    [
        (5491112345678, "Not a valid string."),
        (None, "This field may not be null."),
        ({"number": "+5491112345678"}, "Not a valid string."),
    ],
)
def test_it_rejects_a_phone_that_is_not_a_string(tenant: Tenant, phone: Any, error: str) -> None:
    assert refused(tenant.client, payload(recipient(phone))) == {
        "recipients": {"0": {"phone": [error]}}
    }


@pytest.mark.parametrize(
    "phone",
    [
        pytest.param("+54 911 1234 5678", id="spaces"),
        pytest.param("+54-911-1234-5678", id="dashes"),
        pytest.param("+54911abcd5678", id="letters"),
        pytest.param("+54911", id="too-short"),
        pytest.param("+549111234567890123", id="too-long"),
        pytest.param("5491112345678", id="no-plus"),
        pytest.param("005491112345678", id="international-prefix"),
        pytest.param("+999111234567", id="unknown-country-code"),
        pytest.param("+0491112345678", id="country-code-zero"),
        pytest.param("+4903012345678", id="trunk-prefix-kept"),
        pytest.param(" +5491112345678", id="leading-space"),
        pytest.param("+5491112345678\n", id="trailing-newline"),
        pytest.param("", id="empty"),
    ],
)
def test_it_rejects_a_phone_not_in_e164(tenant: Tenant, phone: str) -> None:
    assert refused(tenant.client, payload(recipient(phone))) == {
        "recipients": {"0": {"phone": [INVALID_PHONE]}}
    }


def test_it_names_the_index_of_the_only_bad_recipient(tenant: Tenant) -> None:
    items = [recipient(phone) for phone in phones(10)]
    items[7]["phone"] = "+54 911 1234 5678"

    assert refused(tenant.client, payload(*items)) == {
        "recipients": {"7": {"phone": [INVALID_PHONE]}}
    }


def test_it_reports_the_errors_of_every_bad_recipient(tenant: Tenant) -> None:
    items: list[Any] = [recipient(phone) for phone in phones(6)]
    items[1]["phone"] = "5491112345678"
    del items[3]["phone"]
    items[4] = "not a recipient"
    items[5]["variables"] = ["Juan"]

    assert refused(tenant.client, payload(*items)) == {
        "recipients": {
            "1": {"phone": [INVALID_PHONE]},
            "3": {"phone": ["This field is required."]},
            "4": {"non_field_errors": ["Invalid data. Expected a dictionary, but got str."]},
            "5": {"variables": ['Expected a dictionary of items but got type "list".']},
        }
    }


def test_it_rejects_unknown_recipient_fields(tenant: Tenant) -> None:
    body = refused(tenant.client, payload(recipient(name="Juan", email="j@example.com")))

    assert body == {
        "recipients": {
            "0": {
                "non_field_errors": [
                    "Unknown field(s): email, name. "
                    "A recipient takes phone (or user_id), variables and button_variables."
                ]
            }
        }
    }


# --- variables and button_variables: types ----------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "type_name"),
    [
        ("variables", ["Juan", "ABC"], "list"),
        ("variables", "Juan", "str"),
        ("button_variables", ["ABC-123"], "list"),
        ("button_variables", 1, "int"),
    ],
)
def test_it_rejects_variables_that_are_not_an_object(
    tenant: Tenant, field: str, value: Any, type_name: str
) -> None:
    assert refused(tenant.client, payload(recipient(**{field: value}))) == {
        "recipients": {
            "0": {field: [f'Expected a dictionary of items but got type "{type_name}".']}
        }
    }


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ({"first": "Juan"}, "Not a valid string."),
        (["Juan"], "Not a valid string."),
        (True, "Not a valid string."),
        (None, "This field may not be null."),
        ("", "This field may not be blank."),
        ("   ", "This field may not be blank."),
    ],
)
def test_it_rejects_a_variable_value_that_is_not_text(
    tenant: Tenant, value: Any, error: str
) -> None:
    item = recipient(variables={"name": value, "code": "ABC123"})

    assert refused(tenant.client, payload(item)) == {
        "recipients": {"0": {"variables": {"name": [error]}}}
    }


@pytest.mark.parametrize("field", ["variables", "button_variables"])
def test_it_rejects_a_null_character_in_a_value(tenant: Tenant, field: str) -> None:
    item = recipient()
    key = next(iter(item[field]))
    item[field][key] = "ABC\u0000123"

    assert refused(tenant.client, payload(item)) == {
        "recipients": {"0": {field: {key: ["Null characters are not allowed."]}}}
    }


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (None, "This field may not be null."),
        ("", "This field may not be blank."),
        ({"suffix": "x"}, "Not a valid string."),
        (["ABC-123", "DEF-456"], ONE_BUTTON_VARIABLE),
        ([], ONE_BUTTON_VARIABLE),
    ],
)
def test_it_rejects_a_url_button_value_that_is_not_one_text(
    tenant: Tenant, value: Any, error: str
) -> None:
    item = recipient(button_variables={"button_0": value})

    assert refused(tenant.client, payload(item)) == {
        "recipients": {"0": {"button_variables": {"button_0": [error]}}}
    }


# --- variables and button_variables against the template --------------------------------------


def test_it_rejects_missing_template_variables(tenant: Tenant) -> None:
    item = recipient(variables={"name": "Juan Perez"})

    assert refused(tenant.client, payload(item)) == {
        "recipients": {
            "0": {"variables": ["Missing variable(s) for template 'welcome_message': code."]}
        }
    }


def test_it_rejects_a_recipient_without_variables_when_the_template_has_some(
    tenant: Tenant,
) -> None:
    item = recipient()
    del item["variables"]

    assert refused(tenant.client, payload(item)) == {
        "recipients": {
            "0": {"variables": ["Missing variable(s) for template 'welcome_message': name, code."]}
        }
    }


def test_it_rejects_variables_the_template_does_not_have(tenant: Tenant) -> None:
    item = recipient(variables={"name": "Juan", "code": "ABC", "city": "Mar del Plata"})

    assert refused(tenant.client, payload(item)) == {
        "recipients": {
            "0": {
                "variables": [
                    "Unknown variable(s) for template 'welcome_message': city. "
                    "It takes: name, code."
                ]
            }
        }
    }


def test_it_reports_missing_and_unknown_variables_together(tenant: Tenant) -> None:
    item = recipient(variables={"nombre": "Juan", "code": "ABC"})

    assert refused(tenant.client, payload(item)) == {
        "recipients": {
            "0": {
                "variables": [
                    "Missing variable(s) for template 'welcome_message': name.",
                    "Unknown variable(s) for template 'welcome_message': nombre. "
                    "It takes: name, code.",
                ]
            }
        }
    }


def test_it_names_the_client_index_of_a_variables_error_after_duplicates(tenant: Tenant) -> None:
    items = [recipient(phone) for phone in phones(10)]
    items[3] = recipient(items[0]["phone"])  # a duplicate before the bad one
    items[7]["variables"] = {"name": "Juan"}

    assert refused(tenant.client, payload(*items)) == {
        "recipients": {
            "7": {"variables": ["Missing variable(s) for template 'welcome_message': code."]}
        }
    }


def test_it_rejects_a_missing_url_button_variable(tenant: Tenant) -> None:
    item = recipient()
    del item["button_variables"]

    assert refused(tenant.client, payload(item)) == {
        "recipients": {
            "0": {"button_variables": ["Missing variable for button 0 (URL): button_0."]}
        }
    }


def test_it_rejects_a_button_index_the_template_does_not_have(tenant: Tenant) -> None:
    item = recipient(button_variables={"button_0": "ABC-123", "button_1": "x"})

    assert refused(tenant.client, payload(item)) == {
        "recipients": {
            "0": {"button_variables": ["Template 'welcome_message' has no button 1 ('button_1')."]}
        }
    }


@pytest.mark.parametrize(
    "key",
    ["button0", "button_", "Button_0", "button_-1", "0", "button_00", "button_01", "button_0\n"],
)
def test_it_rejects_a_malformed_button_key(tenant: Tenant, key: str) -> None:
    item = recipient(button_variables={"button_0": "ABC-123", key: "x"})

    assert refused(tenant.client, payload(item)) == {
        "recipients": {
            "0": {
                "button_variables": [
                    f"Invalid key '{key}': use button_0, button_1... by button index."
                ]
            }
        }
    }


@pytest.mark.parametrize(
    ("button", "kind"),
    [
        (
            {"type": "PHONE_NUMBER", "text": "Llamar", "phone_number": "+5492236750780"},
            "PHONE_NUMBER",
        ),
        ({"type": "URL", "text": "Ver", "url": "https://mindo.example/promo"}, "URL"),
    ],
    ids=["phone-number-button", "static-url-button"],
)
def test_it_rejects_a_variable_for_a_button_that_takes_none(
    tenant: Tenant, button: dict[str, str], kind: str
) -> None:
    factories.make_template(
        tenant.account,
        name="call_us",
        components=[
            {"type": "BODY", "text": "Hola {{name}}"},
            {"type": "BUTTONS", "buttons": [button]},
        ],
    )
    item = {
        "phone": "+5491112345678",
        "variables": {"name": "Juan"},
        "button_variables": {"button_0": "x"},
    }

    assert refused(tenant.client, payload(item, template_name="call_us")) == {
        "recipients": {
            "0": {
                "button_variables": [f"Button 0 ({kind}) of template 'call_us' takes no variable."]
            }
        }
    }


def test_it_accepts_no_variable_for_a_button_that_takes_none(tenant: Tenant) -> None:
    factories.make_template(
        tenant.account,
        name="call_us",
        components=[
            {"type": "BODY", "text": "Hola {{name}}"},
            {
                "type": "BUTTONS",
                "buttons": [{"type": "URL", "text": "Ver", "url": "https://x.example"}],
            },
        ],
    )
    item = {"phone": "+5491112345678", "variables": {"name": "Juan"}}

    response = tenant.client.post(URL, payload(item, template_name="call_us"), format="json")

    assert response.status_code == 202, response.content


def test_it_reports_variables_and_buttons_of_many_recipients(tenant: Tenant) -> None:
    items = [recipient(phone) for phone in phones(4)]
    del items[0]["button_variables"]
    items[2]["variables"] = {"name": "Juan"}
    items[2]["button_variables"] = {"button_2": "x", "button_0": "y"}

    assert refused(tenant.client, payload(*items)) == {
        "recipients": {
            "0": {"button_variables": ["Missing variable for button 0 (URL): button_0."]},
            "2": {
                "variables": ["Missing variable(s) for template 'welcome_message': code."],
                "button_variables": ["Template 'welcome_message' has no button 2 ('button_2')."],
            },
        }
    }


# --- The template and the number --------------------------------------------------------------


@pytest.mark.parametrize("status", ["PENDING", "REJECTED", "PAUSED", "DISABLED"])
def test_it_rejects_a_template_that_is_not_approved(tenant: Tenant, status: str) -> None:
    factories.make_template(
        tenant.account,
        name="summer_sale",
        status=status,
        components=[{"type": "BODY", "text": "Hola {{name}}"}],
    )
    item = {"phone": "+5491112345678", "variables": {"name": "Juan"}}

    assert refused(tenant.client, payload(item, template_name="summer_sale")) == {
        "template_name": [
            f"Template 'summer_sale' (language: es) is {status}: "
            "only APPROVED templates can be sent."
        ]
    }


def test_it_rejects_a_template_with_a_location_header(tenant: Tenant) -> None:
    factories.make_template(
        tenant.account,
        name="store_map",
        components=[
            {"type": "HEADER", "format": "LOCATION"},
            {"type": "BODY", "text": "Hola {{name}}"},
        ],
    )
    item = {"phone": "+5491112345678", "variables": {"name": "Juan"}}

    assert refused(tenant.client, payload(item, template_name="store_map")) == {
        "template_name": [
            "Template 'store_map' (language: es) has a LOCATION header, which no variable can "
            "fill: use a template with a text or media header."
        ]
    }


def test_it_answers_404_for_an_unknown_template(tenant: Tenant) -> None:
    assert refused(tenant.client, payload(template_name="x"), status=404) == {
        "error": "Template 'x' (language: es) no encontrado en este business account"
    }


def test_it_answers_404_for_a_template_in_another_language(tenant: Tenant) -> None:
    assert refused(tenant.client, payload(language="pt_BR"), status=404) == {
        "error": (
            "Template 'welcome_message' (language: pt_BR) no encontrado en este business account"
        )
    }


def test_it_answers_404_for_a_template_of_another_business_account(tenant: Tenant) -> None:
    other_account = factories.make_account(tenant.organization)
    factories.make_template(
        other_account, name="only_there", components=[{"type": "BODY", "text": "Hola"}]
    )
    item = {"phone": "+5491112345678"}

    assert refused(tenant.client, payload(item, template_name="only_there"), status=404) == {
        "error": "Template 'only_there' (language: es) no encontrado en este business account"
    }


def test_it_answers_404_for_an_unknown_number(tenant: Tenant) -> None:
    assert refused(tenant.client, payload(phone_number_id="111111111111111"), status=404) == {
        "error": "Numero de WhatsApp con ID '111111111111111' no encontrado"
    }


def test_it_answers_404_for_another_organizations_number(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    number_id = other_tenant.number.phone_number_id

    assert refused(tenant.client, payload(phone_number_id=number_id), status=404) == {
        "error": f"Numero de WhatsApp con ID '{number_id}' no encontrado"
    }


def test_it_checks_the_number_before_the_recipients_variables(tenant: Tenant) -> None:
    item = recipient(variables={})

    assert refused(tenant.client, payload(item, phone_number_id="1"), status=404) == {
        "error": "Numero de WhatsApp con ID '1' no encontrado"
    }
