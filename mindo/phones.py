"""Phone numbers: the one place that decides whether two spellings are the same number.

Every comparison of phones (recipients of a send, contacts, inbound messages, the contact
lookup) goes through `phone_normalize`, so a number is stored and looked up in one spelling:
E.164 with `+`.
"""

from __future__ import annotations

import re

import phonenumbers

# International E.164: a `+`, a country code that does not start with 0, at most 15 digits.
E164 = re.compile(r"\+[1-9][0-9]{6,14}")
# What people write between digits: spaces, dashes, dots, slashes and parentheses.
_SEPARATORS = re.compile(r"[\s\-./()]+")
_DIGITS = re.compile(r"[0-9]+")
# Longer input is no phone number: refused before any work is spent on it.
PHONE_INPUT_MAX_LENGTH = 64
# Mexico dropped the `1` that mobile numbers carried after the country code in 2019, but
# WhatsApp still names many Mexican users by it: Meta's `wa_id` and an inbound message's `from`
# are `521` and ten digits for the E.164 `+52` and the same ten digits.
_MEXICO_LEGACY_MOBILE = re.compile(r"\+521([0-9]{10})")
# Whether a national number of a length is possible in a country, by (country code, length):
# phonenumbers judges a possible number by nothing else (its country's lengths), and asking it
# costs most of checking a send's phone, once per phone of a million.
_POSSIBLE_BY_LENGTH: dict[tuple[int, int], bool] = {}


def _international(text: str) -> str | None:
    """`text` as `+` and digits, separators dropped: `+` or `00` start the country code, and bare
    digits are read as E.164 without its `+`. None when anything else is in it."""
    if len(text) > PHONE_INPUT_MAX_LENGTH:
        return None
    compact = _SEPARATORS.sub("", text)
    if compact.startswith("+"):
        digits = compact[1:]
    elif compact.startswith("00"):
        digits = compact[2:]
    else:
        digits = compact
    if not _DIGITS.fullmatch(digits):
        return None
    return f"+{digits}"


def _is_possible(number: phonenumbers.PhoneNumber) -> bool:
    """A full-length number for its country. Possible, not "valid": validity also checks the
    number ranges a carrier has been allocated, which `phonenumbers` learns months late (it
    refuses the contract's own +5491199887766); Meta is the judge of whether a number exists."""
    reason = phonenumbers.is_possible_number_with_reason(number)
    return bool(reason == phonenumbers.ValidationResult.IS_POSSIBLE)


def _already_canonical(phone: str) -> bool | None:
    """Whether `phone` (`+` and digits) is a possible number written exactly in E.164; None when
    only a full parse can tell.

    Building the number from its country code skips `phonenumbers.parse`, three quarters of the
    cost of checking a 100,000-recipient send. Country codes are prefix-free, so the first match
    is the one. A national part starting with 0 needs the parse: only some countries (Italy) keep
    the 0 in E.164. A number too long for its country may be a national spelling the parse
    rewrites (Argentina's `15` after the area code becomes the mobile `9` before it). The
    verdict is asked of phonenumbers once per country code and length (`_POSSIBLE_BY_LENGTH`).
    """
    digits = phone[1:]
    for length in (1, 2, 3):
        country_code = int(digits[:length])
        if country_code not in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            continue
        national = digits[length:]
        if not national or national.startswith("0"):
            return None
        possible = _POSSIBLE_BY_LENGTH.get((country_code, len(national)))
        if possible is None:
            number = phonenumbers.PhoneNumber(
                country_code=country_code, national_number=int(national)
            )
            possible = _POSSIBLE_BY_LENGTH[country_code, len(national)] = _is_possible(number)
        return True if possible else None
    return False


def phone_normalize(text: str) -> str | None:
    """`text` in E.164 (`+5492235961983`), or None when it is no possible phone number.

    Accepts E.164 with or without `+` (or with `00`), spaces, dashes, dots and parentheses, and
    national spellings inside the international number, such as Argentina's `15`:
    `+54 223 15-596-1983` is `+5492235961983`, and Mexico's former mobile `1`:
    `5215512345678` (a WhatsApp id) is `+525512345678`.
    """
    candidate = _international(text)
    if candidate is None or not E164.fullmatch(candidate):
        return None
    if legacy := _MEXICO_LEGACY_MOBILE.fullmatch(candidate):
        candidate = f"+52{legacy.group(1)}"
    canonical = _already_canonical(candidate)
    if canonical is not None:
        return candidate if canonical else None
    try:
        number = phonenumbers.parse(candidate, None)
    except phonenumbers.NumberParseException:
        return None
    if not _is_possible(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def is_e164(phone: str) -> bool:
    """Whether `phone` is already written exactly as `phone_normalize` writes it: `+`, country
    code, number, nothing else (what the send endpoints require).

    It is asked of every recipient of a send, so what `phone_normalize` would do to an E.164
    spelling is done directly: it has no separator to drop, a Mexican legacy mobile is
    rewritten (so is not exact), and the rest is judged as `phone_normalize` judges it."""
    if not E164.fullmatch(phone) or _MEXICO_LEGACY_MOBILE.fullmatch(phone):
        return False
    canonical = _already_canonical(phone)
    if canonical is not None:
        return canonical
    return phone_normalize(phone) == phone
