"""Importing contacts into a list from a CSV file (the admin's action and `import_contacts`).

The file has a header row naming its columns: `phone` (required), and optionally `full_name`
(or `fullName`, `name`) and `email`. Each good row is imported; each bad one is reported by its
line number in the file and imports nothing, so a file with a few typos still brings the rest
in, and the report says exactly which lines to fix.

A phone the organization already has a contact for moves that contact into the list, and takes
the file's name and email where the file gives them; its source stays how it first came.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction

from messaging.models import Contact, ContactList, ContactSource
from mindo.phones import phone_normalize

PHONE_COLUMNS = ("phone",)
NAME_COLUMNS = ("full_name", "fullname", "name")
EMAIL_COLUMNS = ("email",)
NAME_MAX_LENGTH = Contact._meta.get_field("name").max_length or 200
# Phones looked up per query when matching the file against existing contacts.
LOOKUP_CHUNK = 5_000


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(slots=True)
class ImportReport:
    created: int = 0
    updated: int = 0
    errors: list[RowError] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.created} contact(s) created, {self.updated} updated, "
            f"{len(self.errors)} line(s) with errors"
        )


@dataclass(frozen=True, slots=True)
class _Row:
    line: int
    phone: str
    name: str | None
    email: str | None


def _column(header: list[str], names: tuple[str, ...]) -> int | None:
    for index, title in enumerate(header):
        if title.strip().lower().replace(" ", "_") in names:
            return index
    return None


def _cell(values: list[str], index: int | None) -> str | None:
    if index is None or index >= len(values):
        return None
    return values[index].strip() or None


def _read_rows(lines: Iterable[str], report: ImportReport) -> list[_Row]:
    """The file's good rows; each bad one goes to `report.errors` by its line number."""
    reader = csv.reader(lines)
    header = next(reader, None)
    phone_at = _column(header or [], PHONE_COLUMNS)
    if phone_at is None:
        report.errors.append(RowError(1, "the header row has no 'phone' column"))
        return []
    name_at = _column(header or [], NAME_COLUMNS)
    email_at = _column(header or [], EMAIL_COLUMNS)
    rows: list[_Row] = []
    first_line_of: dict[str, int] = {}
    for values in reader:
        line = reader.line_num
        if not any(value.strip() for value in values):
            continue
        written = _cell(values, phone_at)
        phone = phone_normalize(written) if written else None
        name, email = _cell(values, name_at), _cell(values, email_at)
        problem = None
        if written is None:
            problem = "phone is missing"
        elif phone is None:
            problem = f"phone {written!r} is not a phone number"
        elif phone in first_line_of:
            problem = f"phone {phone} is already on line {first_line_of[phone]}"
        elif name is not None and len(name) > NAME_MAX_LENGTH:
            problem = f"full name is longer than {NAME_MAX_LENGTH} characters"
        elif email is not None and not _is_email(email):
            problem = f"email {email!r} is not an email address"
        if problem is None and phone is not None:
            first_line_of[phone] = line
            rows.append(_Row(line, phone, name, email))
        else:
            report.errors.append(RowError(line, problem or "phone is missing"))
    return rows


def _is_email(text: str) -> bool:
    try:
        validate_email(text)
    except ValidationError:
        return False
    return True


def _existing(organization_id: int, phones: list[str]) -> dict[str, Contact]:
    existing: dict[str, Contact] = {}
    for start in range(0, len(phones), LOOKUP_CHUNK):
        chunk = phones[start : start + LOOKUP_CHUNK]
        for contact in Contact.objects.filter(organization_id=organization_id, phone__in=chunk):
            if contact.phone is not None:  # found by phone: it has one
                existing[contact.phone] = contact
    return existing


def contacts_import(*, contact_list: ContactList, lines: Iterable[str]) -> ImportReport:
    """Import the CSV `lines` (text, header first) into `contact_list`: the good rows in one
    transaction, the bad ones reported by line."""
    report = ImportReport()
    rows = _read_rows(lines, report)
    organization_id = contact_list.organization_id
    with transaction.atomic():
        existing = _existing(organization_id, [row.phone for row in rows])
        new: list[Contact] = []
        changed: list[Contact] = []
        for row in rows:
            contact = existing.get(row.phone)
            if contact is None:
                new.append(
                    Contact(
                        organization_id=organization_id,
                        contact_list=contact_list,
                        phone=row.phone,
                        name=row.name,
                        email=row.email,
                        source=ContactSource.IMPORT,
                    )
                )
                continue
            contact.contact_list = contact_list
            contact.name = row.name or contact.name
            contact.email = row.email or contact.email
            changed.append(contact)
        # A contact made meanwhile by an inbound message or a send keeps its row (its line is
        # still counted as created).
        Contact.objects.bulk_create(new, ignore_conflicts=True, batch_size=LOOKUP_CHUNK)
        Contact.objects.bulk_update(
            changed, ["contact_list", "name", "email"], batch_size=LOOKUP_CHUNK
        )
    report.created = len(new)
    report.updated = len(changed)
    return report
