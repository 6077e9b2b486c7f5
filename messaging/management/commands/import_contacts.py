"""`manage.py import_contacts --org NAME --list NAME FILE.csv`: contacts from a CSV file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from messaging.contact_import import contacts_import
from messaging.models import ContactList
from mindo.models import Organization


class Command(BaseCommand):
    help = (
        "Import contacts into a contact list from a CSV file with a header row: 'phone' "
        "(required, any spelling of the number), 'full_name' and 'email' (optional). Good rows "
        "are imported; each bad one is reported with its line number. A phone the organization "
        "already has moves its contact into the list."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path, help="The CSV file (UTF-8).")
        parser.add_argument("--org", required=True, help="The organization's name.")
        parser.add_argument("--list", required=True, dest="list_name", help="The list's name.")
        parser.add_argument(
            "--create-list", action="store_true", help="Create the list when it does not exist."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        organization = Organization.objects.filter(name=options["org"]).first()
        if organization is None:
            raise CommandError(f"No organization named {options['org']!r}.")
        contact_list = ContactList.objects.filter(
            organization=organization, name=options["list_name"]
        ).first()
        if contact_list is None:
            if not options["create_list"]:
                raise CommandError(
                    f"No list named {options['list_name']!r} in {organization.name}: "
                    "pass --create-list to create it."
                )
            contact_list = ContactList.objects.create(
                organization=organization, name=options["list_name"]
            )
        try:
            with options["file"].open(encoding="utf-8-sig", newline="") as lines:
                report = contacts_import(contact_list=contact_list, lines=lines)
        except (OSError, UnicodeDecodeError) as error:
            raise CommandError(f"Cannot read {options['file']}: {error}") from None
        for row_error in report.errors:
            self.stderr.write(str(row_error))
        self.stdout.write(f"{contact_list.name}: {report.summary()}")
