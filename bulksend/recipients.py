"""Validating and deduplicating the `recipients` of a send.

This runs over up to a million items per request (in batches when the body is streamed:
bulksend.json_stream), so it is a plain loop rather than a nested DRF
serializer (which costs tens of microseconds per field); its errors keep DRF's shape,
keyed by the recipient's index: `{"recipients": {"3": {"phone": ["..."]}}}`.

A recipient is a `phone` or, as Meta allows since 2026, a `user_id` (Meta's business-scoped user
id, meta.user_ids): exactly one of the two.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from meta.components import TemplateButton
from meta.parameters import value_problem
from meta.user_ids import INVALID_USER_ID, is_user_id
from mindo.errors import InvalidFieldsError
from mindo.parsers import JSONFloat
from mindo.phones import is_e164

# `button_<index>` exactly: no leading zero (button_00 would be a second key for button 0), and
# used with fullmatch (`$` would also match before a trailing newline).
BUTTON_KEY = re.compile(r"button_(0|[1-9][0-9]?)")

REQUIRED = "This field is required."
NOT_A_STRING = "Not a valid string."
BLANK = "This field may not be blank."
NOT_NULL = "This field may not be null."
NULL_CHARACTER = "Null characters are not allowed."
# Meta refuses longer parameters; a body's text is at most 1,024 characters in all.
MAX_VALUE_LENGTH = 1024
TOO_LONG = f"Ensure this field has no more than {MAX_VALUE_LENGTH} characters."
INVALID_PHONE = (
    "Enter a valid phone number in international E.164 format, with `+` and no spaces "
    "(e.g. +5491112345678)."
)
ONE_BUTTON_VARIABLE = "A button takes exactly 1 variable: URL buttons only support 1 variable."
RECIPIENT_KEYS = frozenset({"phone", "user_id", "variables", "button_variables"})
NOT_BOTH = "Give the recipient's phone or its user_id, not both."

Errors = dict[str, list[str] | dict[str, list[str]]]


@dataclass(slots=True)
class Recipient:
    # The phone (E.164), or None for a recipient given by `user_id`.
    phone: str | None
    variables: dict[str, str]
    button_variables: dict[str, str]
    user_id: str | None = None

    @property
    def key(self) -> str:
        """Who it is, phone or user id: the two never look alike (a phone starts with `+`)."""
        return self.phone or self.user_id or ""


def _dict_error(value: Any) -> str:
    return f'Expected a dictionary of items but got type "{type(value).__name__}".'


class RoundedNumber(Exception):
    """A value is a float as orjson read it, maybe rounded: parse the body again exactly."""


def _text(value: Any) -> str | None:
    """The parameter as text, or None when it is not text-like (DRF's CharField accepts numbers).

    A number is sent as the client wrote it: ints are exact, a `JSONFloat` keeps its spelling, and
    a plain float (orjson's 10.5 for `10.50`) raises RoundedNumber.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, JSONFloat):
        return value.literal
    if isinstance(value, Decimal):  # a streamed body's number (ijson), exact as written
        return str(value)
    if isinstance(value, float):
        raise RoundedNumber
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _string_map(
    value: Any, field: str, errors: Errors, *, single_item_lists: bool = False
) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        errors[field] = [_dict_error(value)]
        return {}
    clean: dict[str, str] = {}
    item_errors: dict[str, list[str]] = {}
    for key, item in value.items():
        if single_item_lists and isinstance(item, list):
            if len(item) != 1:
                item_errors[key] = [ONE_BUTTON_VARIABLE]
                continue
            item = item[0]
        # Most values: text the checks below accept (isspace is strip's blank, without a copy).
        if (
            type(item) is str
            and len(item) <= MAX_VALUE_LENGTH
            and item
            and not item.isspace()
            and "\x00" not in item
        ):
            clean[key] = item
            continue
        text = _text(item)
        if text is None:
            item_errors[key] = [NOT_NULL if item is None else NOT_A_STRING]
        elif not text.strip():
            item_errors[key] = [BLANK]
        elif "\x00" in text:
            item_errors[key] = [NULL_CHARACTER]
        elif len(text) > MAX_VALUE_LENGTH:
            item_errors[key] = [TOO_LONG]
        else:
            clean[key] = text
    if item_errors:
        errors[field] = item_errors
    return clean


def _phone_problem(phone: Any, checked: dict[str, bool]) -> str | None:
    """Why `phone` is not a valid E.164 number, or None. `checked` remembers verdicts by phone."""
    if phone is None:
        return NOT_NULL
    if not isinstance(phone, str):
        return NOT_A_STRING
    valid = checked.get(phone)
    if valid is None:
        valid = checked[phone] = is_e164(phone)
    return None if valid else INVALID_PHONE


def _user_id_problem(user_id: Any) -> str | None:
    if user_id is None:
        return NOT_NULL
    if not isinstance(user_id, str):
        return NOT_A_STRING
    return None if is_user_id(user_id) else INVALID_USER_ID


def _identity_errors(item: dict[str, Any], checked: dict[str, bool]) -> Errors:
    """The errors of a recipient's phone or user id: exactly one of them, and valid."""
    if "user_id" in item and "phone" in item:
        return {"non_field_errors": [NOT_BOTH]}
    if "user_id" in item:
        problem = _user_id_problem(item["user_id"])
        return {"user_id": [problem]} if problem else {}
    if "phone" not in item:
        return {"phone": [REQUIRED]}
    problem = _phone_problem(item["phone"], checked)
    return {"phone": [problem]} if problem else {}


def _maps(item: dict[str, Any], item_errors: Errors) -> tuple[dict[str, str], dict[str, str]]:
    variables = _string_map(item.get("variables"), "variables", item_errors)
    buttons = _string_map(
        item.get("button_variables"), "button_variables", item_errors, single_item_lists=True
    )
    return variables, buttons


def parse_recipients(
    items: list[Any],
    exact_items: Callable[[], list[Any]] | None = None,
    *,
    keep_valid: bool = False,
    first_index: int = 0,
) -> tuple[list[Recipient], dict[str, Errors]]:
    """Check each recipient's shape; return the clean ones and the errors by index.

    Once one failed, the request is refused and the later clean ones are not built, unless
    `keep_valid` (a dry run's verdicts): then every item without errors is, in order.

    1. Shape: an object with a string `phone` or `user_id` (not both) and optional objects of
       strings.
    2. Phone: exactly E.164 (`mindo.phones`: pattern, then country and length rules), once per
       distinct phone, so duplicates cost nothing.
    3. Numbers: a recipient holding a float as orjson read it (maybe rounded) takes its values
       from `exact_items()`, the same list parsed with exact numbers, asked for once and only
       then; without it, RoundedNumber is raised.
    `first_index`: the index of `items[0]` in the whole list (a batch of a streamed body), which
    errors name.
    """
    recipients: list[Recipient] = []
    errors: dict[str, Errors] = {}
    checked: dict[str, bool] = {}
    exact: list[Any] | None = None
    for index, item in enumerate(items):
        item_errors: Errors = {}
        if not isinstance(item, dict):
            errors[str(first_index + index)] = {
                "non_field_errors": [
                    f"Invalid data. Expected a dictionary, but got {type(item).__name__}."
                ]
            }
            continue
        item_errors.update(_identity_errors(item, checked))
        unknown = [] if RECIPIENT_KEYS.issuperset(item) else sorted(set(item) - RECIPIENT_KEYS)
        if unknown:
            text = (
                f"Unknown field(s): {', '.join(unknown)}. "
                "A recipient takes phone (or user_id), variables and button_variables."
            )
            earlier = item_errors.get("non_field_errors")
            item_errors["non_field_errors"] = (
                [*earlier, text] if isinstance(earlier, list) else [text]
            )
        try:
            variables, buttons = _maps(item, item_errors)
        except RoundedNumber:
            if exact_items is None:
                raise
            exact = exact_items() if exact is None else exact
            for field in ("variables", "button_variables"):
                item_errors.pop(field, None)
            variables, buttons = _maps(exact[index], item_errors)
        if item_errors:
            errors[str(first_index + index)] = item_errors
        elif keep_valid or not errors:
            # Once anything failed the request is refused, so stop building clean rows.
            phone, user_id = item.get("phone"), item.get("user_id")
            recipients.append(
                Recipient(None if phone is None else str(phone), variables, buttons, user_id)
            )
    return recipients, errors


class RecipientBatches(Protocol):
    """A send's checked recipients, read batch by batch: a request's list, or a streamed body's
    array (bulksend.json_stream) read from the spool of its checked recipients."""

    @property
    def total(self) -> int:
        """How many recipients were given, duplicates included."""
        ...

    def user_ids(self) -> set[str]:
        """The user ids among the recipients."""
        ...

    def batches(self) -> Iterator[tuple[int, list[Recipient]]]:
        """The recipients in order, as (index of the batch's first one, the batch)."""
        ...


@dataclass(frozen=True, slots=True)
class RecipientList:
    """A list of recipients as one batch."""

    recipients: list[Recipient]

    @property
    def total(self) -> int:
        return len(self.recipients)

    def user_ids(self) -> set[str]:
        return {recipient.user_id for recipient in self.recipients if recipient.user_id}

    def batches(self) -> Iterator[tuple[int, list[Recipient]]]:
        yield 0, self.recipients


def deduplicate(
    recipients: list[Recipient],
    phones_of_user_ids: dict[str, str] | None = None,
    *,
    seen: set[str] | None = None,
) -> list[Recipient]:
    """Keep the first occurrence of each recipient (phones are already in canonical E.164; a user
    id counts once). A user id and a phone are different recipients, unless
    `phones_of_user_ids` (user id -> the phone of the contact that has it) says they are one
    person: then the first of the two is kept. `seen`: the persons of earlier batches, which
    the batch's are added to."""
    known = phones_of_user_ids or {}
    seen = set() if seen is None else seen
    unique: list[Recipient] = []
    for recipient in recipients:
        person = known.get(recipient.key, recipient.key)
        if person not in seen:
            seen.add(person)
            unique.append(recipient)
    return unique


def _variables_errors(given: dict[str, str], expected: list[str], template: str) -> list[str]:
    problems = []
    missing = [name for name in expected if name not in given]
    if missing:
        problems.append(f"Missing variable(s) for template '{template}': {', '.join(missing)}.")
    extra = [name for name in given if name not in expected]
    if extra:
        takes = ", ".join(expected) if expected else "no variables"
        problems.append(
            f"Unknown variable(s) for template '{template}': {', '.join(extra)}. It takes: {takes}."
        )
    return problems


def _button_errors(
    given: dict[str, str], buttons: dict[int, TemplateButton], template: str
) -> list[str]:
    problems = []
    for key in given:
        match = BUTTON_KEY.fullmatch(key)
        button = buttons.get(int(match.group(1))) if match else None
        if match is None:
            problems.append(f"Invalid key '{key}': use button_0, button_1... by button index.")
        elif button is None:
            problems.append(f"Template '{template}' has no button {match.group(1)} ('{key}').")
        elif not button["takes_variable"]:
            problems.append(
                f"Button {button['index']} ({button['type']}) of template '{template}' "
                "takes no variable."
            )
    for index, button in buttons.items():
        if button["requires_variable"] and f"button_{index}" not in given:
            problems.append(
                f"Missing variable for button {index} ({button['type']}): button_{index}."
            )
    return problems


def _typed_errors(
    given: dict[str, str], variable_types: dict[str, str], currency_code: str
) -> dict[str, list[str]]:
    problems: dict[str, list[str]] = {}
    for name, variable_type in variable_types.items():
        problem = value_problem(variable_type, given[name], currency_code=currency_code)
        if problem is not None:
            problems[name] = [problem]
    return problems


def check_against_template(
    recipients: list[Recipient],
    *,
    variables: list[str],
    buttons: dict[int, TemplateButton],
    template: str,
    variable_types: dict[str, str] | None = None,
    currency_code: str = "",
    first_index: int = 0,
) -> dict[str, Errors]:
    """Errors by index for recipients whose variables do not fit the template exactly.

    A recipient with missing or unknown variables gets a list naming them under `variables`;
    one with the right names but a value its type refuses (`variable_types`: name -> type for
    every variable that is not TEXT) gets the errors by variable name:
    `{"variables": {"header_image": ["Enter a valid https URL..."]}}`.
    """
    errors: dict[str, Errors] = {}
    expected = set(variables)
    for index, recipient in enumerate(recipients):
        item_errors: Errors = {}
        if recipient.variables.keys() != expected:
            item_errors["variables"] = _variables_errors(recipient.variables, variables, template)
        elif variable_types:
            typed = _typed_errors(recipient.variables, variable_types, currency_code)
            if typed:
                item_errors["variables"] = typed
        if recipient.button_variables or buttons:
            problems = _button_errors(recipient.button_variables, buttons, template)
            if problems:
                item_errors["button_variables"] = problems
        if item_errors:
            errors[str(first_index + index)] = item_errors
    return errors


def raise_for_recipient_errors(errors: dict[str, Errors]) -> None:
    if errors:
        raise InvalidFieldsError({"recipients": errors})
