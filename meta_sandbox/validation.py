"""Reading a template send and checking it against its template, by Meta's rules for a send.

- The body: `messaging_product` "whatsapp", `recipient_type` "individual" if given, `type`
  "template", `to` a phone number (digits, optionally `+`, spaces, dashes, dots or parentheses;
  7 to 15 digits) or, without `to`, `recipient` a business-scoped user id (two capital letters,
  a period, optionally `ENT.`, then 1 to 128 letters or digits; `to` wins when both are given,
  as Meta documents), `template.name`, `template.language.code` (a code such as `es` or `en_US`,
  with policy "deterministic" if given), `biz_opaque_callback_data` at most 512 characters: else
  100.
- `template.components`: each of type `header`, `body` or `button`, a header and a body at most
  once, each button index at most once: else 100.
- A text header and the body take exactly as many parameters as the template has variables
  (132000). In a NAMED template each parameter carries the `parameter_name` of a variable, and
  in a POSITIONAL one none does (132012). Their type is `text`, `currency` or `date_time`
  (131009); a text without its `text` is 131008; a text may not hold a new line, a tab or more
  than four spaces in a row (132018). A `currency` carries `fallback_value` (text), `code`
  (ISO 4217, three capital letters) and `amount_1000` (a whole number), a `date_time` its
  `fallback_value`: any of them missing, 131008; of the wrong kind, 131009.
- A media header takes one parameter of its kind (`image`, `video`, `document` with a `link` or
  an `id`, `location` with its coordinates): missing, 131008; another kind, 131009. A `link`
  is an http or https URL with a host (131009 otherwise); a document's `filename`, when given,
  is text (131009).
- A button component names an index of the template's buttons with the `sub_type` of its kind
  (131009), and the one parameter of its kind: a URL with a variable takes `text`, a copy code
  `coupon_code`, a quick reply may take a `payload`. A button that needs its parameter and gets
  none counts as a parameter missing from the whole (132000).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from meta_sandbox import errors
from meta_sandbox.templates import LANGUAGE, ButtonRule, TemplateRules

MAX_CALLBACK_DATA = 512
TEXT_LIKE = frozenset(("text", "currency", "date_time"))
PHONE = re.compile(r"\+?[0-9 ().-]+")
PHONE_DIGITS = (7, 15)
# Meta's business-scoped user ids (its own reading here: the sandbox imports nothing of ours).
USER_ID = re.compile(r"[A-Z]{2}\.(?:ENT\.)?[A-Za-z0-9]{1,128}")
BAD_TEXT = re.compile(r"[\n\t]| {5,}")
COMPONENT_TYPES = frozenset(("header", "body", "button"))
CURRENCY_CODE = re.compile(r"[A-Z]{3}")


@dataclass(frozen=True, slots=True)
class TemplateSend:
    # `to` as sent, or the user id of a send to one (`recipient`).
    to: str
    # The recipient's digits; "" for a send to a user id.
    wa_id: str
    name: str
    language: str
    components: list[dict[str, Any]]
    callback_data: str | None
    # The business-scoped user id of a send to one (`recipient`), else None.
    user_id: str | None = None

    @property
    def recipient(self) -> str:
        """Who the message is for: the digits, or the user id."""
        return self.wa_id or self.user_id or ""


def _recipient(to: Any) -> str:
    """The recipient's digits, or 100 when `to` is not a phone number."""
    if not isinstance(to, str) or not PHONE.fullmatch(to.strip()):
        raise errors.invalid_parameter("The parameter to is not a valid phone number.")
    digits = "".join(ch for ch in to if ch.isdigit())
    low, high = PHONE_DIGITS
    if not low <= len(digits) <= high:
        raise errors.invalid_parameter(
            f"The parameter to must have between {low} and {high} digits."
        )
    return digits


