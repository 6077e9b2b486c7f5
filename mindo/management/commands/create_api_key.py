"""`manage.py create_api_key --org NAME --email EMAIL [--name KEYNAME] [--create-org]`."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from mindo.api_keys import api_key_create
from mindo.members import member_ensure
from mindo.models import Organization


class Command(BaseCommand):
    help = (
        "Create an API key for a user of an organization and print it. The key is printed once: "
        "only its hash is stored. The user (username = email) and the membership are created if "
        "missing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", required=True, help="Organization name.")
        parser.add_argument("--email", required=True, help="The key's user (created if missing).")
        parser.add_argument("--name", default="default", help="A name for the key.")
        parser.add_argument(
            "--create-org", action="store_true", help="Create the organization if it is missing."
        )

    @staticmethod
    def _organization(name: str, *, create: bool) -> Organization:
        if create:
            return Organization.objects.get_or_create(name=name)[0]
        organization = Organization.objects.filter(name=name).first()
        if organization is None:
            raise CommandError(
                f"Organization {name!r} does not exist; pass --create-org to create it."
            )
        return organization

    def handle(self, *args: Any, **options: Any) -> None:
        org_name: str = options["org"].strip()
        key_name: str = options["name"].strip()
        if not org_name:
            raise CommandError("--org may not be blank.")
        if not key_name:
            raise CommandError("--name may not be blank.")
        with transaction.atomic():
            organization = self._organization(org_name, create=options["create_org"])
            try:
                user = member_ensure(organization=organization, email=options["email"].strip())
            except ValueError as error:
                raise CommandError(str(error)) from None
            api_key, raw_key = api_key_create(organization=organization, user=user, name=key_name)
        self.stdout.write(raw_key)
        self.stderr.write(
            f"API key {api_key.name!r} for {user.email} in {organization.name!r}. Copy it now: "
            "it is not stored and will not be shown again."
        )
