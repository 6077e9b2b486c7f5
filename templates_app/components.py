"""Reading a template's Meta components: which variables and button variables it takes.

Components are stored as Meta returns them (`GET /{waba_id}/message_templates`):
`[{"type": "HEADER", "format": "TEXT", "text": "..."}, {"type": "BODY", "text": "Hola {{name}}"},
{"type": "BUTTONS", "buttons": [{"type": "URL", "url": "https://x.example/{{1}}"}]}]`.
"""

from __future__ import annotations

import re
from typing import Any, TypedDict

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")

NAMED = "NAMED"
POSITIONAL = "POSITIONAL"

# Buttons whose parameter the sender must give: a URL with a placeholder takes its suffix, a copy
# code button takes the code. A quick reply may carry a payload but needs none.
BUTTONS_REQUIRING_VARIABLE = {"URL", "COPY_CODE"}
BUTTONS_ACCEPTING_VARIABLE = {"URL", "COPY_CODE", "QUICK_REPLY"}


class TemplateButton(TypedDict):
    index: int
    type: str
    takes_variable: bool
    requires_variable: bool


def _placeholders(text: str) -> list[str]:
    return PLACEHOLDER.findall(text or "")


def template_variables(components: list[dict[str, Any]]) -> list[str]:
    """Variable names in the order Meta fills them: the text header's, then the body's."""
    names: list[str] = []
    for kind in ("HEADER", "BODY"):
        for component in components:
            if str(component.get("type", "")).upper() != kind:
                continue
            if kind == "HEADER" and str(component.get("format", "TEXT")).upper() != "TEXT":
                continue
            for name in _placeholders(str(component.get("text", ""))):
                if name not in names:
                    names.append(name)
    return names


def template_buttons(components: list[dict[str, Any]]) -> list[TemplateButton]:
    buttons: list[TemplateButton] = []
    for component in components:
        if str(component.get("type", "")).upper() != "BUTTONS":
            continue
        for index, button in enumerate(component.get("buttons", [])):
            kind = str(button.get("type", "")).upper()
            dynamic_url = kind == "URL" and bool(_placeholders(str(button.get("url", ""))))
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