def send_read(document: Any) -> TemplateSend:
    """The send a request body describes, or Meta's 100 for a body of the wrong shape."""
    if not isinstance(document, dict):
        raise errors.invalid_parameter("The request body must be a JSON object.")
    if document.get("messaging_product") != "whatsapp":
        raise errors.invalid_parameter("The parameter messaging_product is required.")
    if document.get("recipient_type", "individual") != "individual":
        raise errors.invalid_parameter("recipient_type must be individual.")
    to = document.get("to")
    user_id = None
    if to is None and "recipient" in document:
        user_id = document["recipient"]
        if not (isinstance(user_id, str) and USER_ID.fullmatch(user_id)):
            raise errors.invalid_parameter(
                "The parameter recipient is not a valid business-scoped user ID."
            )
        wa_id = ""
    else:
        wa_id = _recipient(to)
    if document.get("type", "text") != "template":
        raise errors.invalid_parameter("The sandbox only sends messages of type template.")
    template = document.get("template")
    if not isinstance(template, dict):
        raise errors.invalid_parameter("The parameter template is required.")
    name, language = template.get("name"), template.get("language")
    code = language.get("code") if isinstance(language, dict) else None
    if not isinstance(name, str) or not name or not isinstance(code, str) or not code:
        raise errors.invalid_parameter("template.name and template.language.code are required.")
    if not LANGUAGE.fullmatch(code):
        raise errors.invalid_parameter(f"template.language.code {code!r} is not a language code.")
    assert isinstance(language, dict)
    if language.get("policy", "deterministic") != "deterministic":
        raise errors.invalid_parameter("template.language.policy must be deterministic.")
    components = template.get("components", [])
    if not isinstance(components, list) or not all(isinstance(c, dict) for c in components):
        raise errors.invalid_parameter("template.components must be a list of objects.")
    callback = document.get("biz_opaque_callback_data")
    if callback is not None and not (
        isinstance(callback, str) and len(callback) <= MAX_CALLBACK_DATA
    ):
        raise errors.invalid_parameter(
            f"biz_opaque_callback_data must be a string of at most {MAX_CALLBACK_DATA} characters."
        )
    shown = user_id if user_id is not None else str(to)
    return TemplateSend(shown, wa_id, name, code, components, callback, user_id)


def _parameters(component: dict[str, Any], where: str) -> list[dict[str, Any]]:
    parameters = component.get("parameters", [])
    if not isinstance(parameters, list) or not all(isinstance(p, dict) for p in parameters):
        raise errors.invalid_parameter(f"{where}: parameters must be a list of objects.")
    return parameters


def _count_mismatch(where: str, given: int, expected: int) -> errors.MetaError:
    return errors.parameter_count_mismatch(
        f"{where}: number of localizable_params ({given}) does not match the expected number "
        f"of params ({expected})"
    )


def _check_text_parameters(
    rules: TemplateRules, where: str, expected: tuple[str, ...], given: list[dict[str, Any]]
) -> None:
    if len(given) != len(expected):
        raise _count_mismatch(where, len(given), len(expected))
    for parameter in given:
        kind = parameter.get("type")
        if kind not in TEXT_LIKE:
            raise errors.parameter_not_valid(f"{where}: parameter type {kind!r} is not valid.")
        if kind == "text":
            text = parameter.get("text")
            if not isinstance(text, str) or not text:
                raise errors.parameter_missing(f"{where}: a text parameter needs its text.")
            if BAD_TEXT.search(text):
                raise errors.parameter_text_not_valid(
                    f"{where}: Param text cannot have new-line/tab characters or more than 4 "
                    "consecutive spaces"
                )
        else:
            _check_typed_value(where, str(kind), parameter.get(str(kind)))
    names = [parameter.get("parameter_name") for parameter in given]
    if rules.is_named:
        if not all(isinstance(name, str) and name for name in names):
            raise errors.parameter_format_mismatch(
                f"{where}: the template's parameters are NAMED; give each one's parameter_name"
            )
        if sorted(str(name) for name in names) != sorted(expected):
            raise errors.parameter_count_mismatch(
                f"{where}: parameter names {sorted(str(n) for n in names)} do not match the "
                f"template's {sorted(expected)}"
            )
    elif any(name is not None for name in names):
        raise errors.parameter_format_mismatch(
            f"{where}: the template's parameters are POSITIONAL; give no parameter_name"
        )


def _check_typed_value(where: str, kind: str, value: Any) -> None:
    """A `currency` or `date_time` parameter's object, by Meta's rules."""
    if not isinstance(value, dict):
        raise errors.parameter_missing(f"{where}: a {kind} parameter needs its {kind} object.")
    fields = (
        ("fallback_value", "code", "amount_1000") if kind == "currency" else ("fallback_value",)
    )
    for field in fields:
        if field not in value or value[field] is None:
            raise errors.parameter_missing(f"{where}: {kind}.{field} is required.")
    fallback = value["fallback_value"]
    if not isinstance(fallback, str) or not fallback.strip():
        raise errors.parameter_not_valid(f"{where}: {kind}.fallback_value must be text.")
    if kind != "currency":
        return
    code, amount = value["code"], value["amount_1000"]
    if not isinstance(code, str) or not CURRENCY_CODE.fullmatch(code):
        raise errors.parameter_not_valid(f"{where}: currency.code must be an ISO 4217 code.")
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise errors.parameter_not_valid(f"{where}: currency.amount_1000 must be an integer.")


