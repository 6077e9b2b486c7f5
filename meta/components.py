"""Reading a template's components as Meta lists them: its header, variables and buttons.

Components come as Meta returns them (`GET /{waba_id}/message_templates`):
`[{"type": "HEADER", "format": "TEXT", "text": "..."}, {"type": "BODY", "text": "Hola {{name}}"},
{"type": "BUTTONS", "buttons": [{"type": "URL", "url": "https://x.example/{{1}}"}]}]`.

Every reading of those lists in the project goes through this module: which header is text,
which placeholders a header or body holds and in what order, what each button takes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, TypedDict

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
    """The header's format when it needs media (whose parameter the API cannot carry)."""
    found = header_format(components)
    return None if found in (None, TEXT_FORMAT) else found


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
    """Variable names in the order Meta fills them: the text header's, then the body's."""
    return list(dict.fromkeys(placeholders(components, HEADER) + placeholders(components, BODY)))


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
    names = template_variables(components)
    return NAMED if any(not name.isdigit() for name in names) else POSITIONAL
