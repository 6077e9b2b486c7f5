"""`manage.py create_api_key --org NAME --email EMAIL [--name KEYNAME] [--create-org]
[--scopes send,read,contacts,account] [--expires-at ISO-8601 | --expires-in-days N]`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from mindo.api_keys import api_key_create, api_key_scopes_clean
from mindo.members import member_ensure
from mindo.models import ApiKeyScope, Organization


def expiry_parse(expires_at: str | None, expires_in_days: int | None) -> datetime | None:
    """The expiry the options ask for (a moment without an offset is UTC), or None for none."""
    if expires_at is not None and expires_in_days is not None:
        raise CommandError("Give --expires-at or --expires-in-days, not both.")
    if expires_in_days is not None:
        if expires_in_days < 1:
            raise CommandError("--expires-in-days must be 1 or more.")
        return timezone.now() + timedelta(days=expires_in_days)
    if expires_at is None:
        return None
    try:
        moment = datetime.fromisoformat(expires_at.strip())
    except ValueError:
        raise CommandError(
            f"--expires-at {expires_at!r} is not an ISO 8601 date or moment "
            "(2027-01-31 or 2027-01-31T18:00:00-03:00)."
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if moment <= timezone.now():
        raise CommandError(f"--expires-at {expires_at!r} is not in the future.")
    return moment


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
        parser.add_argument(
            "--scopes",
            default=",".join(ApiKeyScope.values),
            help=f"Comma-separated scopes the key may use; default all: {','.join(ApiKeyScope)}.",
        )
        expiry = parser.add_mutually_exclusive_group()
        expiry.add_argument(
            "--expires-at",
            help="When the key stops working, ISO 8601 (UTC without an offset). Default: never.",
        )
        expiry.add_argument(
            "--expires-in-days", type=int, help="The key stops working this many days from now."
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
        try:
            scopes = api_key_scopes_clean(options["scopes"].split(","))
        except ValueError as error:
            raise CommandError(f"--scopes: {error}") from None
        expires_at = expiry_parse(options["expires_at"], options["expires_in_days"])
        with transaction.atomic():
            organization = self._organization(org_name, create=options["create_org"])
            try:
                user = member_ensure(organization=organization, email=options["email"].strip())
            except ValueError as error:
                raise CommandError(str(error)) from None
            api_key, raw_key = api_key_create(
                organization=organization,
                user=user,
                name=key_name,
                scopes=scopes,
                expires_at=expires_at,
            )
        self.stdout.write(raw_key)
        expiry = "never expires" if expires_at is None else f"expires {expires_at.isoformat()}"
        self.stderr.write(
            f"API key {api_key.name!r} for {user.email} in {organization.name!r}, scopes "
            f"{', '.join(api_key.scopes)}, {expiry}. Copy it now: it is not stored and will not "
            "be shown again."
        )