def _check_media_link(kind: str, media: dict[str, Any]) -> None:
    link = media.get("link")
    if link is not None:
        parts = urlsplit(link) if isinstance(link, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise errors.parameter_not_valid(f"header: the {kind} link must be an http(s) URL.")
    filename = media.get("filename")
    if kind == "document" and filename is not None and not isinstance(filename, str):
        raise errors.parameter_not_valid("header: the document filename must be text.")


def _check_media_header(kind: str, given: list[dict[str, Any]]) -> None:
    if not given:
        raise errors.parameter_missing(f"header: the {kind} of the header is missing.")
    if len(given) > 1:
        raise _count_mismatch("header", len(given), 1)
    parameter = given[0]
    if parameter.get("type") != kind:
        raise errors.parameter_not_valid(f"header: the parameter type must be {kind!r}.")
    value = parameter.get(kind)
    if not isinstance(value, dict):
        raise errors.parameter_missing(f"header: the {kind} object is missing.")
    needed = ("latitude", "longitude") if kind == "location" else ()
    if needed and not all(key in value for key in needed):
        raise errors.parameter_missing("header: a location needs its latitude and longitude.")
    if not needed and not (value.get("link") or value.get("id")):
        raise errors.parameter_missing(f"header: the {kind} needs a link or an id.")
    if not needed:
        _check_media_link(kind, value)


def _check_button(rules: TemplateRules, component: dict[str, Any]) -> int:
    raw_index = component.get("index")
    if isinstance(raw_index, bool) or not str(raw_index).isdigit():
        raise errors.invalid_parameter('button: index must be a number such as "0".')
    index = int(str(raw_index))
    rule = rules.buttons.get(index)
    if rule is None:
        raise errors.parameter_not_valid(f"button: the template has no button at index {index}.")
    if str(component.get("sub_type", "")).lower() != rule.sub_type:
        raise errors.parameter_not_valid(f"button {index}: sub_type must be {rule.sub_type!r}.")
    parameters = _parameters(component, f"button {index}")
    takes = rule.parameter_type is not None
    if len(parameters) > 1 or (parameters and not takes):
        raise _count_mismatch(f"button {index}", len(parameters), int(takes))
    if parameters:
        parameter, kind = parameters[0], rule.parameter_type
        if parameter.get("type") != kind:
            raise errors.parameter_not_valid(
                f"button {index}: the parameter type must be {kind!r}."
            )
        value = parameter.get(str(kind))
        if not value or (kind != "action" and not isinstance(value, str)):
            raise errors.parameter_missing(f"button {index}: the {kind} is missing.")
    elif rule.required:
        raise _missing_button(rule)
    return index


def _missing_button(rule: ButtonRule) -> errors.MetaError:
    return errors.parameter_count_mismatch(
        f"buttons: the {rule.type} button at index {rule.index} requires a parameter"
    )


def send_check(rules: TemplateRules, components: list[dict[str, Any]]) -> None:
    """Meta's error for the first rule the send's components break; nothing when they fit."""
    given: dict[str, list[dict[str, Any]]] = {}
    buttons: set[int] = set()
    for component in components:
        kind = str(component.get("type", "")).lower()
        if kind not in COMPONENT_TYPES:
            raise errors.invalid_parameter(f"Unknown component type {kind!r}.")
        if kind == "button":
            index = _check_button(rules, component)
            if index in buttons:
                raise errors.invalid_parameter(f"button {index} is given twice.")
            buttons.add(index)
            continue
        if kind in given:
            raise errors.invalid_parameter(f"template.components has two {kind}s.")
        given[kind] = _parameters(component, kind)
    # A component the send leaves out counts as one with no parameters.
    if media := rules.media_parameter:
        _check_media_header(media, given.get("header", []))
    elif "header" in given or rules.header_variables:
        _check_text_parameters(rules, "header", rules.header_variables, given.get("header", []))
    if "body" in given or rules.body_variables:
        _check_text_parameters(rules, "body", rules.body_variables, given.get("body", []))
    for index, rule in rules.buttons.items():
        if rule.required and index not in buttons:
            raise _missing_button(rule)
