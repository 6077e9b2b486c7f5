"""`manage.py sync_templates`: pull business accounts' message templates from the Graph API."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from meta.graph import GraphRequestError
from templates_app.models import WhatsAppBusinessAccount
from templates_app.sync import SyncResult, sync_templates


class SyncCommand(BaseCommand):
    """One account (`--waba-id`) or every account (`--all`), one summary line each.

    With `--all`, an account whose listing fails does not stop the others; the command still
    ends with an error naming every failure, so a script notices.
    """

    what = "assets"

    def sync(self, account: WhatsAppBusinessAccount) -> SyncResult:
        raise NotImplementedError

    def add_arguments(self, parser: CommandParser) -> None:
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--waba-id", help="The business account to sync.")
        which.add_argument("--all", action="store_true", help="Sync every business account.")

    def handle(self, *args: Any, **options: Any) -> None:
        accounts = WhatsAppBusinessAccount.objects.order_by("waba_id")
        if not options["all"]:
            accounts = accounts.filter(waba_id=options["waba_id"])
            if not accounts.exists():
                raise CommandError(f"No business account with WABA id {options['waba_id']!r}.")
        failures: list[str] = []
        for account in accounts:
            try:
                result = self.sync(account)
            except GraphRequestError as error:
                failures.append(f"WABA {account.waba_id}: {error}")
                continue
            self.stdout.write(f"WABA {account.waba_id} {self.what}: {result}.")
            for skipped in result.skipped:
                self.stderr.write(self.style.WARNING(f"  skipped {skipped}"))
        if failures:
            raise CommandError("Graph API sync failed for " + "; ".join(failures))


class Command(SyncCommand):
    help = (
        "Create or update message templates (components, status, category) from the Graph API "
        "listing of one business account or all of them."
    )
    what = "templates"

    def sync(self, account: WhatsAppBusinessAccount) -> SyncResult:
        return sync_templates(account)
