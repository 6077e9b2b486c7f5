"""The Graph API request bodies built from a template and one recipient's variables."""

from __future__ import annotations

from typing import Any

import pytest

from meta.components import template_parameter_format
from meta.template_message import (
    MissingVariableError,
    TemplateShape,
    template_message_body,
    template_shape_build,
)
from templates_app.models import MessageTemplate
from templates_app.shapes import template_shape
from tests import factories
from tests.conftest import Tenant


def unsaved_template(
    components: list[dict[str, Any]], name: str = "promo", language: str = "es"
) -> TemplateShape:
    return template_shape_build(
        name=name,
        language=language,
        components=components,
        parameter_format=template_parameter_format(components),
    )


NAMED_COMPONENTS = [
    {"type": "HEADER", "format": "TEXT", "text": "Pedido {{order}}"},
    {"type": "BODY", "text": "Hola {{name}}, tu pedido {{order}} llega el {{date}}."},
    {"type": "FOOTER", "text": "Mindo"},
    {
        "type": "BUTTONS",
        "buttons": [
            {"type": "URL", "text": "Seguir", "url": "https://mindo.example/t/{{1}}"},
            {"type": "PHONE_NUMBER", "text": "Llamar", "phone_number": "+5491100000000"},
        ],
    },
]


def test_a_named_template_sends_header_body_and_url_button_parameters_by_name() -> None:
    template = unsaved_template(NAMED_COMPONENTS)

    body = template_message_body(
        to_e164="+5491112345678",
        template=template,
        variables={"name": "Juan", "order": "A-1", "date": "lunes"},
        button_variables={"button_0": "A-1"},
        callback_data="mindo-message:42",
    )

    assert body == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "5491112345678",
        "type": "template",
        "template": {
            "name": "promo",
            "language": {"code": "es"},
            "components": [
                {
                    "type": "header",
                    "parameters": [{"type": "text", "parameter_name": "order", "text": "A-1"}],
                },
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "parameter_name": "name", "text": "Juan"},
                        {"type": "text", "parameter_name": "order", "text": "A-1"},
                        {"type": "text", "parameter_name": "date", "text": "lunes"},
                    ],
                },
                {
                    "type": "button",
                    "sub_type": "url",
                    "index": "0",
                    "parameters": [{"type": "text", "text": "A-1"}],
                },
            ],
        },
        "biz_opaque_callback_data": "mindo-message:42",
    }


def test_a_positional_template_fills_placeholders_in_numeric_order() -> None:
    # The text names {{2}} first; Meta still fills the first parameter into {{1}}.
    template = unsaved_template([{"type": "BODY", "text": "Vence el {{2}}, {{1}}. Total {{3}}."}])

    components = template.components({"1": "Ana", "2": "lunes", "3": "$10"}, {})

    assert components == [
        {
            "type": "body",
            "parameters": [
                {"type": "text", "text": "Ana"},
                {"type": "text", "text": "lunes"},
                {"type": "text", "text": "$10"},
            ],
        }
    ]


def test_quick_reply_and_copy_code_buttons_carry_a_payload_and_a_coupon_code() -> None:
    template = unsaved_template(
        [
            {"type": "BODY", "text": "Tu cupon"},
            {
                "type": "BUTTONS",
                "buttons": [
                    {"type": "QUICK_REPLY", "text": "Si"},
                    {"type": "QUICK_REPLY", "text": "No"},
                    {"type": "COPY_CODE", "example": "SAVE10"},
                ],
            },
        ]
    )

    components = template.components({}, {"button_0": "yes-42", "button_2": "SAVE10"})

    assert components == [
        {
            "type": "button",
            "sub_type": "quick_reply",
            "index": "0",
            "parameters": [{"type": "payload", "payload": "yes-42"}],
        },
        {
            "type": "button",
            "sub_type": "copy_code",
            "index": "2",
            "parameters": [{"type": "coupon_code", "coupon_code": "SAVE10"}],
        },
    ]


def test_a_template_without_parameters_is_sent_without_components() -> None:
    template = unsaved_template([{"type": "BODY", "text": "Hola!"}], name="hello_world")

    body = template_message_body(
        to_e164="+14155550100",
        template=template,
        variables={},
        button_variables={},
        callback_data="mindo-message:1",
    )

    assert body["template"] == {"name": "hello_world", "language": {"code": "es"}}
    assert body["to"] == "14155550100"


def test_a_media_header_takes_its_link_as_metas_media_parameter() -> None:
    template = unsaved_template(
        [{"type": "HEADER", "format": "IMAGE"}, {"type": "BODY", "text": "Hola {{name}}"}]
    )

    components = template.components(
        {"name": "Juan", "header_image": "https://cdn.example/promo.jpg"}, {}
    )

    assert components == [
        {
            "type": "header",
            "parameters": [{"type": "image", "image": {"link": "https://cdn.example/promo.jpg"}}],
        },
        {
            "type": "body",
            "parameters": [{"type": "text", "parameter_name": "name", "text": "Juan"}],
        },
    ]


def test_a_missing_variable_is_an_error_naming_it() -> None:
    template = unsaved_template(NAMED_COMPONENTS)

    with pytest.raises(MissingVariableError, match="'date'"):
        template.components({"name": "Juan", "order": "A-1"}, {})


def test_a_saved_template_shape_is_reused_until_the_template_changes(tenant: Tenant) -> None:
    template = factories.make_template(tenant.account, name="cached")
    first = template_shape(template)

    assert template_shape(MessageTemplate.objects.get(pk=template.pk)) is first

    template.set_components([{"type": "BODY", "text": "Nuevo {{x}}"}])
    template.save()
    assert template_shape(template) is not first
    assert [parameter.name for parameter in template_shape(template).body] == ["x"]
