"""`manage.py register_business_account`: a WABA of an organization, and optionally its number."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from meta.limits import MAX_THROUGHPUT
from mindo.models import Organization
from templates_app.models import DEFAULT_TIER, QualityRating
from templates_app.services import business_account_register, phone_number_register

NUMBER_OPTIONS = ("display_phone_number", "verified_name")


class Command(BaseCommand):
    help = (
        "Register (create or update) a WhatsApp business account of an organization, and with "
        "--phone-number-id one of its phone numbers. Running it again updates them in place."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", required=True, help="Organization name (must exist).")
        parser.add_argument("--waba-id", required=True, help="Meta's WhatsApp business account id.")
        parser.add_argument("--access-token", required=True, help="Graph API token of the WABA.")
        parser.add_argument("--name", default="", help="A name for the account.")
        parser.add_argument(
            "--tier", default=DEFAULT_TIER, help="The portfolio's messaging limit tier."
        )
        number = parser.add_argument_group("phone number (optional)")
        number.add_argument("--phone-number-id", help="Meta's phone number id.")
        number.add_argument("--display-phone-number", help="E.g. '+54 9 223 675-0780'.")
        number.add_argument("--verified-name", help="The number's verified business name.")
        number.add_argument(
            "--quality-rating", default=QualityRating.GREEN, choices=QualityRating.values
        )
        number.add_argument("--number-tier", default=DEFAULT_TIER, help="The number's tier.")
        number.add_argument(
            "--throughput",
            type=int,
            default=None,
            help=(
                f"Messages per second (1-{MAX_THROUGHPUT}; default DEFAULT_THROUGHPUT_PER_SECOND)."
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        organization = Organization.objects.filter(name=options["org"]).first()
        if organization is None:
            raise CommandError(
                f"Organization {options['org']!r} does not exist; create it with "
                "`manage.py create_api_key --create-org`."
            )
        phone_number_id = options["phone_number_id"]
        if phone_number_id is None:
            given = [name for name in NUMBER_OPTIONS if options[name] is not None]
            if given:
                option = given[0].replace("_", "-")
                raise CommandError(f"--{option} describes a number: it needs --phone-number-id.")
        else:
            missing = [name for name in NUMBER_OPTIONS if not options[name]]
            if missing:
                raise CommandError(
                    f"Registering a number needs --{missing[0].replace('_', '-')} as well."
                )
        throughput = options["throughput"]
        if throughput is None:
            throughput = settings.DEFAULT_THROUGHPUT_PER_SECOND
        try:
            # Both or neither: a number that fails to register leaves no new account behind.
            with transaction.atomic():
                account = business_account_register(
                    organization=organization,
                    waba_id=options["waba_id"],
                    name=options["name"],
                    access_token=options["access_token"],
                    messaging_limit_tier=options["tier"],
                )
                number = None
                if phone_number_id is not None:
                    number = phone_number_register(
                        business_account=account,
                        phone_number_id=phone_number_id,
                        display_phone_number=options["display_phone_number"],
                        verified_name=options["verified_name"],
                        quality_rating=options["quality_rating"],
                        messaging_limit_tier=options["number_tier"],
                        throughput_per_second=throughput,
                    )
        except ValueError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(
            f"Registered business account {account.waba_id} ({account}) of "
            f"{organization.name!r}, tier {account.messaging_limit_tier}."
        )
        if number is not None:
            self.stdout.write(
                f"Registered phone number {number.phone_number_id} "
                f"({number.display_phone_number}, {number.verified_name}), quality "
                f"{number.quality_rating}, tier {number.messaging_limit_tier}, "
                f"{number.throughput_per_second} messages/s."
            )
