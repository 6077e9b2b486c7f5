"""Meta's rules for a message template, written from its template documentation.

A template is created with `name`, `language`, `category`, `parameter_format` and `components`:
- the name: lowercase letters, digits and underscores, at most 512 characters;
- the category: AUTHENTICATION, MARKETING or UTILITY; the parameter format: POSITIONAL (the
  default) or NAMED;
- the components: exactly one BODY (at most 1,024 characters), at most one HEADER (format TEXT,
  IMAGE, VIDEO, DOCUMENT or LOCATION; a TEXT header at most 60 characters and one variable), at
  most one FOOTER (60 characters, no variable) and at most one BUTTONS (1 to 10 buttons; a URL
  button takes at most one variable, at the end of its URL);
- variables: POSITIONAL templates number them `{{1}}`, `{{2}}`... in each component, starting at
  1 without gaps; NAMED templates name them with lowercase letters, digits and underscores,
  `{{first_name}}`. A URL button's variable is always `{{1}}`.

Meta also asks for an example value of every variable; the sandbox does not, so that templates
registered by hand stay short.

What a send must give follows from the template and is worked out once, into `TemplateRules`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

NAMED = "NAMED"
POSITIONAL = "POSITIONAL"
PARAMETER_FORMATS = (NAMED, POSITIONAL)
CATEGORIES = ("AUTHENTICATION", "MARKETING", "UTILITY")
HEADER_FORMATS = ("TEXT", "IMAGE", "VIDEO", "DOCUMENT", "LOCATION")
# A send's parameter type for each media header format.
MEDIA_PARAMETERS = {"IMAGE": "image", "VIDEO": "video", "DOCUMENT": "document"}
MEDIA_PARAMETERS["LOCATION"] = "location"

NAME = re.compile(r"[a-z0-9_]{1,512}")
# Meta's language codes: `es`, `fil`, `en_US`, `zh_HK`...
LANGUAGE = re.compile(r"[a-z]{2,3}(_[A-Z]{2,3})?")
VARIABLE = re.compile(r"\{\{([^{}]*)\}\}")
POSITIONAL_NAME = re.compile(r"[1-9][0-9]*")
NAMED_NAME = re.compile(r"[a-z][a-z0-9_]*")

MAX_BODY = 1024
MAX_HEADER = 60
MAX_FOOTER = 60
MAX_BUTTONS = 10

# A button's type -> (the `sub_type` a send names it by, the type of the parameter it takes or
# None, whether a send must give that parameter). A URL button takes its parameter only when its
# URL has a variable; see `_button_rule`.
BUTTON_KINDS: dict[str, tuple[str, str | None, bool]] = {
    "QUICK_REPLY": ("quick_reply", "payload", False),
    "URL": ("url", "text", True),
    "COPY_CODE": ("copy_code", "coupon_code", True),
    "PHONE_NUMBER": ("phone_number", None, False),
    "FLOW": ("flow", "action", False),
}


class TemplateRuleError(ValueError):
    """A template Meta would refuse to create; the message says which rule it breaks."""


@dataclass(frozen=True, slots=True)
class ButtonRule:
    index: int
    type: str
    sub_type: str
    parameter_type: str | None
    required: bool


@dataclass(frozen=True, slots=True)
class TemplateRules:
    """What a send of the template must carry."""

    parameter_format: str
    header_format: str | None
    header_variables: tuple[str, ...]
    body_variables: tuple[str, ...]
    buttons: dict[int, ButtonRule]

    @property
    def is_named(self) -> bool:
        return self.parameter_format == NAMED

    @property
    def media_parameter(self) -> str | None:
        """The parameter type of a media header (`image`...), None for text or no header."""
        return MEDIA_PARAMETERS.get(self.header_format or "")


def _variables(text: str, parameter_format: str, where: str) -> tuple[str, ...]:
    """The variables of `text` in the order a send fills them."""
    names = list(dict.fromkeys(name.strip() for name in VARIABLE.findall(text)))
    if parameter_format == NAMED:
        for name in names:
            if not NAMED_NAME.fullmatch(name):
                raise TemplateRuleError(
                    f"{where}: {{{{{name}}}}} is not a named variable (lowercase letters, digits "
                    "and underscores) as parameter_format NAMED requires."
                )
        return tuple(names)
    for name in names:
        if not POSITIONAL_NAME.fullmatch(name):
            raise TemplateRuleError(
                f"{where}: {{{{{name}}}}} is not a positional variable such as {{{{1}}}}; set "
                "parameter_format NAMED to name variables."
            )
    numbers = sorted(int(name) for name in names)
    if numbers != list(range(1, len(numbers) + 1)):
        raise TemplateRuleError(f"{where}: variables must be numbered from {{{{1}}}} without gaps.")
    return tuple(str(number) for number in numbers)


def _text(component: dict[str, Any], where: str, limit: int) -> str:
    text = component.get("text")
    if not isinstance(text, str) or not text.strip():
        raise TemplateRuleError(f"{where}: text is required.")
    if len(text) > limit:
        raise TemplateRuleError(f"{where}: text is longer than {limit} characters.")
    return text


def _button_rule(index: int, button: Any) -> ButtonRule:
    where = f"BUTTONS[{index}]"
    if not isinstance(button, dict):
        raise TemplateRuleError(f"{where} must be an object.")
    kind = str(button.get("type", "")).upper()
    if kind not in BUTTON_KINDS:
        raise TemplateRuleError(f"{where}: unknown button type {button.get('type')!r}.")
    sub_type, parameter_type, required = BUTTON_KINDS[kind]
    if kind == "URL":
        url = button.get("url")
        if not isinstance(url, str) or not url:
            raise TemplateRuleError(f"{where}: a URL button needs its url.")
        variables = VARIABLE.findall(url)
        if len(variables) > 1 or (variables and not url.endswith("}}")):
            raise TemplateRuleError(f"{where}: a URL takes one variable, at its end.")
        if variables and variables[0].strip() != "1":
            raise TemplateRuleError(f"{where}: a URL's variable is {{{{1}}}}.")
        if not variables:
            parameter_type, required = None, False
    return ButtonRule(index, kind, sub_type, parameter_type, required)


def template_rules(components: Any, parameter_format: str) -> TemplateRules:
    """The rules of a template with these `components`; TemplateRuleError when Meta would not
    create it."""
    if parameter_format not in PARAMETER_FORMATS:
        raise TemplateRuleError(f"parameter_format must be one of {', '.join(PARAMETER_FORMATS)}.")
    if not isinstance(components, list) or not all(isinstance(c, dict) for c in components):
        raise TemplateRuleError("components must be a list of objects.")
    by_type: dict[str, dict[str, Any]] = {}
    for component in components:
        kind = str(component.get("type", "")).upper()
        if kind not in ("HEADER", "BODY", "FOOTER", "BUTTONS"):
            raise TemplateRuleError(f"Unknown component type {component.get('type')!r}.")
        if kind in by_type:
            raise TemplateRuleError(f"A template has at most one {kind}.")
        by_type[kind] = component
    if "BODY" not in by_type:
        raise TemplateRuleError("A template needs a BODY.")
    body_variables = _variables(_text(by_type["BODY"], "BODY", MAX_BODY), parameter_format, "BODY")

    header_format: str | None = None
    header_variables: tuple[str, ...] = ()
    if header := by_type.get("HEADER"):
        header_format = str(header.get("format", "")).upper()
        if header_format not in HEADER_FORMATS:
            raise TemplateRuleError(f"HEADER: format must be one of {', '.join(HEADER_FORMATS)}.")
        if header_format == "TEXT":
            text = _text(header, "HEADER", MAX_HEADER)
            header_variables = _variables(text, parameter_format, "HEADER")
            if len(header_variables) > 1:
                raise TemplateRuleError("HEADER: a text header takes at most one variable.")
    footer = by_type.get("FOOTER")
    if footer is not None and VARIABLE.search(_text(footer, "FOOTER", MAX_FOOTER)):
        raise TemplateRuleError("FOOTER: a footer takes no variable.")

    buttons: dict[int, ButtonRule] = {}
    if "BUTTONS" in by_type:
        listed = by_type["BUTTONS"].get("buttons")
        if not isinstance(listed, list) or not 1 <= len(listed) <= MAX_BUTTONS:
            raise TemplateRuleError(f"BUTTONS: between 1 and {MAX_BUTTONS} buttons.")
        buttons = {index: _button_rule(index, button) for index, button in enumerate(listed)}
    return TemplateRules(parameter_format, header_format, header_variables, body_variables, buttons)


def parameter_format_guess(components: Any) -> str:
    """NAMED when some variable outside the buttons is not a number: for catalog files, which
    may leave `parameter_format` out (the Graph API takes POSITIONAL then)."""
    for component in components if isinstance(components, list) else []:
        if isinstance(component, dict) and str(component.get("type", "")).upper() != "BUTTONS":
            for name in VARIABLE.findall(str(component.get("text", ""))):
                if not POSITIONAL_NAME.fullmatch(name.strip()):
                    return NAMED
    return POSITIONAL
