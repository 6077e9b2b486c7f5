"""The dry run of a send (`POST send-bulk/?dry_run=true`): everything send-bulk checks, nothing
written (no send, no message, no contact, no quota held, no Idempotency-Key kept).

Where send-bulk refuses a whole list for one bad recipient (a 400), the dry run names every
recipient that would not be sent, and why, so a client fixes its list at once; the send's other
fields are checked as send-bulk checks them (their errors are still a 400, a number or template
not found still a 404). Each verdict is an entry `{"index": i, "reasons": [...], ...}`:

- `invalid_phone`: no E.164 phone (`errors` says what send-bulk would answer);
- `invalid_recipient`: any other problem of its shape (not an object, an unknown field, a value
  that is not text...), with `errors`;
- `duplicate_of`: the same phone as an earlier recipient (`duplicate_of`: its index); send-bulk
  sends it once, with the first one's variables;
- `missing_variables` / `extra_variables`: the template's variables it lacks or it has beyond
  them (`missing_variables` / `extra_variables`: their names);
- `invalid_variables`: the right names, but a value the variable's type refuses, or a button
  variable that does not fit the template's buttons, with `errors`;
- `opted_out`, `us_marketing_block`, `cooling_down`: Meta's rules for a MARKETING template
  (bulksend.screening): accepted by send-bulk, but failed (the first two) or held until the
  cooldown ends (the third) when the send goes out.

The figures (`unique_recipients`, `quota_info`, `estimated_time_minutes`) are those of the send
the list would make without the recipients send-bulk refuses: its unique phones, held ones
included (as send-bulk's 202 counts them). `sendable_recipients` counts those with no verdict.
With a CSV body each entry also names its `line` (and a duplicate, `duplicate_of_line`), and a
line that was no recipient at all is an entry with its `line` and no `index`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from django.utils import timezone

from bulksend.creation import number_and_template_get
from bulksend.json_stream import StreamedRecipients
from bulksend.quota import QuotaInfo, estimate_minutes, queued_ahead_on_number, quota_for_phones
from bulksend.recipients import Errors, check_against_template, parse_recipients
from bulksend.screening import recipient_verdicts
from mindo.models import Organization


class Reason(StrEnum):
    INVALID_PHONE = "invalid_phone"
    INVALID_RECIPIENT = "invalid_recipient"
    DUPLICATE_OF = "duplicate_of"
    MISSING_VARIABLES = "missing_variables"
    EXTRA_VARIABLES = "extra_variables"
    INVALID_VARIABLES = "invalid_variables"
    # bulksend.screening.Verdict's values
    OPTED_OUT = "opted_out"
    US_MARKETING_BLOCK = "us_marketing_block"
    COOLING_DOWN = "cooling_down"


# The reasons send-bulk refuses a list for (a 400): a recipient with one is not in the figures.
REFUSED = frozenset(
    {
        Reason.INVALID_PHONE,
        Reason.INVALID_RECIPIENT,
        Reason.MISSING_VARIABLES,
        Reason.EXTRA_VARIABLES,
        Reason.INVALID_VARIABLES,
    }
)


@dataclass(frozen=True, slots=True)
class RecipientItems:
    """The recipients as the body gave them (a list, checked as a list only), and how to read
    them again with exact numbers (see bulksend.recipients.parse_recipients)."""

    items: list[Any]
    exact_items: Callable[[], list[Any]] | None = None


@dataclass(frozen=True, slots=True)
class DryRun:
    template_name: str
    total_recipients: int
    unique_recipients: int
    sendable_recipients: int
    estimated_time_minutes: float
    quota: QuotaInfo
    verdicts: list[dict[str, Any]]


def send_dry_run(
    *,
    organization: Organization,
    phone_number_id: str,
    template_name: str,
    language: str,
    recipients: RecipientItems | StreamedRecipients,
    lines: Sequence[int] | None = None,
    line_problems: dict[str, list[str]] | None = None,
) -> DryRun:
    """What send-bulk would do with this request, reading only. `lines`: the CSV line of each
    recipient, when they came as CSV; `line_problems`: the CSV's lines that were no recipient."""
    number, template = number_and_template_get(
        organization=organization,
        phone_number_id=phone_number_id,
        name=template_name,
        language=language,
    )
    entries: dict[int, dict[str, Any]] = {}

    def entry(index: int, phone: str | None) -> dict[str, Any]:
        """The verdict of the recipient at `index`, made on its first reason; `phone`: what it
        shows of the recipient (its phone as given, None when it gave none)."""
        found = entries.get(index)
        if found is None:
            found = entries[index] = {"index": index, "phone": phone, "reasons": []}
        return found

    valid_phone: dict[int, str] = {}
    variables = list(template.variables)
    expected = set(variables)
    total = 0
    # A batch at a time (a streamed body's; a list is one batch): only the verdicts and each
    # valid recipient's phone or user id are kept.
    for first, items in _item_batches(recipients):
        total += len(items)
        clean, shape_errors = parse_recipients(
            items, _exact_items(recipients), keep_valid=True, first_index=first
        )
        # 1. Shape: the recipients parse_recipients refused, by index.
        for key, errors in shape_errors.items():
            index = int(key)
            refused = entry(index, _given_phone(items[index - first]))
            if "phone" in errors:
                refused["reasons"].append(Reason.INVALID_PHONE)
            if set(errors) - {"phone"}:
                refused["reasons"].append(Reason.INVALID_RECIPIENT)
            refused["errors"] = errors
            if "phone" not in errors and refused["phone"] is not None:
                valid_phone[index] = refused["phone"]
        clean_indexes = [
            first + offset
            for offset in range(len(items))
            if str(first + offset) not in shape_errors
        ]

        # 2. The template's variables and buttons, for the clean ones.
        template_errors = check_against_template(
            clean,
            variables=variables,
            buttons=template.button_specs,
            template=template.name,
            variable_types=template.typed_variables,
            currency_code=template.currency_code,
        )
        for key, errors in template_errors.items():
            index = clean_indexes[int(key)]
            refused = entry(index, _given_phone(items[index - first]))
            _template_reasons(refused, errors, clean[int(key)].variables, variables, expected)
        for position, recipient in enumerate(clean):
            valid_phone[clean_indexes[position]] = recipient.key  # a phone, or a user id

    # 3. Duplicates, by phone, in the list's order: the first occurrence is the one sent.
    first_of: dict[str, int] = {}
    for index in sorted(valid_phone):
        phone = valid_phone[index]
        first = first_of.setdefault(phone, index)
        if first != index:
            duplicate = entry(index, _phone_of_key(phone))
            duplicate["reasons"].append(Reason.DUPLICATE_OF)
            duplicate["duplicate_of"] = first

    # 4. Meta's rules for who may get it, for each phone's first occurrence.
    now = timezone.now()
    firsts = sorted(first_of.values())
    holds = recipient_verdicts(
        organization=organization,
        template=template,
        phones=[valid_phone[index] for index in firsts],
        now=now,
    )
    for held, verdict in holds.items():
        entry(firsts[held], _phone_of_key(valid_phone[firsts[held]]))["reasons"].append(
            Reason(verdict.value)
        )

    # The figures of the send without what send-bulk refuses: each phone once, by its first
    # occurrence that has no refused reason.
    sent_phones = {
        phone
        for index, phone in valid_phone.items()
        if index not in entries or not REFUSED.intersection(entries[index]["reasons"])
    }
    quota = quota_for_phones(
        account=number.business_account, number_id=number.pk, phones=list(sent_phones), now=now
    )
    estimate = estimate_minutes(
        pending=len(sent_phones),
        ahead=queued_ahead_on_number(number.pk, now),
        rate_per_second=number.throughput_per_second,
        overflow=quota.overflow,
        room_frees_at=quota.room_frees_at,
        now=now,
    )
    verdicts = [entries[index] for index in sorted(entries)]
    if lines is not None:
        verdicts = _with_lines(verdicts, lines, line_problems or {})
    sendable = sum(1 for index in first_of.values() if index not in entries)
    return DryRun(
        template_name=template.name,
        total_recipients=total,
        unique_recipients=len(sent_phones),
        sendable_recipients=sendable,
        estimated_time_minutes=estimate,
        quota=quota,
        verdicts=verdicts,
    )


