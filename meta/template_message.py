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
- A missing variable raises `MissingVariableError`: sends are validated when they are accepted,
  so this is a bug or a template changed under a send, and Meta would refuse the message anyway.
- Button variables for indexes the template has no such button for are ignored, for the same
  reason; a quick reply without a payload needs no component.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from meta.components import (
    BODY,
    HEADER,
    NAMED,
    placeholders,
    template_buttons,
)

# Our button type -> (Meta's send sub_type, the parameter's type and key).
BUTTON_PARAMETERS = {
    "URL": ("url", "text"),
    "QUICK_REPLY": ("quick_reply", "payload"),
    "COPY_CODE": ("copy_code", "coupon_code"),
}


class MissingVariableError(ValueError):
    """A variable the template needs is not among the message's variables."""


@dataclass(frozen=True, slots=True)
class ButtonShape:
    key: str  # "button_<index>", as in Message.button_variables
    index: str  # Meta wants the index as a string
    sub_type: str
    parameter_type: str  # also the parameter's value key: "text", "payload", "coupon_code"


@dataclass(frozen=True, slots=True)
class TemplateShape:
    """What a template's send components need, precomputed once per template."""

    name: str
    language: str
    named: bool
    header: tuple[str, ...]  # placeholder names of a text header, in parameter order
    body: tuple[str, ...]
    buttons: tuple[ButtonShape, ...]

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
        self, names: tuple[str, ...], variables: dict[str, str]
    ) -> list[dict[str, str]]:
        if self.named:
            return [
                {"type": "text", "parameter_name": name, "text": variables[name]} for name in names
            ]
        return [{"type": "text", "text": variables[name]} for name in names]


def _parameter_order(names: tuple[str, ...], named: bool) -> tuple[str, ...]:
    """Named parameters in order of first appearance; positional ones by number, as Meta fills
    the n-th parameter into `{{n}}` whatever the order of the placeholders in the text."""
    if named:
        return names
    return tuple(sorted(names, key=lambda name: int(name) if name.isdigit() else 0))


def template_shape_build(
    *, name: str, language: str, components: list[dict[str, Any]], parameter_format: str
) -> TemplateShape:
    """The shape of a template from its components; `parameter_format` is Meta's word for it."""
    named = parameter_format == NAMED
    buttons = tuple(
        ButtonShape(f"button_{spec['index']}", str(spec["index"]), *BUTTON_PARAMETERS[spec["type"]])
        for spec in template_buttons(components)
        if spec["takes_variable"] and spec["type"] in BUTTON_PARAMETERS
    )
    return TemplateShape(
        name=name,
        language=language,
        named=named,
        header=_parameter_order(placeholders(components, HEADER), named),
        body=_parameter_order(placeholders(components, BODY), named),
        buttons=buttons,
    )


def template_message_body(
    *,
    to_e164: str,
    template: TemplateShape,
    variables: dict[str, str],
    button_variables: dict[str, str],
    callback_data: str,
) -> dict[str, Any]:
    """The JSON body of `POST /{phone_number_id}/messages` for one template message."""
    message_template: dict[str, Any] = {
        "name": template.name,
        "language": {"code": template.language},
    }
    components = template.components(variables, button_variables)
    if components:
        message_template["components"] = components
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to_e164[1:] if to_e164.startswith("+") else to_e164,
        "type": "template",
        "template": message_template,
        "biz_opaque_callback_data": callback_data,
    }
