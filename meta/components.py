"""Reading a template's components as Meta lists them: its header, variables and buttons.

Components come as Meta returns them (`GET /{waba_id}/message_templates`):
`[{"type": "HEADER", "format": "TEXT", "text": "..."}, {"type": "BODY", "text": "Hola {{name}}"},
{"type": "BUTTONS", "buttons": [{"type": "URL", "url": "https://x.example/{{1}}"}]}]`.

Every reading of those lists in the project goes through this module: which header is text,
which placeholders a header or body holds and in what order, what each button takes, and the
variables a send fills, with their types and positions (`template_variable_specs`).

Where a variable's type comes from. Meta's components carry example values, not types, so:
- a media header (IMAGE, VIDEO, DOCUMENT) is one variable of that type, named `header_image`,
  `header_video` or `header_document`, whose value is the media's https URL;
- a placeholder is TEXT unless the template's operator-set mapping (`variable_types`, by
  placeholder name: `{"total_amount": "CURRENCY", "2": "DATE_TIME"}`) says CURRENCY or DATE_TIME.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, TypedDict

from meta.parameters import MEDIA_TYPES, TEXT

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")

NAMED = "NAMED"
POSITIONAL = "POSITIONAL"

HEADER = "HEADER"
BODY = "BODY"
BUTTONS = "BUTTONS"
# A header without a `format` is a text header.
TEXT_FORMAT = "TEXT"

# Buttons whose parameter the sender must give: a URL with a placeholder takes its suffix, a copy
# code button takes the code. A quick reply may carry a payload but needs none.
BUTTONS_REQUIRING_VARIABLE = {"URL", "COPY_CODE"}
BUTTONS_ACCEPTING_VARIABLE = {"URL", "COPY_CODE", "QUICK_REPLY"}


class TemplateButton(TypedDict):
    index: int
    type: str
    takes_variable: bool
    requires_variable: bool


def _kind(component: dict[str, Any]) -> str:
    return str(component.get("type", "")).upper()


def _header_format(component: dict[str, Any]) -> str:
    return str(component.get("format", TEXT_FORMAT)).upper()


def _of_kind(components: list[dict[str, Any]], kind: str) -> Iterator[dict[str, Any]]:
    return (component for component in components if _kind(component) == kind)


def header_format(components: list[dict[str, Any]]) -> str | None:
    """TEXT, IMAGE, VIDEO, DOCUMENT or LOCATION: the header's format; None without a header."""
    for component in _of_kind(components, HEADER):
        return _header_format(component)
    return None


def media_header_format(components: list[dict[str, Any]]) -> str | None:
    """The header's format when it needs media: IMAGE, VIDEO, DOCUMENT or LOCATION."""
    found = header_format(components)
    return None if found in (None, TEXT_FORMAT) else found


def unsendable_header_format(components: list[dict[str, Any]]) -> str | None:
    """The header's format when no variable can fill it (LOCATION: coordinates, not a URL)."""
    found = media_header_format(components)
    return None if found is None or found in MEDIA_TYPES else found


def media_variable(components: list[dict[str, Any]]) -> tuple[str, str] | None:
    """(name, type) of the variable a media header takes: `("header_image", "IMAGE")`."""
    found = media_header_format(components)
    if found is None or found not in MEDIA_TYPES:
        return None
    return f"header_{found.lower()}", found


def placeholders(components: list[dict[str, Any]], kind: str) -> tuple[str, ...]:
    """The placeholder names of the template's `kind` (HEADER or BODY), in order of first
    appearance; a header holds text placeholders only when it is a text header."""
    names: list[str] = []
    for component in _of_kind(components, kind):
        if kind == HEADER and _header_format(component) != TEXT_FORMAT:
            continue
        for name in PLACEHOLDER.findall(str(component.get("text", "") or "")):
            if name not in names:
                names.append(name)
    return tuple(names)


def template_variables(components: list[dict[str, Any]]) -> list[str]:
    """Variable names in the order Meta fills them: the header's (its media or its text
    placeholder), then the body's; each name once."""
    media = media_variable(components)
    return list(
        dict.fromkeys(
            ((media[0],) if media else ())
            + placeholders(components, HEADER)
            + placeholders(components, BODY)
        )
    )


def parameter_order(names: tuple[str, ...], named: bool) -> tuple[str, ...]:
    """Named parameters in order of first appearance; positional ones by number, as Meta fills
    the n-th parameter into `{{n}}` whatever the order of the placeholders in the text."""
    if named:
        return names
    return tuple(sorted(names, key=lambda name: int(name) if name.isdigit() else 0))


class TemplateVariable(TypedDict):
    name: str  # the key of a recipient's `variables`
    type: str  # TEXT, CURRENCY, DATE_TIME, IMAGE, VIDEO or DOCUMENT
    position: int  # 1-based, the parameter's place in its component, as Meta fills it
    component: str  # HEADER or BODY
    is_required: bool


def template_variable_specs(
    components: list[dict[str, Any]],
    *,
    parameter_format: str,
    variable_types: Mapping[str, str] | None = None,
) -> list[TemplateVariable]:
    """Every parameter a send fills, header first, each in its component's parameter order.

    A POSITIONAL template whose header and body both use `{{1}}` lists it once per component:
    one value fills both (see `meta.template_message`). Every variable is required: Meta refuses
    a send with a parameter missing (132000).
    """
    types = variable_types or {}
    named = parameter_format == NAMED
    found: list[TemplateVariable] = []
    media = media_variable(components)
    if media is not None:
        found.append(
            TemplateVariable(
                name=media[0], type=media[1], position=1, component=HEADER, is_required=True
            )
        )
    for kind in (HEADER, BODY):
        for position, name in enumerate(parameter_order(placeholders(components, kind), named), 1):
            found.append(
                TemplateVariable(
                    name=name,
                    type=types.get(name, TEXT),
                    position=position,
                    component=kind,
                    is_required=True,
                )
            )
    return found


def template_buttons(components: list[dict[str, Any]]) -> list[TemplateButton]:
    buttons: list[TemplateButton] = []
    for component in _of_kind(components, BUTTONS):
        for index, button in enumerate(component.get("buttons", [])):
            kind = str(button.get("type", "")).upper()
            dynamic_url = kind == "URL" and bool(PLACEHOLDER.search(str(button.get("url", ""))))
            takes = dynamic_url if kind == "URL" else kind in BUTTONS_ACCEPTING_VARIABLE
            buttons.append(
                TemplateButton(
                    index=index,
                    type=kind,
                    takes_variable=takes,
                    requires_variable=takes and kind in BUTTONS_REQUIRING_VARIABLE,
                )
            )
    return buttons


def template_parameter_format(components: list[dict[str, Any]]) -> str:
    """NAMED when any placeholder is a name, POSITIONAL when all are `{{1}}`, `{{2}}`..."""
    names = placeholders(components, HEADER) + placeholders(components, BODY)
    return NAMED if any(not name.isdigit() for name in names) else POSITIONAL