def _given_phone(item: Any) -> str | None:
    """The phone a recipient's item gives, when it is text (valid or not)."""
    phone = item.get("phone") if isinstance(item, dict) else None
    return phone if isinstance(phone, str) else None


def _phone_of_key(key: str) -> str | None:
    """The phone of a valid recipient known by its key (bulksend.recipients.Recipient.key: its
    phone, or its user id, which never starts with `+`), read back without its item: a streamed
    body's batch is gone by the time duplicates and holds are known."""
    return key if key.startswith("+") else None


def _item_batches(
    recipients: RecipientItems | StreamedRecipients,
) -> Iterator[tuple[int, list[Any]]]:
    if isinstance(recipients, StreamedRecipients):
        return recipients.item_batches()
    return iter([(0, recipients.items)])


def _exact_items(recipients: RecipientItems | StreamedRecipients) -> Callable[[], list[Any]] | None:
    # A streamed body's numbers are exact as read (bulksend.json_stream).
    return recipients.exact_items if isinstance(recipients, RecipientItems) else None


def _template_reasons(
    refused: dict[str, Any],
    errors: Errors,
    given: dict[str, str],
    variables: list[str],
    expected: set[str],
) -> None:
    """The reasons of a recipient whose variables or buttons do not fit the template."""
    if given.keys() != expected:
        missing = [name for name in variables if name not in given]
        extra = [name for name in given if name not in expected]
        if missing:
            refused["reasons"].append(Reason.MISSING_VARIABLES)
            refused["missing_variables"] = missing
        if extra:
            refused["reasons"].append(Reason.EXTRA_VARIABLES)
            refused["extra_variables"] = extra
        errors = {name: problems for name, problems in errors.items() if name != "variables"}
    if errors:
        refused["reasons"].append(Reason.INVALID_VARIABLES)
        refused["errors"] = errors


def _with_lines(
    verdicts: list[dict[str, Any]], lines: Sequence[int], line_problems: dict[str, list[str]]
) -> list[dict[str, Any]]:
    """The verdicts of a CSV's recipients with their lines, and its unreadable lines' among
    them, in line order."""
    for verdict in verdicts:
        verdict["line"] = lines[verdict["index"]]
        if "duplicate_of" in verdict:
            verdict["duplicate_of_line"] = lines[verdict["duplicate_of"]]
    for key, problems in line_problems.items():
        verdicts.append(
            {
                "line": int(key.removeprefix("line ")),
                "reasons": [Reason.INVALID_RECIPIENT],
                "errors": {"non_field_errors": problems},
            }
        )
    return sorted(verdicts, key=lambda verdict: int(verdict["line"]))
