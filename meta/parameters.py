"""A typed variable's value as Meta takes it: a media link, a currency amount, a date.

Meta's template components carry examples, not types, so a variable's type is the template's
business (see `meta.components.template_variable_specs`); this module says what a value of each
type must look like and builds the parameter Meta receives for it. Sends are checked with
`value_problem` when they are accepted, and the message builder calls `typed_parameter` with the
same rules, so a value that passed the check always builds.

- IMAGE, VIDEO, DOCUMENT: an `https` URL with a host and no spaces. Meta downloads the media
  from it; a plain `http` link would expose the customer's file in transit, and anything else
  Meta cannot fetch. A document goes with a `filename`: the URL's last path segment.
- CURRENCY: an amount, optionally with an ISO 4217 code before or after it (`ARS 1250.50`,
  `1250.50 ARS`) and a currency sign before it (`$1,250.00`); a dot for decimals (at most three:
  Meta counts thousandths), commas only between groups of three digits. Without a code, the
  template's currency code is used; a template without one needs the code in the value. The
  value goes as `fallback_value` exactly as the client wrote it, as a text variable would.
- DATE_TIME: any text (`"25 de noviembre"`, `"18:30"`): Meta shows its `fallback_value`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import unquote, urlsplit

TEXT = "TEXT"
CURRENCY = "CURRENCY"
DATE_TIME = "DATE_TIME"
IMAGE = "IMAGE"
VIDEO = "VIDEO"
DOCUMENT = "DOCUMENT"
# The types an operator may give a text placeholder; media types come from the header's format.
PLACEHOLDER_TYPES = (TEXT, CURRENCY, DATE_TIME)
MEDIA_TYPES = (IMAGE, VIDEO, DOCUMENT)
VARIABLE_TYPES = (*PLACEHOLDER_TYPES, *MEDIA_TYPES)

CURRENCY_CODE = re.compile(r"[A-Z]{3}")
_AMOUNT = re.compile(
    r"(?P<code_before>[A-Z]{3})?\s*[$€£¥]?\s*"
    r"(?P<whole>[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.(?P<fraction>[0-9]{1,3}))?"
    r"\s*(?P<code_after>[A-Z]{3})?"
)
DOCUMENT_FILENAME = "document"

NOT_HTTPS_URL = "Enter a valid https URL (https://...), the address Meta downloads the media from."
NOT_AN_AMOUNT = (
    "Enter an amount such as 1250.50 or 'ARS 1250.50': digits with a dot for decimals (at most "
    "three), optionally an ISO 4217 currency code."
)
NO_CURRENCY_CODE = (
    "Give the amount's ISO 4217 currency code, e.g. 'ARS 1250.50': the template sets no "
    "default currency."
)


class ParameterValueError(ValueError):
    """A value that does not fit its variable's type; the message is the client's text."""


@dataclass(frozen=True, slots=True)
class Money:
    code: str
    amount_1000: int


def https_url_check(value: str) -> str:
    """`value` if it is an https URL Meta can fetch, else ParameterValueError."""
    try:
        parts = urlsplit(value)
    except ValueError:
        raise ParameterValueError(NOT_HTTPS_URL) from None
    if parts.scheme != "https" or not parts.hostname or re.search(r"\s", value):
        raise ParameterValueError(NOT_HTTPS_URL)
    return value


def money_read(value: str, default_code: str) -> Money:
    """The amount in `value` and its currency, or ParameterValueError saying what is wrong."""
    match = _AMOUNT.fullmatch(value.strip())
    if match is None or (match["code_before"] and match["code_after"]):
        raise ParameterValueError(NOT_AN_AMOUNT)
    code = match["code_before"] or match["code_after"] or default_code
    if not code:
        raise ParameterValueError(NO_CURRENCY_CODE)
    amount = Decimal(f"{match['whole'].replace(',', '')}.{match['fraction'] or '0'}")
    return Money(code=code, amount_1000=int(amount * 1000))


def document_filename(link: str) -> str:
    """The name a document is shown with: its URL's last path segment."""
    segment = unquote(urlsplit(link).path.rstrip("/").rpartition("/")[2])
    return segment or DOCUMENT_FILENAME


def value_problem(variable_type: str, value: str, *, currency_code: str = "") -> str | None:
    """Why `value` cannot be a variable of `variable_type`, or None when it can."""
    try:
        typed_parameter(variable_type, value, currency_code=currency_code)
    except ParameterValueError as error:
        return str(error)
    return None


def typed_parameter(variable_type: str, value: str, *, currency_code: str = "") -> dict[str, Any]:
    """Meta's send parameter for `value` as a variable of `variable_type` (without the
    `parameter_name` a NAMED template adds); ParameterValueError when the value does not fit."""
    if variable_type == CURRENCY:
        money = money_read(value, currency_code)
        return {
            "type": "currency",
            "currency": {
                "fallback_value": value,
                "code": money.code,
                "amount_1000": money.amount_1000,
            },
        }
    if variable_type == DATE_TIME:
        return {"type": "date_time", "date_time": {"fallback_value": value}}
    if variable_type in MEDIA_TYPES:
        kind = variable_type.lower()
        media: dict[str, str] = {"link": https_url_check(value)}
        if variable_type == DOCUMENT:
            media["filename"] = document_filename(value)
        return {"type": kind, kind: media}
    return {"type": "text", "text": value}
