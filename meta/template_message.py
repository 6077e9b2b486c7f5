"""Turning a recipient's `variables` and `button_variables` into a Graph API template message.

The drainer builds one request body per message, a thousand or more a second, so everything that
depends only on the template (which names go in the header and the body, in what order, which
button takes which kind of parameter) is worked out once into a `TemplateShape` and reused.

Decisions the contract leaves open:
- A template without parameters is sent without a `components` key at all, as Meta's own
  `hello_world` example is: Meta refuses neither, and the shorter body is the cheaper one.
- Variables are keyed by placeholder name (`meta.components.template_variables`). A POSITIONAL
  template whose header and body both use `{{1}}` therefore fills both with `variables["1"]`;
  Meta numbers them separately, but a recipient gives one value per name.
- Typed variables (`meta.components.template_variable_specs`) go as Meta's typed parameters:
  a media header as `{"type": "image", "image": {"link": ...}}`, CURRENCY as `currency`,
  DATE_TIME as `date_time` (`meta.parameters`).
- A missing variable, or one that does not fit its type, raises `MissingVariableError`: sends
  are validated when they are accepted, so this is a bug or a template changed under a send,
  and Meta would refuse the message anyway.
- Button variables for indexes the template has no such button for are ignored, for the same
  reason; a quick reply without a payload needs no component.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from meta.components import (
    BODY,
    HEADER,
    NAMED,
    template_buttons,
    template_variable_specs,
)
from meta.parameters import MEDIA_TYPES, TEXT, ParameterValueError, typed_parameter

# Our button type -> (Meta's send sub_type, the parameter's type and key).
BUTTON_PARAMETERS = {
    "URL": ("url", "text"),
    "QUICK_REPLY": ("quick_reply", "payload"),
    "COPY_CODE": ("copy_code", "coupon_code"),
}


class MissingVariableError(ValueError):
    """A variable the template needs is not among the message's variables, or its value does
    not fit the variable's type."""


@dataclass(frozen=True, slots=True)
class ButtonShape:
    key: str  # "button_<index>", as in Message.button_variables
    index: str  # Meta wants the index as a string
    sub_type: str
    parameter_type: str  # also the parameter's value key: "text", "payload", "coupon_code"


@dataclass(frozen=True, slots=True)
class ParameterShape:
    name: str  # the key of the recipient's variables
    type: str  # TEXT, CURRENCY, DATE_TIME, IMAGE, VIDEO or DOCUMENT


@dataclass(frozen=True, slots=True)
class TemplateShape:
    """What a template's send components need, precomputed once per template."""

    name: str
    language: str
    named: bool
    header: tuple[ParameterShape, ...]  # a media header's variable, or a text header's
    body: tuple[ParameterShape, ...]
    buttons: tuple[ButtonShape, ...]
    currency_code: str = ""  # for CURRENCY values that name no currency

    def components(
        self, variables: dict[str, str], button_variables: dict[str, str]
    ) -> list[dict[str, Any]]:
        components: list[dict[str, Any]] = []
        try:
            if self.header:
                components.append(
                    {"type": "header", "parameters": self._parameters(self.header, variables)}
                )
            if self.body:
                components.append(
                    {"type": "body", "parameters": self._parameters(self.body, variables)}
                )
        except KeyError as error:
            raise MissingVariableError(
                f"Template {self.name} ({self.language}) needs variable {error.args[0]!r}."
            ) from None
        except ParameterValueError as error:
            raise MissingVariableError(f"Template {self.name} ({self.language}): {error}") from None
        for button in self.buttons:
            value = button_variables.get(button.key)
            if value is None:
                continue
            components.append(
                {
                    "type": "button",
                    "sub_type": button.sub_type,
                    "index": button.index,
                    "parameters": [{"type": button.parameter_type, button.parameter_type: value}],
                }
            )
        return components

    def _parameters(
        self, shapes: tuple[ParameterShape, ...], variables: dict[str, str]
    ) -> list[dict[str, Any]]:
        parameters: list[dict[str, Any]] = []
        for shape in shapes:
            value = variables[shape.name]
            if shape.type == TEXT:  # every message of most sends: one dict, no dispatch
                if self.named:
                    parameters.append({"type": "text", "parameter_name": shape.name, "text": value})
                else:
                    parameters.append({"type": "text", "text": value})
                continue
            parameter = typed_parameter(shape.type, value, currency_code=self.currency_code)
            if self.named and shape.type not in MEDIA_TYPES:
                parameter = {"type": parameter["type"], "parameter_name": shape.name, **parameter}
            parameters.append(parameter)
        return parameters


def template_shape_build(
    *,
    name: str,
    language: str,
    components: list[dict[str, Any]],
    parameter_format: str,
    variable_types: Mapping[str, str] | None = None,
    currency_code: str = "",
) -> TemplateShape:
    """The shape of a template from its components; `parameter_format` is Meta's word for it,
    `variable_types` the operator's (see `meta.components.template_variable_specs`)."""
    named = parameter_format == NAMED
    specs = template_variable_specs(
        components, parameter_format=parameter_format, variable_types=variable_types
    )

    def of(component: str) -> tuple[ParameterShape, ...]:
        return tuple(
            ParameterShape(spec["name"], spec["type"])
            for spec in specs
            if spec["component"] == component
        )

    buttons = tuple(
        ButtonShape(f"button_{spec['index']}", str(spec["index"]), *BUTTON_PARAMETERS[spec["type"]])
        for spec in template_buttons(components)
        if spec["takes_variable"] and spec["type"] in BUTTON_PARAMETERS
    )
    return TemplateShape(
        name=name,
        language=language,
        named=named,
        header=of(HEADER),
        body=of(BODY),
        buttons=buttons,
        currency_code=currency_code,
    )


def template_message_body(
    *,
    to_e164: str | None,
    template: TemplateShape,
    variables: dict[str, str],
    button_variables: dict[str, str],
    callback_data: str,
    user_id: str | None = None,
) -> dict[str, Any]:
    """The JSON body of `POST /{phone_number_id}/messages` for one template message, to a phone
    (`to`, its digits) or, without one, to a business-scoped user id in `recipient`, as Meta's
    Business-scoped user IDs page documents it (`to` would win if both were given)."""
    message_template: dict[str, Any] = {
        "name": template.name,
        "language": {"code": template.language},
    }
    components = template.components(variables, button_variables)
    if components:
        message_template["components"] = components
    if to_e164 is not None:
        addressed = {"to": to_e164[1:] if to_e164.startswith("+") else to_e164}
    elif user_id is not None:
        addressed = {"recipient": user_id}
    else:
        raise ValueError("a message goes to a phone or to a user id")
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        **addressed,
        "type": "template",
        "template": message_template,
        "biz_opaque_callback_data": callback_data,
    }
